//! The brute-force throttle (`login_throttle`) and the single-use unlock links
//! (`unlock_tokens`).

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::interval;
use crate::config::LockoutConfig;
use crate::tokens::{new_secret, secret_hash};

/// Counter scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// One email from one client IP: the first to lock, and the only one a stranger's guesses
    /// reach on their own.
    Pair,
    /// One client IP over every email.
    Ip,
    /// One email from every IP: locks only on distributed guessing.
    Account,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pair => "pair",
            Self::Ip => "ip",
            Self::Account => "account",
        }
    }
}

/// The account throttle key of an email: lower-cased, as the unique index compares.
pub fn account_key(email: &str) -> String {
    email.to_lowercase()
}

/// The (account, IP) pair key: `<ip>|<account>` (an IP never contains `|`). An empty IP (no
/// client context) is one more "IP", so such callers still lock at the pair threshold.
fn pair_key(account: &str, ip: &str) -> String {
    format!("{ip}|{account}")
}

/// Most distinct IPs remembered per account and window (enough for any sensible
/// `MIRAI_LOCKOUT_ACCOUNT_IPS`; bounds the row).
const MAX_TRACKED_IPS: i32 = 64;

/// The counters one login attempt touches, in the order their rows are locked (the same for
/// every attempt, so concurrent attempts cannot deadlock).
fn attempt_keys(account: &str, ip: &str, config: &LockoutConfig) -> Vec<(Scope, String, i32)> {
    let mut keys = vec![(
        Scope::Account,
        account.to_owned(),
        // The account counter never refuses by count alone: it locks (on failure) only when
        // the failures also come from enough IPs.
        i32::MAX,
    )];
    if !ip.is_empty() {
        keys.push((Scope::Ip, ip.to_owned(), limit(config.ip_failures)));
    }
    keys.push((
        Scope::Pair,
        pair_key(account, ip),
        limit(config.pair_failures),
    ));
    keys
}

fn limit(threshold: u32) -> i32 {
    i32::try_from(threshold).unwrap_or(i32::MAX)
}

/// Admits one login attempt, counting it *before* the password is hashed: in one transaction
/// every counter of the attempt (account, IP, pair) is incremented, each only while it is not
/// locked and below its threshold. The row locks make concurrent attempts queue, so with a
/// threshold of 5 exactly 5 attempts get through however many race. `Err(until)`: refused
/// (nothing counted), locked until then (a counter that is full but whose lockout a failure
/// has not started yet answers `now + base`).
pub async fn admit_attempt(
    pool: &sqlx::PgPool,
    account: &str,
    ip: &str,
    config: &LockoutConfig,
    now: DateTime<Utc>,
) -> Result<Result<(), DateTime<Utc>>, sqlx::Error> {
    let window_start = now - interval(config.window);
    // A key whose last lockout ended long ago (more than `max` plus the window) starts its
    // growth again from `base`.
    let forgive_before = now - interval(config.max) - interval(config.window);
    let keys = attempt_keys(account, ip, config);
    let mut tx = pool.begin().await?;
    for (scope, key, threshold) in &keys {
        sqlx::query!(
            "INSERT INTO login_throttle (scope, key, window_start) VALUES ($1, $2, $3)
             ON CONFLICT (scope, key) DO NOTHING",
            scope.as_str(),
            key,
            now,
        )
        .execute(&mut *tx)
        .await?;
        let admitted = sqlx::query!(
            "UPDATE login_throttle SET
                failures = CASE WHEN window_start < $3 THEN 1 ELSE failures + 1 END,
                ips = CASE WHEN window_start < $3 THEN '{}' ELSE ips END,
                window_start = CASE WHEN window_start < $3 THEN $4 ELSE window_start END,
                lockouts = CASE WHEN locked_until < $6 THEN 0 ELSE lockouts END
              WHERE scope = $1 AND key = $2
                AND (locked_until IS NULL OR locked_until <= $4)
                AND (window_start < $3 OR failures < $5)",
            scope.as_str(),
            key,
            window_start,
            now,
            threshold,
            forgive_before,
        )
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if !admitted {
            let until: Option<DateTime<Utc>> = sqlx::query_scalar!(
                "SELECT locked_until FROM login_throttle WHERE scope = $1 AND key = $2",
                scope.as_str(),
                key,
            )
            .fetch_one(&mut *tx)
            .await?;
            tx.rollback().await?;
            return Ok(Err(until
                .filter(|until| *until > now)
                .unwrap_or(now + interval(config.base))));
        }
    }
    tx.commit().await?;
    Ok(Ok(()))
}

/// A lockout started by [`record_failure`].
#[derive(Debug, Clone, Copy)]
pub struct Lockout {
    pub scope: Scope,
    pub until: DateTime<Utc>,
    /// Distinct client IPs recorded among the account's failures (0 for pair and IP scopes).
    pub ips: u32,
}

