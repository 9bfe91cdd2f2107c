//! Error conventions for gRPC handlers.
//!
//! Each service has one `thiserror` enum and one `From<Error> for tonic::Status`. Expected
//! failures map to precise codes with a message meant for the caller (`INVALID_ARGUMENT`,
//! `NOT_FOUND`, `ALREADY_EXISTS` via [`crate::db::status`], `FAILED_PRECONDITION`,
//! `PERMISSION_DENIED`); anything unexpected goes through [`internal`], which logs the detail
//! with the trace id and gives the caller only a generic message and that trace id.

use std::fmt::Display;

/// An `INTERNAL` status for an unexpected error; the detail is logged, not returned.
pub fn internal(error: impl Display) -> tonic::Status {
    let trace_id = crate::telemetry::current_trace_id();
    tracing::error!(message = "Internal error.", error = %error, trace_id = trace_id.as_deref().unwrap_or(""));
    match trace_id {
        Some(id) => tonic::Status::internal(format!("internal error (trace {id})")),
        None => tonic::Status::internal("internal error"),
    }
}

/// An `INVALID_ARGUMENT` status naming the offending field.
pub fn invalid_argument(field: &str, problem: impl Display) -> tonic::Status {
    tonic::Status::invalid_argument(format!("{field}: {problem}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn internal_hides_details() {
        let status = super::internal("password=hunter2 connection refused");
        assert_eq!(status.code(), tonic::Code::Internal);
        assert!(!status.message().contains("hunter2"));
    }

    #[test]
    fn invalid_argument_names_the_field() {
        let status = super::invalid_argument("symbol", "must be 1-10 characters");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(status.message(), "symbol: must be 1-10 characters");
    }
}
