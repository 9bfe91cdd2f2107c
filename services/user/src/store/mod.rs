//! PostgreSQL: every SQL statement of the service, as functions over a pool, connection or
//! transaction (schema in `migrations/`). No decisions here: the callers make them.

pub mod api_keys;
pub mod audit;
pub mod deletion;
pub mod sessions;
pub mod throttle;
pub mod users;

use std::time::Duration;

fn interval(duration: Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX)
}
