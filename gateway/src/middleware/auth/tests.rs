use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey as _;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};

use super::*;

const ISS: &str = "https://id.mirai.test";
const AUD: &str = "mirai-api";

struct Key {
    kid: &'static str,
    signing: SigningKey,
}

impl Key {
    fn new(kid: &'static str) -> Self {
        Self {
            kid,
            signing: SigningKey::from_bytes(&rand::random::<[u8; 32]>()),
        }
    }

    fn jwk(&self) -> Jwk {
        Jwk {
            kid: self.kid.to_owned(),
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x: URL_SAFE_NO_PAD.encode(self.signing.verifying_key().as_bytes()),
            alg: "EdDSA".into(),
        }
    }

    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some("at+jwt".into());
        header.kid = Some(self.kid.into());
        let der = self.signing.to_pkcs8_der().unwrap();
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(der.as_bytes())).unwrap()
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn claims() -> Value {
    json!({
        "iss": ISS, "aud": AUD, "sub": "0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
        "iat": now(), "nbf": now(), "exp": now() + 600, "jti": "t1",
        "roles": ["user", "premium"]
    })
}

/// A verifier over the key sets `sets` returns in turn (the last one repeats), counting
/// fetches.
fn verifier(sets: Vec<Vec<Jwk>>, max_age: Duration) -> (Verifier, Arc<AtomicUsize>) {
    let fetches = Arc::new(AtomicUsize::new(0));
    let counter = fetches.clone();
    let source: KeySource = Arc::new(move || {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        let keys = sets[n.min(sets.len() - 1)].clone();
        Box::pin(async move { Ok(KeySet { keys, max_age }) })
    });
    (Verifier::new(ISS, AUD, source), fetches)
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

#[tokio::test]
async fn a_valid_token_names_its_principal() {
    let k1 = Key::new("k1");
    let (verifier, _) = verifier(vec![vec![k1.jwk()]], Duration::from_secs(300));
    let principal = verifier.verify(&k1.sign(&claims())).await.unwrap();
    assert_eq!(principal.user_id, "0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b");
    assert_eq!(principal.roles, [Role::User, Role::Premium].into());
}

#[tokio::test]
async fn the_attack_suite_is_refused() {
    let k1 = Key::new("k1");
    let (verifier, _) = verifier(vec![vec![k1.jwk()]], Duration::from_secs(300));
    let good = k1.sign(&claims());
    let parts: Vec<&str> = good.split('.').collect();

    // alg: none, no signature.
    let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"at+jwt","kid":"k1"}"#);
    let alg_none = format!("{none_header}.{}.", parts[1]);
    // HS256 "signed" with the public key as the HMAC secret (key confusion).
    let mut hs = Header::new(Algorithm::HS256);
    hs.typ = Some("at+jwt".into());
    hs.kid = Some("k1".into());
    let public = k1.signing.verifying_key().to_bytes();
    let confused =
        jsonwebtoken::encode(&hs, &claims(), &EncodingKey::from_secret(&public)).unwrap();
    // The payload changed after signing (roles: admin).
    let forged_payload = URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&with(claims(), "roles", json!(["admin"]))).unwrap());
    let tampered = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
    // No typ.
    let mut untyped = Header::new(Algorithm::EdDSA);
    untyped.kid = Some("k1".into());
    let der = k1.signing.to_pkcs8_der().unwrap();
    let no_typ = jsonwebtoken::encode(
        &untyped,
        &claims(),
        &EncodingKey::from_ed_der(der.as_bytes()),
    )
    .unwrap();

    type Expect = fn(&TokenError) -> bool;
    let malformed: Expect = |e| matches!(e, TokenError::Malformed(_));
    let rejected: Expect = |e| matches!(e, TokenError::Rejected(_));
    let cases: [(&str, String, Expect); 11] = [
        ("alg none", alg_none, malformed),
        ("HS256 with the public key", confused, |e| {
            matches!(e, TokenError::Algorithm(_))
        }),
        ("tampered payload", tampered, rejected),
        ("no typ", no_typ, |e| *e == TokenError::Type),
        ("unknown kid", Key::new("k9").sign(&claims()), |e| {
            *e == TokenError::UnknownKey
        }),
        (
            "expired",
            k1.sign(&with(claims(), "exp", json!(now() - 60))),
            rejected,
        ),
        (
            "nbf in the future",
            k1.sign(&with(claims(), "nbf", json!(now() + 60))),
            rejected,
        ),
        (
            "wrong iss",
            k1.sign(&with(claims(), "iss", json!("https://evil.test"))),
            rejected,
        ),
        (
            "wrong aud",
            k1.sign(&with(claims(), "aud", json!("another-api"))),
            rejected,
        ),
        (
            "no sub",
            {
                let mut c = claims();
                c.as_object_mut().unwrap().remove("sub");
                k1.sign(&c)
            },
            rejected,
        ),
        ("garbage", "not.a.jwt".to_owned(), malformed),
    ];
    for (name, token, expect) in cases {
        let error = verifier.verify(&token).await.expect_err(name);
        assert!(
            expect(&error),
            "{name}: refused for the wrong reason: {error}"
        );
    }
    // The valid one still passes after all that.
    assert!(verifier.verify(&good).await.is_ok());
}

