//! Who is on the other end of a request: client IP, user agent and request id, for throttling,
//! rate limits and the audit log.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap};
use mirai_proto::user::v1 as pb;

use crate::edge::REQUEST_ID;

/// Whether `X-Forwarded-For` is believed (set once at startup from `MIRAI_TRUST_FORWARDED_FOR`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ForwardedFor {
    pub trusted: bool,
}

/// The client's IP: behind our own load balancer (`trusted`), the right-most
/// `X-Forwarded-For` hop — the address that balancer saw, which a client cannot forge — else
/// the TCP peer. Never the left-most hop, which anyone can write.
pub fn client_ip(headers: &HeaderMap, extensions: &Extensions) -> Option<IpAddr> {
    let trusted = extensions
        .get::<ForwardedFor>()
        .is_some_and(|forwarded| forwarded.trusted);
    let forwarded = trusted
        .then(|| {
            headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .next_back()?
                .rsplit(',')
                .next()?
                .trim()
                .parse::<IpAddr>()
                .ok()
        })
        .flatten();
    forwarded.or_else(|| {
        extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip())
    })
}

/// The caller's context as the user service records it.
pub fn context(headers: &HeaderMap, extensions: &Extensions) -> pb::ClientContext {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    pb::ClientContext {
        ip: client_ip(headers, extensions)
            .map(|ip| ip.to_string())
            .unwrap_or_default(),
        user_agent: header("user-agent").chars().take(512).collect(),
        request_id: header(REQUEST_ID.as_str()).chars().take(128).collect(),
    }
}

/// Extractor of [`context`].
pub struct Client(pub pb::ClientContext);

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Client(context(&parts.headers, &parts.extensions)))
    }
}
