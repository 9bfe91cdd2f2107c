//! Leader election: the Kubernetes path against a mocked API server (kube's client over a
//! `tower_test` mock, as kube-rs tests controllers), the PostgreSQL path on the real server.
//!
//! The Kubernetes tests run on tokio's paused clock: the elector's sleeps and timeouts advance
//! virtual time, so fifteen-second leases take no real time and every ordering is exact.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use kube::client::Body;
use mirai_platform::CancellationToken;
use mirai_platform::config::DatabaseConfig;
use mirai_platform::db;
use mirai_platform::leader::{
    Backend, Elector, LeaderElection, LeaseName, LeaseTiming, run_while_leader,
};
use mirai_platform::telemetry::Metrics;
use mirai_platform::testing::TestDatabase;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, timeout};
use tower_test::mock;

const LEASE: &str = "mirai-stock-data-feeds";
const NAMESPACE: &str = "mirai";
const LEASES_PATH: &str = "/apis/coordination.k8s.io/v1/namespaces/mirai/leases";

// === A mocked API server for coordination.k8s.io/v1 Leases ===

/// What the API server does instead of answering normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// `500` for every request (etcd unavailable).
    Errors,
    /// Requests are accepted and never answered (a partitioned control plane).
    Hang,
}

/// An in-memory API server holding Leases: `GET`, `POST` and `PUT` with the API server's
/// semantics (`404`, `409 AlreadyExists`, `409 Conflict` on a stale `resourceVersion`, `422`
/// for an update without one). Every client made by [`FakeApi::client`] shares its state.
#[derive(Clone, Default)]
struct FakeApi {
    state: Arc<Mutex<ApiState>>,
}

#[derive(Default)]
struct ApiState {
    leases: BTreeMap<String, Value>,
    version: u64,
    fault: Option<Fault>,
    hung: Vec<mock::SendResponse<Response<Body>>>,
    conflicts: usize,
    /// When each holder last wrote a lease naming it, on the (paused) tokio clock.
    written_by: BTreeMap<String, Instant>,
}

impl FakeApi {
    /// A kube client whose requests this server answers; its default namespace is `mirai`.
    fn client(&self) -> kube::Client {
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        tokio::spawn(self.clone().serve(handle));
        kube::Client::new(service, NAMESPACE)
    }

    async fn serve(self, mut handle: mock::Handle<Request<Body>, Response<Body>>) {
        while let Some((request, send)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let body = body.collect_bytes().await.expect("request body");
            let mut state = self.state.lock().unwrap();
            match state.fault {
                Some(Fault::Hang) => state.hung.push(send),
                Some(Fault::Errors) => send.send_response(status(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    "etcdserver: request timed out",
                )),
                None => send.send_response(state.answer(&parts.method, parts.uri.path(), &body)),
            }
        }
    }

    fn set_fault(&self, fault: Option<Fault>) {
        let mut state = self.state.lock().unwrap();
        state.fault = fault;
        // Healing drops the hung requests: their clients see the connection fail.
        state.hung.clear();
    }

    fn lease(&self, name: &str) -> Option<Lease> {
        let state = self.state.lock().unwrap();
        state
            .leases
            .get(name)
            .map(|lease| serde_json::from_value(lease.clone()).expect("a valid Lease"))
    }

    fn spec(&self, name: &str) -> LeaseSpec {
        self.lease(name)
            .and_then(|lease| lease.spec)
            .expect("the lease exists")
    }

    /// Writes `spec` as another actor would (a replica we do not control, `kubectl`).
    fn write_as_other(&self, name: &str, spec: Value) {
        let mut state = self.state.lock().unwrap();
        let lease = json!({"metadata": {"name": name}, "spec": spec});
        let stored = state.store(lease);
        state.leases.insert(name.to_owned(), stored);
    }

    fn conflicts(&self) -> usize {
        self.state.lock().unwrap().conflicts
    }

    fn last_write_by(&self, holder: &str) -> Option<Instant> {
        self.state.lock().unwrap().written_by.get(holder).copied()
    }
}

