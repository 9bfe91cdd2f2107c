//! The event backbone: Google Cloud Pub/Sub with a transactional outbox and idempotent
//! consumers.
//!
//! - [`pubsub`]: the one place that builds Pub/Sub clients (emulator or Google Cloud).
//! - [`topology`]: every topic and subscription by name, and their provisioning.
//! - [`envelope`]: typed events ([`Event`]) and the CloudEvents attributes around them.
//! - [`outbox`]: [`outbox::enqueue`] inside the caller's transaction, and the [`outbox::Relay`]
//!   that publishes committed rows in order per ordering key.
//! - [`consumer`]: the [`consumer::Consumer`] runner: streaming pulls, dispatch by `ce-type`,
//!   handler + inbox row in one transaction, ack after commit.
//! - [`deletion`]: the participant side of the account-deletion saga (purge, then confirm).

pub mod consumer;
pub mod deletion;
pub mod envelope;
pub mod outbox;
pub mod pubsub;
pub mod topology;

pub use envelope::{Envelope, Event};
