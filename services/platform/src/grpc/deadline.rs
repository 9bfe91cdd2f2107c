//! The deadline of the call being handled.
//!
//! [`ServerLayer`](super::ServerLayer) reads the incoming deadline ([`incoming`]) and runs the
//! handler inside [`scope`]; outgoing calls made from that task ask [`remaining`] and send at
//! most that much downstream, so a deadline set by the gateway bounds the whole call tree.
//! Task-locals do not cross `tokio::spawn`: work spawned off the request path has no deadline,
//! on purpose.
//!
//! `grpc-timeout` is relative: it starts when the server *reads* the request. A request that
//! waited in a socket buffer — its server stopped (SIGSTOP, a long GC-like pause, a frozen VM)
//! or far behind — would get a fresh budget and run after its caller gave up, a write the
//! caller was told failed. So our clients also send the deadline as an absolute time
//! ([`DEADLINE_HEADER`]); a call read more than [`CLOCK_SKEW_ALLOWANCE`] after it is refused
//! with `DEADLINE_EXCEEDED` without running, and one read late but in time gets only what is
//! left. The allowance covers clocks that disagree (NTP-synced hosts agree to well under it).

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// Metadata carrying the caller's deadline as milliseconds since the Unix epoch.
pub const DEADLINE_HEADER: &str = "mirai-deadline";

/// How far the caller's clock may be behind this host's before a call is wrongly refused.
pub const CLOCK_SKEW_ALLOWANCE: Duration = Duration::from_millis(500);

tokio::task_local! {
    static DEADLINE: Instant;
}

/// Runs `fut` with `deadline` as the current call's deadline (no-op for `None`).
pub async fn scope<F: Future>(deadline: Option<Instant>, fut: F) -> F::Output {
    match deadline {
        Some(deadline) => DEADLINE.scope(deadline, fut).await,
        None => fut.await,
    }
}

/// Time left before the current call's deadline; `None` outside a call or without a deadline.
pub fn remaining() -> Option<Duration> {
    DEADLINE
        .try_with(|deadline| deadline.saturating_duration_since(Instant::now()))
        .ok()
}

/// The [`DEADLINE_HEADER`] value for a deadline `timeout` from now.
pub fn absolute(timeout: Duration) -> String {
    let at = SystemTime::now() + timeout;
    let millis = at
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    millis.to_string()
}

/// A call whose caller's deadline had passed when it was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expired {
    /// How long before the call was read the deadline passed.
    pub late_by: Duration,
}

impl Expired {
    pub fn status(self) -> tonic::Status {
        tonic::Status::deadline_exceeded(format!(
            "the caller's deadline passed {} ms before this call was read; it was not run",
            self.late_by.as_millis()
        ))
    }
}

/// The deadline of an incoming call from its headers: the earlier of `grpc-timeout` (from now)
/// and [`DEADLINE_HEADER`] (plus the allowance); `None` without either; [`Expired`] when the
/// absolute deadline is more than the allowance behind this host's clock. Unparsable values
/// are ignored, as gRPC ignores a bad `grpc-timeout`.
pub fn incoming(headers: &http::HeaderMap) -> Result<Option<Instant>, Expired> {
    let now = Instant::now();
    let relative = headers
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_grpc_timeout)
        .map(|timeout| now + timeout);
    let absolute = headers
        .get(DEADLINE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map(|millis| UNIX_EPOCH + Duration::from_millis(millis));
    let Some(absolute) = absolute else {
        return Ok(relative);
    };
    let local = match absolute.duration_since(SystemTime::now()) {
        Ok(left) => now + left + CLOCK_SKEW_ALLOWANCE,
        Err(passed) => {
            let late_by = passed.duration();
            if late_by > CLOCK_SKEW_ALLOWANCE {
                return Err(Expired { late_by });
            }
            now + (CLOCK_SKEW_ALLOWANCE - late_by)
        }
    };
    Ok(Some(relative.map_or(local, |relative| relative.min(local))))
}