impl ApiState {
    fn answer(&mut self, method: &Method, path: &str, body: &[u8]) -> Response<Body> {
        let Some(rest) = path.strip_prefix(LEASES_PATH) else {
            return status(
                StatusCode::NOT_FOUND,
                "NotFound",
                "the server could not find the requested resource",
            );
        };
        let name = rest.strip_prefix('/');
        match (method, name) {
            (&Method::GET, Some(name)) => match self.leases.get(name) {
                Some(lease) => ok(StatusCode::OK, lease),
                None => not_found(name),
            },
            (&Method::POST, None) => {
                let lease: Value = serde_json::from_slice(body).expect("a JSON Lease");
                let name = lease["metadata"]["name"]
                    .as_str()
                    .expect("metadata.name")
                    .to_owned();
                if self.leases.contains_key(&name) {
                    return status(
                        StatusCode::CONFLICT,
                        "AlreadyExists",
                        &format!("leases.coordination.k8s.io \"{name}\" already exists"),
                    );
                }
                let stored = self.store(lease);
                self.leases.insert(name, stored.clone());
                ok(StatusCode::CREATED, &stored)
            }
            (&Method::PUT, Some(name)) => {
                let lease: Value = serde_json::from_slice(body).expect("a JSON Lease");
                let Some(current) = self.leases.get(name) else {
                    return not_found(name);
                };
                let Some(version) = lease["metadata"]["resourceVersion"].as_str() else {
                    return status(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "Invalid",
                        "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update",
                    );
                };
                if current["metadata"]["resourceVersion"].as_str() != Some(version) {
                    self.conflicts += 1;
                    return status(
                        StatusCode::CONFLICT,
                        "Conflict",
                        &format!(
                            "Operation cannot be fulfilled on leases.coordination.k8s.io \"{name}\": \
                             the object has been modified; please apply your changes to the latest \
                             version and try again"
                        ),
                    );
                }
                let stored = self.store(lease);
                self.leases.insert(name.to_owned(), stored.clone());
                ok(StatusCode::OK, &stored)
            }
            _ => status(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            ),
        }
    }

    /// The object as the API server keeps it: server-set metadata, a new resourceVersion.
    fn store(&mut self, mut lease: Value) -> Value {
        self.version += 1;
        let name = lease["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let uid = self
            .leases
            .get(&name)
            .and_then(|old| old["metadata"]["uid"].as_str().map(str::to_owned))
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        lease["apiVersion"] = json!("coordination.k8s.io/v1");
        lease["kind"] = json!("Lease");
        let metadata = lease["metadata"].as_object_mut().expect("metadata");
        metadata.insert("namespace".into(), json!(NAMESPACE));
        metadata.insert("uid".into(), json!(uid));
        metadata.insert("resourceVersion".into(), json!(self.version.to_string()));
        metadata.insert("creationTimestamp".into(), json!("2026-01-05T09:30:00Z"));
        if let Some(holder) = lease["spec"]["holderIdentity"].as_str() {
            self.written_by.insert(holder.to_owned(), Instant::now());
        }
        lease
    }
}

fn ok(code: StatusCode, lease: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(lease).unwrap()))
        .unwrap()
}

fn not_found(name: &str) -> Response<Body> {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("leases.coordination.k8s.io \"{name}\" not found"),
    )
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": {"group": "coordination.k8s.io", "kind": "leases"},
        "code": code.as_u16(),
    });
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap()
}

fn micro_now() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

// === Candidates under test ===

#[derive(Debug, PartialEq, Eq)]
enum Event {
    /// Term `n` of the work started.
    Started(u32),
    /// Term `n` returned after its token fired.
    Stopped(u32),
    /// Term `n` was dropped without returning (aborted).
    Dropped(u32),
}

/// One elector running [`run_while_leader`] with work that reports its terms.
struct Candidate {
    events: mpsc::UnboundedReceiver<Event>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    metrics: Metrics,
}

/// Sends [`Event::Dropped`] unless defused (the work returned normally).
struct DropSignal(mpsc::UnboundedSender<Event>, u32, bool);

impl Drop for DropSignal {
    fn drop(&mut self) {
        if !self.2 {
            let _ = self.0.send(Event::Dropped(self.1));
        }
    }
}

