//! Authentication at the edge: access-token (JWT) verification against the user service's
//! JWKS, the principal of each request, and role requirements per route.
//!
//! Only what the user service issues is accepted: EdDSA (Ed25519) signatures, header
//! `typ: at+jwt` (RFC 9068) and a `kid` found in the current key set, claims `iss`, `aud`,
//! `sub`, `exp` and `nbf` all present and valid (5 s leeway for clock skew). An unknown `kid`
//! makes the key set refresh, at most once per [`MIN_REFRESH_INTERVAL`], so a key published
//! after our last fetch is picked up while a flood of forged `kid`s cannot hammer the user
//! service. The key set is also refetched when its `max_age` runs out, which is how a key
//! retired by rotation stops being accepted. While the user service cannot be reached, an
//! expired set keeps verifying for up to [`STALE_IF_ERROR`] (RFC 5861's stale-if-error), asked
//! again at most every [`STALE_RETRY`]: a user-service outage does not log everyone out, and a
//! rotation still takes effect as soon as the service answers.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use mirai_platform::auth::{Principal, Role};
use mirai_platform::grpc::client::UpstreamChannel;
use mirai_proto::user::v1 as user_pb;
use mirai_proto::user::v1::user_service_client::UserServiceClient;
use serde::Deserialize;
use tokio::sync::RwLock;

use crate::problem::Problem;

/// The fastest the key set is refetched because of an unknown `kid`.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(30);
/// How long past its `max_age` a key set keeps verifying while it cannot be refetched.
pub const STALE_IF_ERROR: Duration = Duration::from_secs(3600);
/// How often an expired set is asked for again while the user service fails.
pub const STALE_RETRY: Duration = Duration::from_secs(5);
/// Accepted clock skew for `exp` and `nbf`.
const LEEWAY_SECONDS: u64 = 5;

/// One public key of the set, as JWKS (RFC 7517 / RFC 8037) describes it.
#[derive(Debug, Clone, Deserialize)]
pub struct Jwk {
    pub kid: String,
    pub kty: String,
    #[serde(default)]
    pub crv: String,
    #[serde(default)]
    pub x: String,
    #[serde(default)]
    pub alg: String,
}

/// A fetched key set and how long it may be cached.
pub struct KeySet {
    pub keys: Vec<Jwk>,
    pub max_age: Duration,
}

/// Where keys come from (the user service's `GetJwks` in production).
pub type KeySource = Arc<dyn Fn() -> BoxFuture<'static, Result<KeySet, String>> + Send + Sync>;

struct Cache {
    keys: HashMap<String, DecodingKey>,
    expires: Option<Instant>,
    last_fetch: Option<Instant>,
    /// When the last fetch failed, if the last one did.
    last_failure: Option<Instant>,
}

/// Why a token was refused. Callers only ever see "invalid token"; the reason is logged.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("malformed token or header: {0}")]
    Malformed(String),
    #[error("algorithm {0} is not accepted")]
    Algorithm(String),
    #[error("header typ must be at+jwt")]
    Type,
    #[error("no key with this kid")]
    UnknownKey,
    #[error("key set unavailable: {0}")]
    KeysUnavailable(String),
    #[error("rejected: {0}")]
    Rejected(String),
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    roles: Vec<String>,
}

/// Verifies access tokens.
pub struct Verifier {
    validation: Validation,
    source: KeySource,
    cache: RwLock<Cache>,
}

