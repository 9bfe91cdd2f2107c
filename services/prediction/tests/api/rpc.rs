//! The RPCs: forecasts (one and many), the registry, promotion and retirement, history and
//! who may read it, and the deletion saga's purge.

use std::time::Duration;

use mirai_platform::events::outbox;
use mirai_platform::events::topology::topics;
use mirai_proto::events::v1 as ev;
use mirai_proto::prediction::v1 as pb;

use crate::helpers::{Options, admin, as_user, eventually, model, spawn, synthetic_bars};

const USER: &str = "00000000-0000-4000-8000-0000000000aa";

#[tokio::test]
async fn predict_returns_the_median_the_interval_and_p_up_from_the_latest_bar() {
    let app = spawn(Options::default()).await;
    let f = app.predict("spx", USER).await.unwrap();
    assert_eq!(f.symbol, "SPX");
    assert_eq!(f.model, Some(model("1.0.0")));
    assert_eq!(f.role(), pb::ModelRole::Champion);
    let as_of = mirai_platform::wire::datetime(f.as_of.as_ref().unwrap()).unwrap();
    assert_eq!(
        as_of.date_naive().to_string(),
        "2020-04-17",
        "the newest stored bar"
    );
    let target = mirai_platform::wire::datetime(f.target_start.as_ref().unwrap()).unwrap();
    assert_eq!(
        target.date_naive().to_string(),
        "2020-04-20",
        "the next weekday"
    );
    assert_eq!(f.last_close, 2874.560059);
    assert_eq!(f.interval_level, 0.9);
    assert_eq!(f.quantiles.len(), 3);
    assert_eq!(f.quantiles[1].price, f.point);
    assert_eq!(
        (f.quantiles[0].price, f.quantiles[2].price),
        (f.lower, f.upper)
    );
    assert!(f.lower < f.point && f.point < f.upper);
    // The golden case at this origin (onnxruntime): q = [-0.023342757, -0.001806801, 0.018000428].
    let q: Vec<f64> = f
        .quantiles
        .iter()
        .map(|q| (q.price / f.last_close).ln())
        .collect();
    for (got, want) in q.iter().zip([
        -0.023342756554484367,
        -0.0018068010685965419,
        0.01800042763352394,
    ]) {
        assert!((got - want).abs() < 1e-5, "{q:?}");
    }
    // Split normal below the median (it is negative): σ₊ = (q95 − q50) / 1.6448536,
    // P(up) = 1 − Φ((0 − q50) / σ₊).
    let sigma = (q[2] - q[1]) / 1.6448536269514722;
    let p_up = 1.0 - normal_cdf(-q[1] / sigma);
    assert!((f.p_up - p_up).abs() < 1e-9, "{} vs {p_up}", f.p_up);
    assert!(f.p_up < 0.5);
    assert_eq!(f.adjustment, mirai_proto::stock::v1::Adjustment::Raw as i32);

    let unknown = app.predict("NOPE", USER).await.unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    let invalid = app.predict("not a ticker", USER).await.unwrap_err();
    assert_eq!(invalid.code(), tonic::Code::InvalidArgument);
    let hourly = app
        .client
        .clone()
        .predict(pb::PredictRequest {
            symbol: "SPX".into(),
            timeframe: mirai_proto::stock::v1::Timeframe::OneHour.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(hourly.code(), tonic::Code::FailedPrecondition);
    app.stock.import_daily("TINY", &synthetic_bars(3, 10)).await;
    let short = app.predict("TINY", USER).await.unwrap_err();
    assert_eq!(short.code(), tonic::Code::FailedPrecondition);
    assert!(short.message().contains("needs 31"), "{}", short.message());

    // Stored, with the user, off the request path.
    let stored = eventually("the stored prediction", Duration::from_secs(10), || async {
        let page = app
            .client
            .clone()
            .list_predictions(as_user(
                pb::ListPredictionsRequest {
                    user_id: USER.into(),
                    ..Default::default()
                },
                USER,
                "user",
            ))
            .await
            .unwrap()
            .into_inner();
        (!page.predictions.is_empty()).then_some(page.predictions)
    })
    .await;
    assert_eq!(stored.len(), 1);
    assert!(stored[0].served);
    assert_eq!(
        stored[0].forecast.as_ref().unwrap().prediction_id,
        f.prediction_id
    );
}

/// Φ(x) from the Maclaurin series of erf (exact to rounding for the |x| < 3 used here),
/// independent of the statrs code under test.
fn normal_cdf(x: f64) -> f64 {
    let z = x / std::f64::consts::SQRT_2;
    let (mut term, mut sum) = (z, z);
    for n in 1..200 {
        term *= -z * z / n as f64;
        sum += term / (2 * n + 1) as f64;
    }
    0.5 * (1.0 + 2.0 / std::f64::consts::PI.sqrt() * sum)
}

#[tokio::test]
async fn predict_many_forecasts_every_symbol_and_lists_the_failures() {
    let app = spawn(Options::default()).await;
    let series: Vec<(String, Vec<_>)> = (0..40)
        .map(|i| (format!("S{i:03}"), synthetic_bars(100 + i, 70)))
        .collect();
    app.stock.import_many(&series).await;
    let mut symbols: Vec<String> = series.iter().map(|(s, _)| s.clone()).collect();
    symbols.push("SPX".into());
    symbols.push("S000".into()); // a duplicate, ignored
    symbols.push("NOPE".into());
    symbols.push("bad ticker".into());
    let response = app
        .client
        .clone()
        .predict_many(pb::PredictManyRequest {
            symbols,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.forecasts.len(), 41);
    assert_eq!(response.forecasts[0].symbol, "S000");
    assert_eq!(response.forecasts[40].symbol, "SPX");
    let codes: Vec<(String, i32)> = response
        .failures
        .iter()
        .map(|f| (f.symbol.clone(), f.code))
        .collect();
    assert!(
        codes.contains(&("NOPE".into(), tonic::Code::NotFound as i32)),
        "{codes:?}"
    );
    assert!(
        codes.contains(&("BAD TICKER".into(), tonic::Code::InvalidArgument as i32)),
        "{codes:?}"
    );
    // Each equals the single-symbol answer.
    let one = app.predict("S017", "").await.unwrap();
    let many = response
        .forecasts
        .iter()
        .find(|f| f.symbol == "S017")
        .unwrap();
    assert_eq!(one.quantiles, many.quantiles);
    // Batches were shared: the batch-size histogram saw more than one window per run.
    let metrics = app.metrics_text().await;
    let count_line = metrics
        .lines()
        .find(|l| l.starts_with("mirai_inference_batch_size_sum{") && l.contains("1.0.0"))
        .unwrap();
    let runs_line = metrics
        .lines()
        .find(|l| l.starts_with("mirai_inference_batch_size_count{") && l.contains("1.0.0"))
        .unwrap();
    let value = |l: &str| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap();
    assert!(
        value(count_line) > value(runs_line),
        "{count_line} / {runs_line}"
    );

    let too_many = app
        .client
        .clone()
        .predict_many(pb::PredictManyRequest {
            symbols: (0..501).map(|i| format!("X{i}")).collect(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(too_many.code(), tonic::Code::InvalidArgument);
}

#[tokio::test]
async fn the_registry_lists_verified_versions_with_their_cards() {
    let app = spawn(Options::default()).await;
    let models = app
        .client
        .clone()
        .list_models(pb::ListModelsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .models;
    assert_eq!(models.len(), 1);
    let versions = &models[0].versions;
    assert_eq!(versions.len(), 2);
    let v1 = versions
        .iter()
        .find(|v| v.model == Some(model("1.0.0")))
        .unwrap();
    assert_eq!(v1.status(), pb::ModelStatus::Ready);
    assert_eq!(v1.role(), pb::ModelRole::Champion);
    assert_eq!(v1.traffic_percent, 100);
    assert!(v1.loaded_at.is_some() && v1.created_at.is_some());
    let card = v1.card.as_ref().unwrap();
    assert_eq!(card.window, 30);
    assert_eq!(card.quantiles, vec![0.05, 0.5, 0.95]);
    assert_eq!(card.features[0], "log_return: ln(close[t] / close[t-1])");
    let test = card.test_metrics.as_ref().unwrap();
    assert_eq!(test.count, 577);
    assert!((test.mae - 0.008682301248382205).abs() < 1e-15);
    assert_eq!(card.test_metrics_by_year.len(), 3);
    assert!(
        card.limitations.iter().any(|l| l.contains("always-up")),
        "{:?}",
        card.limitations
    );
    let v2 = versions
        .iter()
        .find(|v| v.model == Some(model("1.1.0")))
        .unwrap();
    assert_eq!(v2.role(), pb::ModelRole::Challenger);
    assert_eq!(v2.traffic_percent, 0);
    let missing = app
        .client
        .clone()
        .get_model_version(pb::GetModelVersionRequest {
            model: Some(model("0.0.1")),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn promote_and_retire_change_the_champion_with_events() {
    let app = spawn(Options::default()).await;
    let mut client = app.client.clone();
    let denied = client
        .promote(as_user(
            pb::PromoteRequest {
                model: Some(model("1.1.0")),
                ..Default::default()
            },
            USER,
            "user",
        ))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    let champion_retire = client
        .retire(admin(pb::RetireRequest {
            model: Some(model("1.0.0")),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(champion_retire.code(), tonic::Code::FailedPrecondition);

    let promoted = client
        .promote(admin(pb::PromoteRequest {
            model: Some(model("1.1.0")),
            reason: "wider window".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(promoted.previous_champion, Some(model("1.0.0")));
    let champion = promoted.champion.unwrap();
    assert_eq!(champion.role(), pb::ModelRole::Champion);
    assert_eq!(champion.traffic_percent, 100);
    assert_eq!(
        app.predict("SPX", USER).await.unwrap().model,
        Some(model("1.1.0"))
    );
    // Idempotent for the current champion: no second event.
    let again = client
        .promote(admin(pb::PromoteRequest {
            model: Some(model("1.1.0")),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.previous_champion, None);

    let retired = client
        .retire(admin(pb::RetireRequest {
            model: Some(model("1.0.0")),
            reason: "superseded".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let version = retired.version.unwrap();
    assert_eq!(version.status(), pb::ModelStatus::Retired);
    assert_eq!(version.status_reason, "superseded");
    assert!(version.retired_at.is_some());
    let traffic = retired.traffic.unwrap();
    assert_eq!(traffic.splits.len(), 1);
    let listed = client
        .list_models(pb::ListModelsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .models;
    assert_eq!(
        listed[0].versions.len(),
        1,
        "retired versions are hidden by default"
    );
    let pinned = client
        .predict(admin(pb::PredictRequest {
            symbol: "SPX".into(),
            model: Some(model("1.0.0")),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(
        pinned.code(),
        tonic::Code::FailedPrecondition,
        "a retired version never serves"
    );
    let types = app.outbox_types().await;
    assert_eq!(
        types
            .iter()
            .filter(|t| *t == "mirai.model.promoted.v1")
            .count(),
        1
    );
}

#[tokio::test]
async fn history_is_private_to_its_user_and_purged_by_the_deletion_saga() {
    let app = spawn(Options::default()).await;
    let other = "00000000-0000-4000-8000-0000000000bb";
    app.predict("SPX", USER).await.unwrap();
    app.predict("SPX", USER).await.unwrap();
    app.predict("SPX", other).await.unwrap();
    app.predict("SPX", "").await.unwrap();
    let list = |user_id: &str, caller: &str, roles: &str| {
        let mut client = app.client.clone();
        let request = as_user(
            pb::ListPredictionsRequest {
                user_id: user_id.into(),
                ..Default::default()
            },
            caller,
            roles,
        );
        async move { client.list_predictions(request).await }
    };
    eventually(
        "four stored predictions",
        Duration::from_secs(10),
        || async {
            let all = list("", crate::helpers::ADMIN_ID, "user,admin")
                .await
                .unwrap()
                .into_inner();
            (all.predictions.len() == 4).then_some(())
        },
    )
    .await;
    let own = list(USER, USER, "user").await.unwrap().into_inner();
    assert_eq!(own.predictions.len(), 2);
    let foreign = list(other, USER, "user").await.unwrap_err();
    assert_eq!(foreign.code(), tonic::Code::PermissionDenied);
    let public = list("", USER, "user").await.unwrap().into_inner();
    assert_eq!(
        public.predictions.len(),
        1,
        "without a user id: only predictions of no user"
    );
    // Pages.
    let page = app
        .client
        .clone()
        .list_predictions(admin(pb::ListPredictionsRequest {
            page_size: 3,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.predictions.len(), 3);
    let rest = app
        .client
        .clone()
        .list_predictions(admin(pb::ListPredictionsRequest {
            page_size: 3,
            page_token: page.next_page_token,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.predictions.len(), 1);
    assert!(rest.next_page_token.is_empty());

    // The user service asks every participant to purge USER's data.
    let mut tx = app.pool.begin().await.unwrap();
    outbox::enqueue_on(
        &mut tx,
        "user",
        topics::USER,
        &ev::UserDeletionRequested {
            user_id: USER.into(),
            participants: vec!["prediction".into(), "notification".into()],
            attempt: 1,
        },
        Some("saga-1".into()),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    eventually("the purge", Duration::from_secs(30), || async {
        let left: i64 =
            sqlx::query_scalar("SELECT count(*) FROM predictions WHERE user_id = $1::uuid")
                .bind(USER)
                .fetch_one(&app.pool)
                .await
                .unwrap();
        (left == 0).then_some(())
    })
    .await;
    let confirmed = eventually("the confirmation", Duration::from_secs(30), || async {
        let rows: Vec<(String, String, Vec<u8>)> = sqlx::query_as(
            "SELECT event_type, topic, payload FROM outbox WHERE event_type = 'mirai.user.data.purged.v1'",
        )
        .fetch_all(&app.pool)
        .await
        .unwrap();
        rows.into_iter().next()
    })
    .await;
    assert_eq!(confirmed.1, topics::PREDICTION);
    let purged = <ev::UserDataPurged as prost::Message>::decode(confirmed.2.as_slice()).unwrap();
    assert_eq!(
        (purged.participant.as_str(), purged.items_purged),
        ("prediction", 2)
    );
    let still = list(other, other, "user").await.unwrap().into_inner();
    assert_eq!(still.predictions.len(), 1, "other users keep theirs");
}

/// The user a forecast is made for (its traffic key and its history owner) is the verified
/// caller: a `user_id` naming someone else in the body is refused, whoever sends it.
#[tokio::test]
async fn the_user_comes_from_the_verified_caller_never_from_the_body() {
    let app = spawn(Options::default()).await;
    let victim = "00000000-0000-4000-8000-0000000000cc";
    let naming = |user_id: &str| pb::PredictRequest {
        symbol: "SPX".into(),
        user_id: user_id.into(),
        ..Default::default()
    };
    // Anonymous, claiming the victim.
    let anonymous = app
        .client
        .clone()
        .predict(naming(victim))
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), tonic::Code::PermissionDenied);
    // Another user, claiming the victim (in one call and in a batch).
    let other = app
        .client
        .clone()
        .predict(as_user(naming(victim), USER, "user"))
        .await
        .unwrap_err();
    assert_eq!(other.code(), tonic::Code::PermissionDenied);
    let batch = app
        .client
        .clone()
        .predict_many(as_user(
            pb::PredictManyRequest {
                symbols: vec!["SPX".into()],
                user_id: victim.into(),
                ..Default::default()
            },
            USER,
            "user",
        ))
        .await
        .unwrap_err();
    assert_eq!(batch.code(), tonic::Code::PermissionDenied);
    // An empty body user id means the caller, whose history gets the forecast.
    app.client
        .clone()
        .predict(as_user(naming(""), USER, "user"))
        .await
        .unwrap();
    let mine = eventually(
        "the caller's prediction",
        Duration::from_secs(10),
        || async {
            let page = app
                .client
                .clone()
                .list_predictions(as_user(
                    pb::ListPredictionsRequest {
                        user_id: USER.into(),
                        ..Default::default()
                    },
                    USER,
                    "user",
                ))
                .await
                .unwrap()
                .into_inner();
            (!page.predictions.is_empty()).then_some(page.predictions.len())
        },
    )
    .await;
    assert_eq!(mine, 1);
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM predictions WHERE user_id = $1::uuid")
            .bind(victim)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(stored, 0, "nothing was attributed to the victim");
}
