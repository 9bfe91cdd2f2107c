//! PostgreSQL access: the bar read model and the report jobs.

pub mod bars;
pub mod reports;
