//! Integration tests of `mirai-stock-data` against real PostgreSQL and the Pub/Sub emulator.

mirai_platform::service_conformance_tests!("mirai-stock-data", mirai_stock_data, "stock_data");

mod aggregation;
mod alpaca;
mod bars;
mod helpers;
mod identity;
mod import;
mod leader;
mod quality;
mod replay;
mod symbols;
mod tracking;
