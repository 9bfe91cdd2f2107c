//! Golden-vector parity: the features computed here from the raw golden bars and tract's
//! outputs equal what Python and onnxruntime computed, within the card's 1e-5, at batch 1, at
//! batch 64 and through the micro-batching queue — for every committed version.

use std::path::Path;
use std::sync::Arc;

use mirai_prediction::artifact::{self, RegistryFile, golden_window, max_diff};
use mirai_prediction::domain::features::N_FEATURES;
use mirai_prediction::inference::engine::{BatchSettings, Engine, EngineMetrics};
use mirai_prediction::metrics::Metrics;

fn models_dir() -> &'static Path {
    Path::new(mirai_prediction::config::DEFAULT_MODELS_DIR)
}

fn every_version() -> Vec<artifact::Verified> {
    let registry = RegistryFile::read(models_dir()).expect("registry.json");
    assert!(
        registry.models.len() >= 2,
        "champion and challenger are committed"
    );
    registry
        .models
        .iter()
        .map(|entry| {
            artifact::load(models_dir(), entry, &[1, 8, 64])
                .unwrap_or_else(|e| panic!("{}/{} refused: {e}", entry.name, entry.version))
        })
        .collect()
}

#[test]
fn features_and_outputs_match_python_and_onnxruntime() {
    for verified in every_version() {
        let golden = &verified.golden;
        let window = verified.card.window;
        assert_eq!(golden.tolerance_abs, 1e-5);
        let mut states = verified.plans.spawn_states().unwrap();
        let (mut worst_features, mut worst_outputs) = (0.0f64, 0.0f64);
        for case in &golden.cases {
            let input = golden_window(&case.bars, window).unwrap();
            assert_eq!(input.len(), window * N_FEATURES);
            let expected: Vec<f64> = case.features.iter().flatten().copied().collect();
            let d = max_diff(input.iter().map(|v| f64::from(*v)), expected.into_iter());
            worst_features = worst_features.max(d);
            // Twice on the same state: a run must not leak recurrent state into the next.
            for _ in 0..2 {
                let out = verified.plans.run(&mut states, &input, 1).unwrap();
                let d = max_diff(
                    out.iter().map(|v| f64::from(*v)),
                    case.output.iter().copied(),
                );
                worst_outputs = worst_outputs.max(d);
            }
        }
        println!(
            "{}: {} cases, max |features - python| = {worst_features:e}, max |outputs - onnxruntime| = {worst_outputs:e}",
            verified.model,
            golden.cases.len()
        );
        assert!(worst_features <= golden.tolerance_abs, "{worst_features}");
        assert!(worst_outputs <= golden.tolerance_abs, "{worst_outputs}");
    }
}

#[test]
fn the_batch_case_matches_at_every_schedule() {
    for verified in every_version() {
        let batch = &verified.golden.batch;
        let window = verified.card.window;
        let mut input = Vec::new();
        for i in 0..batch.batch_size {
            input.extend(golden_window(&batch.bars[i..i + window + 1], window).unwrap());
        }
        let expected: Vec<f64> = batch.outputs.iter().flatten().copied().collect();
        let mut states = verified.plans.spawn_states().unwrap();
        // 64 at once (the batch-64 plan), and prefixes that exercise padding and mixed runs.
        for n in [batch.batch_size, 1, 5, 8, 9, 33, 63] {
            let out = verified
                .plans
                .run(&mut states, &input[..n * window * N_FEATURES], n)
                .unwrap();
            let d = max_diff(
                out.iter().map(|v| f64::from(*v)),
                expected[..n * 3].iter().copied(),
            );
            assert!(
                d <= verified.golden.tolerance_abs,
                "{}: {n} windows (runs {:?}) differ by {d}",
                verified.model,
                verified.plans.runs_for(n)
            );
        }
    }
}

#[tokio::test]
async fn concurrent_requests_share_batches_and_keep_parity() {
    for verified in every_version() {
        let batch = verified.golden.batch.clone();
        let window = verified.card.window;
        let registry = mirai_platform::telemetry::Metrics::new();
        let metrics = Metrics::register(&registry);
        let engine = Arc::new(
            Engine::start(
                verified.model.clone(),
                verified.plans.clone(),
                BatchSettings {
                    max_batch: 64,
                    max_delay: std::time::Duration::from_millis(20),
                    queue: 1024,
                    workers: 1,
                },
                EngineMetrics::of(&metrics, &verified.model),
            )
            .unwrap(),
        );
        let calls = (0..batch.batch_size).map(|i| {
            let engine = engine.clone();
            let input = golden_window(&batch.bars[i..i + window + 1], window).unwrap();
            async move { engine.infer(input).await.unwrap() }
        });
        let results = futures::future::join_all(calls).await;
        let largest = results.iter().map(|r| r.batch).max().unwrap();
        assert!(
            largest > 1,
            "{}: the 64 concurrent windows never shared a batch",
            verified.model
        );
        for (i, result) in results.iter().enumerate() {
            let d = max_diff(
                result.outputs.iter().map(|v| f64::from(*v)),
                batch.outputs[i].iter().copied(),
            );
            assert!(d <= verified.golden.tolerance_abs, "window {i}: {d}");
        }
        let text = registry.encode();
        assert!(text.contains("mirai_inference_batch_size"), "{text}");
    }
}
