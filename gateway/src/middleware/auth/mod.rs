//! Authentication at the edge: access-token (JWT) verification against the user service's
//! JWKS, API keys through the user service, the principal of each request, and role
//! requirements per route.
//!
//! Only what the user service issues is accepted: EdDSA (Ed25519) signatures, header
//! `typ: at+jwt` (RFC 9068) and a `kid` found in the current key set, claims `iss`, `aud`,
//! `sub`, `exp` and `nbf` all present and valid (5 s leeway for clock skew). An unknown `kid`
//! makes the key set refresh, at most once per [`MIN_REFRESH_INTERVAL`], so a key published
//! after our last fetch is picked up while a flood of forged `kid`s cannot hammer the user
//! service. The key set is also refetched when its `max_age` runs out, which is how a key
//! retired by rotation stops being accepted. While the user service cannot be reached, an
//! expired set keeps verifying for up to [`STALE_IF_ERROR`] (RFC 5861's stale-if-error).
//!
//! Fetches are **single-flight**: one caller fetches while the others wait for its result
//! (requests whose key is in a fresh set never wait: the set is read under a short lock that is
//! never held across a fetch). A failed fetch is retried after a backoff that doubles from
//! [`BACKOFF_FIRST`] up to [`STALE_RETRY`]; until then every request is answered from what is
//! held (or refused with 503 when nothing usable is held) without asking again, so a user-service
//! outage does not turn into one fetch per request.
//!
//! # Failed authentication
//!
//! A bogus credential costs a lookup (an API key is looked up in the user service, which also
//! writes an audit row), so failures are limited per client IP ([`FailureGuard`]): after
//! `MIRAI_RATE_LIMIT_AUTH_FAILURES` failures the IP's API keys are answered `429` with
//! `Retry-After` *before* any lookup, until the bucket refills. Bearer tokens are verified
//! locally (no lookup) and keep working from a blocked IP, so one bad client behind a shared
//! address does not lock out its neighbours' sessions; their failures still count. API keys
//! the user service refused are remembered (by SHA-256, never the secret) for
//! `MIRAI_API_KEY_NEGATIVE_TTL`, so the same bogus key is not looked up again.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use mirai_platform::auth::{Principal, Role};
use mirai_platform::grpc::client::UpstreamChannel;
use mirai_platform::telemetry::{CacheCounter, CacheMetrics, Metrics};
use mirai_proto::user::v1 as user_pb;
use mirai_proto::user::v1::user_service_client::UserServiceClient;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::config::AuthFailureLimits;
use crate::middleware::ratelimit::{Policy, client_key};
use crate::problem::Problem;

/// The fastest the key set is refetched because of an unknown `kid`.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(30);
/// How long past its `max_age` a key set keeps verifying while it cannot be refetched.
pub const STALE_IF_ERROR: Duration = Duration::from_secs(3600);
/// The wait after a first failed fetch; it doubles with each further failure.
pub const BACKOFF_FIRST: Duration = Duration::from_millis(250);
/// The longest wait between fetches while the user service fails.
pub const STALE_RETRY: Duration = Duration::from_secs(5);
/// The longest wait between fetches while no usable key set is held (every signed-in request
/// fails meanwhile, so a user service that has just come up is asked again soon; the circuit
/// breaker still spares one that is down).
pub const NO_KEYS_RETRY: Duration = Duration::from_secs(1);
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

#[derive(Default)]
struct Cache {
    keys: HashMap<String, DecodingKey>,
    expires: Option<Instant>,
    last_fetch: Option<Instant>,
    /// Consecutive failed fetches, and when the next one may be tried.
    failures: u32,
    retry_at: Option<Instant>,
}

impl Cache {
    fn fresh(&self, now: Instant) -> bool {
        self.expires.is_some_and(|e| now < e)
    }

    fn usable(&self, now: Instant) -> bool {
        self.expires.is_some_and(|e| now < e + STALE_IF_ERROR)
    }

    /// Whether `kid` calls for a fetch now: the set expired, or (rate-limited) the kid is
    /// unknown — unless a failed fetch is still backing off.
    fn wants_fetch(&self, kid: &str, now: Instant) -> bool {
        if self.retry_at.is_some_and(|at| now < at) {
            return false;
        }
        let may_refetch = self
            .last_fetch
            .is_none_or(|at| now.duration_since(at) >= MIN_REFRESH_INTERVAL);
        !self.fresh(now) || (!self.keys.contains_key(kid) && may_refetch)
    }

    /// Whether `kid`'s key is in the held set and that set may be used (see [`Cache::key`]).
    fn trusts(&self, kid: &str, now: Instant) -> bool {
        self.usable(now) && self.keys.contains_key(kid)
    }

