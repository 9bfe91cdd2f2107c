//! Integration tests of `mirai-prediction`: one binary, real PostgreSQL and the Pub/Sub
//! emulator, stock-data started in-process (its replay feed plays history as live bar closes).

mod artifacts;
mod bar_loop;
mod golden;
mod helpers;
mod replay;
mod rpc;
mod traffic;

mirai_platform::service_conformance_tests!("mirai-prediction", mirai_prediction, "prediction");
