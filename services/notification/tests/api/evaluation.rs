//! Evaluation through the real consumer: exactly-once firing across redelivery and restarts,
//! hysteresis, bar closes, forecast-based conditions, moves, and the dead-letter path.

use std::time::Duration;

use google_cloud_pubsub::model::Message;
use mirai_platform::events::consumer::dead_letter_attr;
use mirai_platform::events::topology::{self, topics};
use mirai_platform::events::{Envelope, Event as _, pubsub};
use mirai_platform::wire;
use mirai_proto::events::v1 as ev;
use mirai_proto::notification::v1 as pb;
use mirai_proto::prediction::v1 as prediction;
use mirai_proto::stock::v1 as stock;
use pb::condition::Kind;

use crate::helpers::{
    Receiver, TestApp, alert, eventually, level, price_event, spawn, start, test_config, user,
};

/// Waits until the consumer has processed `n` events with `handler`.
async fn processed(app: &TestApp, handler: &str, n: i64) {
    eventually(&format!("{n} events through {handler}"), || async {
        (app.processed(handler).await >= n).then_some(())
    })
    .await;
}

async fn notifications(app: &mut TestApp, owner: uuid::Uuid) -> Vec<pb::Notification> {
    app.client
        .list_notifications(user(
            owner,
            pb::ListNotificationsRequest {
                user_id: owner.to_string(),
                categories: vec![
                    pb::Category::PriceAlert.into(),
                    pb::Category::ForecastAlert.into(),
                ],
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .notifications
}

#[tokio::test]
async fn a_redelivered_or_duplicated_price_event_notifies_once_per_channel_even_after_a_restart() {
    let mut app = spawn().await;
    let receiver = Receiver::start(&[]).await;
    let owner = app.add_user("x@example.com", "UTC", &["user"]).await;
    app.client
        .create_webhook_endpoint(user(
            owner,
            pb::CreateWebhookEndpointRequest {
                user_id: owner.to_string(),
                endpoint: Some(pb::WebhookEndpoint {
                    url: receiver.url.clone(),
                    ..Default::default()
                }),
            },
        ))
        .await
        .unwrap();
    let created = app
        .create_alert(
            owner,
            alert(
                "ACME",
                level(Kind::CrossingUp, 100.0),
                &[pb::Channel::InApp, pb::Channel::Webhook],
            ),
        )
        .await;
    app.confirm(owner, &created).await;
    app.price("ACME", 99.0).await;
    processed(&app, "evaluate.price-updated", 1).await;
    let crossing = app.price("ACME", 101.0).await;
    // The same message again (same ce-id: a redelivery), and the same again.
    app.publish(
        "stock-data",
        &price_event("ACME", 101.0),
        Some(crossing.clone()),
    )
    .await;
    app.publish("stock-data", &price_event("ACME", 101.0), Some(crossing))
        .await;
    // A new event at a price still above the level: no new crossing.
    app.price("ACME", 101.5).await;
    processed(&app, "evaluate.price-updated", 3).await;
    eventually("the webhook delivery", || async {
        (!receiver.requests().is_empty()).then_some(())
    })
    .await;

    // Restart on the same database (a new process: new index, new consumer — on fresh
    // Pub/Sub names, so no message of the old one is in flight): the alert stays disarmed.
    app.stop.cancel();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let db = std::mem::replace(
        &mut app.db,
        mirai_platform::testing::TestDatabase::create("notification_unused").await,
    );
    let config = test_config(&db);
    let mut app = start(db, config).await;
    eventually("the index rebuilt from the database", || async {
        app.context.index.watches("ACME").then_some(())
    })
    .await;
    app.price("ACME", 102.0).await;
    processed(&app, "evaluate.price-updated", 4).await;

    assert_eq!(app.trigger_count(&created.alert_id).await, 1);
    let alert = app.get_alert(owner, &created.alert_id).await;
    assert_eq!(alert.trigger_count, 1);
    assert!(!alert.armed);
    let deliveries = app.deliveries_of(owner).await;
    let alert_deliveries: Vec<_> = deliveries
        .iter()
        .filter(|(channel, ..)| *channel == pb::Channel::Webhook as i16)
        .collect();
    assert_eq!(alert_deliveries.len(), 1, "{deliveries:?}");
    let triggered: Vec<ev::AlertTriggered> = app.outbox().await;
    assert_eq!(triggered.len(), 1);
    assert_eq!(triggered[0].price, 101.0);
    assert_eq!(triggered[0].cause_event_type, ev::PriceUpdated::TYPE);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.requests().len(), 1, "one webhook request");

    // Back below, then above again after the cool-down: a new crossing fires again.
    app.price_in("ACME", 98.0, 2).await;
    processed(&app, "evaluate.price-updated", 5).await;
    app.price_in("ACME", 103.0, 3).await;
    processed(&app, "evaluate.price-updated", 6).await;
    assert_eq!(app.trigger_count(&created.alert_id).await, 2);
}

#[tokio::test]
async fn hysteresis_keeps_jitter_around_the_level_from_firing() {
    let mut app = spawn().await;
    let owner = app.add_user("h@example.com", "UTC", &["user"]).await;
    let created = app
        .create_alert(
            owner,
            pb::Alert {
                condition: Some(pb::Condition {
                    kind: Some(Kind::Crossing(pb::PriceLevel { price: 200.0 })),
                    hysteresis_percent: 0.5, // band 199–201
                }),
                ..alert("JIT", level(Kind::Crossing, 0.0), &[])
            },
        )
        .await;
    app.confirm(owner, &created).await;
    let jitter = [198.0, 200.2, 199.8, 200.3, 199.7, 200.4];
    for (i, p) in jitter.iter().enumerate() {
        app.price("JIT", *p).await;
        processed(&app, "evaluate.price-updated", i as i64 + 1).await;
    }
    assert_eq!(
        app.trigger_count(&created.alert_id).await,
        1,
        "only the first crossing"
    );
    // Past the cool-down: beyond the band re-arms downwards, then it crosses down.
    app.price_in("JIT", 201.5, 2).await;
    processed(&app, "evaluate.price-updated", 7).await;
    app.price_in("JIT", 199.9, 3).await;
    processed(&app, "evaluate.price-updated", 8).await;
    let list = notifications(&mut app, owner).await;
    assert_eq!(list.len(), 2, "{list:?}");
    assert!(
        list[0].title.contains("crossing 200.00"),
        "{}",
        list[0].title
    );
}

#[tokio::test]
async fn bar_close_alerts_hear_only_their_bars_and_fill_the_template() {
    let mut app = spawn().await;
    let owner = app.add_user("bc@example.com", "UTC", &["user"]).await;
    let created = app
        .create_alert(
            owner,
            pb::Alert {
                frequency: pb::Frequency::OncePerBarClose.into(),
                bar_timeframe: stock::Timeframe::OneDay.into(),
                message_template: "{{symbol}} closed at {{close}} ({{condition}}, p_up {{p_up}})"
                    .into(),
                ..alert("BAR", level(Kind::Above, 50.0), &[])
            },
        )
        .await;
    app.confirm(owner, &created).await;
    app.price("BAR", 60.0).await; // price updates do not count for bar-close alerts
    let bar = |close: f64, timeframe: stock::Timeframe, day: i64| ev::BarClosed {
        bar: Some(stock::Bar {
            symbol: "BAR".into(),
            timeframe: timeframe.into(),
            start: Some(prost_types::Timestamp {
                seconds: 1_767_225_600 + day * 86_400 + 14 * 3600,
                nanos: 0,
            }),
            close,
            open: close,
            high: close,
            low: close,
            complete: true,
            ..Default::default()
        }),
        source: "replay".into(),
        ..Default::default()
    };
    app.publish("stock-data", &bar(61.0, stock::Timeframe::OneHour, 0), None)
        .await;
    app.publish("stock-data", &bar(62.0, stock::Timeframe::OneDay, 0), None)
        .await;
    processed(&app, "evaluate.bar-closed", 2).await;
    processed(&app, "evaluate.price-updated", 1).await;
    let list = notifications(&mut app, owner).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].body, "BAR closed at 62.00 (above 50.00, p_up n/a)");
}