    /// `kid`'s key from what is held: an expired set is trusted only within stale-if-error (a
    /// retired key must stop working).
    fn key(&self, kid: &str, now: Instant) -> Result<DecodingKey, TokenError> {
        if !self.usable(now) {
            return Err(TokenError::KeysUnavailable(
                "the user service's key set could not be fetched".to_owned(),
            ));
        }
        self.keys.get(kid).cloned().ok_or(TokenError::UnknownKey)
    }
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
    exp: u64,
    #[serde(default)]
    roles: Vec<String>,
}

/// Until when a request's credential is valid (an access token's `exp`), in its extensions
/// beside the [`Principal`]: long-lived streams close then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CredentialExpiry(pub SystemTime);

/// Verifies access tokens.
pub struct Verifier {
    validation: Validation,
    source: KeySource,
    /// Held only for reading or replacing the set, never across a fetch.
    cache: std::sync::RwLock<Cache>,
    /// Held by the one caller fetching (single flight).
    fetching: tokio::sync::Mutex<()>,
    /// Key lookups answered from the held set (hit) or needing a fetch (miss).
    lookups: CacheCounter,
    /// Tokens whose signature and claims were checked, until their `exp`: a client sends the
    /// same access token with every request, and its Ed25519 check was a tenth of the
    /// gateway's CPU on the quote path. An entry answers only while its key is still in a
    /// fresh set, so a retired key stops its tokens as before.
    verified: moka::sync::Cache<String, Arc<VerifiedToken>>,
    /// Tokens answered from `verified` (hit) or checked in full (miss).
    token_lookups: CacheCounter,
}

/// What checking a token established.
struct VerifiedToken {
    principal: Principal,
    expiry: CredentialExpiry,
    kid: String,
}

/// Tokens remembered as verified (each at most an access token's lifetime).
const VERIFIED_TOKENS: u64 = 10_000;

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
            cache: std::sync::RwLock::new(Cache::default()),
            fetching: tokio::sync::Mutex::new(()),
            lookups: CacheMetrics::register(&Metrics::new()).cache("jwks"),
            token_lookups: CacheMetrics::register(&Metrics::new()).cache("access_tokens"),
            verified: moka::sync::Cache::builder()
                .max_capacity(VERIFIED_TOKENS)
                // The longest an access token lives; `exp` is checked on every hit.
                .time_to_live(Duration::from_secs(15 * 60 + LEEWAY_SECONDS))
                .build(),
        }
    }

    /// Counts key lookups in `metrics` as `mirai_cache_requests_total{cache="jwks"}`, and
    /// tokens recognised as already verified as `{cache="access_tokens"}`.
    pub fn with_metrics(mut self, metrics: &Metrics) -> Self {
        let caches = CacheMetrics::register(metrics);
        self.lookups = caches.cache("jwks");
        self.token_lookups = caches.cache("access_tokens");
        self
    }

    /// The principal a valid token names.
    pub async fn verify(&self, token: &str) -> Result<Principal, TokenError> {
        Ok(self.verify_until(token).await?.0)
    }

    /// The principal a valid token names, and when the token expires.
    pub async fn verify_until(
        &self,
        token: &str,
    ) -> Result<(Principal, CredentialExpiry), TokenError> {
        if let Some(known) = self.verified.get(token) {
            let now = Instant::now();
            let cache = self.read();
            let unexpired =
                SystemTime::now() <= known.expiry.0 + Duration::from_secs(LEEWAY_SECONDS);
            if unexpired && !cache.wants_fetch(&known.kid, now) && cache.trusts(&known.kid, now) {
                self.token_lookups.hit();
                return Ok((known.principal.clone(), known.expiry));
            }
        }
        self.token_lookups.miss();
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
        let expiry =
            CredentialExpiry(SystemTime::UNIX_EPOCH + Duration::from_secs(data.claims.exp));
        let principal = Principal {
            user_id: data.claims.sub,
            roles: data
                .claims
                .roles
                .iter()
                .filter_map(|r| r.parse::<Role>().ok())
                .collect::<BTreeSet<_>>(),
            api_key_id: None,
        };
        self.verified.insert(
            token.to_owned(),
            Arc::new(VerifiedToken {
                principal: principal.clone(),
                expiry,
                kid,
            }),
        );
        Ok((principal, expiry))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Cache> {
        self.cache
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn key(&self, kid: &str) -> Result<DecodingKey, TokenError> {
        {
            let cache = self.read();
            if !cache.wants_fetch(kid, Instant::now()) {
                self.lookups.hit();
                return cache.key(kid, Instant::now());
            }
        }
        self.lookups.miss();
        self.fetch_once(|cache| cache.wants_fetch(kid, Instant::now()))
            .await;
        self.read().key(kid, Instant::now())
    }

    /// Fetches the key set unless another caller is fetching (then waits for its result) or
    /// `still_wanted` says the fetch that just ended made this one unnecessary.
    async fn fetch_once(&self, still_wanted: impl Fn(&Cache) -> bool) {
        let _flight = self.fetching.lock().await;
        if !still_wanted(&self.read()) {
            return;
        }
        let outcome = (self.source)().await;
        let mut cache = self
            .cache
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        cache.last_fetch = Some(now);
        match outcome {
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
                cache.expires = Some(now + set.max_age);
                cache.failures = 0;
                cache.retry_at = None;
            }
            Err(error) => {
                cache.failures = cache.failures.saturating_add(1);
                let longest = if !cache.keys.is_empty() && cache.usable(now) {
                    STALE_RETRY
                } else {
                    NO_KEYS_RETRY
                };
                let wait = BACKOFF_FIRST
                    .saturating_mul(1 << (cache.failures - 1).min(16))
                    .min(longest);
                cache.retry_at = Some(now + wait);
                tracing::warn!(
                    message = "JWKS fetch failed; retrying after a backoff.",
                    %error,
                    failures = cache.failures,
                    retry_in_ms = wait.as_millis() as u64,
                    verifying_with_expired_set = !cache.fresh(now) && cache.usable(now),
                );
            }
        }
    }

    /// Readiness: the gateway holds a key set it may verify with (fetching one if it has none,
    /// within the fetch backoff).
    pub async fn ready(&self) -> Result<(), String> {
        let usable = |cache: &Cache| !cache.keys.is_empty() && cache.usable(Instant::now());
        if !usable(&self.read()) {
            self.fetch_once(|cache| {
                !usable(cache) && cache.retry_at.is_none_or(|at| Instant::now() >= at)
            })
            .await;
        }
        if usable(&self.read()) {
            Ok(())
        } else {
            Err("no signing keys from the user service yet".to_owned())
        }
    }
}

