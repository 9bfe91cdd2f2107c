//! Signed internal identity: who is calling a service, proven by a short-lived token.
//!
//! Every gRPC call between MiraiKakaku processes carries one metadata entry,
//! [`IDENTITY_HEADER`] (`x-mirai-identity`), holding an EdDSA (Ed25519) JWT minted by the
//! caller for this one call:
//!
//! | claim | meaning |
//! |---|---|
//! | `iss` | the calling process (`mirai-gateway`, `mirai-prediction`, …) |
//! | `aud` | the service called (`mirai-stock-data`); the service accepts only its own name |
//! | `sub`, `roles`, `akid` | the end user, their roles and API key id — only when the caller acts for a user it verified; absent for a service acting as itself |
//! | `jti`, `iat`, `exp` | unique id, issued-at, expiry: at most [`MAX_LIFETIME`] after `iat` |
//!
//! A token is minted per (audience, principal) and reused for calls to the same service for
//! the same principal while it is younger than [`REUSE`] (half its lifetime), and a service
//! verifies each distinct token once and remembers the caller it proved until it expires:
//! Ed25519 signing and verification were a fifth of the gateway's CPU on the quote path when
//! every call minted its own. What a stolen token allows is unchanged (any token could already
//! be replayed until its `exp`). The request id, which differs per call, travels beside the
//! token in [`REQUEST_ID_HEADER`] (unauthenticated: it only labels logs); a token minted by an
//! older release may still carry it as `rid`, which is read when the header is absent.
//!
//! The server side ([`Verifier`], run by the server layer for every call except health and
//! reflection) checks the signature against a set of trusted public keys, each bound to the one
//! issuer allowed to use it (so the prediction service's key cannot speak for the gateway), the
//! audience, the expiry (with [`LEEWAY`]) and the lifetime, and puts the verified [`Caller`]
//! into the request's extensions, where [`crate::auth`] reads the principal. A call without a
//! valid token is answered `UNAUTHENTICATED`. Headers such as `x-mirai-user-id` mean nothing.
//!
//! Keys ([`Identity::from_env`]): `MIRAI_INTERNAL_SIGNING_KEY` is the path of this process's
//! PKCS#8 PEM Ed25519 private key; `MIRAI_INTERNAL_TRUSTED_KEYS` the path of a JSON file
//! `{"keys":[{"iss":"mirai-gateway","x":"<base64url public key>"}, …]}` (JWK members such as
//! `kty`, `crv`, `kid` may be present; a `kid`, if given, must be the key's RFC 7638
//! thumbprint, which is the `kid` every token carries). Rotation: add the new public key to the
//! trusted file everywhere, then switch the caller's private key, then remove the old public key
//! (see the README).

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::auth::Principal;
use crate::config::{ConfigError, Env, Profile};

/// The metadata entry carrying the token.
pub const IDENTITY_HEADER: &str = "x-mirai-identity";
/// The metadata entry carrying the request id of the call (beside the token, not in it).
pub const REQUEST_ID_HEADER: &str = "x-mirai-request-id";
/// How long a minted token is reused for further calls to the same service for the same
/// principal: half of [`MAX_LIFETIME`], so a reused token has at least 30 s left.
pub const REUSE: Duration = Duration::from_secs(MAX_LIFETIME.as_secs() / 2);
/// Tokens remembered on either side; past this, expired ones are dropped, then all.
const CACHE_LIMIT: usize = 10_000;
/// The longest lifetime a token may have (`exp - iat`); tokens are minted for this long.
pub const MAX_LIFETIME: Duration = Duration::from_secs(60);
/// Clock skew tolerated on `exp`.
pub const LEEWAY: Duration = Duration::from_secs(5);
/// The extra audience test tokens carry and test verifiers accept (see [`Identity::for_tests`]).
pub const TEST_AUDIENCE: &str = "mirai-tests";

const SIGNING_KEY_VAR: &str = "MIRAI_INTERNAL_SIGNING_KEY";
const TRUSTED_KEYS_VAR: &str = "MIRAI_INTERNAL_TRUSTED_KEYS";

/// RFC 7638 thumbprint of an Ed25519 JWK whose public key is `x` (base64url): the key id.
pub fn jwk_thumbprint(x: &str) -> String {
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// The verified caller of the current call, in the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The calling process (`iss`), e.g. `mirai-gateway`.
    pub service: String,
    /// The end user the caller acts for, if any.
    pub principal: Option<Principal>,
    /// The request id the caller passed on.
    pub request_id: Option<String>,
}

