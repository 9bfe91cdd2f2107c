//! Who is on the other end of a request: client IP, user agent and request id, for throttling,
//! rate limits and the audit log.
//!
//! # The client IP
//!
//! Behind proxies the TCP peer is the last proxy (the Istio sidecar, Google's load balancer),
//! the same address for every client. Each proxy that terminates HTTP appends the address it
//! saw to `X-Forwarded-For`; only the entries written by our own proxies can be believed, and
//! those are the right-most ones. With `MIRAI_TRUSTED_PROXY_HOPS = N` (Istio's
//! `numTrustedProxies` model) the client is the N-th entry from the right of the combined list
//! (every `X-Forwarded-For` header, in order, split at commas); with 0 it is the TCP peer and
//! the header is ignored.
//!
//! Rules, each chosen so that a client cannot pick its own address by writing entries:
//! - Entries left of position N are the client's own writing and are never read.
//! - A list shorter than N means the request did not pass every trusted proxy (or one of them
//!   is misconfigured): none of its entries can be told from the client's, so the TCP peer is
//!   used.
//! - An entry at position N that is not an address (garbage, `unknown`, empty) falls back to
//!   the next entry to its right (written by a trusted proxy), then to the TCP peer — never to
//!   the left.
//! - Entries may carry a port (`203.0.113.7:4711`, `[2001:db8::1]:443`) or brackets; IPv4
//!   mapped into IPv6 (`::ffff:203.0.113.7`) is the IPv4 address. Empty elements count as
//!   entries (they can only come from the client's part of the list).

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap};
use mirai_proto::user::v1 as pb;

use crate::middleware::edge::REQUEST_ID;

/// How many proxies in front of the gateway append to `X-Forwarded-For` and are believed
/// (set once at startup from `MIRAI_TRUSTED_PROXY_HOPS`; 0 = use the TCP peer).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    pub hops: u8,
}

/// The client's IP: the address `hops` entries from the right of `X-Forwarded-For`
/// ([`forwarded_client`]), else the TCP peer. See the module documentation for the rules.
pub fn client_ip(headers: &HeaderMap, extensions: &Extensions) -> Option<IpAddr> {
    let hops = extensions
        .get::<TrustedProxies>()
        .map_or(0, |trusted| usize::from(trusted.hops));
    forwarded_client(headers, hops).or_else(|| {
        extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip().to_canonical())
    })
}

/// The client address that the `hops` trusted proxies recorded in `X-Forwarded-For`, or
/// `None` when the TCP peer must be used instead (no trusted hop, a list shorter than the hop
/// count, or no parseable address at or right of the client's position).
pub fn forwarded_client(headers: &HeaderMap, hops: usize) -> Option<IpAddr> {
    if hops == 0 {
        return None;
    }
    // Multiple headers are one list, in order (RFC 9110 §5.3). Only the last `hops` entries
    // matter, so they are collected from the right without keeping the client's part.
    let mut last: Vec<&[u8]> = Vec::with_capacity(hops);
    for value in headers.get_all("x-forwarded-for").iter().rev() {
        for entry in value.as_bytes().rsplit(|b| *b == b',') {
            last.push(entry);
            if last.len() == hops {
                break;
            }
        }
        if last.len() == hops {
            break;
        }
    }
    if last.len() < hops {
        return None;
    }
    // `last[hops - 1]` is the client's position; walk right from it.
    last.iter().rev().find_map(|entry| parse_entry(entry))
}

