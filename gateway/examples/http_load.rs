//! HTTP load generator for the gateway's benchmarks (`scripts/bench-http` runs it).
//!
//! ```text
//! http_load max  <url> <seconds> <connections>   closed loop: the most requests/s it sustains
//! http_load rate <url> <seconds> <requests/s>    open model: a constant arrival rate
//! ```
//!
//! The open model sends request *i* at `start + i / rate` whether or not earlier ones have
//! answered, and measures each latency from that intended send time, so a stall is charged to
//! every request that should have gone out during it (coordinated omission corrected, as
//! wrk2 does). Headers come from `HTTP_LOAD_HEADER_<n>="name: value"` variables. Prints one
//! JSON line: offered and achieved rate, errors, and p50/p99/p99.9/max in milliseconds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tokio::sync::Mutex;

struct Outcome {
    latencies: Histogram<u64>,
    errors: u64,
    statuses: std::collections::BTreeMap<u16, u64>,
}

impl Outcome {
    fn new() -> Self {
        Self {
            latencies: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
            errors: 0,
            statuses: Default::default(),
        }
    }

    fn record(&mut self, started: Instant, result: Result<u16, reqwest::Error>) {
        let micros = started.elapsed().as_micros().clamp(1, 60_000_000) as u64;
        let _ = self.latencies.record(micros);
        match result {
            Ok(status) => {
                *self.statuses.entry(status).or_default() += 1;
                if status >= 400 {
                    self.errors += 1;
                }
            }
            Err(_) => self.errors += 1,
        }
    }
}

fn headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in std::env::vars().filter(|(k, _)| k.starts_with("HTTP_LOAD_HEADER_")) {
        let (header, value) = value
            .split_once(':')
            .unwrap_or_else(|| panic!("{name} must be `name: value`"));
        headers.insert(
            HeaderName::try_from(header.trim()).expect("header name"),
            HeaderValue::try_from(value.trim()).expect("header value"),
        );
    }
    headers
}

async fn send(client: &reqwest::Client, url: &str) -> Result<u16, reqwest::Error> {
    let response = client.get(url).send().await?;
    let status = response.status().as_u16();
    response.bytes().await?;
    Ok(status)
}

fn report(mode: &str, offered: f64, elapsed: Duration, outcome: &Outcome) {
    let ms = |q: f64| outcome.latencies.value_at_quantile(q) as f64 / 1000.0;
    let line = serde_json::json!({
        "mode": mode,
        "offered_per_s": offered,
        "achieved_per_s": outcome.latencies.len() as f64 / elapsed.as_secs_f64(),
        "requests": outcome.latencies.len(),
        "errors": outcome.errors,
        "statuses": outcome.statuses,
        "p50_ms": ms(0.5),
        "p99_ms": ms(0.99),
        "p999_ms": ms(0.999),
        "max_ms": outcome.latencies.max() as f64 / 1000.0,
    });
    println!("{line}");
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage =
        "usage: http_load (max <url> <seconds> <connections> | rate <url> <seconds> <requests/s>)";
    let [mode, url, seconds, amount] = args.as_slice() else {
        eprintln!("{usage}");
        std::process::exit(64);
    };
    let seconds: u64 = seconds.parse().expect("seconds");
    let amount: f64 = amount.parse().expect("a number");
    let duration = Duration::from_secs(seconds);
    let client = reqwest::Client::builder()
        .default_headers(headers())
        .pool_max_idle_per_host(4096)
        .build()
        .expect("client");
    // Warm the connection pool and the caches behind the gateway.
    for _ in 0..50 {
        let _ = send(&client, url).await;
    }
    let outcome = Arc::new(Mutex::new(Outcome::new()));
    let begun = Instant::now();
    match mode.as_str() {
        "max" => {
            let workers = (0..amount as usize).map(|_| {
                let (client, url, outcome) = (client.clone(), url.clone(), outcome.clone());
                tokio::spawn(async move {
                    let mut local = Outcome::new();
                    while begun.elapsed() < duration {
                        let started = Instant::now();
                        let result = send(&client, &url).await;
                        local.record(started, result);
                    }
                    let mut total = outcome.lock().await;
                    total.latencies.add(&local.latencies).expect("same bounds");
                    total.errors += local.errors;
                    for (status, n) in local.statuses {
                        *total.statuses.entry(status).or_default() += n;
                    }
                })
            });
            futures::future::join_all(workers).await;
            report("max", 0.0, begun.elapsed(), &*outcome.lock().await);
        }
        "rate" => {
            let interval = Duration::from_secs_f64(1.0 / amount);
            let total = (amount * seconds as f64) as u64;
            let mut tasks = tokio::task::JoinSet::new();
            for i in 0..total {
                let intended = begun + interval.mul_f64(i as f64);
                tokio::time::sleep_until(intended.into()).await;
                let (client, url, outcome) = (client.clone(), url.clone(), outcome.clone());
                tasks.spawn(async move {
                    let result = send(&client, &url).await;
                    outcome.lock().await.record(intended, result);
                });
                while tasks.try_join_next().is_some() {}
            }
            while tasks.join_next().await.is_some() {}
            report("rate", amount, duration, &*outcome.lock().await);
        }
        _ => {
            eprintln!("{usage}");
            std::process::exit(64);
        }
    }
}