/// The claims of an internal token as minted.
#[derive(Serialize)]
struct OutgoingClaims<'a> {
    iss: &'a str,
    aud: &'a [&'a str],
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    roles: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    akid: Option<&'a str>,
    jti: String,
    iat: i64,
    exp: i64,
}

/// The claims read back (`aud` and `exp` are checked by the validation itself).
#[derive(Deserialize)]
struct IncomingClaims {
    iss: String,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    akid: Option<String>,
    #[serde(default)]
    rid: Option<String>,
    iat: i64,
    exp: i64,
}

// === Signing ===

/// Mints this process's tokens. Keys are parsed once.
#[derive(Clone)]
pub struct Signer {
    /// Tokens minted for (audience, principal), with when; shared by the clones.
    minted: Arc<Mutex<HashMap<TokenFor, (String, Instant)>>>,
    issuer: String,
    kid: String,
    /// The public key (base64url), for the development trust set of one.
    x: String,
    key: EncodingKey,
    /// Where the request id comes from (the gateway's task-local; in services the incoming
    /// call's `rid`).
    request_id: fn() -> Option<String>,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("issuer", &self.issuer)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer for `issuer` with `key`.
    pub fn new(issuer: impl Into<String>, key: &SigningKey) -> Self {
        let x = URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes());
        let der = key
            .to_pkcs8_der()
            .expect("an Ed25519 key always encodes as PKCS#8");
        Self {
            issuer: issuer.into(),
            kid: jwk_thumbprint(&x),
            x,
            key: EncodingKey::from_ed_der(der.as_bytes()),
            request_id: incoming_request_id,
            minted: Arc::default(),
        }
    }

    /// Takes the request id of each call from `source` instead of the incoming call's.
    pub fn with_request_id(mut self, source: fn() -> Option<String>) -> Self {
        self.request_id = source;
        self
    }

    /// The request id to send with a call made now.
    pub fn request_id(&self) -> Option<String> {
        (self.request_id)()
    }

    /// A token for a call to `audience` acting for `user`: the one minted for the same pair
    /// less than [`REUSE`] ago, or a new one.
    pub fn token(&self, audience: &str, user: Option<&Principal>) -> String {
        let key = TokenFor {
            audience: audience.to_owned(),
            user: user.cloned(),
        };
        let now = Instant::now();
        let mut minted = self.minted.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((token, at)) = minted.get(&key)
            && now.duration_since(*at) < REUSE
        {
            return token.clone();
        }
        let token = self.sign(&[audience], user);
        make_room(&mut minted, |(_, at)| now.duration_since(*at) < REUSE);
        minted.insert(key, (token.clone(), now));
        token
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// A new token for a call to `audience` (a service name, `mirai-stock-data`), acting for
    /// `user` when given.
    pub fn sign(&self, audience: &[&str], user: Option<&Principal>) -> String {
        let now = chrono::Utc::now().timestamp();
        let claims = OutgoingClaims {
            iss: &self.issuer,
            aud: audience,
            sub: user.map(|p| p.user_id.as_str()),
            roles: user
                .map(|p| p.roles.iter().map(|r| r.as_str()).collect())
                .unwrap_or_default(),
            akid: user.and_then(|p| p.api_key_id.as_deref()),
            jti: uuid::Uuid::now_v7().simple().to_string(),
            iat: now,
            exp: now + MAX_LIFETIME.as_secs() as i64,
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.key)
            .expect("EdDSA signing of serialisable claims cannot fail")
    }
}

tokio::task_local! {
    /// The `rid` of the call being handled, so outgoing calls pass it on.
    static INCOMING_REQUEST_ID: Option<String>;
}

/// The request id of the incoming call being handled (inside the server layer).
pub fn incoming_request_id() -> Option<String> {
    INCOMING_REQUEST_ID.try_with(Clone::clone).ok().flatten()
}

/// Runs `future` with `request_id` as the incoming call's request id.
pub(crate) async fn with_incoming_request_id<F: Future>(
    request_id: Option<String>,
    future: F,
) -> F::Output {
    INCOMING_REQUEST_ID.scope(request_id, future).await
}

// === Verifying ===

