//! `Idempotency-Key` on POST requests (draft-ietf-httpapi-idempotency-key-header).
//!
//! The first request with a key runs and its response is stored for 24 hours under the
//! caller (principal, or client IP when anonymous) and the key. A repeat with the same
//! request — method, path, query and body — gets the stored response again, marked
//! `Idempotent-Replayed: true`; the same key with a different request is refused with `422`;
//! a repeat while the first is still running gets `409` with `Retry-After`. Responses that
//! invite a retry (`429`, `5xx`) are not stored, so the retry really runs. Records live in
//! Redis when it is configured (shared by replicas), else in process.
//!
//! The bulk import is exempt: its body is streamed, not buffered, and re-importing the same
//! rows is idempotent by itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mirai_platform::auth::Principal;
use redis::AsyncCommands as _;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::edge::IDEMPOTENCY_KEY;
use crate::problem::Problem;

/// How long a completed response is replayed.
const KEEP: Duration = Duration::from_secs(24 * 3600);
/// How long a started request holds its key if the gateway dies before finishing it.
const HOLD: Duration = Duration::from_secs(60);
/// Largest response stored for replay.
const MAX_RESPONSE: usize = 4 * 1024 * 1024;
/// Response headers kept with a stored response (the edge layers add the rest again).
const KEPT_HEADERS: [HeaderName; 3] = [
    header::CONTENT_TYPE,
    header::LOCATION,
    header::CACHE_CONTROL,
];
const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "state", rename_all = "snake_case")]
enum Record {
    Running {
        fingerprint: String,
    },
    Done {
        fingerprint: String,
        status: u16,
        headers: Vec<(String, String)>,
        /// Base64.
        body: String,
    },
}

impl Record {
    fn fingerprint(&self) -> &str {
        match self {
            Self::Running { fingerprint } | Self::Done { fingerprint, .. } => fingerprint,
        }
    }
}

enum Store {
    Memory(Mutex<HashMap<String, (Record, Instant)>>),
    Redis {
        connection: ConnectionManager,
        prefix: String,
    },
}

/// Where idempotency records live.
pub struct Idempotency {
    store: Store,
    max_body: usize,
}

impl Idempotency {
    pub fn memory(max_body: usize) -> Self {
        Self {
            store: Store::Memory(Mutex::new(HashMap::new())),
            max_body,
        }
    }

    pub fn redis(connection: ConnectionManager, prefix: &str, max_body: usize) -> Self {
        Self {
            store: Store::Redis {
                connection,
                prefix: format!("{prefix}idem:"),
            },
            max_body,
        }
    }

    /// Claims `key` for a new request, or returns the record that holds it.
    async fn begin(
        &self,
        key: &str,
        fingerprint: &str,
    ) -> Result<Option<Record>, redis::RedisError> {
        let running = Record::Running {
            fingerprint: fingerprint.to_owned(),
        };
        match &self.store {
            Store::Memory(map) => {
                let mut map = map.lock().expect("idempotency map poisoned");
                let now = Instant::now();
                if map.len() > 10_000 {
                    map.retain(|_, (_, expires)| *expires > now);
                }
                match map.get(key) {
                    Some((record, expires)) if *expires > now => Ok(Some(record.clone())),
                    _ => {
                        map.insert(key.to_owned(), (running, now + HOLD));
                        Ok(None)
                    }
                }
            }
            Store::Redis { connection, prefix } => {
                let mut connection = connection.clone();
                let full = format!("{prefix}{key}");
                let value = serde_json::to_string(&running).expect("serialisable");
                for _ in 0..2 {
                    let claimed: Option<String> = redis::cmd("SET")
                        .arg(&full)
                        .arg(&value)
                        .arg("NX")
                        .arg("PX")
                        .arg(HOLD.as_millis() as u64)
                        .query_async(&mut connection)
                        .await?;
                    if claimed.is_some() {
                        return Ok(None);
                    }
                    let existing: Option<String> = connection.get(&full).await?;
                    // Expired between SET and GET: try to claim it again.
                    if let Some(record) = existing.and_then(|v| serde_json::from_str(&v).ok()) {
                        return Ok(Some(record));
                    }
                }
                Ok(None)
            }
        }
    }

