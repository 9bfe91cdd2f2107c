//! The service's errors: the platform's one vocabulary ([`mirai_platform::error`]), and how the
//! domain's own errors join it.

use crate::domain::DomainError;

pub use mirai_platform::error::ServiceError as Error;

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<DomainError> for Error {
    fn from(error: DomainError) -> Self {
        Error::invalid(error.field, error.message)
    }
}
