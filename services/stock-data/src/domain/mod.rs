//! Request values that parse themselves, and the rules they carry. No I/O.
//!
//! Each `parse` names the request field it read, so a value that does not parse goes back to
//! the caller as `INVALID_ARGUMENT` with that field ([`DomainError`]).
//!
//! - `ticker`: [`Ticker`]; `symbol`: a symbol to list ([`NewSymbol`]), asset types, the
//!   search filters ([`Search`]).
//! - `bars`: the exchange table (time zones, sessions) and a `GetBars` request ([`bars::Query`]).
//! - `tracking`: a tracking reference ([`Reference`]).
//! - `import`: the options of a bulk import ([`import::Options`]).
//! - `quality`: a `GetQualityReport` request ([`quality::ReportQuery`]).

pub mod bars;
pub mod import;
pub mod quality;
pub mod symbol;
pub mod ticker;
pub mod tracking;

pub use symbol::{NewSymbol, Search};
pub use ticker::Ticker;
pub use tracking::Reference;

/// A request that does not parse, or asks for what this service cannot give.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// A field is malformed (`INVALID_ARGUMENT`).
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// The request is well-formed but asks for something not held, e.g. adjusted bars when
    /// only raw ones are stored (`FAILED_PRECONDITION`).
    #[error("{0}")]
    Unsupported(String),
}

impl DomainError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            message: message.into(),
        }
    }
}

/// The field and problem of a platform paging helper's `INVALID_ARGUMENT` ("`field`:
/// problem"), so a domain value can page with [`mirai_platform::wire`] and still answer in
/// domain errors.
fn paging(field: &'static str) -> impl Fn(tonic::Status) -> DomainError {
    move |status| {
        let message = status.message();
        let message = message
            .strip_prefix(field)
            .and_then(|m| m.strip_prefix(": "))
            .unwrap_or(message);
        DomainError::invalid(field, message)
    }
}

/// [`mirai_platform::wire::page_after`] in domain errors.
pub fn page_after(token: &str) -> Result<String, DomainError> {
    mirai_platform::wire::page_after(token).map_err(paging("page_token"))
}

/// [`mirai_platform::wire::page_size`] in domain errors.
pub fn page_size(requested: u32, default: u32, max: u32) -> Result<u32, DomainError> {
    mirai_platform::wire::page_size(requested, default, max).map_err(paging("page_size"))
}
