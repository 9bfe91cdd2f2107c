//! PostgreSQL: the traffic configuration, stored predictions, scores, and the persistent part
//! of the registry (schema in `migrations/`).

pub mod predictions;
pub mod scores;
pub mod traffic;
pub mod versions;
