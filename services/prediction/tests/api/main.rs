//! Integration tests of `mirai-prediction` against real PostgreSQL.

mirai_platform::service_conformance_tests!("mirai-prediction", mirai_prediction, "prediction");
