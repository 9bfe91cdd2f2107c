//! JWT signing keys (Ed25519): loading, the JWKS, and rotation.
//!
//! The key folder (`MIRAI_JWT_KEYS_DIR`) holds PKCS#8 PEM files:
//! - `current.pem` signs every new access token;
//! - `next.pem` is published in the JWKS but signs nothing yet, so caches already know it when
//!   it becomes current;
//! - `retired-<unix seconds>.pem` are former current keys, published (and accepted by
//!   IntrospectToken) until `<unix seconds>` + the grace period, so tokens they signed stay
//!   valid until they expire.
//!
//! [`rotate`] performs one rotation step on the folder (see the README's procedure). Key ids
//! are RFC 7638 JWK thumbprints, so every replica derives the same `kid` from the same file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
use jsonwebtoken::{DecodingKey, EncodingKey};
use mirai_platform::grpc::identity::jwk_thumbprint as thumbprint;
use mirai_proto::user::v1 as pb;

use crate::password::fill_random;

/// Problems with the key folder, reported at startup.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a PKCS#8 Ed25519 private key: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("{0} is missing (set MIRAI_JWT_GENERATE_KEYS=true to create it, for dev only)")]
    Missing(PathBuf),
}

/// One Ed25519 key pair.
#[derive(Clone)]
pub struct Key {
    pub kid: String,
    /// The public key, base64url without padding (JWK `x`).
    pub x: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// For retired keys: when they stop being published.
    pub published_until: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl Key {
    pub fn from_signing_key(key: &SigningKey) -> Self {
        let x = URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes());
        let der = key
            .to_pkcs8_der()
            .expect("an Ed25519 key always encodes as PKCS#8");
        Self {
            kid: thumbprint(&x),
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
            decoding: DecodingKey::from_ed_components(&x).expect("32-byte Ed25519 public key"),
            x,
            published_until: None,
        }
    }

    pub fn generate() -> SigningKey {
        let mut seed = [0u8; 32];
        fill_random(&mut seed);
        SigningKey::from_bytes(&seed)
    }

    fn load(path: &Path) -> Result<Self, KeyError> {
        let pem = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
            path: path.to_owned(),
            source,
        })?;
        let key = SigningKey::from_pkcs8_pem(&pem).map_err(|e| KeyError::Parse {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(Self::from_signing_key(&key))
    }

    pub fn encoding(&self) -> &EncodingKey {
        &self.encoding
    }

    pub fn decoding(&self) -> &DecodingKey {
        &self.decoding
    }

    fn jwk(&self) -> pb::JsonWebKey {
        pb::JsonWebKey {
            kid: self.kid.clone(),
            kty: "OKP".to_owned(),
            crv: "Ed25519".to_owned(),
            x: self.x.clone(),
            y: String::new(),
            alg: "EdDSA".to_owned(),
            key_use: "sig".to_owned(),
        }
    }
}

/// The keys in force: current (signs), next (published), retired (published until their grace
/// ends).
#[derive(Debug, Clone)]
pub struct KeyRing {
    pub current: Key,
    pub next: Key,
    pub retired: Vec<Key>,
}

impl KeyRing {
    /// Fresh random keys held only in memory.
    pub fn ephemeral() -> Self {
        Self {
            current: Key::from_signing_key(&Key::generate()),
            next: Key::from_signing_key(&Key::generate()),
            retired: Vec::new(),
        }
    }

