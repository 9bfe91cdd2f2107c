//! tract against onnxruntime on the same artifacts and the same tensors, in one process, and
//! the serving path.
//!
//! ```sh
//! # onnxruntime's shared library from its PyPI wheel (any venv with onnxruntime 1.32):
//! export ORT_DYLIB_PATH="$(python -c 'import onnxruntime, glob, os; print(glob.glob(os.path.dirname(onnxruntime.__file__) + "/capi/libonnxruntime.so.*")[0])')"
//! cargo bench -p mirai-prediction --bench inference
//! ```
//!
//! Inputs are the ones `scripts/train/bench_ort.py` times: batch 1 = the first golden case,
//! batch 64 = the golden batch case's 64 windows (features computed here). Each measurement
//! runs on one thread (tract is single-threaded per run; one worker state; onnxruntime with one
//! intra-op and one inter-op thread, sequential, every graph optimization — bench_ort.py's
//! settings).
//!
//! Besides criterion's own report, a percentile pass prints one JSON document with p50/p99 per
//! case — tract's plan run against onnxruntime's session, interleaved in blocks of runs so both
//! see the same machine at the same moments, with their outputs compared; and the serving path
//! (features from cached bars → micro-batching queue → worker → prices, P(up)) for 1 symbol,
//! 64 concurrent single-symbol requests and 500 symbols in one call. Without `ORT_DYLIB_PATH`
//! the onnxruntime columns are null.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use mirai_platform::grpc::client::{Client, ClientConfig};
use mirai_prediction::artifact::{self, RegistryFile, Verified, golden_window};
use mirai_prediction::bars::{BarSource, Snapshot};
use mirai_prediction::domain::features::{Bar, Series};
use mirai_prediction::domain::model_ref::ModelRef;
use mirai_prediction::domain::symbol::Symbol;
use mirai_prediction::domain::traffic::{Role, Traffic};
use mirai_prediction::forecasting::{Predictor, PredictorSettings};
use mirai_prediction::inference::engine::BatchSettings;
use mirai_prediction::metrics::Metrics;
use mirai_prediction::models::ModelSet;
use mirai_prediction::store::predictions::{Origin, PredictionLog};
use mirai_prediction::store::traffic::{TrafficState, TrafficView};
use serde_json::json;

fn models_dir() -> &'static Path {
    Path::new(mirai_prediction::config::DEFAULT_MODELS_DIR)
}

fn versions() -> Vec<Verified> {
    let registry = RegistryFile::read(models_dir()).expect("registry.json");
    registry
        .models
        .iter()
        .map(|e| artifact::load(models_dir(), e, &[1, 8, 64]).expect("verified"))
        .collect()
}

/// The tensors bench_ort.py feeds: (batch 1 input, batch 64 input).
fn inputs(v: &Verified) -> (Vec<f32>, Vec<f32>) {
    let w = v.card.window;
    let one = golden_window(&v.golden.cases[0].bars, w).unwrap();
    let batch = &v.golden.batch;
    let mut many = Vec::new();
    for i in 0..batch.batch_size {
        many.extend(golden_window(&batch.bars[i..i + w + 1], w).unwrap());
    }
    (one, many)
}

fn tract_runs(c: &mut Criterion) {
    for v in versions() {
        let (one, many) = inputs(&v);
        let mut states = v.plans.spawn_states().unwrap();
        let mut group = c.benchmark_group(format!("tract/{}", v.model.version()));
        group.bench_function("batch1", |b| {
            b.iter(|| v.plans.run(&mut states, &one, 1).unwrap())
        });
        group.sample_size(30);
        group.bench_function("batch64", |b| {
            b.iter(|| v.plans.run(&mut states, &many, 64).unwrap())
        });
        group.finish();
    }
}

/// A predictor over the committed models with `symbols` synthetic series in the bar cache
/// (no database or stock-data is touched by `forecast_many`).
struct Serving {
    runtime: tokio::runtime::Runtime,
    predictor: Arc<Predictor>,
    snapshots: Vec<Snapshot>,
}