impl Candidate {
    /// `obedient`: the work returns when its token fires; otherwise it ignores the token.
    fn spawn(elector: Elector, metrics: Metrics, obedient: bool) -> Self {
        let (tx, events) = mpsc::unbounded_channel();
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let task = tokio::spawn(async move {
            let name = LeaseName::parse(LEASE).unwrap();
            let mut term = 0;
            run_while_leader(&elector, &name, stop, move |token| {
                term += 1;
                let (tx, n) = (tx.clone(), term);
                async move {
                    let mut signal = DropSignal(tx.clone(), n, false);
                    let _ = tx.send(Event::Started(n));
                    if obedient {
                        token.cancelled().await;
                    } else {
                        std::future::pending::<()>().await;
                    }
                    signal.2 = true;
                    let _ = tx.send(Event::Stopped(n));
                }
            })
            .await;
        });
        Self {
            events,
            shutdown,
            task,
            metrics,
        }
    }

    async fn next(&mut self, within: Duration) -> Event {
        timeout(within, self.events.recv())
            .await
            .expect("no leader-election event in time")
            .expect("the candidate ended")
    }

    /// True when nothing happens for `period`.
    async fn quiet_for(&mut self, period: Duration) -> bool {
        timeout(period, self.events.recv()).await.is_err()
    }

    fn gauge(&self) -> Option<i64> {
        let text = self.metrics.encode();
        let prefix = format!("mirai_leader{{name=\"{LEASE}\"}} ");
        text.lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .map(|value| value.trim().parse().expect("a gauge value"))
    }

    /// Fires shutdown and waits until `run_while_leader` has returned.
    async fn shut_down(self) -> mpsc::UnboundedReceiver<Event> {
        self.shutdown.cancel();
        timeout(Duration::from_secs(60), self.task)
            .await
            .expect("the elector returned after shutdown")
            .expect("the elector did not panic");
        self.events
    }
}

fn config(identity: &str, timing: LeaseTiming) -> LeaderElection {
    LeaderElection {
        identity: identity.to_owned(),
        timing,
        backend: Backend::Postgres,
    }
}

fn kube_candidate(api: &FakeApi, identity: &str, obedient: bool) -> Candidate {
    let metrics = Metrics::new();
    let elector = Elector::with_kube_client(
        &config(identity, LeaseTiming::default()),
        api.client(),
        &metrics,
    );
    Candidate::spawn(elector, metrics, obedient)
}

const PATIENCE: Duration = Duration::from_secs(120);

// === Kubernetes ===

#[tokio::test(start_paused = true)]
async fn an_absent_lease_is_created_renewed_and_released_on_shutdown() {
    let api = FakeApi::default();
    let mut a = kube_candidate(&api, "pod-a", true);
    assert_eq!(a.next(PATIENCE).await, Event::Started(1));
    assert_eq!(a.gauge(), Some(1));

    let created = api.lease(LEASE).unwrap();
    let spec = created.spec.clone().unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("pod-a"));
    assert_eq!(spec.lease_duration_seconds, Some(15));
    assert_eq!(spec.lease_transitions, Some(0));
    assert_eq!(spec.acquire_time, spec.renew_time);

    // Several retry periods later the holder has renewed: same acquisition, newer renewal.
    assert!(a.quiet_for(Duration::from_secs(7)).await);
    let renewed = api.lease(LEASE).unwrap();
    assert_ne!(
        renewed.metadata.resource_version,
        created.metadata.resource_version
    );
    let renewed = renewed.spec.unwrap();
    assert_eq!(renewed.holder_identity.as_deref(), Some("pod-a"));
    assert_eq!(renewed.acquire_time, spec.acquire_time);
    assert!(renewed.renew_time > spec.renew_time);
    assert_eq!(renewed.lease_transitions, Some(0));

    let metrics = a.metrics.clone();
    let mut events = a.shut_down().await;
    assert_eq!(events.recv().await, Some(Event::Stopped(1)));
    let released = api.spec(LEASE);
    assert_eq!(released.holder_identity, None);
    assert_eq!(released.lease_duration_seconds, Some(1));
    assert_eq!(released.lease_transitions, Some(0));
    assert!(
        metrics
            .encode()
            .contains(&format!("mirai_leader{{name=\"{LEASE}\"}} 0"))
    );
}

