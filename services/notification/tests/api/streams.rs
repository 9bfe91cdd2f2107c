//! In-app notifications: the live stream, listing, marking read and the unread count.

use std::time::Duration;

use futures::StreamExt as _;
use mirai_proto::notification::v1 as pb;

use crate::helpers::{spawn, user};
use crate::webhooks::fire;

#[tokio::test]
async fn new_notifications_stream_live_and_can_be_marked_read() {
    let mut app = spawn().await;
    let owner = app.add_user("live@example.com", "UTC", &["user"]).await;
    let other = app.add_user("other@example.com", "UTC", &["user"]).await;
    let mut stream = app
        .client
        .stream_notifications(user(
            owner,
            pb::StreamNotificationsRequest {
                user_id: owner.to_string(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let err = app
        .client
        .stream_notifications(user(
            other,
            pb::StreamNotificationsRequest {
                user_id: owner.to_string(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        tonic::Code::PermissionDenied,
        "nobody watches another's stream"
    );
    let created = fire(&mut app, owner, "LIVE", &[]).await;
    // The activation notice, then the trigger.
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let message = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .expect("a live notification")
            .expect("stream open")
            .unwrap();
        seen.push(message);
    }
    let trigger = seen
        .iter()
        .find(|m| m.notification.as_ref().unwrap().category == pb::Category::PriceAlert as i32)
        .expect("the trigger streamed");
    let n = trigger.notification.as_ref().unwrap();
    assert_eq!(n.alert_id, created.alert_id);
    assert_eq!(n.title, "LIVE above 10.00");
    assert_eq!(n.data["symbol"], "LIVE");
    assert_eq!(trigger.unread_count, 2);
    assert_eq!(trigger.dropped, 0);

    let list = app
        .client
        .list_notifications(user(
            owner,
            pb::ListNotificationsRequest {
                user_id: owner.to_string(),
                page_size: 1,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.notifications.len(), 1, "newest first, one per page");
    assert!(!list.next_page_token.is_empty());
    let marked = app
        .client
        .mark_notifications(user(
            owner,
            pb::MarkNotificationsRequest {
                user_id: owner.to_string(),
                notification_ids: vec![n.notification_id.clone()],
                all: false,
                read: true,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((marked.updated, marked.unread_count), (1, 1));
    let all = app
        .client
        .mark_notifications(user(
            owner,
            pb::MarkNotificationsRequest {
                user_id: owner.to_string(),
                all: true,
                read: true,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((all.updated, all.unread_count), (1, 0));
    let unread = app
        .client
        .list_notifications(user(
            owner,
            pb::ListNotificationsRequest {
                user_id: owner.to_string(),
                unread_only: true,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(unread.notifications.is_empty());
}

#[tokio::test]
async fn open_streams_are_capped_per_user() {
    let app = crate::helpers::spawn_with(|c| c.caps.streams = 2).await;
    let owner = app.add_user("streams@example.com", "UTC", &["user"]).await;
    let open = || {
        let mut client = app.client.clone();
        async move {
            client
                .stream_notifications(user(
                    owner,
                    pb::StreamNotificationsRequest {
                        user_id: owner.to_string(),
                        ..Default::default()
                    },
                ))
                .await
        }
    };
    // Concurrent opens cannot pass the cap.
    let results = futures::future::join_all((0..6).map(|_| open())).await;
    let (mut kept, refused): (Vec<_>, Vec<_>) = results.into_iter().partition(|r| r.is_ok());
    assert_eq!(kept.len(), 2);
    for r in refused {
        assert_eq!(r.unwrap_err().code(), tonic::Code::ResourceExhausted);
    }
    // Another user is not affected.
    let other = app
        .add_user("other-streams@example.com", "UTC", &["user"])
        .await;
    app.client
        .clone()
        .stream_notifications(user(
            other,
            pb::StreamNotificationsRequest {
                user_id: other.to_string(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    // Closing a stream frees its place.
    drop(kept.pop());
    crate::helpers::eventually("a place to free up", || async { open().await.ok() }).await;
}

#[tokio::test]
async fn a_resumed_stream_replays_what_came_after_the_last_event_seen() {
    let mut app = spawn().await;
    let owner = app.add_user("resume@example.com", "UTC", &["user"]).await;
    fire(&mut app, owner, "RESU", &[]).await;
    // The activation notice, then the trigger: oldest first.
    let stored = crate::helpers::eventually("both notifications stored", || async {
        let list = app
            .client
            .clone()
            .list_notifications(user(
                owner,
                pb::ListNotificationsRequest {
                    user_id: owner.to_string(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        (list.notifications.len() == 2).then_some(list.notifications)
    })
    .await;
    let (newest, oldest) = (&stored[0], &stored[1]);
    let resume = |after: &str| {
        let mut client = app.client.clone();
        let after = after.to_owned();
        async move {
            client
                .stream_notifications(user(
                    owner,
                    pb::StreamNotificationsRequest {
                        user_id: owner.to_string(),
                        after_notification_id: after,
                    },
                ))
                .await
        }
    };
    let mut stream = resume(&oldest.notification_id).await.unwrap().into_inner();
    let first = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("the missed notification, at once")
        .expect("stream open")
        .unwrap();
    let replayed = first.notification.unwrap();
    assert_eq!(replayed.notification_id, newest.notification_id);
    assert_eq!(first.unread_count, 2);
    // Resumed after the newest: nothing to replay, the stream waits for live ones.
    let mut caught_up = resume(&newest.notification_id).await.unwrap().into_inner();
    assert!(
        tokio::time::timeout(Duration::from_millis(500), caught_up.next())
            .await
            .is_err(),
        "nothing newer than the newest"
    );
    let err = resume("not-an-id").await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
}
