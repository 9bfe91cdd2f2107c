//! The bar read model: events (duplicated, out of order, revised, stale) and backfills.

use mirai_platform::events::Envelope;
use mirai_platform::events::Event as _;
use prost::Message as _;

use crate::helpers::{at, bar_event, sample_rows, spawn, spawn_with};

#[tokio::test]
async fn duplicated_late_and_revised_bars_leave_one_correct_series() {
    let app = spawn_with(false, |c| c.backfill_on_start = false).await;
    let d = |day: u32| format!("2024-03-{day:02}T13:30:00Z");
    app.publish("stock-data", &bar_event("ACME", &d(4), 100.0), None)
        .await;
    let third = app
        .publish("stock-data", &bar_event("ACME", &d(6), 103.0), None)
        .await;
    // A late bar: it belongs between the two.
    app.publish("stock-data", &bar_event("ACME", &d(5), 102.0), None)
        .await;
    // The same bar again under a new id (a replay), and a redelivery of the same message.
    app.publish("stock-data", &bar_event("ACME", &d(4), 100.0), None)
        .await;
    app.publish("stock-data", &bar_event("ACME", &d(6), 103.0), Some(third))
        .await;
    // A revision of the late bar.
    app.publish("stock-data", &bar_event("ACME", &d(5), 102.5), None)
        .await;
    // A stale revision: information older than what is stored must not undo it.
    let stale = bar_event("ACME", &d(5), 99.0);
    let mut envelope = Envelope::new("stock-data", &stale, None);
    envelope.time -= chrono::Duration::hours(1);
    let message = google_cloud_pubsub::model::Message::new()
        .set_data(stale.encode_to_vec())
        .set_attributes(envelope.to_attributes())
        .set_ordering_key(stale.subject());
    app.publish("stock-data", &stale, Some(message)).await;
    // Six distinct event ids; the redelivery adds no inbox row. The last one comes after the
    // redelivery on the same ordering key, so once it is in, everything before was handled.
    app.wait_processed("bars.closed", 6).await;

    assert_eq!(app.processed("bars.closed").await, 6);
    assert_eq!(
        app.closes("ACME").await,
        vec![(at(&d(4)), 100.0), (at(&d(5)), 102.5), (at(&d(6)), 103.0)]
    );
}

#[tokio::test]
async fn a_backfill_reads_every_page_and_repeating_it_changes_nothing() {
    let mut app = spawn_with(true, |c| {
        c.backfill_on_start = false;
        c.backfill_page = 1_000;
    })
    .await;
    let rows = sample_rows();
    let first = app.backfill("SPX").await;
    assert_eq!(first.bars_fetched, rows.len() as u64);
    assert_eq!(first.bars_inserted, rows.len() as u64);
    assert_eq!(first.bars_updated, 0);
    let stored = app.closes("SPX").await;
    assert_eq!(stored.len(), rows.len());
    for ((_, close), (date, ohlcv)) in stored.iter().zip(&rows) {
        assert_eq!(*close, ohlcv[3], "{date}");
    }
    assert_eq!(stored[0].0, at("2000-01-03T14:30:00Z"));

    let again = app.backfill("SPX").await;
    assert_eq!((again.bars_inserted, again.bars_updated), (0, 0));

    // A bar the events got wrong is corrected by the next backfill (newer information).
    sqlx::query("UPDATE bars SET close = 1.0, as_of = now() - interval '1 day' WHERE symbol = 'SPX' AND start_at = $1")
        .bind(stored[10].0)
        .execute(&app.pool)
        .await
        .unwrap();
    let repair = app.backfill("SPX").await;
    assert_eq!((repair.bars_inserted, repair.bars_updated), (0, 1));
    assert_eq!(app.closes("SPX").await[10].1, rows[10].1[3]);
}

#[tokio::test]
async fn the_service_catches_up_from_stock_data_when_it_starts() {
    let app = spawn_with(true, |c| c.backfill_on_start = true).await;
    let n = sample_rows().len();
    crate::helpers::eventually("the start-up backfill", || async {
        (app.closes("SPX").await.len() == n).then_some(())
    })
    .await;
}

#[tokio::test]
async fn backfill_is_for_admins_and_an_unknown_symbol_is_not_found() {
    let mut app = spawn().await;
    let denied = app
        .client
        .backfill(crate::helpers::as_user(
            uuid::Uuid::now_v7(),
            mirai_proto::analytics::v1::BackfillRequest {
                symbol: "SPX".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    let unknown = app
        .client
        .backfill(crate::helpers::as_admin(
            mirai_proto::analytics::v1::BackfillRequest {
                symbol: "NOPE".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound, "{unknown:?}");
    assert!(unknown.message().contains("NOPE"), "{}", unknown.message());
}