/// Why a call's token was refused. The message goes to the caller (another of our processes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("missing {IDENTITY_HEADER}: internal calls must carry a signed identity token")]
    Missing,
    #[error("{IDENTITY_HEADER} is malformed: {0}")]
    Malformed(String),
    #[error("{IDENTITY_HEADER} is signed by an unknown key `{0}`")]
    UnknownKey(String),
    #[error("{IDENTITY_HEADER}: key `{kid}` may not sign for `{issuer}`")]
    WrongIssuer { kid: String, issuer: String },
    #[error("{IDENTITY_HEADER} is invalid: {0}")]
    Invalid(String),
    #[error("{IDENTITY_HEADER} lives longer than {} s", MAX_LIFETIME.as_secs())]
    TooLong,
}

impl From<Refusal> for tonic::Status {
    fn from(refusal: Refusal) -> Self {
        tonic::Status::unauthenticated(refusal.to_string())
    }
}

/// A trusted public key and the issuers that may sign with it (`None`: any, test keys only).
struct TrustedKey {
    key: DecodingKey,
    issuers: Option<BTreeSet<String>>,
}

impl fmt::Debug for TrustedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustedKey")
            .field("issuers", &self.issuers)
            .finish_non_exhaustive()
    }
}

/// Verifies tokens addressed to one service. Keys are parsed once; a verification is a map
/// lookup, one Ed25519 signature check and a few comparisons.
pub struct Verifier {
    keys: HashMap<String, TrustedKey>,
    validation: Validation,
    /// Tokens verified, with the caller each proved and its `exp` (Unix seconds).
    verified: Mutex<HashMap<String, (Caller, i64)>>,
}

/// Makes room for one more entry in a cache of at most [`CACHE_LIMIT`]: when full, drops the
/// entries `live` rejects, then, if that was not enough, all.
fn make_room<K, V>(cache: &mut HashMap<K, V>, live: impl Fn(&V) -> bool) {
    if cache.len() >= CACHE_LIMIT {
        cache.retain(|_, value| live(value));
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
    }
}

/// Whom a reusable token is for.
#[derive(Clone, PartialEq, Eq, Hash)]
struct TokenFor {
    audience: String,
    user: Option<Principal>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kids: Vec<&String> = self.keys.keys().collect();
        kids.sort();
        f.debug_struct("Verifier")
            .field("audience", &self.validation.aud)
            .field("kids", &kids)
            .finish()
    }
}

impl Verifier {
    fn new(audiences: &[&str], keys: HashMap<String, TrustedKey>) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_audience(audiences);
        validation.set_required_spec_claims(&["exp", "aud", "iss"]);
        validation.leeway = LEEWAY.as_secs();
        validation.validate_nbf = false;
        Self {
            keys,
            validation,
            verified: Mutex::default(),
        }
    }

    /// The caller a token proves, or why it proves nothing. A token verified before is
    /// answered from memory until its `exp` (plus [`LEEWAY`]).
    pub fn verify(&self, token: &str) -> Result<Caller, Refusal> {
        let now = chrono::Utc::now().timestamp();
        let leeway = LEEWAY.as_secs() as i64;
        {
            let verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((caller, exp)) = verified.get(token)
                && now <= exp + leeway
            {
                return Ok(caller.clone());
            }
        }
        let (caller, exp) = self.verify_signed(token)?;
        let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        make_room(&mut verified, |(_, exp)| now <= *exp + leeway);
        verified.insert(token.to_owned(), (caller.clone(), exp));
        Ok(caller)
    }

    /// The signature and claims of `token` checked, and its `exp`.
    fn verify_signed(&self, token: &str) -> Result<(Caller, i64), Refusal> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| Refusal::Malformed(e.to_string()))?;
        let kid = header
            .kid
            .ok_or_else(|| Refusal::Malformed("no `kid` in the header".to_owned()))?;
        let trusted = self
            .keys
            .get(&kid)
            .ok_or_else(|| Refusal::UnknownKey(kid.clone()))?;
        let claims = jsonwebtoken::decode::<IncomingClaims>(token, &trusted.key, &self.validation)
            .map_err(|e| Refusal::Invalid(e.to_string()))?
            .claims;
        if let Some(issuers) = &trusted.issuers
            && !issuers.contains(&claims.iss)
        {
            return Err(Refusal::WrongIssuer {
                kid,
                issuer: claims.iss,
            });
        }
        if claims.exp.saturating_sub(claims.iat) > MAX_LIFETIME.as_secs() as i64 {
            return Err(Refusal::TooLong);
        }
        let principal = match claims.sub.filter(|sub| !sub.is_empty()) {
            None => None,
            Some(user_id) => Some(Principal {
                user_id,
                roles: claims
                    .roles
                    .iter()
                    .map(|role| role.parse())
                    .collect::<Result<_, _>>()
                    .map_err(Refusal::Invalid)?,
                api_key_id: claims.akid,
            }),
        };
        let caller = Caller {
            service: claims.iss,
            principal,
            request_id: claims.rid,
        };
        Ok((caller, claims.exp))
    }

    /// The caller of an incoming call, from its [`IDENTITY_HEADER`], with the request id of
    /// its [`REQUEST_ID_HEADER`].
    pub fn verify_headers(&self, headers: &http::HeaderMap) -> Result<Caller, Refusal> {
        let token = headers
            .get(IDENTITY_HEADER)
            .ok_or(Refusal::Missing)?
            .to_str()
            .map_err(|_| Refusal::Malformed("not ASCII".to_owned()))?;
        let mut caller = self.verify(token)?;
        if let Some(request_id) = headers
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 128)
        {
            caller.request_id = Some(request_id.to_owned());
        }
        Ok(caller)
    }
}

