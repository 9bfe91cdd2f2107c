//! Model artifacts on disk (`registry.json`, and per version `model.onnx`, `card.json`,
//! `golden.json`, written by `scripts/train/`) and their verification before a version may
//! serve.
//!
//! [`load`] refuses a version, with an error naming the file and the mismatch, unless:
//! 1. the sha256 of `model.onnx` equals the registry's and the card's (and the card's and the
//!    golden file's equal the registry's), so what was trained and checked is what runs;
//! 2. the graph has one f32 input named as the card says with shape `[batch, window, 5]`
//!    (symbolic batch) and one output `[batch, levels]`, and its metadata `mirai.model`,
//!    `mirai.version`, `mirai.window` equal the card's;
//! 3. tract builds an optimised plan for every pinned batch size;
//! 4. the golden vectors reproduce: features computed here from the raw golden bars, and the
//!    outputs of every case at batch 1 and of the 64-window batch case, within the card's
//!    tolerance (1e-5) — which doubles as the warm-up: every plan has run before the version
//!    reports READY.
//!
//! The bytes that are hashed are the bytes that are parsed, so a file replaced between the two
//! steps cannot slip through.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::domain::features::{Bar, N_FEATURES, Series};
use crate::domain::model_ref::ModelRef;
use crate::domain::scoring::Levels;
use crate::inference::plan::{PlanError, Plans};

/// Why a version was refused.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// A file is missing or unreadable.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A JSON file does not have the expected structure.
    #[error("{path} is not a valid {what}: {error}")]
    Json {
        path: PathBuf,
        what: &'static str,
        error: String,
    },
    /// A file's sha256 differs from the registered one: tampered, truncated or replaced.
    #[error("sha256 mismatch for {path}: registered {expected}, found {actual}")]
    Checksum {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    /// The card, the registry and the graph disagree about the version's interface.
    #[error("{what}: expected {expected}, found {found}")]
    Mismatch {
        what: String,
        expected: String,
        found: String,
    },
    /// tract could not load, type or optimise the graph.
    #[error("the graph cannot be served: {0}")]
    Graph(String),
    /// The golden vectors do not reproduce.
    #[error("golden case {case}: {what} differs by {diff:e} (tolerance {tolerance:e})")]
    Golden {
        case: String,
        what: String,
        diff: f64,
        tolerance: f64,
    },
}

impl From<PlanError> for ArtifactError {
    fn from(error: PlanError) -> Self {
        Self::Graph(error.to_string())
    }
}

type Result<T, E = ArtifactError> = std::result::Result<T, E>;

// === registry.json ===

#[derive(Debug, Clone, Deserialize)]
pub struct RegistryFile {
    pub models: Vec<RegistryEntry>,
    pub champion: RefJson,
    #[serde(default)]
    pub challengers: Vec<RefJson>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RefJson {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RegistryEntry {
    pub name: String,
    pub version: String,
    pub onnx: String,
    pub sha256: String,
    pub card: String,
    pub card_sha256: String,
    pub golden: String,
    pub golden_sha256: String,
    pub window: usize,
    pub bars_needed: usize,
}

impl RegistryFile {
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join("registry.json");
        let bytes = read(&path)?;
        parse_json(&path, "model registry", &bytes)
    }
}

impl RegistryEntry {
    pub fn model(&self) -> Result<ModelRef> {
        ModelRef::parse(&self.name, &self.version).map_err(|e| ArtifactError::Mismatch {
            what: "registry entry".into(),
            expected: "a valid model reference".into(),
            found: e.to_string(),
        })
    }