#[tokio::test(start_paused = true)]
async fn a_live_lease_is_left_alone_and_taken_over_once_its_holder_falls_silent() {
    let api = FakeApi::default();
    let held = |renewed: String| {
        json!({
            "holderIdentity": "pod-b",
            "leaseDurationSeconds": 15,
            "acquireTime": "2026-01-05T09:30:00.000000Z",
            "renewTime": renewed,
            "leaseTransitions": 3,
        })
    };
    api.write_as_other(LEASE, held(micro_now()));
    // pod-b renews every 2 s, as a healthy leader does.
    let keeper = tokio::spawn({
        let api = api.clone();
        async move {
            loop {
                sleep(Duration::from_secs(2)).await;
                api.write_as_other(LEASE, held(micro_now()));
            }
        }
    });

    let mut a = kube_candidate(&api, "pod-a", true);
    assert!(
        a.quiet_for(Duration::from_secs(60)).await,
        "a live lease must not be taken"
    );
    assert_eq!(a.gauge(), Some(0));
    assert_eq!(api.spec(LEASE).holder_identity.as_deref(), Some("pod-b"));

    keeper.abort();
    let silent_since = Instant::now();
    assert_eq!(a.next(PATIENCE).await, Event::Started(1));
    // The holder's last renewal came up to one renew period (2 s) before it fell silent.
    assert!(
        silent_since.elapsed() >= Duration::from_secs(15 - 2),
        "taken over after {:?}, before the lease expired",
        silent_since.elapsed()
    );
    let spec = api.spec(LEASE);
    assert_eq!(spec.holder_identity.as_deref(), Some("pod-a"));
    assert_eq!(spec.lease_transitions, Some(4));
    assert_eq!(spec.lease_duration_seconds, Some(15));
    assert_ne!(
        spec.acquire_time.unwrap().0.to_string(),
        "2026-01-05T09:30:00Z",
        "a takeover is a new acquisition"
    );
    a.shut_down().await;
}

async fn renewals_failing_past_the_deadline_stop_the_work(fault: Fault) {
    let api = FakeApi::default();
    let mut a = kube_candidate(&api, "pod-a", true);
    assert_eq!(a.next(PATIENCE).await, Event::Started(1));
    assert!(a.quiet_for(Duration::from_secs(3)).await);

    api.set_fault(Some(fault));
    let last_renewal = api.last_write_by("pod-a").unwrap();
    assert_eq!(a.next(PATIENCE).await, Event::Stopped(1));
    assert_eq!(a.gauge(), Some(0));
    // The safety property: the work stopped before a standby that saw the last renewal
    // could take over (15 s after it), and not before the renew deadline (10 s).
    let stopped_after = last_renewal.elapsed();
    assert!(
        stopped_after >= Duration::from_secs(10) && stopped_after < Duration::from_secs(15),
        "stopped {stopped_after:?} after the last renewal"
    );

    // The API server heals before anyone else took the lease: the same holder resumes.
    api.set_fault(None);
    assert_eq!(a.next(PATIENCE).await, Event::Started(2));
    let spec = api.spec(LEASE);
    assert_eq!(spec.holder_identity.as_deref(), Some("pod-a"));
    assert_eq!(spec.lease_transitions, Some(0));
    a.shut_down().await;
}

#[tokio::test(start_paused = true)]
async fn api_errors_past_the_renew_deadline_stop_the_work() {
    renewals_failing_past_the_deadline_stop_the_work(Fault::Errors).await;
}

#[tokio::test(start_paused = true)]
async fn an_unresponsive_api_server_stops_the_work_at_the_renew_deadline() {
    renewals_failing_past_the_deadline_stop_the_work(Fault::Hang).await;
}

#[tokio::test(start_paused = true)]
async fn a_lease_written_by_someone_else_ends_leadership_at_the_next_renewal() {
    let api = FakeApi::default();
    let mut a = kube_candidate(&api, "pod-a", true);
    assert_eq!(a.next(PATIENCE).await, Event::Started(1));

    // Another writer takes the lease; pod-a's next renewal, written against the version it
    // last saw, conflicts, and a fresh read shows the new holder.
    api.write_as_other(
        LEASE,
        json!({
            "holderIdentity": "intruder",
            "leaseDurationSeconds": 15,
            "acquireTime": micro_now(),
            "renewTime": micro_now(),
            "leaseTransitions": 1,
        }),
    );
    let taken = Instant::now();
    assert_eq!(a.next(PATIENCE).await, Event::Stopped(1));
    assert!(
        taken.elapsed() < Duration::from_secs(10),
        "a conflict is a certain loss, not a reason to wait for the deadline"
    );
    assert!(api.conflicts() >= 1, "the renewal must have conflicted");
    assert_eq!(api.spec(LEASE).holder_identity.as_deref(), Some("intruder"));
    assert!(
        a.quiet_for(Duration::from_secs(10)).await,
        "the intruder's lease is live"
    );
    a.shut_down().await;
}