fn prediction(
    symbol: &str,
    point: f64,
    lower: f64,
    upper: f64,
    p_up: f64,
) -> ev::PredictionGenerated {
    let now = chrono::Utc::now();
    ev::PredictionGenerated {
        symbol: symbol.into(),
        timeframe: stock::Timeframe::OneDay.into(),
        as_of: Some(wire::timestamp(now)),
        target_start: Some(wire::timestamp(now + chrono::Duration::days(1))),
        last_close: point,
        forecasts: vec![prediction::Forecast {
            symbol: symbol.into(),
            model: Some(prediction::ModelRef {
                name: "spx-lstm".into(),
                version: "1.0.0".into(),
            }),
            role: prediction::ModelRole::Champion.into(),
            point,
            lower,
            upper,
            interval_level: 0.9,
            p_up,
            target_start: Some(wire::timestamp(now + chrono::Duration::days(1))),
            ..Default::default()
        }],
        cause_event_id: uuid::Uuid::now_v7().to_string(),
    }
}

#[tokio::test]
async fn forecast_conditions_fire_on_predictions_and_prices() {
    let mut app = spawn().await;
    let owner = app.add_user("f@example.com", "UTC", &["user"]).await;
    let p_up = app
        .create_alert(
            owner,
            pb::Alert {
                message_template: "{{symbol}} P(up) {{p_up}} in [{{lower}}, {{upper}}]".into(),
                ..alert(
                    "FC",
                    pb::Condition {
                        kind: Some(Kind::ProbabilityUpAtLeast(pb::ProbabilityUpThreshold {
                            threshold: 0.7,
                        })),
                        hysteresis_percent: 0.0,
                    },
                    &[],
                )
            },
        )
        .await;
    let exit = app
        .create_alert(
            owner,
            alert(
                "FC",
                pb::Condition {
                    kind: Some(Kind::ForecastIntervalExit(pb::ForecastIntervalExit {
                        side: pb::IntervalSide::Above.into(),
                    })),
                    hysteresis_percent: 0.0,
                },
                &[],
            ),
        )
        .await;
    let cross = app
        .create_alert(
            owner,
            alert(
                "FC",
                pb::Condition {
                    kind: Some(Kind::ForecastCrossesPrice(pb::ForecastCrossesPrice {
                        direction: pb::CrossDirection::Up.into(),
                    })),
                    hysteresis_percent: 0.0,
                },
                &[],
            ),
        )
        .await;
    for a in [&p_up, &exit, &cross] {
        app.confirm(owner, a).await;
    }
    app.price("FC", 101.0).await;
    processed(&app, "evaluate.price-updated", 1).await;
    // Forecast 100 (below the price 101), interval 95–105, P(up) 0.6: nothing yet, but the
    // forecast-crossing alert arms (forecast below the price).
    app.publish(
        "prediction",
        &prediction("FC", 100.0, 95.0, 105.0, 0.6),
        None,
    )
    .await;
    processed(&app, "evaluate.prediction-generated", 1).await;
    assert_eq!(notifications(&mut app, owner).await.len(), 0);
    // A new forecast: point 103 above the price (crosses it), P(up) 0.75.
    app.publish(
        "prediction",
        &prediction("FC", 103.0, 98.0, 108.0, 0.75),
        None,
    )
    .await;
    processed(&app, "evaluate.prediction-generated", 2).await;
    // The price leaves the interval upwards.
    app.price("FC", 109.0).await;
    processed(&app, "evaluate.price-updated", 2).await;
    assert_eq!(app.trigger_count(&p_up.alert_id).await, 1);
    assert_eq!(app.trigger_count(&cross.alert_id).await, 1);
    assert_eq!(app.trigger_count(&exit.alert_id).await, 1);
    let list = notifications(&mut app, owner).await;
    let p = list.iter().find(|n| n.alert_id == p_up.alert_id).unwrap();
    assert_eq!(p.body, "FC P(up) 75% in [98.00, 108.00]");
    assert_eq!(p.category, pb::Category::ForecastAlert as i32);
    let triggered: Vec<ev::AlertTriggered> = app.outbox().await;
    let snapshot = triggered
        .iter()
        .find(|t| t.alert_id == p_up.alert_id)
        .and_then(|t| t.forecast.clone())
        .and_then(|f| f.forecast)
        .unwrap();
    assert_eq!(snapshot.p_up, 0.75);
}