    /// A cheap identity of the files as they are now: their sha256s. A version is reloaded
    /// only when this changes.
    pub fn fingerprint(&self, dir: &Path) -> Result<String> {
        let mut hasher = Sha256::new();
        for file in [&self.onnx, &self.card, &self.golden] {
            let path = dir.join(file);
            hasher.update(sha256_hex(&read(&path)?).as_bytes());
        }
        hasher.update(self.sha256.as_bytes());
        Ok(format!("{:x}", hasher.finalize()))
    }
}

// === card.json ===

/// The parts of `card.json` the service uses; the whole file is kept verbatim in `raw`.
#[derive(Debug, Clone, Deserialize)]
pub struct Card {
    pub name: String,
    pub version: String,
    pub description: String,
    pub onnx: CardOnnx,
    pub input: CardIo,
    pub output: CardIo,
    pub quantiles: Vec<f64>,
    pub interval: CardInterval,
    pub window: usize,
    pub bars_needed: usize,
    pub features: Vec<CardFeature>,
    pub target: String,
    pub data: CardData,
    pub splits: CardSplits,
    pub training: CardTraining,
    pub metrics: CardMetrics,
    #[serde(default)]
    pub verdict: Vec<String>,
    #[serde(skip)]
    pub raw: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CardOnnx {
    pub sha256: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CardIo {
    pub name: String,
    pub shape: Vec<serde_json::Value>,
    pub dtype: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CardInterval {
    pub lower: f64,
    pub upper: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CardFeature {
    pub name: String,
    pub formula: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CardData {
    pub sha256: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CardSplits {
    pub train: CardSplit,
    pub validation: CardSplit,
    pub test: CardSplit,
}

/// Target dates of a split, inclusive (`YYYY-MM-DD`).
#[derive(Debug, Clone, Deserialize)]
pub struct CardSplit {
    pub target_from: NaiveDate,
    pub target_to: NaiveDate,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CardTraining {
    pub seconds: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CardMetrics {
    pub test: CardPeriodMetrics,
    #[serde(default)]
    pub test_by_year: std::collections::BTreeMap<String, CardPeriodMetrics>,
}

/// One period's metrics as the card states them (model vs baseline pairs).
#[derive(Debug, Clone, Deserialize)]
pub struct CardPeriodMetrics {
    pub n: u64,
    pub mae: ModelVs<RandomWalk>,
    pub rmse: ModelVs<RandomWalk>,
    pub hit_rate: HitRate,
    pub pinball: ModelVs<Gaussian>,
    pub coverage_90: Coverage,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ModelVs<B> {
    pub model: f64,
    #[serde(flatten)]
    pub baseline: B,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RandomWalk {
    pub random_walk: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Gaussian {
    pub gaussian_rolling_vol: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HitRate {
    pub model: f64,
    pub always_up: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Coverage {
    pub model: f64,
    pub nominal: f64,
}

impl Card {
    fn read(path: &Path, bytes: &[u8]) -> Result<Self> {
        let mut card: Card = parse_json(path, "model card", bytes)?;
        card.raw = String::from_utf8_lossy(bytes).into_owned();
        Ok(card)
    }

    /// Statements of where the model does not beat a baseline (the card writes "NOT").
    pub fn limitations(&self) -> Vec<String> {
        self.verdict
            .iter()
            .filter(|line| line.contains("NOT"))
            .cloned()
            .collect()
    }
}

// === golden.json ===

#[derive(Debug, Clone, Deserialize)]
pub struct Golden {
    pub tolerance_abs: f64,
    pub cases: Vec<GoldenCase>,
    pub batch: GoldenBatch,
}

#[derive(Debug, Clone, Deserialize)]
pub struct GoldenCase {
    pub id: String,
    pub bars: Vec<GoldenBar>,
    pub features: Vec<Vec<f64>>,
    pub output: Vec<f64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct GoldenBatch {
    pub batch_size: usize,
    pub bars: Vec<GoldenBar>,
    pub outputs: Vec<Vec<f64>>,
}

/// A raw bar as the golden file holds it (a date, no time).
#[derive(Debug, Clone, Deserialize)]
pub struct GoldenBar {
    pub date: NaiveDate,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
}

impl GoldenBar {
    pub fn to_bar(&self) -> Result<Bar, crate::domain::features::BarError> {
        let start: DateTime<Utc> = self.date.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
        Bar::parse(
            start,
            self.open,
            self.high,
            self.low,
            self.close,
            self.volume,
        )
    }
}

impl Golden {
    fn read(path: &Path, bytes: &[u8]) -> Result<Self> {
        parse_json(path, "golden vector file", bytes)
    }
}

/// The model input of one golden window (`bars`, exactly `window + 1`), computed here.
pub fn golden_window(bars: &[GoldenBar], window: usize) -> Result<Vec<f32>, String> {
    let bars = bars
        .iter()
        .map(GoldenBar::to_bar)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let series = Series::new(bars, window + 1).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(window * N_FEATURES);
    series
        .window_into(window, &mut out)
        .ok_or_else(|| format!("fewer than {} bars", window + 1))?;
    Ok(out)
}

// === verification ===

/// A version that passed every check, with its optimised plans, warmed up.
pub struct Verified {
    pub model: ModelRef,
    pub entry: RegistryEntry,
    pub card: Card,
    pub levels: Levels,
    pub golden: Golden,
    pub plans: Arc<Plans>,
    /// sha256 of the ONNX bytes that were verified and are served.
    pub sha256: String,
    /// [`RegistryEntry::fingerprint`] of the files that were verified.
    pub fingerprint: String,
}

impl std::fmt::Debug for Verified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verified")
            .field("model", &self.model)
            .field("sha256", &self.sha256)
            .finish_non_exhaustive()
    }
}

/// Loads and verifies one registry entry (see the module documentation). Blocking: run it on
/// a blocking thread.
pub fn load(dir: &Path, entry: &RegistryEntry, batch_sizes: &[usize]) -> Result<Verified> {
    let model = entry.model()?;
    let onnx_path = dir.join(&entry.onnx);
    let card_path = dir.join(&entry.card);
    let golden_path = dir.join(&entry.golden);
    let onnx = read(&onnx_path)?;
    let card_bytes = read(&card_path)?;
    let golden_bytes = read(&golden_path)?;
    let sha256 = sha256_hex(&onnx);
    check_sum(&onnx_path, &entry.sha256, &sha256)?;
    check_sum(&card_path, &entry.card_sha256, &sha256_hex(&card_bytes))?;
    check_sum(
        &golden_path,
        &entry.golden_sha256,
        &sha256_hex(&golden_bytes),
    )?;
    let fingerprint = {
        let mut hasher = Sha256::new();
        for bytes in [&onnx, &card_bytes, &golden_bytes] {
            hasher.update(sha256_hex(bytes).as_bytes());
        }
        hasher.update(entry.sha256.as_bytes());
        format!("{:x}", hasher.finalize())
    };
    let card = Card::read(&card_path, &card_bytes)?;
    check_sum(&onnx_path, &card.onnx.sha256, &sha256)?;
    check_card(&model, entry, &card)?;
    let levels =
        Levels::parse(&card.quantiles, card.interval.lower, card.interval.upper).map_err(|e| {
            ArtifactError::Mismatch {
                what: format!("{}: quantiles", card_path.display()),
                expected: "ascending levels with a median and the interval's ends".into(),
                found: e.to_string(),
            }
        })?;
    let golden = Golden::read(&golden_path, &golden_bytes)?;

    let plans = Plans::build(
        &onnx,
        &crate::inference::plan::Interface {
            input: card.input.name.clone(),
            output: card.output.name.clone(),
            window: card.window,
            features: N_FEATURES,
            outputs: card.quantiles.len(),
            metadata: vec![
                ("mirai.model", card.name.clone()),
                ("mirai.version", card.version.clone()),
                ("mirai.window", card.window.to_string()),
            ],
        },
        batch_sizes,
    )?;
    let plans = Arc::new(plans);
    check_golden(&golden, &plans, card.window)?;
    Ok(Verified {
        model,
        entry: entry.clone(),
        card,
        levels,
        golden,
        plans,
        sha256,
        fingerprint,
    })
}

fn check_card(model: &ModelRef, entry: &RegistryEntry, card: &Card) -> Result<()> {
    let mismatch = |what: &str, expected: String, found: String| -> Result<()> {
        if expected == found {
            Ok(())
        } else {
            Err(ArtifactError::Mismatch {
                what: format!("{model}: {what}"),
                expected,
                found,
            })
        }
    };
    mismatch("card name", entry.name.clone(), card.name.clone())?;
    mismatch("card version", entry.version.clone(), card.version.clone())?;
    mismatch(
        "card window",
        entry.window.to_string(),
        card.window.to_string(),
    )?;
    mismatch(
        "bars needed",
        (card.window + 1).to_string(),
        card.bars_needed.to_string(),
    )?;
    mismatch(
        "registry bars needed",
        card.bars_needed.to_string(),
        entry.bars_needed.to_string(),
    )?;
    let names: Vec<&str> = card.features.iter().map(|f| f.name.as_str()).collect();
    mismatch(
        "card features",
        crate::domain::features::FEATURE_NAMES.join(","),
        names.join(","),
    )?;
    mismatch("input dtype", "float32".into(), card.input.dtype.clone())?;
    mismatch("output dtype", "float32".into(), card.output.dtype.clone())?;
    let shape = |dims: &[serde_json::Value]| -> String {
        dims.iter()
            .map(|d| match d {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    mismatch(
        "card input shape",
        format!("batch,{},{N_FEATURES}", card.window),
        shape(&card.input.shape),
    )?;
    mismatch(
        "card output shape",
        format!("batch,{}", card.quantiles.len()),
        shape(&card.output.shape),
    )?;
    Ok(())
}

/// Features and outputs of every golden case, and the batch case, within tolerance.
fn check_golden(golden: &Golden, plans: &Plans, window: usize) -> Result<()> {
    let tolerance = golden.tolerance_abs;
    let golden_err = |case: &str, what: String, diff: f64| ArtifactError::Golden {
        case: case.to_owned(),
        what,
        diff,
        tolerance,
    };
    let mut states = plans.spawn_states()?;
    for case in &golden.cases {
        let input = golden_window(&case.bars, window)
            .map_err(|e| golden_err(&case.id, format!("bars ({e})"), f64::INFINITY))?;
        let expected: Vec<f64> = case.features.iter().flatten().copied().collect();
        if expected.len() != input.len() {
            return Err(golden_err(
                &case.id,
                format!("feature count {} vs {}", input.len(), expected.len()),
                f64::INFINITY,
            ));
        }
        let diff = max_diff(
            input.iter().map(|v| f64::from(*v)),
            expected.iter().copied(),
        );
        if !within(diff, tolerance) {
            return Err(golden_err(&case.id, "features".into(), diff));
        }
        let output = plans.run(&mut states, &input, 1)?;
        let diff = max_diff(
            output.iter().map(|v| f64::from(*v)),
            case.output.iter().copied(),
        );
        if !within(diff, tolerance) || output.len() != case.output.len() {
            return Err(golden_err(&case.id, "outputs at batch 1".into(), diff));
        }
    }
    let batch = &golden.batch;
    let mut input = Vec::with_capacity(batch.batch_size * window * N_FEATURES);
    for i in 0..batch.batch_size {
        let end = i + window + 1;
        let bars = batch.bars.get(i..end).ok_or_else(|| {
            golden_err("batch", "too few bars for the batch".into(), f64::INFINITY)
        })?;
        input.extend(
            golden_window(bars, window)
                .map_err(|e| golden_err("batch", format!("bars ({e})"), f64::INFINITY))?,
        );
    }
    let output = plans.run(&mut states, &input, batch.batch_size)?;
    let expected: Vec<f64> = batch.outputs.iter().flatten().copied().collect();
    let diff = max_diff(
        output.iter().map(|v| f64::from(*v)),
        expected.iter().copied(),
    );
    if !within(diff, tolerance) || output.len() != expected.len() {
        return Err(golden_err(
            "batch",
            format!("outputs at batch {}", batch.batch_size),
            diff,
        ));
    }
    Ok(())
}

/// `diff` is a number no larger than `tolerance` (NaN is not).
fn within(diff: f64, tolerance: f64) -> bool {
    diff <= tolerance
}

/// Largest absolute difference (infinite when the lengths differ).
pub fn max_diff(
    a: impl ExactSizeIterator<Item = f64>,
    b: impl ExactSizeIterator<Item = f64>,
) -> f64 {
    if a.len() != b.len() {
        return f64::INFINITY;
    }
    a.zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

// === helpers ===

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| ArtifactError::Io {
        path: path.to_owned(),
        source,
    })
}

fn parse_json<T: serde::de::DeserializeOwned>(
    path: &Path,
    what: &'static str,
    bytes: &[u8],
) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| ArtifactError::Json {
        path: path.to_owned(),
        what,
        error: e.to_string(),
    })
}

/// Lower-case hex sha256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

fn check_sum(path: &Path, expected: &str, actual: &str) -> Result<()> {
    if expected.eq_ignore_ascii_case(actual) {
        Ok(())
    } else {
        Err(ArtifactError::Checksum {
            path: path.to_owned(),
            expected: expected.to_owned(),
            actual: actual.to_owned(),
        })
    }
}
