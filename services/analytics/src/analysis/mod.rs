//! What the API computes from the read model, with no I/O: indicator requests over bars,
//! statistics (the `stats` functions composed into the wire's `Statistics`) and trends.

pub mod indicators;
pub mod statistics;
pub mod trends;
