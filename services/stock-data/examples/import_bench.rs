//! Import throughput: bars per second through the `ImportBars` RPC of the service, run in this
//! process on a fresh database of the test server (the file streamed in 1 MiB messages over
//! loopback gRPC, as a client sends it).
//!
//! ```text
//! cargo run --release -p mirai-stock-data --example import_bench [ROWS] [RUNS]
//! ```
//! `MIRAI_TEST_DATABASE_URL` names the server (default the local one), `PUBSUB_EMULATOR_HOST`
//! the emulator the service starts against; ROWS defaults to 200,000 one-minute bars of one
//! symbol, RUNS to 3. Each run imports into an empty range (fresh symbol: the first-import
//! path, checked in memory and copied straight into `bars`), then re-imports the same file (the
//! idempotent path through a staging table: every row unchanged), then times the quality pass
//! alone over the imported range, so the cost of the checks can be told apart.

use std::time::Instant;

use chrono::{Duration, TimeZone as _, Utc};
use mirai_platform::testing::{AsAdmin, TestDatabase};
use mirai_proto::stock::v1 as pb;
use mirai_proto::stock::v1::import_bars_request::Part;
use mirai_proto::stock::v1::stock_data_service_client::StockDataServiceClient;
use mirai_stock_data::calendar::NYSE;
use mirai_stock_data::config::Config;
use mirai_stock_data::quality;
use tokio_util::sync::CancellationToken;

fn csv(rows: usize) -> String {
    let mut out = String::with_capacity(rows * 80);
    out.push_str("timestamp,open,high,low,close,volume,vwap,trade_count\n");
    // A seeded random walk over regular NYSE sessions (390 minutes each; weekends and
    // holidays skipped), so the quality pass has a realistic series to check.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut price = 100.0f64;
    let mut day = Utc.with_ymd_and_hms(2010, 1, 4, 14, 30, 0).unwrap();
    let mut minute = 0;
    for _ in 0..rows {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let step = ((state % 2001) as f64 - 1000.0) / 1_000_000.0;
        let open = price;
        price *= 1.0 + step;
        let (high, low) = (open.max(price) * 1.0005, open.min(price) * 0.9995);
        let at = day + Duration::minutes(minute);
        out.push_str(&format!(
            "{},{open:.4},{high:.4},{low:.4},{price:.4},{},{:.4},{}\n",
            at.to_rfc3339(),
            1000 + state % 5000,
            (high + low) / 2.0,
            1 + state % 50
        ));
        minute += 1;
        if minute == 390 {
            minute = 0;
            loop {
                day += Duration::days(1);
                if NYSE.is_trading_day(day.date_naive()) == Some(true) {
                    break;
                }
            }
        }
    }
    out
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let rows: usize = args
        .get(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(200_000);
    let runs: usize = args.get(2).map(|a| a.parse()).transpose()?.unwrap_or(3);
    // The import logs its phases at debug level (`RUST_LOG=mirai_stock_data=debug`).
    let _telemetry = mirai_platform::telemetry::init(&mirai_platform::config::TelemetryConfig {
        service_name: "import_bench".into(),
        log_filter: std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        log_format: mirai_platform::config::LogFormat::Pretty,
        otlp_endpoint: None,
    })?;
    let db = TestDatabase::create("stock_bench").await;
    let app = mirai_stock_data::startup::build_with(&Config::for_tests(db.url()))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let pool = app.pool().clone();
    let addr = app.grpc_addr();
    let stop = CancellationToken::new();
    let server = tokio::spawn(app.run_until_stopped(stop.clone()));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let client = StockDataServiceClient::with_interceptor(channel, AsAdmin)
        .max_decoding_message_size(64 << 20);
    let body = csv(rows);
    let settings = quality::Settings::default();
    println!(
        "rows={rows} bytes={} runs={runs} (one-minute bars, one symbol per run)",
        body.len()
    );
    println!("run  import_s  bars_per_s  reimport_s  bars_per_s  quality_pass_s  flagged");
    for run in 0..runs {
        let symbol = format!("BENCH{run}");
        sqlx::query(
            "INSERT INTO symbols (symbol, name, exchange_mic, currency, asset_type)
             VALUES ($1, 'Benchmark', 'XNAS', 'USD', 'equity')",
        )
        .bind(&symbol)
        .execute(&pool)
        .await?;
        let options = pb::ImportOptions {
            format: pb::ImportFormat::Csv.into(),
            timeframe: pb::Timeframe::OneMinute.into(),
            default_symbol: symbol.clone(),
            ..Default::default()
        };
        let import = |options: pb::ImportOptions| {
            let mut messages = vec![pb::ImportBarsRequest {
                part: Some(Part::Options(options)),
            }];
            for chunk in body.as_bytes().chunks(1 << 20) {
                messages.push(pb::ImportBarsRequest {
                    part: Some(Part::Data(chunk.to_vec())),
                });
            }
            let mut client = client.clone();
            async move {
                client
                    .import_bars(futures::stream::iter(messages))
                    .await
                    .map(|r| r.into_inner())
                    .map_err(|s| anyhow::anyhow!("{s}"))
            }
        };
        let started = Instant::now();
        let first = import(options.clone()).await?;
        let import_s = started.elapsed().as_secs_f64();
        anyhow::ensure!(first.rows_inserted as usize == rows, "{first:?}");
        let started = Instant::now();
        let again = import(options).await?;
        let reimport_s = started.elapsed().as_secs_f64();
        anyhow::ensure!(again.rows_unchanged as usize == rows, "{again:?}");

        // The quality pass alone, over the same range (it finds nothing new).
        let starts: Vec<chrono::DateTime<Utc>> =
            sqlx::query_scalar("SELECT start_at FROM bars WHERE symbol = $1 ORDER BY start_at")
                .bind(&symbol)
                .fetch_all(&pool)
                .await?;
        let series = quality::run::Series::new(&symbol, pb::Timeframe::OneMinute, "XNAS", "equity");
        let mut tx = pool.begin().await?;
        let started = Instant::now();
        quality::run::check(
            &mut tx,
            &settings,
            &series,
            &starts,
            quality::run::Origin {
                source: "import",
                import_id: "",
            },
        )
        .await?;
        let quality_s = started.elapsed().as_secs_f64();
        tx.rollback().await?;
        println!(
            "{run:>3}  {import_s:>8.3}  {:>10.0}  {reimport_s:>10.3}  {:>10.0}  {quality_s:>14.3}  {}",
            rows as f64 / import_s,
            rows as f64 / reimport_s,
            first.rows_flagged
        );
    }
    stop.cancel();
    server.await??;
    pool.close().await;
    Ok(())
}
