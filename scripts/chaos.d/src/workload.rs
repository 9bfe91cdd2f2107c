//! The workload: an open model (each operation class at a fixed arrival rate, request *i* sent
//! at `start + i / rate` whether or not earlier ones answered, latency measured from that
//! intended send time), spread over the two gateways by round-robin among those in rotation.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rand::Rng;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::stack::Stack;

pub const PASSWORD: &str = "chaos harness passphrase 42";

/// One request as sent: when it was due (seconds since the run began), what it was, and how it
/// ended (`status` 0: no HTTP answer at all).
#[derive(Clone, Debug)]
pub struct Record {
    pub at: f64,
    pub op: &'static str,
    pub status: u16,
    pub latency_ms: f64,
}

impl Record {
    /// A failure is what a client could not use: a 5xx, a 429 or no answer. 4xx answers to
    /// races the workload makes itself (an alert deleted meanwhile) are answers.
    pub fn failed(&self) -> bool {
        self.status == 0 || self.status == 429 || self.status >= 500
    }
}

struct User {
    user_id: String,
    email: String,
    access: String,
    refresh: String,
    alerts: Vec<String>,
    webhooks: Vec<String>,
}

/// What the workload was told was stored (the invariants check each against the databases).
#[derive(Clone, Default, Debug)]
pub struct Created {
    pub users: BTreeSet<String>,
    pub alerts: BTreeSet<String>,
    pub alerts_deleted: BTreeSet<String>,
    /// Deletes that failed without an answer saying whether they happened (5xx, none).
    pub alerts_maybe_deleted: BTreeSet<String>,
    /// Every answer to a delete of each alert (0: none), for the report of a missing one.
    pub alert_deletes: std::collections::BTreeMap<String, Vec<u16>>,
    pub webhooks: BTreeSet<String>,
    pub reports: BTreeSet<String>,
    pub deleted_accounts: BTreeSet<String>,
}

pub struct Workload {
    stack: Arc<Stack>,
    http: reqwest::Client,
    pub began: Instant,
    pub records: std::sync::Mutex<Vec<Record>>,
    users: Vec<Mutex<User>>,
    extra_users: Mutex<Vec<User>>,
    pub created: Mutex<Created>,
    rr: AtomicUsize,
    stop: AtomicBool,
    pub hook_url: String,
    /// Alert levels are drawn from this price range (the replayed bars' closes).
    pub price_range: std::sync::Mutex<(f64, f64)>,
}

/// An operation class and its rate per second (scaled by `--rate`).
pub const MIX: &[(&str, f64)] = &[
    ("GET quote", 4.0),
    ("GET bars", 1.5),
    ("GET forecast", 1.5),
    ("GET indicators", 0.5),
    ("GET notifications", 1.5),
    ("GET me", 1.5),
    ("POST register", 0.2),
    ("POST login", 0.2),
    ("POST refresh", 0.4),
    ("POST alert", 0.6),
    ("PATCH alert", 0.3),
    ("DELETE alert", 0.15),
    ("POST webhook", 0.1),
    ("PATCH webhook", 0.1),
    ("DELETE webhook", 0.03),
    ("POST report", 0.05),
    ("DELETE me", 0.03),
];

