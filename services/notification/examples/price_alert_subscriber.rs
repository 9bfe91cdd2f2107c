//! A minimal consumer of the public `price-alerts` topic, as another system would write it:
//! it needs nothing of MiraiKakaku's code — only Pub/Sub and the JSON Schema
//! (`schemas/price-alert.v2.json`).
//!
//! ```text
//! # against the local emulator (scripts/dev-up starts one):
//! PUBSUB_EMULATOR_HOST=127.0.0.1:8085 GOOGLE_CLOUD_PROJECT=mirai-local \
//!   cargo run -p mirai-notification --example price_alert_subscriber -- my-system.price-alerts
//! # on Google Cloud (Application Default Credentials):
//! GOOGLE_CLOUD_PROJECT=my-project \
//!   cargo run -p mirai-notification --example price_alert_subscriber -- my-system.price-alerts
//! ```
//!
//! The argument names the subscription; it is created on the `price-alerts` topic when it does
//! not exist (`MIRAI_PUBSUB_PREFIX` is honoured, as the services use it). Each event is printed
//! as one line and acknowledged. Events can be redelivered: a real consumer deduplicates on
//! the CloudEvent `id`, as this one does for the run.

use std::collections::HashSet;

use google_cloud_pubsub::client::{Subscriber, SubscriptionAdmin};
use google_cloud_pubsub::model::Subscription;
use serde::Deserialize;

/// The fields this consumer uses (see the schema for all of them).
#[derive(Debug, Deserialize)]
struct CloudEvent {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    subject: String,
    data: PriceAlert,
}

#[derive(Debug, Deserialize)]
struct PriceAlert {
    alert_id: String,
    condition_text: String,
    price: f64,
    observed_at: String,
    message: String,
    trigger_count: u32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let name = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: price_alert_subscriber <subscription-name>"))?;
    let project = std::env::var("GOOGLE_CLOUD_PROJECT")
        .map_err(|_| anyhow::anyhow!("GOOGLE_CLOUD_PROJECT is required"))?;
    let prefix = std::env::var("MIRAI_PUBSUB_PREFIX").unwrap_or_default();
    let emulator = std::env::var("PUBSUB_EMULATOR_HOST").ok();
    let topic = format!("projects/{project}/topics/{prefix}price-alerts");
    let subscription = format!("projects/{project}/subscriptions/{prefix}{name}");

    // The official client does not read PUBSUB_EMULATOR_HOST itself.
    let (admin, subscriber) = match &emulator {
        Some(host) => {
            let anonymous = || google_cloud_auth::credentials::anonymous::Builder::new().build();
            (
                SubscriptionAdmin::builder()
                    .with_endpoint(format!("http://{host}"))
                    .with_credentials(anonymous())
                    .build()
                    .await?,
                Subscriber::builder()
                    .with_endpoint(format!("http://{host}"))
                    .with_credentials(anonymous())
                    .build()
                    .await?,
            )
        }
        None => (
            SubscriptionAdmin::builder().build().await?,
            Subscriber::builder().build().await?,
        ),
    };
    let created = admin
        .create_subscription()
        .with_request(
            Subscription::new()
                .set_name(subscription.clone())
                .set_topic(topic.clone())
                .set_enable_message_ordering(true),
        )
        .send()
        .await;
    match created {
        Ok(_) => eprintln!("created {subscription} on {topic}"),
        Err(e) if e.http_status_code() == Some(409) || e.to_string().contains("ALREADY_EXISTS") => {
            eprintln!("using {subscription}")
        }
        Err(e) => return Err(e.into()),
    }

    let mut seen = HashSet::new();
    let mut stream = subscriber.subscribe(subscription).build();
    while let Some(next) = stream.next().await {
        let (message, ack) = next?;
        match serde_json::from_slice::<CloudEvent>(&message.data) {
            Ok(event) if event.kind == "mirai.price_alert.triggered.v2" => {
                if seen.insert(event.id.clone()) {
                    println!(
                        "{} {} {} @ {} ({}; trigger #{} of alert {}): {}",
                        event.data.observed_at,
                        event.subject,
                        event.data.condition_text,
                        event.data.price,
                        event.id,
                        event.data.trigger_count,
                        event.data.alert_id,
                        event.data.message
                    );
                }
            }
            Ok(other) => eprintln!("skipping event of type {}", other.kind),
            Err(e) => eprintln!("not a price-alert event ({e}); skipping"),
        }
        ack.ack();
    }
    Ok(())
}
