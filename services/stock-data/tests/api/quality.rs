//! Data quality: every anomaly class on crafted data, the calendar (a holiday is no gap, a
//! missing session is), the report and its pages, coalesced events, and the real S&P 500.

use chrono::{Datelike, NaiveDate, Weekday};
use mirai_proto::events::v1::DataQualityIssue;
use mirai_proto::stock::v1::{
    AssetType, GetBarsRequest, GetQualityReportRequest, GetQualityReportResponse, QualityFlag,
};
use mirai_stock_data::ingest::{LiveBar, Stored};
use prost::Message as _;

use crate::helpers::{TestApp, at, csv_options, spawn, ts};

const ISSUE: &str = "mirai.data.quality.issue.v1";

/// NYSE full closures of 2024, written out independently of the service's calendar.
const HOLIDAYS_2024: [(u32, u32); 10] = [
    (1, 1),
    (1, 15),
    (2, 19),
    (3, 29),
    (5, 27),
    (6, 19),
    (7, 4),
    (9, 2),
    (11, 28),
    (12, 25),
];

fn trading_day(date: NaiveDate) -> bool {
    !matches!(date.weekday(), Weekday::Sat | Weekday::Sun)
        && !HOLIDAYS_2024.contains(&(date.month(), date.day()))
}

/// Daily bars of 2024-01-02 .. 2024-04-12 with one anomaly of each class; see the comments.
fn crafted() -> String {
    let mut csv = String::from("timestamp,open,high,low,close,volume\n");
    let mut day = NaiveDate::from_ymd_opt(2024, 1, 2).unwrap();
    let mut i = 0;
    while day <= NaiveDate::from_ymd_opt(2024, 4, 12).unwrap() {
        let date = day.to_string();
        day = day.succ_opt().unwrap();
        if date == "2024-04-02" {
            continue; // a missing trading day: the gap
        }
        if !trading_day(NaiveDate::parse_from_str(&date, "%Y-%m-%d").unwrap())
            && date != "2024-04-06"
        {
            continue; // weekends and holidays have no bar (the Saturday 6 April one does)
        }
        i += 1;
        // A ±1 % zig-zag around a level that jumps by 40 % on 10 April (the outlier).
        let level = if date.as_str() >= "2024-04-10" {
            140.0
        } else {
            100.0
        };
        let close = level * if i % 2 == 0 { 1.01 } else { 0.99 } * (1.0 + (i % 5) as f64 * 0.001);
        let (mut open, mut high, mut low, mut volume) = (close, close * 1.02, close * 0.98, 1000.0);
        match date.as_str() {
            "2024-03-05" => high = close * 0.99,      // high below the close
            "2024-03-06" => (open, low) = (0.0, 0.0), // a zero price
            "2024-03-07" => volume = 0.0,             // no volume on an equity
            _ => {}
        }
        csv.push_str(&format!("{date},{open},{high},{low},{close},{volume}\n"));
        if date == "2024-03-08" {
            // The same day again with other values: a duplicate (the last row wins).
            csv.push_str(&format!(
                "{date},{open},{high},{low},{},{volume}\n",
                close * 1.001
            ));
        }
    }
    csv
}

async fn report(app: &mut TestApp, request: GetQualityReportRequest) -> GetQualityReportResponse {
    app.client
        .get_quality_report(request)
        .await
        .unwrap()
        .into_inner()
}

fn count(report: &GetQualityReportResponse, flag: QualityFlag) -> u64 {
    report
        .counts
        .iter()
        .find(|c| c.flag == flag as i32)
        .map_or(0, |c| c.count)
}

async fn issues(app: &TestApp) -> Vec<DataQualityIssue> {
    app.outbox(ISSUE)
        .await
        .iter()
        .map(|p| DataQualityIssue::decode(p.as_slice()).unwrap())
        .collect()
}

