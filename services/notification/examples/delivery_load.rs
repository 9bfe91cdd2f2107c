//! Webhook deliveries per second: N queued webhook deliveries to a local receiver (answering
//! 200), drained by the service's delivery worker; signing, the SSRF checks, the HTTP attempt
//! and the attempt log are all on the path. Needs PostgreSQL and the emulator, like the tests:
//!
//! ```text
//! MIRAI_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
//! PUBSUB_EMULATOR_HOST=127.0.0.1:8085 GOOGLE_CLOUD_PROJECT=mirai-test \
//!   cargo run --release -p mirai-notification --example delivery_load -- 5000
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mirai_notification::config::Config;
use mirai_platform::testing::TestDatabase;
use uuid::Uuid;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5000);
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::Relaxed);
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let db = TestDatabase::create("notification_bench").await;
    let mut config = Config::for_tests(db.url());
    config.webhooks.allow_private_targets = true;
    config.service.database.max_connections = 20;
    let app = mirai_notification::startup::build_with(&config).await?;
    let pool = app.service.pool.clone();
    let user = Uuid::now_v7();
    let endpoint = Uuid::now_v7();
    sqlx::query("INSERT INTO webhook_endpoints (webhook_endpoint_id, user_id, url, secret) VALUES ($1, $2, $3, $4)")
        .bind(endpoint)
        .bind(user)
        .bind(&url)
        .bind(mirai_notification::store::endpoints::new_secret())
        .execute(&pool)
        .await?;
    // Notifications and their webhook deliveries, queued but due only once all exist.
    sqlx::query(
        "INSERT INTO notifications (notification_id, user_id, category, title, body, symbol)
         SELECT gen_random_uuid(), $1, 1, 'BENCH above 10.00', 'BENCH above 10.00: last price 11.00', 'BENCH'
         FROM generate_series(1, $2)",
    )
    .bind(user)
    .bind(n as i64)
    .execute(&pool)
    .await?;
    sqlx::query(
        "INSERT INTO deliveries (delivery_id, user_id, notification_id, channel, target, status, next_attempt_at)
         SELECT gen_random_uuid(), user_id, notification_id, 3, $2, 'QUEUED', now() + interval '1 hour'
         FROM notifications WHERE user_id = $1",
    )
    .bind(user)
    .bind(endpoint.to_string())
    .execute(&pool)
    .await?;
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(app.service.run_until_stopped(stop.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    sqlx::query("UPDATE deliveries SET next_attempt_at = now()")
        .execute(&pool)
        .await?;
    loop {
        let done: i64 =
            sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE status = 'DELIVERED'")
                .fetch_one(&pool)
                .await?;
        if done as usize >= n {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "only {done} of {n} delivered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    println!(
        "{n} webhook deliveries in {:.2} s: {:.0} deliveries/s (receiver saw {}; concurrency {})",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        received.load(Ordering::Relaxed),
        config.deliveries.concurrency
    );
    stop.cancel();
    let _ = running.await;
    Ok(())
}
