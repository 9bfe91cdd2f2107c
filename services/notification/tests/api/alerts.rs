//! Alert RPCs: validation, ownership, per-role limits, updates and deletion.

use mirai_platform::auth::Role;
use mirai_proto::events::v1 as ev;
use mirai_proto::notification::v1 as pb;
use pb::condition::Kind;

use crate::helpers::{alert, as_user, level, spawn_with, user};

#[tokio::test]
async fn a_new_alert_is_pending_and_asks_stock_data_to_track_its_symbol() {
    let mut app = spawn_with(|_| {}).await;
    let owner = app.add_user("a@example.com", "UTC", &["user"]).await;
    let created = app
        .create_alert(
            owner,
            pb::Alert {
                name: "Apple breakout".into(),
                message_template: "{{symbol}} at {{price}} ({{condition}})".into(),
                ..alert("aapl", level(Kind::CrossingUp, 150.0), &[])
            },
        )
        .await;
    assert_eq!(created.status, pb::AlertStatus::Pending as i32);
    assert_eq!(created.symbol, "AAPL", "tickers are upper-cased");
    assert_eq!(
        created.channels,
        [pb::Channel::InApp as i32],
        "in-app by default"
    );
    assert_eq!(created.enabled, Some(true));
    // (The sweep may ask again meanwhile, with a higher attempt.)
    let requests: Vec<ev::AlertRequested> = app.outbox().await;
    let requests: Vec<_> = requests.into_iter().filter(|r| r.attempt == 0).collect();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        (
            requests[0].alert_id.as_str(),
            requests[0].symbol.as_str(),
            requests[0].attempt
        ),
        (created.alert_id.as_str(), "AAPL", 0)
    );
    let listed = app
        .client
        .list_alerts(user(
            owner,
            pb::ListAlertsRequest {
                user_id: owner.to_string(),
                statuses: vec![pb::AlertStatus::Pending.into()],
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.alerts.len(), 1);
}

#[tokio::test]
async fn bad_alerts_are_refused_naming_the_field() {
    let mut app = spawn_with(|_| {}).await;
    let owner = app.add_user("b@example.com", "UTC", &["user"]).await;
    let cases = [
        (
            pb::Alert {
                message_template: "{{symbol}} {{volume}}".into(),
                ..alert("AAPL", level(Kind::Above, 1.0), &[])
            },
            "alert.message_template",
        ),
        (
            alert("AAPL", level(Kind::Above, -5.0), &[]),
            "alert.condition",
        ),
        (
            alert("not a ticker!", level(Kind::Above, 1.0), &[]),
            "alert.symbol",
        ),
        (
            pb::Alert {
                cooldown: Some(prost_types::Duration {
                    seconds: 5,
                    nanos: 0,
                }),
                ..alert("AAPL", level(Kind::Above, 1.0), &[])
            },
            "alert.cooldown",
        ),
        (
            pb::Alert {
                expires_at: Some(prost_types::Timestamp {
                    seconds: 1,
                    nanos: 0,
                }),
                ..alert("AAPL", level(Kind::Above, 1.0), &[])
            },
            "alert.expires_at",
        ),
    ];
    for (bad, field) in cases {
        let err = app
            .client
            .create_alert(user(
                owner,
                pb::CreateAlertRequest {
                    user_id: owner.to_string(),
                    alert: Some(bad),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{field}: {err:?}");
        assert!(
            err.message().starts_with(field),
            "{field}: {}",
            err.message()
        );
    }
    // Someone else's user id.
    let other = app.add_user("c@example.com", "UTC", &["user"]).await;
    let err = app
        .client
        .create_alert(user(
            other,
            pb::CreateAlertRequest {
                user_id: owner.to_string(),
                alert: Some(alert("AAPL", level(Kind::Above, 1.0), &[])),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    // Another user's alert looks missing.
    let mine = app
        .create_alert(owner, alert("AAPL", level(Kind::Above, 1.0), &[]))
        .await;
    let err = app
        .client
        .get_alert(user(
            other,
            pb::GetAlertRequest {
                user_id: other.to_string(),
                alert_id: mine.alert_id,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn live_alerts_are_limited_per_role() {
    let mut app = spawn_with(|c| {
        c.limits.user = 2;
        c.limits.premium = 3;
    })
    .await;
    let owner = app.add_user("d@example.com", "UTC", &["user"]).await;
    for _ in 0..2 {
        app.create_alert(owner, alert("MSFT", level(Kind::Above, 1.0), &[]))
            .await;
    }
    let err = app
        .client
        .create_alert(user(
            owner,
            pb::CreateAlertRequest {
                user_id: owner.to_string(),
                alert: Some(alert("MSFT", level(Kind::Above, 2.0), &[])),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    // A disabled alert does not count, and premium allows more.
    let off = app
        .client
        .create_alert(user(
            owner,
            pb::CreateAlertRequest {
                user_id: owner.to_string(),
                alert: Some(pb::Alert {
                    enabled: Some(false),
                    ..alert("MSFT", level(Kind::Above, 3.0), &[])
                }),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .alert
        .unwrap();
    assert_eq!(off.status, pb::AlertStatus::Disabled as i32);
    let premium = app
        .client
        .create_alert(as_user(
            owner,
            &[Role::User, Role::Premium],
            pb::CreateAlertRequest {
                user_id: owner.to_string(),
                alert: Some(alert("MSFT", level(Kind::Above, 4.0), &[])),
            },
        ))
        .await
        .unwrap();
    assert_eq!(
        premium.into_inner().alert.unwrap().status,
        pb::AlertStatus::Pending as i32
    );
}

#[tokio::test]
async fn updates_rearm_disable_and_delete_release_the_symbol() {
    let mut app = spawn_with(|_| {}).await;
    let owner = app.add_user("e@example.com", "UTC", &["user"]).await;
    let created = app
        .create_alert(owner, alert("NVDA", level(Kind::CrossingUp, 100.0), &[]))
        .await;
    app.confirm(owner, &created).await;
    let update = |a: pb::Alert, paths: &[&str]| pb::UpdateAlertRequest {
        user_id: owner.to_string(),
        alert: Some(a),
        update_mask: Some(prost_types::FieldMask {
            paths: paths.iter().map(|p| p.to_string()).collect(),
        }),
    };
    let changed = app
        .client
        .update_alert(user(
            owner,
            update(
                pb::Alert {
                    alert_id: created.alert_id.clone(),
                    name: "renamed".into(),
                    condition: Some(level(Kind::Above, 120.0)),
                    ..Default::default()
                },
                &["name", "condition"],
            ),
        ))
        .await
        .unwrap()
        .into_inner()
        .alert
        .unwrap();
    assert_eq!(changed.name, "renamed");
    assert!(
        changed.armed,
        "a level condition starts armed after a change"
    );
    let err = app
        .client
        .update_alert(user(
            owner,
            update(
                pb::Alert {
                    alert_id: created.alert_id.clone(),
                    symbol: "AMD".into(),
                    ..Default::default()
                },
                &["symbol"],
            ),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let off = app
        .client
        .update_alert(user(
            owner,
            update(
                pb::Alert {
                    alert_id: created.alert_id.clone(),
                    enabled: Some(false),
                    ..Default::default()
                },
                &["enabled"],
            ),
        ))
        .await
        .unwrap()
        .into_inner()
        .alert
        .unwrap();
    assert_eq!(off.status, pb::AlertStatus::Disabled as i32);
    let on = app
        .client
        .update_alert(user(
            owner,
            update(
                pb::Alert {
                    alert_id: created.alert_id.clone(),
                    enabled: Some(true),
                    ..Default::default()
                },
                &["enabled"],
            ),
        ))
        .await
        .unwrap()
        .into_inner()
        .alert
        .unwrap();
    assert_eq!(
        on.status,
        pb::AlertStatus::Pending as i32,
        "re-confirmed by stock-data"
    );
    for _ in 0..2 {
        app.client
            .delete_alert(user(
                owner,
                pb::DeleteAlertRequest {
                    user_id: owner.to_string(),
                    alert_id: created.alert_id.clone(),
                },
            ))
            .await
            .unwrap();
    }
    let released: Vec<ev::SymbolTrackingReleased> = app.outbox().await;
    assert_eq!(
        released.len(),
        2,
        "disabling and deleting each released: {released:?}"
    );
    assert!(
        released
            .iter()
            .all(|r| r.reference == format!("alert:{}", created.alert_id))
    );
    let requests: Vec<ev::AlertRequested> = app.outbox().await;
    let first_requests = requests.iter().filter(|r| r.attempt == 0).count();
    assert_eq!(first_requests, 2, "created, then re-enabled");
}

#[tokio::test]
async fn concurrent_creates_cannot_pass_the_alert_limit() {
    let app = spawn_with(|c| c.limits.user = 3).await;
    let owner = app.add_user("race@example.com", "UTC", &["user"]).await;
    let attempts = (0..12).map(|i| {
        let mut client = app.client.clone();
        async move {
            client
                .create_alert(user(
                    owner,
                    pb::CreateAlertRequest {
                        user_id: owner.to_string(),
                        alert: Some(alert("RACE", level(Kind::Above, 1.0 + f64::from(i)), &[])),
                    },
                ))
                .await
        }
    });
    let results = futures::future::join_all(attempts).await;
    let created = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(created, 3, "{results:?}");
    assert!(
        results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| e.code() == tonic::Code::ResourceExhausted)
    );
}
