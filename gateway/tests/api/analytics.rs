//! `/v1/analytics` and `/v1/reports` over HTTP: the S&P 500 sample loaded into stock-data and
//! back-filled into analytics, then indicators, statistics, trends and a report job through
//! the gateway, with the problem+json answers to bad requests.

use mirai_platform::auth::Role;
use mirai_proto::analytics::v1 as pb;
use mirai_proto::analytics::v1::analytics_service_client::AnalyticsServiceClient;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::{Gateway, eventually};

/// The sample's closes by date (YYYY-MM-DD), read independently of the services.
fn sample_closes() -> Vec<(String, f64)> {
    include_str!("../../../services/stock-data/sample/sp500-2000.csv")
        .lines()
        .skip(1)
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            (f[0].to_owned(), f[4].parse().unwrap())
        })
        .collect()
}

/// A gateway whose analytics read model holds the S&P 500 sample as `SPX`, and a user's token.
async fn ready() -> (Gateway, String) {
    let gateway = Gateway::start().await;
    mirai_stock_data::bars::load_sample(&gateway.platform.services[1].pool)
        .await
        .unwrap();
    let addr = gateway.platform.services[3].grpc_addr;
    let mut analytics = AnalyticsServiceClient::new(
        mirai_platform::testing::connect(format!("http://{addr}")).await,
    );
    let request = mirai_platform::testing::request_as(
        uuid::Uuid::now_v7(),
        &[Role::User, Role::Admin],
        pb::BackfillRequest {
            symbol: "SPX".into(),
            ..Default::default()
        },
    );
    let filled = analytics.backfill(request).await.unwrap().into_inner();
    assert_eq!(filled.bars_inserted as usize, sample_closes().len());
    let (_, token, _) = gateway
        .sign_up(&format!(
            "analyst-{}@example.com",
            uuid::Uuid::new_v4().simple()
        ))
        .await;
    (gateway, token)
}

fn assert_problem(
    (status, headers, body): &(u16, reqwest::header::HeaderMap, Value),
    want: u16,
    detail: &str,
) {
    assert_eq!(*status, want, "{body}");
    assert_eq!(headers["content-type"], "application/problem+json");
    assert!(
        body["detail"].as_str().unwrap_or_default().contains(detail),
        "detail {:?} should contain {detail:?}",
        body["detail"]
    );
}

#[tokio::test]
async fn indicators_stats_and_trends_come_from_the_read_model() {
    let (gateway, token) = ready().await;
    let t = Some(token.as_str());
    let closes = sample_closes();
    let in_2019: Vec<f64> = closes
        .iter()
        .filter(|(d, _)| d.as_str() >= "2019-01-01" && d.as_str() < "2020-01-01")
        .map(|(_, c)| *c)
        .collect();

    let (status, _, body) = gateway
        .get(
            "/v1/analytics/SPX/indicators?indicators=sma(timeperiod=20),bbands(timeperiod=20,nbdevup=2),rsi&start=2019-01-01T00:00:00Z&end=2020-01-01T00:00:00Z",
            t,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["symbol"], "SPX");
    assert_eq!(body["timeframe"], "1Day");
    assert_eq!(body["timestamps"].as_array().unwrap().len(), in_2019.len());
    let names: Vec<&str> = body["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "sma_20",
            "bbands_20_2_2.upper",
            "bbands_20_2_2.middle",
            "bbands_20_2_2.lower",
            "rsi_14"
        ]
    );
    let sma = &body["series"][0];
    assert_eq!(sma["indicator"], "sma");
    assert_eq!(sma["lookback"], 19);
    let values = sma["values"].as_array().unwrap();
    assert!(values[..19].iter().all(Value::is_null));
    let mean = in_2019[..20].iter().sum::<f64>() / 20.0;
    assert!((values[19].as_f64().unwrap() - mean).abs() < 1e-9 * mean);

    let (status, _, body) = gateway
        .get(
            "/v1/analytics/SPX/stats?start=2010-01-01T00:00:00Z&end=2020-01-01T00:00:00Z&rolling_window=63",
            t,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let stats = &body["statistics"];
    assert_eq!(stats["symbol"], "SPX");
    assert_eq!(stats["periods_per_year"], 252);
    let decade: Vec<f64> = closes
        .iter()
        .filter(|(d, _)| d.as_str() >= "2010-01-01" && d.as_str() < "2020-01-01")
        .map(|(_, c)| *c)
        .collect();
    let cumulative = decade.last().unwrap() / decade[0] - 1.0;
    assert!((stats["cumulative_return"].as_f64().unwrap() - cumulative).abs() < 1e-9);
    assert!(stats["max_drawdown"]["depth"].as_f64().unwrap() < 0.0);
    assert!(stats["beta"].is_null(), "no benchmark, no beta");
    assert_eq!(body["rolling"]["window"], 63);
    assert!(
        body["rolling"]["series"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "rolling_sharpe")
    );

    let (status, _, body) = gateway
        .get("/v1/analytics/trends?symbols=spx,NOPE", t)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["trends"][0]["symbol"], "SPX");
    assert_eq!(body["trends"][0]["momentum_rank"], 1);
    assert!(
        ["bullish", "bearish"].contains(&body["trends"][0]["ma_regime"].as_str().unwrap()),
        "{body}"
    );
    assert_eq!(body["missing"], json!(["NOPE"]));
}

