//! Report jobs: asynchronous tear sheets of a symbol, a watchlist or a model version.
//!
//! `CreateReport` stores the job QUEUED; a [`worker::Worker`] claims it, gathers the content
//! ([`build`]), renders each requested format ([`render`]) and stores the files in PostgreSQL,
//! then marks the job SUCCEEDED or FAILED and emits `report.completed` (outbox). A job that
//! overruns the timeout is FAILED, never left RUNNING.
//!
//! # Layout
//! - [`spec`]: the request, parsed. [`content`]: what a report holds, format-independent.
//! - [`build`]: content from the read model and the prediction service.
//! - [`render`]: JSON, CSV, PNG and SVG. [`worker`]: claiming, running, sweeping.

pub mod build;
pub mod content;
pub mod render;
pub mod spec;
pub mod worker;
