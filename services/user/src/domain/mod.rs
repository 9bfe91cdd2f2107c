//! Account values that parse rather than validate: once one exists it is valid. No I/O here.
//!
//! - `email`: normalised email addresses;
//! - `password_policy`: what a new password must be (hashing is [`crate::password`]);
//! - `profile`: display name, time zone, locale, watchlist;
//! - `role`: role names and their wire values.

pub mod email;
pub mod password_policy;
pub mod profile;
pub mod role;