/// Settles an admitted attempt as a failure (already counted by [`admit_attempt`]): records
/// the IP against the account, and starts the lockout of every counter that has reached its
/// threshold — the pair and the IP at their counts, the account at its count *and* its
/// number of distinct IPs. A lockout lasts `base · 2^(earlier lockouts)`, capped at `max`;
/// the threshold guard lets exactly one of several racing failures start it.
pub async fn record_failure(
    pool: &sqlx::PgPool,
    account: &str,
    ip: &str,
    config: &LockoutConfig,
    now: DateTime<Utc>,
) -> Result<Vec<Lockout>, sqlx::Error> {
    sqlx::query!(
        "UPDATE login_throttle SET ips = array_append(ips, $2)
          WHERE scope = 'account' AND key = $1
            AND NOT ($2 = ANY (ips)) AND cardinality(ips) < $3",
        account,
        ip,
        MAX_TRACKED_IPS,
    )
    .execute(pool)
    .await?;
    let mut started = Vec::new();
    for (scope, key, threshold) in attempt_keys(account, ip, config) {
        let (threshold, min_ips) = match scope {
            Scope::Account => (
                limit(config.account_failures),
                limit(config.account_ips).min(MAX_TRACKED_IPS),
            ),
            _ => (threshold, 0),
        };
        let locked = sqlx::query!(
            r#"UPDATE login_throttle t SET
                failures = 0,
                window_start = $3,
                locked_until = $3 + make_interval(secs => LEAST($6 * power(2, t.lockouts), $7)),
                lockouts = t.lockouts + 1,
                ips = '{}'
               FROM (SELECT cardinality(ips) AS ips FROM login_throttle
                      WHERE scope = $1 AND key = $2) prior
              WHERE t.scope = $1 AND t.key = $2 AND t.failures >= $4 AND prior.ips >= $5
                AND (t.locked_until IS NULL OR t.locked_until <= $3)
              RETURNING t.locked_until AS "locked_until!", prior.ips AS "ips!""#,
            scope.as_str(),
            &key,
            now,
            threshold,
            min_ips,
            config.base.as_secs_f64(),
            config.max.as_secs_f64(),
        )
        .fetch_optional(pool)
        .await?
        .map(|r| (r.locked_until, r.ips));
        if let Some((until, ips)) = locked {
            started.push(Lockout {
                scope,
                until,
                ips: u32::try_from(ips).unwrap_or(0),
            });
        }
    }
    Ok(started)
}

/// Settles an admitted attempt as a success: the attempt no longer counts against the account
/// (nor this IP among its distinct ones) or the IP, and the pair is forgotten. One statement
/// per row, in [`admit_attempt`]'s order, so no statement waits for one row while holding
/// another.
pub async fn record_success(
    pool: &sqlx::PgPool,
    account: &str,
    ip: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE login_throttle SET failures = GREATEST(failures - 1, 0), ips = array_remove(ips, $2)
          WHERE scope = 'account' AND key = $1",
        account,
        ip,
    )
    .execute(pool)
    .await?;
    if !ip.is_empty() {
        sqlx::query!(
            "UPDATE login_throttle SET failures = GREATEST(failures - 1, 0)
              WHERE scope = 'ip' AND key = $1",
            ip,
        )
        .execute(pool)
        .await?;
    }
    sqlx::query!(
        "DELETE FROM login_throttle WHERE scope = 'pair' AND key = $1",
        pair_key(account, ip)
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Forgets an account's counters and lockouts, its own and those of every (account, IP) pair
/// (admin unlock, unlock link, erasure); `true` when any lockout was in force. The account row
/// goes first, as [`admit_attempt`] locks it first.
pub async fn clear_account(tx: &mut PgConnection, account: &str) -> Result<bool, sqlx::Error> {
    let mut locked = false;
    let until: Vec<Option<DateTime<Utc>>> = sqlx::query_scalar!(
        "DELETE FROM login_throttle WHERE scope = 'account' AND key = $1 RETURNING locked_until",
        account,
    )
    .fetch_all(&mut *tx)
    .await?;
    locked |= until.into_iter().flatten().any(|until| until > Utc::now());
    let until: Vec<Option<DateTime<Utc>>> = sqlx::query_scalar!(
        "DELETE FROM login_throttle
          WHERE scope = 'pair' AND substr(key, strpos(key, '|') + 1) = $1
          RETURNING locked_until",
        account,
    )
    .fetch_all(&mut *tx)
    .await?;
    locked |= until.into_iter().flatten().any(|until| until > Utc::now());
    Ok(locked)
}

// === Unlock links ===

/// Stores a new unlock secret for `user_id`, valid until `expires_at`; returns the secret.
pub async fn new_unlock_token(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    expires_at: DateTime<Utc>,
) -> Result<String, sqlx::Error> {
    let secret = new_secret();
    sqlx::query!(
        "INSERT INTO unlock_tokens (token_hash, user_id, expires_at) VALUES ($1, $2, $3)",
        secret_hash(&secret),
        user_id,
        expires_at
    )
    .execute(db)
    .await?;
    Ok(secret)
}

/// Spends an unlock secret: the account it unlocks, if the secret is known, unspent and
/// unexpired. One statement, so a secret is spent once however many present it at once.
pub async fn spend_unlock_token(
    db: impl PgExecutor<'_>,
    secret: &str,
    now: DateTime<Utc>,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "UPDATE unlock_tokens SET used_at = $2
          WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2
          RETURNING user_id",
        secret_hash(secret),
        now,
    )
    .fetch_optional(db)
    .await
}
