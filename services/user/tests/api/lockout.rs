//! Issue 17, finding 5: login attempts counted before hashing, lockouts per (account, IP) pair
//! first and per account only on distributed guessing, unlock by emailed link; registration
//! that reveals no addresses; role changes that end sessions.

use mirai_proto::events::v1 as ev;
use mirai_proto::user::v1 as pb;
use mirai_user::config::AuthConfig;

use mirai_platform::testing::outbox;

use crate::helpers::{PASSWORD, TestApp, as_user, client, spawn_with};

const WRONG: &str = "wrong password here";

async fn count(app: &TestApp, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&app.pool).await.unwrap()
}

#[tokio::test]
async fn concurrent_wrong_guesses_are_counted_before_hashing() {
    let mut auth = AuthConfig::for_tests();
    auth.lockout.pair_failures = 5;
    auth.lockout.account_failures = 1000;
    auth.lockout.ip_failures = 1000;
    let mut app = spawn_with(auth).await;
    app.register("hana@example.com").await;
    let guesses = (0..30).map(|_| {
        let mut client = app.client.clone();
        async move {
            client
                .login(pb::LoginRequest {
                    email: "hana@example.com".into(),
                    password: WRONG.into(),
                    client: client_context(),
                })
                .await
                .unwrap_err()
                .code()
        }
    });
    let codes = futures::future::join_all(guesses).await;
    let wrong = codes
        .iter()
        .filter(|c| **c == tonic::Code::Unauthenticated)
        .count();
    let refused = codes
        .iter()
        .filter(|c| **c == tonic::Code::ResourceExhausted)
        .count();
    // Before the fix every racing guess passed the lockout check before any failure was
    // counted: 30 hashes, 30 failures.
    assert_eq!((wrong, refused), (5, 25), "{codes:?}");
    let hashed = count(
        &app,
        "SELECT count(*) FROM audit_events WHERE kind = 'login_failed'",
    )
    .await;
    assert_eq!(hashed, 5, "exactly the admitted guesses were hashed");
    // The account counter saw exactly the five admitted attempts.
    let account_failures = count(
        &app,
        "SELECT failures::bigint FROM login_throttle
          WHERE scope = 'account' AND key = 'hana@example.com'",
    )
    .await;
    assert_eq!(account_failures, 5);
}

fn client_context() -> Option<pb::ClientContext> {
    client("198.51.100.66")
}

#[tokio::test]
async fn a_strangers_guesses_lock_the_stranger_not_the_owner() {
    let mut app = spawn_with(AuthConfig::for_tests()).await;
    let owner = app.register("ivan@example.com").await;
    let mut codes = Vec::new();
    for _ in 0..8 {
        let status = app
            .login("ivan@example.com", WRONG, "203.0.113.66")
            .await
            .unwrap_err();
        codes.push(status.code());
    }
    assert_eq!(codes[..5], [tonic::Code::Unauthenticated; 5]);
    assert_eq!(codes[5..], [tonic::Code::ResourceExhausted; 3]);
    // The stranger's IP stays locked for this account, even with the right password...
    let stranger = app
        .login("ivan@example.com", PASSWORD, "203.0.113.66")
        .await
        .unwrap_err();
    assert_eq!(stranger.code(), tonic::Code::ResourceExhausted);
    // ...while the owner, elsewhere, is not locked out (before the fix five bad passwords from
    // anyone locked the account).
    app.login("ivan@example.com", PASSWORD, "192.0.2.10")
        .await
        .expect("the owner signs in");
    let locks: Vec<String> = sqlx::query_scalar(
        "SELECT details->>'scope' FROM audit_events WHERE kind = 'locked_out' AND user_id = $1",
    )
    .bind(uuid::Uuid::parse_str(&owner.user_id).unwrap())
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(locks, ["pair"]);
}

