//! Integration tests of `mirai-analytics` against real PostgreSQL, the Pub/Sub emulator and
//! the stock-data service running in-process.

mod analysis;
mod helpers;
mod read_model;
mod reports;

mirai_platform::service_conformance_tests!("mirai-analytics", mirai_analytics, "analytics");
