//! Bulk import of bars through the client-streaming RPC, against real PostgreSQL.

use mirai_platform::config::ServiceConfig;
use mirai_platform::testing::TestDatabase;
use mirai_proto::stock::v1::import_bars_request::Part;
use mirai_proto::stock::v1::{
    AddSymbolRequest, AssetType, GetBarsRequest, ImportBarsRequest, ImportBarsResponse,
    ImportFormat, ImportOptions, QualityFlag, Symbol, Timeframe,
};
use tokio_util::sync::CancellationToken;

use crate::helpers::Client;

async fn start() -> (Client, CancellationToken, TestDatabase) {
    let db = TestDatabase::create("stock_data").await;
    let config = ServiceConfig::for_tests("mirai-stock-data", db.url());
    let app = mirai_stock_data::startup::build(&config).await.unwrap();
    let addr = app.grpc_addr();
    let stop = CancellationToken::new();
    tokio::spawn(app.run_until_stopped(stop.clone()));
    let mut client = crate::helpers::connect(addr).await;
    client
        .add_symbol(AddSymbolRequest {
            symbol: Some(Symbol {
                symbol: "ACME".into(),
                name: "Acme Corp.".into(),
                exchange_mic: "XNAS".into(),
                currency: "USD".into(),
                asset_type: AssetType::Equity.into(),
                ..Default::default()
            }),
            actor_user_id: String::new(),
        })
        .await
        .unwrap();
    (client, stop, db)
}

async fn import(
    client: &mut Client,
    options: ImportOptions,
    data: &str,
) -> Result<ImportBarsResponse, tonic::Status> {
    // Split into small chunks so lines cross chunk boundaries.
    let mut messages = vec![ImportBarsRequest {
        part: Some(Part::Options(options)),
    }];
    for chunk in data.as_bytes().chunks(7) {
        messages.push(ImportBarsRequest {
            part: Some(Part::Data(chunk.to_vec())),
        });
    }
    client
        .import_bars(futures::stream::iter(messages))
        .await
        .map(|r| r.into_inner())
}

fn csv_options() -> ImportOptions {
    ImportOptions {
        format: ImportFormat::Csv.into(),
        default_symbol: "ACME".into(),
        ..Default::default()
    }
}

const DAILY: &str = "timestamp,open,high,low,close,volume
2024-03-08,10,11,9,10.5,1000
2024-03-11,10.5,12,10,11.5,1200

2024-03-12,11.5,11,12,11.8,900
2024-03-13,11.8,12.5,11.5,twelve,1000
2024-03-14,12,12.2,11.9,12.1,800
2024-03-14,12,12.3,11.9,12.2,850
";

