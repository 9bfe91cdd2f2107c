//! `mirai-stock-data`: Symbols, OHLCV bars, quotes, bulk import and live collection, data quality, the tracked-symbol set and quote streaming.
//!
//! # Layout
//! - `config`: configuration from the environment (see the README's table).
//! - `startup`: assembles the service on [`mirai_platform::app::ServiceApp`].
//! - `api`: the gRPC API; `symbols`: symbol values, validation and storage; `bars`: OHLCV
//!   storage, the sample loader, range queries with aggregation; `import`: bulk CSV/NDJSON
//!   import through `COPY`; `replay`: the replay feed (history played forward as live events);
//!   `quotes`: the in-memory latest-quote cache.
//! - `migrations/` (when the service owns tables): its schema, versions from 1000 up.

pub mod api;
pub mod bars;
pub mod config;
pub mod import;
pub mod quotes;
pub mod replay;
pub mod startup;
pub mod symbols;

/// `ce-source` of the events this service publishes.
pub const SERVICE: &str = "stock-data";
