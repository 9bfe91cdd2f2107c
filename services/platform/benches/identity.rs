//! The cost of internal identity per call: minting a token (the caller's client layer) and
//! verifying it (the callee's server layer: header, key lookup, Ed25519 signature, claims).
//!
//! `cargo bench -p mirai-platform --bench identity`

use criterion::{Criterion, criterion_group, criterion_main};
use mirai_platform::auth::{Principal, Role};
use mirai_platform::grpc::Identity;
use mirai_platform::grpc::identity::{Signer, test_signing_key, trusted_keys_json};

fn identity(c: &mut Criterion) {
    let gateway = Signer::new("mirai-gateway", &test_signing_key());
    let stock_data = Identity::from_keys(
        "mirai-stock-data",
        &test_signing_key(),
        &trusted_keys_json(&test_signing_key(), &["mirai-gateway"]),
    )
    .unwrap();
    let user = Principal {
        user_id: "0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".into(),
        roles: [Role::User, Role::Premium].into(),
        api_key_id: None,
    };
    let token = gateway.sign(&["mirai-stock-data"], Some(&user));
    assert_eq!(
        stock_data.verifier.verify(&token).unwrap().principal,
        Some(user.clone())
    );
    c.bench_function("internal_identity_sign", |b| {
        b.iter(|| gateway.sign(&["mirai-stock-data"], Some(&user)))
    });
    c.bench_function("internal_identity_verify", |b| {
        b.iter(|| stock_data.verifier.verify(&token).unwrap())
    });
}

criterion_group!(benches, identity);
criterion_main!(benches);