#[tokio::test]
async fn moves_within_a_window_and_channels_fire() {
    let mut app = spawn().await;
    let owner = app.add_user("m@example.com", "UTC", &["user"]).await;
    let up = app
        .create_alert(
            owner,
            alert(
                "MOV",
                pb::Condition {
                    kind: Some(Kind::MovingUp(pb::PriceMove {
                        size: Some(pb::price_move::Size::Percent(5.0)),
                        window: Some(prost_types::Duration {
                            seconds: 3600,
                            nanos: 0,
                        }),
                    })),
                    hysteresis_percent: 0.0,
                },
                &[],
            ),
        )
        .await;
    let exit = app
        .create_alert(
            owner,
            alert(
                "MOV",
                pb::Condition {
                    kind: Some(Kind::ExitingChannel(pb::PriceChannel {
                        lower: 95.0,
                        upper: 104.0,
                    })),
                    hysteresis_percent: 0.0,
                },
                &[],
            ),
        )
        .await;
    app.confirm(owner, &up).await;
    app.confirm(owner, &exit).await;
    for (i, p) in [100.0, 102.0, 104.0].iter().enumerate() {
        app.price("MOV", *p).await;
        processed(&app, "evaluate.price-updated", i as i64 + 1).await;
    }
    assert_eq!(app.trigger_count(&up.alert_id).await, 0, "4 % is not 5 %");
    app.price("MOV", 105.5).await; // +5.5 % from the window's low 100, and out of the channel
    processed(&app, "evaluate.price-updated", 4).await;
    assert_eq!(app.trigger_count(&up.alert_id).await, 1);
    assert_eq!(app.trigger_count(&exit.alert_id).await, 1);
    app.price("MOV", 106.0).await; // measured from the firing now: +0.5 %
    processed(&app, "evaluate.price-updated", 5).await;
    assert_eq!(app.trigger_count(&up.alert_id).await, 1);
}

