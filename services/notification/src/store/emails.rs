//! The `email_addresses` and `email_verification_sends` tables (addresses as
//! [`crate::verify::normalise`] spells them).

use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// Records `address` for the user (unverified unless it already was); returns whether it is
/// verified.
pub async fn ensure(
    conn: &mut PgConnection,
    user_id: Uuid,
    address: String,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"WITH added AS (
             INSERT INTO email_addresses (user_id, address) VALUES ($1, $2)
             ON CONFLICT (user_id, address) DO NOTHING RETURNING verified_at)
         SELECT verified_at IS NOT NULL AS "verified!" FROM added
         UNION ALL
         SELECT verified_at IS NOT NULL FROM email_addresses WHERE user_id = $1 AND address = $2
         LIMIT 1"#,
        user_id,
        address,
    )
    .fetch_one(conn)
    .await
}

/// Deletes the user's addresses other than `keep`.
pub async fn forget_others(
    conn: &mut PgConnection,
    user_id: Uuid,
    keep: &[String],
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "DELETE FROM email_addresses WHERE user_id = $1 AND address <> ALL($2)",
        user_id,
        keep
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Whether the address is verified, its row locked.
pub async fn lock_verified(
    tx: &mut PgConnection,
    user_id: Uuid,
    address: &str,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT verified_at IS NOT NULL AS "verified!" FROM email_addresses
         WHERE user_id = $1 AND address = $2 FOR UPDATE"#,
        user_id,
        address,
    )
    .fetch_one(tx)
    .await
}

/// The links sent in the last hour to `address` and to the user (older sends are pruned).
pub async fn recent_sends(
    tx: &mut PgConnection,
    user_id: Uuid,
    address: &str,
) -> Result<(i64, i64), sqlx::Error> {
    sqlx::query!(
        "DELETE FROM email_verification_sends WHERE user_id = $1 AND sent_at < now() - interval '1 hour'",
        user_id,
    )
    .execute(&mut *tx)
    .await?;
    let sends = sqlx::query!(
        r#"SELECT count(*) FILTER (WHERE address = $2) AS "to_address!", count(*) AS "to_user!"
         FROM email_verification_sends WHERE user_id = $1"#,
        user_id,
        address,
    )
    .fetch_one(&mut *tx)
    .await?;
    Ok((sends.to_address, sends.to_user))
}

/// Records a link sent with `nonce`: the address's latest nonce, and one send.
pub async fn record_send(
    tx: &mut PgConnection,
    user_id: Uuid,
    address: &str,
    nonce: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE email_addresses SET nonce = $3 WHERE user_id = $1 AND address = $2",
        user_id,
        address,
        nonce
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "INSERT INTO email_verification_sends (user_id, address) VALUES ($1, $2)",
        user_id,
        address
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Marks the address verified if `nonce` is its latest (and clears it); returns the address.
pub async fn confirm(
    pool: &PgPool,
    user_id: Uuid,
    address: &str,
    nonce: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar!(
        "UPDATE email_addresses SET verified_at = now(), nonce = NULL
         WHERE user_id = $1 AND address = $2 AND nonce = $3 RETURNING address",
        user_id,
        address,
        nonce,
    )
    .fetch_optional(pool)
    .await
}
