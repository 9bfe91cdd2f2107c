//! Traffic through the API: the weighted split over many users, stickiness, validation and
//! who may change it; shadow versions that fail or are slow never change or hold up a response.

use std::collections::HashMap;
use std::time::Duration;

use mirai_proto::prediction::v1 as pb;

use crate::helpers::{Options, admin, as_user, eventually, model, spawn, synthetic_bars};

fn split(version: &str, percent: u32) -> pb::TrafficSplit {
    pb::TrafficSplit {
        model: Some(model(version)),
        percent,
    }
}

fn set(splits: Vec<pb::TrafficSplit>, shadows: Vec<&str>) -> pb::SetTrafficRequest {
    pb::SetTrafficRequest {
        traffic: Some(pb::Traffic {
            splits,
            shadows: shadows.into_iter().map(model).collect(),
            champion: Some(model("1.0.0")),
            ..Default::default()
        }),
        actor_user_id: String::new(),
        reason: "test".into(),
    }
}

/// 1,000 distinct users against a 70/30 split: each share within 6 percentage points of its
/// weight (the binomial standard deviation at 30 % over 1,000 keys is 1.45 points, so about
/// 4σ), and the same user always gets the same version.
#[tokio::test]
async fn the_split_follows_the_weights_and_sticks_per_user() {
    let app = spawn(Options::default()).await;
    let traffic = app
        .client
        .clone()
        .set_traffic(admin(set(
            vec![split("1.0.0", 70), split("1.1.0", 30)],
            vec![],
        )))
        .await
        .unwrap()
        .into_inner()
        .traffic
        .unwrap();
    assert_eq!(traffic.updated_by, crate::helpers::ADMIN_ID);
    let n = 1000;
    let mut counts: HashMap<String, u32> = HashMap::new();
    let mut first: Vec<String> = Vec::new();
    for i in 0..n {
        let user = format!("00000000-0000-4000-8000-{i:012}");
        let forecast = app.predict("SPX", &user).await.unwrap();
        let version = forecast.model.unwrap().version;
        *counts.entry(version.clone()).or_default() += 1;
        first.push(version);
    }
    let share = |v: &str| 100.0 * f64::from(*counts.get(v).unwrap_or(&0)) / f64::from(n);
    assert!((share("1.0.0") - 70.0).abs() < 6.0, "{counts:?}");
    assert!((share("1.1.0") - 30.0).abs() < 6.0, "{counts:?}");
    for i in (0..n).step_by(10) {
        let user = format!("00000000-0000-4000-8000-{i:012}");
        let again = app
            .predict("SPX", &user)
            .await
            .unwrap()
            .model
            .unwrap()
            .version;
        assert_eq!(again, first[i as usize], "user {user} moved");
    }
    // Anonymous callers are keyed by the symbol: the same symbol always lands the same way.
    let a = app.predict("SPX", "").await.unwrap().model.unwrap().version;
    for _ in 0..5 {
        assert_eq!(
            app.predict("SPX", "").await.unwrap().model.unwrap().version,
            a
        );
    }
}

#[tokio::test]
async fn traffic_changes_are_validated_and_admin_only() {
    let app = spawn(Options::default()).await;
    let mut client = app.client.clone();
    let user = "00000000-0000-4000-8000-000000000001";
    let denied = client
        .set_traffic(as_user(
            set(vec![split("1.0.0", 100)], vec![]),
            user,
            "user",
        ))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    let anonymous = client
        .set_traffic(set(vec![split("1.0.0", 100)], vec![]))
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), tonic::Code::Unauthenticated);
    let bad_sum = client
        .set_traffic(admin(set(
            vec![split("1.0.0", 60), split("1.1.0", 30)],
            vec![],
        )))
        .await
        .unwrap_err();
    assert_eq!(bad_sum.code(), tonic::Code::InvalidArgument);
    assert!(
        bad_sum.message().contains("sum to 100"),
        "{}",
        bad_sum.message()
    );
    let both = client
        .set_traffic(admin(set(vec![split("1.0.0", 100)], vec!["1.0.0"])))
        .await
        .unwrap_err();
    assert_eq!(both.code(), tonic::Code::InvalidArgument);
    let unknown = client
        .set_traffic(admin(set(
            vec![split("1.0.0", 90), split("9.9.9", 10)],
            vec![],
        )))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    let pinned = client
        .predict(as_user(
            pb::PredictRequest {
                symbol: "SPX".into(),
                model: Some(model("1.1.0")),
                ..Default::default()
            },
            user,
            "user",
        ))
        .await
        .unwrap_err();
    assert_eq!(
        pinned.code(),
        tonic::Code::PermissionDenied,
        "pinning is for admins"
    );
    // Nothing changed.
    let traffic = client
        .get_traffic(pb::GetTrafficRequest {})
        .await
        .unwrap()
        .into_inner()
        .traffic
        .unwrap();
    assert_eq!(
        traffic.splits.len(),
        2,
        "the seed: champion 100 %, challenger 0 %"
    );
    assert_eq!(traffic.champion, Some(model("1.0.0")));
}

