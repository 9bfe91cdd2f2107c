//! The Alpaca adapter against a local server that speaks Alpaca's documented Market Data v2
//! formats (stream handshake, `b`/`t` messages, REST bars with pages, 429 answers).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, DurationRound as _, Utc};
use mirai_proto::events::v1::BarClosed;
use mirai_proto::stock::v1::{AssetType, GetBarsRequest, GetQuoteRequest, Timeframe};
use mirai_stock_data::config::AlpacaConfig;
use prost::Message as _;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::helpers::{TestApp, eventually, spawn_with};

/// What one stream connection does after the subscription: send frames, then stay open or drop.
#[derive(Clone)]
struct Script {
    frames: Vec<Value>,
    drop_after: bool,
}

#[derive(Default)]
struct Recorded {
    /// Every client message on the stream, in order.
    stream: Vec<Value>,
    /// Query and arrival of every REST request.
    rest: Vec<(HashMap<String, String>, Instant)>,
    connections: usize,
}

#[derive(Clone)]
struct Vendor {
    scripts: Arc<Mutex<VecDeque<Script>>>,
    /// REST answers in order; the last one repeats.
    answers: Arc<Mutex<VecDeque<Response429OrBars>>>,
    recorded: Arc<Mutex<Recorded>>,
    go: watch::Receiver<bool>,
}

#[derive(Clone)]
enum Response429OrBars {
    TooManyRequests { retry_after_secs: u64 },
    Bars(Vec<Value>),
}

fn bar(symbol: Option<&str>, at: DateTime<Utc>, close: f64) -> Value {
    let mut bar = json!({
        "t": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "o": close - 0.1, "h": close + 0.2, "l": close - 0.3, "c": close,
        "v": 1200, "n": 17, "vw": close - 0.05,
    });
    if let Some(symbol) = symbol {
        bar["T"] = json!("b");
        bar["S"] = json!(symbol);
    }
    bar
}

async fn stream(ws: WebSocketUpgrade, State(vendor): State<Vendor>) -> Response {
    ws.on_upgrade(move |socket| serve_stream(socket, vendor))
}

async fn send(socket: &mut WebSocket, value: Value) -> bool {
    socket
        .send(Message::Text(value.to_string().into()))
        .await
        .is_ok()
}