fn serving(version: &str, symbols: usize, forecast_cache: bool) -> Serving {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let registry = mirai_platform::telemetry::Metrics::new();
    let metrics = Metrics::register(&registry);
    let models = Arc::new(ModelSet::new(
        models_dir().to_owned(),
        vec![1, 8, 64],
        BatchSettings {
            max_batch: 64,
            max_delay: Duration::from_micros(200),
            queue: 8192,
            workers: 1,
        },
        metrics.clone(),
    ));
    let predictor = runtime.block_on(async {
        models.refresh().await;
        let champion = ModelRef::parse("spx-lstm", version).unwrap();
        let traffic = Arc::new(TrafficState::new(TrafficView {
            traffic: Traffic::only(champion),
            revision: 1,
            updated_at: chrono::Utc::now(),
            updated_by: "bench".into(),
        }));
        let stock_data = Client::build(
            "stock-data",
            &ClientConfig::for_url("http://127.0.0.1:9", Duration::from_secs(1)),
            &mirai_platform::telemetry::Metrics::new(),
            &mirai_platform::grpc::Identity::for_tests("mirai-prediction").signer,
        );
        let bars = Arc::new(BarSource::new(
            stock_data.channel(),
            252,
            Duration::from_secs(24 * 3600),
            metrics.clone(),
        ));
        let pool = sqlx::postgres::PgPoolOptions::new()
            .connect_lazy("postgres://unused@127.0.0.1:9/unused")
            .unwrap();
        let (log, _writer) = PredictionLog::new(pool, 16);
        Arc::new(Predictor::new(
            models,
            traffic,
            bars,
            log,
            metrics,
            PredictorSettings {
                shadow_concurrency: 16,
                shadow_timeout: Duration::from_secs(5),
                forecast_cache,
            },
        ))
    });
    let mut snapshots = Vec::with_capacity(symbols);
    for i in 0..symbols {
        let symbol = Symbol::parse(&format!("B{i:04}")).unwrap();
        let series = synthetic(i as u64, 100);
        predictor.bars.prime(symbol.clone(), series, 1);
        snapshots.push(runtime.block_on(predictor.bars.latest(&symbol)).unwrap());
    }
    Serving {
        runtime,
        predictor,
        snapshots,
    }
}

fn synthetic(seed: u64, n: usize) -> Series {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let start = chrono::DateTime::parse_from_rfc3339("2021-01-04T14:30:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let mut close = 100.0;
    let bars = (0..n).map(|d| {
        let open = close * (1.0 + (next() - 0.5) * 0.01);
        close = open * (1.0 + (next() - 0.5) * 0.04);
        Bar::parse(
            start + chrono::Duration::days(d as i64),
            open,
            open.max(close) * 1.005,
            open.min(close) * 0.995,
            close,
            1e6 * (0.5 + next()),
        )
        .unwrap()
    });
    Series::new(bars, 252).unwrap()
}

impl Serving {
    fn served(&self) -> Arc<mirai_prediction::models::Served> {
        let champion = self.predictor.traffic.current().traffic.champion().clone();
        self.predictor.models.served(&champion).unwrap()
    }

    fn forecast(&self, snapshots: &[Snapshot]) {
        let served = self.served();
        let results = self.runtime.block_on(self.predictor.forecast_many(
            &served,
            Role::Champion,
            snapshots,
            Origin::Request,
            Instant::now(),
        ));
        assert!(results.iter().all(|r| r.is_ok()));
    }

    /// `n` single-symbol forecasts issued at once (as concurrent requests are).
    fn concurrent(&self, n: usize) {
        let served = self.served();
        self.runtime.block_on(async {
            let calls = self.snapshots[..n].iter().map(|s| {
                let (predictor, served, s) = (self.predictor.clone(), served.clone(), s.clone());
                tokio::spawn(async move {
                    predictor
                        .forecast_many(
                            &served,
                            Role::Champion,
                            &[s],
                            Origin::Request,
                            Instant::now(),
                        )
                        .await
                })
            });
            for call in futures::future::join_all(calls).await {
                assert!(call.unwrap().iter().all(|r| r.is_ok()));
            }
        });
    }
}

fn serving_path(c: &mut Criterion) {
    for version in ["1.0.0", "1.1.0"] {
        let cold = serving(version, 500, false);
        let warm = serving(version, 1, true);
        warm.forecast(&warm.snapshots[..1]);
        let mut group = c.benchmark_group(format!("serving/{version}"));
        group.bench_function("one_symbol", |b| {
            b.iter(|| cold.forecast(&cold.snapshots[..1]))
        });
        group.bench_function("one_symbol_cached", |b| {
            b.iter(|| warm.forecast(&warm.snapshots[..1]))
        });
        group.sample_size(20);
        group.bench_function("concurrent_64", |b| b.iter(|| cold.concurrent(64)));
        group.sample_size(10);
        group.bench_function("many_500", |b| b.iter(|| cold.forecast(&cold.snapshots)));
        group.finish();
    }
}

fn percentiles(mut samples: Vec<f64>, per_run: usize) -> serde_json::Value {
    samples.sort_by(f64::total_cmp);
    let pick = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize];
    let ms = |s: f64| (s * 1e7).round() / 1e4;
    json!({
        "runs": samples.len(),
        "p50_ms": ms(pick(0.5)),
        "p99_ms": ms(pick(0.99)),
        "mean_ms": ms(samples.iter().sum::<f64>() / samples.len() as f64),
        "min_ms": ms(samples[0]),
        "windows_per_s_at_p50": ((per_run as f64 / pick(0.5)) * 10.0).round() / 10.0,
    })
}

