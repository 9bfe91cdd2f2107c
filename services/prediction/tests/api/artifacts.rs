//! Artifact verification at start and on change: a tampered artifact and a wrong-shape model
//! are refused with a clear reason while the version that was verified before keeps serving.

use std::time::Duration;

use mirai_prediction::artifact::sha256_hex;
use mirai_proto::prediction::v1 as pb;

use crate::helpers::{Options, eventually, models_copy, spawn, write_atomically, write_json};

fn quantiles(forecast: &pb::Forecast) -> Vec<f64> {
    forecast.quantiles.iter().map(|q| q.price).collect()
}

#[tokio::test]
async fn a_tampered_artifact_is_refused_and_the_verified_one_keeps_serving() {
    let (_guard, dir) = models_copy(&["1.0.0"]);
    let app = spawn(Options {
        models_dir: Some(dir.clone()),
        ..Options::default()
    })
    .await;
    let before = app.predict("SPX", "").await.expect("the champion serves");
    assert_eq!(before.model.as_ref().unwrap().version, "1.0.0");

    // One byte of the served file changes on disk; the registry still names the old sha256.
    let onnx = dir.join("spx-lstm/1.0.0/model.onnx");
    let mut bytes = std::fs::read(&onnx).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    write_atomically(&onnx, &bytes);

    let version = eventually("the refusal", Duration::from_secs(20), || async {
        let v = app.version("1.0.0").await;
        (!v.status_reason.is_empty()).then_some(v)
    })
    .await;
    assert_eq!(
        version.status(),
        pb::ModelStatus::Ready,
        "{}",
        version.status_reason
    );
    assert!(
        version.status_reason.contains("sha256 mismatch"),
        "{}",
        version.status_reason
    );
    assert!(
        version.status_reason.contains("still serving"),
        "{}",
        version.status_reason
    );
    // The served artifact is still the registered one.
    assert_eq!(
        version.sha256,
        "0ac83bec8e784734b0d2d9c9eeb43f63c614394ecd3c7e1a5d8fc5902c30e90e"
    );

    let after = app.predict("SPX", "").await.expect("still serving");
    assert_eq!(quantiles(&after), quantiles(&before));
    assert!(
        app.metrics_text().await.contains(
            "mirai_model_artifact_refusals_total{model=\"spx-lstm\",version=\"1.0.0\"} 1"
        ),
        "the refusal is counted"
    );
}

#[tokio::test]
async fn a_wrong_shape_model_is_refused_and_the_champion_keeps_serving() {
    let (_guard, dir) = models_copy(&["1.0.0"]);
    let app = spawn(Options {
        models_dir: Some(dir.clone()),
        ..Options::default()
    })
    .await;
    let before = app.predict("SPX", "").await.expect("the champion serves");

    // A new version whose card promises a 30-day window, shipped with a graph that takes 60
    // days (1.1.0's): checksums are right, the shape is not.
    let source = std::path::Path::new(mirai_prediction::config::DEFAULT_MODELS_DIR);
    let version_dir = dir.join("spx-lstm/1.1.0");
    std::fs::create_dir_all(&version_dir).unwrap();
    let onnx = std::fs::read(source.join("spx-lstm/1.1.0/model.onnx")).unwrap();
    std::fs::write(version_dir.join("model.onnx"), &onnx).unwrap();
    let mut card: serde_json::Value =
        serde_json::from_slice(&std::fs::read(source.join("spx-lstm/1.1.0/card.json")).unwrap())
            .unwrap();
    card["window"] = 30.into();
    card["bars_needed"] = 31.into();
    card["input"]["shape"] = serde_json::json!(["batch", 30, 5]);
    write_json(&version_dir.join("card.json"), &card);
    std::fs::copy(
        source.join("spx-lstm/1.1.0/golden.json"),
        version_dir.join("golden.json"),
    )
    .unwrap();
    let registry_path = dir.join("registry.json");
    let mut registry: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&registry_path).unwrap()).unwrap();
    let file = |name: &str| std::fs::read(version_dir.join(name)).unwrap();
    registry["models"].as_array_mut().unwrap().push(serde_json::json!({
        "name": "spx-lstm", "version": "1.1.0",
        "onnx": "spx-lstm/1.1.0/model.onnx", "sha256": sha256_hex(&onnx), "bytes": onnx.len(),
        "card": "spx-lstm/1.1.0/card.json", "card_sha256": sha256_hex(&file("card.json")),
        "golden": "spx-lstm/1.1.0/golden.json", "golden_sha256": sha256_hex(&file("golden.json")),
        "window": 30, "bars_needed": 31,
        "input": {"name": "features", "shape": ["batch", 30, 5]},
        "output": {"name": "quantiles", "shape": ["batch", 3]},
    }));
    write_json(&registry_path, &registry);

    let refused = eventually(
        "the new version's refusal",
        Duration::from_secs(20),
        || async {
            let models = app
                .client
                .clone()
                .get_model(pb::GetModelRequest {
                    name: "spx-lstm".into(),
                    include_retired: false,
                })
                .await
                .unwrap()
                .into_inner()
                .model
                .unwrap();
            models
                .versions
                .into_iter()
                .find(|v| v.model.as_ref().unwrap().version == "1.1.0")
                .filter(|v| v.status() == pb::ModelStatus::Failed)
        },
    )
    .await;
    assert!(
        refused.status_reason.contains("graph input shape")
            && refused.status_reason.contains("[batch, 30, 5]"),
        "{}",
        refused.status_reason
    );
    assert!(refused.card.is_none());

    // Traffic cannot be given to it, and the champion is untouched.
    let err = app
        .client
        .clone()
        .set_traffic(crate::helpers::admin(pb::SetTrafficRequest {
            traffic: Some(pb::Traffic {
                splits: vec![
                    pb::TrafficSplit {
                        model: Some(crate::helpers::model("1.0.0")),
                        percent: 50,
                    },
                    pb::TrafficSplit {
                        model: Some(crate::helpers::model("1.1.0")),
                        percent: 50,
                    },
                ],
                champion: Some(crate::helpers::model("1.0.0")),
                ..Default::default()
            }),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    let after = app.predict("SPX", "").await.unwrap();
    assert_eq!(after.model, before.model);
    assert_eq!(quantiles(&after), quantiles(&before));
    assert_eq!(app.version("1.0.0").await.status(), pb::ModelStatus::Ready);
}

#[tokio::test]
async fn a_service_without_a_verifiable_champion_is_not_ready() {
    let (_guard, dir) = models_copy(&["1.0.0"]);
    let golden = dir.join("spx-lstm/1.0.0/golden.json");
    let mut bytes = std::fs::read(&golden).unwrap();
    bytes.extend_from_slice(b"\n");
    std::fs::write(&golden, bytes).unwrap();
    let app = spawn(Options {
        models_dir: Some(dir),
        ..Options::default()
    })
    .await;
    let version = app.version("1.0.0").await;
    assert_eq!(version.status(), pb::ModelStatus::Failed);
    assert!(
        version.status_reason.contains("golden.json"),
        "{}",
        version.status_reason
    );
    let err = app.predict("SPX", "").await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    let readyz = reqwest::get(format!("{}/readyz", app.admin_url))
        .await
        .unwrap();
    assert_eq!(readyz.status().as_u16(), 503);
    assert!(readyz.text().await.unwrap().contains("not READY"));
}
