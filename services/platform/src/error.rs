//! The one error vocabulary of every service, and its one conversion to `tonic::Status`.
//!
//! A handler returns [`ServiceError`]: a [`Code`] from the short list below and a message meant
//! for the caller. Domain values that fail to parse convert into
//! [`ServiceError::InvalidArgument`] naming the field; database errors go through
//! [`crate::db::status`] (unique violation → `ALREADY_EXISTS`, lost connection →
//! `UNAVAILABLE`); anything unexpected is [`ServiceError::Internal`], whose detail is logged with
//! the trace id by [`internal`] and never shown — the caller gets only that trace id. The
//! gateway's problem table (`gateway/src/problem.rs`) has one entry per [`Code`].
//!
//! ```
//! use mirai_platform::error::ServiceError;
//!
//! fn parse_level(raw: &str) -> Result<f64, ServiceError> {
//!     raw.parse()
//!         .map_err(|_| ServiceError::invalid("condition.level", "not a number"))
//! }
//!
//! let status = tonic::Status::from(parse_level("high").unwrap_err());
//! assert_eq!(status.code(), tonic::Code::InvalidArgument);
//! assert_eq!(status.message(), "condition.level: not a number");
//!
//! // Internal details are logged, never shown to the caller.
//! let status = tonic::Status::from(ServiceError::from(anyhow::anyhow!("disk on fire")));
//! assert_eq!(status.code(), tonic::Code::Internal);
//! assert!(!status.message().contains("fire"));
//! ```

use std::borrow::Cow;
use std::fmt::Display;

/// What went wrong, as every service says it; each is exactly one gRPC code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// A request field is malformed; the message names the field.
    InvalidArgument,
    /// The object does not exist, or belongs to someone else (the two look the same).
    NotFound,
    /// The object exists already (a unique key taken).
    AlreadyExists,
    /// The request is valid but the state does not allow it.
    FailedPrecondition,
    /// The caller's credentials are missing or do not check out.
    Unauthenticated,
    /// The caller may not do this.
    PermissionDenied,
    /// A limit is reached (a per-user cap, a full queue); retry later or free something.
    ResourceExhausted,
    /// A dependency (database, upstream) cannot answer now; retry later.
    Unavailable,
    /// A defect; the detail is in the logs under the trace id.
    Internal,
}

impl Code {
    /// Every code, for tables that must cover them all.
    pub const ALL: [Code; 9] = [
        Code::InvalidArgument,
        Code::NotFound,
        Code::AlreadyExists,
        Code::FailedPrecondition,
        Code::Unauthenticated,
        Code::PermissionDenied,
        Code::ResourceExhausted,
        Code::Unavailable,
        Code::Internal,
    ];

    pub fn grpc(self) -> tonic::Code {
        match self {
            Code::InvalidArgument => tonic::Code::InvalidArgument,
            Code::NotFound => tonic::Code::NotFound,
            Code::AlreadyExists => tonic::Code::AlreadyExists,
            Code::FailedPrecondition => tonic::Code::FailedPrecondition,
            Code::Unauthenticated => tonic::Code::Unauthenticated,
            Code::PermissionDenied => tonic::Code::PermissionDenied,
            Code::ResourceExhausted => tonic::Code::ResourceExhausted,
            Code::Unavailable => tonic::Code::Unavailable,
            Code::Internal => tonic::Code::Internal,
        }
    }
}

/// Everything a service's RPC can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{field}: {message}")]
    InvalidArgument {
        field: Cow<'static, str>,
        message: String,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("{0}")]
    Unavailable(String),
    /// Mapped by [`crate::db::status`]: its code depends on the failure.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("{0}")]
    Internal(String),
}

impl ServiceError {
    /// `INVALID_ARGUMENT` naming the field.
    pub fn invalid(field: impl Into<Cow<'static, str>>, message: impl Display) -> Self {
        Self::InvalidArgument {
            field: field.into(),
            message: message.to_string(),
        }
    }