/// The shadow (1.1.0, a 60-day window) cannot forecast a symbol with 40 bars: the caller gets
/// exactly the champion's forecast and no error; the shadow's failure shows in its metrics.
#[tokio::test]
async fn a_failing_shadow_does_not_change_the_response() {
    let app = spawn(Options::default()).await;
    app.stock
        .import_daily("YOUNG", &synthetic_bars(7, 40))
        .await;
    let without = app
        .predict("YOUNG", "")
        .await
        .expect("the champion forecasts");
    app.client
        .clone()
        .set_traffic(admin(set(vec![split("1.0.0", 100)], vec!["1.1.0"])))
        .await
        .unwrap();
    let with = app.predict("YOUNG", "").await.expect("still forecasts");
    assert_eq!(with.model, without.model);
    assert_eq!(with.role(), pb::ModelRole::Champion);
    assert_eq!(with.quantiles, without.quantiles);
    assert_eq!(with.p_up, without.p_up);
    eventually(
        "the shadow failure metric",
        Duration::from_secs(10),
        || async {
            app.metrics_text()
                .await
                .lines()
                .any(|l| {
                    l.starts_with("mirai_prediction_errors_total")
                        && l.contains("version=\"1.1.0\"")
                        && l.contains("origin=\"shadow\"")
                        && l.contains("kind=\"bars\"")
                })
                .then_some(())
        },
    )
    .await;
}

/// The shadow's queue is kept busy with windows (topped up until the response arrives, so a
/// slow machine cannot drain it first); the caller's response arrives while its shadow run is
/// still waiting behind them (no shadow row stored yet), and the shadow prediction is stored
/// later.
#[tokio::test]
async fn a_slow_shadow_does_not_hold_up_the_response() {
    let app = spawn(Options::default()).await;
    app.stock
        .import_daily("BUSY", &synthetic_bars(11, 120))
        .await;
    app.client
        .clone()
        .set_traffic(admin(set(vec![split("1.0.0", 100)], vec!["1.1.0"])))
        .await
        .unwrap();
    let shadow = app
        .context
        .predictor
        .models
        .served(&mirai_prediction::domain::model_ref::ModelRef::parse("spx-lstm", "1.1.0").unwrap())
        .unwrap();
    let window = vec![0.0f32; shadow.engine.plans().window_len()];
    // Batches of 200 windows, the next one queued once half of the last one has run: between
    // about 100 and 300 windows wait at any time, well below the queue's 4,096, so the
    // request's own shadow run is always accepted behind them; and few enough that the backlog
    // drains within the wait below on a loaded machine's debug build (1,000-window batches
    // took over 60 s there).
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let batch = move |shadow: &mirai_prediction::models::Served| -> Vec<_> {
        (0..200)
            .map(|_| shadow.engine.submit(window.clone()).expect("queued"))
            .collect()
    };
    // The first batch is queued before the request is sent.
    let first = batch(&shadow);
    let feeder = tokio::spawn({
        let (shadow, answered) = (shadow.clone(), answered.clone());
        async move {
            let mut last = first;
            while !answered.load(std::sync::atomic::Ordering::SeqCst) {
                if !last[100].is_empty() {
                    last = batch(&shadow);
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            last
        }
    });

    let forecast = app.predict("BUSY", "").await.expect("served");
    answered.store(true, std::sync::atomic::Ordering::SeqCst);
    let backlog = feeder.await.unwrap();
    assert_eq!(forecast.model, Some(model("1.0.0")));
    let shadow_rows = |app: &crate::helpers::TestApp| {
        let pool = app.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM predictions WHERE symbol = 'BUSY' AND origin = 'shadow'",
            )
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    assert_eq!(
        shadow_rows(&app).await,
        0,
        "the response came back before the shadow ran"
    );
    let backlog_left = backlog.iter().filter(|r| r.is_empty()).count();
    assert!(
        backlog_left > 0,
        "the shadow was still busy when the response arrived"
    );
    eventually(
        "the shadow prediction",
        Duration::from_secs(120),
        || async { (shadow_rows(&app).await == 1).then_some(()) },
    )
    .await;
}
