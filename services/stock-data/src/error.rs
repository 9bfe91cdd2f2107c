//! The service's errors: the platform's one vocabulary ([`mirai_platform::error`]), and how the
//! domain's own errors join it.
//!
//! A database error converts with `?` (the platform's `From<sqlx::Error>`) where it cannot be a
//! missing row or a taken key; elsewhere [`db`] names what the statement was about, as
//! `mirai_platform::db::status(error, what)` did before.

use crate::domain::DomainError;

pub use mirai_platform::error::ServiceError as Error;

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<DomainError> for Error {
    fn from(error: DomainError) -> Self {
        match error {
            DomainError::Invalid { field, message } => Error::invalid(field, message),
            DomainError::Unsupported(message) => Error::FailedPrecondition(message),
        }
    }
}

/// A database error about `what`: a taken unique key is `ALREADY_EXISTS` ("`what` already
/// exists"), a missing row `NOT_FOUND` ("`what` not found"); anything else maps as the
/// platform maps every database error ([`mirai_platform::db::status`]).
pub fn db(what: &'static str) -> impl Fn(sqlx::Error) -> Error {
    move |error| match mirai_platform::db::code(&error) {
        tonic::Code::AlreadyExists => Error::AlreadyExists(format!("{what} already exists")),
        tonic::Code::NotFound => Error::not_found(what),
        _ => Error::Database(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`db`] answers exactly as `mirai_platform::db::status(error, what)` does.
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
            let ours = tonic::Status::from(db("symbol")(error));
            let platform = mirai_platform::db::status(expected, "symbol");
            assert_eq!(ours.code(), platform.code());
            assert_eq!(ours.message(), platform.message());
        }
    }

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
