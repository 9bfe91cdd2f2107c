//! `Idempotency-Key` on POST requests (draft-ietf-httpapi-idempotency-key-header).
//!
//! The first request with a key runs and its response is stored for 24 hours under the
//! caller (principal, or client IP when anonymous) and the key: the same key from two callers
//! is two records. A repeat with the same request — method, path, query and body — gets the
//! stored response again, marked `Idempotent-Replayed: true`; the same key with a different
//! request is refused with `422`; a repeat while the first is still running gets `409` with
//! `Retry-After`. Records live in Redis when it is configured (shared by replicas), else in
//! process.
//!
//! Some answers are not kept, and then the key is released, so a repeat runs again:
//! - answers that invite a retry (`429`, `5xx`), so the retry really runs;
//! - answers larger than [`Limits::max_answer`] (64 KiB): sent to the client as they stream,
//!   never buffered whole;
//! - answers that carry credentials — tokens (`/v1/auth/login`, `/v1/auth/refresh`,
//!   `/v1/me/password`), API-key secrets (`/v1/me/api-keys`), webhook signing secrets
//!   (`/v1/webhooks`, `…/rotate-secret`) — and any answer its handler marks
//!   `Cache-Control: no-store`: a secret shown once must not sit in a cache (or in Redis) for
//!   a day. A repeated API-key or webhook creation therefore creates a second one.
//!
//! In process the records are bounded by count and bytes ([`Limits`]) and evicted least
//! recently used first (expired ones first of all, without a scan). The store is split into
//! shards by caller, each with its own lock and an equal share of the bounds: every operation
//! is O(1) under one shard's lock, and one caller flooding keys only evicts records of its own
//! shard. Redis bounds memory with its own `maxmemory` policy; every record there expires.
//!
//! The bulk import is exempt: its body is streamed, not buffered, and re-importing the same
//! rows is idempotent by itself.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes, HttpBody as _};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use hashlink::LinkedHashMap;
use mirai_platform::auth::Principal;
use redis::AsyncCommands as _;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::middleware::edge::IDEMPOTENCY_KEY;
use crate::problem::Problem;

/// How long a completed response is replayed.
const KEEP: Duration = Duration::from_secs(24 * 3600);
/// How long a started request holds its key if the gateway dies before finishing it.
const HOLD: Duration = Duration::from_secs(60);
/// Response headers kept with a stored response (the edge layers add the rest again).
const KEPT_HEADERS: [HeaderName; 3] = [
    header::CONTENT_TYPE,
    header::LOCATION,
    header::CACHE_CONTROL,
];
const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
/// Shards of the in-process store (by caller).
const SHARDS: usize = 16;
/// Bytes counted per in-process record besides its body and headers: key, fingerprint, the
/// map's and the list's links.
const RECORD_OVERHEAD: usize = 256;

/// Bounds of the idempotency records (configured by `MIRAI_IDEMPOTENCY_*`, see
/// [`crate::config::Config::idempotency`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest answer body kept for replay, in either store (64 KiB). A larger answer is
    /// passed through as it streams and its key released.
    pub max_answer: usize,
    /// In process: bytes of all records — bodies, headers and a fixed overhead each (64 MiB).
    pub max_bytes: usize,
    /// In process: number of records (100,000).
    pub max_records: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_answer: 64 * 1024,
            max_bytes: 64 * 1024 * 1024,
            max_records: 100_000,
        }
    }
}

/// The POST routes whose answers carry credentials (tokens or secrets shown once). Their
/// handlers mostly say so with `Cache-Control: no-store` as well; this list does not rely on it.
fn carries_credentials(path: &str) -> bool {
    matches!(
        path,
        "/v1/auth/login"
            | "/v1/auth/refresh"
            | "/v1/me/password"
            | "/v1/me/api-keys"
            | "/v1/webhooks"
    ) || (path.starts_with("/v1/webhooks/") && path.ends_with("/rotate-secret"))
}

/// Whether the handler forbade storing its answer (RFC 9111 §5.2.2.5).
fn marked_no_store(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|directive| directive.trim().eq_ignore_ascii_case("no-store"))
}

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
        /// Base64 in Redis (the format replicas have always written).
        #[serde(with = "base64_body")]
        body: Bytes,
    },
}

mod base64_body {
    use axum::body::Bytes;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize as _, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(body: &Bytes, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(body))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Bytes, D::Error> {
        let text = String::deserialize(deserializer)?;
        STANDARD
            .decode(text)
            .map(Bytes::from)
            .map_err(serde::de::Error::custom)
    }
}

impl Record {
    fn fingerprint(&self) -> &str {
        match self {
            Self::Running { fingerprint } | Self::Done { fingerprint, .. } => fingerprint,
        }
    }

