//! Webhook signing secrets at rest: envelope encryption (issue 17, finding 10).
//!
//! Each secret gets a random 256-bit data key; the secret is encrypted with it (AES-256-GCM, the
//! endpoint's id as associated data, so a sealed secret cannot be moved to another endpoint),
//! and the data key is wrapped with a key-encryption key (KEK) from the secret store
//! (AES-256-GCM, the KEK's id as associated data). A sealed secret is
//! `v1:<kek id>:<base64 nonce‖wrapped data key>:<base64 nonce‖encrypted secret>`.
//!
//! The keyring's first KEK wraps new data keys; the others still unwrap. Rotation: put the new
//! KEK first and keep the old one after it; at start the service rewraps every data key still
//! under an old KEK (and seals any secret stored in the clear before this existed), after which
//! the old KEK can be dropped. Only the small data keys are rewrapped; the secrets' ciphertexts
//! stay as they are.

use aes_gcm::aead::{Aead as _, KeyInit as _, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use anyhow::{Context as _, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore as _;

const VERSION: &str = "v1";

/// Seals `secret` for the endpoint `aad` with `keys`; without a keyring (no
/// `MIRAI_WEBHOOK_SECRET_KEYS`) it stays in the clear, as before envelope encryption.
pub fn seal(keys: Option<&Keyring>, aad: &[u8], secret: &str) -> String {
    match keys {
        Some(keys) => keys.seal(aad, secret),
        None => secret.to_owned(),
    }
}

/// The stored secret, opened. A secret in the clear (`whsec_…`: written before sealing, or by
/// a replica without keys during a rollout) is taken as it is.
pub fn open(keys: Option<&Keyring>, aad: &[u8], stored: &str) -> anyhow::Result<String> {
    if stored.starts_with("whsec_") {
        return Ok(stored.to_owned());
    }
    keys.ok_or_else(|| anyhow!("the secret is sealed but MIRAI_WEBHOOK_SECRET_KEYS is not set"))?
        .open(aad, stored)
}
const NONCE: usize = 12;

/// The KEKs, current first.
#[derive(Clone)]
pub struct Keyring {
    keys: Vec<(String, Key<Aes256Gcm>)>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("Keyring").field("kek_ids", &ids).finish()
    }
}

fn encrypt(key: &Key<Aes256Gcm>, plain: &[u8], aad: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE];
    rand::rng().fill_bytes(&mut nonce);
    let sealed = Aes256Gcm::new(key)
        .encrypt(&Nonce::from(nonce), Payload { msg: plain, aad })
        .expect("AES-GCM encrypts any length used here");
    [nonce.as_slice(), &sealed].concat()
}

fn decrypt(key: &Key<Aes256Gcm>, sealed: &[u8], aad: &[u8]) -> anyhow::Result<Vec<u8>> {
    if sealed.len() < NONCE {
        bail!("sealed value too short");
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE);
    let nonce: [u8; NONCE] = nonce.try_into().expect("split at NONCE");
    Aes256Gcm::new(key)
        .decrypt(
            &Nonce::from(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map_err(|_| anyhow!("does not open (wrong key, or altered)"))
}

/// The parts of a sealed secret.
struct Sealed<'a> {
    kek_id: &'a str,
    wrapped: Vec<u8>,
    secret: &'a str,
}

fn parts(sealed: &str) -> anyhow::Result<Sealed<'_>> {
    let mut it = sealed.splitn(4, ':');
    match (it.next(), it.next(), it.next(), it.next()) {
        (Some(VERSION), Some(kek_id), Some(wrapped), Some(secret)) => Ok(Sealed {
            kek_id,
            wrapped: STANDARD.decode(wrapped).context("wrapped data key")?,
            secret,
        }),
        _ => bail!("not a sealed secret"),
    }
}