#[tokio::test]
async fn a_poison_event_is_dead_lettered_and_processing_continues() {
    let mut app = spawn().await;
    let owner = app.add_user("p@example.com", "UTC", &["user"]).await;
    let created = app
        .create_alert(owner, alert("PSN", level(Kind::Above, 10.0), &[]))
        .await;
    app.confirm(owner, &created).await;
    let config = app.config.service.pubsub.clone();
    let base = pubsub::publisher(&config).await.unwrap();
    let publisher = base.publisher(config.topic_path(topics::STOCK)).build();
    let envelope = Envelope::new("stock-data", &price_event("PSN", 1.0), None);
    publisher
        .publish(
            Message::new()
                .set_data(b"\xff\xff not protobuf".to_vec())
                .set_attributes(envelope.to_attributes()),
        )
        .await
        .unwrap();
    app.price("PSN", 11.0).await;
    processed(&app, "evaluate.price-updated", 1).await;
    assert_eq!(
        app.trigger_count(&created.alert_id).await,
        1,
        "the next event is processed"
    );
    let subscriber = pubsub::subscriber(&config).await.unwrap();
    let mut dead = subscriber
        .subscribe(
            config.subscription_path(&topology::dead_letter_name("notification.stock-events")),
        )
        .build();
    let (message, ack) = tokio::time::timeout(Duration::from_secs(90), dead.next())
        .await
        .expect("the poison event is dead-lettered")
        .expect("stream open")
        .expect("message");
    ack.ack();
    assert_eq!(message.attributes["ce-id"], envelope.id.to_string());
    assert!(
        message.attributes[dead_letter_attr::REASON].contains("does not decode"),
        "{:?}",
        message.attributes
    );
}