impl Verifier {
    pub fn new(issuer: &str, audience: &str, source: KeySource) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        Self {
            validation,
            source,
            cache: RwLock::new(Cache {
                keys: HashMap::new(),
                expires: None,
                last_fetch: None,
                last_failure: None,
            }),
        }
    }

    /// The principal a valid token names.
    pub async fn verify(&self, token: &str) -> Result<Principal, TokenError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenError::Malformed(e.to_string()))?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::Algorithm(format!("{:?}", header.alg)));
        }
        if !header.typ.as_deref().is_some_and(|t| {
            t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt")
        }) {
            return Err(TokenError::Type);
        }
        let kid = header
            .kid
            .ok_or_else(|| TokenError::Malformed("no kid".to_owned()))?;
        let key = self.key(&kid).await?;
        let data = jsonwebtoken::decode::<Claims>(token, &key, &self.validation)
            .map_err(|e| TokenError::Rejected(e.to_string()))?;
        Ok(Principal {
            user_id: data.claims.sub,
            roles: data
                .claims
                .roles
                .iter()
                .filter_map(|r| r.parse::<Role>().ok())
                .collect::<BTreeSet<_>>(),
            api_key_id: None,
        })
    }

    async fn key(&self, kid: &str) -> Result<DecodingKey, TokenError> {
        {
            let cache = self.cache.read().await;
            let fresh = cache.expires.is_some_and(|e| Instant::now() < e);
            if fresh && let Some(key) = cache.keys.get(kid) {
                return Ok(key.clone());
            }
        }
        let mut cache = self.cache.write().await;
        let now = Instant::now();
        let fresh = cache.expires.is_some_and(|e| now < e);
        let stale_usable = !fresh && cache.expires.is_some_and(|e| now < e + STALE_IF_ERROR);
        let failed_recently = cache
            .last_failure
            .is_some_and(|at| at.elapsed() < STALE_RETRY);
        let may_refetch = cache
            .last_fetch
            .is_none_or(|at| at.elapsed() >= MIN_REFRESH_INTERVAL);
        // Refetch when the set expired (unless the user service just failed and the stale set
        // may still be used), or (rate-limited) when the kid is unknown.
        let expired = !(fresh || (stale_usable && failed_recently));
        if expired || (!cache.keys.contains_key(kid) && may_refetch) {
            self.fetch(&mut cache).await;
            let fresh = cache.expires.is_some_and(|e| Instant::now() < e);
            if !fresh {
                if !stale_usable {
                    // An expired set is not trusted: a retired key must stop working.
                    return Err(TokenError::KeysUnavailable(
                        "the user service's key set could not be fetched".to_owned(),
                    ));
                }
                tracing::warn!(
                    message =
                        "Verifying with the expired key set while the user service is unavailable."
                );
            }
        }
        cache.keys.get(kid).cloned().ok_or(TokenError::UnknownKey)
    }

    /// Fetches the key set into `cache`; a failure is logged and remembered.
    async fn fetch(&self, cache: &mut Cache) {
        match (self.source)().await {
            Ok(set) => {
                cache.keys = set
                    .keys
                    .iter()
                    .filter(|k| k.kty == "OKP" && k.crv == "Ed25519" && k.alg == "EdDSA")
                    .filter_map(|k| {
                        DecodingKey::from_ed_components(&k.x)
                            .ok()
                            .map(|key| (k.kid.clone(), key))
                    })
                    .collect();
                cache.expires = Some(Instant::now() + set.max_age);
                cache.last_fetch = Some(Instant::now());
                cache.last_failure = None;
            }
            Err(error) => {
                tracing::warn!(message = "JWKS fetch failed.", %error);
                cache.last_fetch = Some(Instant::now());
                cache.last_failure = Some(Instant::now());
            }
        }
    }

    /// Readiness: the gateway holds a key set it may verify with (fetching one if it has none;
    /// at most once a second).
    pub async fn ready(&self) -> Result<(), String> {
        let usable = |cache: &Cache| {
            !cache.keys.is_empty()
                && cache
                    .expires
                    .is_some_and(|e| Instant::now() < e + STALE_IF_ERROR)
        };
        if usable(&*self.cache.read().await) {
            return Ok(());
        }
        let mut cache = self.cache.write().await;
        if !usable(&cache)
            && cache
                .last_fetch
                .is_none_or(|at| at.elapsed() >= Duration::from_secs(1))
        {
            self.fetch(&mut cache).await;
        }
        if usable(&cache) {
            Ok(())
        } else {
            Err("no signing keys from the user service yet".to_owned())
        }
    }
}

/// Authenticates requests: access tokens locally against the JWKS, API keys through the user
/// service (so a revoked key stops working at once).
pub struct Authenticator {
    pub verifier: Verifier,
    pub user: UpstreamChannel,
}

/// The credential a request presents.
enum Credential<'a> {
    Bearer(&'a str),
    ApiKey(&'a str),
}

fn credential(headers: &HeaderMap) -> Result<Option<Credential<'_>>, &'static str> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().map_err(|_| AUTH_USAGE)?;
        let (scheme, rest) = value.split_once(' ').ok_or(AUTH_USAGE)?;
        let rest = rest.trim();
        return match scheme.to_ascii_lowercase().as_str() {
            "bearer" if !rest.is_empty() => Ok(Some(Credential::Bearer(rest))),
            "apikey" if !rest.is_empty() => Ok(Some(Credential::ApiKey(rest))),
            _ => Err(AUTH_USAGE),
        };
    }
    match headers.get(API_KEY_HEADER) {
        Some(value) => value
            .to_str()
            .ok()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(|v| Some(Credential::ApiKey(v)))
            .ok_or(AUTH_USAGE),
        None => Ok(None),
    }
}