/// One `X-Forwarded-For` entry: an IPv4 or IPv6 address, optionally with a port or brackets.
fn parse_entry(entry: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(entry).ok()?.trim_matches([' ', '\t']);
    let ip = match text.parse::<IpAddr>() {
        Ok(ip) => ip,
        Err(_) => match text.parse::<SocketAddr>() {
            Ok(addr) => addr.ip(),
            Err(_) => text.strip_prefix('[')?.strip_suffix(']')?.parse().ok()?,
        },
    };
    Some(ip.to_canonical())
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

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("x-forwarded-for", HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    /// `client_ip` with `hops` trusted proxies and the TCP peer 10.0.0.1 (a proxy).
    fn client(hops: u8, values: &[&str]) -> Option<IpAddr> {
        let mut extensions = Extensions::new();
        extensions.insert(TrustedProxies { hops });
        extensions.insert(ConnectInfo(SocketAddr::from(([10, 0, 0, 1], 40_000))));
        client_ip(&headers(values), &extensions)
    }

    #[test]
    fn zero_hops_is_the_peer_whatever_the_header_says() {
        assert_eq!(client(0, &["203.0.113.7"]), ip("10.0.0.1"));
        assert_eq!(client(0, &[]), ip("10.0.0.1"));
        let mut extensions = Extensions::new();
        extensions.insert(ConnectInfo(SocketAddr::from(([10, 0, 0, 1], 1))));
        assert_eq!(
            client_ip(&headers(&["203.0.113.7"]), &extensions),
            ip("10.0.0.1"),
            "no setting means 0"
        );
    }

    #[test]
    fn one_hop_is_the_right_most_entry_and_spoofed_left_entries_are_ignored() {
        assert_eq!(client(1, &["203.0.113.7"]), ip("203.0.113.7"));
        assert_eq!(
            client(1, &["1.1.1.1, 8.8.8.8 ,203.0.113.7"]),
            ip("203.0.113.7")
        );
        // The client's own header line first, the proxy's appended line after it.
        assert_eq!(client(1, &["1.1.1.1", "203.0.113.7"]), ip("203.0.113.7"));
        assert_eq!(client(1, &["1.1.1.1,", " 203.0.113.7 "]), ip("203.0.113.7"));
    }

    #[test]
    fn two_hops_skip_the_load_balancer_entry() {
        // Google's load balancer: "<client-written…>, client, lb".
        let gclb = "6.6.6.6, 203.0.113.7, 34.120.0.1";
        assert_eq!(client(2, &[gclb]), ip("203.0.113.7"));
        assert_eq!(client(1, &[gclb]), ip("34.120.0.1"));
        // And behind it the Istio ingress gateway appends the load balancer's proxy address.
        assert_eq!(
            client(3, &[&format!("{gclb}, 35.191.0.9")]),
            ip("203.0.113.7")
        );
        // Exactly as many entries as hops: the left-most entry is the client's position.
        assert_eq!(client(2, &["203.0.113.7, 34.120.0.1"]), ip("203.0.113.7"));
    }

    #[test]
    fn a_list_shorter_than_the_hops_falls_back_to_the_peer() {
        // Fewer entries than trusted proxies: every entry may be the client's own writing.
        assert_eq!(client(2, &["6.6.6.6"]), ip("10.0.0.1"));
        assert_eq!(client(3, &["6.6.6.6", "7.7.7.7"]), ip("10.0.0.1"));
        assert_eq!(client(1, &[]), ip("10.0.0.1"));
    }

    #[test]
    fn a_malformed_client_position_falls_back_rightwards_never_left() {
        assert_eq!(
            client(2, &["6.6.6.6, unknown, 34.120.0.1"]),
            ip("34.120.0.1"),
            "the next trusted entry, not the spoofable left one"
        );
        assert_eq!(client(2, &["6.6.6.6, , 34.120.0.1"]), ip("34.120.0.1"));
        assert_eq!(client(2, &["6.6.6.6,junk,also-junk"]), ip("10.0.0.1"));
        assert_eq!(client(1, &["6.6.6.6, 2001:db8::1%eth0"]), ip("10.0.0.1"));
        let mut odd = HeaderMap::new();
        odd.append("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
        odd.append(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
        );
        assert_eq!(forwarded_client(&odd, 1), None, "not text: the peer");
    }

    #[test]
    fn ipv6_ports_brackets_and_mapped_addresses() {
        assert_eq!(client(1, &["2001:db8::7"]), ip("2001:db8::7"));
        assert_eq!(client(1, &["[2001:db8::7]"]), ip("2001:db8::7"));
        assert_eq!(client(1, &["[2001:db8::7]:4711"]), ip("2001:db8::7"));
        assert_eq!(client(1, &["203.0.113.7:4711"]), ip("203.0.113.7"));
        assert_eq!(client(1, &["::ffff:203.0.113.7"]), ip("203.0.113.7"));
        assert_eq!(
            client(2, &["::1, 2001:db8::7, [2001:db8::1]:443"]),
            ip("2001:db8::7")
        );
    }

    #[test]
    fn many_entries_cost_only_the_trusted_ones() {
        let long = vec!["6.6.6.6"; 5_000].join(",") + ", 203.0.113.7";
        assert_eq!(client(1, &[&long]), ip("203.0.113.7"));
    }
}