#[tokio::test]
async fn an_expired_set_keeps_verifying_while_the_user_service_is_down() {
    let k1 = Key::new("k1");
    let token = k1.sign(&claims());
    let fetches = Arc::new(AtomicUsize::new(0));
    let counter = fetches.clone();
    let jwk = k1.jwk();
    // The first fetch answers; every later one fails (the user service went away).
    let source: KeySource = Arc::new(move || {
        let first = counter.fetch_add(1, Ordering::SeqCst) == 0;
        let keys = vec![jwk.clone()];
        Box::pin(async move {
            if first {
                Ok(KeySet {
                    keys,
                    max_age: Duration::from_millis(50),
                })
            } else {
                Err("user is unavailable".to_owned())
            }
        })
    });
    let verifier = Verifier::new(ISS, AUD, source);
    assert!(verifier.verify(&token).await.is_ok());
    verifier.ready().await.expect("a key set is held");
    tokio::time::sleep(Duration::from_millis(80)).await;
    for _ in 0..20 {
        assert!(verifier.verify(&token).await.is_ok(), "stale-if-error");
    }
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        2,
        "one failed refetch, then the stale set without asking again for STALE_RETRY"
    );
    verifier
        .ready()
        .await
        .expect("still ready on the stale set");
}

#[tokio::test]
async fn a_failing_key_source_is_asked_once_for_many_requests_then_after_a_backoff() {
    let fetches = Arc::new(AtomicUsize::new(0));
    let counter = fetches.clone();
    let source: KeySource = Arc::new(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        Box::pin(async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Err("user is unavailable".to_owned())
        })
    });
    let verifier = Arc::new(Verifier::new(ISS, AUD, source));
    let token = Key::new("k1").sign(&claims());
    // 50 requests at once: one fetch, the others wait for its result.
    let outcomes = futures::future::join_all((0..50).map(|_| {
        let (verifier, token) = (verifier.clone(), token.clone());
        tokio::spawn(async move { verifier.verify(&token).await })
    }))
    .await;
    for outcome in outcomes {
        assert!(matches!(
            outcome.unwrap(),
            Err(TokenError::KeysUnavailable(_))
        ));
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 1, "single flight");
    // Within the backoff nobody asks again.
    for _ in 0..20 {
        assert!(verifier.verify(&token).await.is_err());
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 1, "backing off");
    tokio::time::sleep(BACKOFF_FIRST + Duration::from_millis(50)).await;
    assert!(verifier.verify(&token).await.is_err());
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        2,
        "asked again after the backoff"
    );
    // The second failure doubles the wait: still not asked after the first backoff.
    tokio::time::sleep(BACKOFF_FIRST + Duration::from_millis(50)).await;
    assert!(verifier.verify(&token).await.is_err());
    assert_eq!(fetches.load(Ordering::SeqCst), 2, "the backoff doubled");
}