/// Failed authentication per client IP: a GCRA bucket per IP (or IPv6 /64) that every
/// failure draws from, the IPs whose bucket ran dry (answered `429` before any lookup until it
/// refills), and the API keys the user service refused recently.
pub struct FailureGuard {
    failures: Arc<Policy>,
    blocked: moka::sync::Cache<String, Instant>,
    refused_keys: moka::sync::Cache<[u8; 32], ()>,
    /// Lookups in `refused_keys`: a hit answers 401 without asking the user service.
    refused_lookups: CacheCounter,
}

impl FailureGuard {
    pub fn new(limits: &AuthFailureLimits, failures: Arc<Policy>, metrics: &Metrics) -> Self {
        Self {
            refused_lookups: CacheMetrics::register(metrics).cache("api_key_refusals"),
            blocked: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(failures.rate.window)
                .build(),
            failures,
            refused_keys: moka::sync::Cache::builder()
                .max_capacity(if limits.negative_ttl.is_zero() {
                    0
                } else {
                    limits.negative_cache_entries
                })
                .time_to_live(limits.negative_ttl.max(Duration::from_millis(1)))
                .build(),
        }
    }

    /// When `client` may try an API key again, if it is blocked now.
    fn blocked(&self, client: &str) -> Option<Duration> {
        let until = self.blocked.get(client)?;
        until.checked_duration_since(Instant::now())
    }

    /// Counts one failed authentication from `client`; a dry bucket blocks it until the next
    /// token.
    async fn failed(&self, client: &str) {
        let interval = self.failures.rate.window / self.failures.rate.quota;
        match self.failures.check(client).await {
            Ok(decision) if !decision.allowed => {
                self.blocked
                    .insert(client.to_owned(), Instant::now() + decision.retry_after);
            }
            Ok(decision) if decision.remaining == 0 => {
                self.blocked
                    .insert(client.to_owned(), Instant::now() + interval);
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(message = "Failed-authentication limiter unavailable.", %error);
            }
        }
    }

    fn fingerprint(secret: &str) -> [u8; 32] {
        Sha256::digest(secret.as_bytes()).into()
    }
}

