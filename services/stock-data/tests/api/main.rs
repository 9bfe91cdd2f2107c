//! Integration tests of `mirai-stock-data` against real PostgreSQL.

mirai_platform::service_conformance_tests!("mirai-stock-data", mirai_stock_data, "stock_data");

mod bars;
mod import;
mod replay;
