//! Roles, the audit log, profile and API keys.

use mirai_proto::user::v1 as pb;

use crate::helpers::{PASSWORD, as_user, client, spawn_app};

#[tokio::test]
async fn granting_a_role_emits_an_event_and_is_audited() {
    let mut app = spawn_app().await;
    let user = app.register("lena@example.com").await;
    let admin = uuid::Uuid::now_v7().to_string();
    let grant = |who: &str, roles: &str| {
        as_user(
            pb::GrantRoleRequest {
                actor_user_id: who.to_owned(),
                user_id: user.user_id.clone(),
                role: pb::Role::Premium as i32,
                reason: "paid".into(),
                client: client("203.0.113.9"),
            },
            who,
            roles,
        )
    };
    // A plain user cannot grant roles, even to themselves.
    let denied = app
        .client
        .grant_role(grant(&user.user_id, "user"))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    let anonymous = app
        .client
        .grant_role(pb::GrantRoleRequest {
            user_id: user.user_id.clone(),
            role: pb::Role::Premium as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), tonic::Code::Unauthenticated);

    let granted = app
        .client
        .grant_role(grant(&admin, "user,admin"))
        .await
        .unwrap()
        .into_inner();
    assert!(granted.changed);
    assert_eq!(
        granted.user.unwrap().roles,
        [pb::Role::User as i32, pb::Role::Premium as i32]
    );
    let again = app
        .client
        .grant_role(grant(&admin, "user,admin"))
        .await
        .unwrap()
        .into_inner();
    assert!(!again.changed, "idempotent");
    let events: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outbox WHERE event_type = 'mirai.user.role.changed.v1'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(events, 1, "one event for one change");

    // The new role is in the next access token.
    let login = app
        .login("lena@example.com", PASSWORD, "192.0.2.1")
        .await
        .unwrap();
    let token = login.tokens.unwrap().access_token;
    let payload = token.split('.').nth(1).unwrap();
    use base64::Engine as _;
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["roles"], serde_json::json!(["user", "premium"]));

    let user_role = app
        .client
        .revoke_role(as_user(
            pb::RevokeRoleRequest {
                actor_user_id: admin.clone(),
                user_id: user.user_id.clone(),
                role: pb::Role::User as i32,
                ..Default::default()
            },
            &admin,
            "admin",
        ))
        .await
        .unwrap_err();
    assert_eq!(user_role.code(), tonic::Code::FailedPrecondition);

    let audit = app
        .client
        .query_audit_log(as_user(
            pb::QueryAuditLogRequest {
                user_id: user.user_id.clone(),
                kinds: vec![pb::AuditEventKind::RoleChanged as i32],
                ..Default::default()
            },
            &admin,
            "user,admin",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(audit.events.len(), 1);
    let entry = &audit.events[0];
    assert_eq!(entry.actor_user_id, admin);
    assert_eq!(entry.ip, "203.0.113.9");
    assert_eq!(entry.details["role"], "premium");
    let not_admin = app
        .client
        .query_audit_log(as_user(
            pb::QueryAuditLogRequest::default(),
            &user.user_id,
            "user,premium",
        ))
        .await
        .unwrap_err();
    assert_eq!(not_admin.code(), tonic::Code::PermissionDenied);
}

#[tokio::test]
async fn audit_log_pages_newest_first() {
    let mut app = spawn_app().await;
    let user = app.register("mia@example.com").await;
    for _ in 0..3 {
        app.login("mia@example.com", PASSWORD, "192.0.2.1")
            .await
            .unwrap();
    }
    let admin = uuid::Uuid::now_v7().to_string();
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = app
            .client
            .query_audit_log(as_user(
                pb::QueryAuditLogRequest {
                    user_id: user.user_id.clone(),
                    page_size: 3,
                    page_token: token.clone(),
                    ..Default::default()
                },
                &admin,
                "admin",
            ))
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.events.into_iter().map(|e| e.kind));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    use pb::AuditEventKind as K;
    assert_eq!(
        seen,
        [
            K::LoginSucceeded,
            K::LoginSucceeded,
            K::LoginSucceeded,
            K::Registered
        ]
        .map(|k| k as i32)
    );
}

