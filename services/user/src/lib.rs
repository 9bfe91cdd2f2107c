//! `mirai-user`: Accounts, Argon2id credentials, JWT access tokens and JWKS, rotating refresh-token families, roles (RBAC), API keys and the security audit log.
//!
//! # Layout
//! - `config`: configuration from the environment (see the README's table).
//! - `startup`: assembles the service on [`mirai_platform::app::ServiceApp`]; `context`: what
//!   the handlers share (pool, auth settings, hasher, key ring, token issuer).
//! - `grpc`: the tonic implementation of `UserService` (caller checks and translation only);
//!   `principal`: who is calling and the role checks made with it; `error`: the platform's
//!   error vocabulary as this service uses it.
//! - `sessions`: registration, login, refresh, logout, password changes, introspection;
//!   `lockout`: brute-force admission, lockouts and unlock links; `profile`: the profile;
//!   `api_keys`: personal API keys; `admin`: roles, account listing, admin unlock, the audit
//!   log; `discovery`: the JWKS and the discovery document.
//! - `domain/`: email, password policy, profile and role values (no I/O); `password`: Argon2id
//!   on blocking threads; `keys`: the Ed25519 key ring, JWKS and rotation; `tokens`: access
//!   tokens and opaque secrets.
//! - `store/`: every SQL statement — accounts (`users`), refresh-token families (`sessions`),
//!   brute-force counters and unlock links (`throttle`), API keys (`api_keys`), the security
//!   audit log (`audit`), the deletion saga's rows and the erasure (`deletion`).
//! - `deletion`: the user side of the account-deletion saga; `events`: the saga's consumers.
//! - `migrations/`: its schema, versions from 1000 up. `data/`: the common-password list.

pub mod admin;
pub mod api_keys;
pub mod config;
pub mod context;
pub mod deletion;
pub mod discovery;
pub mod domain;
pub mod error;
pub mod events;
pub mod grpc;
pub mod keys;
pub mod lockout;
pub mod password;
pub mod principal;
pub mod profile;
pub mod sessions;
pub mod startup;
pub mod store;
pub mod tokens;

/// `ce-source` of the events this service publishes.
pub const SERVICE: &str = "user";
