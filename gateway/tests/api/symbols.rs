//! The `symbol.listed` vertical slice: gateway → stock-data (row + outbox in one transaction) →
//! relay → Pub/Sub emulator → notification and analytics read models, one trace throughout.

use std::time::Duration;

use mirai_gateway::startup::Application;
use mirai_proto::analytics::v1::ListSymbolsRequest;
use mirai_proto::analytics::v1::analytics_service_client::AnalyticsServiceClient;
use mirai_proto::notification::v1::ListKnownSymbolsRequest;
use mirai_proto::notification::v1::notification_service_client::NotificationServiceClient;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::helpers::{Platform, admin_token, eventually};

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";

async fn known_in_notification(platform: &Platform, include_delisted: bool) -> Vec<(String, bool)> {
    let addr = platform.services[4].grpc_addr;
    let mut client = NotificationServiceClient::new(
        mirai_platform::testing::connect(format!("http://{addr}")).await,
    );
    client
        .list_known_symbols(ListKnownSymbolsRequest {
            include_delisted,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .symbols
        .into_iter()
        .map(|s| (s.symbol, s.delisted))
        .collect()
}

async fn known_in_analytics(platform: &Platform) -> Vec<(String, String, bool)> {
    let addr = platform.services[3].grpc_addr;
    let mut client = AnalyticsServiceClient::new(
        mirai_platform::testing::connect(format!("http://{addr}")).await,
    );
    client
        .list_symbols(ListSymbolsRequest {
            include_delisted: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .symbols
        .into_iter()
        .map(|s| (s.symbol, s.currency, s.delisted))
        .collect()
}

#[tokio::test]
async fn an_admin_lists_a_symbol_and_every_read_model_sees_it_in_one_trace() {
    let (exporter, _telemetry) = mirai_platform::testing::capture_spans("slice-test");
    let platform = Platform::start().await;
    let app = Application::build(platform.gateway_config()).await.unwrap();
    crate::helpers::route_coverage::record(app.metrics());
    let base = format!("http://{}", app.http_addr());
    let stop = CancellationToken::new();
    let gateway = tokio::spawn(app.run_until_stopped(stop.clone()));
    let http = reqwest::Client::new();
    let admin = admin_token(&platform, &base).await;

    let response = http
        .post(format!("{base}/v1/symbols"))
        .bearer_auth(&admin)
        .header("traceparent", format!("00-{TRACE_ID}-b7ad6b7169203331-01"))
        .json(&json!({
            "symbol": "aapl", "name": "Apple Inc.", "exchange_mic": "XNAS",
            "currency": "USD", "asset_type": "equity"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["location"], "/v1/symbols/AAPL");
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["symbol"], "AAPL");
    assert_eq!(created["status"], "active");

    eventually(
        "notification's known symbols",
        vec![("AAPL".to_owned(), false)],
        async || known_in_notification(&platform, false).await,
    )
    .await;
    eventually(
        "analytics' symbols",
        vec![("AAPL".to_owned(), "USD".to_owned(), false)],
        async || known_in_analytics(&platform).await,
    )
    .await;

    // The gateway's trace reaches both consumers' handler spans.
    let handled: Vec<String> = exporter
        .get_finished_spans()
        .unwrap()
        .into_iter()
        .filter(|s| s.name == "mirai.symbol.listed.v1 handle")
        .map(|s| s.span_context.trace_id().to_string())
        .collect();
    assert_eq!(
        handled,
        vec![TRACE_ID.to_owned(); 2],
        "handler spans' trace ids"
    );

    // Delisting flows the same way.
    let response = http
        .post(format!("{base}/v1/symbols/AAPL/delist"))
        .bearer_auth(&admin)
        .json(&json!({ "reason": "test" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    eventually(
        "delisted in notification",
        vec![("AAPL".to_owned(), true)],
        async || known_in_notification(&platform, true).await,
    )
    .await;
    eventually(
        "delisted in analytics",
        vec![("AAPL".to_owned(), "USD".to_owned(), true)],
        async || known_in_analytics(&platform).await,
    )
    .await;

    stop.cancel();
    gateway.await.unwrap().unwrap();
}

#[tokio::test]
async fn bad_symbol_requests_get_problem_details_and_change_nothing() {
    let platform = Platform::start().await;
    let app = Application::build(platform.gateway_config()).await.unwrap();
    crate::helpers::route_coverage::record(app.metrics());
    let base = format!("http://{}", app.http_addr());
    let stop = CancellationToken::new();
    let gateway = tokio::spawn(app.run_until_stopped(stop.clone()));
    let http = reqwest::Client::new();
    let admin = admin_token(&platform, &base).await;
    let valid = json!({
        "symbol": "MSFT", "name": "Microsoft", "exchange_mic": "XNAS",
        "currency": "USD", "asset_type": "equity"
    });

    let post = |body: Value| {
        let http = http.clone();
        let admin = admin.clone();
        let url = format!("{base}/v1/symbols");
        async move {
            let response = http
                .post(url)
                .bearer_auth(&admin)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let content_type = response.headers()["content-type"]
                .to_str()
                .unwrap()
                .to_owned();
            let body: Value = response.json().await.unwrap();
            (status, content_type, body)
        }
    };
    let mut bad_mic = valid.clone();
    bad_mic["exchange_mic"] = json!("NASDAQ");
    let mut bad_type = valid.clone();
    bad_type["asset_type"] = json!("bond");
    let mut extra = valid.clone();
    extra["colour"] = json!("blue");
    for (body, status, needle) in [
        (bad_mic, 400, "symbol.exchange_mic"),
        (bad_type, 422, "asset_type"),
        (extra, 422, "colour"),
    ] {
        let (got, content_type, problem) = post(body).await;
        assert_eq!(got, status, "{problem}");
        assert_eq!(content_type, "application/problem+json");
        assert!(
            problem["detail"].as_str().unwrap().contains(needle),
            "{problem}"
        );
    }

    let (status, _, _) = post(valid.clone()).await;
    assert_eq!(status, 201);
    let (status, _, problem) = post(valid).await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(problem["type"], "https://mirai.dev/problems/already-exists");

    let response = http
        .get(format!("{base}/v1/symbols/NOPE"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let response = http
        .get(format!("{base}/v1/symbols?q=micro"))
        .send()
        .await
        .unwrap();
    let page: Value = response.json().await.unwrap();
    assert_eq!(page["symbols"][0]["symbol"], "MSFT", "{page}");
    let response = http
        .get(format!("{base}/v1/symbols?page_size=5000"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);

    stop.cancel();
    gateway.await.unwrap().unwrap();
}

#[tokio::test]
async fn bars_come_through_the_gateway_aggregated_and_bad_queries_are_problems() {
    let platform = Platform::start().await;
    mirai_stock_data::bars::load_sample(&platform.services[1].pool)
        .await
        .unwrap();
    let app = Application::build(platform.gateway_config()).await.unwrap();
    crate::helpers::route_coverage::record(app.metrics());
    let base = format!("http://{}", app.http_addr());
    let stop = CancellationToken::new();
    let gateway = tokio::spawn(app.run_until_stopped(stop.clone()));

    let page: Value = reqwest::get(format!(
        "{base}/v1/stocks/SPX/bars?timeframe=1Week&start=2000-01-03T00:00:00Z&limit=1"
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(page["adjustment"], "raw", "{page}");
    assert_eq!(page["source"], "sample", "{page}");
    let bar = &page["bars"][0];
    assert_eq!(bar["start"], "2000-01-03T14:30:00Z", "{page}");
    assert_eq!(bar["open"], 1469.25, "{page}");
    assert_eq!(bar["close"], 1441.469971, "{page}");
    assert_eq!(bar["source_bars"], 5, "{page}");
    assert!(page["next_page_token"].is_string(), "{page}");

    let quote: Value = reqwest::get(format!("{base}/v1/stocks/SPX/quote"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(quote["last_time"], "2020-04-17T20:00:00Z", "{quote}");
    assert_eq!(quote["source"], "sample", "{quote}");
    let missing = reqwest::get(format!("{base}/v1/stocks/NOPE/quote"))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    for (query, status) in [
        ("timeframe=2Day", 400),
        ("start=yesterday", 400),
        ("start=2010-01-01T00:00:00Z&end=2009-01-01T00:00:00Z", 400),
    ] {
        let response = reqwest::get(format!("{base}/v1/stocks/SPX/bars?{query}"))
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{query}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{query}"
        );
    }
    stop.cancel();
    gateway.await.unwrap().unwrap();
}

#[tokio::test]
async fn admins_import_bars_over_http_and_replay_them() {
    let platform = Platform::start().await;
    let app = Application::build(platform.gateway_config()).await.unwrap();
    crate::helpers::route_coverage::record(app.metrics());
    let base = format!("http://{}", app.http_addr());
    let stop = CancellationToken::new();
    let gateway = tokio::spawn(app.run_until_stopped(stop.clone()));
    let http = reqwest::Client::new();
    let admin = admin_token(&platform, &base).await;
    let listed = http
        .post(format!("{base}/v1/symbols"))
        .bearer_auth(&admin)
        .json(&json!({
            "symbol": "ACME", "name": "Acme", "exchange_mic": "XNAS",
            "currency": "USD", "asset_type": "equity"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 201);

    let csv = "timestamp,open,high,low,close,volume\n2024-01-02,10,11,9,10.5,100\n2024-01-03,x,11,9,10,100\n2024-01-04,10.5,11,10,10.8,120\n";
    let report: Value = http
        .post(format!("{base}/v1/admin/bars/import?symbol=ACME"))
        .bearer_auth(&admin)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(report["rows_inserted"], 2, "{report}");
    assert_eq!(report["errors"][0]["line"], 3, "{report}");
    assert_eq!(report["errors"][0]["column"], "open", "{report}");

    let wrong_type = http
        .post(format!("{base}/v1/admin/bars/import?symbol=ACME"))
        .bearer_auth(&admin)
        .header("content-type", "application/pdf")
        .body("%PDF")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_type.status(), 415);

    let started = http
        .post(format!("{base}/v1/admin/replays"))
        .bearer_auth(&admin)
        .json(&json!({ "symbol": "ACME", "bars_per_second": 1000 }))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 201);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let replay: Value = http
            .get(format!("{base}/v1/admin/replays/ACME"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if replay["state"] == "finished" {
            assert_eq!(replay["bars_emitted"], 2, "{replay}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{replay}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let missing = http
        .get(format!("{base}/v1/admin/replays/NOPE"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    stop.cancel();
    gateway.await.unwrap().unwrap();
}

#[tokio::test]
async fn the_quote_stream_outlives_the_upstream_timeout_and_follows_a_replay() {
    use futures::StreamExt as _;
    let platform = Platform::start().await;
    mirai_stock_data::bars::load_sample(&platform.services[1].pool)
        .await
        .unwrap();
    let mut config = platform.gateway_config();
    config.upstreams.stock_data.timeout = Duration::from_secs(1);
    let app = Application::build(config).await.unwrap();
    crate::helpers::route_coverage::record(app.metrics());
    let base = format!("http://{}", app.http_addr());
    let stop = CancellationToken::new();
    let gateway = tokio::spawn(app.run_until_stopped(stop.clone()));
    let admin = admin_token(&platform, &base).await;

    let response = reqwest::get(format!("{base}/v1/stream/quotes?symbols=SPX"))
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    let mut next_quote = async || -> Value {
        loop {
            if let Some(end) = buffer.find("\n\n") {
                let event: String = buffer.drain(..end + 2).collect();
                if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) {
                    return serde_json::from_str(data).unwrap();
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), body.next())
                .await
                .expect("an event within 10 s")
                .unwrap()
                .unwrap();
            buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    };
    let snapshot = next_quote().await;
    assert_eq!(snapshot["snapshot"], true, "{snapshot}");

    // Longer than the 1 s upstream timeout: the stream must still be open.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let started = reqwest::Client::new()
        .post(format!("{base}/v1/admin/replays"))
        .bearer_auth(&admin)
        .json(&json!({ "symbol": "SPX", "to": "2000-01-05T00:00:00Z", "bars_per_second": 100 }))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 201);
    let first = next_quote().await;
    let second = next_quote().await;
    assert_eq!(first["snapshot"], false, "{first}");
    assert_eq!(first["last_price"], 1455.219971, "{first}");
    assert_eq!(second["last_price"], 1399.420044, "{second}");
    assert_eq!(second["source"], "replay", "{second}");

    let bad = reqwest::get(format!("{base}/v1/stream/quotes?symbols=NOPE"))
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    // Shutdown ends the open stream instead of waiting for the client to leave.
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), gateway)
        .await
        .expect("the gateway stops promptly despite an open stream")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn one_websocket_subscribes_and_unsubscribes_and_quality_is_reported() {
    use futures::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message;

    let platform = Platform::start().await;
    mirai_stock_data::bars::load_sample(&platform.services[1].pool)
        .await
        .unwrap();
    let app = Application::build(platform.gateway_config()).await.unwrap();
    crate::helpers::route_coverage::record(app.metrics());
    let base = format!("http://{}", app.http_addr());
    let ws_url = format!("ws://{}/v1/stream/quotes?symbols=SPX", app.http_addr());
    let stop = CancellationToken::new();
    let gateway = tokio::spawn(app.run_until_stopped(stop.clone()));

    let (socket, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
    let (mut sink, mut source) = socket.split();
    let mut next = async || -> Value {
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(10), source.next())
                .await
                .expect("a message within 10 s")
                .unwrap()
                .unwrap();
            if let Message::Text(text) = frame {
                return serde_json::from_str(&text).unwrap();
            }
        }
    };
    assert_eq!(
        next().await,
        json!({ "type": "subscribed", "symbols": ["SPX"] })
    );
    let snapshot = next().await;
    assert_eq!(snapshot["type"], "quote", "{snapshot}");
    assert_eq!(snapshot["symbol"], "SPX");
    assert_eq!(snapshot["snapshot"], true);
    assert_eq!(snapshot["dropped"], 0);

    let mut send = async |text: &str| sink.send(Message::Text(text.into())).await.unwrap();
    send(r#"{"action":"subscribe","symbols":["NOPE"]}"#).await;
    send(r#"{"action":"dance"}"#).await;
    send(r#"{"action":"unsubscribe","symbols":["SPX"]}"#).await;
    // The unknown symbol is refused before the answer, which lists what is followed.
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(next().await);
    }
    assert_eq!(seen[0]["type"], "error", "{seen:?}");
    assert_eq!(seen[0]["symbol"], "NOPE", "{seen:?}");
    assert_eq!(
        seen[1],
        json!({ "type": "subscribed", "symbols": ["SPX"] }),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|m| m["type"] == "error" && m["symbol"] == "NOPE"),
        "unknown symbol reported: {seen:?}"
    );
    assert!(
        seen.iter().any(|m| m["type"] == "error"
            && m["detail"]
                .as_str()
                .unwrap_or_default()
                .starts_with("bad message")),
        "bad message reported: {seen:?}"
    );
    assert_eq!(
        seen.last().unwrap(),
        &json!({ "type": "subscribed", "symbols": [] }),
        "{seen:?}"
    );

    // The quality report of the real S&P 500 history: checked, calendar-aware, no gaps.
    let report: Value = reqwest::get(format!(
        "{base}/v1/stocks/SPX/quality?start=2019-01-01T00:00:00Z&end=2020-01-01T00:00:00Z"
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(report["calendar"], "XNYS", "{report}");
    assert_eq!(report["bars_checked"], 252, "{report}");
    assert_eq!(report["missing_sessions"], json!([]), "{report}");
    stop.cancel();
    gateway.await.unwrap().unwrap();
}

/// An admin lists and stops a running replay and renames a symbol; a user may do neither.
#[tokio::test]
async fn an_admin_stops_a_replay_and_changes_a_symbol() {
    let gw = crate::helpers::Gateway::start().await;
    mirai_stock_data::bars::load_sample(&gw.platform.services[1].pool)
        .await
        .unwrap();
    let admin = gw.admin_token().await;
    let (_, user, _) = gw
        .sign_up(&format!(
            "viewer-{}@example.com",
            uuid::Uuid::new_v4().simple()
        ))
        .await;
    let (status, _, replay) = gw
        .post(
            "/v1/admin/replays",
            Some(&admin),
            serde_json::json!({ "symbol": "SPX", "bars_per_second": 1 }),
        )
        .await;
    assert_eq!(status, 201, "{replay}");
    let (status, _, replays) = gw.get("/v1/admin/replays", Some(&admin)).await;
    assert_eq!(status, 200, "{replays}");
    let spx = replays
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["symbol"] == "SPX")
        .unwrap_or_else(|| panic!("SPX among {replays}"));
    assert_eq!(spx["state"], "running", "{replays}");
    let (status, _, _) = gw.get("/v1/admin/replays", Some(&user)).await;
    assert_eq!(status, 403);

    let (status, _, stopped) = gw
        .post(
            "/v1/admin/replays/SPX/stop",
            Some(&admin),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(status, 200, "{stopped}");
    assert_eq!(stopped["state"], "stopped", "{stopped}");
    assert!(
        stopped["bars_emitted"].as_u64().unwrap() < stopped["bars_total"].as_u64().unwrap(),
        "stopped before the end: {stopped}"
    );

    let symbol_url = "/v1/symbols/SPX";
    let (status, _, symbol) = crate::helpers::patch(
        &gw,
        symbol_url,
        &admin,
        serde_json::json!({ "name": "S&P 500 Index" }),
    )
    .await;
    assert_eq!(status, 200, "{symbol}");
    assert_eq!(symbol["name"], "S&P 500 Index");
    let (_, _, read) = gw.get("/v1/symbols/SPX", None).await;
    assert_eq!(read["name"], "S&P 500 Index", "{read}");
    let (status, _, _) = crate::helpers::patch(
        &gw,
        symbol_url,
        &user,
        serde_json::json!({ "name": "mine now" }),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _, bad) = crate::helpers::patch(
        &gw,
        symbol_url,
        &admin,
        serde_json::json!({ "currency": "dollars" }),
    )
    .await;
    assert_eq!(status, 400, "{bad}");
}
