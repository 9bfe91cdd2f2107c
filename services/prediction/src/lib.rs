//! `mirai-prediction`: The model registry, ONNX LSTM inference with tract, champion/challenger/shadow traffic, prediction history and live accuracy scoring.
//!
//! # Layout
//! - `config`: configuration from the environment (see the README's table).
//! - `startup`: assembles the service on [`mirai_platform::app::ServiceApp`].
//! - `migrations/` (when the service owns tables): its schema, versions from 1000 up.

pub mod config;
pub mod startup;