#[tokio::test]
async fn bad_analytics_requests_get_problem_details() {
    let (gateway, token) = ready().await;
    let t = Some(token.as_str());
    let cases = [
        (
            "/v1/analytics/SPX/indicators?indicators=smaa",
            400,
            "unknown indicator \"smaa\"",
        ),
        (
            "/v1/analytics/SPX/indicators?indicators=sma(timeperiod=x)",
            400,
            "is not a number",
        ),
        (
            "/v1/analytics/SPX/indicators?indicators=sma(timeperiod=50)&start=2019-01-01T00:00:00Z&end=2019-02-01T00:00:00Z",
            400,
            "needs at least 50 bars",
        ),
        (
            "/v1/analytics/SPX/indicators?indicators=rsi&start=2020-01-01T00:00:00Z&end=2019-01-01T00:00:00Z",
            400,
            "start",
        ),
        (
            "/v1/analytics/SPX/stats?start=2019-01-01T00:00:00Z&end=2019-03-01T00:00:00Z&rolling_window=500",
            400,
            "rolling_window",
        ),
        (
            "/v1/analytics/SPX/stats?start=2020-01-01T00:00:00Z&end=2019-01-01T00:00:00Z",
            400,
            "start",
        ),
        (
            "/v1/analytics/trends?short_window=200&long_window=50",
            400,
            "short_window",
        ),
        ("/v1/analytics/NOPE/indicators?indicators=rsi", 404, "NOPE"),
    ];
    for (path, status, detail) in cases {
        let answer = gateway.get(path, t).await;
        assert_problem(&answer, status, detail);
    }
    let anonymous = gateway
        .get("/v1/analytics/SPX/indicators?indicators=rsi", None)
        .await;
    assert_eq!(anonymous.0, 401);
}

