//! `mirai-analytics`: Its own read model of bars, technical indicators, risk and performance statistics, trends, and report jobs with charts.
//!
//! # Layout
//! - `config`: configuration from the environment (see the README's table).
//! - `startup`: assembles the service on [`mirai_platform::app::ServiceApp`].
//! - `api`: the gRPC API; `symbols`: the symbol read model fed by stock-data's events.
//! - `indicators`, `stats`: the numerics (TA-Lib indicators, empyrical statistics), pure
//!   functions over slices checked against reference vectors in `tests/reference/`.
//! - `migrations/` (when the service owns tables): its schema, versions from 1000 up.

pub mod api;
pub mod config;
pub mod indicators;
pub mod startup;
pub mod stats;
pub mod symbols;
