//! Push through the FCM HTTP v1 API.
//!
//! The service-account key (a mounted secret) signs a JWT assertion (RS256) that the token
//! endpoint (`token_uri`, OAuth 2.0 JWT bearer grant, RFC 7523) exchanges for an access token
//! with the `firebase.messaging` scope; the token is cached until shortly before it expires.
//! Each device gets `POST {endpoint}/v1/projects/{project_id}/messages:send` with
//! `{"message": {"token", "notification": {"title", "body"}, "data"}}`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mirai_proto::notification::v1::AttemptOutcome;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::Attempted;
use super::webhook::{MAX_ERROR_BODY, excerpt};
use crate::config::FcmConfig;

const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

/// The fields of a service-account JSON key that are used.
#[derive(Debug, Clone, Deserialize)]
pub struct ServiceAccount {
    pub project_id: String,
    pub client_email: String,
    pub private_key: String,
    #[serde(default)]
    pub private_key_id: String,
    pub token_uri: String,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: u64,
}

/// How a push ended for the device.
pub enum PushResult {
    Attempted(Attempted),
    /// FCM says the registration token is no longer valid: the device should be removed.
    Unregistered(Attempted),
}

/// The FCM sender.
pub struct Push {
    http: reqwest::Client,
    account: ServiceAccount,
    key: EncodingKey,
    endpoint: String,
    token_uri: String,
    token: Mutex<Option<(String, Instant)>>,
}

impl Push {
    pub fn new(config: &FcmConfig) -> anyhow::Result<Self> {
        let raw = std::fs::read_to_string(&config.credentials_file)?;
        let account: ServiceAccount =
            serde_json::from_str(&raw).map_err(|e| anyhow::anyhow!("service-account key: {e}"))?;
        let key = EncodingKey::from_rsa_pem(account.private_key.as_bytes())?;
        let token_uri = config
            .token_uri
            .clone()
            .unwrap_or_else(|| account.token_uri.clone());
        Ok(Self {
            http: reqwest::Client::builder().timeout(config.timeout).build()?,
            endpoint: config.endpoint.trim_end_matches('/').to_owned(),
            token_uri,
            key,
            account,
            token: Mutex::new(None),
        })
    }

    async fn access_token(&self, refresh: bool) -> Result<String, Attempted> {
        let mut cached = self.token.lock().await;
        if !refresh
            && let Some((token, until)) = cached.as_ref()
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            iss: &self.account.client_email,
            scope: SCOPE,
            aud: &self.token_uri,
            iat: now,
            exp: now + 3600,
        };
        let mut header = Header::new(Algorithm::RS256);
        if !self.account.private_key_id.is_empty() {
            header.kid = Some(self.account.private_key_id.clone());
        }
        let assertion = jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| Attempted::final_failure(0, format!("signing the assertion: {e}")))?;
        let response = self
            .http
            .post(&self.token_uri)
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", assertion.as_str()),
            ])
            .send()
            .await
            .map_err(|e| Attempted::failed(0, format!("token endpoint: {e}")))?;
        let status = response.status();
        if !status.is_success() {
            let (text, cut) = excerpt(response, MAX_ERROR_BODY).await;
            let more = if cut { "…" } else { "" };
            return Err(Attempted::failed(
                i32::from(status.as_u16()),
                format!("token endpoint HTTP {status}: {}{more}", text.trim()),
            ));
        }
        let token: TokenResponse = response
            .json()
            .await
            .map_err(|e| Attempted::failed(0, format!("token endpoint answer: {e}")))?;
        // Renew a minute early.
        let lifetime = Duration::from_secs(token.expires_in.max(120) - 60);
        *cached = Some((token.access_token.clone(), Instant::now() + lifetime));
        Ok(token.access_token)
    }

    /// Sends one notification to one registration token.
    pub async fn send(
        &self,
        device_token: &str,
        title: &str,
        body: &str,
        data: &BTreeMap<String, String>,
    ) -> PushResult {
        let url = format!(
            "{}/v1/projects/{}/messages:send",
            self.endpoint, self.account.project_id
        );
        let message = serde_json::json!({
            "message": {
                "token": device_token,
                "notification": { "title": title, "body": body },
                "data": data,
            }
        });
        for refresh in [false, true] {
            let token = match self.access_token(refresh).await {
                Ok(t) => t,
                Err(failed) => return PushResult::Attempted(failed),
            };
            let response = match self
                .http
                .post(&url)
                .bearer_auth(token)
                .json(&message)
                .send()
                .await
            {
                Ok(r) => r,
                Err(e) if e.is_timeout() => {
                    return PushResult::Attempted(Attempted {
                        outcome: AttemptOutcome::TimedOut,
                        code: 0,
                        error: "no answer within the timeout".into(),
                        retry: true,
                    });
                }
                Err(e) => return PushResult::Attempted(Attempted::failed(0, e.to_string())),
            };
            let status = response.status();
            let code = i32::from(status.as_u16());
            if status.is_success() {
                return PushResult::Attempted(Attempted::succeeded(code));
            }
            // The provider's (or whatever answers at the configured endpoint's) error body is
            // read only up to a few KiB, like a webhook's.
            let (text, cut) = excerpt(response, MAX_ERROR_BODY).await;
            if status == reqwest::StatusCode::UNAUTHORIZED && !refresh {
                continue; // the cached token was revoked: get a new one once
            }
            let more = if cut { "…" } else { "" };
            let error = format!("FCM HTTP {code}: {}{more}", text.trim());
            return if status == reqwest::StatusCode::NOT_FOUND || text.contains("UNREGISTERED") {
                PushResult::Unregistered(Attempted::final_failure(code, error))
            } else if status.is_client_error() && status != reqwest::StatusCode::TOO_MANY_REQUESTS {
                PushResult::Attempted(Attempted::final_failure(code, error))
            } else {
                PushResult::Attempted(Attempted::failed(code, error))
            };
        }
        PushResult::Attempted(Attempted::failed(
            401,
            "FCM refused the access token".into(),
        ))
    }
}