async fn receive(socket: &mut WebSocket, vendor: &Vendor) -> Option<Value> {
    loop {
        match socket.recv().await? {
            Ok(Message::Text(text)) => {
                let value: Value = serde_json::from_str(text.as_str()).ok()?;
                vendor.recorded.lock().unwrap().stream.push(value.clone());
                return Some(value);
            }
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

async fn serve_stream(mut socket: WebSocket, vendor: Vendor) {
    vendor.recorded.lock().unwrap().connections += 1;
    if !send(&mut socket, json!([{"T": "success", "msg": "connected"}])).await {
        return;
    }
    let Some(auth) = receive(&mut socket, &vendor).await else {
        return;
    };
    if auth != json!({"action": "auth", "key": "test-key", "secret": "test-secret"}) {
        send(
            &mut socket,
            json!([{"T": "error", "code": 402, "msg": "auth failed"}]),
        )
        .await;
        return;
    }
    send(
        &mut socket,
        json!([{"T": "success", "msg": "authenticated"}]),
    )
    .await;
    let Some(subscribe) = receive(&mut socket, &vendor).await else {
        return;
    };
    send(
        &mut socket,
        json!([{"T": "subscription", "trades": subscribe["trades"], "quotes": [],
                "bars": subscribe["bars"], "updatedBars": [], "dailyBars": []}]),
    )
    .await;
    let mut go = vendor.go.clone();
    let _ = go.wait_for(|go| *go).await;
    let script = vendor.scripts.lock().unwrap().pop_front();
    let Some(script) = script else {
        while receive(&mut socket, &vendor).await.is_some() {}
        return;
    };
    for frame in script.frames {
        send(&mut socket, frame).await;
    }
    if script.drop_after {
        return; // dropping the socket without a close frame: a lost connection
    }
    while receive(&mut socket, &vendor).await.is_some() {}
}

async fn rest_bars(
    State(vendor): State<Vendor>,
    Path(symbol): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    vendor
        .recorded
        .lock()
        .unwrap()
        .rest
        .push((query.clone(), Instant::now()));
    let key = headers.get("APCA-API-KEY-ID").and_then(|v| v.to_str().ok());
    let secret = headers
        .get("APCA-API-SECRET-KEY")
        .and_then(|v| v.to_str().ok());
    if (key, secret) != (Some("test-key"), Some("test-secret")) {
        return (StatusCode::FORBIDDEN, "forbidden").into_response();
    }
    let answer = {
        let mut answers = vendor.answers.lock().unwrap();
        if answers.len() > 1 {
            answers.pop_front().unwrap()
        } else {
            answers.front().cloned().unwrap()
        }
    };
    match answer {
        Response429OrBars::TooManyRequests { retry_after_secs } => (
            StatusCode::TOO_MANY_REQUESTS,
            [
                ("Retry-After", retry_after_secs.to_string()),
                ("X-RateLimit-Limit", "200".to_owned()),
                ("X-RateLimit-Remaining", "0".to_owned()),
            ],
            "too many requests",
        )
            .into_response(),
        Response429OrBars::Bars(bars) => {
            // Two pages when there is more than one bar, to exercise next_page_token.
            let (page, next) = match query.get("page_token") {
                None if bars.len() > 1 => (bars[..1].to_vec(), json!("page-2")),
                None => (bars, Value::Null),
                Some(_) => (bars[1..].to_vec(), Value::Null),
            };
            axum::Json(json!({"bars": page, "symbol": symbol, "next_page_token": next}))
                .into_response()
        }
    }
}

struct Setup {
    app: TestApp,
    recorded: Arc<Mutex<Recorded>>,
    go: watch::Sender<bool>,
}

async fn start(scripts: Vec<Script>, answers: Vec<Response429OrBars>) -> Setup {
    let (go_tx, go_rx) = watch::channel(false);
    let vendor = Vendor {
        scripts: Arc::new(Mutex::new(scripts.into())),
        answers: Arc::new(Mutex::new(answers.into())),
        recorded: Arc::default(),
        go: go_rx,
    };
    let recorded = vendor.recorded.clone();
    let router = axum::Router::new()
        .route("/v2/iex", get(stream))
        .route("/v2/stocks/{symbol}/bars", get(rest_bars))
        .with_state(vendor);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let mut app = spawn_with(|config| {
        let mut alpaca = AlpacaConfig::for_tests(format!("http://{addr}"), format!("ws://{addr}"));
        alpaca.symbols = vec!["ACME".into()];
        config.alpaca = Some(alpaca);
    })
    .await;
    app.list("ACME", "XNAS", AssetType::Equity).await;
    Setup {
        app,
        recorded,
        go: go_tx,
    }
}

async fn stored_minutes(app: &TestApp) -> Vec<(i64, f64)> {
    app.client
        .clone()
        .get_bars(GetBarsRequest {
            symbol: "ACME".into(),
            timeframe: Timeframe::OneMinute.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .bars
        .iter()
        .map(|b| (b.start.unwrap().seconds, b.close))
        .collect()
}

/// Whole minutes before now (recent enough for the backfill window).
fn minutes_ago(n: i64) -> DateTime<Utc> {
    Utc::now()
        .duration_trunc(chrono::Duration::minutes(1))
        .unwrap()
        - chrono::Duration::minutes(n)
}

#[tokio::test]
async fn live_bars_and_trades_flow_through_the_ingest_path() {
    let t0 = minutes_ago(10);
    let setup = start(
        vec![Script {
            frames: vec![
                json!([bar(Some("ACME"), t0, 10.0)]),
                json!([bar(Some("ACME"), t0 + chrono::Duration::minutes(1), 10.5),
                       {"T": "t", "i": 1, "S": "ACME", "x": "V", "p": 10.7, "s": 5,
                        "t": Utc::now().to_rfc3339(), "c": ["@"], "z": "C"},
                       {"T": "q", "S": "ACME", "bp": 10.6, "ap": 10.8}]),
            ],
            drop_after: false,
        }],
        vec![Response429OrBars::Bars(Vec::new())],
    )
    .await;
    setup.go.send(true).unwrap();
    let app = &setup.app;
    let stored = eventually("two minute bars", || async {
        let stored = stored_minutes(app).await;
        (stored.len() == 2).then_some(stored)
    })
    .await;
    assert_eq!(
        stored,
        [(t0.timestamp(), 10.0), (t0.timestamp() + 60, 10.5)]
    );

    let closed: Vec<BarClosed> = app
        .outbox("mirai.stock.bar.closed.v1")
        .await
        .iter()
        .map(|p| BarClosed::decode(p.as_slice()).unwrap())
        .collect();
    assert_eq!(closed.len(), 2);
    assert!(closed.iter().all(|c| c.source == "alpaca"));
    assert_eq!(closed[1].previous_close, Some(10.0));
    // The trade is coalesced into a price update and moves the quote past the last bar.
    let quote = eventually("the trade in the quote", || async {
        let quote = app
            .client
            .clone()
            .get_quote(GetQuoteRequest {
                symbol: "ACME".into(),
            })
            .await
            .ok()?
            .into_inner()
            .quote?;
        (quote.last_price == 10.7).then_some(quote)
    })
    .await;
    assert_eq!(quote.source, "alpaca");
    assert_eq!(quote.day_bar.unwrap().open, 9.9);

    let recorded = setup.recorded.lock().unwrap();
    assert_eq!(
        recorded.stream[1],
        json!({"action": "subscribe", "bars": ["ACME"], "trades": ["ACME"]})
    );
    assert_eq!(recorded.connections, 1);
    assert!(
        recorded.rest.is_empty(),
        "nothing to backfill on a first connection"
    );
}

#[tokio::test]
async fn a_dropped_stream_reconnects_and_backfills_the_gap_over_rest() {
    let t0 = minutes_ago(10);
    let minute = |n: i64| t0 + chrono::Duration::minutes(n);
    let setup = start(
        vec![
            Script {
                frames: vec![json!([bar(Some("ACME"), minute(0), 10.0)])],
                drop_after: true,
            },
            Script {
                frames: vec![json!([bar(Some("ACME"), minute(3), 10.3)])],
                drop_after: false,
            },
        ],
        // The REST history overlaps the bar already received (minute 0).
        vec![Response429OrBars::Bars(vec![
            bar(None, minute(0), 10.0),
            bar(None, minute(1), 10.1),
            bar(None, minute(2), 10.2),
        ])],
    )
    .await;
    setup.go.send(true).unwrap();
    let app = &setup.app;
    let stored = eventually("four minute bars", || async {
        let stored = stored_minutes(app).await;
        (stored.len() == 4).then_some(stored)
    })
    .await;
    let expected: Vec<(i64, f64)> = (0..4)
        .map(|n| (minute(n).timestamp(), 10.0 + n as f64 / 10.0))
        .collect();
    assert_eq!(stored, expected);
    // The overlapping bar changed nothing and emitted nothing: one bar.closed per minute.
    assert_eq!(app.outbox("mirai.stock.bar.closed.v1").await.len(), 4);

    let recorded = setup.recorded.lock().unwrap();
    assert_eq!(recorded.connections, 2);
    let (first, _) = &recorded.rest[0];
    assert_eq!(
        first.get("start").map(String::as_str),
        Some(
            minute(1)
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                .as_str()
        ),
        "the backfill starts after the last bar received"
    );
    assert_eq!(first.get("timeframe").map(String::as_str), Some("1Min"));
    assert_eq!(first.get("feed").map(String::as_str), Some("iex"));
    assert_eq!(recorded.rest.len(), 2, "both pages were read");
    assert_eq!(
        recorded.rest[1].0.get("page_token").map(String::as_str),
        Some("page-2")
    );
}

#[tokio::test]
async fn a_rate_limited_backfill_waits_as_told_then_completes() {
    let t0 = minutes_ago(10);
    let minute = |n: i64| t0 + chrono::Duration::minutes(n);
    let setup = start(
        vec![
            Script {
                frames: vec![json!([bar(Some("ACME"), minute(0), 10.0)])],
                drop_after: true,
            },
            Script {
                frames: Vec::new(),
                drop_after: false,
            },
        ],
        vec![
            Response429OrBars::TooManyRequests {
                retry_after_secs: 1,
            },
            Response429OrBars::Bars(vec![bar(None, minute(1), 10.1)]),
        ],
    )
    .await;
    setup.go.send(true).unwrap();
    let app = &setup.app;
    eventually("the backfilled bar", || async {
        (stored_minutes(app).await.len() == 2).then_some(())
    })
    .await;
    let recorded = setup.recorded.lock().unwrap();
    assert_eq!(recorded.rest.len(), 2, "one 429, then one success");
    let waited = recorded.rest[1].1 - recorded.rest[0].1;
    assert!(
        waited >= Duration::from_secs(1),
        "the retry came {waited:?} after the 429, before its Retry-After of 1 s"
    );
}