async fn download(gateway: &Gateway, token: &str, url: &str) -> reqwest::Response {
    gateway
        .http
        .get(gateway.url(url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_report_is_accepted_then_downloaded_by_format() {
    let (gateway, token) = ready().await;
    let t = Some(token.as_str());
    let (status, headers, job) = gateway
        .post(
            "/v1/reports",
            t,
            json!({
                "symbol": "SPX",
                "start": "2018-01-01T00:00:00Z",
                "end": "2020-01-01T00:00:00Z",
                "formats": ["png", "svg", "csv"]
            }),
        )
        .await;
    assert_eq!(status, 202, "{job}");
    let id = job["report_id"].as_str().unwrap().to_owned();
    let location = format!("/v1/reports/{id}");
    assert_eq!(headers["location"], location.as_str());
    assert_eq!(job["status"], "queued");
    assert_eq!(job["symbol"], "SPX");
    assert_eq!(job["formats"], json!(["csv", "png", "svg"]));

    eventually(
        "the report to succeed",
        "succeeded".to_owned(),
        async || {
            let (_, _, job) = gateway.get(&location, t).await;
            job["status"].as_str().unwrap_or_default().to_owned()
        },
    )
    .await;
    let (_, _, job) = gateway.get(&location, t).await;
    let files = job["files"].as_array().unwrap();
    assert_eq!(files.len(), 3, "{job}");

    let (status, _, page) = gateway.get("/v1/reports?status=succeeded", t).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["reports"][0]["report_id"], id.as_str());
    let (_, _, none) = gateway.get("/v1/reports?status=failed", t).await;
    assert_eq!(none["reports"], json!([]));

    for (format, content_type) in [
        ("png", "image/png"),
        ("svg", "image/svg+xml"),
        ("csv", "text/csv; charset=utf-8"),
    ] {
        let file = files.iter().find(|f| f["format"] == format).unwrap();
        assert_eq!(file["url"], format!("/v1/reports/{id}/files/{format}"));
        let response = download(&gateway, &token, file["url"].as_str().unwrap()).await;
        assert_eq!(response.status(), 200, "{format}");
        assert_eq!(response.headers()["content-type"], content_type);
        assert_eq!(
            response.headers()["content-disposition"],
            format!(
                "attachment; filename=\"{}\"",
                file["file_name"].as_str().unwrap()
            )
            .as_str()
        );
        let bytes = response.bytes().await.unwrap();
        assert_eq!(bytes.len() as u64, file["size_bytes"].as_u64().unwrap());
        let digest: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(digest, file["sha256"].as_str().unwrap());
        match format {
            "png" => assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n"),
            "svg" => assert!(std::str::from_utf8(&bytes).unwrap().contains("<svg")),
            _ => {
                let text = std::str::from_utf8(&bytes).unwrap();
                assert!(
                    text.starts_with("time,open,high,low,close,volume"),
                    "{text:.80}"
                );
                let trading_days = sample_closes()
                    .iter()
                    .filter(|(d, _)| d.as_str() >= "2018-01-01" && d.as_str() < "2020-01-01")
                    .count();
                assert_eq!(text.lines().count(), trading_days + 1);
            }
        }
    }

    // A format the job did not produce, and another user's report.
    assert_problem(
        &gateway
            .get(&format!("/v1/reports/{id}/files/json"), t)
            .await,
        404,
        "no json file",
    );
    assert_problem(
        &gateway.get(&format!("/v1/reports/{id}/files/pdf"), t).await,
        400,
        "",
    );
    let (_, other, _) = gateway
        .sign_up(&format!(
            "other-{}@example.com",
            uuid::Uuid::new_v4().simple()
        ))
        .await;
    assert_problem(&gateway.get(&location, Some(&other)).await, 404, &id);

    let deleted = gateway
        .http
        .delete(gateway.url(&location))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(gateway.get(&location, t).await.0, 404);
}

#[tokio::test]
async fn bad_report_requests_get_problem_details() {
    let (gateway, token) = ready().await;
    let t = Some(token.as_str());
    let cases = [
        (json!({}), "exactly one of symbol, watchlist and model"),
        (
            json!({ "symbol": "SPX", "watchlist": ["SPX"] }),
            "exactly one of symbol, watchlist and model",
        ),
        (
            json!({ "symbol": "SPX", "start": "2020-01-01T00:00:00Z", "end": "2019-01-01T00:00:00Z" }),
            "inverted",
        ),
        (json!({ "watchlist": [] }), "subject.watchlist.symbols"),
        (json!({ "symbol": "SPX", "formats": ["pdf"] }), "formats"),
    ];
    for (body, detail) in cases {
        let answer = gateway.post("/v1/reports", t, body.clone()).await;
        assert!(
            answer.0 == 400 || answer.0 == 422,
            "{body}: {} {}",
            answer.0,
            answer.2
        );
        assert_problem(&answer, answer.0, detail);
    }
    assert_problem(
        &gateway.get("/v1/reports?status=done", t).await,
        400,
        "status",
    );
    assert_problem(
        &gateway.get("/v1/reports/not-an-id", t).await,
        400,
        "report_id",
    );
    assert_eq!(gateway.get("/v1/reports", None).await.0, 401);
}
