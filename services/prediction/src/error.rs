//! The service's errors: the platform's one vocabulary ([`mirai_platform::error`]), and how the
//! domain's own errors join it.

use crate::bars::BarsError;
use crate::domain::model_ref::{ModelRef, ModelRefError};
use crate::domain::symbol::SymbolError;
use crate::domain::traffic::TrafficError;
use crate::inference::engine::InferError;

pub use mirai_platform::error::ServiceError as Error;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A version asked for by name that cannot serve (`FAILED_PRECONDITION`).
pub fn not_ready(model: &ModelRef) -> Error {
    Error::FailedPrecondition(format!("{model} is not READY"))
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
            InferError::QueueFull(_) => Self::ResourceExhausted(error.to_string()),
            InferError::Stopped(_) => Self::Unavailable(error.to_string()),
            InferError::Failed(m) => Self::Internal(m),
        }
    }
}
