//! Integration tests of `mirai-notification` against real PostgreSQL, the real Pub/Sub
//! emulator and real local third-party servers (SMTP, webhook receivers, an FCM-format server).

mirai_platform::service_conformance_tests!(
    "mirai-notification",
    mirai_notification,
    "notification"
);

mod account_mail;
mod alerts;
mod deletion;
mod email;
mod evaluation;
mod helpers;
mod public_events;
mod push;
mod saga;
mod streams;
mod verification;
mod webhooks;