    /// `NOT_FOUND`: "`what` not found".
    pub fn not_found(what: impl Display) -> Self {
        Self::NotFound(format!("{what} not found"))
    }

    /// The code the caller sees (a database error's depends on the failure: see
    /// [`crate::db::status`]).
    pub fn code(&self) -> tonic::Code {
        match self {
            Self::InvalidArgument { .. } => Code::InvalidArgument.grpc(),
            Self::NotFound(_) => Code::NotFound.grpc(),
            Self::AlreadyExists(_) => Code::AlreadyExists.grpc(),
            Self::FailedPrecondition(_) => Code::FailedPrecondition.grpc(),
            Self::Unauthenticated(_) => Code::Unauthenticated.grpc(),
            Self::PermissionDenied(_) => Code::PermissionDenied.grpc(),
            Self::ResourceExhausted(_) => Code::ResourceExhausted.grpc(),
            Self::Unavailable(_) => Code::Unavailable.grpc(),
            Self::Database(e) => crate::db::code(e),
            Self::Internal(_) => Code::Internal.grpc(),
        }
    }

    /// An upstream service's failure: its client errors stay client errors (a symbol it does
    /// not know is `NOT_FOUND`); anything else — an outage, a timeout, its own defect — is
    /// `UNAVAILABLE` here: the call may succeed later.
    pub fn upstream(service: &str, status: &tonic::Status) -> Self {
        let message = status.message().to_owned();
        match status.code() {
            tonic::Code::InvalidArgument => Self::invalid("request", message),
            tonic::Code::NotFound => Self::NotFound(message),
            tonic::Code::PermissionDenied => Self::PermissionDenied(message),
            _ => Self::Unavailable(format!("{service}: {message}")),
        }
    }
}

impl From<anyhow::Error> for ServiceError {
    fn from(error: anyhow::Error) -> Self {
        Self::Internal(format!("{error:#}"))
    }
}

impl From<ServiceError> for tonic::Status {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::InvalidArgument { field, message } => invalid_argument(&field, message),
            ServiceError::NotFound(m) => tonic::Status::not_found(m),
            ServiceError::AlreadyExists(m) => tonic::Status::already_exists(m),
            ServiceError::FailedPrecondition(m) => tonic::Status::failed_precondition(m),
            ServiceError::Unauthenticated(m) => tonic::Status::unauthenticated(m),
            ServiceError::PermissionDenied(m) => tonic::Status::permission_denied(m),
            ServiceError::ResourceExhausted(m) => tonic::Status::resource_exhausted(m),
            ServiceError::Unavailable(m) => tonic::Status::unavailable(m),
            ServiceError::Database(e) => crate::db::status(e, "record"),
            ServiceError::Internal(m) => internal(m),
        }
    }
}

/// A database error about `what`: a taken unique key is `ALREADY_EXISTS` ("`what` already
/// exists"), a missing row `NOT_FOUND` ("`what` not found"); anything else maps as the
/// platform maps every database error ([`crate::db::status`]). For `map_err` where the
/// caller should read "account not found" rather than "record not found".
pub fn db(what: &'static str) -> impl Fn(sqlx::Error) -> ServiceError {
    move |error| match crate::db::code(&error) {
        tonic::Code::AlreadyExists => ServiceError::AlreadyExists(format!("{what} already exists")),
        tonic::Code::NotFound => ServiceError::not_found(what),
        _ => ServiceError::Database(error),
    }
}

/// An `INTERNAL` status for an unexpected error; the detail is logged, not returned.
pub fn internal(error: impl Display) -> tonic::Status {
    let trace_id = crate::telemetry::current_trace_id();
    tracing::error!(message = "Internal error.", error = %error, trace_id = trace_id.as_deref().unwrap_or(""));
    match trace_id {
        Some(id) => tonic::Status::internal(format!("internal error (trace {id})")),
        None => tonic::Status::internal("internal error"),
    }
}

