//! Inference with tract: optimised plans per pinned batch size ([`plan`]) behind a
//! micro-batching queue served by a pool of worker threads ([`engine`]).

pub mod engine;
pub mod plan;
