//! Webhook deliveries: Standard Webhooks signing and the HTTP attempt.
//!
//! Headers: `webhook-id` (the delivery id, stable across retries so receivers can dedupe),
//! `webhook-timestamp` (Unix seconds of this attempt) and `webhook-signature`: `v1,` + base64
//! of HMAC-SHA256 over `{id}.{timestamp}.{body}` with the base64-decoded part of the
//! `whsec_` secret — one signature per signing secret, space-separated, so during a secret
//! rotation receivers holding either secret can verify.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac as _};
use mirai_proto::notification::v1::AttemptOutcome;
use sha2::Sha256;

use super::Attempted;
use crate::domain::target::{self, GuardedResolver};

/// How much of an error answer's body is read for the attempt's excerpt. An endpoint is the
/// user's (or an attacker's) server: it must not make a delivery worker download, hold or store
/// a body of its choosing. The excerpt kept is shorter still (500 characters).
pub const MAX_ERROR_BODY: usize = 4 * 1024;

/// A `webhook-signature` entry for one secret.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> anyhow::Result<String> {
    let key = STANDARD.decode(secret.strip_prefix("whsec_").unwrap_or(secret))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key)?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// The HTTP client of webhook attempts: guarded resolver, no redirects, no proxy.
pub fn client(timeout: Duration, policy: target::Policy) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .dns_resolver(GuardedResolver { policy })
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("MiraiKakaku-Webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// One attempt: POST `body` to `url`, signed with `secrets`.
pub async fn post(
    http: &reqwest::Client,
    url: &str,
    policy: &target::Policy,
    delivery_id: &str,
    secrets: &[&str],
    body: Vec<u8>,
) -> Attempted {
    let url = match target::parse_url(url, policy) {
        Ok(url) => url,
        Err(error) => return Attempted::blocked(error.to_string()),
    };
    if let Err(error) = target::check_resolved(&url, policy).await {
        return match error {
            target::TargetError::Forbidden(_) => Attempted::blocked(error.to_string()),
            other => Attempted::failed(0, other.to_string()),
        };
    }
    let timestamp = chrono::Utc::now().timestamp();
    let mut signatures = Vec::new();
    for secret in secrets {
        match sign(secret, delivery_id, timestamp, &body) {
            Ok(s) => signatures.push(s),
            Err(error) => return Attempted::final_failure(0, format!("bad secret: {error}")),
        }
    }
    let sent = http
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", delivery_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signatures.join(" "))
        .body(body)
        .send()
        .await;
    match sent {
        Ok(response) => {
            let code = i32::from(response.status().as_u16());
            if response.status().is_success() {
                Attempted::succeeded(code)
            } else {
                let (text, cut) = excerpt(response, MAX_ERROR_BODY).await;
                let more = if cut { "…" } else { "" };
                Attempted::failed(code, format!("HTTP {code}: {}{more}", text.trim()))
            }
        }
        Err(error) if error.is_timeout() => Attempted {
            outcome: AttemptOutcome::TimedOut,
            code: 0,
            error: "no answer within the attempt timeout".to_owned(),
            retry: true,
        },
        Err(error) => {
            let detail = error_chain(&error);
            if detail.contains("private, loopback or link-local") {
                Attempted::blocked(detail)
            } else {
                Attempted::failed(0, detail)
            }
        }
    }
}

/// The first `limit` bytes of `response`'s body as text (cut at a character boundary), and
/// whether the body went on past them. Reading stops at the chunk that crosses the limit:
/// dropping the response then closes the connection instead of draining it.
pub async fn excerpt(mut response: reqwest::Response, limit: usize) -> (String, bool) {
    let mut read: Vec<u8> = Vec::with_capacity(limit.min(1024));
    let mut cut = false;
    // A failed read mid-body keeps what arrived: the status is what matters.
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = limit - read.len();
        if chunk.len() >= room {
            read.extend_from_slice(&chunk[..room]);
            cut = chunk.len() > room || response.content_length().is_none_or(|n| n > limit as u64);
            break;
        }
        read.extend_from_slice(&chunk);
    }
    if let Err(error) = std::str::from_utf8(&read)
        && error.error_len().is_none()
    {
        // A character split by the cut.
        read.truncate(error.valid_up_to());
    }
    (String::from_utf8_lossy(&read).into_owned(), cut)
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_excerpt_stops_at_the_limit_on_a_character_boundary() {
        let response =
            |body: &str| reqwest::Response::from(axum::http::Response::new(body.to_owned()));
        let (text, cut) = excerpt(response(&"é".repeat(10)), 5).await;
        assert_eq!((text.as_str(), cut), ("éé", true));
        let (text, cut) = excerpt(response("short"), MAX_ERROR_BODY).await;
        assert_eq!((text.as_str(), cut), ("short", false));
        let (text, cut) = excerpt(response("four"), 4).await;
        assert_eq!((text.as_str(), cut), ("four", false), "exactly the limit");
    }

    #[test]
    fn signature_matches_the_standard_webhooks_reference_vector() {
        // The example of the Standard Webhooks specification and its reference libraries.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(secret, id, 1614265330, body).unwrap(),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }
}