#[tokio::test]
async fn without_any_key_set_the_gateway_is_not_ready() {
    let source: KeySource = Arc::new(|| Box::pin(async { Err("user is unavailable".to_owned()) }));
    let verifier = Verifier::new(ISS, AUD, source);
    assert!(verifier.ready().await.is_err());
    let token = Key::new("k1").sign(&claims());
    assert!(matches!(
        verifier.verify(&token).await,
        Err(TokenError::KeysUnavailable(_))
    ));
}

#[tokio::test]
async fn a_verified_token_is_remembered_and_a_refused_one_is_not() {
    let k1 = Key::new("k1");
    let (verifier, fetches) = verifier(vec![vec![k1.jwk()]], Duration::from_secs(300));
    let token = k1.sign(&claims());
    let first = verifier.verify_until(&token).await.unwrap();
    assert!(verifier.verified.contains_key(&token));
    assert_eq!(verifier.verify_until(&token).await.unwrap(), first);
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
    // A token with one character of its signature changed: refused, and never remembered.
    let at = token.len() - 10;
    let swapped = if &token[at..=at] == "A" { "B" } else { "A" };
    let tampered = format!("{}{swapped}{}", &token[..at], &token[at + 1..]);
    assert!(verifier.verify(&tampered).await.is_err());
    assert!(!verifier.verified.contains_key(&tampered));
    // An expired token is refused and not remembered either.
    let expired = k1.sign(&with(claims(), "exp", json!(now() - 60)));
    assert!(verifier.verify(&expired).await.is_err());
    assert!(!verifier.verified.contains_key(&expired));
}

#[tokio::test]
async fn a_rotated_out_key_stops_working_when_the_set_expires() {
    let (k1, k2) = (Key::new("k1"), Key::new("k2"));
    let old = k1.sign(&claims());
    let new = k2.sign(&claims());
    // First fetch: current k1 + next k2. Later fetches: k1 retired.
    let (verifier, _) = verifier(
        vec![vec![k1.jwk(), k2.jwk()], vec![k2.jwk()]],
        Duration::from_millis(50),
    );
    assert!(verifier.verify(&old).await.is_ok());
    assert!(
        verifier.verify(&new).await.is_ok(),
        "the next key is published ahead"
    );
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(
        verifier.verify(&old).await.unwrap_err(),
        TokenError::UnknownKey
    );
    assert!(verifier.verify(&new).await.is_ok());
}

#[tokio::test]
async fn unknown_kids_refresh_the_set_at_most_once_per_interval() {
    let (k1, k2) = (Key::new("k1"), Key::new("k2"));
    let (verifier, fetches) = verifier(
        vec![vec![k1.jwk()], vec![k1.jwk(), k2.jwk()]],
        Duration::from_secs(300),
    );
    assert!(verifier.verify(&k1.sign(&claims())).await.is_ok());
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
    // k2 appears only in the second set, but the first fetch was just now: no refetch yet.
    for _ in 0..20 {
        let forged = Key::new("k7").sign(&claims());
        assert!(verifier.verify(&forged).await.is_err());
    }
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        1,
        "forged kids do not hammer the source"
    );
}

#[tokio::test]
async fn without_a_usable_key_set_the_fetch_backoff_stays_short() {
    let source: KeySource = Arc::new(|| Box::pin(async { Err("user is unavailable".to_owned()) }));
    let verifier = Verifier::new(ISS, AUD, source);
    // As after a long outage at startup: many failures, no key set ever held.
    verifier.cache.write().unwrap().failures = 10;
    let token = Key::new("k1").sign(&claims());
    assert!(verifier.verify(&token).await.is_err());
    let cache = verifier.read();
    assert_eq!(cache.failures, 11);
    assert_eq!(
        cache.retry_at.unwrap() - cache.last_fetch.unwrap(),
        NO_KEYS_RETRY,
        "asked again within a second, not after STALE_RETRY"
    );
}
