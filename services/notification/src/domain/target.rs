//! Webhook targets and SSRF protection.
//!
//! A user-supplied URL is a request the service makes from inside the cluster, so it must not
//! reach anything only the cluster can reach: loopback, private ranges, link-local (the cloud
//! metadata server at 169.254.169.254), carrier-grade NAT, multicast and their IPv6 cousins.
//! The check runs three times: when the endpoint is stored (literal IPs and `localhost`),
//! before each attempt (the name's current addresses, for a clear BLOCKED outcome), and in the
//! HTTP client's resolver (the addresses actually connected to, so DNS rebinding between the
//! check and the connection does not help). Redirects are never followed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use url::{Host, Url};

/// Longest accepted URL.
pub const MAX_URL_LEN: usize = 2000;

/// Why a URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("not a valid URL: {0}")]
    Malformed(String),
    #[error("must use https")]
    Scheme,
    #[error("must not carry credentials")]
    Credentials,
    #[error("at most {MAX_URL_LEN} characters")]
    TooLong,
    #[error("{0} is a private, loopback or link-local address")]
    Forbidden(String),
    #[error("{host} does not resolve: {error}")]
    Unresolvable { host: String, error: String },
}

/// True for addresses a webhook must never reach.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_v4(v4);
            }
            let segments = v6.segments();
            // NAT64 (64:ff9b::/96) embeds an IPv4 address.
            if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let [a, b] = segments[6].to_be_bytes();
                let [c, d] = segments[7].to_be_bytes();
                return forbidden_v4(Ipv4Addr::new(a, b, c, d));
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || v6.is_unique_local()
                || v6.is_unicast_link_local()
                // Site-local (deprecated, fec0::/10) and documentation (2001:db8::/32).
                || (segments[0] & 0xffc0) == 0xfec0
                || (segments[0] == 0x2001 && segments[1] == 0x0db8)
                || v6 == Ipv6Addr::from([0u8; 16])
        }
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        // Carrier-grade NAT 100.64.0.0/10 and the benchmarking range 198.18.0.0/15.
        || (a == 100 && (64..128).contains(&b))
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240
}

/// Parses a webhook URL at registration: https (http only when private targets are allowed),
/// no credentials, and no literal private address or `localhost` unless allowed.
pub fn parse_url(text: &str, allow_private: bool) -> Result<Url, TargetError> {
    if text.len() > MAX_URL_LEN {
        return Err(TargetError::TooLong);
    }
    let url = Url::parse(text.trim()).map_err(|e| TargetError::Malformed(e.to_string()))?;
    match url.scheme() {
        "https" => {}
        "http" if allow_private => {}
        _ => return Err(TargetError::Scheme),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(TargetError::Credentials);
    }
    if !allow_private {
        match url.host() {
            None => return Err(TargetError::Malformed("no host".into())),
            Some(Host::Ipv4(ip)) if is_forbidden(IpAddr::V4(ip)) => {
                return Err(TargetError::Forbidden(ip.to_string()));
            }
            Some(Host::Ipv6(ip)) if is_forbidden(IpAddr::V6(ip)) => {
                return Err(TargetError::Forbidden(ip.to_string()));
            }
            Some(Host::Domain(d)) => {
                let d = d.trim_end_matches('.').to_ascii_lowercase();
                if d == "localhost" || d.ends_with(".localhost") || d.ends_with(".internal") {
                    return Err(TargetError::Forbidden(d));
                }
            }
            Some(_) => {}
        }
    }
    Ok(url)
}

/// Resolves the URL's host now and refuses it if any address is forbidden (unless allowed).
pub async fn check_resolved(url: &Url, allow_private: bool) -> Result<(), TargetError> {
    if allow_private {
        return Ok(());
    }
    let host = url
        .host_str()
        .ok_or(TargetError::Malformed("no host".into()))?;
    let port = url.port_or_known_default().unwrap_or(443);
    let addrs = resolve(host.trim_start_matches('[').trim_end_matches(']'), port)
        .await
        .map_err(|error| TargetError::Unresolvable {
            host: host.to_owned(),
            error,
        })?;
    match addrs.iter().find(|a| is_forbidden(a.ip())) {
        Some(bad) => Err(TargetError::Forbidden(format!("{host} ({})", bad.ip()))),
        None => Ok(()),
    }
}

async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    tokio::net::lookup_host((host, port))
        .await
        .map(|addrs| addrs.collect())
        .map_err(|e| e.to_string())
}

/// The webhook client's resolver: the system resolver, refusing forbidden addresses.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    pub allow_private: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = resolve(&host, 0).await?;
            if !allow_private && let Some(bad) = addrs.iter().find(|a| is_forbidden(a.ip())) {
                return Err(TargetError::Forbidden(format!("{host} ({})", bad.ip())).into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_forbidden() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(is_forbidden(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "8.8.8.8",
            "93.184.216.34",
            "2606:4700::1111",
            "::ffff:1.1.1.1",
        ] {
            assert!(!is_forbidden(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn urls_are_checked_at_registration() {
        assert!(parse_url("https://hooks.example.com/x?y=1", false).is_ok());
        assert_eq!(
            parse_url("http://hooks.example.com/", false).unwrap_err(),
            TargetError::Scheme
        );
        assert_eq!(
            parse_url("https://user:pw@hooks.example.com/", false).unwrap_err(),
            TargetError::Credentials
        );
        for bad in [
            "https://127.0.0.1/",
            "https://[::1]/",
            "https://169.254.169.254/latest/meta-data",
            "https://localhost:8443/",
            "https://metadata.google.internal/",
            "https://10.0.0.7/",
        ] {
            assert!(
                matches!(parse_url(bad, false), Err(TargetError::Forbidden(_))),
                "{bad}"
            );
        }
        assert!(parse_url("http://127.0.0.1:9999/hook", true).is_ok());
        assert!(matches!(
            parse_url("ftp://example.com", true),
            Err(TargetError::Scheme)
        ));
        assert!(matches!(
            parse_url("not a url", false),
            Err(TargetError::Malformed(_))
        ));
    }

    #[tokio::test]
    async fn names_resolving_to_loopback_are_refused_before_and_at_connect() {
        // (parse_url already refuses the name itself; this is the resolution check.)
        let url = Url::parse("https://localhost:8443/").unwrap();
        assert!(matches!(
            check_resolved(&url, false).await,
            Err(TargetError::Forbidden(_))
        ));
        assert!(check_resolved(&url, true).await.is_ok());
        let resolver = GuardedResolver {
            allow_private: false,
        };
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        let refused = reqwest::dns::Resolve::resolve(&resolver, name).await;
        assert!(refused.is_err());
    }
}
