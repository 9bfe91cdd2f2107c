//! Signing-key publication and discovery: the JWKS and the OpenID-style discovery document.

use mirai_proto::user::v1 as pb;

use crate::context::Context;
use crate::error::{Error, Result};

/// The published signing keys, with how long they may be cached.
pub fn jwks(ctx: &Context) -> pb::GetJwksResponse {
    let (keys, json) = ctx.keys.jwks();
    pb::GetJwksResponse {
        keys,
        json,
        max_age: Some(prost_types::Duration {
            seconds: ctx.config.keys.jwks_max_age.as_secs() as i64,
            nanos: 0,
        }),
    }
}

/// The discovery document, its URLs under `base` (the issuer when empty).
pub fn discovery_document(ctx: &Context, base: String) -> Result<pb::GetDiscoveryDocumentResponse> {
    let base = if base.trim().is_empty() {
        ctx.config.issuer.clone()
    } else if base.starts_with("https://") || base.starts_with("http://") {
        base
    } else {
        return Err(Error::invalid(
            "public_base_url",
            "must be an absolute http(s) URL",
        ));
    };
    let base = base.trim_end_matches('/');
    let response = pb::GetDiscoveryDocumentResponse {
        issuer: ctx.config.issuer.clone(),
        jwks_uri: format!("{base}/.well-known/jwks.json"),
        token_endpoint: format!("{base}/v1/auth/login"),
        revocation_endpoint: format!("{base}/v1/auth/logout"),
        token_signing_alg_values_supported: vec!["EdDSA".to_owned()],
        json: String::new(),
    };
    let json = serde_json::json!({
        "issuer": response.issuer,
        "jwks_uri": response.jwks_uri,
        "token_endpoint": response.token_endpoint,
        "revocation_endpoint": response.revocation_endpoint,
        "token_endpoint_auth_methods_supported": ["none"],
        "grant_types_supported": ["password", "refresh_token"],
        "id_token_signing_alg_values_supported": ["EdDSA"],
        "token_signing_alg_values_supported": response.token_signing_alg_values_supported,
    })
    .to_string();
    Ok(pb::GetDiscoveryDocumentResponse { json, ..response })
}
