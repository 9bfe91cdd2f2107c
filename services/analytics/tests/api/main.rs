//! Integration tests of `mirai-analytics` against real PostgreSQL.

mirai_platform::service_conformance_tests!("mirai-analytics", mirai_analytics, "analytics");
