//! The alert-activation saga against the real stock-data service (same emulator, own
//! database): confirmation, rejection with the reason shown, stock-data down for a while, and
//! no answer at all.

use mirai_platform::testing::TestDatabase;
use mirai_proto::events::v1 as ev;
use mirai_proto::notification::v1 as pb;
use mirai_proto::stock::v1 as stock;
use mirai_proto::stock::v1::stock_data_service_client::StockDataServiceClient;
use pb::condition::Kind;
use tokio_util::sync::CancellationToken;

use crate::helpers::{TestApp, alert, eventually, level, spawn_with, user};

/// stock-data on the notification service's emulator names, with `symbols` listed.
async fn stock_data(app: &TestApp, symbols: &[&str]) -> (CancellationToken, TestDatabase) {
    let db = TestDatabase::create("notification_stock").await;
    let mut config = mirai_stock_data::config::Config::for_tests(db.url());
    config.service.pubsub = app.config.service.pubsub.clone();
    let service = mirai_stock_data::startup::build_with(&config)
        .await
        .unwrap();
    let addr = service.grpc_addr();
    let stop = CancellationToken::new();
    tokio::spawn(service.run_until_stopped(stop.clone()));
    let mut client = StockDataServiceClient::new(
        mirai_platform::testing::connect(format!("http://{addr}")).await,
    );
    for symbol in symbols {
        let request = mirai_platform::testing::request_as(
            uuid::Uuid::now_v7(),
            &[mirai_platform::auth::Role::Admin],
            stock::AddSymbolRequest {
                symbol: Some(stock::Symbol {
                    symbol: symbol.to_string(),
                    name: format!("{symbol} Inc."),
                    exchange_mic: "XNAS".into(),
                    currency: "USD".into(),
                    asset_type: stock::AssetType::Equity.into(),
                    ..Default::default()
                }),
                actor_user_id: String::new(),
            },
        );
        client.add_symbol(request).await.unwrap();
    }
    (stop, db)
}

async fn status_of(app: &TestApp, owner: uuid::Uuid, id: &str, want: pb::AlertStatus) -> pb::Alert {
    let client = app.client.clone();
    eventually(&format!("the alert to be {want:?}"), || {
        let mut client = client.clone();
        async move {
            let a = client
                .get_alert(user(
                    owner,
                    pb::GetAlertRequest {
                        user_id: owner.to_string(),
                        alert_id: id.to_owned(),
                    },
                ))
                .await
                .ok()?
                .into_inner()
                .alert?;
            (a.status == want as i32).then_some(a)
        }
    })
    .await
}

async fn status_notifications(app: &TestApp, owner: uuid::Uuid) -> Vec<pb::Notification> {
    app.client
        .clone()
        .list_notifications(user(
            owner,
            pb::ListNotificationsRequest {
                user_id: owner.to_string(),
                categories: vec![pb::Category::AlertStatus.into()],
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .notifications
}

#[tokio::test]
async fn known_symbols_activate_and_unknown_ones_are_rejected_with_the_reason_shown() {
    let mut app = spawn_with(|_| {}).await;
    let (stop, _db) = stock_data(&app, &["ACME"]).await;
    let owner = app.add_user("s@example.com", "UTC", &["user"]).await;
    let good = app
        .create_alert(owner, alert("ACME", level(Kind::Above, 1.0), &[]))
        .await;
    let bad = app
        .create_alert(owner, alert("NOPE", level(Kind::Above, 1.0), &[]))
        .await;
    let active = status_of(&app, owner, &good.alert_id, pb::AlertStatus::Active).await;
    assert!(active.activated_at.is_some());
    let rejected = status_of(&app, owner, &bad.alert_id, pb::AlertStatus::Rejected).await;
    assert_eq!(rejected.status_reason, "NOPE is not a listed symbol");
    let told = eventually("the user to be told", || async {
        let list = status_notifications(&app, owner).await;
        list.into_iter().find(|n| n.alert_id == bad.alert_id)
    })
    .await;
    assert!(
        told.body.contains("NOPE is not a listed symbol"),
        "{}",
        told.body
    );
    let events: Vec<ev::AlertRejected> = app.outbox().await;
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].rejection,
        ev::TrackingRejection::UnknownSymbol as i32
    );
    let activated: Vec<ev::AlertActivated> = app.outbox().await;
    assert_eq!(activated.len(), 1);
    stop.cancel();
}

#[tokio::test]
async fn an_alert_becomes_active_once_stock_data_is_back() {
    let mut app = spawn_with(|c| c.saga.activation_attempts = 30).await;
    let owner = app.add_user("down@example.com", "UTC", &["user"]).await;
    let created = app
        .create_alert(owner, alert("BACK", level(Kind::Above, 1.0), &[]))
        .await;
    // stock-data is down: nobody answers, the saga asks again.
    eventually("a second request", || async {
        let requests: Vec<ev::AlertRequested> = app.outbox().await;
        requests.iter().any(|r| r.attempt >= 1).then_some(())
    })
    .await;
    assert_eq!(
        app.get_alert(owner, &created.alert_id).await.status,
        pb::AlertStatus::Pending as i32
    );
    let (stop, _db) = stock_data(&app, &["BACK"]).await;
    status_of(&app, owner, &created.alert_id, pb::AlertStatus::Active).await;
    stop.cancel();
}

#[tokio::test]
async fn an_unanswered_activation_expires_visibly() {
    let mut app = spawn_with(|c| c.saga.activation_attempts = 2).await;
    let owner = app.add_user("never@example.com", "UTC", &["user"]).await;
    let created = app
        .create_alert(owner, alert("NEVER", level(Kind::Above, 1.0), &[]))
        .await;
    let expired = status_of(&app, owner, &created.alert_id, pb::AlertStatus::Expired).await;
    assert!(
        expired.status_reason.contains("did not confirm"),
        "{}",
        expired.status_reason
    );
    let list = status_notifications(&app, owner).await;
    assert!(
        list.iter()
            .any(|n| n.alert_id == created.alert_id && n.title.contains("expired"))
    );
    let released: Vec<ev::SymbolTrackingReleased> = app.outbox().await;
    assert_eq!(released.len(), 1, "in case stock-data tracked it after all");
}
