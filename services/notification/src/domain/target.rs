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
use std::sync::{Arc, LazyLock};

use ipnet::IpNet;
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

/// Ranges a webhook must never reach, whatever the configuration adds: this network, private,
/// carrier-grade NAT, loopback, link-local (the metadata server), IETF protocol assignments
/// (192.0.0.0/24, e.g. DS-Lite's 192.0.0.1), documentation, the 6to4 relay anycast,
/// benchmarking, multicast and reserved; IPv6 IPv4-compatible addresses (`::/96`, which holds
/// `::` and `::1`), discard-only, Teredo (`2001::/32`) and 6to4 (`2002::/16`) — both tunnel an
/// IPv4 address of the sender's choosing and are deprecated, so they are refused whole rather
/// than judged by the address inside — documentation, local-use NAT64, unique-local,
/// link-local, site-local and multicast. IPv4-mapped (`::ffff:0:0/96`) and well-known NAT64
/// (`64:ff9b::/96`) addresses are judged by the IPv4 address they carry.
const BUILT_IN: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/96",
    "64:ff9b:1::/48",
    "100::/64",
    "2001::/32",
    "2001:db8::/32",
    "2002::/16",
    "fc00::/7",
    "fe80::/10",
    "fec0::/10",
    "ff00::/8",
];

static BUILT_IN_NETS: LazyLock<Vec<IpNet>> = LazyLock::new(|| {
    BUILT_IN
        .iter()
        .map(|n| n.parse().expect("valid built-in range"))
        .collect()
});

/// Which targets are refused: the built-in ranges plus configured ones (the cluster's pod and
/// service ranges, say), or nothing at all when private targets are allowed (tests, local
/// stacks).
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub allow_private: bool,
    pub blocked: Arc<[IpNet]>,
}

impl Policy {
    /// True for addresses a webhook must never reach.
    pub fn forbids(&self, ip: IpAddr) -> bool {
        !self.allow_private && is_forbidden(ip, &self.blocked)
    }
}

/// The IPv4 address an IPv4-mapped or well-known NAT64 address stands for.
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = v6.segments();
    (s[..6] == [0x64, 0xff9b, 0, 0, 0, 0]).then(|| {
        let [a, b] = s[6].to_be_bytes();
        let [c, d] = s[7].to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    })
}

/// True for addresses in the built-in ranges or in `extra` (an embedded IPv4 address judged as
/// itself).
pub fn is_forbidden(ip: IpAddr, extra: &[IpNet]) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => embedded_v4(v6).map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    BUILT_IN_NETS
        .iter()
        .chain(extra)
        .any(|net| net.contains(&ip))
}

