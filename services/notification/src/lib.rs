//! `mirai-notification`: Price and forecast alerts, in-app/email/webhook/push delivery, preferences, and the public price-alerts topic.
//!
//! # Layout
//! - `config`: configuration from the environment (see the README's table).
//! - `startup`: assembles the service on [`mirai_platform::app::ServiceApp`].
//! - `api`: the gRPC API; `symbols`: the symbol read model fed by stock-data's events.
//! - `migrations/` (when the service owns tables): its schema, versions from 1000 up.

pub mod api;
pub mod config;
pub mod startup;
pub mod symbols;