    /// What the record costs in process.
    fn weight(&self) -> usize {
        RECORD_OVERHEAD
            + match self {
                Self::Running { fingerprint } => fingerprint.len(),
                Self::Done {
                    fingerprint,
                    headers,
                    body,
                    ..
                } => {
                    fingerprint.len()
                        + body.len()
                        + headers
                            .iter()
                            .map(|(name, value)| name.len() + value.len() + 48)
                            .sum::<usize>()
                }
            }
    }
}

/// Where a record lives: the caller's shard and the digest of (caller, key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RecordKey {
    shard: usize,
    digest: [u8; 32],
}

impl RecordKey {
    fn new(caller: &str, key: &[u8]) -> Self {
        Self {
            shard: shard_of(caller),
            digest: sha256(&[caller.as_bytes(), key]),
        }
    }

    fn hex(&self) -> String {
        hex(&self.digest)
    }
}

fn shard_of(caller: &str) -> usize {
    usize::from(sha256(&[caller.as_bytes()])[0]) % SHARDS
}

// === impl Memory ===

struct Entry {
    record: Record,
    expires: Instant,
    weight: usize,
}

/// One shard: records in recency order (least recently used at the front).
struct Shard {
    records: LinkedHashMap<[u8; 32], Entry>,
    bytes: usize,
    max_bytes: usize,
    max_records: usize,
}

impl Shard {
    fn new(max_bytes: usize, max_records: usize) -> Self {
        Self {
            records: LinkedHashMap::new(),
            bytes: 0,
            max_bytes,
            max_records: max_records.max(1),
        }
    }

    /// The live record under `key`, now the most recently used.
    fn get(&mut self, key: &[u8; 32], now: Instant) -> Option<Record> {
        match self.records.to_back(key) {
            None => None,
            Some(entry) if entry.expires > now => Some(entry.record.clone()),
            Some(_) => {
                self.remove(key);
                None
            }
        }
    }

    /// Stores `record` as the most recently used, then drops expired records from the cold
    /// end and the least recently used ones while over the bounds.
    fn put(&mut self, key: [u8; 32], record: Record, ttl: Duration, now: Instant) {
        let weight = record.weight();
        let entry = Entry {
            record,
            expires: now + ttl,
            weight,
        };
        if let Some(old) = self.records.insert(key, entry) {
            self.bytes -= old.weight;
        }
        self.bytes += weight;
        while let Some((_, coldest)) = self.records.front() {
            let over = self.bytes > self.max_bytes || self.records.len() > self.max_records;
            if !over && coldest.expires > now {
                break;
            }
            if let Some((_, evicted)) = self.records.pop_front() {
                self.bytes -= evicted.weight;
            }
        }
    }

    fn remove(&mut self, key: &[u8; 32]) {
        if let Some(entry) = self.records.remove(key) {
            self.bytes -= entry.weight;
        }
    }
}

/// The in-process store: [`SHARDS`] shards, each with its share of the bounds.
struct Memory {
    shards: Box<[Mutex<Shard>]>,
}

impl Memory {
    fn new(limits: &Limits) -> Self {
        let (bytes, records) = (limits.max_bytes / SHARDS, limits.max_records / SHARDS);
        Self {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(Shard::new(bytes, records)))
                .collect(),
        }
    }

    fn shard(&self, key: &RecordKey) -> std::sync::MutexGuard<'_, Shard> {
        self.shards[key.shard]
            .lock()
            .expect("idempotency shard poisoned")
    }
}

enum Store {
    Memory(Memory),
    Redis {
        connection: ConnectionManager,
        prefix: String,
    },
}

/// Where idempotency records live, and their bounds.
pub struct Idempotency {
    store: Store,
    max_body: usize,
    limits: Limits,
}

impl Idempotency {
    /// In process, with the default [`Limits`]; `max_body` bounds the request bodies read.
    pub fn memory(max_body: usize) -> Self {
        Self::memory_with(max_body, Limits::default())
    }

    pub fn memory_with(max_body: usize, limits: Limits) -> Self {
        Self {
            store: Store::Memory(Memory::new(&limits)),
            max_body,
            limits,
        }
    }

    /// In Redis (keys under `{prefix}idem:`), answers up to the default
    /// [`Limits::max_answer`].
    pub fn redis(connection: ConnectionManager, prefix: &str, max_body: usize) -> Self {
        Self::redis_with(connection, prefix, max_body, Limits::default())
    }

    /// In Redis, answers up to `limits.max_answer` (the in-process bounds do not apply: Redis
    /// bounds its memory with `maxmemory`).
    pub fn redis_with(
        connection: ConnectionManager,
        prefix: &str,
        max_body: usize,
        limits: Limits,
    ) -> Self {
        Self {
            store: Store::Redis {
                connection,
                prefix: format!("{prefix}idem:"),
            },
            max_body,
            limits,
        }
    }