// === Keys from configuration ===

/// One entry of the trusted-keys file.
#[derive(Deserialize)]
struct TrustedKeyEntry {
    iss: String,
    x: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    kty: Option<String>,
    #[serde(default)]
    crv: Option<String>,
}

#[derive(Deserialize)]
struct TrustedKeyFile {
    keys: Vec<TrustedKeyEntry>,
}

/// Parses the trusted-keys JSON (see the module documentation): key id → (key, issuers). The
/// same key may be listed once per issuer.
fn parse_trusted_keys(json: &str) -> Result<HashMap<String, TrustedKey>, String> {
    let file: TrustedKeyFile =
        serde_json::from_str(json).map_err(|e| format!("not a trusted-keys JSON file: {e}"))?;
    let mut keys: HashMap<String, TrustedKey> = HashMap::new();
    for entry in file.keys {
        if entry.kty.as_deref().is_some_and(|kty| kty != "OKP")
            || entry.crv.as_deref().is_some_and(|crv| crv != "Ed25519")
        {
            return Err(format!(
                "the key of `{}` is not an Ed25519 (OKP) key",
                entry.iss
            ));
        }
        let raw = URL_SAFE_NO_PAD
            .decode(entry.x.trim_end_matches('='))
            .ok()
            .filter(|raw| raw.len() == 32)
            .ok_or_else(|| {
                format!(
                    "the key of `{}`: `x` is not a base64url 32-byte public key",
                    entry.iss
                )
            })?;
        let x = URL_SAFE_NO_PAD.encode(&raw);
        let kid = jwk_thumbprint(&x);
        if let Some(given) = entry.kid.as_deref()
            && given != kid
        {
            return Err(format!(
                "the key of `{}`: kid `{given}` is not its RFC 7638 thumbprint `{kid}`",
                entry.iss
            ));
        }
        let key = DecodingKey::from_ed_components(&x).map_err(|e| e.to_string())?;
        keys.entry(kid)
            .or_insert_with(|| TrustedKey {
                key,
                issuers: Some(BTreeSet::new()),
            })
            .issuers
            .get_or_insert_with(BTreeSet::new)
            .insert(entry.iss);
    }
    if keys.is_empty() {
        return Err("no keys: at least one caller must be trusted".to_owned());
    }
    Ok(keys)
}

fn read(var: &str, path: &str) -> Result<String, ConfigError> {
    std::fs::read_to_string(Path::new(path)).map_err(|e| ConfigError::Invalid {
        name: var.to_owned(),
        reason: format!("cannot read `{path}`: {e}"),
    })
}

/// This process's side of internal identity: the signer of its outgoing calls and the
/// verifier of its incoming ones. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Identity {
    pub signer: Arc<Signer>,
    pub verifier: Arc<Verifier>,
    /// The key variables that were unset, replaced by development stand-ins (an ephemeral key,
    /// a trust set of one): [`Identity::require_keys`] refuses them in production.
    missing: Vec<&'static str>,
    production: bool,
}

