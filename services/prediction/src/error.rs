//! The service's errors and their gRPC statuses.

use crate::bars::BarsError;
use crate::domain::model_ref::{ModelRef, ModelRefError};
use crate::domain::symbol::SymbolError;
use crate::domain::traffic::TrafficError;
use crate::inference::engine::InferError;

/// Everything an RPC can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field is malformed; the client must fix it (`INVALID_ARGUMENT`).
    #[error("{field}: {message}")]
    InvalidArgument {
        field: &'static str,
        message: String,
    },
    /// A symbol or model that does not exist (`NOT_FOUND`).
    #[error("{0}")]
    NotFound(String),
    /// The request is valid but the state does not allow it: too few bars for the window, an
    /// unsupported timeframe, a version that is not READY, retiring the champion
    /// (`FAILED_PRECONDITION`).
    #[error("{0}")]
    FailedPrecondition(String),
    /// No version can serve right now, or stock-data is unreachable; retry later
    /// (`UNAVAILABLE`).
    #[error("{0}")]
    Unavailable(String),
    /// The inference queue is full; retry later (`RESOURCE_EXHAUSTED`).
    #[error("{0}")]
    Overloaded(String),
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

    pub fn not_ready(model: &ModelRef) -> Self {
        Self::FailedPrecondition(format!("{model} is not READY"))
    }

    /// The gRPC code number, for per-symbol failures of a batch.
    pub fn code(&self) -> tonic::Code {
        match self {
            Self::InvalidArgument { .. } => tonic::Code::InvalidArgument,
            Self::NotFound(_) => tonic::Code::NotFound,
            Self::FailedPrecondition(_) => tonic::Code::FailedPrecondition,
            Self::Unavailable(_) => tonic::Code::Unavailable,
            Self::Overloaded(_) => tonic::Code::ResourceExhausted,
            Self::PermissionDenied(_) => tonic::Code::PermissionDenied,
            Self::Database(_) | Self::Internal(_) => tonic::Code::Internal,
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
            Error::Unavailable(m) => tonic::Status::unavailable(m),
            Error::Overloaded(m) => tonic::Status::resource_exhausted(m),
            Error::PermissionDenied(m) => tonic::Status::permission_denied(m),
            Error::Database(e) => mirai_platform::db::status(e, "record"),
            Error::Internal(m) => mirai_platform::error::internal(m),
        }
    }
}

impl From<SymbolError> for Error {
    fn from(error: SymbolError) -> Self {
        Self::invalid("symbol", error)
    }
}

impl From<ModelRefError> for Error {
    fn from(error: ModelRefError) -> Self {
        Self::invalid("model", error)
    }
}

impl From<TrafficError> for Error {
    fn from(error: TrafficError) -> Self {
        match error {
            TrafficError::RetireChampion(_) => Self::FailedPrecondition(error.to_string()),
            other => Self::invalid("traffic", other),
        }
    }
}

impl From<BarsError> for Error {
    fn from(error: BarsError) -> Self {
        match error {
            BarsError::NotFound(_) => Self::NotFound(error.to_string()),
            BarsError::Invalid { .. } => Self::FailedPrecondition(error.to_string()),
            BarsError::Upstream(status) => match status.code() {
                tonic::Code::InvalidArgument => Self::invalid("symbol", status.message()),
                tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => Self::Unavailable(
                    format!("stock-data did not answer in time: {}", status.message()),
                ),
                tonic::Code::Unavailable => {
                    Self::Unavailable(format!("stock-data is unavailable: {}", status.message()))
                }
                _ => Self::Internal(format!("stock-data answered {status}")),
            },
        }
    }
}

impl From<InferError> for Error {
    fn from(error: InferError) -> Self {
        match error {
            InferError::QueueFull(_) => Self::Overloaded(error.to_string()),
            InferError::Stopped(_) => Self::Unavailable(error.to_string()),
            InferError::Failed(m) => Self::Internal(m),
        }
    }
}
