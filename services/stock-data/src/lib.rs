//! `mirai-stock-data`: Symbols, OHLCV bars, quotes, bulk import and live collection, data quality, the tracked-symbol set and quote streaming.
//!
//! # Layout
//! - `config`: configuration from the environment (see the README's table).
//! - `startup`: assembles the service on [`mirai_platform::app::ServiceApp`].
//! - `migrations/` (when the service owns tables): its schema, versions from 1000 up.

pub mod config;
pub mod startup;