    /// Claims `key` for a new request, or returns the record that holds it.
    async fn begin(
        &self,
        key: &RecordKey,
        fingerprint: &str,
    ) -> Result<Option<Record>, redis::RedisError> {
        let running = Record::Running {
            fingerprint: fingerprint.to_owned(),
        };
        match &self.store {
            Store::Memory(memory) => {
                let now = Instant::now();
                let mut shard = memory.shard(key);
                match shard.get(&key.digest, now) {
                    Some(record) => Ok(Some(record)),
                    None => {
                        shard.put(key.digest, running, HOLD, now);
                        Ok(None)
                    }
                }
            }
            Store::Redis { connection, prefix } => {
                let mut connection = connection.clone();
                let full = format!("{prefix}{}", key.hex());
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

    /// Stores the finished request's record, or releases the key (`None`).
    async fn finish(
        &self,
        key: &RecordKey,
        record: Option<Record>,
    ) -> Result<(), redis::RedisError> {
        match &self.store {
            Store::Memory(memory) => {
                let mut shard = memory.shard(key);
                match record {
                    Some(record) => shard.put(key.digest, record, KEEP, Instant::now()),
                    None => shard.remove(&key.digest),
                }
                Ok(())
            }
            Store::Redis { connection, prefix } => {
                let mut connection = connection.clone();
                let full = format!("{prefix}{}", key.hex());
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

    /// Releases `key`, logging (not failing) when the store is unreachable: the answer goes
    /// out regardless, and a held key expires after [`HOLD`].
    async fn release(&self, key: &RecordKey) {
        if let Err(error) = self.finish(key, None).await {
            tracing::warn!(message = "Could not release an idempotency key.", %error);
        }
    }
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    hash.finalize().into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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

/// An answer body read up to a limit.
enum Buffered {
    /// All of it, within the limit.
    Whole(Bytes),
    /// Over the limit: what was read, followed by the rest as it streams.
    Larger(Body),
}

/// Reads `body` while it stays within `limit` bytes; beyond that, hands it on unread.
async fn buffer_up_to(body: Body, limit: usize) -> Result<Buffered, axum::Error> {
    if body.size_hint().lower() > limit as u64 {
        return Ok(Buffered::Larger(body));
    }
    let mut stream = body.into_data_stream();
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut len = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        len += chunk.len();
        chunks.push(chunk);
        if len > limit {
            let read = futures::stream::iter(chunks.into_iter().map(Ok::<_, axum::Error>));
            return Ok(Buffered::Larger(Body::from_stream(read.chain(stream))));
        }
    }
    Ok(Buffered::Whole(match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.pop().expect("one chunk"),
        _ => chunks.concat().into(),
    }))
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
            crate::middleware::client::client_ip(request.headers(), request.extensions())
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
    let fingerprint = hex(&sha256(&[
        parts.method.as_str().as_bytes(),
        target.as_bytes(),
        &body,
    ]));
    let record_key = RecordKey::new(&caller, key_bytes);
    let credentials = carries_credentials(parts.uri.path());

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
        })) => return replay(status, &headers, body),
        Ok(None) => {}
    }

    let response = next.run(Request::from_parts(parts, Body::from(body))).await;
    let (parts, body) = response.into_parts();
    let retry_invited =
        parts.status.is_server_error() || parts.status == StatusCode::TOO_MANY_REQUESTS;
    if retry_invited || credentials || marked_no_store(&parts.headers) {
        store.release(&record_key).await;
        return Response::from_parts(parts, body);
    }
    let body = match buffer_up_to(body, store.limits.max_answer).await {
        Ok(Buffered::Whole(body)) => body,
        Ok(Buffered::Larger(body)) => {
            tracing::debug!(message = "Answer too large to keep for idempotent replay.");
            store.release(&record_key).await;
            return Response::from_parts(parts, body);
        }
        Err(error) => {
            tracing::warn!(message = "Answer body failed while kept for replay.", %error);
            store.release(&record_key).await;
            return Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
            )
            .into_response();
        }
    };
    let record = Record::Done {
        fingerprint,
        status: parts.status.as_u16(),
        headers: KEPT_HEADERS
            .iter()
            .filter_map(|name| {
                let value = parts.headers.get(name)?.to_str().ok()?;
                Some((name.as_str().to_owned(), value.to_owned()))
            })
            .collect(),
        body: body.clone(),
    };
    if let Err(error) = store.finish(&record_key, Some(record)).await {
        tracing::warn!(message = "Could not store the idempotent response.", %error);
    }
    Response::from_parts(parts, Body::from(body))
}

fn replay(status: u16, headers: &[(String, String)], body: Bytes) -> Response {
    let mut response = Response::new(Body::from(body));
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

#[cfg(test)]
impl Idempotency {
    /// (records, bytes counted) of the in-process store.
    fn usage(&self) -> (usize, usize) {
        match &self.store {
            Store::Memory(memory) => memory.shards.iter().fold((0, 0), |(n, b), shard| {
                let shard = shard.lock().unwrap();
                (n + shard.records.len(), b + shard.bytes)
            }),
            Store::Redis { .. } => (0, 0),
        }
    }
}

#[cfg(test)]
mod tests;
