//! `/v1/predictions*`, `/v1/models*` and `/v1/admin/models/*` over HTTP: the S&P 500 sample in
//! stock-data, the checkout's two `spx-lstm` versions in prediction (1.0.0 the champion, 1.1.0
//! a challenger).

use serde_json::{Value, json};

use crate::helpers::{Gateway, eventually};

/// A gateway whose stock-data holds the S&P 500 sample as `SPX`.
async fn ready() -> Gateway {
    let gateway = Gateway::start().await;
    mirai_stock_data::bars::load_sample(&gateway.platform.services[1].pool)
        .await
        .unwrap();
    gateway
}

fn assert_problem((status, headers, body): &(u16, reqwest::header::HeaderMap, Value), want: u16) {
    assert_eq!(*status, want, "{body}");
    assert_eq!(
        headers["content-type"], "application/problem+json",
        "{body}"
    );
}

/// A forecast is a real model run on the sample's last bars: ordered quantiles around a point
/// near the last close, stored, and found again in the caller's history.
#[tokio::test]
async fn a_forecast_is_served_stored_and_found_in_the_history() {
    let gateway = ready().await;
    let (user_id, token, _) = gateway
        .sign_up(&format!(
            "forecaster-{}@example.com",
            uuid::Uuid::new_v4().simple()
        ))
        .await;

    let (status, _, forecast) = gateway.get("/v1/predictions/SPX", Some(&token)).await;
    assert_eq!(status, 200, "{forecast}");
    assert_eq!(forecast["symbol"], "SPX");
    assert_eq!(forecast["model"]["name"], "spx-lstm");
    let last_close = forecast["last_close"].as_f64().unwrap();
    let (lower, point, upper) = (
        forecast["lower"].as_f64().unwrap(),
        forecast["point"].as_f64().unwrap(),
        forecast["upper"].as_f64().unwrap(),
    );
    assert!(lower < point && point < upper, "{forecast}");
    assert!(
        (point / last_close - 1.0).abs() < 0.2,
        "a next-day close near the last: {forecast}"
    );
    let p_up = forecast["p_up"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&p_up), "{forecast}");
    let levels: Vec<f64> = forecast["quantiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["level"].as_f64().unwrap())
        .collect();
    assert!(levels.windows(2).all(|w| w[0] < w[1]), "{forecast}");

    // The history is written off the request path: it shows up within moments.
    let history = async || {
        let (status, _, page) = gateway
            .get("/v1/predictions?mine=true&symbol=SPX", Some(&token))
            .await;
        assert_eq!(status, 200, "{page}");
        page
    };
    eventually("the forecast in the history", 1, async || {
        history().await["predictions"]
            .as_array()
            .map_or(0, Vec::len)
    })
    .await;
    let page = history().await;
    let stored = &page["predictions"][0];
    assert_eq!(
        stored["forecast"]["prediction_id"], forecast["prediction_id"],
        "{page}"
    );
    assert_eq!(stored["user_id"], user_id.as_str());
    assert_eq!(stored["served"], true);

    // Another user's history is not the caller's to read.
    let (other, _, _) = gateway
        .sign_up(&format!(
            "other-{}@example.com",
            uuid::Uuid::new_v4().simple()
        ))
        .await;
    let asked = gateway
        .get(&format!("/v1/predictions?user_id={other}"), Some(&token))
        .await;
    assert_problem(&asked, 403);
    assert_problem(&gateway.get("/v1/predictions", None).await, 401);
}

#[tokio::test]
async fn bad_forecast_requests_get_problem_details() {
    let gateway = ready().await;
    let token = gateway.admin_token().await;
    assert_problem(
        &gateway.get("/v1/predictions/NOPE", Some(&token)).await,
        404,
    );
    assert_problem(
        &gateway
            .get("/v1/predictions/not%20a%20ticker", Some(&token))
            .await,
        400,
    );
    // A version pinned without its model name.
    assert_problem(
        &gateway
            .get("/v1/predictions/SPX?version=1.0.0", Some(&token))
            .await,
        400,
    );
    // Pinning a version: the admin gets that one.
    let (status, _, pinned) = gateway
        .get(
            "/v1/predictions/SPX?model=spx-lstm&version=1.1.0",
            Some(&token),
        )
        .await;
    assert_eq!(status, 200, "{pinned}");
    assert_eq!(pinned["model"]["version"], "1.1.0");
}