#[tokio::test]
async fn distributed_guessing_locks_the_account_and_emails_a_single_use_unlock_link() {
    let mut auth = AuthConfig::for_tests();
    auth.lockout.pair_failures = 10;
    auth.lockout.account_failures = 6;
    auth.lockout.account_ips = 3;
    auth.lockout.unlock_url = "https://app.example/unlock".into();
    let mut app = spawn_with(auth).await;
    let owner = app.register("jun@example.com").await;
    // Eight failures from one IP, more than the account threshold, do not lock the account.
    for n in 0..8 {
        let status = app
            .login("jun@example.com", WRONG, "203.0.113.1")
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        assert!(
            app.login("jun@example.com", PASSWORD, "192.0.2.20")
                .await
                .is_ok(),
            "attempt {n}: one IP does not lock the account"
        );
    }
    // One more from each of two other IPs does: three IPs.
    for ip in ["203.0.113.2", "203.0.113.3"] {
        let status = app.login("jun@example.com", WRONG, ip).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
    }
    let locked = app
        .login("jun@example.com", PASSWORD, "192.0.2.20")
        .await
        .unwrap_err();
    assert_eq!(locked.code(), tonic::Code::ResourceExhausted);

    let events: Vec<ev::UserAccountLocked> = outbox(&app.pool).await;
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event.user_id, owner.user_id);
    assert_eq!(event.distinct_ips, 3);
    let token = event
        .unlock_url
        .strip_prefix("https://app.example/unlock?token=")
        .expect("the configured page with the secret")
        .to_owned();

    let unlock = |token: &str| pb::UnlockWithLinkRequest {
        token: token.to_owned(),
        client: client("192.0.2.20"),
    };
    let bogus = app
        .client
        .unlock_with_link(unlock("not-a-token"))
        .await
        .unwrap_err();
    assert_eq!(bogus.code(), tonic::Code::Unauthenticated);
    app.client
        .unlock_with_link(unlock(&token))
        .await
        .expect("the link unlocks");
    let again = app
        .client
        .unlock_with_link(unlock(&token))
        .await
        .unwrap_err();
    assert_eq!(again.code(), tonic::Code::Unauthenticated, "single use");
    app.login("jun@example.com", PASSWORD, "192.0.2.20")
        .await
        .expect("unlocked");
    let via: Vec<String> = sqlx::query_scalar(
        "SELECT details->>'via' FROM audit_events WHERE kind = 'unlocked' AND user_id = $1",
    )
    .bind(uuid::Uuid::parse_str(&owner.user_id).unwrap())
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(via, ["email_link"]);
    let account_locks = count(
        &app,
        "SELECT count(*) FROM audit_events
          WHERE kind = 'locked_out' AND details->>'scope' = 'account'",
    )
    .await;
    assert_eq!(account_locks, 1);

    // An expired link does nothing.
    let expired = sqlx::query_scalar::<_, uuid::Uuid>("SELECT user_id FROM unlock_tokens")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(expired.to_string(), owner.user_id);
    sqlx::query("UPDATE unlock_tokens SET used_at = NULL, expires_at = now() - interval '1s'")
        .execute(&app.pool)
        .await
        .unwrap();
    let stale = app
        .client
        .unlock_with_link(unlock(&token))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), tonic::Code::Unauthenticated, "expired");
}

#[tokio::test]
async fn registering_a_taken_email_answers_as_for_a_new_account_and_tells_the_owner() {
    let mut app = spawn_with(AuthConfig::for_tests()).await;
    let owner = app.register("kai@example.com").await;
    let register = |email: &str| pb::RegisterRequest {
        email: email.to_owned(),
        password: "another fine passphrase".into(),
        client: client("203.0.113.77"),
        ..Default::default()
    };
    // Before the fix: ALREADY_EXISTS, which told anyone the address had an account.
    let taken = app
        .client
        .register(register("Kai@Example.com"))
        .await
        .expect("answered as a new account")
        .into_inner()
        .user
        .unwrap();
    let fresh = app
        .client
        .register(register("kei@example.com"))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_ne!(taken.user_id, owner.user_id);
    // Same shape: every field a new account has, set the same way.
    let shape = |u: &pb::User| {
        (
            u.roles.clone(),
            u.status,
            u.watchlist.len(),
            u.display_name.is_empty(),
            u.created_at.is_some(),
            u.updated_at.is_some(),
            u.last_login_at.is_some(),
            u.locked_until.is_some(),
        )
    };
    assert_eq!(shape(&taken), shape(&fresh));
    assert_eq!(taken.email, "Kai@example.com");
    // Nothing changed for the owner: one account, the old password still works.
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM users WHERE lower(email) = 'kai@example.com'"
        )
        .await,
        1
    );
    app.login("kai@example.com", PASSWORD, "192.0.2.1")
        .await
        .expect("the owner's password is unchanged");
    // A second attempt within the hour is audited but mails no one again.
    app.client
        .register(register("kai@example.com"))
        .await
        .unwrap();
    let told: Vec<ev::UserRegistrationAttempted> = outbox(&app.pool).await;
    assert_eq!(told.len(), 1);
    assert_eq!(told[0].user_id, owner.user_id);
    let attempts = app
        .audit_kinds(&owner.user_id)
        .await
        .into_iter()
        .filter(|k| k == "registration_attempted")
        .count();
    assert_eq!(attempts, 2);
}

#[tokio::test]
async fn a_role_change_ends_the_users_sessions() {
    let mut app = spawn_with(AuthConfig::for_tests()).await;
    let user = app.register("lou@example.com").await;
    let session = app
        .login("lou@example.com", PASSWORD, "192.0.2.1")
        .await
        .unwrap()
        .tokens
        .unwrap();
    let admin = uuid::Uuid::now_v7().to_string();
    app.client
        .grant_role(as_user(
            pb::GrantRoleRequest {
                actor_user_id: admin.clone(),
                user_id: user.user_id.clone(),
                role: pb::Role::Premium as i32,
                reason: "paid".into(),
                client: client("203.0.113.9"),
            },
            &admin,
            "user,admin",
        ))
        .await
        .unwrap();
    // Before the fix the old session refreshed into access tokens with the old roles for up
    // to 30 days.
    let refreshed = app.refresh(&session.refresh_token).await.unwrap_err();
    assert_eq!(refreshed.code(), tonic::Code::Unauthenticated);
    let revoked: Vec<String> = sqlx::query_scalar(
        "SELECT details->>'revoked_families' FROM audit_events WHERE kind = 'role_changed'",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(revoked, ["1"]);
}