impl Identity {
    /// Reads the keys of the process `name` (`mirai-stock-data`): `MIRAI_INTERNAL_SIGNING_KEY`
    /// and `MIRAI_INTERNAL_TRUSTED_KEYS` (paths); a file that cannot be read or parsed is an
    /// error. An unset variable gets a development stand-in: an ephemeral signing key, a trust
    /// set holding only this process's own key. Such a process can call nobody and be called
    /// by nobody but itself (health answers regardless): right for a process started on its
    /// own, useless for a stack — `scripts/dev-up` generates keys. Whatever serves calls must
    /// then check [`Identity::require_keys`], which refuses stand-ins with
    /// `MIRAI_PROFILE=production` (one-shot modes such as `--migrate-only` need no keys).
    pub fn from_env(env: &Env, name: &str) -> Result<Self, ConfigError> {
        let profile = env.or("MIRAI_PROFILE", Profile::Development)?;
        let mut missing = Vec::new();
        let signing_key = match env.get(SIGNING_KEY_VAR) {
            Some(path) => {
                let pem = read(SIGNING_KEY_VAR, path)?;
                SigningKey::from_pkcs8_pem(&pem).map_err(|e| ConfigError::Invalid {
                    name: SIGNING_KEY_VAR.to_owned(),
                    reason: format!("`{path}` is not a PKCS#8 PEM Ed25519 private key: {e}"),
                })?
            }
            None => {
                missing.push(SIGNING_KEY_VAR);
                SigningKey::from_bytes(&rand::random())
            }
        };
        let signer = Signer::new(name, &signing_key);
        let keys = match env.get(TRUSTED_KEYS_VAR) {
            Some(path) => parse_trusted_keys(&read(TRUSTED_KEYS_VAR, path)?).map_err(|reason| {
                ConfigError::Invalid {
                    name: TRUSTED_KEYS_VAR.to_owned(),
                    reason: format!("`{path}`: {reason}"),
                }
            })?,
            None => {
                missing.push(TRUSTED_KEYS_VAR);
                own_key(&signer)
            }
        };
        Ok(Self {
            verifier: Arc::new(Verifier::new(&[name], keys)),
            signer: Arc::new(signer),
            missing,
            production: profile == Profile::Production,
        })
    }

    /// Before serving or calling: in production, the first key variable that was unset is a
    /// configuration error; in development each stand-in is logged as a warning.
    pub fn require_keys(&self) -> Result<(), ConfigError> {
        if self.production
            && let Some(var) = self.missing.first()
        {
            return Err(ConfigError::Missing {
                name: (*var).to_owned(),
            });
        }
        for var in &self.missing {
            tracing::warn!(
                message = "Internal identity key not configured: development stand-in in use \
                           (an ephemeral signing key no other process trusts, or a trust set \
                           of this process only).",
                variable = var,
                service = self.signer.issuer
            );
        }
        Ok(())
    }

    /// The test identity of `name`: signs with the fixed [`test_signing_key`] and accepts
    /// tokens signed by it for any issuer, addressed to `name` or to [`TEST_AUDIENCE`].
    pub fn for_tests(name: &str) -> Self {
        let signer = Signer::new(name, &test_signing_key());
        let mut keys = own_key(&signer);
        for key in keys.values_mut() {
            key.issuers = None;
        }
        Self {
            verifier: Arc::new(Verifier::new(&[name, TEST_AUDIENCE], keys)),
            signer: Arc::new(signer),
            missing: Vec::new(),
            production: false,
        }
    }

    /// The same identity, its tokens taking the request id from `source` (the gateway's
    /// current HTTP request) instead of the incoming call's.
    pub fn with_request_id(self, source: fn() -> Option<String>) -> Self {
        Self {
            signer: Arc::new((*self.signer).clone().with_request_id(source)),
            ..self
        }
    }

    /// An identity from keys in code (tests of the verification itself).
    pub fn from_keys(
        name: &str,
        signing_key: &SigningKey,
        trusted_keys_json: &str,
    ) -> Result<Self, String> {
        Ok(Self {
            signer: Arc::new(Signer::new(name, signing_key)),
            verifier: Arc::new(Verifier::new(
                &[name],
                parse_trusted_keys(trusted_keys_json)?,
            )),
            missing: Vec::new(),
            production: false,
        })
    }
}

/// A trust set holding only `signer`'s key, for its issuer.
fn own_key(signer: &Signer) -> HashMap<String, TrustedKey> {
    HashMap::from([(
        signer.kid.clone(),
        TrustedKey {
            key: DecodingKey::from_ed_components(&signer.x).expect("32-byte Ed25519 public key"),
            issuers: Some(BTreeSet::from([signer.issuer.clone()])),
        },
    )])
}