impl Workload {
    /// Registers and logs in `users` accounts (before any fault).
    pub async fn prepare(
        stack: Arc<Stack>,
        users: usize,
        hook_url: String,
    ) -> Result<Arc<Workload>> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            // A new connection per request, as a connection-level balancer in front of the
            // gateways would make: a gateway that is shutting down closes its idle keep-alive
            // connections, and a request sent on one just then is lost without ever being
            // answered or refused. A refused connect is retried on the other gateway.
            .pool_max_idle_per_host(0)
            .build()?;
        let mut this = Workload {
            stack,
            http,
            began: Instant::now(),
            records: Default::default(),
            users: Vec::new(),
            extra_users: Mutex::new(Vec::new()),
            created: Default::default(),
            rr: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            hook_url,
            price_range: std::sync::Mutex::new((1000.0, 3000.0)),
        };
        let mut pool = Vec::new();
        for _ in 0..users {
            pool.push(Mutex::new(this.new_user().await?));
        }
        this.users = pool;
        Ok(Arc::new(this))
    }

    /// Registers and logs in one account (outside the recorded workload).
    async fn new_user(&self) -> Result<User> {
        let email = format!("chaos-{}@example.com", uuid::Uuid::now_v7().simple());
        let (status, body) = self
            .call(
                "POST",
                "/v1/auth/register",
                None,
                Some(json!({"email": email, "password": PASSWORD})),
            )
            .await?;
        if status != 201 {
            bail!("register answered {status}: {body}");
        }
        let user_id = str_field(&body, "user_id")?;
        self.created.lock().await.users.insert(user_id.clone());
        let tokens = self.login(&email).await?;
        Ok(User {
            user_id,
            email,
            access: str_field(&tokens, "access_token")?,
            refresh: str_field(&tokens, "refresh_token")?,
            alerts: Vec::new(),
            webhooks: Vec::new(),
        })
    }

    pub async fn login(&self, email: &str) -> Result<Value> {
        for _ in 0..20 {
            let (status, body) = self
                .call(
                    "POST",
                    "/v1/auth/login",
                    None,
                    Some(json!({"email": email, "password": PASSWORD})),
                )
                .await?;
            if status == 200 {
                return Ok(body);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        bail!("login of {email} kept failing")
    }

    /// One HTTP call through a gateway in rotation; a connection refused by one gateway is
    /// tried once on the other (what a load balancer does with a connect failure: nothing
    /// was sent).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<(u16, Value)> {
        let gateways = self.stack.gateways();
        let first = self.rr.fetch_add(1, Ordering::Relaxed);
        let mut last_error = None;
        for attempt in 0..2 {
            let candidates: Vec<_> = gateways
                .iter()
                .filter(|g| g.in_rotation.load(Ordering::SeqCst))
                .collect();
            let gateway = if candidates.is_empty() {
                &gateways[(first + attempt) % gateways.len()]
            } else {
                candidates[(first + attempt) % candidates.len()]
            };
            let url = format!("{}{path}", self.stack.layout.gateway_url(gateway.replica));
            let mut request = self.http.request(method.parse()?, url);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            if let Some(body) = &body {
                request = request.json(body);
            }
            match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let bytes = response.bytes().await.unwrap_or_default();
                    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                    return Ok((status, value));
                }
                Err(error) if error.is_connect() => last_error = Some(error),
                Err(error) => return Err(error.into()),
            }
        }
        Err(last_error.expect("two attempts").into())
    }

    fn record(&self, due: Instant, op: &'static str, status: u16) {
        let record = Record {
            at: due.duration_since(self.began).as_secs_f64(),
            op,
            status,
            latency_ms: due.elapsed().as_secs_f64() * 1000.0,
        };
        self.records.lock().expect("records").push(record);
    }

    /// Runs the mix at `scale` × the rates until `stop`.
    pub fn start(self: &Arc<Self>, scale: f64) -> Vec<tokio::task::JoinHandle<()>> {
        MIX.iter()
            .map(|&(op, rate)| {
                let this = self.clone();
                let rate = rate * scale;
                tokio::spawn(async move {
                    let start = Instant::now();
                    for i in 0u64.. {
                        if this.stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let due = start + Duration::from_secs_f64(i as f64 / rate);
                        tokio::time::sleep_until(due.into()).await;
                        let this = this.clone();
                        tokio::spawn(async move {
                            let status = this.run(op).await.unwrap_or(0);
                            this.record(due, op, status);
                        });
                    }
                })
            })
            .collect()
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// A pool user not busy with another operation (token refreshes rotate, so one at a time).
    async fn some_user(&self) -> tokio::sync::MutexGuard<'_, User> {
        loop {
            let i = rand::rng().random_range(0..self.users.len());
            if let Ok(user) = self.users[i].try_lock() {
                return user;
            }
            tokio::task::yield_now().await;
        }
    }

    async fn run(&self, op: &'static str) -> Result<u16> {
        let mut user = self.some_user().await;
        let token = user.access.clone();
        let token = Some(token.as_str());
        let status = match op {
            "GET quote" => self.call("GET", "/v1/stocks/SPX/quote", token, None).await?.0,
            "GET bars" => {
                self.call("GET", "/v1/stocks/SPX/bars?timeframe=1Day&newest_first=true&limit=50", token, None)
                    .await?
                    .0
            }
            "GET forecast" => self.call("GET", "/v1/predictions/SPX", token, None).await?.0,
            "GET indicators" => {
                self.call(
                    "GET",
                    "/v1/analytics/SPX/indicators?indicators=sma(timeperiod=20),rsi&start=2005-01-01T00:00:00Z&end=2006-01-01T00:00:00Z",
                    token,
                    None,
                )
                .await?
                .0
            }
            "GET notifications" => self.call("GET", "/v1/notifications?page_size=20", token, None).await?.0,
            "GET me" => self.call("GET", "/v1/me", token, None).await?.0,
            "POST register" => {
                let email = format!("chaos-{}@example.com", uuid::Uuid::now_v7().simple());
                let (status, body) = self
                    .call("POST", "/v1/auth/register", None, Some(json!({"email": email, "password": PASSWORD})))
                    .await?;
                if status == 201 {
                    let user_id = str_field(&body, "user_id")?;
                    self.created.lock().await.users.insert(user_id.clone());
                    self.extra_users.lock().await.push(User {
                        user_id,
                        email,
                        access: String::new(),
                        refresh: String::new(),
                        alerts: Vec::new(),
                        webhooks: Vec::new(),
                    });
                }
                status
            }
            "POST login" => {
                let (status, body) = self
                    .call("POST", "/v1/auth/login", None, Some(json!({"email": user.email, "password": PASSWORD})))
                    .await?;
                if status == 200 {
                    user.access = str_field(&body, "access_token")?;
                    user.refresh = str_field(&body, "refresh_token")?;
                }
                status
            }
            "POST refresh" => {
                let (status, body) = self
                    .call("POST", "/v1/auth/refresh", None, Some(json!({"refresh_token": user.refresh})))
                    .await?;
                if status == 200 {
                    user.access = str_field(&body, "access_token")?;
                    user.refresh = str_field(&body, "refresh_token")?;
                }
                status
            }
            "POST alert" => {
                let (lo, hi) = *self.price_range.lock().expect("range");
                let level = rand::rng().random_range(lo..hi).round();
                let mut channels = vec!["in_app"];
                if !user.webhooks.is_empty() {
                    channels.push("webhook");
                }
                let kind = ["crossing_up", "crossing_down", "crossing"][rand::rng().random_range(0..3)];
                let body = json!({
                    "symbol": "SPX",
                    "name": format!("chaos {kind} {level}"),
                    "condition": {"kind": kind, "level": level},
                    "frequency": "every_time",
                    "cooldown_seconds": 60,
                    "channels": channels,
                });
                let (status, body) = self.call("POST", "/v1/alerts", token, Some(body)).await?;
                if status == 201 {
                    let id = str_field(&body, "alert_id")?;
                    self.created.lock().await.alerts.insert(id.clone());
                    user.alerts.push(id);
                }
                status
            }
            "PATCH alert" => match user.alerts.last() {
                None => return Ok(self.call("GET", "/v1/alerts", token, None).await?.0),
                Some(id) => {
                    let body = json!({"name": format!("renamed {}", rand::rng().random::<u32>())});
                    self.call("PATCH", &format!("/v1/alerts/{id}"), token, Some(body)).await?.0
                }
            },
            "DELETE alert" => match user.alerts.first().cloned() {
                None => return Ok(self.call("GET", "/v1/alerts", token, None).await?.0),
                Some(id) => {
                    // No answer (0) or a 5xx: the delete may have happened.
                    let status = match self.call("DELETE", &format!("/v1/alerts/{id}"), token, None).await {
                        Ok((status, _)) => status,
                        Err(_) => 0,
                    };
                    let mut created = self.created.lock().await;
                    created.alert_deletes.entry(id.clone()).or_default().push(status);
                    if status == 204 {
                        user.alerts.retain(|a| *a != id);
                        created.alerts_deleted.insert(id);
                    } else if status == 0 || status >= 500 {
                        created.alerts_maybe_deleted.insert(id);
                    }
                    status
                }
            },
            "POST webhook" => {
                if user.webhooks.len() >= 2 {
                    return Ok(self.call("GET", "/v1/webhooks", token, None).await?.0);
                }
                let body = json!({"url": format!("{}/{}", self.hook_url, user.user_id), "description": "chaos"});
                let (status, body) = self.call("POST", "/v1/webhooks", token, Some(body)).await?;
                if status == 201 {
                    let id = body
                        .get("endpoint")
                        .map(|e| str_field(e, "webhook_endpoint_id"))
                        .context("endpoint in the answer")??;
                    self.created.lock().await.webhooks.insert(id.clone());
                    user.webhooks.push(id);
                }
                status
            }
            "PATCH webhook" => match user.webhooks.last() {
                None => return Ok(self.call("GET", "/v1/webhooks", token, None).await?.0),
                Some(id) => {
                    let body = json!({"description": format!("chaos {}", rand::rng().random::<u32>())});
                    self.call("PATCH", &format!("/v1/webhooks/{id}"), token, Some(body)).await?.0
                }
            },
            "DELETE webhook" => match user.webhooks.first().cloned() {
                None => return Ok(self.call("GET", "/v1/webhooks", token, None).await?.0),
                Some(id) => {
                    let status = self.call("DELETE", &format!("/v1/webhooks/{id}"), token, None).await?.0;
                    if status == 204 {
                        user.webhooks.retain(|w| *w != id);
                        self.created.lock().await.webhooks.remove(&id);
                    }
                    status
                }
            },
            "POST report" => {
                let body = json!({"symbol": "SPX", "formats": ["json", "csv"],
                    "start": "2004-01-01T00:00:00Z", "end": "2006-01-01T00:00:00Z"});
                let (status, body) = self.call("POST", "/v1/reports", token, Some(body)).await?;
                if status == 202 {
                    self.created.lock().await.reports.insert(str_field(&body, "report_id")?);
                }
                status
            }
            "DELETE me" => {
                // A throwaway account registered by the workload, never a pool user.
                drop(user);
                let Some(victim) = self.extra_users.lock().await.pop() else {
                    return Ok(self.call("GET", "/v1/me", token, None).await?.0);
                };
                let tokens = self.login(&victim.email).await?;
                let access = str_field(&tokens, "access_token")?;
                let status = self.call("DELETE", "/v1/me", Some(&access), None).await?.0;
                if status == 202 {
                    self.created.lock().await.deleted_accounts.insert(victim.user_id);
                }
                return Ok(status);
            }
            other => bail!("unknown operation {other}"),
        };
        // An access token lives 15 minutes and only some operations refresh it: a user whose
        // token expired logs in again (the 401 stays recorded).
        if status == 401 {
            let tokens = self.login(&user.email).await?;
            user.access = str_field(&tokens, "access_token")?;
            user.refresh = str_field(&tokens, "refresh_token")?;
        }
        Ok(status)
    }
}

pub fn str_field(value: &Value, name: &str) -> Result<String> {
    value
        .get(name)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .with_context(|| format!("`{name}` in {value}"))
}
