//! The service's errors: the platform's one vocabulary ([`mirai_platform::error`]).
//!
//! A database error converts with `?` (the platform's `From<sqlx::Error>`) where it cannot be a
//! missing row or a taken key (beginning and committing transactions, reads that return an
//! `Option` or a `Vec`); elsewhere [`db`] names what the statement was about, so the caller
//! reads "account not found" or "API key with this name already exists" rather than
//! "record …".

pub use mirai_platform::error::{ServiceError as Error, db};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The one answer for every failed credential check: unknown email, wrong password, unusable
/// refresh token or API key. Never says which.
pub fn bad_credentials() -> Error {
    Error::Unauthenticated("invalid credentials".into())
}
