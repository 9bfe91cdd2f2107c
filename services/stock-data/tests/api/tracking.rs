//! The tracked-symbol set (RPCs) and the alert-activation saga over the real emulator.

use google_cloud_pubsub::model::Message;
use mirai_platform::events::topology::topics;
use mirai_platform::events::{Envelope, Event, pubsub};
use mirai_proto::events::v1 as ev;
use mirai_proto::stock::v1::{
    AssetType, DelistSymbolRequest, GetSymbolRequest, ListTrackedSymbolsRequest,
    SearchSymbolsRequest, TrackSymbolRequest, UntrackSymbolRequest,
};

use crate::helpers::{TestApp, eventually, spawn};

async fn delist(app: &mut TestApp, ticker: &str) {
    app.client
        .delist_symbol(DelistSymbolRequest {
            symbol: ticker.into(),
            reason: "acquired by Initech".into(),
            actor_user_id: String::new(),
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn references_count_per_holder_and_tracking_ends_with_the_last() {
    let mut app = spawn().await;
    app.list("ACME", "XNAS", AssetType::Equity).await;
    let track = |reference: &str| TrackSymbolRequest {
        symbol: "acme".into(),
        reference: reference.into(),
    };
    let first = app
        .client
        .track_symbol(track("alert:a1"))
        .await
        .unwrap()
        .into_inner();
    assert!(first.added);
    assert!(first.state.as_ref().unwrap().tracked_since.is_some());
    let again = app
        .client
        .track_symbol(track("alert:a1"))
        .await
        .unwrap()
        .into_inner();
    assert!(!again.added, "idempotent per reference");
    let other = app
        .client
        .track_symbol(track("watchlist:u1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(other.state.unwrap().reference_count, 2);

    let symbol = app
        .client
        .get_symbol(GetSymbolRequest {
            symbol: "ACME".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .symbol
        .unwrap();
    assert!(symbol.tracked);
    assert_eq!(symbol.tracking_references, 2);
    let tracked = app
        .client
        .search_symbols(SearchSymbolsRequest {
            tracked_only: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(tracked.symbols.len(), 1);
    let listed = app
        .client
        .list_tracked_symbols(ListTrackedSymbolsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.symbols.len(), 1);
    assert_eq!(listed.symbols[0].reference_count, 2);

    let untrack = |reference: &str| UntrackSymbolRequest {
        symbol: "ACME".into(),
        reference: reference.into(),
    };
    app.client
        .untrack_symbol(untrack("alert:a1"))
        .await
        .unwrap();
    let last = app
        .client
        .untrack_symbol(untrack("watchlist:u1"))
        .await
        .unwrap()
        .into_inner();
    assert!(last.removed);
    let state = last.state.unwrap();
    assert!(!state.tracked && state.tracked_since.is_none());
    let absent = app
        .client
        .untrack_symbol(untrack("watchlist:u1"))
        .await
        .unwrap()
        .into_inner();
    assert!(
        !absent.removed,
        "removing an absent reference changes nothing"
    );

    // Refusals: unknown, delisted, malformed reference.
    let unknown = app
        .client
        .track_symbol(TrackSymbolRequest {
            symbol: "NOPE".into(),
            reference: "alert:a2".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    let bad = app
        .client
        .track_symbol(track("portfolio:1"))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    delist(&mut app, "ACME").await;
    let delisted = app
        .client
        .track_symbol(track("alert:a3"))
        .await
        .unwrap_err();
    assert_eq!(delisted.code(), tonic::Code::FailedPrecondition);
}

/// Publishes `event` as the notification service would, returning the message so a test can
/// publish the very same one again (same `ce-id`).
async fn publish<E: Event>(
    app: &TestApp,
    topic: &str,
    event: &E,
    again: Option<Message>,
) -> Message {
    let config = &app.config.service.pubsub;
    let base = pubsub::publisher(config).await.unwrap();
    let publisher = base.publisher(config.topic_path(topic)).build();
    let message = again.unwrap_or_else(|| {
        let envelope = Envelope::new("notification", event, Some("saga-1".into()));
        Message::new()
            .set_data(event.encode_to_vec())
            .set_attributes(envelope.to_attributes())
    });
    publisher.publish(message.clone()).await.unwrap();
    message
}

async fn answers<E: Event>(app: &TestApp) -> Vec<E> {
    app.outbox(E::TYPE)
        .await
        .iter()
        .map(|p| E::decode(p.as_slice()).unwrap())
        .collect()
}

fn requested(alert_id: &str, symbol: &str) -> ev::AlertRequested {
    ev::AlertRequested {
        alert_id: alert_id.into(),
        user_id: "u1".into(),
        symbol: symbol.into(),
        attempt: 0,
    }
}

#[tokio::test]
async fn the_saga_confirms_known_symbols_and_rejects_others_with_a_reason_once_each() {
    let mut app = spawn().await;
    app.list("ACME", "XNAS", AssetType::Equity).await;
    app.list("GONE", "XNYS", AssetType::Equity).await;
    delist(&mut app, "GONE").await;

    // Known and active: confirmed — and a duplicate delivery of the same message is answered once.
    let message = publish(&app, topics::NOTIFICATION, &requested("a1", "ACME"), None).await;
    publish(
        &app,
        topics::NOTIFICATION,
        &requested("a1", "ACME"),
        Some(message),
    )
    .await;
    publish(&app, topics::NOTIFICATION, &requested("a2", "NOPE"), None).await;
    publish(&app, topics::NOTIFICATION, &requested("a3", "GONE"), None).await;

    let rejected: Vec<ev::SymbolTrackingRejected> = eventually("two rejections", || async {
        let rejected: Vec<ev::SymbolTrackingRejected> = answers(&app).await;
        (rejected.len() >= 2).then_some(rejected)
    })
    .await;
    let confirmed: Vec<ev::SymbolTrackingConfirmed> = eventually("a confirmation", || async {
        let confirmed: Vec<ev::SymbolTrackingConfirmed> = answers(&app).await;
        (!confirmed.is_empty()).then_some(confirmed)
    })
    .await;
    assert_eq!(confirmed.len(), 1, "{confirmed:?}");
    assert_eq!(
        (
            confirmed[0].reference.as_str(),
            confirmed[0].reference_count
        ),
        ("alert:a1", 1)
    );
    let by_alert = |id: &str| rejected.iter().find(|r| r.alert_id == id).unwrap();
    assert_eq!(
        by_alert("a2").rejection,
        ev::TrackingRejection::UnknownSymbol as i32
    );
    assert_eq!(by_alert("a2").reason, "NOPE is not a listed symbol");
    assert_eq!(
        by_alert("a3").rejection,
        ev::TrackingRejection::Delisted as i32
    );
    assert_eq!(
        by_alert("a3").reason,
        "GONE is delisted: acquired by Initech"
    );

    // The duplicate was seen and skipped (one inbox row per handler and event id).
    let inbox: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM processed_events WHERE handler = 'tracking.alert-requested'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(inbox, 3);
    // The saga id travels with the answer.
    let correlation: String = sqlx::query_scalar(
        "SELECT attributes->>'mirai-correlation-id' FROM outbox
         WHERE event_type = 'mirai.symbol.tracking.confirmed.v1'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(correlation, "saga-1");

    // Released: the alert's reference goes, and with it the tracking.
    publish(
        &app,
        topics::NOTIFICATION,
        &ev::SymbolTrackingReleased {
            alert_id: "a1".into(),
            symbol: "ACME".into(),
            reference: "alert:a1".into(),
        },
        None,
    )
    .await;
    let client = app.client.clone();
    eventually("tracking released", || {
        let mut client = client.clone();
        async move {
            let symbol = client
                .get_symbol(GetSymbolRequest {
                    symbol: "ACME".into(),
                })
                .await
                .unwrap()
                .into_inner()
                .symbol
                .unwrap();
            (!symbol.tracked).then_some(())
        }
    })
    .await;

    // A watchlist tracks its symbols and releases the ones removed from it.
    let watchlist = |symbols: &[&str], added: &[&str], removed: &[&str]| ev::UserWatchlistChanged {
        user_id: "u9".into(),
        symbols: symbols.iter().map(|s| s.to_string()).collect(),
        added: added.iter().map(|s| s.to_string()).collect(),
        removed: removed.iter().map(|s| s.to_string()).collect(),
    };
    publish(
        &app,
        topics::USER,
        &watchlist(&["ACME", "NOPE"], &["ACME", "NOPE"], &[]),
        None,
    )
    .await;
    let refs = |client: &mut crate::helpers::Client| {
        let mut client = client.clone();
        async move {
            client
                .get_symbol(GetSymbolRequest {
                    symbol: "ACME".into(),
                })
                .await
                .unwrap()
                .into_inner()
                .symbol
                .unwrap()
                .tracking_references
        }
    };
    eventually("watchlist tracked", || {
        let mut client = client.clone();
        async move { (refs(&mut client).await == 1).then_some(()) }
    })
    .await;
    publish(&app, topics::USER, &watchlist(&[], &[], &["ACME"]), None).await;
    eventually("watchlist released", || {
        let mut client = client.clone();
        async move { (refs(&mut client).await == 0).then_some(()) }
    })
    .await;
}