#[tokio::test]
async fn each_anomaly_class_is_detected_and_reported_never_repaired() {
    let mut app = spawn().await;
    app.list("ACME", "XNAS", AssetType::Equity).await;
    let imported = app.import(csv_options("ACME"), &crafted()).await.unwrap();
    assert_eq!(imported.rows_rejected, 0, "{imported:?}");

    let full = report(
        &mut app,
        GetQualityReportRequest {
            symbol: "ACME".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(full.calendar, "XNYS");
    for (flag, expected) in [
        (QualityFlag::OhlcInconsistent, 1),
        (QualityFlag::NonPositivePrice, 1),
        (QualityFlag::NonPositiveVolume, 1),
        (QualityFlag::Duplicate, 1),
        (QualityFlag::GapBefore, 1),
        (QualityFlag::OffCalendar, 1),
        (QualityFlag::OutlierReturn, 1),
        (QualityFlag::OutOfOrder, 0),
        (QualityFlag::ValueChanged, 0),
    ] {
        assert_eq!(count(&full, flag), expected, "{flag:?}: {full:#?}");
    }
    assert_eq!(imported.rows_flagged, 7);
    assert_eq!(full.bars_clean, full.bars_checked - 7);
    // Holidays (15 Jan, 19 Feb, Good Friday) are no gaps; Tuesday 2 April is, and is listed.
    assert_eq!(full.missing_sessions, vec![ts("2024-04-02T13:30:00Z")]);
    let flagged_at = |flag: QualityFlag| -> Vec<prost_types::Timestamp> {
        full.issues
            .iter()
            .filter(|i| i.flag == flag as i32)
            .filter_map(|i| i.bar_start)
            .collect()
    };
    assert_eq!(
        flagged_at(QualityFlag::GapBefore),
        [ts("2024-04-03T13:30:00Z")]
    );
    assert_eq!(
        flagged_at(QualityFlag::OffCalendar),
        [ts("2024-04-06T13:30:00Z")]
    );
    assert_eq!(
        flagged_at(QualityFlag::OutlierReturn),
        [ts("2024-04-10T13:30:00Z")]
    );
    let outlier = full
        .issues
        .iter()
        .find(|i| i.flag == QualityFlag::OutlierReturn as i32)
        .unwrap();
    assert!(outlier.detail.contains("robust z"), "{outlier:?}");

    // Nothing was repaired: the zero price is stored as sent.
    let bars = app
        .client
        .get_bars(GetBarsRequest {
            symbol: "ACME".into(),
            start: Some(ts("2024-03-06T00:00:00Z")),
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .bars;
    assert_eq!(bars[0].open, 0.0);
    assert_eq!(
        bars[0].quality_flags,
        [QualityFlag::NonPositivePrice as i32]
    );

    // Events: one per flag for the whole import, all naming it.
    let events = issues(&app).await;
    assert_eq!(events.len(), 7, "{events:#?}");
    assert!(
        events
            .iter()
            .all(|e| e.import_id == imported.import_id && e.source == "import")
    );

    // The same file again: no new findings, no new events.
    app.import(csv_options("ACME"), &crafted()).await.unwrap();
    assert_eq!(issues(&app).await.len(), 7);

    // A changed value on re-import is flagged (and announced) as such.
    let changed = app
        .import(
            csv_options("ACME"),
            "timestamp,open,high,low,close,volume\n2024-03-11,100,103,97,100.5,1000\n",
        )
        .await
        .unwrap();
    assert_eq!(changed.rows_updated, 1);
    let after = report(
        &mut app,
        GetQualityReportRequest {
            symbol: "ACME".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(count(&after, QualityFlag::ValueChanged), 1);
    let events = issues(&app).await;
    assert_eq!(
        events.last().unwrap().flag,
        QualityFlag::ValueChanged as i32
    );
}

/// A series' bars (start, flags) and its findings (bar start, flag, detail), oldest first.
async fn stored(app: &TestApp, symbol: &str) -> (Vec<(String, i32)>, Vec<(String, i16, String)>) {
    let bars = sqlx::query_as(
        "SELECT to_char(start_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'), quality_flags FROM bars
         WHERE symbol = $1 ORDER BY start_at",
    )
    .bind(symbol)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let findings = sqlx::query_as(
        "SELECT to_char(bar_start AT TIME ZONE 'UTC', 'YYYY-MM-DD'), flag, detail
         FROM quality_issues WHERE symbol = $1 ORDER BY bar_start, flag",
    )
    .bind(symbol)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    (bars, findings)
}

#[tokio::test]
async fn a_first_import_checked_in_memory_flags_what_the_staged_path_flags() {
    let mut app = spawn().await;
    let data = crafted();
    let (header, rows) = data.split_once('\n').unwrap();
    let lines: Vec<&str> = rows.lines().collect();
    let part = |pick: &dyn Fn(&&str) -> bool| {
        let picked: Vec<&str> = lines.iter().copied().filter(|l| pick(l)).collect();
        format!("{header}\n{}\n", picked.join("\n"))
    };
    for symbol in ["FIRST", "STAGED", "SPLIT"] {
        app.list(symbol, "XNAS", AssetType::Equity).await;
    }
    // FIRST: the whole file into an empty range, checked in memory and copied into `bars`.
    let first = app.import(csv_options("FIRST"), &data).await.unwrap();
    assert_eq!(
        (first.rows_inserted, first.rows_flagged),
        (lines.len() as u64 - 1, 7)
    );
    // STAGED: one unremarkable bar stored first, so the whole file goes through the staging
    // table and `INSERT … ON CONFLICT`, then the checks over the stored range.
    app.import(
        csv_options("STAGED"),
        &part(&|l| l.starts_with("2024-02-01")),
    )
    .await
    .unwrap();
    let staged = app.import(csv_options("STAGED"), &data).await.unwrap();
    assert_eq!(
        (staged.rows_inserted, staged.rows_unchanged),
        (first.rows_inserted - 1, 1)
    );
    assert_eq!(staged.rows_flagged, first.rows_flagged);
    let (first_bars, first_findings) = stored(&app, "FIRST").await;
    assert_eq!(
        stored(&app, "STAGED").await,
        (first_bars.clone(), first_findings.clone())
    );
    // SPLIT: the bars from 3 April first, then the earlier ones into the empty range before
    // them: 3 April, stored with no bar before it, becomes the bar after a missing session once
    // its predecessor arrives, and its stored flags are rewritten.
    app.import(csv_options("SPLIT"), &part(&|l| *l >= "2024-04-03"))
        .await
        .unwrap();
    let (bars, _) = stored(&app, "SPLIT").await;
    let gap = mirai_stock_data::quality::bit(QualityFlag::GapBefore);
    assert_eq!(bars[0].0, "2024-04-03");
    assert_eq!(bars[0].1 & gap, 0, "no predecessor yet: no gap");
    let earlier = app
        .import(csv_options("SPLIT"), &part(&|l| *l < "2024-04-03"))
        .await
        .unwrap();
    assert_eq!(earlier.rows_updated, 0, "{earlier:?}");
    let (split_bars, split_findings) = stored(&app, "SPLIT").await;
    let on = |bars: &[(String, i32)], day: &str| bars.iter().find(|b| b.0 == day).unwrap().1;
    assert_eq!(on(&split_bars, "2024-04-03"), on(&first_bars, "2024-04-03"));
    assert_ne!(on(&split_bars, "2024-04-03") & gap, 0);
    assert!(
        split_findings
            .iter()
            .any(|f| f.0 == "2024-04-03" && f.1 == QualityFlag::GapBefore as i16),
        "{split_findings:?}"
    );
    // Before the join the series are the same.
    let before = |bars: &[(String, i32)]| -> Vec<(String, i32)> {
        bars.iter()
            .filter(|b| b.0.as_str() < "2024-04-03")
            .cloned()
            .collect()
    };
    assert_eq!(before(&split_bars), before(&first_bars));
}

#[tokio::test]
async fn bars_name_stored_symbols_and_a_symbol_with_bars_stays() {
    let mut app = spawn().await;
    app.list("ACME", "XNAS", AssetType::Equity).await;
    app.import(csv_options("ACME"), &crafted()).await.unwrap();
    let insert = |symbol: &'static str| {
        sqlx::query(
            "INSERT INTO bars (symbol, timeframe, start_at, end_at, open, high, low, close,
                               volume, adjustment, source)
             VALUES ($1, 6, '2030-01-02 14:30+00', '2030-01-02 21:00+00', 1, 1, 1, 1, 1, 0, 't')",
        )
        .bind(symbol)
        .execute(&app.pool)
    };
    let refused = |result: Result<sqlx::postgres::PgQueryResult, sqlx::Error>| {
        result.unwrap_err().as_database_error().map(|e| e.kind())
    };
    assert_eq!(
        refused(insert("NOPE").await),
        Some(sqlx::error::ErrorKind::ForeignKeyViolation)
    );
    insert("ACME").await.unwrap();
    for statement in [
        "DELETE FROM symbols WHERE symbol = 'ACME'",
        "UPDATE symbols SET symbol = 'ACME2' WHERE symbol = 'ACME'",
        "UPDATE bars SET symbol = 'NOPE' WHERE symbol = 'ACME'",
    ] {
        assert_eq!(
            refused(sqlx::query(statement).execute(&app.pool).await),
            Some(sqlx::error::ErrorKind::ForeignKeyViolation),
            "{statement}"
        );
    }
}

#[tokio::test]
async fn report_pages_cover_every_issue_once() {
    let mut app = spawn().await;
    app.list("ACME", "XNAS", AssetType::Equity).await;
    app.import(csv_options("ACME"), &crafted()).await.unwrap();
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = report(
            &mut app,
            GetQualityReportRequest {
                symbol: "ACME".into(),
                max_issues: 2,
                page_token: token,
                ..Default::default()
            },
        )
        .await;
        assert!(page.issues.len() <= 2);
        seen.extend(
            page.issues
                .iter()
                .map(|i| (i.bar_start.unwrap().seconds, i.flag)),
        );
        if page.next_page_token.is_empty() {
            assert!(!page.issues_truncated);
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen.len(), 7);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, seen, "oldest first, no repeats");

    let bad = app
        .client
        .get_quality_report(GetQualityReportRequest {
            symbol: "ACME".into(),
            page_token: "bm90IGEgdG9rZW4".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
}

#[tokio::test]
async fn zero_volume_on_an_index_is_not_an_issue() {
    let mut app = spawn().await;
    app.list("IDX", "XNYS", AssetType::Index).await;
    let report = app
        .import(
            csv_options("IDX"),
            "timestamp,open,high,low,close,volume\n2024-06-03,10,11,9,10.5,0\n2024-06-04,10.5,11,10,10.8,0\n",
        )
        .await
        .unwrap();
    assert_eq!(report.rows_flagged, 0, "{report:?}");
}

#[tokio::test]
async fn the_real_sp500_history_fits_the_nyse_calendar() {
    let mut app = spawn().await;
    mirai_stock_data::bars::load_sample(&app.pool)
        .await
        .unwrap();
    let full = report(
        &mut app,
        GetQualityReportRequest {
            symbol: "SPX".into(),
            ..Default::default()
        },
    )
    .await;
    let rows = include_str!("../../sample/sp500-2000.csv")
        .lines()
        .skip(1)
        .count();
    assert_eq!(full.bars_checked as usize, rows);
    // Every session 2000-01-03 .. 2020-04-17 has a bar, and no bar falls on a closed day:
    // the calendar's holidays, special closures and weekends agree with the real data.
    assert_eq!(count(&full, QualityFlag::GapBefore), 0, "{:?}", full.issues);
    assert_eq!(
        count(&full, QualityFlag::OffCalendar),
        0,
        "{:?}",
        full.issues
    );
    assert!(
        full.missing_sessions.is_empty(),
        "{:?}",
        full.missing_sessions
    );
    // Early closes end the daily bar at 13:00 New York time: Black Friday 2019.
    let friday = app
        .client
        .get_bars(GetBarsRequest {
            symbol: "SPX".into(),
            start: Some(ts("2019-11-29T00:00:00Z")),
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .bars;
    assert_eq!(friday[0].end, Some(ts("2019-11-29T18:00:00Z")));
}

#[tokio::test]
async fn live_bars_out_of_order_are_flagged_and_identical_redeliveries_change_nothing() {
    let mut app = spawn().await;
    app.list("ACME", "XNAS", AssetType::Equity).await;
    let ingest = mirai_stock_data::ingest::Ingest::new(
        app.pool.clone(),
        mirai_stock_data::quotes::Quotes::new(app.pool.clone()),
        Default::default(),
    );
    let minute = |start: &str, close: f64| LiveBar {
        symbol: "ACME".into(),
        timeframe: mirai_proto::stock::v1::Timeframe::OneMinute,
        start: at(start),
        end: at(start) + chrono::Duration::minutes(1),
        open: 10.0,
        high: 11.0,
        low: 9.0,
        close,
        volume: 100.0,
        vwap: None,
        trade_count: None,
    };
    let later = minute("2024-06-03T13:31:00Z", 10.5);
    let earlier = minute("2024-06-03T13:30:00Z", 10.2);
    assert_eq!(ingest.bar(&later, "feed").await.unwrap(), Stored::New);
    assert_eq!(ingest.bar(&earlier, "feed").await.unwrap(), Stored::New);
    assert_eq!(
        ingest.bar(&earlier, "feed").await.unwrap(),
        Stored::Unchanged
    );
    let closed = app.outbox("mirai.stock.bar.closed.v1").await;
    assert_eq!(closed.len(), 2, "a redelivery emits nothing");
    let second = mirai_proto::events::v1::BarClosed::decode(closed[1].as_slice()).unwrap();
    assert_eq!(
        second.bar.unwrap().quality_flags,
        [QualityFlag::OutOfOrder as i32]
    );
    let events = issues(&app).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].flag, QualityFlag::OutOfOrder as i32);
    assert_eq!(events[0].import_id, "");
}
