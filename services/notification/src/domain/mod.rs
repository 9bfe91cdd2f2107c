//! Types and rules with no I/O: conditions and their state machines, alert rules and
//! frequencies, message templates, time rules (bars, quiet hours, digests) and webhook
//! targets (SSRF checks).

pub mod alert;
pub mod condition;
pub mod preferences;
pub mod schedule;
pub mod target;
pub mod template;
