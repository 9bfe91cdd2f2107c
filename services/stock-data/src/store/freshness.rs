//! How old the newest bar of each tracked symbol is.

use sqlx::PgPool;

/// `(symbol, timeframe, seconds since the newest bar's end)` for every tracked symbol and each
/// of `timeframes` it has bars of. One backward index probe per (symbol, interval) on the
/// bars' primary key.
pub async fn newest_bar_ages(
    pool: &PgPool,
    timeframes: &[i16],
) -> Result<Vec<(String, i16, f64)>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT s.symbol, t.timeframe AS "timeframe!",
                    greatest(extract(epoch FROM now() - newest.end_at), 0)::float8 AS "age!"
               FROM symbols s
              CROSS JOIN unnest($1::int2[]) AS t (timeframe)
              CROSS JOIN LATERAL (
                    SELECT b.end_at FROM bars b
                     WHERE b.symbol = s.symbol AND b.timeframe = t.timeframe
                     ORDER BY b.start_at DESC
                     LIMIT 1) AS newest
              WHERE s.reference_count > 0"#,
        timeframes,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.symbol, r.timeframe, r.age))
        .collect())
}
