//! The service's errors: the platform's one vocabulary ([`mirai_platform::error`]), and how the
//! domain's own errors join it.
//!
//! A database error converts with `?` (the platform's `From<sqlx::Error>`) where it cannot be a
//! missing row or a taken key; elsewhere [`db`] names what the statement was about, as
//! `mirai_platform::db::status(error, what)` did before.

use crate::domain::DomainError;

pub use mirai_platform::error::{ServiceError as Error, db};

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<DomainError> for Error {
    fn from(error: DomainError) -> Self {
        match error {
            DomainError::Invalid { field, message } => Error::invalid(field, message),
            DomainError::Unsupported(message) => Error::FailedPrecondition(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_errors_keep_their_field_and_code() {
        let status = tonic::Status::from(Error::from(DomainError::invalid("symbol", "bad")));
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(status.message(), "symbol: bad");
        let status = tonic::Status::from(Error::from(DomainError::Unsupported("raw only".into())));
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);
        assert_eq!(status.message(), "raw only");
    }
}
