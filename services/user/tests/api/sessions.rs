//! Registration, login, tokens, lockout and refresh-token families.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use mirai_proto::user::v1 as pb;
use mirai_user::config::{Argon2Config, AuthConfig};

use crate::helpers::{PASSWORD, as_user, client, spawn_app, spawn_on, spawn_with};

#[tokio::test]
async fn register_validation_errors_name_the_field() {
    let mut app = spawn_app().await;
    let cases = [
        ("not-an-email", PASSWORD, "email"),
        ("alice@example.com", "too short", "password"),
        ("alice@example.com", "unbelievable", "password"),
        (
            "alice@example.com",
            "alice@example.com and more",
            "password",
        ),
    ];
    for (email, password, field) in cases {
        let status = app
            .client
            .register(pb::RegisterRequest {
                email: email.into(),
                password: password.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "{email}/{password}"
        );
        assert!(
            status.message().starts_with(&format!("{field}:")),
            "{email}/{password}: {}",
            status.message()
        );
    }
    let status = app
        .client
        .register(pb::RegisterRequest {
            email: "bob@example.com".into(),
            password: PASSWORD.into(),
            time_zone: Some("Mars/Olympus".into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(status.message().starts_with("time_zone:"), "{status:?}");
}

#[tokio::test]
async fn common_own_email_and_short_passwords_are_refused_a_long_passphrase_is_not() {
    let mut app = spawn_app().await;
    for password in [
        "UNBELIEVABLE",
        "xyzxyz",
        "carol.jones-2024-secret",
        &"x".repeat(129),
    ] {
        let status = app
            .client
            .register(pb::RegisterRequest {
                email: "Carol.Jones@Example.com".into(),
                password: password.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{password}");
    }
    let user = app.register(" Carol.Jones@EXAMPLE.com ").await;
    assert_eq!(user.email, "Carol.Jones@example.com");
    assert_eq!(user.display_name, "Carol.Jones");
    assert_eq!(user.roles, [pb::Role::User as i32]);
    // The same address in another case is the same account: no second one (the answer does
    // not tell; see lockout.rs).
    let taken = app
        .client
        .register(pb::RegisterRequest {
            email: "carol.jones@example.com".into(),
            password: PASSWORD.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_ne!(taken.user_id, user.user_id);
    let accounts: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(accounts, 1);
    let events: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outbox WHERE event_type = 'mirai.user.registered.v1'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(events, 1);
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM users")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(hash.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{hash}");
}

#[tokio::test]
async fn login_token_verifies_against_the_jwks() {
    let mut app = spawn_app().await;
    let user = app.register("dave@example.com").await;
    let login = app
        .login("DAVE@example.com", PASSWORD, "192.0.2.1")
        .await
        .unwrap();
    let tokens = login.tokens.unwrap();
    assert_eq!(tokens.token_type, "Bearer");
    assert_eq!(tokens.access_token_expires_in.unwrap().seconds, 900);
    assert_eq!(tokens.refresh_token.len(), 43);

    let jwks = app
        .client
        .get_jwks(pb::GetJwksRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(jwks.keys.len() >= 2, "current and next are published");
    assert!(
        jwks.keys
            .iter()
            .all(|k| k.kty == "OKP" && k.crv == "Ed25519")
    );
    let set: JwkSet = serde_json::from_str(&jwks.json).unwrap();
    let header = jsonwebtoken::decode_header(&tokens.access_token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(
        header.kid.as_deref(),
        Some(jwks.keys[0].kid.as_str()),
        "signed by current"
    );
    let jwk = set.find(header.kid.as_deref().unwrap()).unwrap();
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&["https://mirai.local"]);
    validation.set_audience(&["mirai-api"]);
    validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
    let data = jsonwebtoken::decode::<serde_json::Value>(
        &tokens.access_token,
        &DecodingKey::from_jwk(jwk).unwrap(),
        &validation,
    )
    .unwrap();
    assert_eq!(data.claims["sub"], user.user_id.as_str());
    assert_eq!(data.claims["roles"], serde_json::json!(["user"]));
    assert!(data.claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
    let (exp, iat) = (
        data.claims["exp"].as_i64().unwrap(),
        data.claims["iat"].as_i64().unwrap(),
    );
    assert!(exp - iat <= 900);

    let introspected = app
        .client
        .introspect_token(pb::IntrospectTokenRequest {
            access_token: tokens.access_token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(introspected.active);
    assert_eq!(introspected.principal.unwrap().user_id, user.user_id);
    let forged = app
        .client
        .introspect_token(pb::IntrospectTokenRequest {
            access_token: format!("{}x", tokens.access_token),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!forged.active);

    let discovery = app
        .client
        .get_discovery_document(pb::GetDiscoveryDocumentRequest {
            public_base_url: "https://api.example.com/".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        discovery.jwks_uri,
        "https://api.example.com/.well-known/jwks.json"
    );
    assert_eq!(discovery.issuer, "https://mirai.local");
    let doc: serde_json::Value = serde_json::from_str(&discovery.json).unwrap();
    assert_eq!(doc["jwks_uri"], discovery.jwks_uri.as_str());

    let kinds = app.audit_kinds(&user.user_id).await;
    assert_eq!(kinds, ["registered", "login_succeeded"]);
    let ua: String = sqlx::query_scalar(
        "SELECT user_agent FROM audit_events WHERE kind = 'login_succeeded' AND ip = '192.0.2.1'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(ua, "tests/1.0");
}

#[tokio::test]
async fn unknown_email_and_wrong_password_fail_identically() {
    let mut app = spawn_app().await;
    let user = app.register("erin@example.com").await;
    let wrong = app
        .login("erin@example.com", "not the password at all", "192.0.2.2")
        .await
        .unwrap_err();
    let unknown = app
        .login("nobody@example.com", "not the password at all", "192.0.2.3")
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), tonic::Code::Unauthenticated);
    assert_eq!(wrong.code(), unknown.code());
    assert_eq!(wrong.message(), unknown.message());
    let failures: Vec<Option<uuid::Uuid>> = sqlx::query_scalar(
        "SELECT user_id FROM audit_events WHERE kind = 'login_failed' ORDER BY audit_event_id",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(failures, [Some(user.user_id.parse().unwrap()), None]);
}

fn strict_lockout() -> AuthConfig {
    let mut auth = AuthConfig::for_tests();
    auth.lockout.pair_failures = 3;
    auth.lockout.account_failures = 3;
    auth.lockout.account_ips = 3;
    auth.lockout.ip_failures = 100;
    auth
}

#[tokio::test]
async fn failures_from_several_ips_lock_the_account_until_an_admin_unlocks_it() {
    let mut app = spawn_with(strict_lockout()).await;
    let user = app.register("frank@example.com").await;
    for attempt in 0..3 {
        let status = app
            .login(
                "frank@example.com",
                "wrong password here",
                &format!("198.51.100.{attempt}"),
            )
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            tonic::Code::Unauthenticated,
            "attempt {attempt}"
        );
    }
    // Locked: even the right password is refused, with a retry-after in whole seconds.
    let locked = app
        .login("frank@example.com", PASSWORD, "198.51.100.99")
        .await
        .unwrap_err();
    assert_eq!(locked.code(), tonic::Code::ResourceExhausted);
    let retry: u64 = locked
        .metadata()
        .get("retry-after")
        .expect("retry-after")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // An unknown email locks the same way (no enumeration through lockouts): here its pair.
    for _ in 0..3 {
        let _ = app
            .login("ghost@example.com", "wrong password here", "198.51.100.7")
            .await;
    }
    let ghost = app
        .login("ghost@example.com", "wrong password here", "198.51.100.7")
        .await
        .unwrap_err();
    assert_eq!(ghost.code(), tonic::Code::ResourceExhausted);

    let profile = app
        .client
        .get_profile(as_user(
            pb::GetProfileRequest {
                user_id: user.user_id.clone(),
            },
            &user.user_id,
            "user",
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert!(profile.locked_until.is_some());

    let admin_id = uuid::Uuid::now_v7().to_string();
    app.client
        .unlock_account(as_user(
            pb::UnlockAccountRequest {
                actor_user_id: admin_id.clone(),
                user_id: user.user_id.clone(),
                client: client("203.0.113.1"),
            },
            &admin_id,
            "user,admin",
        ))
        .await
        .unwrap();
    app.login("frank@example.com", PASSWORD, "198.51.100.99")
        .await
        .expect("unlocked");
    let kinds = app.audit_kinds(&user.user_id).await;
    assert!(kinds.contains(&"locked_out".to_owned()), "{kinds:?}");
    assert!(kinds.contains(&"unlocked".to_owned()), "{kinds:?}");
}

#[tokio::test]
async fn repeated_failures_from_one_ip_lock_that_ip() {
    let mut auth = AuthConfig::for_tests();
    auth.lockout.ip_failures = 3;
    let mut app = spawn_with(auth).await;
    app.register("gina@example.com").await;
    for n in 0..3 {
        let _ = app
            .login(
                &format!("spray{n}@example.com"),
                "wrong password here",
                "203.0.113.50",
            )
            .await;
    }
    let status = app
        .login("gina@example.com", PASSWORD, "203.0.113.50")
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    app.login("gina@example.com", PASSWORD, "203.0.113.51")
        .await
        .expect("another IP is not locked");
}

#[tokio::test]
async fn refresh_rotates_the_token() {
    let mut app = spawn_app().await;
    app.register("hank@example.com").await;
    let first = app
        .login("hank@example.com", PASSWORD, "192.0.2.1")
        .await
        .unwrap()
        .tokens
        .unwrap();
    let second = app.refresh(&first.refresh_token).await.unwrap();
    assert_ne!(second.refresh_token, first.refresh_token);
    assert!(!second.access_token.is_empty());
    let third = app.refresh(&second.refresh_token).await.unwrap();
    assert_ne!(third.refresh_token, second.refresh_token);
    // Stored only as hashes.
    let plain: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM refresh_tokens WHERE encode(token_hash, 'escape') = $1",
    )
    .bind(&third.refresh_token)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(plain, 0);
}

#[tokio::test]
async fn refresh_token_reuse_revokes_the_family() {
    let mut app = spawn_app().await;
    let user = app.register("ivy@example.com").await;
    let stolen = app
        .login("ivy@example.com", PASSWORD, "192.0.2.1")
        .await
        .unwrap()
        .tokens
        .unwrap();
    let other_session = app
        .login("ivy@example.com", PASSWORD, "192.0.2.1")
        .await
        .unwrap()
        .tokens
        .unwrap();
    // The attacker refreshes first; the victim's client then presents the spent token.
    let attacker = app.refresh(&stolen.refresh_token).await.unwrap();
    let reuse = app.refresh(&stolen.refresh_token).await.unwrap_err();
    assert_eq!(reuse.code(), tonic::Code::Unauthenticated);
    // Both tokens of the family are dead now.
    let attacker_next = app.refresh(&attacker.refresh_token).await.unwrap_err();
    assert_eq!(attacker_next.code(), tonic::Code::Unauthenticated);
    // Another session (family) is unaffected.
    app.refresh(&other_session.refresh_token)
        .await
        .expect("other family lives");
    let kinds = app.audit_kinds(&user.user_id).await;
    assert!(
        kinds.contains(&"refresh_token_reused".to_owned()),
        "{kinds:?}"
    );
}

#[tokio::test]
async fn logout_change_password_and_logout_everywhere_revoke_sessions() {
    let mut app = spawn_app().await;
    let user = app.register("jack@example.com").await;
    let a = app
        .login("jack@example.com", PASSWORD, "192.0.2.1")
        .await
        .unwrap()
        .tokens
        .unwrap();
    let b = app
        .login("jack@example.com", PASSWORD, "192.0.2.1")
        .await
        .unwrap()
        .tokens
        .unwrap();
    let out = app
        .client
        .logout(pb::LogoutRequest {
            refresh_token: a.refresh_token.clone(),
            client: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(out.revoked_families, 1);
    assert!(app.refresh(&a.refresh_token).await.is_err());

    let new_password = "a completely different passphrase";
    let wrong = app
        .client
        .change_password(as_user(
            pb::ChangePasswordRequest {
                user_id: user.user_id.clone(),
                current_password: "not my password!!".into(),
                new_password: new_password.into(),
                client: None,
            },
            &user.user_id,
            "user",
        ))
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), tonic::Code::Unauthenticated);
    let other = uuid::Uuid::now_v7().to_string();
    let denied = app
        .client
        .change_password(as_user(
            pb::ChangePasswordRequest {
                user_id: user.user_id.clone(),
                current_password: PASSWORD.into(),
                new_password: new_password.into(),
                client: None,
            },
            &other,
            "user,admin",
        ))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    let changed = app
        .client
        .change_password(as_user(
            pb::ChangePasswordRequest {
                user_id: user.user_id.clone(),
                current_password: PASSWORD.into(),
                new_password: new_password.into(),
                client: None,
            },
            &user.user_id,
            "user",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(changed.revoked_families, 1, "b's family");
    assert!(app.refresh(&b.refresh_token).await.is_err());
    assert!(
        app.login("jack@example.com", PASSWORD, "192.0.2.1")
            .await
            .is_err()
    );
    let c = app
        .login("jack@example.com", new_password, "192.0.2.1")
        .await
        .unwrap()
        .tokens
        .unwrap();

    let everywhere = app
        .client
        .logout_everywhere(as_user(
            pb::LogoutEverywhereRequest {
                user_id: user.user_id.clone(),
                client: None,
            },
            &user.user_id,
            "user",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        everywhere.revoked_families, 2,
        "c and the change-password session"
    );
    assert!(app.refresh(&c.refresh_token).await.is_err());
    assert!(
        app.refresh(&changed.tokens.unwrap().refresh_token)
            .await
            .is_err()
    );
    let kinds = app.audit_kinds(&user.user_id).await;
    assert!(kinds.contains(&"password_changed".to_owned()), "{kinds:?}");
    assert!(kinds.contains(&"logged_out".to_owned()), "{kinds:?}");
}

#[tokio::test]
async fn login_rehashes_when_the_parameters_rose() {
    let weak = AuthConfig::for_tests();
    let mut app = spawn_with(weak.clone()).await;
    app.register("kate@example.com").await;
    let url = app.db.as_ref().unwrap().url().to_owned();
    let stored = || async {
        sqlx::query_scalar::<_, String>("SELECT password_hash FROM users")
            .fetch_one(&app.pool)
            .await
            .unwrap()
    };
    assert!(stored().await.contains("m=1024,t=1,p=1"));

    let mut stronger = weak.clone();
    stronger.argon2 = Argon2Config {
        memory_kib: 2048,
        iterations: 2,
        parallelism: 1,
    };
    let mut restarted = spawn_on(&url, stronger).await;
    restarted
        .login("kate@example.com", PASSWORD, "192.0.2.1")
        .await
        .unwrap();
    let rehashed = stored().await;
    assert!(rehashed.contains("m=2048,t=2,p=1"), "{rehashed}");
    // Still the same password.
    restarted
        .login("kate@example.com", PASSWORD, "192.0.2.1")
        .await
        .unwrap();
    assert!(
        restarted
            .login("kate@example.com", "wrong password here", "192.0.2.1")
            .await
            .is_err()
    );
}
