//! RFC 9457 problem details: the body of every error the gateway returns.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Base URI of our problem types; each kind of error has a stable `type` under it.
pub const TYPE_BASE: &str = "https://mirai.dev/problems/";

/// An `application/problem+json` body (RFC 9457).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(example = json!({
    "type": "https://mirai.dev/problems/invalid-request",
    "title": "Invalid request",
    "status": 400,
    "detail": "password: must be at least 12 characters",
    "request_id": "0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
    "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"
}))]
pub struct Problem {
    /// The kind of problem: a stable URI under `https://mirai.dev/problems/`.
    #[serde(rename = "type", serialize_with = "type_uri")]
    #[schema(value_type = String, format = "uri")]
    pub kind: &'static str,
    /// Short, human-readable summary of the kind.
    #[schema(value_type = String)]
    pub title: &'static str,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this request, naming the field at fault where there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The path the problem occurred at.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub instance: Option<Box<str>>,
    /// The request's `x-request-id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub request_id: Option<Box<str>>,
    /// The W3C trace id of the request, to find its logs and spans.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub trace_id: Option<Box<str>>,
    /// The service behind the gateway that could not answer (with 503 and 504), e.g.
    /// `analytics`: every route of the other services keeps working.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<Upstream>,
    /// Sent as the `Retry-After` header (seconds), e.g. with 429 and 503.
    #[serde(skip)]
    #[schema(ignore)]
    pub retry_after: Option<std::num::NonZeroU32>,
}

/// A service behind the gateway, as problems name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Upstream {
    User,
    StockData,
    Prediction,
    Analytics,
    Notification,
}

impl Upstream {
    /// The upstream a client-layer name (`stock-data`) stands for.
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "user" => Upstream::User,
            "stock-data" => Upstream::StockData,
            "prediction" => Upstream::Prediction,
            "analytics" => Upstream::Analytics,
            "notification" => Upstream::Notification,
            _ => return None,
        })
    }
}

impl Problem {
    /// A problem of kind `slug` (e.g. `not-found`) with the given status and title.
    pub fn new(status: StatusCode, kind: &'static str, title: &'static str) -> Self {
        Self {
            kind,
            title,
            status: status.as_u16(),
            detail: None,
            instance: None,
            request_id: crate::middleware::edge::current_request_id().map(String::into_boxed_str),
            trace_id: mirai_platform::telemetry::current_trace_id().map(String::into_boxed_str),
            upstream: None,
            retry_after: None,
        }
    }

    /// `400 invalid-request`: a field of the request is invalid (`detail` names it).
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid-request",
            "Invalid request",
        )
        .detail(detail)
    }

    /// `500`: an upstream answered without something it must send, e.g. `missing("a user")`.
    pub fn missing(what: &str) -> Self {
        tonic::Status::internal(format!("upstream answered without {what}")).into()
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = std::num::NonZeroU32::new(seconds.clamp(1, u32::MAX as u64) as u32);
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn instance(mut self, instance: impl Into<String>) -> Self {
        self.instance = Some(instance.into().into_boxed_str());
        self
    }
}

fn type_uri<S: serde::Serializer>(kind: &&'static str, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&format_args!("{TYPE_BASE}{kind}"))
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body,
        )
            .into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                header::HeaderValue::from(seconds.get()),
            );
        }
        response
    }
}

impl From<tonic::Status> for Problem {
    /// An upstream's answer, as the HTTP problem a client can act on. The message of an
    /// expected error (validation, not found, conflict) is meant for the caller and becomes the
    /// detail; unexpected ones keep the upstream's generic message (which names the trace).
    /// An upstream that is down, overloaded or behind an open circuit is a 503 naming it, with
    /// `Retry-After`.
    fn from(status: tonic::Status) -> Self {
        use tonic::Code;
        let overloaded = status.code() == Code::ResourceExhausted
            && status
                .metadata()
                .contains_key(mirai_platform::grpc::client::OVERLOADED);
        let (http, slug, title) = match status.code() {
            _ if overloaded => (
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "Service overloaded",
            ),
            Code::InvalidArgument | Code::OutOfRange => (
                StatusCode::BAD_REQUEST,
                "invalid-request",
                "Invalid request",
            ),
            Code::NotFound => (StatusCode::NOT_FOUND, "not-found", "Not Found"),
            Code::AlreadyExists => (StatusCode::CONFLICT, "already-exists", "Already exists"),
            Code::FailedPrecondition | Code::Aborted => (
                StatusCode::CONFLICT,
                "conflict",
                "Conflict with the current state",
            ),
            Code::Unauthenticated => (
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "Authentication required",
            ),
            Code::PermissionDenied => (StatusCode::FORBIDDEN, "forbidden", "Forbidden"),
            Code::ResourceExhausted => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Too many requests",
            ),
            Code::Unimplemented => (
                StatusCode::NOT_IMPLEMENTED,
                "not-implemented",
                "Not implemented yet",
            ),
            Code::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service temporarily unavailable",
            ),
            Code::DeadlineExceeded | Code::Cancelled => (
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                "The request took too long",
            ),
            Code::Ok | Code::Unknown | Code::Internal | Code::DataLoss => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
            ),
        };
        let mut problem = Problem::new(http, slug, title).detail(status.message());
        // The user service puts lockout time in a `retry-after` trailer (whole seconds); the
        // client layer puts the time left on an open circuit there.
        problem.retry_after = status
            .metadata()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        if matches!(
            http,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT
        ) {
            problem.upstream = status
                .metadata()
                .get(mirai_platform::grpc::client::UPSTREAM)
                .and_then(|v| v.to_str().ok())
                .and_then(Upstream::parse);
            if http == StatusCode::SERVICE_UNAVAILABLE && problem.retry_after.is_none() {
                problem.retry_after = std::num::NonZeroU32::new(1);
            }
        }
        problem
    }
}