/// Parses a `grpc-timeout` header value: up to 8 digits and a unit (`H M S m u n`).
///
/// ```
/// use std::time::Duration;
/// use mirai_platform::grpc::deadline::parse_grpc_timeout;
///
/// assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
/// assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
/// assert_eq!(parse_grpc_timeout("5 seconds"), None);
/// ```
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.checked_mul(3600)?),
        "M" => Duration::from_secs(amount.checked_mul(60)?),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit_and_rejects_garbage() {
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse_grpc_timeout("9n"), Some(Duration::from_nanos(9)));
        for bad in ["", "S", "10", "10x", "-1S", "123456789S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad}");
        }
    }

    fn headers(pairs: &[(&'static str, String)]) -> http::HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (http::HeaderName::from_static(k), v.parse().unwrap()))
            .collect()
    }

    fn unix_millis(offset_ms: i64) -> String {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        (now.as_millis() as i64 + offset_ms).to_string()
    }

    #[test]
    fn the_earlier_of_the_two_deadlines_holds() {
        let left = |h: &http::HeaderMap| {
            incoming(h)
                .unwrap()
                .map(|d| d.saturating_duration_since(Instant::now()))
        };
        assert_eq!(incoming(&headers(&[])), Ok(None));
        // Only the relative one: from now.
        let only_relative = left(&headers(&[("grpc-timeout", "3S".into())])).unwrap();
        assert!(
            only_relative > Duration::from_millis(2900),
            "{only_relative:?}"
        );
        // The absolute one is earlier (the call waited 2 s before it was read): what is left
        // of it, plus the allowance.
        let waited = left(&headers(&[
            ("grpc-timeout", "3S".into()),
            (DEADLINE_HEADER, unix_millis(1000)),
        ]))
        .unwrap();
        assert!(
            waited <= Duration::from_millis(1000) + CLOCK_SKEW_ALLOWANCE
                && waited > Duration::from_millis(1300),
            "{waited:?}"
        );
        // The relative one is earlier.
        let relative = left(&headers(&[
            ("grpc-timeout", "100m".into()),
            (DEADLINE_HEADER, unix_millis(60_000)),
        ]))
        .unwrap();
        assert!(relative <= Duration::from_millis(100), "{relative:?}");
        // Garbage in the absolute header is ignored, like a bad grpc-timeout.
        let garbage = left(&headers(&[
            ("grpc-timeout", "3S".into()),
            (DEADLINE_HEADER, "soon".into()),
        ]))
        .unwrap();
        assert!(garbage > Duration::from_millis(2900), "{garbage:?}");
    }

    #[test]
    fn a_call_read_after_its_deadline_is_expired_beyond_the_allowance_only() {
        // Passed, but within the allowance (a clock a little behind): what is left of it.
        let within = incoming(&headers(&[(DEADLINE_HEADER, unix_millis(-200))]))
            .unwrap()
            .unwrap()
            .saturating_duration_since(Instant::now());
        assert!(
            within <= CLOCK_SKEW_ALLOWANCE - Duration::from_millis(200),
            "{within:?}"
        );
        let Err(expired) = incoming(&headers(&[
            ("grpc-timeout", "5S".into()),
            (DEADLINE_HEADER, unix_millis(-15_000)),
        ])) else {
            panic!("a call read 15 s after its deadline is expired");
        };
        assert!(expired.late_by >= Duration::from_secs(15), "{expired:?}");
        assert_eq!(expired.status().code(), tonic::Code::DeadlineExceeded);
    }

    #[test]
    fn absolute_is_milliseconds_since_the_epoch() {
        let value: u128 = absolute(Duration::from_secs(2)).parse().unwrap();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis();
        assert!(
            (now + 1900..=now + 2000).contains(&value),
            "{value} vs {now}"
        );
    }

    #[tokio::test]
    async fn remaining_is_scoped_to_the_task() {
        assert_eq!(remaining(), None);
        let deadline = Instant::now() + Duration::from_secs(5);
        let left = scope(Some(deadline), async { remaining() }).await.unwrap();
        assert!(left <= Duration::from_secs(5) && left > Duration::from_secs(4));
        assert_eq!(remaining(), None);
    }
}
