//! The service's errors: the platform's one vocabulary ([`mirai_platform::error`]).

pub use mirai_platform::error::ServiceError as Error;

pub type Result<T, E = Error> = std::result::Result<T, E>;