/// A batch forecasts what it can and names the rest with the status a single request would
/// have answered; anonymous callers are held to 25 symbols.
#[tokio::test]
async fn a_batch_forecasts_what_it_can_and_names_the_rest() {
    let gateway = ready().await;
    let (status, _, batch) = gateway
        .post(
            "/v1/predictions:batch",
            None,
            json!({"symbols": ["SPX", "NOPE"]}),
        )
        .await;
    assert_eq!(status, 200, "{batch}");
    assert_eq!(batch["forecasts"].as_array().unwrap().len(), 1, "{batch}");
    assert_eq!(batch["forecasts"][0]["symbol"], "SPX");
    assert_eq!(batch["failures"][0]["symbol"], "NOPE");
    assert_eq!(batch["failures"][0]["status"], 404);

    let many: Vec<String> = (0..26).map(|i| format!("S{i}")).collect();
    assert_problem(
        &gateway
            .post("/v1/predictions:batch", None, json!({ "symbols": many }))
            .await,
        429,
    );
    assert_problem(
        &gateway
            .post("/v1/predictions:batch", None, json!({ "symbols": [] }))
            .await,
        400,
    );
}

/// The model catalogue and scoreboards are public; the versions are the checkout's registry.
#[tokio::test]
async fn models_versions_and_scoreboards_are_listed() {
    let gateway = ready().await;
    let (status, _, models) = gateway.get("/v1/models", None).await;
    assert_eq!(status, 200, "{models}");
    let (status, _, model) = gateway.get("/v1/models/spx-lstm", None).await;
    assert_eq!(status, 200, "{model}");
    let versions: Vec<&str> = model["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["model"]["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["1.1.0", "1.0.0"], "newest first: {model}");
    assert!(
        models.to_string().contains("spx-lstm"),
        "the catalogue lists spx-lstm: {models}"
    );

    let (status, _, version) = gateway
        .get("/v1/models/spx-lstm/versions/1.0.0", None)
        .await;
    assert_eq!(status, 200, "{version}");
    assert_eq!(version["role"], "champion");
    assert_eq!(version["status"], "ready");
    assert_eq!(version["sha256"].as_str().unwrap().len(), 64);
    assert_problem(
        &gateway
            .get("/v1/models/spx-lstm/versions/9.9.9", None)
            .await,
        404,
    );

    let (status, _, board) = gateway
        .get("/v1/models/spx-lstm/versions/1.0.0/scoreboard", None)
        .await;
    assert_eq!(status, 200, "{board}");
    assert_eq!(board["model"]["version"], "1.0.0");
    let (status, _, boards) = gateway.get("/v1/models:scoreboards", None).await;
    assert_eq!(status, 200, "{boards}");
    assert_eq!(
        boards["scoreboards"][0]["role"], "champion",
        "champion first: {boards}"
    );
    assert_problem(
        &gateway.get("/v1/models:scoreboards?last=0", None).await,
        400,
    );
}

