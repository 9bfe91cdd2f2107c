//! Report jobs: generation in every format (decoded with real decoders), failures that are
//! reported and never left running, ownership, and the deletion saga.

use std::collections::HashMap;
use std::time::Duration;

use mirai_proto::analytics::v1 as pb;
use mirai_proto::events::v1 as ev;
use prost::Message as _;
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::{TestApp, as_user, eventually, sample_rows, spawn, spawn_with, ts};

fn symbol_subject(symbol: &str) -> Option<pb::ReportSubject> {
    Some(pb::ReportSubject {
        subject: Some(pb::report_subject::Subject::Symbol(symbol.into())),
    })
}

async fn create(
    app: &mut TestApp,
    user: Uuid,
    r: pb::CreateReportRequest,
) -> Result<pb::ReportJob, tonic::Status> {
    app.client
        .create_report(as_user(user, r))
        .await
        .map(|r| r.into_inner().report.unwrap())
}

async fn get(app: &mut TestApp, user: Uuid, id: &str) -> Result<pb::ReportJob, tonic::Status> {
    app.client
        .get_report(as_user(
            user,
            pb::GetReportRequest {
                user_id: user.to_string(),
                report_id: id.into(),
            },
        ))
        .await
        .map(|r| r.into_inner().report.unwrap())
}

/// Polls until the job is finished (SUCCEEDED or FAILED).
async fn finished(app: &TestApp, user: Uuid, id: &str) -> pb::ReportJob {
    let client = app.client.clone();
    eventually("the report job to finish", || {
        let mut client = client.clone();
        async move {
            let job = client
                .get_report(as_user(
                    user,
                    pb::GetReportRequest {
                        user_id: user.to_string(),
                        report_id: id.into(),
                    },
                ))
                .await
                .unwrap()
                .into_inner()
                .report
                .unwrap();
            matches!(
                job.status(),
                pb::ReportStatus::Succeeded | pb::ReportStatus::Failed
            )
            .then_some(job)
        }
    })
    .await
}

