//! The service's errors: the platform's one vocabulary ([`mirai_platform::error`]).

use uuid::Uuid;

pub use mirai_platform::error::ServiceError as Error;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An id from a request: a UUID, or `INVALID_ARGUMENT` naming the field.
pub fn parse_id(field: &'static str, raw: &str) -> Result<Uuid> {
    raw.parse()
        .map_err(|_| Error::invalid(field, "not a valid id"))
}