/// The key every test identity signs with. Never trusted outside [`Identity::for_tests`] and
/// the files the `testing` helpers write.
pub fn test_signing_key() -> SigningKey {
    SigningKey::from_bytes(&[0x4d; 32])
}

/// The trusted-keys JSON listing `key` for each of `issuers`.
pub fn trusted_keys_json(key: &SigningKey, issuers: &[&str]) -> String {
    let x = URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes());
    let keys: Vec<serde_json::Value> = issuers
        .iter()
        .map(|iss| {
            serde_json::json!({
                "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
                "kid": jwk_thumbprint(&x), "iss": iss, "x": x,
            })
        })
        .collect();
    serde_json::json!({ "keys": keys }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    const STOCK: &str = "mirai-stock-data";

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn admin() -> Principal {
        Principal {
            user_id: "u1".into(),
            roles: [Role::User, Role::Admin].into(),
            api_key_id: Some("k1".into()),
        }
    }

    /// stock-data trusting the gateway's key (seed 1) for `mirai-gateway` and prediction's
    /// key (seed 2) for `mirai-prediction`.
    fn stock_data() -> Verifier {
        let json = format!(
            r#"{{"keys": {}}}"#,
            serde_json::json!([
                serde_json::from_str::<serde_json::Value>(&trusted_keys_json(
                    &key(1),
                    &["mirai-gateway"]
                ))
                .unwrap()["keys"][0],
                serde_json::from_str::<serde_json::Value>(&trusted_keys_json(
                    &key(2),
                    &["mirai-prediction"]
                ))
                .unwrap()["keys"][0],
            ])
        );
        Arc::try_unwrap(Identity::from_keys(STOCK, &key(9), &json).unwrap().verifier).unwrap()
    }

    #[test]
    fn a_token_is_reused_for_one_service_and_principal_only() {
        let gateway = Signer::new("mirai-gateway", &key(1));
        let anonymous = gateway.token(STOCK, None);
        assert_eq!(gateway.token(STOCK, None), anonymous, "reused");
        assert_eq!(
            gateway.clone().token(STOCK, None),
            anonymous,
            "shared by clones"
        );
        let for_admin = gateway.token(STOCK, Some(&admin()));
        assert_ne!(for_admin, anonymous);
        assert_eq!(gateway.token(STOCK, Some(&admin())), for_admin);
        let mut plain_user = admin();
        plain_user.roles = [Role::User].into();
        assert_ne!(
            gateway.token(STOCK, Some(&plain_user)),
            for_admin,
            "other roles"
        );
        assert_ne!(
            gateway.token("mirai-user", None),
            anonymous,
            "another audience"
        );
        let verifier = stock_data();
        assert_eq!(
            verifier.verify(&for_admin).unwrap().principal,
            Some(admin())
        );
        assert_eq!(verifier.verify(&anonymous).unwrap().principal, None);
    }

    #[test]
    fn a_verified_token_is_remembered_and_each_call_brings_its_request_id() {
        let gateway = Signer::new("mirai-gateway", &key(1));
        let verifier = stock_data();
        let token = gateway.token(STOCK, Some(&admin()));
        let headers = |request_id: Option<&str>| {
            let mut headers = http::HeaderMap::new();
            headers.insert(IDENTITY_HEADER, token.parse().unwrap());
            if let Some(id) = request_id {
                headers.insert(REQUEST_ID_HEADER, id.parse().unwrap());
            }
            headers
        };
        let first = verifier.verify_headers(&headers(Some("r1"))).unwrap();
        assert_eq!(first.request_id.as_deref(), Some("r1"));
        let again = verifier.verify_headers(&headers(Some("r2"))).unwrap();
        assert_eq!(again.request_id.as_deref(), Some("r2"));
        assert_eq!(again.principal, Some(admin()));
        assert_eq!(
            verifier.verify_headers(&headers(None)).unwrap().request_id,
            None
        );
        assert_eq!(verifier.verified.lock().unwrap().len(), 1);
        // A refused token is not remembered: refused every time.
        let impostor = Signer::new("mirai-gateway", &key(7)).token(STOCK, None);
        for _ in 0..2 {
            assert!(verifier.verify(&impostor).is_err());
        }
        assert_eq!(verifier.verified.lock().unwrap().len(), 1);
        // An expired token that was verified while valid is refused once it expires.
        let expired = jsonwebtoken::encode(
            &{
                let mut header = Header::new(Algorithm::EdDSA);
                header.kid = Some(gateway.kid.clone());
                header
            },
            &serde_json::json!({"iss": "mirai-gateway", "aud": STOCK, "iat": 0, "exp": 1, "jti": "j"}),
            &gateway.key,
        )
        .unwrap();
        verifier
            .verified
            .lock()
            .unwrap()
            .insert(expired.clone(), (first.clone(), 1));
        assert!(
            verifier.verify(&expired).is_err(),
            "remembered past its exp"
        );
    }

    #[test]
    fn a_minted_token_proves_its_caller_and_user() {
        let gateway = Signer::new("mirai-gateway", &key(1));
        let token = gateway.sign(&[STOCK], Some(&admin()));
        let caller = stock_data().verify(&token).unwrap();
        assert_eq!(caller.service, "mirai-gateway");
        assert_eq!(caller.principal, Some(admin()));
        // A service acting as itself carries no user.
        let prediction = Signer::new("mirai-prediction", &key(2));
        let caller = stock_data()
            .verify(&prediction.sign(&[STOCK], None))
            .unwrap();
        assert_eq!(caller.service, "mirai-prediction");
        assert_eq!(caller.principal, None);
    }

    #[test]
    fn tokens_are_refused_for_each_reason() {
        let verifier = stock_data();
        // Wrong audience.
        let gateway = Signer::new("mirai-gateway", &key(1));
        let err = verifier
            .verify(&gateway.sign(&["mirai-user"], Some(&admin())))
            .unwrap_err();
        assert!(
            matches!(err, Refusal::Invalid(ref m) if m.contains("Audience")),
            "{err}"
        );
        // A key nobody trusts.
        let stranger = Signer::new("mirai-gateway", &key(7));
        assert!(matches!(
            verifier.verify(&stranger.sign(&[STOCK], Some(&admin()))),
            Err(Refusal::UnknownKey(_))
        ));
        // A trusted key speaking for another issuer.
        let impostor = Signer::new("mirai-gateway", &key(2));
        assert!(matches!(
            verifier.verify(&impostor.sign(&[STOCK], Some(&admin()))),
            Err(Refusal::WrongIssuer { .. })
        ));
        // A changed payload (roles raised) breaks the signature.
        let token = gateway.sign(&[STOCK], None);
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
        claims["sub"] = "u1".into();
        claims["roles"] = serde_json::json!(["admin"]);
        parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
        assert!(matches!(
            verifier.verify(&parts.join(".")),
            Err(Refusal::Invalid(_))
        ));
        assert!(matches!(
            verifier.verify("junk"),
            Err(Refusal::Malformed(_))
        ));
        assert_eq!(
            verifier.verify_headers(&http::HeaderMap::new()),
            Err(Refusal::Missing)
        );
    }

    /// Signs `claims` with the gateway's key as `kid` says.
    fn forge(claims: serde_json::Value) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        let x = URL_SAFE_NO_PAD.encode(key(1).verifying_key().as_bytes());
        header.kid = Some(jwk_thumbprint(&x));
        let der = key(1).to_pkcs8_der().unwrap();
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ed_der(der.as_bytes())).unwrap()
    }

    #[test]
    fn expired_and_long_lived_tokens_are_refused() {
        let now = chrono::Utc::now().timestamp();
        let expired = forge(serde_json::json!({
            "iss": "mirai-gateway", "aud": STOCK, "iat": now - 120, "exp": now - 60, "jti": "j"
        }));
        let err = stock_data().verify(&expired).unwrap_err();
        assert!(
            matches!(err, Refusal::Invalid(ref m) if m.contains("Expired")),
            "{err}"
        );
        // Within the leeway still passes.
        let just = forge(serde_json::json!({
            "iss": "mirai-gateway", "aud": STOCK, "iat": now - 62, "exp": now - 2, "jti": "j"
        }));
        assert!(stock_data().verify(&just).is_ok());
        let long = forge(serde_json::json!({
            "iss": "mirai-gateway", "aud": STOCK, "iat": now, "exp": now + 3600, "jti": "j"
        }));
        assert_eq!(stock_data().verify(&long), Err(Refusal::TooLong));
        let no_exp = forge(serde_json::json!({ "iss": "mirai-gateway", "aud": STOCK, "iat": now }));
        assert!(stock_data().verify(&no_exp).is_err());
        let bad_role = forge(serde_json::json!({
            "iss": "mirai-gateway", "aud": STOCK, "iat": now, "exp": now + 30, "sub": "u", "roles": ["root"]
        }));
        assert!(matches!(
            stock_data().verify(&bad_role),
            Err(Refusal::Invalid(_))
        ));
    }

    #[test]
    fn trusted_key_files_are_checked() {
        assert!(
            parse_trusted_keys(r#"{"keys":[]}"#)
                .unwrap_err()
                .contains("no keys")
        );
        assert!(
            parse_trusted_keys("[]")
                .unwrap_err()
                .contains("not a trusted-keys")
        );
        let err = parse_trusted_keys(r#"{"keys":[{"iss":"a","x":"c2hvcnQ"}]}"#).unwrap_err();
        assert!(err.contains("32-byte"), "{err}");
        let x = URL_SAFE_NO_PAD.encode(key(1).verifying_key().as_bytes());
        let err = parse_trusted_keys(&format!(
            r#"{{"keys":[{{"iss":"a","x":"{x}","kid":"other"}}]}}"#
        ))
        .unwrap_err();
        assert!(err.contains("thumbprint"), "{err}");
        let err = parse_trusted_keys(&format!(
            r#"{{"keys":[{{"iss":"a","x":"{x}","kty":"EC"}}]}}"#
        ))
        .unwrap_err();
        assert!(err.contains("Ed25519"), "{err}");
        // One key for two issuers merges.
        let keys = parse_trusted_keys(&trusted_keys_json(&key(1), &["a", "b"])).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(
            keys.values()
                .next()
                .unwrap()
                .issuers
                .as_ref()
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn production_requires_keys_and_development_trusts_only_itself() {
        let keyless =
            Identity::from_env(&Env::from_pairs([("MIRAI_PROFILE", "production")]), STOCK)
                .expect("one-shot modes load the configuration without keys");
        let err = keyless.require_keys().unwrap_err();
        assert_eq!(
            err.to_string(),
            "MIRAI_INTERNAL_SIGNING_KEY is required but not set"
        );

        let dir = tempfile::tempdir().unwrap();
        let pem_path = dir.path().join("signing.pem");
        std::fs::write(
            &pem_path,
            key(1).to_pkcs8_pem(Default::default()).unwrap().as_bytes(),
        )
        .unwrap();
        let pem = pem_path.to_str().unwrap();
        let err = Identity::from_env(
            &Env::from_pairs([("MIRAI_PROFILE", "production"), (SIGNING_KEY_VAR, pem)]),
            STOCK,
        )
        .unwrap()
        .require_keys()
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "MIRAI_INTERNAL_TRUSTED_KEYS is required but not set"
        );

        let trusted_path = dir.path().join("trusted.json");
        std::fs::write(&trusted_path, trusted_keys_json(&key(1), &[STOCK])).unwrap();
        let identity = Identity::from_env(
            &Env::from_pairs([
                ("MIRAI_PROFILE", "production"),
                (SIGNING_KEY_VAR, pem),
                (TRUSTED_KEYS_VAR, trusted_path.to_str().unwrap()),
            ]),
            STOCK,
        )
        .unwrap();
        identity.require_keys().unwrap();
        let own = identity.signer.sign(&[STOCK], None);
        assert_eq!(identity.verifier.verify(&own).unwrap().service, STOCK);

        let err = Identity::from_env(
            &Env::from_pairs([(SIGNING_KEY_VAR, "/nonexistent/key.pem")]),
            STOCK,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("MIRAI_INTERNAL_SIGNING_KEY is invalid: cannot read"),
            "{err}"
        );
        std::fs::write(&pem_path, "not a key").unwrap();
        let err =
            Identity::from_env(&Env::from_pairs([(SIGNING_KEY_VAR, pem)]), STOCK).unwrap_err();
        assert!(
            err.to_string()
                .contains("not a PKCS#8 PEM Ed25519 private key"),
            "{err}"
        );

        // Development without keys: an ephemeral key, trusted by this process only.
        let alone = Identity::from_env(&Env::default(), STOCK).unwrap();
        alone
            .require_keys()
            .expect("stand-ins are fine in development");
        let own = alone.signer.sign(&[STOCK], None);
        assert!(alone.verifier.verify(&own).is_ok());
        let other = Identity::from_env(&Env::default(), STOCK).unwrap();
        assert!(matches!(
            other.verifier.verify(&own),
            Err(Refusal::UnknownKey(_))
        ));
    }
}
