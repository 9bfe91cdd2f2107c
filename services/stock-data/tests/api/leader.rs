//! The feeds run on one replica: two instances of the service on one database elect a leader
//! through the PostgreSQL advisory lock; only the leader accepts replays, a leader that loses
//! its lock session stops its replays, and the other replica takes over.

use std::time::Duration;

use mirai_platform::leader::{Backend, LeaderElection, LeaseTiming};
use mirai_platform::telemetry::Metrics;
use mirai_platform::testing::TestDatabase;
use mirai_proto::stock::v1::{GetReplayStatusRequest, ReplayState, StartReplayRequest};
use mirai_stock_data::config::Config;
use tokio_util::sync::CancellationToken;

use crate::helpers::{Client, connect, ts};

struct Replica {
    identity: &'static str,
    client: Client,
    metrics: Metrics,
    stop: CancellationToken,
    stopped: tokio::task::JoinHandle<()>,
}

async fn replica(db: &TestDatabase, identity: &'static str) -> Replica {
    let mut config = Config::for_tests(db.url());
    config.leader = LeaderElection {
        identity: identity.to_owned(),
        // Fail-over within a couple of seconds.
        timing: LeaseTiming::new(
            Duration::from_secs(2),
            Duration::from_secs(1),
            Duration::from_millis(100),
        )
        .unwrap(),
        backend: Backend::Postgres,
    };
    let app = mirai_stock_data::startup::build_with(&config)
        .await
        .unwrap();
    let metrics = app.service.metrics.clone();
    let addr = app.grpc_addr();
    let stop = CancellationToken::new();
    let stopped = tokio::spawn({
        let stop = stop.clone();
        async move {
            app.run_until_stopped(stop).await.unwrap();
        }
    });
    Replica {
        identity,
        client: connect(addr).await,
        metrics,
        stop,
        stopped,
    }
}

impl Replica {
    /// The whole daily history at 20 bars a second: runs far longer than any test.
    async fn start_replay(&mut self) -> Result<(), tonic::Status> {
        self.client
            .start_replay(StartReplayRequest {
                symbol: "SPX".into(),
                from: Some(ts("2000-01-03T00:00:00Z")),
                bars_per_second: 20.0,
                seed: 1,
                ..Default::default()
            })
            .await
            .map(drop)
    }

    async fn replay_status(&mut self) -> (ReplayState, String) {
        let status = self
            .client
            .get_replay_status(GetReplayStatusRequest {
                symbol: "SPX".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap();
        (status.state(), status.error)
    }

    fn leads(&self) -> bool {
        self.metrics
            .encode()
            .contains("mirai_leader{name=\"mirai-stock-data-feeds\"} 1")
    }

    /// Retries a replay until this replica accepts it (it has become the leader).
    async fn start_replay_once_leading(&mut self) {
        for _ in 0..200 {
            match self.start_replay().await {
                Ok(()) => return,
                Err(status) => assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{} never became the leader", self.identity);
    }

    async fn shut_down(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.stopped)
            .await
            .expect("the replica stopped")
            .unwrap();
    }
}

/// Waits until one of the two accepts a replay; returns (leader, standby).
async fn elected(mut a: Replica, mut b: Replica) -> (Replica, Replica) {
    for _ in 0..200 {
        for first in [true, false] {
            let (leader, standby) = if first {
                (&mut a, &mut b)
            } else {
                (&mut b, &mut a)
            };
            match leader.start_replay().await {
                Ok(()) => {
                    let refused = standby.start_replay().await.unwrap_err();
                    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
                    return if first { (a, b) } else { (b, a) };
                }
                Err(status) => assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("neither replica became the leader");
}

#[tokio::test]
async fn only_the_leader_replays_and_a_lost_lock_moves_the_feed() {
    let db = TestDatabase::create("stock_data").await;
    let a = replica(&db, "replica-a").await;
    mirai_stock_data::bars::load_sample(&sqlx::PgPool::connect(db.url()).await.unwrap())
        .await
        .unwrap();
    let b = replica(&db, "replica-b").await;
    let (mut leader, mut standby) = elected(a, b).await;
    assert!(leader.leads() && !standby.leads());
    assert_eq!(leader.replay_status().await.0, ReplayState::Running);

    // The leader's lock session dies (as when its connection drops): its replay stops with
    // the reason, and the standby takes over the feed.
    let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
    let terminated: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(format!("mirai-leader {}", leader.identity))
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(terminated, [true], "one lock session per replica");
    let mut status = leader.replay_status().await;
    for _ in 0..200 {
        if status.0 != ReplayState::Running {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        status = leader.replay_status().await;
    }
    let (state, error) = status;
    assert_eq!(state, ReplayState::Stopped);
    assert!(error.contains("stopped leading"), "{error}");
    standby.start_replay_once_leading().await;
    assert!(standby.leads() && !leader.leads());
    let refused = leader.start_replay().await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");

    // A shutdown releases the lock at once: the first replica leads again.
    let mut old = leader;
    standby.shut_down().await;
    old.start_replay_once_leading().await;
    assert!(old.leads());
    old.shut_down().await;
}