#[tokio::test]
async fn a_csv_import_keeps_good_rows_reports_bad_ones_and_is_idempotent() {
    let (mut client, stop, _db) = start().await;
    let report = import(&mut client, csv_options(), DAILY).await.unwrap();
    assert_eq!(report.rows_read, 6, "{report:?}");
    assert_eq!(report.rows_rejected, 1);
    let error = &report.errors[0];
    assert_eq!(
        (error.line, error.column.as_str()),
        (6, "close"),
        "{error:?}"
    );
    assert!(error.reason.contains("twelve"), "{error:?}");
    // Two rows for 2024-03-14: the later one wins, flagged DUPLICATE.
    assert_eq!(report.rows_inserted, 4);
    assert_eq!(
        report.rows_flagged, 2,
        "high < low on the 12th; the 14th is a duplicate and follows a gap (the 13th was \
         rejected); the 11th follows no gap (the 9th and 10th are a weekend)"
    );
    assert_eq!(report.symbols, vec!["ACME"]);

    let bars = client
        .get_bars(GetBarsRequest {
            symbol: "ACME".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .bars;
    assert_eq!(bars.len(), 4);
    // 2024-03-08 is EST (UTC-5), 2024-03-11 after the DST switch is EDT (UTC-4).
    assert_eq!(bars[0].start.as_ref().unwrap().seconds, 1_709_908_200); // 2024-03-08T14:30Z
    assert_eq!(bars[1].start.as_ref().unwrap().seconds, 1_710_163_800); // 2024-03-11T13:30Z
    assert_eq!(
        bars[2].quality_flags,
        vec![QualityFlag::OhlcInconsistent as i32]
    );
    assert_eq!(bars[3].close, 12.2);
    assert_eq!(
        bars[3].quality_flags,
        vec![QualityFlag::Duplicate as i32, QualityFlag::GapBefore as i32]
    );

    // The same file again changes nothing; a corrected value replaces and flags the bar.
    let again = import(&mut client, csv_options(), DAILY).await.unwrap();
    assert_eq!(
        (
            again.rows_inserted,
            again.rows_updated,
            again.rows_unchanged
        ),
        (0, 0, 4),
        "{again:?}"
    );
    let fix =
        "symbol,timestamp,open,high,low,close,volume\nACME,2024-03-12,11.5,12,11.4,11.8,900\n";
    let fixed = import(&mut client, csv_options(), fix).await.unwrap();
    assert_eq!(
        (fixed.rows_inserted, fixed.rows_updated),
        (0, 1),
        "{fixed:?}"
    );
    stop.cancel();
}

#[tokio::test]
async fn ndjson_intraday_rows_take_offsets_or_the_given_zone_and_dry_runs_store_nothing() {
    let (mut client, stop, _db) = start().await;
    let data = r#"{"timestamp":"2024-06-03T13:30:00Z","open":1,"high":2,"low":0.5,"close":1.5,"volume":10}
{"timestamp":"2024-06-03 09:31:00","open":1.5,"high":2,"low":1,"close":1.8,"volume":"12","trade_count":3}
{"symbol":"NOPE","timestamp":"2024-06-03T13:32:00Z","open":1,"high":1,"low":1,"close":1,"volume":1}
not json
{"timestamp":"2024-06-03","open":1,"high":1,"low":1,"close":1,"volume":1}
"#;
    let options = ImportOptions {
        format: ImportFormat::Ndjson.into(),
        timeframe: Timeframe::OneMinute.into(),
        default_symbol: "ACME".into(),
        time_zone: "America/New_York".into(),
        ..Default::default()
    };
    let dry = import(
        &mut client,
        ImportOptions {
            dry_run: true,
            ..options.clone()
        },
        data,
    )
    .await
    .unwrap();
    assert!(dry.dry_run);
    assert_eq!(dry.rows_rejected, 3, "{dry:?}");
    let lines: Vec<(u64, &str)> = dry
        .errors
        .iter()
        .map(|e| (e.line, e.column.as_str()))
        .collect();
    assert_eq!(lines, vec![(3, "symbol"), (4, ""), (5, "timestamp")]);
    let stored = |client: &mut Client| {
        let mut client = client.clone();
        async move {
            client
                .get_bars(GetBarsRequest {
                    symbol: "ACME".into(),
                    timeframe: Timeframe::OneMinute.into(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .bars
        }
    };
    assert!(
        stored(&mut client).await.is_empty(),
        "a dry run stores nothing"
    );

    let report = import(&mut client, options, data).await.unwrap();
    assert_eq!(report.rows_inserted, 2, "{report:?}");
    let bars = stored(&mut client).await;
    // 09:31 New York (EDT) is 13:31 UTC: one minute after the first bar.
    let starts: Vec<i64> = bars
        .iter()
        .map(|b| b.start.as_ref().unwrap().seconds)
        .collect();
    assert_eq!(starts, vec![1_717_421_400, 1_717_421_460]);
    assert_eq!(bars[1].trade_count, Some(3));

    // Aggregating the minutes to 5 minutes: one bar from both.
    let five = client
        .get_bars(GetBarsRequest {
            symbol: "ACME".into(),
            timeframe: Timeframe::FiveMinutes.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .bars;
    assert_eq!(five.len(), 1);
    assert_eq!(
        (
            five[0].open,
            five[0].high,
            five[0].low,
            five[0].close,
            five[0].volume
        ),
        (1.0, 2.0, 0.5, 1.8, 22.0)
    );
    stop.cancel();
}

#[tokio::test]
async fn bad_import_requests_are_refused_before_anything_is_stored() {
    let (mut client, stop, _db) = start().await;
    let missing_column = import(
        &mut client,
        csv_options(),
        "timestamp,open,high,low,close\n",
    )
    .await
    .unwrap_err();
    assert_eq!(missing_column.code(), tonic::Code::InvalidArgument);
    assert!(
        missing_column.message().contains("volume"),
        "{missing_column:?}"
    );
    let no_format = import(&mut client, ImportOptions::default(), DAILY)
        .await
        .unwrap_err();
    assert!(
        no_format.message().starts_with("options.format"),
        "{no_format:?}"
    );
    let bad_zone = import(
        &mut client,
        ImportOptions {
            time_zone: "Mars/Olympus".into(),
            ..csv_options()
        },
        DAILY,
    )
    .await
    .unwrap_err();
    assert!(
        bad_zone.message().starts_with("options.time_zone"),
        "{bad_zone:?}"
    );
    let data_first = client
        .import_bars(futures::stream::iter(vec![ImportBarsRequest {
            part: Some(Part::Data(b"x".to_vec())),
        }]))
        .await
        .unwrap_err();
    assert_eq!(data_first.code(), tonic::Code::InvalidArgument);
    stop.cancel();
}

#[tokio::test]
async fn columns_in_any_order_malformed_lines_and_mixed_zones_are_handled_precisely() {
    let (mut client, stop, _db) = start().await;
    // Columns shuffled; offsets of three zones and a local time (in the option's zone) name
    // four consecutive minutes; then a line with fields missing, one with a word for a
    // number, and one with an impossible time.
    let data = "volume,close,symbol,low,high,timestamp,open
10,1.5,ACME,0.5,2,2024-06-03T09:30:00-04:00,1
11,1.6,ACME,1,2,2024-06-03T13:31:00Z,1.5
12,1.7,ACME,1,2,2024-06-03T15:32:00+02:00,1.6
13,1.8,ACME,1,2,2024-06-03 09:33:00,1.7
14,1.9,ACME,1,2
15,abc,ACME,1,2,2024-06-03T13:35:00Z,1.8
16,2.1,ACME,1,2,2024-06-03T25:61:00Z,1.9
";
    let options = ImportOptions {
        timeframe: Timeframe::OneMinute.into(),
        time_zone: "America/New_York".into(),
        ..csv_options()
    };
    let report = import(&mut client, options, data).await.unwrap();
    assert_eq!(report.rows_inserted, 4, "{report:?}");
    let errors: Vec<(u64, &str)> = report
        .errors
        .iter()
        .map(|e| (e.line, e.column.as_str()))
        .collect();
    assert_eq!(
        errors,
        vec![(6, "timestamp"), (7, "close"), (8, "timestamp")],
        "{report:?}"
    );
    let bars = client
        .get_bars(GetBarsRequest {
            symbol: "ACME".into(),
            timeframe: Timeframe::OneMinute.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .bars;
    let starts: Vec<i64> = bars
        .iter()
        .map(|b| b.start.as_ref().unwrap().seconds)
        .collect();
    let first = 1_717_421_400; // 2024-06-03T13:30:00Z
    assert_eq!(starts, vec![first, first + 60, first + 120, first + 180]);
    // Values landed in the right columns despite the order.
    assert_eq!(
        (
            bars[0].open,
            bars[0].high,
            bars[0].low,
            bars[0].close,
            bars[0].volume
        ),
        (1.0, 2.0, 0.5, 1.5, 10.0)
    );
    stop.cancel();
}

#[tokio::test]
async fn a_fifty_thousand_row_import_is_kept_whole_and_announces_issues_coalesced() {
    let (mut client, stop, db) = start().await;
    let data = minute_bars(50_000);
    let options = ImportOptions {
        timeframe: Timeframe::OneMinute.into(),
        ..csv_options()
    };
    let report = import_big(&mut client, options.clone(), &data).await;
    assert_eq!(
        (
            report.rows_read,
            report.rows_inserted,
            report.rows_rejected,
            report.rows_flagged
        ),
        (50_000, 50_000, 0, 50),
        "{:?}",
        report.errors.first()
    );
    let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
    let events: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outbox WHERE event_type = 'mirai.data.quality.issue.v1'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(events, 1, "50 zero-volume bars, one coalesced event");
    let again = import_big(&mut client, options, &data).await;
    assert_eq!((again.rows_unchanged, again.rows_inserted), (50_000, 0));
    let events_after: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outbox WHERE event_type = 'mirai.data.quality.issue.v1'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(events_after, 1, "re-importing finds nothing new");
    pool.close().await;
    stop.cancel();
}

/// Like [`import`], in 1 MiB chunks (a 50,000-row file in 7-byte chunks would be slow).
async fn import_big(client: &mut Client, options: ImportOptions, data: &str) -> ImportBarsResponse {
    let mut messages = vec![ImportBarsRequest {
        part: Some(Part::Options(options)),
    }];
    for chunk in data.as_bytes().chunks(1 << 20) {
        messages.push(ImportBarsRequest {
            part: Some(Part::Data(chunk.to_vec())),
        });
    }
    client
        .import_bars(futures::stream::iter(messages))
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn two_imports_of_one_new_range_at_once_both_succeed_and_store_each_bar_once() {
    let (client, stop, db) = start().await;
    // Big enough that the two imports overlap.
    let rows = 30_000;
    let data = minute_bars(rows as usize);
    let options = ImportOptions {
        timeframe: Timeframe::OneMinute.into(),
        ..csv_options()
    };
    let (mut a, mut b) = (client.clone(), client.clone());
    let (first, second) = tokio::join!(
        import_big(&mut a, options.clone(), &data),
        import_big(&mut b, options.clone(), &data)
    );
    // Whichever stored the range first inserted it; the other found every bar unchanged.
    let mut outcomes = [
        (first.rows_inserted, first.rows_unchanged),
        (second.rows_inserted, second.rows_unchanged),
    ];
    outcomes.sort();
    assert_eq!(outcomes, [(0, rows), (rows, 0)], "{first:?} {second:?}");
    let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM bars WHERE symbol = 'ACME'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(stored, rows as i64);
    pool.close().await;
    stop.cancel();
}

/// `rows` minute bars over regular sessions from 3 June 2024 (weekdays; the 2024 holidays
/// skipped), every 1,000th with zero volume; a ±0.05 % zig-zag, so no return stands out.
fn minute_bars(rows: usize) -> String {
    let holidays = [
        "2024-06-19",
        "2024-07-04",
        "2024-09-02",
        "2024-11-28",
        "2024-12-25",
    ];
    let mut data = String::from("timestamp,open,high,low,close,volume\n");
    let mut day = chrono::NaiveDate::from_ymd_opt(2024, 6, 3).unwrap();
    let mut written = 0;
    while written < rows {
        use chrono::Datelike as _;
        let weekend = matches!(day.weekday(), chrono::Weekday::Sat | chrono::Weekday::Sun);
        if !weekend && !holidays.contains(&day.to_string().as_str()) {
            for minute in 0..390 {
                if written == rows {
                    break;
                }
                let local = day.and_hms_opt(9, 30, 0).unwrap() + chrono::Duration::minutes(minute);
                let price = 100.0 + (written % 2) as f64 / 20.0;
                let volume = if written % 1000 == 999 {
                    0
                } else {
                    100 + written % 50
                };
                data.push_str(&format!(
                    "{},{price},{},{},{price},{volume}\n",
                    local.format("%Y-%m-%d %H:%M:%S"),
                    price + 0.05,
                    price - 0.05
                ));
                written += 1;
            }
        }
        day = day.succ_opt().unwrap();
    }
    data
}
