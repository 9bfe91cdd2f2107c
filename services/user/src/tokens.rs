//! Access tokens (JWT, RFC 9068 profile) and opaque secrets (refresh tokens, API keys).

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::keys::KeyRing;
use crate::password::fill_random;

/// The `typ` header of access tokens (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";

/// Claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    pub roles: Vec<String>,
}

/// A signed access token and its expiry.
pub struct AccessToken {
    pub token: String,
    pub expires_at: DateTime<Utc>,
    pub ttl: Duration,
}

/// Issues and verifies access tokens with the key ring.
#[derive(Debug, Clone)]
pub struct TokenIssuer {
    pub issuer: String,
    pub audience: String,
    pub ttl: Duration,
}

impl TokenIssuer {
    pub fn issue(
        &self,
        keys: &KeyRing,
        user_id: &str,
        roles: &[String],
        now: DateTime<Utc>,
    ) -> Result<AccessToken, jsonwebtoken::errors::Error> {
        let expires_at = now + self.ttl;
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: user_id.to_owned(),
            exp: expires_at.timestamp(),
            iat: now.timestamp(),
            nbf: now.timestamp(),
            jti: uuid::Uuid::now_v7().to_string(),
            roles: roles.to_vec(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some(ACCESS_TOKEN_TYPE.to_owned());
        header.kid = Some(keys.current.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, keys.current.encoding())?;
        Ok(AccessToken {
            token,
            expires_at: DateTime::from_timestamp(claims.exp, 0).unwrap_or(expires_at),
            ttl: self.ttl,
        })
    }

    /// Verifies signature (EdDSA only, a published `kid`), `typ`, `iss`, `aud`, `exp`, `nbf`.
    /// `None` for any failure: callers never learn which check failed.
    pub fn verify(&self, keys: &KeyRing, token: &str) -> Option<Claims> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        if header.alg != Algorithm::EdDSA
            || !header
                .typ
                .as_deref()
                .is_some_and(|t| t.eq_ignore_ascii_case(ACCESS_TOKEN_TYPE))
        {
            return None;
        }
        let key = keys.find(header.kid.as_deref()?)?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 5;
        jsonwebtoken::decode::<Claims>(token, key.decoding(), &validation)
            .ok()
            .map(|data| data.claims)
    }
}

/// A new opaque secret: 256 random bits, base64url without padding (43 characters).
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    fill_random(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The stored form of a high-entropy secret. A fast hash suffices: 256 random bits cannot be
/// guessed, and the hash only keeps a database leak from yielding usable tokens.
pub fn secret_hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer() -> TokenIssuer {
        TokenIssuer {
            issuer: "https://issuer.test".into(),
            audience: "api".into(),
            ttl: Duration::from_secs(900),
        }
    }

    #[test]
    fn issued_tokens_verify_and_others_do_not() {
        let keys = KeyRing::ephemeral();
        let now = Utc::now();
        let token = issuer().issue(&keys, "u1", &["user".into()], now).unwrap();
        let claims = issuer().verify(&keys, &token.token).unwrap();
        assert_eq!(claims.sub, "u1");
        assert_eq!(claims.exp - claims.iat, 900);
        let other = TokenIssuer {
            audience: "other".into(),
            ..issuer()
        };
        assert!(other.verify(&keys, &token.token).is_none(), "wrong aud");
        assert!(
            issuer()
                .verify(&KeyRing::ephemeral(), &token.token)
                .is_none(),
            "unknown kid"
        );
        let expired = issuer()
            .issue(&keys, "u1", &[], now - chrono::Duration::hours(1))
            .unwrap();
        assert!(issuer().verify(&keys, &expired.token).is_none(), "expired");
        let mut tampered = token.token.clone();
        tampered.insert(tampered.find('.').unwrap() + 2, 'A');
        assert!(issuer().verify(&keys, &tampered).is_none(), "tampered");
    }

    #[test]
    fn secrets_are_256_bit_base64url() {
        let secret = new_secret();
        assert_eq!(secret.len(), 43);
        assert_ne!(secret, new_secret());
        assert_eq!(secret_hash(&secret).len(), 32);
    }
}