/// Traffic, promotion and retirement are an admin's: a user is refused, the admin's changes
/// take effect and show in the version's role.
#[tokio::test]
async fn an_admin_splits_traffic_promotes_and_retires() {
    let gateway = ready().await;
    let admin = gateway.admin_token().await;
    let (_, user, _) = gateway
        .sign_up(&format!(
            "user-{}@example.com",
            uuid::Uuid::new_v4().simple()
        ))
        .await;
    assert_problem(
        &gateway.get("/v1/admin/models/traffic", Some(&user)).await,
        403,
    );

    let (status, _, traffic) = gateway.get("/v1/admin/models/traffic", Some(&admin)).await;
    assert_eq!(status, 200, "{traffic}");
    assert_eq!(traffic["champion"]["version"], "1.0.0", "{traffic}");

    let v1 = json!({"name": "spx-lstm", "version": "1.0.0"});
    let v11 = json!({"name": "spx-lstm", "version": "1.1.0"});
    let change = json!({
        "splits": [{"model": v1, "percent": 80}, {"model": v11, "percent": 20}],
        "champion": v1,
        "reason": "canary",
    });
    let put = |body: Value, token: String| {
        crate::helpers::send(
            gateway
                .http
                .put(gateway.url("/v1/admin/models/traffic"))
                .bearer_auth(token)
                .json(&body),
        )
    };
    let (status, _, traffic) = put(change.clone(), admin.clone()).await;
    assert_eq!(status, 200, "{traffic}");
    let percents: Vec<u64> = traffic["splits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["percent"].as_u64().unwrap())
        .collect();
    assert_eq!(percents.iter().sum::<u64>(), 100, "{traffic}");
    assert!(percents.contains(&20), "{traffic}");
    assert_problem(&put(change.clone(), user.clone()).await, 403);
    let mut bad = change.clone();
    bad["splits"][1]["percent"] = json!(30);
    assert_problem(&put(bad, admin.clone()).await, 400);

    let (status, _, promoted) = gateway
        .post(
            "/v1/admin/models/spx-lstm/versions/1.1.0/promote",
            Some(&admin),
            json!({"reason": "better pinball loss"}),
        )
        .await;
    assert_eq!(status, 200, "{promoted}");
    assert_eq!(promoted["champion"]["model"]["version"], "1.1.0");
    assert_eq!(promoted["previous_champion"]["version"], "1.0.0");
    let (_, _, version) = gateway
        .get("/v1/models/spx-lstm/versions/1.1.0", None)
        .await;
    assert_eq!(version["role"], "champion", "{version}");

    // The champion cannot be retired; the former one can.
    assert_problem(
        &gateway
            .post(
                "/v1/admin/models/spx-lstm/versions/1.1.0/retire",
                Some(&admin),
                json!({}),
            )
            .await,
        409,
    );
    let (status, _, retired) = gateway
        .post(
            "/v1/admin/models/spx-lstm/versions/1.0.0/retire",
            Some(&admin),
            json!({"reason": "superseded"}),
        )
        .await;
    assert_eq!(status, 200, "{retired}");
    assert_eq!(retired["version"]["status"], "retired", "{retired}");
    assert_problem(
        &gateway
            .post(
                "/v1/admin/models/spx-lstm/versions/1.0.0/promote",
                Some(&user),
                json!({}),
            )
            .await,
        403,
    );
}

/// A model report is the version's scoreboard and public track record: the anonymous forecast
/// made here is its one row, in the JSON and the CSV.
#[tokio::test]
async fn a_model_report_shows_the_versions_public_track_record() {
    let gateway = ready().await;
    let (status, _, forecast) = gateway.get("/v1/predictions/SPX", None).await;
    assert_eq!(status, 200, "{forecast}");
    let version = forecast["model"]["version"].as_str().unwrap().to_owned();
    let (_, token, _) = gateway
        .sign_up(&format!(
            "reporter-{}@example.com",
            uuid::Uuid::new_v4().simple()
        ))
        .await;
    let t = Some(token.as_str());
    // The history is written off the request path; the public one holds no user's forecasts.
    eventually(
        "the anonymous forecast in the public history",
        1,
        async || {
            let (_, _, page) = gateway.get("/v1/predictions?symbol=SPX", t).await;
            page["predictions"].as_array().map_or(0, Vec::len)
        },
    )
    .await;

    let (status, _, job) = gateway
        .post(
            "/v1/reports",
            t,
            json!({
                "model": { "name": "spx-lstm", "version": version },
                "formats": ["json", "csv"]
            }),
        )
        .await;
    assert_eq!(status, 202, "{job}");
    let location = format!("/v1/reports/{}", job["report_id"].as_str().unwrap());
    eventually(
        "the model report to succeed",
        "succeeded".to_owned(),
        async || {
            let (_, _, job) = gateway.get(&location, t).await;
            job["status"].as_str().unwrap_or_default().to_owned()
        },
    )
    .await;
    let download = async |format: &str| {
        let response = gateway
            .http
            .get(gateway.url(&format!("{location}/files/{format}")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{format}");
        response.text().await.unwrap()
    };

    let report: Value = serde_json::from_str(&download("json").await).unwrap();
    let board = &report["scoreboard"];
    assert_eq!(board["model"], format!("spx-lstm@{version}"), "{board}");
    // Nothing of it has matured here (no bar after the sample's last): no score yet.
    assert_eq!(board["count"], 0, "{board}");
    assert_eq!(
        report["subject"]["symbols"],
        json!(["SPX"]),
        "{report:.300}"
    );
    assert_eq!(report["table"]["rows"].as_array().unwrap().len(), 1);

    let csv = download("csv").await;
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(
        lines[0].starts_with("target_start,symbol,as_of,last_close,point"),
        "{csv}"
    );
    let cells: Vec<&str> = lines[1].split(',').collect();
    assert_eq!(cells[1], "SPX", "{csv}");
    let point: f64 = cells[4].parse().unwrap();
    assert!(
        (point - forecast["point"].as_f64().unwrap()).abs() < 1e-6 * point,
        "the row is the forecast served: {csv} vs {forecast}"
    );

    gateway.stop().await;
}
