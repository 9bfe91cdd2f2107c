//! `mirai-notification`: price and forecast alerts, in-app/email/webhook/push delivery,
//! preferences, and the public price-alerts topic.
//!
//! # Layout
//! - `config`: configuration from the environment (see the README's table).
//! - `startup`: assembles the service on [`mirai_platform::app::ServiceApp`]; `context`: the
//!   state its handlers share.
//! - `api`: the gRPC API (translation only).
//! - `domain`: conditions and their state machines, alert rules, templates, preferences, time
//!   rules, webhook targets — no I/O.
//! - `store`: every SQL statement of the service (sqlx), one module per table group.
//! - `evaluate`: the in-memory alert index and the evaluation of price, bar and forecast
//!   events; `notify`: the fan-out of one notification into deliveries; `public`: the public
//!   JSON CloudEvents; `saga`: the alert-activation saga and the sweeps; `system`: user,
//!   system, report and deletion-saga events; `account_mail`: security mail for account
//!   events (unlock links); `symbols`: the known-symbols read model.
//! - `deliver`: the delivery worker (webhook, email, push); `stream`: live in-app streams;
//!   `verify`: email address verification links; `secrets`: envelope encryption of webhook
//!   signing secrets.
//! - `migrations/`: the schema, versions from 1000 up.

pub mod account_mail;
pub mod api;
pub mod config;
pub mod context;
pub mod deliver;
pub mod domain;
pub mod error;
pub mod evaluate;
pub mod notify;
pub mod public;
pub mod saga;
pub mod secrets;
pub mod startup;
pub mod store;
pub mod stream;
pub mod symbols;
pub mod system;
pub mod verify;
