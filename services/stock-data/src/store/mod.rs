//! PostgreSQL access: every statement of the service, as functions taking a pool, a connection
//! or a transaction. Rules stay with the callers; the values are in [`crate::domain`].

pub mod bars;
pub mod freshness;
pub mod import;
pub mod ingest;
pub mod quality;
pub mod quotes;
pub mod replay;
pub mod symbols;
pub mod tracking;