/// Authenticates requests: access tokens locally against the JWKS, API keys through the user
/// service (so a revoked key stops working at once), failures limited per client IP.
pub struct Authenticator {
    pub verifier: Verifier,
    pub user: UpstreamChannel,
    pub guard: FailureGuard,
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

/// The API key a request presents, if it presents one.
pub fn api_key_secret(headers: &HeaderMap) -> Option<&str> {
    match credential(headers) {
        Ok(Some(Credential::ApiKey(secret))) => Some(secret),
        _ => None,
    }
}

const AUTH_USAGE: &str = "use `Authorization: Bearer <access token>`, `Authorization: ApiKey <key>` or `X-API-Key: <key>`";
const API_KEY_HEADER: &str = "x-api-key";
const INVALID_KEY: &str = "the API key is invalid, revoked or expired";

/// The outcome of checking one credential.
enum Checked {
    Valid(Principal, Option<CredentialExpiry>),
    /// Refused (401), counted as a failure of the client.
    Refused(&'static str),
    /// Not decided: the answer to send as is (503 while keys are unavailable, upstream errors).
    Answer(Response),
}

impl Authenticator {
    async fn check(
        &self,
        credential: Credential<'_>,
        headers: &HeaderMap,
        extensions: &axum::http::Extensions,
    ) -> Checked {
        match credential {
            Credential::Bearer(token) => match self.verifier.verify_until(token).await {
                Ok((principal, expiry)) => Checked::Valid(principal, Some(expiry)),
                Err(TokenError::KeysUnavailable(error)) => {
                    tracing::warn!(message = "Cannot verify tokens: no key set.", %error);
                    Checked::Answer(
                        Problem::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "unavailable",
                            "Service temporarily unavailable",
                        )
                        .detail("token keys are unavailable; retry shortly")
                        .retry_after(5)
                        .into_response(),
                    )
                }
                Err(error) => {
                    tracing::info!(message = "Token refused.", reason = %error);
                    Checked::Refused("the access token is invalid or expired")
                }
            },
            Credential::ApiKey(secret) => {
                let fingerprint = FailureGuard::fingerprint(secret);
                let refused = self.guard.refused_keys.contains_key(&fingerprint);
                self.guard.refused_lookups.record(refused);
                if refused {
                    return Checked::Refused(INVALID_KEY);
                }
                let client = crate::middleware::client::context(headers, extensions);
                let answer = UserServiceClient::new(self.user.clone())
                    .authenticate_api_key(user_pb::AuthenticateApiKeyRequest {
                        secret: secret.to_owned(),
                        client: Some(client),
                    })
                    .await;
                match answer.map(|r| r.into_inner().principal) {
                    Ok(Some(p)) => Checked::Valid(
                        Principal {
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
                        None,
                    ),
                    Ok(None) => Checked::Refused(INVALID_KEY),
                    Err(status) if status.code() == tonic::Code::Unauthenticated => {
                        self.guard.refused_keys.insert(fingerprint, ());
                        Checked::Refused(INVALID_KEY)
                    }
                    Err(status) => Checked::Answer(Problem::from(status).into_response()),
                }
            }
        }
    }
}

/// Middleware: a valid credential puts its [`Principal`] (and, for an access token, its
/// [`CredentialExpiry`]) into the request's extensions; an invalid one is answered with 401 at
/// once (429 once the client's failures ran out, see the module documentation); none means
/// anonymous (routes decide with [`Caller`] and [`Admin`]).
pub async fn authenticate(
    State(auth): State<Arc<Authenticator>>,
    mut request: Request,
    next: Next,
) -> Response {
    let credential = match credential(request.headers()) {
        Ok(None) => return next.run(request).await,
        Err(usage) => return unauthenticated(usage),
        Ok(Some(credential)) => credential,
    };
    let client = client_key(crate::middleware::client::client_ip(
        request.headers(),
        request.extensions(),
    ));
    if matches!(credential, Credential::ApiKey(_))
        && let Some(wait) = auth.guard.blocked(&client)
    {
        let rate = auth.guard.failures.rate;
        return Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "Too many failed authentications",
        )
        .detail(format!(
            "more than {} failed authentications per {} from this address; retry later",
            rate.quota,
            humantime::format_duration(rate.window)
        ))
        .retry_after(wait.as_secs_f64().ceil().max(1.0) as u64)
        .into_response();
    }
    match auth
        .check(credential, request.headers(), request.extensions())
        .await
    {
        Checked::Valid(principal, expiry) => {
            request.extensions_mut().insert(principal);
            if let Some(expiry) = expiry {
                request.extensions_mut().insert(expiry);
            }
            next.run(request).await
        }
        Checked::Refused(detail) => {
            auth.guard.failed(&client).await;
            unauthenticated(detail)
        }
        Checked::Answer(response) => response,
    }
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
mod tests;