async fn download(
    app: &mut TestApp,
    user: Uuid,
    id: &str,
    format: pb::ReportFormat,
) -> Result<(pb::ReportFile, Vec<u8>), tonic::Status> {
    let mut stream = app
        .client
        .download_report(as_user(
            user,
            pb::DownloadReportRequest {
                user_id: user.to_string(),
                report_id: id.into(),
                format: format.into(),
            },
        ))
        .await?
        .into_inner();
    let mut meta = None;
    let mut data = Vec::new();
    while let Some(chunk) = stream.message().await? {
        assert!(chunk.data.len() <= 64 * 1024);
        if let Some(file) = chunk.file {
            assert!(meta.is_none(), "metadata comes once");
            meta = Some(file);
        }
        data.extend(chunk.data);
    }
    Ok((meta.expect("metadata in the first message"), data))
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Every (colour, points) of the chart's lines, from the JSON.
fn lines_of(json: &Value) -> Vec<(String, String, u64)> {
    json["chart"]["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["lines"].as_array().unwrap().clone())
        .map(|l| {
            (
                l["name"].as_str().unwrap().to_owned(),
                l["color"].as_str().unwrap().to_owned(),
                l["points"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn rgb(hex: &str) -> [u8; 3] {
    let v = u32::from_str_radix(hex.trim_start_matches('#'), 16).unwrap();
    [(v >> 16) as u8, (v >> 8) as u8, v as u8]
}

#[tokio::test]
async fn a_symbol_report_renders_every_format_with_the_series_asked_for() {
    let mut app = spawn().await;
    app.backfill("SPX").await;
    let user = Uuid::now_v7();
    let job = create(
        &mut app,
        user,
        pb::CreateReportRequest {
            subject: symbol_subject("SPX"),
            start: Some(ts("2015-01-01T00:00:00Z")),
            end: Some(ts("2020-01-01T00:00:00Z")),
            benchmark: "SPX".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(job.status(), pb::ReportStatus::Queued);
    assert_eq!(job.formats.len(), 4, "empty means all four");
    assert_eq!(job.title, "SPX 2015-01-01 – 2020-01-01");
    let done = finished(&app, user, &job.report_id).await;
    assert_eq!(done.status(), pb::ReportStatus::Succeeded, "{}", done.error);
    assert_eq!(done.files.len(), 4);
    assert!(done.started_at.is_some() && done.finished_at.is_some() && done.expires_at.is_some());

    let mut files = HashMap::new();
    for format in [
        pb::ReportFormat::Json,
        pb::ReportFormat::Csv,
        pb::ReportFormat::Png,
        pb::ReportFormat::Svg,
    ] {
        let (meta, data) = download(&mut app, user, &job.report_id, format)
            .await
            .unwrap();
        assert_eq!(meta.size_bytes as usize, data.len());
        assert_eq!(meta.sha256, sha256_hex(&data));
        files.insert(format, (meta, data));
    }
    let content_type = |f| files[&f].0.content_type.clone();
    assert_eq!(content_type(pb::ReportFormat::Json), "application/json");
    assert_eq!(
        content_type(pb::ReportFormat::Csv),
        "text/csv; charset=utf-8"
    );
    assert_eq!(content_type(pb::ReportFormat::Png), "image/png");
    assert_eq!(content_type(pb::ReportFormat::Svg), "image/svg+xml");
    assert_eq!(
        files[&pb::ReportFormat::Png].0.file_name,
        "SPX-20150101-20200101.png"
    );

    // JSON: the numbers, the table and what the charts show.
    let json: Value = serde_json::from_slice(&files[&pb::ReportFormat::Json].1).unwrap();
    let bars = sample_rows()
        .iter()
        .filter(|r| r.0.as_str() >= "2015-01-01" && r.0.as_str() < "2020-01-01")
        .count();
    assert_eq!(json["statistics"][0]["symbol"], "SPX");
    assert_eq!(json["statistics"][0]["bars"], bars);
    // The benchmark is the symbol itself: no statistics against it.
    assert!(
        json["statistics"][0]["beta"].is_null(),
        "{}",
        json["statistics"][0]
    );
    let (width, height) = (
        json["chart"]["width"].as_u64().unwrap(),
        json["chart"]["height"].as_u64().unwrap(),
    );
    assert_eq!(
        (width, height),
        (1200, 60 + 3 * 360),
        "three panels under a title"
    );
    let lines = lines_of(&json);
    let names: Vec<&str> = lines.iter().map(|l| l.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "Close",
            "SMA 50",
            "SMA 200",
            "BB upper (20, 2)",
            "BB lower (20, 2)",
            "Drawdown",
            "Rolling Sharpe 63"
        ]
    );
    assert_eq!(lines[0].2 as usize, bars);
    assert_eq!(lines[2].2 as usize, bars - 199, "the SMA 200 warms up");

    // CSV: parses back to exactly the JSON's table (every f64 round-trips).
    let mut reader = csv::Reader::from_reader(files[&pb::ReportFormat::Csv].1.as_slice());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    let columns: Vec<String> = json["table"]["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(header, columns);
    assert_eq!(
        &header[..8],
        [
            "time", "open", "high", "low", "close", "volume", "sma_50", "sma_200"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let table = json["table"]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), bars);
    assert_eq!(rows.len(), table.len());
    let sample: Vec<[f64; 5]> = sample_rows()
        .into_iter()
        .filter(|r| r.0.as_str() >= "2015-01-01" && r.0.as_str() < "2020-01-01")
        .map(|r| r.1)
        .collect();
    for ((record, expected), raw) in rows.iter().zip(table).zip(&sample) {
        for (k, field) in record.iter().enumerate().skip(1) {
            let want = expected[k].as_f64();
            let got = (!field.is_empty()).then(|| field.parse::<f64>().unwrap());
            assert_eq!(got, want, "column {}", header[k]);
        }
        assert_eq!(
            record[4].parse::<f64>().unwrap(),
            raw[3],
            "the close is the sample's"
        );
    }

    // PNG: a real decoder, the stated size, and every line's colour drawn.
    let decoder = png::Decoder::new(std::io::Cursor::new(
        files[&pb::ReportFormat::Png].1.clone(),
    ));
    let mut reader = decoder.read_info().unwrap();
    let title = &reader.info().utf8_text[0];
    assert_eq!(
        (title.keyword.as_str(), title.get_text().unwrap()),
        ("Title", job.title.clone())
    );
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    assert_eq!(
        (u64::from(info.width), u64::from(info.height)),
        (width, height)
    );
    assert_eq!(info.color_type, png::ColorType::Rgb);
    let mut counts: HashMap<[u8; 3], usize> = HashMap::new();
    for px in pixels[..info.buffer_size()].chunks(3) {
        *counts.entry([px[0], px[1], px[2]]).or_default() += 1;
    }
    for (name, color, _) in &lines {
        let n = counts.get(&rgb(color)).copied().unwrap_or(0);
        assert!(n > 100, "{name} ({color}) has {n} pixels in the PNG");
    }

    // SVG: an XML parser, the stated size, and one polyline per line with all its points.
    let svg = String::from_utf8(files[&pb::ReportFormat::Svg].1.clone()).unwrap();
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    assert_eq!(root.attribute("width"), Some(width.to_string().as_str()));
    assert_eq!(root.attribute("height"), Some(height.to_string().as_str()));
    let polylines: Vec<(String, usize)> = doc
        .descendants()
        .filter(|n| n.has_tag_name("polyline"))
        .map(|n| {
            (
                n.attribute("stroke").unwrap_or_default().to_owned(),
                n.attribute("points")
                    .unwrap_or_default()
                    .split_whitespace()
                    .count(),
            )
        })
        .collect();
    for (name, color, points) in &lines {
        let drawn: Vec<usize> = polylines
            .iter()
            .filter(|(s, _)| s == color)
            .map(|(_, n)| *n)
            .collect();
        assert!(
            drawn.contains(&(*points as usize)),
            "{name} ({color}): polylines {drawn:?}, want one of {points} points"
        );
        assert!(drawn.contains(&2), "{name} has a legend entry");
    }

    // report.completed went to the outbox, for notification to tell the user.
    let events: Vec<ev::ReportCompleted> = app
        .outbox("mirai.report.completed.v1")
        .await
        .iter()
        .map(|p| ev::ReportCompleted::decode(p.as_slice()).unwrap())
        .collect();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].report_id, job.report_id);
    assert_eq!(events[0].user_id, user.to_string());
    assert_eq!(events[0].status(), pb::ReportStatus::Succeeded);
    assert_eq!(events[0].files.len(), 4);
}

#[tokio::test]
async fn a_watchlist_report_lists_what_it_could_not_find() {
    let mut app = spawn().await;
    app.backfill("SPX").await;
    let user = Uuid::now_v7();
    let job = create(
        &mut app,
        user,
        pb::CreateReportRequest {
            subject: Some(pb::ReportSubject {
                subject: Some(pb::report_subject::Subject::Watchlist(pb::Watchlist {
                    symbols: vec!["SPX".into(), "NOPE".into(), "spx".into()],
                })),
            }),
            start: Some(ts("2018-01-01T00:00:00Z")),
            end: Some(ts("2020-01-01T00:00:00Z")),
            formats: vec![pb::ReportFormat::Json.into(), pb::ReportFormat::Svg.into()],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let done = finished(&app, user, &job.report_id).await;
    assert_eq!(done.status(), pb::ReportStatus::Succeeded, "{}", done.error);
    assert_eq!(done.files.len(), 2);
    let (_, data) = download(&mut app, user, &job.report_id, pb::ReportFormat::Json)
        .await
        .unwrap();
    let json: Value = serde_json::from_slice(&data).unwrap();
    assert_eq!(json["missing"], serde_json::json!(["NOPE"]));
    assert_eq!(json["subject"]["symbols"], serde_json::json!(["SPX"]));
    assert_eq!(
        json["correlation"][0][0]
            .as_f64()
            .map(|c| (c - 1.0).abs() < 1e-12),
        Some(true)
    );
    assert_eq!(json["trends"][0]["momentum_rank"], 1);
    let missing = download(&mut app, user, &job.report_id, pb::ReportFormat::Png)
        .await
        .unwrap_err();
    assert_eq!(
        missing.code(),
        tonic::Code::NotFound,
        "PNG was not asked for"
    );
}

#[tokio::test]
async fn a_report_without_data_fails_with_the_reason() {
    let mut app = spawn().await;
    let user = Uuid::now_v7();
    let job = create(
        &mut app,
        user,
        pb::CreateReportRequest {
            subject: symbol_subject("NOPE"),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let done = finished(&app, user, &job.report_id).await;
    assert_eq!(done.status(), pb::ReportStatus::Failed);
    assert!(
        done.error.starts_with("NOPE has 0 daily bars"),
        "{}",
        done.error
    );
    assert!(done.files.is_empty());
    let err = download(&mut app, user, &job.report_id, pb::ReportFormat::Png)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    let events = app.outbox("mirai.report.completed.v1").await;
    let event = ev::ReportCompleted::decode(events[0].as_slice()).unwrap();
    assert_eq!(event.status(), pb::ReportStatus::Failed);
    assert_eq!(event.error, done.error);
}

#[tokio::test]
async fn a_model_report_fails_visibly_when_the_prediction_service_is_down() {
    let mut app = spawn_with(true, |c| {
        c.backfill_on_start = false;
        // Nothing listens there.
        c.prediction.target = mirai_platform::grpc::client::Target::Static(vec![format!(
            "http://127.0.0.1:{}",
            mirai_platform::testing::free_port()
        )]);
    })
    .await;
    let user = Uuid::now_v7();
    let job = create(
        &mut app,
        user,
        pb::CreateReportRequest {
            subject: Some(pb::ReportSubject {
                subject: Some(pb::report_subject::Subject::Model(
                    mirai_proto::prediction::v1::ModelRef {
                        name: "spx-lstm".into(),
                        version: "1.0.0".into(),
                    },
                )),
            }),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let done = finished(&app, user, &job.report_id).await;
    assert_eq!(done.status(), pb::ReportStatus::Failed);
    assert!(
        done.error.starts_with("prediction service:"),
        "{}",
        done.error
    );
}

#[tokio::test]
async fn a_job_past_its_timeout_is_failed_not_left_running() {
    // A worker that cannot finish in time: the job fails with the reason.
    let mut app = spawn_with(true, |c| {
        c.backfill_on_start = false;
        c.reports.timeout = Duration::from_millis(1);
    })
    .await;
    app.backfill("SPX").await;
    let user = Uuid::now_v7();
    let job = create(
        &mut app,
        user,
        pb::CreateReportRequest {
            subject: symbol_subject("SPX"),
            start: Some(ts("2000-01-01T00:00:00Z")),
            end: Some(ts("2020-06-01T00:00:00Z")),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let done = finished(&app, user, &job.report_id).await;
    assert_eq!(done.status(), pb::ReportStatus::Failed);
    assert!(done.error.starts_with("timed out"), "{}", done.error);

    // A job whose worker vanished (still RUNNING past its deadline) is failed by the sweeper.
    let orphan = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO report_jobs (report_id, user_id, subject_kind, symbols, start_at, end_at,
                                  formats, title, status, started_at, deadline_at)
         VALUES ($1, $2, 'symbol', '{SPX}', now() - interval '1 year', now(), '{1}', 'orphan',
                 'running', now() - interval '10 minutes', now() - interval '8 minutes')",
    )
    .bind(orphan)
    .bind(user)
    .execute(&app.pool)
    .await
    .unwrap();
    let swept = finished(&app, user, &orphan.to_string()).await;
    assert_eq!(swept.status(), pb::ReportStatus::Failed);
    assert_eq!(
        swept.error,
        "timed out: the report was not finished within 120 s"
    );
}

#[tokio::test]
async fn reports_belong_to_their_owner_and_bad_requests_name_the_field() {
    let mut app = spawn().await;
    let (owner, other) = (Uuid::now_v7(), Uuid::now_v7());
    let mut ids = Vec::new();
    for _ in 0..3 {
        let job = create(
            &mut app,
            owner,
            pb::CreateReportRequest {
                subject: symbol_subject("NOPE"),
                formats: vec![pb::ReportFormat::Json.into()],
                ..Default::default()
            },
        )
        .await
        .unwrap();
        ids.push(job.report_id);
    }
    assert_eq!(
        get(&mut app, other, &ids[0]).await.unwrap_err().code(),
        tonic::Code::NotFound
    );
    let foreign = app
        .client
        .list_reports(as_user(
            other,
            pb::ListReportsRequest {
                user_id: owner.to_string(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(foreign.code(), tonic::Code::PermissionDenied);

    // Newest first, in pages.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = app
            .client
            .list_reports(as_user(
                owner,
                pb::ListReportsRequest {
                    page_size: 2,
                    page_token: token.clone(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.reports.into_iter().map(|r| r.report_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    ids.reverse();
    assert_eq!(seen, ids);

    app.client
        .delete_report(as_user(
            owner,
            pb::DeleteReportRequest {
                user_id: owner.to_string(),
                report_id: ids[0].clone(),
            },
        ))
        .await
        .unwrap();
    assert_eq!(
        get(&mut app, owner, &ids[0]).await.unwrap_err().code(),
        tonic::Code::NotFound
    );

    for (request, field) in [
        (
            pb::CreateReportRequest {
                subject: symbol_subject("SPX"),
                start: Some(ts("2020-01-01T00:00:00Z")),
                end: Some(ts("2019-01-01T00:00:00Z")),
                ..Default::default()
            },
            "end:",
        ),
        (
            pb::CreateReportRequest {
                subject: symbol_subject("SPX"),
                title: "x".repeat(201),
                ..Default::default()
            },
            "title:",
        ),
        (pb::CreateReportRequest::default(), "subject:"),
        (
            pb::CreateReportRequest {
                subject: symbol_subject("not a ticker"),
                ..Default::default()
            },
            "subject.symbol:",
        ),
    ] {
        let err = create(&mut app, owner, request).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(
            err.message().starts_with(field),
            "{} should start with {field}",
            err.message()
        );
    }
}

#[tokio::test]
async fn account_deletion_purges_the_users_reports_and_confirms() {
    let mut app = spawn().await;
    app.backfill("SPX").await;
    let (user, other) = (Uuid::now_v7(), Uuid::now_v7());
    let mut jobs = Vec::new();
    for owner in [user, user, other] {
        let job = create(
            &mut app,
            owner,
            pb::CreateReportRequest {
                subject: symbol_subject("SPX"),
                start: Some(ts("2019-01-01T00:00:00Z")),
                end: Some(ts("2020-01-01T00:00:00Z")),
                formats: vec![pb::ReportFormat::Json.into(), pb::ReportFormat::Csv.into()],
                ..Default::default()
            },
        )
        .await
        .unwrap();
        jobs.push((owner, job.report_id));
    }
    for (owner, id) in &jobs {
        assert_eq!(
            finished(&app, *owner, id).await.status(),
            pb::ReportStatus::Succeeded
        );
    }
    app.publish(
        "user",
        &ev::UserDeletionRequested {
            user_id: user.to_string(),
            participants: vec!["stock-data".into(), "analytics".into()],
            attempt: 0,
        },
        None,
    )
    .await;
    app.wait_processed("deletion-saga.participant", 1).await;
    for (owner, id) in &jobs[..2] {
        assert_eq!(
            get(&mut app, *owner, id).await.unwrap_err().code(),
            tonic::Code::NotFound
        );
    }
    assert_eq!(
        get(&mut app, other, &jobs[2].1).await.unwrap().status(),
        pb::ReportStatus::Succeeded,
        "others keep theirs"
    );
    let files: i64 = sqlx::query_scalar("SELECT count(*) FROM report_files f JOIN report_jobs j USING (report_id) WHERE j.user_id = $1")
        .bind(user)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(files, 0);
    let confirmations: Vec<ev::UserDataPurged> = app
        .outbox("mirai.user.data.purged.v1")
        .await
        .iter()
        .map(|p| ev::UserDataPurged::decode(p.as_slice()).unwrap())
        .collect();
    assert_eq!(confirmations.len(), 1);
    assert_eq!(confirmations[0].participant, "analytics");
    assert_eq!(
        confirmations[0].items_purged,
        2 + 4,
        "two jobs and their four files"
    );
}

#[tokio::test]
async fn reports_queued_and_stored_are_capped_per_user() {
    let mut app = spawn_with(true, |c| {
        c.backfill_on_start = false;
        c.reports.max_pending = 2;
        c.reports.max_stored = 2;
    })
    .await;
    app.backfill("SPX").await;
    let request = || pb::CreateReportRequest {
        subject: symbol_subject("SPX"),
        start: Some(ts("2015-01-01T00:00:00Z")),
        end: Some(ts("2020-01-01T00:00:00Z")),
        ..Default::default()
    };
    // Concurrent requests cannot pass the queued-or-running cap.
    let user = Uuid::now_v7();
    let attempts = (0..6).map(|_| {
        let mut client = app.client.clone();
        let r = request();
        async move { client.create_report(as_user(user, r)).await }
    });
    let results = futures::future::join_all(attempts).await;
    let accepted: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .map(|r| r.get_ref().report.as_ref().unwrap().report_id.clone())
        .collect();
    assert!(
        (1..=2).contains(&accepted.len()),
        "at most 2 at once: {results:?}"
    );
    for refused in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(
            refused.code(),
            tonic::Code::ResourceExhausted,
            "{refused:?}"
        );
    }
    for id in &accepted {
        finished(&app, user, id).await;
    }
    // Once finished they are stored: the stored cap applies.
    while create(&mut app, user, request()).await.is_ok() {}
    let stored = app
        .client
        .list_reports(as_user(
            user,
            pb::ListReportsRequest {
                user_id: user.to_string(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .reports;
    for job in &stored {
        finished(&app, user, &job.report_id).await;
    }
    let refused = create(&mut app, user, request()).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    assert!(refused.message().contains("stored reports"), "{refused:?}");
    assert_eq!(stored.len(), 2);
    // Another user is not affected, and the byte cap counts the files kept.
    let mut small = spawn_with(true, |c| {
        c.backfill_on_start = false;
        c.reports.max_stored_bytes = 1;
    })
    .await;
    small.backfill("SPX").await;
    let other = Uuid::now_v7();
    let job = create(&mut small, other, request()).await.unwrap();
    assert_eq!(
        finished(&small, other, &job.report_id).await.status(),
        pb::ReportStatus::Succeeded
    );
    let refused = create(&mut small, other, request()).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
}
