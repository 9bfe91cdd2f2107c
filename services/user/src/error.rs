//! The service's errors: the platform's one vocabulary ([`mirai_platform::error`]).
//!
//! A database error converts with `?` (the platform's `From<sqlx::Error>`) where it cannot be a
//! missing row or a taken key (beginning and committing transactions, reads that return an
//! `Option` or a `Vec`); elsewhere [`db`] names what the statement was about, so the caller
//! reads "account not found" or "API key with this name already exists" rather than
//! "record …".

pub use mirai_platform::error::ServiceError as Error;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The one answer for every failed credential check: unknown email, wrong password, unusable
/// refresh token or API key. Never says which.
pub fn bad_credentials() -> Error {
    Error::Unauthenticated("invalid credentials".into())
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
            let ours = tonic::Status::from(db("account")(error));
            let platform = mirai_platform::db::status(expected, "account");
            assert_eq!(ours.code(), platform.code());
            assert_eq!(ours.message(), platform.message());
        }
        let status = tonic::Status::from(db("account")(sqlx::Error::RowNotFound));
        assert_eq!(status.message(), "account not found");
    }
}
