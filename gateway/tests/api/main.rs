//! Integration tests of the gateway against the real services and PostgreSQL.

mod helpers;
mod local_stack;
mod readiness;
mod symbols;
