//! `mirai-analytics`: its own read model of bars, technical indicators, risk and performance
//! statistics, trends, and report jobs with charts.
//!
//! # Layout
//! - `config`: configuration from the environment (see the README's table); `startup`:
//!   assembles the service on [`mirai_platform::app::ServiceApp`]; `error`: errors and their
//!   gRPC statuses.
//! - `grpc`: the gRPC API (translation only); `domain`: request values that parse, bars.
//! - `events`: the bar read model's handler (`stock.bar.closed`) and the deletion saga;
//!   `symbols`: the symbol read model; `backfill`: reading bars from stock-data.
//! - `store`: the bar read model and report jobs in PostgreSQL.
//! - `analysis`: indicator requests, statistics and trends over bars (no I/O).
//! - `indicators`, `stats`: the numerics (TA-Lib indicators, empyrical statistics), pure
//!   functions over slices checked against reference vectors in `tests/reference/`.
//! - `reports`: report jobs: content, rendering (JSON, CSV, PNG, SVG) and the worker.
//! - `migrations/`: its schema, versions from 1000 up.

pub mod analysis;
pub mod backfill;
pub mod config;
pub mod domain;
pub mod error;
pub mod events;
pub mod grpc;
pub mod indicators;
pub mod reports;
pub mod startup;
pub mod stats;
pub mod store;
pub mod symbols;

/// The saga participant name (its `ce-source`, and its entry in the user service's list).
pub const SERVICE: &str = "analytics";
