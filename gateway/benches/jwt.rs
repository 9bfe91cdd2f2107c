//! The cost of verifying one access token at the edge (header parse, algorithm and `typ`
//! checks, key lookup in the cached JWKS, Ed25519 signature, claims), per request.
//!
//! `cargo bench -p mirai-gateway --bench jwt`

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, criterion_group, criterion_main};
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mirai_gateway::middleware::auth::{Jwk, KeySet, KeySource, Verifier};

fn jwt(c: &mut Criterion) {
    let signing = SigningKey::from_bytes(&[7u8; 32]);
    let jwk = Jwk {
        kid: "k1".into(),
        kty: "OKP".into(),
        crv: "Ed25519".into(),
        x: URL_SAFE_NO_PAD.encode(signing.verifying_key().as_bytes()),
        alg: "EdDSA".into(),
    };
    let source: KeySource = Arc::new(move || {
        let keys = vec![jwk.clone()];
        Box::pin(async move {
            Ok(KeySet {
                keys,
                max_age: Duration::from_secs(3600),
            })
        })
    });
    let verifier = Verifier::new("https://mirai.local", "mirai-api", source);
    let mut header = Header::new(Algorithm::EdDSA);
    header.typ = Some("at+jwt".into());
    header.kid = Some("k1".into());
    let now = chrono::Utc::now().timestamp();
    let claims = serde_json::json!({
        "iss": "https://mirai.local", "aud": "mirai-api", "sub": "0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
        "iat": now, "nbf": now, "exp": now + 3600, "jti": "j", "roles": ["user", "premium"]
    });
    let der = signing.to_pkcs8_der().unwrap();
    let token =
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ed_der(der.as_bytes())).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // The first call fetches the key set; every later one hits the cache, as in production.
    runtime.block_on(verifier.verify(&token)).unwrap();
    c.bench_function("verify_access_token", |b| {
        b.iter(|| runtime.block_on(verifier.verify(&token)).unwrap())
    });
}

criterion_group!(benches, jwt);
criterion_main!(benches);
