//! The ceiling of the HTTP stack on this machine, for `docs/benchmarks.md`: a bare axum server
//! (same tokio runtime, axum and hyper as the gateway, nothing else) answering
//! `GET /v1/stocks/{symbol}/quote` with the gateway's own [`Quote`] type, serialized per request
//! from a value held in memory. No authentication, rate limit, tracing, metrics or upstream
//! call: what is left is the cost of HTTP/1.1, routing and JSON.
//!
//! ```text
//! bare_quote <port>      then: wrk -t1 -c32 -d15s http://127.0.0.1:<port>/v1/stocks/SPX/quote
//! ```

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::get;
use mirai_gateway::routes::market::symbols::Quote;

/// The fields of the quote the stack answers for SPX on the bundled history.
#[derive(Clone)]
struct Held {
    last_price: f64,
    previous_close: f64,
    last_time: chrono::DateTime<chrono::Utc>,
}

async fn quote(State(held): State<Arc<Held>>, Path(symbol): Path<String>) -> axum::Json<Quote> {
    let change = held.last_price - held.previous_close;
    axum::Json(Quote {
        symbol,
        last_price: held.last_price,
        last_time: Some(held.last_time),
        previous_close: held.previous_close,
        change,
        change_percent: change / held.previous_close * 100.0,
        day_open: Some(3_240.09),
        day_high: Some(3_240.82),
        day_low: Some(3_227.14),
        day_volume: Some(3.09e9),
        source: "sample".to_owned(),
        adjustment: "raw",
        updated_at: Some(held.last_time),
        cached_seconds_ago: None,
    })
}

#[tokio::main]
async fn main() {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("usage: bare_quote <port>");
    let held = Arc::new(Held {
        last_price: 3_230.78,
        previous_close: 3_221.29,
        last_time: "2019-12-31T21:00:00Z".parse().expect("a timestamp"),
    });
    let app = axum::Router::new()
        .route("/v1/stocks/{symbol}/quote", get(quote))
        .with_state(held);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    axum::serve(listener, app).await.expect("serve");
}
