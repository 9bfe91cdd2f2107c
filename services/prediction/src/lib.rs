//! `mirai-prediction`: the model registry, ONNX LSTM inference with tract, champion /
//! challenger / shadow traffic, prediction history and live accuracy scoring.
//!
//! # Layout
//! - `config`: configuration from the environment (see the README's table).
//! - `startup`: assembles the service on [`mirai_platform::app::ServiceApp`].
//! - `grpc`: the tonic implementation of `PredictionService` (translation only).
//! - `domain/`: rules without I/O — bars and features (`features`), forecasts in price units
//!   and P(up) (`forecast`), traffic routing (`traffic`), the scoring arithmetic (`scoring`),
//!   names (`model_ref`, `symbol`).
//! - `artifact`: registry.json, cards and golden vectors; verification of a version.
//! - `inference/`: tract plans per pinned batch size (`plan`), the micro-batching queue and
//!   worker pool (`engine`).
//! - `models`: the versions of this replica, their serving state, hot reload.
//! - `bars`: daily bars from stock-data, cached per symbol.
//! - `forecasting`: routing, forecasting, storing and shadow mirroring.
//! - `scoreboard`: scoring matured predictions, rolling scoreboards, degradation, promotion.
//! - `catalog`: models and versions as the API shows them (status, card, role, traffic).
//! - `history`: whose predictions a caller may list, and a stored prediction on the wire.
//! - `admin`: traffic changes, promotion, retirement.
//! - `events`: the bar loop and the other consumed events (deletion saga included).
//! - `store/`: PostgreSQL access; `migrations/`: the schema, versions from 1000 up.
//! - `metrics`: Prometheus families per model version.

pub mod admin;
pub mod artifact;
pub mod bars;
pub mod catalog;
pub mod config;
pub mod context;
pub mod domain;
pub mod error;
pub mod events;
pub mod forecasting;
pub mod grpc;
pub mod history;
pub mod inference;
pub mod metrics;
pub mod models;
pub mod scoreboard;
pub mod startup;
pub mod store;

/// `ce-source` of the events this service publishes, and its name in the deletion saga.
pub const SERVICE: &str = "prediction";
