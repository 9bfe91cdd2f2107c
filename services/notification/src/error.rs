//! The service's error type and its mapping to gRPC statuses.

use mirai_platform::db;

/// What an RPC can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed; the message names the field (`INVALID_ARGUMENT`).
    #[error("{field}: {problem}")]
    Invalid { field: String, problem: String },
    /// The object does not exist or belongs to someone else — both look the same
    /// (`NOT_FOUND`).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A per-role limit is reached (`RESOURCE_EXHAUSTED`).
    #[error("{0}")]
    Limit(String),
    /// The object's state does not allow the change (`FAILED_PRECONDITION`).
    #[error("{0}")]
    Precondition(String),
    /// The caller may not act for the user named in the request (`PERMISSION_DENIED`).
    #[error("{0}")]
    Forbidden(String),
    /// A database error: unavailable is retryable, anything else is internal.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// Anything else unexpected (logged, never shown).
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub fn invalid(field: &str, problem: impl std::fmt::Display) -> Error {
    Error::Invalid {
        field: field.to_owned(),
        problem: problem.to_string(),
    }
}

impl From<Error> for tonic::Status {
    fn from(error: Error) -> Self {
        match error {
            Error::Invalid { field, problem } => {
                mirai_platform::error::invalid_argument(&field, problem)
            }
            Error::NotFound(what) => tonic::Status::not_found(format!("{what} not found")),
            Error::Limit(m) => tonic::Status::resource_exhausted(m),
            Error::Precondition(m) => tonic::Status::failed_precondition(m),
            Error::Forbidden(m) => tonic::Status::permission_denied(m),
            Error::Database(e) => db::status(e, "object"),
            Error::Internal(e) => mirai_platform::error::internal(format!("{e:#}")),
        }
    }
}