    /// Loads `dir` (creating missing `current.pem`/`next.pem` when `generate`); retired keys
    /// whose grace period has ended at `now` are ignored.
    pub fn load(
        dir: &Path,
        generate: bool,
        grace: Duration,
        now: DateTime<Utc>,
    ) -> Result<Self, KeyError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| KeyError::Io { path, source }
        };
        if generate {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
            for name in ["current.pem", "next.pem"] {
                let path = dir.join(name);
                if !path.exists() {
                    write_new_key(&path)?;
                    tracing::warn!(message = "Generated a JWT signing key (dev only).", path = %path.display());
                }
            }
        }
        let load = |name: &str| {
            let path = dir.join(name);
            if path.exists() {
                Key::load(&path)
            } else {
                Err(KeyError::Missing(path))
            }
        };
        let current = load("current.pem")?;
        let next = load("next.pem")?;
        let mut retired = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io(dir))? {
            let entry = entry.map_err(io(dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(since) = name
                .strip_prefix("retired-")
                .and_then(|rest| rest.strip_suffix(".pem"))
                .and_then(|secs| secs.parse::<i64>().ok())
                .and_then(|secs| DateTime::from_timestamp(secs, 0))
            else {
                continue;
            };
            let until = since + grace;
            if until > now {
                let mut key = Key::load(&entry.path())?;
                key.published_until = Some(until);
                retired.push(key);
            }
        }
        // Newest retirement first.
        retired.sort_by_key(|key| std::cmp::Reverse(key.published_until));
        Ok(Self {
            current,
            next,
            retired,
        })
    }

    /// Every published key: current, next, then retired ones.
    pub fn published(&self) -> impl Iterator<Item = &Key> {
        [&self.current, &self.next]
            .into_iter()
            .chain(self.retired.iter())
    }

    /// The key with `kid` among the published ones.
    pub fn find(&self, kid: &str) -> Option<&Key> {
        self.published().find(|key| key.kid == kid)
    }

    /// The JWKS: message form and RFC 7517 JSON.
    pub fn jwks(&self) -> (Vec<pb::JsonWebKey>, String) {
        let keys: Vec<pb::JsonWebKey> = self.published().map(Key::jwk).collect();
        let json = serde_json::json!({
            "keys": keys.iter().map(|k| serde_json::json!({
                "kid": k.kid, "kty": k.kty, "crv": k.crv, "x": k.x, "alg": k.alg, "use": k.key_use,
            })).collect::<Vec<_>>()
        });
        (keys, json.to_string())
    }
}

fn write_new_key(path: &Path) -> Result<(), KeyError> {
    let pem = Key::generate()
        .to_pkcs8_pem(Default::default())
        .expect("an Ed25519 key always encodes as PEM");
    write_private(path, pem.as_bytes()).map_err(|source| KeyError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Writes a private key readable by the owner only, atomically (temp file + rename).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let tmp = path.with_extension("pem.tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// One rotation step on `dir`, at `now`: `current.pem` becomes `retired-<now>.pem`, `next.pem`
/// becomes `current.pem`, and a new `next.pem` is generated. Replicas pick the change up when
/// they restart (a rolling restart); the new current key was already published as `next`.
pub fn rotate(dir: &Path, now: DateTime<Utc>) -> Result<(), KeyError> {
    let io = |path: PathBuf| move |source| KeyError::Io { path, source };
    let current = dir.join("current.pem");
    let next = dir.join("next.pem");
    for path in [&current, &next] {
        if !path.exists() {
            return Err(KeyError::Missing(path.clone()));
        }
    }
    let retired = dir.join(format!("retired-{}.pem", now.timestamp()));
    std::fs::rename(&current, &retired).map_err(io(retired.clone()))?;
    std::fs::rename(&next, &current).map_err(io(current.clone()))?;
    write_new_key(&next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mirai-keys-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn missing_keys_are_an_error_unless_generated() {
        let dir = temp_dir();
        let grace = Duration::from_secs(3600);
        assert!(matches!(
            KeyRing::load(&dir, false, grace, Utc::now()),
            Err(KeyError::Missing(_))
        ));
        let ring = KeyRing::load(&dir, true, grace, Utc::now()).unwrap();
        assert_ne!(ring.current.kid, ring.next.kid);
        // Loading again reads the same files: same kids.
        let again = KeyRing::load(&dir, false, grace, Utc::now()).unwrap();
        assert_eq!(again.current.kid, ring.current.kid);
        assert_eq!(again.next.kid, ring.next.kid);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn rotation_promotes_next_and_keeps_the_old_key_for_the_grace_period() {
        let dir = temp_dir();
        let grace = Duration::from_secs(3600);
        let t0 = Utc::now();
        let before = KeyRing::load(&dir, true, grace, t0).unwrap();
        rotate(&dir, t0).unwrap();
        let after = KeyRing::load(&dir, false, grace, t0).unwrap();
        assert_eq!(after.current.kid, before.next.kid, "next became current");
        assert_ne!(after.next.kid, before.next.kid, "a new next was made");
        assert_eq!(after.retired.len(), 1);
        assert_eq!(
            after.retired[0].kid, before.current.kid,
            "old current retired"
        );
        let (jwks, json) = after.jwks();
        assert_eq!(jwks.len(), 3);
        assert!(json.contains(&before.current.kid));
        // After the grace period the retired key is no longer published.
        let later = KeyRing::load(&dir, false, grace, t0 + grace + Duration::from_secs(1)).unwrap();
        assert!(later.retired.is_empty());
        assert!(later.find(&before.current.kid).is_none());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn kid_is_the_rfc7638_thumbprint() {
        // RFC 8037 appendix A.3: the thumbprint of its example Ed25519 key.
        assert_eq!(
            thumbprint("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }
}