/// An `INVALID_ARGUMENT` status naming the offending field.
pub fn invalid_argument(field: &str, problem: impl Display) -> tonic::Status {
    tonic::Status::invalid_argument(format!("{field}: {problem}"))
}

#[cfg(test)]
mod tests {
    /// [`db`] answers exactly as `crate::db::status(error, what)` does.
    #[test]
    fn a_database_error_names_what_it_was_about() {
        let cases = || {
            [
                sqlx::Error::RowNotFound,
                sqlx::Error::PoolTimedOut,
                sqlx::Error::PoolClosed,
                sqlx::Error::Protocol("password=hunter2".into()),
            ]
        };
        for (error, expected) in cases().into_iter().zip(cases()) {
            let ours = tonic::Status::from(super::db("account")(error));
            let platform = crate::db::status(expected, "account");
            assert_eq!(ours.code(), platform.code());
            assert_eq!(ours.message(), platform.message());
        }
        let status = tonic::Status::from(super::db("account")(sqlx::Error::RowNotFound));
        assert_eq!(status.message(), "account not found");
    }

    #[test]
    fn internal_hides_details() {
        let status = super::internal("password=hunter2 connection refused");
        assert_eq!(status.code(), tonic::Code::Internal);
        assert!(!status.message().contains("hunter2"));
    }

    #[test]
    fn invalid_argument_names_the_field() {
        let status = super::invalid_argument("symbol", "must be 1-10 characters");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(status.message(), "symbol: must be 1-10 characters");
    }

    #[test]
    fn every_error_converts_to_its_code_and_hides_internals() {
        use super::ServiceError as E;
        let cases = [
            (
                E::invalid("symbol", "must be 1-10 characters"),
                tonic::Code::InvalidArgument,
            ),
            (E::not_found("alert"), tonic::Code::NotFound),
            (E::AlreadyExists("x".into()), tonic::Code::AlreadyExists),
            (
                E::FailedPrecondition("x".into()),
                tonic::Code::FailedPrecondition,
            ),
            (E::Unauthenticated("x".into()), tonic::Code::Unauthenticated),
            (
                E::PermissionDenied("x".into()),
                tonic::Code::PermissionDenied,
            ),
            (
                E::ResourceExhausted("x".into()),
                tonic::Code::ResourceExhausted,
            ),
            (E::Unavailable("x".into()), tonic::Code::Unavailable),
            (E::Database(sqlx::Error::RowNotFound), tonic::Code::NotFound),
            (
                E::Database(sqlx::Error::PoolTimedOut),
                tonic::Code::Unavailable,
            ),
            (
                E::Internal("password=hunter2".into()),
                tonic::Code::Internal,
            ),
        ];
        for (error, code) in cases {
            assert_eq!(error.code(), code, "{error}");
            let status = tonic::Status::from(error);
            assert_eq!(status.code(), code);
            assert!(!status.message().contains("hunter2"));
        }
        let status = tonic::Status::from(E::invalid("symbol", "must be 1-10 characters"));
        assert_eq!(status.message(), "symbol: must be 1-10 characters");
        assert_eq!(E::not_found("alert").to_string(), "alert not found");
    }

    #[test]
    fn an_upstream_keeps_client_errors_and_turns_outages_into_unavailable() {
        use super::ServiceError as E;
        let from = |code| E::upstream("stock-data", &tonic::Status::new(code, "m")).code();
        assert_eq!(from(tonic::Code::NotFound), tonic::Code::NotFound);
        assert_eq!(
            from(tonic::Code::InvalidArgument),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            from(tonic::Code::DeadlineExceeded),
            tonic::Code::Unavailable
        );
        assert_eq!(from(tonic::Code::Unavailable), tonic::Code::Unavailable);
        assert_eq!(from(tonic::Code::Internal), tonic::Code::Unavailable);
        let codes: std::collections::HashSet<_> =
            super::Code::ALL.iter().map(|c| c.grpc()).collect();
        assert_eq!(codes.len(), super::Code::ALL.len(), "one gRPC code each");
    }
}