impl Keyring {
    /// `id:base64(32 bytes)` entries, comma-separated, current first.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut keys = Vec::new();
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (id, key) = entry
                .split_once(':')
                .ok_or_else(|| format!("{entry:?} is not id:base64-key"))?;
            if id.is_empty()
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(format!(
                    "key id {id:?}: letters, digits, '-', '_', '.' only"
                ));
            }
            let bytes = STANDARD
                .decode(key.trim())
                .map_err(|e| format!("key {id}: {e}"))?;
            if bytes.len() != 32 {
                return Err(format!("key {id}: 32 bytes (AES-256), got {}", bytes.len()));
            }
            if keys.iter().any(|(other, _)| other == id) {
                return Err(format!("key id {id} appears twice"));
            }
            let bytes: [u8; 32] = bytes.try_into().expect("length checked");
            keys.push((id.to_owned(), Key::<Aes256Gcm>::from(bytes)));
        }
        if keys.is_empty() {
            return Err("no key".into());
        }
        Ok(Self { keys })
    }

    /// A keyring with one fresh random KEK (tests).
    pub fn random(id: &str) -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        Self {
            keys: vec![(id.to_owned(), Key::<Aes256Gcm>::from(bytes))],
        }
    }

    fn current(&self) -> &(String, Key<Aes256Gcm>) {
        &self.keys[0]
    }

    fn kek(&self, id: &str) -> anyhow::Result<&Key<Aes256Gcm>> {
        self.keys
            .iter()
            .find(|(k, _)| k == id)
            .map(|(_, key)| key)
            .ok_or_else(|| anyhow!("sealed under KEK {id:?}, which is not configured"))
    }

    fn unwrap_key(&self, p: &Sealed<'_>) -> anyhow::Result<Key<Aes256Gcm>> {
        let data_key = decrypt(self.kek(p.kek_id)?, &p.wrapped, p.kek_id.as_bytes())
            .context("unwrapping the data key")?;
        let data_key: [u8; 32] = data_key
            .try_into()
            .map_err(|_| anyhow!("the data key is not 32 bytes"))?;
        Ok(Key::<Aes256Gcm>::from(data_key))
    }

    /// Seals `secret` for the endpoint `aad` (its id).
    pub fn seal(&self, aad: &[u8], secret: &str) -> String {
        let (id, kek) = self.current();
        let mut data_key = [0u8; 32];
        rand::rng().fill_bytes(&mut data_key);
        let sealed_secret = encrypt(&Key::<Aes256Gcm>::from(data_key), secret.as_bytes(), aad);
        let wrapped = encrypt(kek, &data_key, id.as_bytes());
        format!(
            "{VERSION}:{id}:{}:{}",
            STANDARD.encode(wrapped),
            STANDARD.encode(sealed_secret)
        )
    }

    /// The secret sealed for the endpoint `aad`.
    pub fn open(&self, aad: &[u8], sealed: &str) -> anyhow::Result<String> {
        let p = parts(sealed)?;
        let data_key = self.unwrap_key(&p)?;
        let secret = decrypt(
            &data_key,
            &STANDARD.decode(p.secret).context("sealed secret")?,
            aad,
        )
        .context("opening the secret")?;
        String::from_utf8(secret).context("secret is not UTF-8")
    }

    /// The stored value as it should be now: a clear (legacy) secret sealed, a data key under
    /// an older KEK rewrapped under the current one; `None` when it is already current.
    pub fn reseal(&self, aad: &[u8], stored: &str) -> anyhow::Result<Option<String>> {
        if stored.starts_with("whsec_") {
            return Ok(Some(self.seal(aad, stored)));
        }
        let p = parts(stored)?;
        let (id, kek) = self.current();
        if p.kek_id == id {
            return Ok(None);
        }
        let data_key = self.unwrap_key(&p)?;
        let wrapped = encrypt(kek, &data_key, id.as_bytes());
        Ok(Some(format!(
            "{VERSION}:{id}:{}:{}",
            STANDARD.encode(wrapped),
            p.secret
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> String {
        STANDARD.encode([byte; 32])
    }

    #[test]
    fn a_sealed_secret_opens_only_with_its_kek_and_endpoint() {
        let ring = Keyring::parse(&format!("k1:{}", key(1))).unwrap();
        let sealed = ring.seal(b"endpoint-a", "whsec_c2VjcmV0");
        assert!(sealed.starts_with("v1:k1:") && !sealed.contains("c2VjcmV0"));
        assert_eq!(ring.open(b"endpoint-a", &sealed).unwrap(), "whsec_c2VjcmV0");
        assert!(
            ring.open(b"endpoint-b", &sealed).is_err(),
            "bound to its endpoint"
        );
        let other = Keyring::parse(&format!("k1:{}", key(2))).unwrap();
        assert!(other.open(b"endpoint-a", &sealed).is_err(), "another KEK");
        // Two seals of one secret differ (fresh data key and nonces).
        assert_ne!(
            ring.seal(b"endpoint-a", "whsec_x"),
            ring.seal(b"endpoint-a", "whsec_x")
        );
    }

    #[test]
    fn rotation_rewraps_under_the_new_kek_while_the_old_one_still_opens() {
        let old = Keyring::parse(&format!("k1:{}", key(1))).unwrap();
        let sealed = old.seal(b"e", "whsec_abc");
        let both = Keyring::parse(&format!("k2:{},k1:{}", key(2), key(1))).unwrap();
        // During the rotation both open the old value.
        assert_eq!(both.open(b"e", &sealed).unwrap(), "whsec_abc");
        let rewrapped = both.reseal(b"e", &sealed).unwrap().expect("rewrapped");
        assert!(rewrapped.starts_with("v1:k2:"));
        // The secret's ciphertext is unchanged; only the data key was rewrapped.
        assert_eq!(rewrapped.rsplit(':').next(), sealed.rsplit(':').next());
        assert_eq!(
            both.reseal(b"e", &rewrapped).unwrap(),
            None,
            "already current"
        );
        let new_only = Keyring::parse(&format!("k2:{}", key(2))).unwrap();
        assert_eq!(new_only.open(b"e", &rewrapped).unwrap(), "whsec_abc");
        assert!(new_only.open(b"e", &sealed).is_err(), "the old KEK is gone");
        // A legacy clear secret is sealed.
        let legacy = new_only.reseal(b"e", "whsec_legacy").unwrap().unwrap();
        assert_eq!(new_only.open(b"e", &legacy).unwrap(), "whsec_legacy");
    }

    #[test]
    fn bad_keyrings_are_refused() {
        for bad in [
            "",
            "k1",
            &format!("k1:{}", STANDARD.encode([0u8; 16])),
            &format!("k1:{0},k1:{0}", key(1)),
            &format!("k 1:{}", key(1)),
        ] {
            assert!(Keyring::parse(bad).is_err(), "{bad}");
        }
        let debug = format!("{:?}", Keyring::parse(&format!("k1:{}", key(7))).unwrap());
        assert!(!debug.contains(&key(7)), "{debug}");
    }
}
