//! gRPC plumbing shared by every service and the gateway.
//!
//! - [`GrpcServer`]: binds the gRPC and admin listeners, adds health and reflection, wraps every
//!   call in [`ServerLayer`] (trace-context extraction, deadline scope, RED metrics), and runs
//!   the graceful-shutdown sequence.
//! - [`client`]: outgoing channels whose calls carry `traceparent` and the remaining deadline.
//! - [`deadline`]: the incoming call's deadline, available to the handler's task.
//! - [`identity`]: the signed internal token every call carries (minted by the client
//!   interceptor, verified by [`ServerLayer`]).

pub mod client;
pub mod deadline;
pub mod fault;
pub mod identity;
mod layer;
mod server;

pub use fault::{FaultRules, Faults};
pub use identity::{Caller, Identity};
pub use layer::{RpcMetrics, ServerLayer};
pub use server::{GrpcServer, ServeError};

/// Splits `/pkg.Service/Method` into (`pkg.Service`, `Method`).
pub(crate) fn split_path(path: &str) -> (&str, &str) {
    let trimmed = path.trim_start_matches('/');
    trimmed.split_once('/').unwrap_or((trimmed, ""))
}

/// The code of an answered call: `grpc-status` in the response headers (errors travel as
/// "trailers-only" responses), else 0 — a call that succeeded, or a stream that opened.
pub(crate) fn answered_code<B>(response: &http::Response<B>) -> i32 {
    response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn splits_grpc_paths() {
        assert_eq!(
            super::split_path("/mirai.user.v1.UserService/Login"),
            ("mirai.user.v1.UserService", "Login")
        );
        assert_eq!(super::split_path("/odd"), ("odd", ""));
    }
}