fn time(runs: usize, warmup: usize, mut f: impl FnMut()) -> Vec<f64> {
    for _ in 0..warmup {
        f();
    }
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect()
}

/// onnxruntime in this process, on one artifact: bench_ort.py's session settings.
struct Onnxruntime {
    session: ort::session::Session,
    input: String,
    window: i64,
    features: i64,
}

/// The onnxruntime environment over the library `ORT_DYLIB_PATH` names, if it is set.
fn onnxruntime_env() -> Option<&'static ort::environment::Environment> {
    static ENV: std::sync::OnceLock<Option<ort::environment::Environment>> =
        std::sync::OnceLock::new();
    ENV.get_or_init(|| {
        let path = std::env::var_os("ORT_DYLIB_PATH")?;
        let env = ort::init_from(&path)
            .unwrap_or_else(|e| panic!("loading onnxruntime from {path:?}: {e}"))
            .with_name("mirai-bench")
            .build()
            .expect("onnxruntime environment");
        Some(env)
    })
    .as_ref()
}

impl Onnxruntime {
    fn load(v: &Verified) -> Option<Self> {
        use ort::session::{Session, builder::GraphOptimizationLevel};
        let env = onnxruntime_env()?;
        let build = || -> ort::Result<Session> {
            Session::builder(env)?
                .with_optimization_level(GraphOptimizationLevel::All)?
                .with_intra_threads(1)?
                .with_inter_threads(1)?
                .with_parallel_execution(false)?
                .commit_from_file(models_dir().join(&v.entry.onnx))
        };
        let session = build().expect("onnxruntime session");
        Some(Self {
            session,
            input: v.card.input.name.clone(),
            window: v.card.window as i64,
            features: v.card.features.len() as i64,
        })
    }

    /// The model's output for `n` windows (the input is borrowed, as numpy's is by Python).
    fn run(&mut self, input: &[f32], n: usize) -> Vec<f32> {
        let shape = [n as i64, self.window, self.features];
        let tensor = ort::value::TensorRef::from_array_view((shape, input)).unwrap();
        let outputs = self
            .session
            .run(ort::inputs![self.input.as_str() => tensor])
            .unwrap();
        outputs[0].try_extract_tensor::<f32>().unwrap().1.to_vec()
    }
}