/// Parses a webhook URL at registration: https (http only when private targets are allowed),
/// no credentials, and no literal forbidden address or `localhost` unless allowed.
pub fn parse_url(text: &str, policy: &Policy) -> Result<Url, TargetError> {
    let allow_private = policy.allow_private;
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
            Some(Host::Ipv4(ip)) if policy.forbids(IpAddr::V4(ip)) => {
                return Err(TargetError::Forbidden(ip.to_string()));
            }
            Some(Host::Ipv6(ip)) if policy.forbids(IpAddr::V6(ip)) => {
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
pub async fn check_resolved(url: &Url, policy: &Policy) -> Result<(), TargetError> {
    if policy.allow_private {
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
    match addrs.iter().find(|a| policy.forbids(a.ip())) {
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
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    pub policy: Policy,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = resolve(&host, 0).await?;
            if let Some(bad) = addrs.iter().find(|a| policy.forbids(a.ip())) {
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
            assert!(is_forbidden(ip.parse().unwrap(), &[]), "{ip}");
        }
        for ip in [
            "8.8.8.8",
            "93.184.216.34",
            "2606:4700::1111",
            "::ffff:1.1.1.1",
        ] {
            assert!(!is_forbidden(ip.parse().unwrap(), &[]), "{ip}");
        }
    }

    #[test]
    fn tunnelled_compatible_and_protocol_ranges_are_forbidden() {
        for ip in [
            // IPv4-compatible (deprecated) ::a.b.c.d, here 169.254.169.254 and 127.0.0.1.
            "::a9fe:a9fe",
            "::7f00:1",
            // 6to4 2002:AABB:CCDD::, with a private and with a public address inside.
            "2002:a9fe:a9fe::1",
            "2002:0808:0808::1",
            // Teredo 2001:0:server:flags:port:client (client 127.0.0.1 inverted).
            "2001:0:4136:e378:8000:63bf:80ff:fffe",
            // IETF protocol assignments, e.g. DS-Lite's B4 and AFTR.
            "192.0.0.1",
            "192.0.0.170",
            // Local-use NAT64 and discard-only.
            "64:ff9b:1::a00:1",
            "100::1",
        ] {
            assert!(is_forbidden(ip.parse().unwrap(), &[]), "{ip}");
        }
        // The neighbours stay reachable.
        for ip in ["192.0.1.1", "2001:4860::8888", "2003::1"] {
            assert!(!is_forbidden(ip.parse().unwrap(), &[]), "{ip}");
        }
    }

    #[test]
    fn configured_ranges_are_forbidden_too_also_when_mapped() {
        let cluster: Vec<IpNet> = vec![
            "34.118.224.0/20".parse().unwrap(),
            "2600:1900:4000::/44".parse().unwrap(),
        ];
        let policy = Policy {
            allow_private: false,
            blocked: cluster.into(),
        };
        for ip in [
            "34.118.230.7",
            "::ffff:34.118.230.7",
            "64:ff9b::2276:e607",
            "2600:1900:4001::5",
        ] {
            assert!(policy.forbids(ip.parse().unwrap()), "{ip}");
        }
        assert!(!policy.forbids("34.118.240.1".parse().unwrap()));
        assert!(matches!(
            parse_url("https://34.118.224.10/hook", &policy),
            Err(TargetError::Forbidden(_))
        ));
        let open = Policy {
            allow_private: true,
            ..policy
        };
        assert!(!open.forbids("34.118.230.7".parse().unwrap()));
    }

    #[test]
    fn urls_are_checked_at_registration() {
        let strict = &Policy::default();
        let open = &Policy {
            allow_private: true,
            ..Policy::default()
        };
        assert!(parse_url("https://hooks.example.com/x?y=1", strict).is_ok());
        assert_eq!(
            parse_url("http://hooks.example.com/", strict).unwrap_err(),
            TargetError::Scheme
        );
        assert_eq!(
            parse_url("https://user:pw@hooks.example.com/", strict).unwrap_err(),
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
                matches!(parse_url(bad, strict), Err(TargetError::Forbidden(_))),
                "{bad}"
            );
        }
        assert!(parse_url("http://127.0.0.1:9999/hook", open).is_ok());
        assert!(matches!(
            parse_url("ftp://example.com", open),
            Err(TargetError::Scheme)
        ));
        assert!(matches!(
            parse_url("not a url", strict),
            Err(TargetError::Malformed(_))
        ));
    }

    #[tokio::test]
    async fn names_resolving_to_loopback_are_refused_before_and_at_connect() {
        // (parse_url already refuses the name itself; this is the resolution check.)
        let strict = &Policy::default();
        let open = &Policy {
            allow_private: true,
            ..Policy::default()
        };
        let url = Url::parse("https://localhost:8443/").unwrap();
        assert!(matches!(
            check_resolved(&url, strict).await,
            Err(TargetError::Forbidden(_))
        ));
        assert!(check_resolved(&url, open).await.is_ok());
        let resolver = GuardedResolver {
            policy: Policy::default(),
        };
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        let refused = reqwest::dns::Resolve::resolve(&resolver, name).await;
        assert!(refused.is_err());
    }
}
