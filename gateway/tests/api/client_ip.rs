//! The client IP behind trusted proxies (`MIRAI_TRUSTED_PROXY_HOPS`): clients that reach the
//! gateway through one proxy (one TCP peer) still get their own per-IP buckets, and a client
//! cannot move to another bucket by writing `X-Forwarded-For` entries of its own.

use mirai_platform::config::Env;
use serde_json::json;

use crate::helpers::{Gateway, Platform, answer};

/// A gateway configured from the environment, as in production, with one trusted proxy hop
/// and small per-IP limits (long windows, so no token comes back while the test runs).
async fn behind_one_proxy() -> Gateway {
    let platform = Platform::start().await;
    let mut env = platform.upstream_env();
    env.extend([
        ("MIRAI_HTTP_ADDR", "127.0.0.1:0".to_owned()),
        ("MIRAI_ADMIN_ADDR", "127.0.0.1:0".to_owned()),
        ("MIRAI_TRUSTED_PROXY_HOPS", "1".to_owned()),
        ("MIRAI_RATE_LIMIT_AUTH", "2/10m".to_owned()),
        ("MIRAI_RATE_LIMIT_ANONYMOUS", "4/10m".to_owned()),
    ]);
    let config = mirai_gateway::config::Config::from_env(&Env::from_pairs(env)).expect("valid");
    Gateway::start_on(platform, move |c| *c = config).await
}

impl Gateway {
    /// `POST /v1/auth/login` with bad credentials, as forwarded by a proxy with `xff`.
    async fn bad_login(&self, xff: &str) -> (u16, String) {
        let (status, headers, problem) = answer(
            self.http
                .post(self.url("/v1/auth/login"))
                .header("x-forwarded-for", xff)
                .json(&json!({ "email": "nobody@example.com", "password": "not the password" }))
                .send()
                .await
                .unwrap(),
        )
        .await;
        let policy = headers
            .get("ratelimit")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        assert!(status == 401 || status == 429, "{status}: {problem}");
        (status, policy)
    }

    async fn status_via(&self, xff: &str) -> u16 {
        self.http
            .get(self.url("/v1/status"))
            .header("x-forwarded-for", xff)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

#[tokio::test]
async fn clients_behind_one_proxy_get_their_own_per_ip_buckets() {
    let gw = behind_one_proxy().await;
    // Both clients come from the same TCP peer (127.0.0.1, the "proxy"); the proxy appended
    // the address it saw for each.
    let (a, b) = ("203.0.113.10", "2001:db8::b");

    // Login throttling (`auth`, 2 per 10 min): A exhausts its own bucket…
    let statuses: Vec<u16> = [
        gw.bad_login(a).await,
        gw.bad_login(a).await,
        gw.bad_login(a).await,
    ]
    .iter()
    .map(|(s, _)| *s)
    .collect();
    assert_eq!(statuses, [401, 401, 429], "A's own auth bucket");
    // …which does not lock B out (before: one shared bucket, B got 429 here).
    let (status, policy) = gw.bad_login(b).await;
    assert_eq!(status, 401, "B has a bucket of its own: {policy}");
    assert!(policy.starts_with("\"auth\";r=1;"), "{policy}");

    // A cannot escape by writing a left-most entry of its own: the proxy still appended A.
    let (status, _) = gw.bad_login(&format!("198.51.100.77, {a}")).await;
    assert_eq!(status, 429, "a spoofed left-most entry is ignored");
    let (status, _) = gw.bad_login(&format!("{b}, {a}")).await;
    assert_eq!(status, 429, "nor can A borrow B's address");

    // Anonymous requests (4 per 10 min): A has spent its 4 on the logins above; B one.
    assert_eq!(gw.status_via(a).await, 429, "A's anonymous bucket is empty");
    assert_eq!(gw.status_via(b).await, 200, "B's is not");
    // A proxy that writes B with a port, in brackets, still means B.
    assert_eq!(gw.status_via("[2001:db8::b]:4711").await, 200);
    gw.stop().await;
}

#[tokio::test]
async fn one_idempotency_key_from_two_anonymous_clients_does_not_collide() {
    let gw = behind_one_proxy().await;
    let register = |xff: &'static str, email: &'static str| {
        gw.http
            .post(gw.url("/v1/auth/register"))
            .header("x-forwarded-for", xff)
            .header("idempotency-key", "signup-1")
            .json(&json!({ "email": email, "password": crate::helpers::PASSWORD }))
            .send()
    };
    let first = answer(register("203.0.113.21", "kim@example.com").await.unwrap()).await;
    assert_eq!(first.0, 201, "{}", first.2);
    // Another client behind the same proxy, the same (common) key, another body: its own
    // request, not `422 idempotency-key-reused` (before: both were the proxy's address).
    let second = answer(register("203.0.113.22", "lee@example.com").await.unwrap()).await;
    assert_eq!(second.0, 201, "{}", second.2);
    assert!(!second.1.contains_key("idempotent-replayed"));
    gw.stop().await;
}
