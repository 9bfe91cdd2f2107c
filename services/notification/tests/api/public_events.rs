//! The public price-alerts topic, consumed by an independent client (Python
//! google-cloud-pubsub) that validates every event against the committed JSON Schema.

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use mirai_platform::events::topology::topics;
use mirai_proto::notification::v1 as pb;

use crate::helpers::{alert, price_event, py_dir, python, spawn};
use crate::webhooks::fire;

#[tokio::test]
async fn triggered_alerts_reach_an_independent_subscriber_valid_against_the_schema() {
    let mut app = spawn().await;
    let owner = app.add_user("pub@example.com", "UTC", &["user"]).await;
    let pubsub = app.config.service.pubsub.clone();
    let schema =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas/price-alert.v2.json");
    let mut child = Command::new(python())
        .arg(py_dir().join("subscribe_price_alerts.py"))
        .args([
            pubsub.project.clone(),
            format!("{}{}", pubsub.prefix, topics::PRICE_ALERTS),
            format!("{}external-subscriber", pubsub.prefix),
            schema.to_string_lossy().into_owned(),
            "2".into(),
            "60".into(),
        ])
        .env(
            "PUBSUB_EMULATOR_HOST",
            pubsub.emulator_host.clone().unwrap(),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "READY", "the subscriber did not start");

    let created = fire(&mut app, owner, "PUBA", &[]).await;
    let named = app
        .create_alert(
            owner,
            pb::Alert {
                name: "range break".into(),
                ..alert(
                    "PUBA",
                    pb::Condition {
                        kind: Some(pb::condition::Kind::ExitingChannel(pb::PriceChannel {
                            lower: 5.0,
                            upper: 12.0,
                        })),
                        hysteresis_percent: 0.5,
                    },
                    &[],
                )
            },
        )
        .await;
    app.confirm(owner, &named).await;
    app.price("PUBA", 11.0).await; // inside: arms
    // Out and back within one update: the high left the channel, the last price did not.
    let spike = mirai_proto::events::v1::PriceUpdated {
        interval_high: 12.6,
        coalesced: 3,
        ..price_event("PUBA", 11.5)
    };
    app.publish("stock-data", &spike, None).await; // fires on the high

    let output = tokio::task::spawn_blocking(move || {
        let mut rest = String::new();
        stdout.read_to_string(&mut rest).unwrap();
        let status = child.wait().unwrap();
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        (status, rest, stderr)
    })
    .await
    .unwrap();
    let (status, rest, stderr) = output;
    let report: serde_json::Value = serde_json::from_str(rest.trim())
        .unwrap_or_else(|e| panic!("subscriber output ({e}): {rest} / {stderr}"));
    assert!(status.success(), "schema violations: {}", report["errors"]);
    let events = report["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    let first = events
        .iter()
        .find(|e| e["data"]["alert_id"] == created.alert_id)
        .expect("the first alert's event");
    assert_eq!(first["type"], "mirai.price_alert.triggered.v2");
    assert_eq!(first["subject"], "PUBA");
    assert_eq!(first["data"]["condition"]["kind"], "above");
    assert_eq!(first["data"]["condition"]["level"], 10.0);
    assert_eq!(first["data"]["price"], 11.0);
    assert_eq!(
        first["data"]["trigger_price"], 11.0,
        "above: the last price met it"
    );
    let second = events
        .iter()
        .find(|e| e["data"]["alert_id"] == named.alert_id)
        .expect("the channel alert's event");
    assert_eq!(second["data"]["alert_name"], "range break");
    assert_eq!(second["data"]["condition"]["kind"], "exiting_channel");
    assert_eq!(second["data"]["condition"]["upper"], 12.0);
    assert_eq!(second["data"]["price"], 11.5);
    assert_eq!(second["data"]["trigger_price"], 12.6);
    let message = second["data"]["message"].as_str().unwrap();
    assert!(
        message.contains("reached 12.60, last price 11.50"),
        "the message names the price that crossed: {message}"
    );
    for attributes in report["attributes"].as_array().unwrap() {
        assert_eq!(attributes["content-type"], "application/cloudevents+json");
    }
}