impl From<axum::extract::rejection::JsonRejection> for Problem {
    fn from(rejection: axum::extract::rejection::JsonRejection) -> Self {
        Problem::new(rejection.status(), "invalid-body", "Invalid request body")
            .detail(rejection.body_text())
    }
}

impl From<axum::extract::rejection::QueryRejection> for Problem {
    fn from(rejection: axum::extract::rejection::QueryRejection) -> Self {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-query",
            "Invalid query string",
        )
        .detail(rejection.body_text())
    }
}

impl From<axum::extract::rejection::PathRejection> for Problem {
    fn from(rejection: axum::extract::rejection::PathRejection) -> Self {
        Problem::new(rejection.status(), "invalid-path", "Invalid path parameter")
            .detail(rejection.body_text())
    }
}

/// `axum::Json` whose rejection is a problem+json body.
#[derive(axum::extract::FromRequest)]
#[from_request(via(axum::Json), rejection(Problem))]
pub struct Json<T>(pub T);

/// `axum::extract::Query` whose rejection is a problem+json body.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(Problem))]
pub struct Query<T>(pub T);

/// `axum::extract::Path` whose rejection is a problem+json body.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(Problem))]
pub struct Path<T>(pub T);

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: tonic::Code, metadata: &[(&'static str, &'static str)]) -> tonic::Status {
        let mut status = tonic::Status::new(code, "upstream said so");
        for (key, value) in metadata {
            status
                .metadata_mut()
                .insert(*key, tonic::metadata::MetadataValue::from_static(value));
        }
        status
    }

    /// The problem table mirrors the services' one error vocabulary: each of its codes is a
    /// problem type of its own (a new code without a row here fails this test).
    #[test]
    fn every_service_error_code_is_a_distinct_problem() {
        use mirai_platform::error::Code;
        let mut kinds = std::collections::HashMap::new();
        for code in Code::ALL {
            let problem = Problem::from(status(code.grpc(), &[]));
            let expected = match code {
                Code::InvalidArgument => 400,
                Code::NotFound => 404,
                Code::AlreadyExists | Code::FailedPrecondition => 409,
                Code::Unauthenticated => 401,
                Code::PermissionDenied => 403,
                Code::ResourceExhausted => 429,
                Code::Unavailable => 503,
                Code::Internal => 500,
            };
            assert_eq!(problem.status, expected, "{code:?}");
            if let Some(other) = kinds.insert(problem.kind, code) {
                panic!("{code:?} and {other:?} are both `{}`", problem.kind);
            }
        }
    }

    #[test]
    fn an_unavailable_upstream_is_a_503_naming_it_with_retry_after() {
        let problem = Problem::from(status(
            tonic::Code::Unavailable,
            &[("mirai-upstream", "analytics"), ("retry-after", "4")],
        ));
        assert_eq!(problem.status, 503);
        assert_eq!(problem.upstream, Some(Upstream::Analytics));
        assert_eq!(problem.retry_after.map(|s| s.get()), Some(4));
        let response = problem.into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "4");

        // Without a hint from the client layer, a 503 still says when to retry.
        let problem = Problem::from(status(tonic::Code::Unavailable, &[]));
        assert_eq!(problem.retry_after.map(|s| s.get()), Some(1));
    }

    #[test]
    fn a_shedding_service_is_a_503_and_a_quota_a_429() {
        let shed = Problem::from(status(
            tonic::Code::ResourceExhausted,
            &[
                ("mirai-overloaded", "1"),
                ("retry-after", "1"),
                ("mirai-upstream", "prediction"),
            ],
        ));
        assert_eq!((shed.status, shed.kind), (503, "overloaded"));
        assert_eq!(shed.upstream, Some(Upstream::Prediction));
        let quota = Problem::from(status(tonic::Code::ResourceExhausted, &[]));
        assert_eq!((quota.status, quota.kind), (429, "rate-limited"));
        assert_eq!(quota.upstream, None);
    }

    #[test]
    fn client_errors_do_not_name_the_upstream() {
        let problem = Problem::from(status(
            tonic::Code::NotFound,
            &[("mirai-upstream", "stock-data")],
        ));
        assert_eq!(problem.status, 404);
        assert_eq!(problem.upstream, None);
    }
}