    async fn finish(&self, key: &str, record: Option<Record>) -> Result<(), redis::RedisError> {
        match &self.store {
            Store::Memory(map) => {
                let mut map = map.lock().expect("idempotency map poisoned");
                match record {
                    Some(record) => {
                        map.insert(key.to_owned(), (record, Instant::now() + KEEP));
                    }
                    None => {
                        map.remove(key);
                    }
                }
                Ok(())
            }
            Store::Redis { connection, prefix } => {
                let mut connection = connection.clone();
                let full = format!("{prefix}{key}");
                match record {
                    Some(record) => {
                        let value = serde_json::to_string(&record).expect("serialisable");
                        connection
                            .pset_ex::<_, _, ()>(&full, value, KEEP.as_millis() as u64)
                            .await
                    }
                    None => connection.del::<_, ()>(&full).await,
                }
            }
        }
    }
}

fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn unavailable(error: &redis::RedisError) -> Response {
    tracing::warn!(message = "Idempotency store unavailable.", %error);
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "Service temporarily unavailable",
    )
    .detail("the idempotency store is unavailable; retry shortly")
    .retry_after(2)
    .into_response()
}

/// Middleware (after authentication).
pub async fn idempotent(
    State(store): State<Arc<Idempotency>>,
    request: Request,
    next: Next,
) -> Response {
    if request.method() != Method::POST || request.uri().path() == "/v1/admin/bars/import" {
        return next.run(request).await;
    }
    let Some(key) = request.headers().get(&IDEMPOTENCY_KEY).cloned() else {
        return next.run(request).await;
    };
    let key_bytes = key.as_bytes();
    if !(1..=255).contains(&key_bytes.len()) || !key_bytes.iter().all(|b| b.is_ascii_graphic()) {
        return Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-idempotency-key",
            "Invalid Idempotency-Key",
        )
        .detail("Idempotency-Key must be 1–255 visible ASCII characters (a UUID is ideal)")
        .into_response();
    }
    let caller = match request.extensions().get::<Principal>() {
        Some(principal) => format!("user:{}", principal.user_id),
        None => format!(
            "ip:{}",
            crate::client::client_ip(request.headers(), request.extensions())
                .map(|ip| ip.to_string())
                .unwrap_or_default()
        ),
    };
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, store.max_body).await {
        Ok(body) => body,
        Err(_) => {
            return Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Request body too large",
            )
            .detail(format!("the body may be at most {} bytes", store.max_body))
            .into_response();
        }
    };
    let target = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned());
    let fingerprint = sha256_hex(&[parts.method.as_str().as_bytes(), target.as_bytes(), &body]);
    let record_key = sha256_hex(&[caller.as_bytes(), key_bytes]);

    match store.begin(&record_key, &fingerprint).await {
        Err(error) => return unavailable(&error),
        Ok(Some(record)) if record.fingerprint() != fingerprint => {
            return Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency-Key reused",
            )
            .detail("this Idempotency-Key was used for a different request; use a new key")
            .into_response();
        }
        Ok(Some(Record::Running { .. })) => {
            return Problem::new(
                StatusCode::CONFLICT,
                "idempotency-key-in-use",
                "Request already in progress",
            )
            .detail("a request with this Idempotency-Key is still being processed")
            .retry_after(1)
            .into_response();
        }
        Ok(Some(Record::Done {
            status,
            headers,
            body,
            ..
        })) => return replay(status, &headers, &body),
        Ok(None) => {}
    }

    let response = next.run(Request::from_parts(parts, Body::from(body))).await;
    let (parts, body) = response.into_parts();
    let body: Bytes = match axum::body::to_bytes(body, MAX_RESPONSE).await {
        Ok(body) => body,
        Err(error) => {
            tracing::warn!(message = "Response too large to keep for idempotent replay.", %error);
            let _ = store.finish(&record_key, None).await;
            return Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
            )
            .into_response();
        }
    };
    let keep = !(parts.status.is_server_error() || parts.status == StatusCode::TOO_MANY_REQUESTS);
    let record = keep.then(|| Record::Done {
        fingerprint,
        status: parts.status.as_u16(),
        headers: KEPT_HEADERS
            .iter()
            .filter_map(|name| {
                let value = parts.headers.get(name)?.to_str().ok()?;
                Some((name.as_str().to_owned(), value.to_owned()))
            })
            .collect(),
        body: STANDARD.encode(&body),
    });
    if let Err(error) = store.finish(&record_key, record).await {
        tracing::warn!(message = "Could not store the idempotent response.", %error);
    }
    Response::from_parts(parts, Body::from(body))
}

fn replay(status: u16, headers: &[(String, String)], body: &str) -> Response {
    let mut response = Response::new(Body::from(STANDARD.decode(body).unwrap_or_default()));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.as_str()),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
        .headers_mut()
        .insert(REPLAYED, HeaderValue::from_static("true"));
    response
}
