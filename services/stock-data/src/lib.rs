//! `mirai-stock-data`: Symbols, OHLCV bars, quotes, bulk import and live collection, data quality, the tracked-symbol set and quote streaming.
//!
//! # Layout
//! - `config`: configuration from the environment (see the README's table).
//! - `startup`: assembles the service on [`mirai_platform::app::ServiceApp`].
//! - `grpc`: the tonic implementation of `StockDataService` (translation only); `symbols`:
//!   symbol values, validation and storage; `bars`: OHLCV storage, the sample loader, range queries with aggregation; `import`: bulk CSV/NDJSON
//!   import through `COPY`; `replay`: the replay feed (history played forward as live events);
//!   `quotes`: the in-memory latest-quote cache.
//! - `calendar`: exchange trading calendars (NYSE holidays, special closures, early closes).
//! - `quality`: data-quality checks on every ingest, findings, coalesced events, the report.
//! - `tracking`: the tracked-symbol set and the alert-activation saga participant.
//! - `ingest`: the live ingest path (vendor bars and prices → storage, checks, quotes, events).
//! - `vendor`: live vendor adapters (`vendor::alpaca`).
//! - `freshness`: the age of each tracked symbol's newest bar, as a gauge.
//! - `migrations/`: the service's schema, versions from 1000 up.

pub mod bars;
pub mod calendar;
pub mod config;
pub mod domain;
pub mod error;
pub mod freshness;
pub mod grpc;
pub mod import;
pub mod ingest;
pub mod quality;
pub mod quotes;
pub mod replay;
pub mod startup;
pub mod store;
pub mod symbols;
pub mod tracking;
pub mod vendor;

/// `ce-source` of the events this service publishes.
pub const SERVICE: &str = "stock-data";
