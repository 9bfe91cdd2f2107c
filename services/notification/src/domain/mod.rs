//! Types and rules with no I/O: conditions and their state machines, alert rules and
//! frequencies, message templates, time rules (bars, quiet hours, digests) and webhook
//! targets (SSRF checks).

pub mod alert;
pub mod condition;
pub mod preferences;
pub mod schedule;
pub mod target;
pub mod template;

use std::time::Duration;

/// A protobuf duration as a std one; `None` when negative.
pub fn duration(d: &prost_types::Duration) -> Option<Duration> {
    (d.seconds >= 0 && d.nanos >= 0).then(|| Duration::new(d.seconds as u64, d.nanos as u32))
}
