//! Account values that parse rather than validate: once one exists it is valid. No I/O here.
//!
//! - `email`: normalised email addresses;
//! - `password_policy`: what a new password must be (hashing is [`crate::password`]);
//! - `profile`: display name, time zone, locale, watchlist;
//! - `role`: role names and their wire values;
//! - [`user_id`]: an account id in a request.

pub mod email;
pub mod password_policy;
pub mod profile;
pub mod role;

use uuid::Uuid;

use crate::error::{Error, Result};

/// An account id named in the request field `field`.
pub fn user_id(raw: &str, field: &str) -> Result<Uuid> {
    Uuid::parse_str(raw.trim())
        .map_err(|_| Error::invalid(field.to_owned(), "not a user id (UUID)"))
}
