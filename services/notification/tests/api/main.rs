//! Integration tests of `mirai-notification` against real PostgreSQL.

mirai_platform::service_conformance_tests!(
    "mirai-notification",
    mirai_notification,
    "notification"
);
