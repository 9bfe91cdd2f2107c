//! This service's part in the account-deletion saga.

use mirai_proto::events::v1 as ev;
use mirai_proto::notification::v1 as pb;

use crate::helpers::{Receiver, eventually, spawn, user};
use crate::webhooks::{endpoint, fire};

#[tokio::test]
async fn a_deletion_request_purges_the_users_data_releases_tracking_and_confirms() {
    let mut app = spawn().await;
    let receiver = Receiver::start(&[]).await;
    let owner = app.add_user("gone@example.com", "UTC", &["user"]).await;
    let keep = app.add_user("stays@example.com", "UTC", &["user"]).await;
    endpoint(&mut app, owner, &receiver.url).await;
    fire(&mut app, owner, "DEL", &[pb::Channel::Webhook]).await;
    fire(&mut app, keep, "DEL", &[]).await;
    let live = app
        .create_alert(
            owner,
            crate::helpers::alert(
                "LIVE",
                crate::helpers::level(pb::condition::Kind::Above, 1.0),
                &[],
            ),
        )
        .await;
    app.client
        .register_push_device(user(
            owner,
            pb::RegisterPushDeviceRequest {
                user_id: owner.to_string(),
                token: "device-token-of-the-deleted-user".into(),
                platform: pb::DevicePlatform::Ios.into(),
                name: String::new(),
            },
        ))
        .await
        .unwrap();
    let request = ev::UserDeletionRequested {
        user_id: owner.to_string(),
        participants: vec!["stock-data".into(), "notification".into()],
        attempt: 0,
    };
    let message = app.publish("user", &request, None).await;
    let confirmed: Vec<ev::UserDataPurged> = eventually("the confirmation", || async {
        let c: Vec<ev::UserDataPurged> = app.outbox().await;
        (!c.is_empty()).then_some(c)
    })
    .await;
    assert_eq!(confirmed[0].participant, "notification");
    assert_eq!(confirmed[0].user_id, owner.to_string());
    assert!(confirmed[0].items_purged >= 8, "{confirmed:?}");
    for table in [
        "alerts",
        "notifications",
        "deliveries",
        "webhook_endpoints",
        "push_devices",
        "users",
    ] {
        let left: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {table} WHERE user_id = $1"
        )))
        .bind(owner)
        .fetch_one(&app.pool)
        .await
        .unwrap();
        assert_eq!(left, 0, "{table} still holds the user's rows");
    }
    let others: i64 = sqlx::query_scalar("SELECT count(*) FROM alerts WHERE user_id = $1")
        .bind(keep)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(others, 1, "other users keep their data");
    let released: Vec<ev::SymbolTrackingReleased> = app.outbox().await;
    assert!(
        released.iter().any(|r| r.alert_id == live.alert_id),
        "{released:?}"
    );
    // A reminder (higher attempt) is answered again, with nothing left to remove; a
    // redelivered request is a duplicate.
    app.publish("user", &request, Some(message)).await;
    app.publish(
        "user",
        &ev::UserDeletionRequested {
            attempt: 1,
            ..request
        },
        None,
    )
    .await;
    let again: Vec<ev::UserDataPurged> = eventually("the second confirmation", || async {
        let c: Vec<ev::UserDataPurged> = app.outbox().await;
        (c.len() >= 2).then_some(c)
    })
    .await;
    assert_eq!((again[1].attempt, again[1].items_purged), (1, 0));
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(app.outbox::<ev::UserDataPurged>().await.len(), 2);
}