/// tract's plan and onnxruntime's session on the same `n` windows, alternating blocks of 50
/// runs (after `warmup` runs each): their p50/p99, the ratio tract / onnxruntime, and the
/// largest difference between their outputs.
fn side_by_side(
    v: &Verified,
    ort: Option<&mut Onnxruntime>,
    input: &[f32],
    n: usize,
    runs: usize,
    warmup: usize,
) -> serde_json::Value {
    let mut states = v.plans.spawn_states().unwrap();
    let mut tract = || v.plans.run(&mut states, input, n).unwrap();
    let Some(ort) = ort else {
        let samples = time(runs, warmup, || drop(tract()));
        return json!({"tract": percentiles(samples, n), "onnxruntime": null});
    };
    let largest_difference = tract()
        .iter()
        .zip(ort.run(input, n))
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    let (mut ours, mut theirs) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
    time(warmup, 0, || drop(tract()));
    time(warmup, 0, || drop(ort.run(input, n)));
    while ours.len() < runs {
        let block = 50.min(runs - ours.len());
        ours.extend(time(block, 0, || drop(tract())));
        theirs.extend(time(block, 0, || drop(ort.run(input, n))));
    }
    let (ours, theirs) = (percentiles(ours, n), percentiles(theirs, n));
    let ratio = |key: &str| {
        let r = ours[key].as_f64().unwrap() / theirs[key].as_f64().unwrap();
        (r * 100.0).round() / 100.0
    };
    json!({
        "tract": ours, "onnxruntime": theirs,
        "tract_over_onnxruntime": {"p50": ratio("p50_ms"), "p99": ratio("p99_ms")},
        "largest_output_difference": largest_difference,
    })
}

/// The side-by-side report (stdout, one JSON document).
fn report() {
    let runs: usize = std::env::var("MIRAI_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(2000);
    let mut results = Vec::new();
    for v in versions() {
        let (one, many) = inputs(&v);
        let mut ort = Onnxruntime::load(&v);
        let b1 = side_by_side(&v, ort.as_mut(), &one, 1, runs, 100);
        let b64 = side_by_side(&v, ort.as_mut(), &many, 64, (runs / 10).max(100), 20);
        let version = v.model.version().to_owned();
        let cold = serving(&version, 500, false);
        let warm = serving(&version, 1, true);
        let one_symbol = percentiles(time(runs, 100, || cold.forecast(&cold.snapshots[..1])), 1);
        let cached = percentiles(time(runs, 100, || warm.forecast(&warm.snapshots[..1])), 1);
        let concurrent = percentiles(time((runs / 20).max(50), 5, || cold.concurrent(64)), 64);
        let many500 = percentiles(
            time((runs / 100).max(20), 2, || cold.forecast(&cold.snapshots)),
            500,
        );
        let ort1 = b1["onnxruntime"].clone();
        let ratio = |serving: &serde_json::Value| {
            Some((serving["p50_ms"].as_f64()? / ort1["p50_ms"].as_f64()? * 100.0).round() / 100.0)
        };
        results.push(json!({
            "model": v.model.name(), "version": version, "sha256": v.sha256,
            "plan_costs_ms": v.plans.costs().iter().map(|c| (c * 1e7).round() / 1e4).collect::<Vec<_>>(),
            "batch1": b1,
            "batch64": b64,
            "serving": {
                "one_symbol": one_symbol,
                "one_symbol_forecast_cached": cached,
                "concurrent_64_single_symbol_requests": concurrent,
                "many_500_symbols": many500,
            },
            "serving_over_onnxruntime_batch1_p50": {
                "one_symbol": ratio(&one_symbol),
                "per_request_in_64_concurrent": ort1["p50_ms"].as_f64().map(|o| {
                    ((concurrent["p50_ms"].as_f64().unwrap() / 64.0) / o * 100.0).round() / 100.0
                }),
                "cached": ratio(&cached),
            },
        }));
    }
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let doc = json!({
        "runtime": "tract-onnx 0.23",
        "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
        "machine": {"cpu": cpu, "logical_cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)},
        "onnxruntime": std::env::var("ORT_DYLIB_PATH").ok(),
        "results": results,
    });
    println!("{}", serde_json::to_string_pretty(&doc).unwrap());
}

criterion_group!(benches, tract_runs, serving_path);

fn main() {
    if std::env::var_os("MIRAI_BENCH_REPORT_ONLY").is_none() {
        benches();
        Criterion::default().configure_from_args().final_summary();
    }
    report();
}