const AUTH_USAGE: &str = "use `Authorization: Bearer <access token>`, `Authorization: ApiKey <key>` or `X-API-Key: <key>`";
const API_KEY_HEADER: &str = "x-api-key";

/// Middleware: a valid credential puts its [`Principal`] into the request's extensions; an
/// invalid one is answered with 401 at once; none means anonymous (routes decide with
/// [`Caller`] and [`Admin`]).
pub async fn authenticate(
    State(auth): State<Arc<Authenticator>>,
    mut request: Request,
    next: Next,
) -> Response {
    let principal = match credential(request.headers()) {
        Ok(None) => return next.run(request).await,
        Err(usage) => return unauthenticated(usage),
        Ok(Some(Credential::Bearer(token))) => match auth.verifier.verify(token).await {
            Ok(principal) => principal,
            Err(TokenError::KeysUnavailable(error)) => {
                tracing::warn!(message = "Cannot verify tokens: no key set.", %error);
                return Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "Service temporarily unavailable",
                )
                .detail("token keys are unavailable; retry shortly")
                .retry_after(5)
                .into_response();
            }
            Err(error) => {
                tracing::info!(message = "Token refused.", reason = %error);
                return unauthenticated("the access token is invalid or expired");
            }
        },
        Ok(Some(Credential::ApiKey(secret))) => {
            let client = crate::client::context(request.headers(), request.extensions());
            let answer = UserServiceClient::new(auth.user.clone())
                .authenticate_api_key(user_pb::AuthenticateApiKeyRequest {
                    secret: secret.to_owned(),
                    client: Some(client),
                })
                .await;
            match answer.map(|r| r.into_inner().principal) {
                Ok(Some(p)) => Principal {
                    roles: p
                        .roles
                        .iter()
                        .filter_map(|r| user_pb::Role::try_from(*r).ok())
                        .filter_map(|r| match r {
                            user_pb::Role::User => Some(Role::User),
                            user_pb::Role::Premium => Some(Role::Premium),
                            user_pb::Role::Admin => Some(Role::Admin),
                            user_pb::Role::Unspecified => None,
                        })
                        .collect(),
                    user_id: p.user_id,
                    api_key_id: p.api_key_id,
                },
                Ok(None) => return unauthenticated("the API key is invalid, revoked or expired"),
                Err(status) if status.code() == tonic::Code::Unauthenticated => {
                    return unauthenticated("the API key is invalid, revoked or expired");
                }
                Err(status) => return Problem::from(status).into_response(),
            }
        }
    };
    request.extensions_mut().insert(principal);
    next.run(request).await
}

fn unauthenticated(detail: &str) -> Response {
    let mut response = Problem::new(
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "Authentication required",
    )
    .detail(detail)
    .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static(r#"Bearer error="invalid_token""#),
    );
    response
}

/// An authenticated caller (401 for anonymous requests).
pub struct Caller(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .map(Caller)
            .ok_or_else(|| unauthenticated("this route needs an access token"))
    }
}

/// A caller with the admin role (401 anonymous, 403 without the role).
pub struct Admin(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Caller(principal) = Caller::from_request_parts(parts, state).await?;
        if principal.has(Role::Admin) {
            Ok(Admin(principal))
        } else {
            Err(
                Problem::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden")
                    .detail("this route needs the admin role")
                    .into_response(),
            )
        }
    }
}