#[tokio::test]
async fn profile_updates_validate_and_a_watchlist_change_emits_an_event() {
    let mut app = spawn_app().await;
    let user = app.register("noah@example.com").await;
    let update = |paths: &[&str], patch: pb::User| {
        as_user(
            pb::UpdateProfileRequest {
                user_id: user.user_id.clone(),
                user: Some(patch),
                update_mask: Some(prost_types::FieldMask {
                    paths: paths.iter().map(|p| (*p).to_owned()).collect(),
                }),
                client: None,
            },
            &user.user_id,
            "user",
        )
    };
    let bad = app
        .client
        .update_profile(update(
            &["time_zone"],
            pb::User {
                time_zone: "Not/AZone".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert!(bad.message().starts_with("user.time_zone:"), "{bad:?}");
    let email = app
        .client
        .update_profile(update(&["email"], pb::User::default()))
        .await
        .unwrap_err();
    assert!(email.message().starts_with("update_mask:"), "{email:?}");

    let updated = app
        .client
        .update_profile(update(
            &["time_zone", "watchlist", "display_name"],
            pb::User {
                time_zone: "Asia/Tokyo".into(),
                display_name: "Noah".into(),
                watchlist: vec!["aapl".into(), "MSFT".into()],
                locale: "ignored-not-in-mask".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(updated.time_zone, "Asia/Tokyo");
    assert_eq!(updated.display_name, "Noah");
    assert_eq!(updated.locale, "en-US");
    assert_eq!(updated.watchlist, ["AAPL", "MSFT"]);
    let events: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outbox WHERE event_type = 'mirai.user.watchlist.changed.v1'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(events, 1);

    let other = uuid::Uuid::now_v7().to_string();
    let denied = app
        .client
        .get_profile(as_user(
            pb::GetProfileRequest {
                user_id: user.user_id.clone(),
            },
            &other,
            "user",
        ))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
}

#[tokio::test]
async fn api_keys_are_shown_once_scoped_and_revocable() {
    let mut app = spawn_app().await;
    let user = app.register("olga@example.com").await;
    let create = |scopes: Vec<i32>| {
        as_user(
            pb::CreateApiKeyRequest {
                user_id: user.user_id.clone(),
                name: "backtest script".into(),
                scopes,
                expires_at: None,
                client: client("192.0.2.1"),
            },
            &user.user_id,
            "user",
        )
    };
    let too_much = app
        .client
        .create_api_key(create(vec![pb::Role::Admin as i32]))
        .await
        .unwrap_err();
    assert_eq!(too_much.code(), tonic::Code::PermissionDenied);
    let created = app
        .client
        .create_api_key(create(vec![]))
        .await
        .unwrap()
        .into_inner();
    assert!(created.secret.starts_with("mk_") && created.secret.len() == 46);
    let key = created.api_key.unwrap();
    assert_eq!(key.prefix, created.secret[3..11]);
    assert_eq!(key.scopes, [pb::Role::User as i32]);
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM api_keys WHERE secret_hash = $1")
        .bind(created.secret.as_bytes())
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0, "the secret itself is not stored");

    let principal = app
        .client
        .authenticate_api_key(pb::AuthenticateApiKeyRequest {
            secret: created.secret.clone(),
            client: None,
        })
        .await
        .unwrap()
        .into_inner()
        .principal
        .unwrap();
    assert_eq!(principal.user_id, user.user_id);
    assert_eq!(
        principal.api_key_id.as_deref(),
        Some(key.api_key_id.as_str())
    );
    let listed = app
        .client
        .list_api_keys(as_user(
            pb::ListApiKeysRequest {
                user_id: user.user_id.clone(),
                ..Default::default()
            },
            &user.user_id,
            "user",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.api_keys.len(), 1);
    assert!(listed.api_keys[0].last_used_at.is_some());

    let revoked = app
        .client
        .revoke_api_key(as_user(
            pb::RevokeApiKeyRequest {
                user_id: user.user_id.clone(),
                api_key_id: key.api_key_id.clone(),
                client: None,
            },
            &user.user_id,
            "user",
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(revoked.api_key.unwrap().revoked_at.is_some());
    let rejected = app
        .client
        .authenticate_api_key(pb::AuthenticateApiKeyRequest {
            secret: created.secret.clone(),
            client: None,
        })
        .await
        .unwrap_err();
    assert_eq!(rejected.code(), tonic::Code::Unauthenticated);
    let kinds = app.audit_kinds(&user.user_id).await;
    assert!(kinds.contains(&"api_key_created".to_owned()), "{kinds:?}");
    assert!(kinds.contains(&"api_key_revoked".to_owned()), "{kinds:?}");
}

/// Found by the API conformance run: a reason holding NUL (which PostgreSQL cannot store in
/// `text`) was a 500. Control characters in the reason are refused before anything is stored.
#[tokio::test]
async fn a_reason_with_control_characters_is_refused() {
    let mut app = spawn_app().await;
    let user = app.register("nul@example.com").await;
    let admin = uuid::Uuid::now_v7().to_string();
    for reason in ["\u{1a}\u{eb}]\u{0}", "two\nlines"] {
        let error = app
            .client
            .clone()
            .revoke_role(as_user(
                pb::RevokeRoleRequest {
                    actor_user_id: admin.clone(),
                    user_id: user.user_id.clone(),
                    role: pb::Role::Premium as i32,
                    reason: reason.into(),
                    client: client("203.0.113.9"),
                },
                &admin,
                "user,admin",
            ))
            .await
            .unwrap_err();
        assert_eq!(error.code(), tonic::Code::InvalidArgument, "{reason:?}");
        assert!(error.message().contains("reason"), "{}", error.message());
    }
}