#[tokio::test(start_paused = true)]
async fn work_that_ignores_its_token_is_aborted_before_a_standby_may_take_over() {
    let api = FakeApi::default();
    let mut a = kube_candidate(&api, "pod-a", false);
    assert_eq!(a.next(PATIENCE).await, Event::Started(1));
    api.set_fault(Some(Fault::Errors));
    let last_renewal = api.last_write_by("pod-a").unwrap();
    assert_eq!(a.next(PATIENCE).await, Event::Dropped(1));
    assert!(
        last_renewal.elapsed() <= Duration::from_secs(15),
        "aborted {:?} after the last renewal",
        last_renewal.elapsed()
    );
    api.set_fault(None);
    a.shut_down().await;
}

#[tokio::test(start_paused = true)]
async fn two_candidates_elect_one_leader_and_a_release_hands_over_at_once() {
    let api = FakeApi::default();
    let mut a = kube_candidate(&api, "pod-a", true);
    let mut b = kube_candidate(&api, "pod-b", true);

    // Both start at the same instant and both find no lease: one create wins, the other
    // gets AlreadyExists and then finds a live lease.
    let (first, second) = tokio::select! {
        event = a.next(PATIENCE) => { assert_eq!(event, Event::Started(1)); (a, b) }
        event = b.next(PATIENCE) => { assert_eq!(event, Event::Started(1)); (b, a) }
    };
    let (leader, mut standby) = (first, second);
    assert!(
        standby.quiet_for(Duration::from_secs(60)).await,
        "only one candidate may lead"
    );
    assert_eq!((leader.gauge(), standby.gauge()), (Some(1), Some(0)));
    let leader_identity = api.spec(LEASE).holder_identity.unwrap();

    let released = Instant::now();
    let mut events = leader.shut_down().await;
    assert_eq!(events.recv().await, Some(Event::Stopped(1)));
    assert_eq!(standby.next(PATIENCE).await, Event::Started(1));
    assert!(
        released.elapsed() < Duration::from_secs(15),
        "a released lease is taken without waiting for it to expire"
    );
    let spec = api.spec(LEASE);
    assert_ne!(spec.holder_identity, Some(leader_identity));
    assert_eq!(spec.lease_transitions, Some(1));
    assert_eq!(standby.gauge(), Some(1));
    standby.shut_down().await;
}

#[tokio::test]
async fn the_in_cluster_client_builds_with_one_tls_provider() {
    // rustls panics at first use when several crypto providers are compiled in and none is
    // chosen; the kube feature set must keep it to the workspace's one (aws-lc-rs).
    let config = kube::Config::new("https://10.96.0.1:443".parse().unwrap());
    kube::Client::try_from(config).expect("a client for an https API server");
}

// === PostgreSQL ===

fn pg_timing() -> LeaseTiming {
    LeaseTiming::new(
        Duration::from_secs(2),
        Duration::from_secs(1),
        Duration::from_millis(100),
    )
    .unwrap()
}

async fn pg_candidate(pool: &sqlx::PgPool, identity: &str) -> Candidate {
    let metrics = Metrics::new();
    let elector = Elector::new(&config(identity, pg_timing()), pool, &metrics).unwrap();
    Candidate::spawn(elector, metrics, true)
}