/// A gRPC request carrying the caller, for the service's own role check.
pub fn forward<T>(message: T, principal: &Principal) -> Result<tonic::Request<T>, Problem> {
    let mut request = tonic::Request::new(message);
    principal.attach(&mut request);
    Ok(request)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use ed25519_dalek::SigningKey;
    use ed25519_dalek::pkcs8::EncodePrivateKey as _;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::{Value, json};

    use super::*;

    const ISS: &str = "https://id.mirai.test";
    const AUD: &str = "mirai-api";

    struct Key {
        kid: &'static str,
        signing: SigningKey,
    }

    impl Key {
        fn new(kid: &'static str) -> Self {
            Self {
                kid,
                signing: SigningKey::from_bytes(&rand::random::<[u8; 32]>()),
            }
        }

        fn jwk(&self) -> Jwk {
            Jwk {
                kid: self.kid.to_owned(),
                kty: "OKP".into(),
                crv: "Ed25519".into(),
                x: URL_SAFE_NO_PAD.encode(self.signing.verifying_key().as_bytes()),
                alg: "EdDSA".into(),
            }
        }

        fn sign(&self, claims: &Value) -> String {
            let mut header = Header::new(Algorithm::EdDSA);
            header.typ = Some("at+jwt".into());
            header.kid = Some(self.kid.into());
            let der = self.signing.to_pkcs8_der().unwrap();
            jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(der.as_bytes()))
                .unwrap()
        }
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    fn claims() -> Value {
        json!({
            "iss": ISS, "aud": AUD, "sub": "0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
            "iat": now(), "nbf": now(), "exp": now() + 600, "jti": "t1",
            "roles": ["user", "premium"]
        })
    }

    /// A verifier over the key sets `sets` returns in turn (the last one repeats), counting
    /// fetches.
    fn verifier(sets: Vec<Vec<Jwk>>, max_age: Duration) -> (Verifier, Arc<AtomicUsize>) {
        let fetches = Arc::new(AtomicUsize::new(0));
        let counter = fetches.clone();
        let source: KeySource = Arc::new(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let keys = sets[n.min(sets.len() - 1)].clone();
            Box::pin(async move { Ok(KeySet { keys, max_age }) })
        });
        (Verifier::new(ISS, AUD, source), fetches)
    }

    fn with(mut claims: Value, key: &str, value: Value) -> Value {
        claims[key] = value;
        claims
    }

    #[tokio::test]
    async fn a_valid_token_names_its_principal() {
        let k1 = Key::new("k1");
        let (verifier, _) = verifier(vec![vec![k1.jwk()]], Duration::from_secs(300));
        let principal = verifier.verify(&k1.sign(&claims())).await.unwrap();
        assert_eq!(principal.user_id, "0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b");
        assert_eq!(principal.roles, [Role::User, Role::Premium].into());
    }

    #[tokio::test]
    async fn the_attack_suite_is_refused() {
        let k1 = Key::new("k1");
        let (verifier, _) = verifier(vec![vec![k1.jwk()]], Duration::from_secs(300));
        let good = k1.sign(&claims());
        let parts: Vec<&str> = good.split('.').collect();

        // alg: none, no signature.
        let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"at+jwt","kid":"k1"}"#);
        let alg_none = format!("{none_header}.{}.", parts[1]);
        // HS256 "signed" with the public key as the HMAC secret (key confusion).
        let mut hs = Header::new(Algorithm::HS256);
        hs.typ = Some("at+jwt".into());
        hs.kid = Some("k1".into());
        let public = k1.signing.verifying_key().to_bytes();
        let confused =
            jsonwebtoken::encode(&hs, &claims(), &EncodingKey::from_secret(&public)).unwrap();
        // The payload changed after signing (roles: admin).
        let forged_payload = URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&with(claims(), "roles", json!(["admin"]))).unwrap());
        let tampered = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
        // No typ.
        let mut untyped = Header::new(Algorithm::EdDSA);
        untyped.kid = Some("k1".into());
        let der = k1.signing.to_pkcs8_der().unwrap();
        let no_typ = jsonwebtoken::encode(
            &untyped,
            &claims(),
            &EncodingKey::from_ed_der(der.as_bytes()),
        )
        .unwrap();

        type Expect = fn(&TokenError) -> bool;
        let malformed: Expect = |e| matches!(e, TokenError::Malformed(_));
        let rejected: Expect = |e| matches!(e, TokenError::Rejected(_));
        let cases: [(&str, String, Expect); 11] = [
            ("alg none", alg_none, malformed),
            ("HS256 with the public key", confused, |e| {
                matches!(e, TokenError::Algorithm(_))
            }),
            ("tampered payload", tampered, rejected),
            ("no typ", no_typ, |e| *e == TokenError::Type),
            ("unknown kid", Key::new("k9").sign(&claims()), |e| {
                *e == TokenError::UnknownKey
            }),
            (
                "expired",
                k1.sign(&with(claims(), "exp", json!(now() - 60))),
                rejected,
            ),
            (
                "nbf in the future",
                k1.sign(&with(claims(), "nbf", json!(now() + 60))),
                rejected,
            ),
            (
                "wrong iss",
                k1.sign(&with(claims(), "iss", json!("https://evil.test"))),
                rejected,
            ),
            (
                "wrong aud",
                k1.sign(&with(claims(), "aud", json!("another-api"))),
                rejected,
            ),
            (
                "no sub",
                {
                    let mut c = claims();
                    c.as_object_mut().unwrap().remove("sub");
                    k1.sign(&c)
                },
                rejected,
            ),
            ("garbage", "not.a.jwt".to_owned(), malformed),
        ];
        for (name, token, expect) in cases {
            let error = verifier.verify(&token).await.expect_err(name);
            assert!(
                expect(&error),
                "{name}: refused for the wrong reason: {error}"
            );
        }
        // The valid one still passes after all that.
        assert!(verifier.verify(&good).await.is_ok());
    }

    #[tokio::test]
    async fn an_expired_set_keeps_verifying_while_the_user_service_is_down() {
        let k1 = Key::new("k1");
        let token = k1.sign(&claims());
        let fetches = Arc::new(AtomicUsize::new(0));
        let counter = fetches.clone();
        let jwk = k1.jwk();
        // The first fetch answers; every later one fails (the user service went away).
        let source: KeySource = Arc::new(move || {
            let first = counter.fetch_add(1, Ordering::SeqCst) == 0;
            let keys = vec![jwk.clone()];
            Box::pin(async move {
                if first {
                    Ok(KeySet {
                        keys,
                        max_age: Duration::from_millis(50),
                    })
                } else {
                    Err("user is unavailable".to_owned())
                }
            })
        });
        let verifier = Verifier::new(ISS, AUD, source);
        assert!(verifier.verify(&token).await.is_ok());
        verifier.ready().await.expect("a key set is held");
        tokio::time::sleep(Duration::from_millis(80)).await;
        for _ in 0..20 {
            assert!(verifier.verify(&token).await.is_ok(), "stale-if-error");
        }
        assert_eq!(
            fetches.load(Ordering::SeqCst),
            2,
            "one failed refetch, then the stale set without asking again for STALE_RETRY"
        );
        verifier
            .ready()
            .await
            .expect("still ready on the stale set");
    }

    #[tokio::test]
    async fn without_any_key_set_the_gateway_is_not_ready() {
        let source: KeySource =
            Arc::new(|| Box::pin(async { Err("user is unavailable".to_owned()) }));
        let verifier = Verifier::new(ISS, AUD, source);
        assert!(verifier.ready().await.is_err());
        let token = Key::new("k1").sign(&claims());
        assert!(matches!(
            verifier.verify(&token).await,
            Err(TokenError::KeysUnavailable(_))
        ));
    }

    #[tokio::test]
    async fn a_rotated_out_key_stops_working_when_the_set_expires() {
        let (k1, k2) = (Key::new("k1"), Key::new("k2"));
        let old = k1.sign(&claims());
        let new = k2.sign(&claims());
        // First fetch: current k1 + next k2. Later fetches: k1 retired.
        let (verifier, _) = verifier(
            vec![vec![k1.jwk(), k2.jwk()], vec![k2.jwk()]],
            Duration::from_millis(50),
        );
        assert!(verifier.verify(&old).await.is_ok());
        assert!(
            verifier.verify(&new).await.is_ok(),
            "the next key is published ahead"
        );
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(
            verifier.verify(&old).await.unwrap_err(),
            TokenError::UnknownKey
        );
        assert!(verifier.verify(&new).await.is_ok());
    }

    #[tokio::test]
    async fn unknown_kids_refresh_the_set_at_most_once_per_interval() {
        let (k1, k2) = (Key::new("k1"), Key::new("k2"));
        let (verifier, fetches) = verifier(
            vec![vec![k1.jwk()], vec![k1.jwk(), k2.jwk()]],
            Duration::from_secs(300),
        );
        assert!(verifier.verify(&k1.sign(&claims())).await.is_ok());
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        // k2 appears only in the second set, but the first fetch was just now: no refetch yet.
        for _ in 0..20 {
            let forged = Key::new("k7").sign(&claims());
            assert!(verifier.verify(&forged).await.is_err());
        }
        assert_eq!(
            fetches.load(Ordering::SeqCst),
            1,
            "forged kids do not hammer the source"
        );
    }
}
