//! PostgreSQL access: every statement of the service, as functions taking a pool, a connection
//! or a transaction. Rules stay with the callers; the values are in [`crate::domain`].

pub mod bars;
pub mod import;
pub mod symbols;
pub mod tracking;
