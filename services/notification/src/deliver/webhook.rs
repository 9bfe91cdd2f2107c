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
pub fn client(timeout: Duration, allow_private: bool) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .dns_resolver(GuardedResolver { allow_private })
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
    allow_private: bool,
    delivery_id: &str,
    secrets: &[&str],
    body: Vec<u8>,
) -> Attempted {
    let url = match target::parse_url(url, allow_private) {
        Ok(url) => url,
        Err(error) => return Attempted::blocked(error.to_string()),
    };
    if let Err(error) = target::check_resolved(&url, allow_private).await {
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
                let text = response.text().await.unwrap_or_default();
                Attempted::failed(code, format!("HTTP {code}: {}", text.trim()))
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
