//! Fan-out benchmark of live quotes (`scripts/bench-http fanout` runs it): `clients` SSE
//! streams of one symbol through the gateway while a replay plays `rate` bars per second; each
//! client measures the delay from stock-data's `updated_at` (when the quote changed) to the
//! moment the event is read. Prints one JSON line with the delivery percentiles, the rate the
//! replay really reached and how many updates every client should have seen.
//!
//! ```text
//! quote_fanout <gateway base URL> <admin token> <symbol> <clients> <bars/s> <seconds>
//! ```

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use hdrhistogram::Histogram;
use tokio::sync::Mutex;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [base, token, symbol, clients, rate, seconds] = args.as_slice() else {
        eprintln!(
            "usage: quote_fanout <base URL> <admin token> <symbol> <clients> <bars/s> <seconds>"
        );
        std::process::exit(64);
    };
    let clients: usize = clients.parse().expect("clients");
    let rate: f64 = rate.parse().expect("bars/s");
    let seconds: u64 = seconds.parse().expect("seconds");
    let http = reqwest::Client::new();
    let latencies = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds"),
    ));
    let dropped = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop = tokio_util::sync::CancellationToken::new();
    let mut readers = Vec::new();
    for _ in 0..clients {
        let response = http
            .get(format!("{base}/v1/stream/quotes?symbols={symbol}"))
            .send()
            .await
            .expect("stream opens");
        assert!(response.status().is_success(), "{}", response.status());
        let (latencies, dropped, stop) = (latencies.clone(), dropped.clone(), stop.clone());
        readers.push(tokio::spawn(async move {
            let mut body = response.bytes_stream();
            let mut buffer = String::new();
            let mut local = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
            let mut last_dropped = 0;
            while let Some(Ok(chunk)) = tokio::select! {
                _ = stop.cancelled() => None,
                chunk = body.next() => chunk,
            } {
                buffer.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buffer.find("\n\n") {
                    let event: String = buffer.drain(..end + 2).collect();
                    let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) else {
                        continue;
                    };
                    let Ok(quote) = serde_json::from_str::<serde_json::Value>(data) else {
                        continue;
                    };
                    if quote["snapshot"] == true {
                        continue;
                    }
                    last_dropped = quote["dropped"].as_u64().unwrap_or(0);
                    if let Some(at) = quote["updated_at"]
                        .as_str()
                        .and_then(|t| t.parse::<DateTime<Utc>>().ok())
                    {
                        let micros = (Utc::now() - at).num_microseconds().unwrap_or(0);
                        let _ = local.record(micros.clamp(1, 60_000_000) as u64);
                    }
                }
            }
            latencies.lock().await.add(&local).expect("same bounds");
            dropped.fetch_add(last_dropped, std::sync::atomic::Ordering::Relaxed);
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = http
        .post(format!("{base}/v1/admin/replays"))
        .bearer_auth(token)
        .json(&serde_json::json!({ "symbol": symbol, "bars_per_second": rate }))
        .send()
        .await
        .expect("replay starts");
    assert!(
        started.status().is_success(),
        "replay: {}",
        started.text().await.unwrap_or_default()
    );
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let _ = http
        .post(format!("{base}/v1/admin/replays/{symbol}/stop"))
        .bearer_auth(token)
        .send()
        .await;
    // What the replay really played (it may fall short of `rate`, or run out of history).
    let replay: serde_json::Value = http
        .get(format!("{base}/v1/admin/replays/{symbol}"))
        .bearer_auth(token)
        .send()
        .await
        .expect("replay status")
        .json()
        .await
        .expect("replay status JSON");
    let emitted = replay["bars_emitted"].as_u64().unwrap_or(0);
    let played_for = ["started_at", "ended_at"].map(|k| {
        replay[k]
            .as_str()
            .and_then(|t| t.parse::<DateTime<Utc>>().ok())
    });
    let played_s = match played_for {
        [Some(from), Some(to)] => (to - from).num_milliseconds() as f64 / 1000.0,
        _ => seconds as f64,
    };
    // Let the last updates arrive, then stop every reader and merge what they saw.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    futures::future::join_all(readers).await;
    let histogram = latencies.lock().await;
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "{}",
        serde_json::json!({
            "scenario": format!("{clients} SSE clients, replay asked for {rate} quotes/s"),
            "replayed_bars": emitted,
            "replayed_per_s": emitted as f64 / played_s.max(0.001),
            "deliveries": histogram.len(),
            "expected": clients as u64 * emitted,
            "dropped": dropped.load(std::sync::atomic::Ordering::Relaxed),
            "p50_ms": ms(0.5), "p99_ms": ms(0.99), "max_ms": histogram.max() as f64 / 1000.0,
        })
    );
}