/// The backend pid and application name of the session holding an advisory lock here.
async fn lock_holders(pool: &sqlx::PgPool) -> Vec<(i32, String)> {
    sqlx::query_as(
        "SELECT l.pid, a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid) \
         WHERE l.locktype = 'advisory' AND l.granted \
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

const PG_PATIENCE: Duration = Duration::from_secs(20);

/// Starts two candidates and returns (leader, standby) once one of them leads.
async fn pg_pair(pool: &sqlx::PgPool) -> ((Candidate, &'static str), (Candidate, &'static str)) {
    let mut a = pg_candidate(pool, "pod-a").await;
    let mut b = pg_candidate(pool, "pod-b").await;
    let (leader, standby) = tokio::select! {
        event = a.next(PG_PATIENCE) => { assert_eq!(event, Event::Started(1)); ((a, "pod-a"), (b, "pod-b")) }
        event = b.next(PG_PATIENCE) => { assert_eq!(event, Event::Started(1)); ((b, "pod-b"), (a, "pod-a")) }
    };
    ((leader), (standby))
}

#[tokio::test]
async fn postgres_one_of_two_leads_and_a_shutdown_hands_over() {
    let database = TestDatabase::create("leader").await;
    let pool = db::connect(&DatabaseConfig::with_url(database.url()))
        .await
        .unwrap();
    let ((leader, leader_id), (mut standby, standby_id)) = pg_pair(&pool).await;
    assert!(
        standby.quiet_for(Duration::from_secs(1)).await,
        "only one candidate may lead (ten retry periods)"
    );
    assert_eq!((leader.gauge(), standby.gauge()), (Some(1), Some(0)));
    let holders = lock_holders(&pool).await;
    assert_eq!(holders.len(), 1, "{holders:?}");
    assert_eq!(holders[0].1, format!("mirai-leader {leader_id}"));

    let mut events = leader.shut_down().await;
    assert_eq!(events.recv().await, Some(Event::Stopped(1)));
    assert_eq!(standby.next(PG_PATIENCE).await, Event::Started(1));
    assert_eq!(standby.gauge(), Some(1));
    let holders = lock_holders(&pool).await;
    assert_eq!(holders.len(), 1, "{holders:?}");
    assert_eq!(holders[0].1, format!("mirai-leader {standby_id}"));
    standby.shut_down().await;
    assert!(
        lock_holders(&pool).await.is_empty(),
        "shutdown releases the lock"
    );
}

#[tokio::test]
async fn postgres_a_killed_lock_session_stops_the_work_and_moves_leadership() {
    let database = TestDatabase::create("leader").await;
    let pool = db::connect(&DatabaseConfig::with_url(database.url()))
        .await
        .unwrap();
    let ((mut leader, leader_id), (mut standby, standby_id)) = pg_pair(&pool).await;

    let holders = lock_holders(&pool).await;
    assert_eq!(holders.len(), 1, "{holders:?}");
    let (pid, application) = holders[0].clone();
    assert_eq!(application, format!("mirai-leader {leader_id}"));
    let terminated: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(terminated);

    // The old leader learns at its next session check; the standby takes the freed lock.
    assert_eq!(leader.next(PG_PATIENCE).await, Event::Stopped(1));
    assert_eq!(leader.gauge(), Some(0));
    assert_eq!(standby.next(PG_PATIENCE).await, Event::Started(1));
    let holders = lock_holders(&pool).await;
    assert_eq!(holders.len(), 1, "{holders:?}");
    assert_eq!(holders[0].1, format!("mirai-leader {standby_id}"));
    // The old leader campaigns again and waits.
    assert!(leader.quiet_for(Duration::from_secs(1)).await);

    standby.shut_down().await;
    leader.shut_down().await;
}

// === No election ===

#[tokio::test]
async fn without_election_the_work_runs_at_once_until_shutdown() {
    // Backend `none` never touches the database: the pool points at a closed port.
    let pool = sqlx::PgPool::connect_lazy("postgres://nobody@127.0.0.1:1/none").unwrap();
    let metrics = Metrics::new();
    let elector = Elector::new(&LeaderElection::disabled("mirai-test"), &pool, &metrics).unwrap();
    let mut candidate = Candidate::spawn(elector, metrics, true);
    assert_eq!(
        candidate.next(Duration::from_secs(5)).await,
        Event::Started(1)
    );
    assert_eq!(candidate.gauge(), Some(1));
    let metrics = candidate.metrics.clone();
    let mut events = candidate.shut_down().await;
    assert_eq!(events.recv().await, Some(Event::Stopped(1)));
    assert!(
        metrics
            .encode()
            .contains(&format!("mirai_leader{{name=\"{LEASE}\"}} 0"))
    );
}
