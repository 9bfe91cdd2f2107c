//! Request values that parse, and the bar type of the read model. No I/O.
//!
//! Each type's `parse`/`from_wire` names the request field it read, so an error goes back to
//! the caller as `INVALID_ARGUMENT` with that field ([`DomainError`]).

pub mod bar;
pub mod range;
pub mod symbol;

pub use bar::{Bar, BarSeries, Timeframe};
pub use range::Range;
pub use symbol::Symbol;

/// A request value that does not parse: the field at fault and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct DomainError {
    pub field: &'static str,
    pub message: String,
}

impl DomainError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}
