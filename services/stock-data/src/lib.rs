//! `mirai-stock-data`: Symbols, OHLCV bars, quotes, bulk import and live collection, data quality, the tracked-symbol set and quote streaming.
//!
//! # Layout
//! - `config`: configuration from the environment (see the README's table).
//! - `startup`: assembles the service on [`mirai_platform::app::ServiceApp`].
//! - `grpc`: the tonic implementation of `StockDataService` (translation only).
//! - `error`: the platform's one error vocabulary, and how domain errors join it.
//! - `domain/`: request values that parse themselves, without I/O — tickers, symbols to list
//!   and search filters, exchanges and `GetBars` queries, tracking references, import options,
//!   quality-report queries.
//! - `store/`: every SQL statement of the service; `migrations/`: the schema, versions from
//!   1000 up.
//! - `events`: the consumed events — the tracked-symbol set and the alert-activation saga
//!   participant, watchlists, the account-deletion purge.
//! - Operations: `symbols` (changing a listed symbol); `bars` (the sample loader, range
//!   queries with aggregation); `import` (bulk CSV/NDJSON import through `COPY`); `replay`
//!   (the replay feed: history played forward as live events); `ingest` (the live ingest path:
//!   vendor bars and prices → storage, checks, quotes, events); `freshness` (the age of each
//!   tracked symbol's newest bar, as a gauge).
//! - `quotes`: the in-memory latest-quote cache.
//! - `quality`: data-quality checks on every ingest (`checks`, `run`), findings, coalesced
//!   events, the report (`report`).
//! - `calendar`: exchange trading calendars (NYSE holidays, special closures, early closes).
//! - `vendor`: live vendor adapters (`vendor::alpaca`).

pub mod bars;
pub mod bars_cache;
pub mod calendar;
pub mod config;
pub mod domain;
pub mod error;
pub mod events;
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
pub mod vendor;

/// `ce-source` of the events this service publishes.
pub const SERVICE: &str = "stock-data";

/// For the unit tests: a fresh database with this service's schema.
#[cfg(test)]
pub(crate) mod test_db {
    use mirai_platform::testing::TestDatabase;
    use sqlx::PgPool;

    /// A new database named after `name`, migrated, and a pool on it (keep the
    /// [`TestDatabase`]: dropping it drops the database).
    pub async fn migrated(name: &str) -> (TestDatabase, PgPool) {
        let db = TestDatabase::create(name).await;
        let pool = PgPool::connect(db.url()).await.unwrap();
        mirai_platform::db::migrate(&pool, &crate::startup::MIGRATIONS)
            .await
            .unwrap();
        (db, pool)
    }

    /// [`migrated`], with the equity `ACME` listed on XNAS.
    pub async fn with_acme(name: &str) -> (TestDatabase, PgPool) {
        let (db, pool) = migrated(name).await;
        sqlx::query(
            "INSERT INTO symbols (symbol, name, exchange_mic, currency, asset_type)
             VALUES ('ACME', 'Acme', 'XNAS', 'USD', 'equity')",
        )
        .execute(&pool)
        .await
        .unwrap();
        (db, pool)
    }
}
