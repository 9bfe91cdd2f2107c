//! `mirai-notification`: price and forecast alerts, in-app/email/webhook/push delivery,
//! preferences, and the public price-alerts topic.
//!
//! # Layout
//! - `config`: configuration from the environment (see the README's table).
//! - `startup`: assembles the service on [`mirai_platform::app::ServiceApp`]; `context`: the
//!   state its handlers share.
//! - `grpc`: the gRPC API (the caller, translation, one call, the error's `Status`; no rules).
//! - `alerts`, `webhooks`, `devices`, `inbox`, `deliveries`, `preferences`: what the RPCs do —
//!   alerts, webhook endpoints, push devices, in-app notifications and streams, the delivery log
//!   (list, resend), preferences and email verification links.
//! - `domain`: conditions and their state machines, alert rules, templates, preferences, time
//!   rules, webhook targets — no I/O.
//! - `store`: every SQL statement of the service (sqlx), one module per table group.
//! - `events`: which handler each consumed event reaches.
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
pub mod alerts;
pub mod config;
pub mod context;
pub mod deliver;
pub mod deliveries;
pub mod devices;
pub mod domain;
pub mod error;
pub mod evaluate;
pub mod events;
pub mod grpc;
pub mod inbox;
pub mod notify;
pub mod preferences;
pub mod public;
pub mod saga;
pub mod secrets;
pub mod startup;
pub mod store;
pub mod stream;
pub mod symbols;
pub mod system;
pub mod verify;
pub mod webhooks;

/// The `ce-source` name of this service (and its name in the deletion saga).
pub const SERVICE: &str = "notification";
