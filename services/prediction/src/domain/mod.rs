//! The service's rules, with no I/O: bars and features, model references, forecasts in price
//! units, traffic routing, and the scoring arithmetic.

pub mod features;
pub mod forecast;
pub mod model_ref;
pub mod scoring;
pub mod symbol;
pub mod traffic;
