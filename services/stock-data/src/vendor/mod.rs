//! Live market-data vendors. Each adapter turns a vendor's documented REST + WebSocket
//! format into [`crate::ingest::LiveBar`]s and prices and hands them to the one live ingest
//! path ([`crate::ingest::Ingest`]), so vendor data gets the same quality checks, storage,
//! quotes and events as every other source.

pub mod alpaca;

use std::time::Duration;

use rand::Rng as _;

/// Why a vendor call failed.
#[derive(Debug, thiserror::Error)]
pub enum VendorError {
    /// The connection or request failed (network, TLS, timeout); retried with backoff.
    #[error("transport: {0}")]
    Transport(String),
    /// The vendor answered with an error status or message (e.g. 403, or a stream error
    /// code such as 406 "connection limit exceeded").
    #[error("vendor refused: {code} {message}")]
    Refused { code: i64, message: String },
    /// The vendor said something outside its documented format.
    #[error("unexpected answer: {0}")]
    Protocol(String),
    /// Storing what arrived failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// Full jitter: a random delay in `[0, min(max, base·2^attempt)]` (AWS architecture blog,
/// "Exponential Backoff And Jitter"), so many clients reconnecting at once spread out.
pub fn backoff(base: Duration, max: Duration, attempt: u32) -> Duration {
    let cap = base
        .saturating_mul(2u32.saturating_pow(attempt.min(20)))
        .min(max);
    Duration::from_secs_f64(rand::rng().random_range(0.0..=cap.as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_and_grows() {
        let (base, max) = (Duration::from_millis(100), Duration::from_secs(2));
        for attempt in 0..30 {
            let cap = (base * 2u32.pow(attempt.min(5))).min(max);
            for _ in 0..20 {
                assert!(backoff(base, max, attempt) <= cap);
            }
        }
    }
}
