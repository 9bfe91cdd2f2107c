//! The service's errors and their gRPC statuses.

use crate::domain::DomainError;

/// Everything an RPC can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field is malformed or asks for something the data cannot give (an unknown
    /// indicator, a window longer than the data, an inverted range); the client must fix it
    /// (`INVALID_ARGUMENT`, the message names the field).
    #[error("{field}: {message}")]
    InvalidArgument {
        field: &'static str,
        message: String,
    },
    /// A symbol the read model holds no bars for, or a report that does not exist or belongs
    /// to someone else (`NOT_FOUND`: another user's report is indistinguishable from none).
    #[error("{0}")]
    NotFound(String),
    /// The request is valid but the state does not allow it, e.g. downloading a report that has
    /// not SUCCEEDED (`FAILED_PRECONDITION`).
    #[error("{0}")]
    FailedPrecondition(String),
    /// An upstream (stock-data, prediction) is unreachable or failed; retry later
    /// (`UNAVAILABLE`).
    #[error("{0}")]
    Unavailable(String),
    /// A per-user cap is reached, e.g. reports queued or stored (`RESOURCE_EXHAUSTED`).
    #[error("{0}")]
    ResourceExhausted(String),
    /// The caller may not do this (`PERMISSION_DENIED`).
    #[error("{0}")]
    PermissionDenied(String),
    /// A database failure (mapped by the platform's one helper).
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A defect or an unexpected upstream answer (`INTERNAL`, details only in the logs).
    #[error("{0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn invalid(field: &'static str, message: impl ToString) -> Self {
        Self::InvalidArgument {
            field,
            message: message.to_string(),
        }
    }

    /// An upstream's failure: its own client errors stay client errors (a symbol stock-data
    /// does not know is NOT_FOUND), anything else is UNAVAILABLE.
    pub fn upstream(service: &str, status: tonic::Status) -> Self {
        match status.code() {
            tonic::Code::NotFound => Self::NotFound(status.message().to_owned()),
            tonic::Code::InvalidArgument => Self::invalid("request", status.message()),
            tonic::Code::PermissionDenied => Self::PermissionDenied(status.message().to_owned()),
            _ => Self::Unavailable(format!("{service}: {}", status.message())),
        }
    }
}

impl From<DomainError> for Error {
    fn from(error: DomainError) -> Self {
        Self::InvalidArgument {
            field: error.field,
            message: error.message,
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(error: Error) -> Self {
        match error {
            Error::InvalidArgument { field, message } => {
                mirai_platform::error::invalid_argument(field, message)
            }
            Error::NotFound(m) => tonic::Status::not_found(m),
            Error::FailedPrecondition(m) => tonic::Status::failed_precondition(m),
            Error::ResourceExhausted(m) => tonic::Status::resource_exhausted(m),
            Error::Unavailable(m) => tonic::Status::unavailable(m),
            Error::PermissionDenied(m) => tonic::Status::permission_denied(m),
            Error::Database(e) => mirai_platform::db::status(e, "record"),
            Error::Internal(m) => mirai_platform::error::internal(m),
        }
    }
}
