//! `mirai-user`: Accounts, Argon2id credentials, JWT access tokens and JWKS, rotating refresh-token families, roles (RBAC), API keys and the security audit log.
//!
//! # Layout
//! - `config`: configuration from the environment (see the README's table).
//! - `startup`: assembles the service on [`mirai_platform::app::ServiceApp`].
//! - `migrations/` (when the service owns tables): its schema, versions from 1000 up.

pub mod config;
pub mod startup;
