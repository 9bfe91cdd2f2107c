//! Integration tests of `mirai-user` against real PostgreSQL.

mirai_platform::service_conformance_tests!("mirai-user", mirai_user, "user");

mod admin;
mod helpers;
mod lockout;
mod sessions;
