//! Bulk import of bars (CSV or NDJSON) through PostgreSQL `COPY`.
//!
//! Rows are parsed and checked here; every rejected row is reported with its line number, the
//! column at fault and the reason, and never stops the good rows. Good rows go to a temporary
//! table with `COPY`, then into `bars` in one statement: new bars are inserted, identical ones
//! left alone, changed ones replaced and flagged `VALUE_CHANGED`, so re-importing a file is
//! idempotent. A duplicate within one file is flagged `DUPLICATE` (the last row wins); then
//! the quality checks run over every symbol's imported range in the same transaction
//! ([`crate::quality::store::check`]), so flags, findings and `data.quality.issue` events
//! commit with the bars (and a dry run reports them without storing anything).

use std::collections::HashMap;
use std::fmt::Write as _;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use mirai_platform::error::invalid_argument;
use mirai_platform::wire;
use mirai_proto::stock::v1 as pb;
use sqlx::{PgPool, Row as _};

use crate::bars::EXCHANGES;
use crate::calendar::Calendar;
use crate::quality;
use crate::symbols::Ticker;

/// Uploads above this size are refused (RESOURCE_EXHAUSTED); split larger files.
pub const MAX_BYTES: usize = 256 * 1024 * 1024;
/// Rejected rows listed in the response; the count covers all of them.
const MAX_ERRORS: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Csv,
    Ndjson,
}

/// Validated import options.
#[derive(Debug, Clone)]
pub struct Options {
    format: Format,
    timeframe: pb::Timeframe,
    source: String,
    default_symbol: Option<Ticker>,
    time_zone: Option<String>,
    dry_run: bool,
}

impl Options {
    pub fn parse(options: &pb::ImportOptions) -> Result<Self, tonic::Status> {
        let format = match pb::ImportFormat::try_from(options.format) {
            Ok(pb::ImportFormat::Csv) => Format::Csv,
            Ok(pb::ImportFormat::Ndjson) => Format::Ndjson,
            _ => {
                return Err(invalid_argument(
                    "options.format",
                    "required: CSV or NDJSON",
                ));
            }
        };
        let timeframe = match pb::Timeframe::try_from(options.timeframe) {
            Ok(pb::Timeframe::Unspecified) => pb::Timeframe::OneDay,
            Ok(timeframe) => timeframe,
            Err(_) => return Err(invalid_argument("options.timeframe", "unknown timeframe")),
        };
        if !matches!(
            pb::Adjustment::try_from(options.adjustment),
            Ok(pb::Adjustment::Unspecified | pb::Adjustment::Raw)
        ) {
            return Err(tonic::Status::failed_precondition(
                "only raw (unadjusted) bars can be imported: no corporate actions are stored to relate other bases",
            ));
        }
        let source = match options.source.trim() {
            "" => "import".to_owned(),
            s if s.len() <= 32 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') => {
                s.to_ascii_lowercase()
            }
            _ => {
                return Err(invalid_argument(
                    "options.source",
                    "at most 32 letters, digits or '-'",
                ));
            }
        };
        let default_symbol = match options.default_symbol.trim() {
            "" => None,
            raw => Some(Ticker::parse(raw).map_err(|_| {
                invalid_argument("options.default_symbol", format!("`{raw}` is not a ticker"))
            })?),
        };
        Ok(Self {
            format,
            timeframe,
            source,
            default_symbol,
            time_zone: Some(options.time_zone.trim().to_owned()).filter(|tz| !tz.is_empty()),
            dry_run: options.dry_run,
        })
    }

    fn intraday(&self) -> bool {
        !matches!(
            self.timeframe,
            pb::Timeframe::OneDay | pb::Timeframe::OneWeek | pb::Timeframe::OneMonth
        )
    }
}

/// When a row's bar starts, as written in the file.
#[derive(Debug, Clone, Copy)]
enum When {
    Instant(DateTime<Utc>),
    Local(NaiveDateTime),
    Date(NaiveDate),
}

#[derive(Debug, Clone)]
struct Row {
    line: u64,
    symbol: String,
    when: When,
    open: f64,
    high: f64,
    low: f64,
    close: f64,
    volume: f64,
    vwap: Option<f64>,
    trade_count: Option<i64>,
}

fn row_error(line: u64, column: &str, reason: impl Into<String>, content: &str) -> pb::RowError {
    pb::RowError {
        line,
        column: column.to_owned(),
        reason: reason.into(),
        content: content.chars().take(200).collect(),
    }
}

/// Parses one record, given a field accessor; `content` is the raw line for error reports.
fn parse_row(
    line: u64,
    field: impl Fn(&str) -> Option<String>,
    content: &str,
    options: &Options,
) -> Result<Row, pb::RowError> {
    let fail = |column: &str, reason: String| row_error(line, column, reason, content);
    let required = |column: &str| -> Result<String, pb::RowError> {
        field(column)
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| fail(column, "missing".to_owned()))
    };
    let number = |column: &str| -> Result<f64, pb::RowError> {
        let raw = required(column)?;
        match raw.trim().parse::<f64>() {
            Ok(value) if value.is_finite() => Ok(value),
            _ => Err(fail(column, format!("not a finite number: '{raw}'"))),
        }
    };
    let optional_number = |column: &str| -> Result<Option<f64>, pb::RowError> {
        match field(column).filter(|v| !v.trim().is_empty()) {
            None => Ok(None),
            Some(_) => number(column).map(Some),
        }
    };
    let symbol = match field("symbol").filter(|s| !s.trim().is_empty()) {
        Some(raw) => Ticker::parse(&raw)
            .map_err(|_| fail("symbol", format!("not a ticker: '{raw}'")))?
            .as_str()
            .to_owned(),
        None => options
            .default_symbol
            .as_ref()
            .map(|t| t.as_str().to_owned())
            .ok_or_else(|| fail("symbol", "missing, and no default_symbol".to_owned()))?,
    };
    let raw_time = required("timestamp")?;
    let raw_time = raw_time.trim();
    let when = if let Ok(at) = DateTime::parse_from_rfc3339(raw_time) {
        When::Instant(at.with_timezone(&Utc))
    } else if let Ok(local) = NaiveDateTime::parse_from_str(raw_time, "%Y-%m-%dT%H:%M:%S")
        .or_else(|_| NaiveDateTime::parse_from_str(raw_time, "%Y-%m-%d %H:%M:%S"))
    {
        When::Local(local)
    } else if let Ok(date) = NaiveDate::parse_from_str(raw_time, "%Y-%m-%d") {
        if options.intraday() {
            return Err(fail(
                "timestamp",
                format!("a date without a time cannot start an intraday bar: '{raw_time}'"),
            ));
        }
        When::Date(date)
    } else {
        return Err(fail(
            "timestamp",
            format!(
                "unparseable timestamp '{raw_time}' (RFC 3339, 'YYYY-MM-DD HH:MM:SS' or 'YYYY-MM-DD')"
            ),
        ));
    };
    let trade_count = match field("trade_count").filter(|v| !v.trim().is_empty()) {
        None => None,
        Some(raw) => Some(
            raw.trim()
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| {
                    fail(
                        "trade_count",
                        format!("not a non-negative integer: '{raw}'"),
                    )
                })?,
        ),
    };
    Ok(Row {
        line,
        symbol,
        when,
        open: number("open")?,
        high: number("high")?,
        low: number("low")?,
        close: number("close")?,
        volume: number("volume")?,
        vwap: optional_number("vwap")?,
        trade_count,
    })
}

/// Parsed rows, rejected rows, and data lines read.
type Parsed = (Vec<Row>, Vec<pb::RowError>, u64);

fn parse_csv(body: &[u8], options: &Options) -> Result<Parsed, tonic::Status> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(body);
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| invalid_argument("data", format!("unreadable CSV header: {e}")))?
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    for column in ["timestamp", "open", "high", "low", "close", "volume"] {
        if !header.iter().any(|h| h == column) {
            return Err(invalid_argument(
                "data",
                format!(
                    "the CSV header lacks the column `{column}` (has: {})",
                    header.join(",")
                ),
            ));
        }
    }
    let index: HashMap<&str, usize> = header
        .iter()
        .enumerate()
        .map(|(i, h)| (h.as_str(), i))
        .collect();
    let (mut rows, mut errors, mut read) = (Vec::new(), Vec::new(), 0);
    for record in reader.records() {
        match record {
            Ok(record) => {
                let line = record.position().map_or(0, |p| p.line());
                if record.iter().all(|f| f.trim().is_empty()) {
                    continue;
                }
                read += 1;
                let content = record.iter().collect::<Vec<_>>().join(",");
                let field = |name: &str| {
                    index
                        .get(name)
                        .and_then(|i| record.get(*i))
                        .map(str::to_owned)
                };
                match parse_row(line, field, &content, options) {
                    Ok(row) => rows.push(row),
                    Err(error) => errors.push(error),
                }
            }
            Err(error) => {
                read += 1;
                let line = error.position().map_or(0, |p| p.line());
                errors.push(row_error(line, "", format!("malformed CSV: {error}"), ""));
            }
        }
    }
    Ok((rows, errors, read))
}

fn parse_ndjson(body: &[u8], options: &Options) -> Parsed {
    let (mut rows, mut errors, mut read) = (Vec::new(), Vec::new(), 0);
    for (n, raw) in body.split(|b| *b == b'\n').enumerate() {
        let line = n as u64 + 1;
        let content = String::from_utf8_lossy(raw);
        if content.trim().is_empty() {
            continue;
        }
        read += 1;
        let object =
            match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&content) {
                Ok(object) => object,
                Err(error) => {
                    errors.push(row_error(
                        line,
                        "",
                        format!("not a JSON object: {error}"),
                        &content,
                    ));
                    continue;
                }
            };
        let field = |name: &str| match object.get(name)? {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Null => None,
            other => Some(other.to_string()),
        };
        match parse_row(line, field, &content, options) {
            Ok(row) => rows.push(row),
            Err(error) => errors.push(error),
        }
    }
    (rows, errors, read)
}

/// Text-format COPY value.
fn copy_value(out: &mut String, value: Option<String>) {
    match value {
        Some(v) => out.push_str(&v),
        None => out.push_str("\\N"),
    }
}

/// Imports `body` with `options`.
pub async fn run(
    pool: &PgPool,
    settings: &quality::Settings,
    options: &Options,
    body: &[u8],
) -> Result<pb::ImportBarsResponse, tonic::Status> {
    let started = std::time::Instant::now();
    let import_id = uuid::Uuid::now_v7().to_string();
    let status = |e| mirai_platform::db::status(e, "bars");
    if let Some(tz) = &options.time_zone {
        sqlx::query("SELECT now() AT TIME ZONE $1")
            .bind(tz)
            .execute(pool)
            .await
            .map_err(|_| {
                invalid_argument("options.time_zone", format!("unknown time zone `{tz}`"))
            })?;
    }
    let (rows, mut errors, rows_read) = match options.format {
        Format::Csv => parse_csv(body, options)?,
        Format::Ndjson => parse_ndjson(body, options),
    };

    let mut tx = pool.begin().await.map_err(status)?;
    sqlx::query(
        "CREATE TEMP TABLE import_rows (
            line BIGINT, symbol TEXT, kind TEXT, at TEXT, open FLOAT8, high FLOAT8, low FLOAT8,
            close FLOAT8, volume FLOAT8, vwap FLOAT8, trade_count BIGINT
         ) ON COMMIT DROP",
    )
    .execute(&mut *tx)
    .await
    .map_err(status)?;
    let mut data = String::new();
    for row in &rows {
        let (kind, at) = match row.when {
            When::Instant(at) => ("i", at.to_rfc3339()),
            When::Local(at) => ("l", at.format("%Y-%m-%dT%H:%M:%S%.f").to_string()),
            When::Date(date) => ("d", date.to_string()),
        };
        let _ = write!(
            data,
            "{}\t{}\t{kind}\t{at}\t{:?}\t{:?}\t{:?}\t{:?}\t{:?}\t",
            row.line, row.symbol, row.open, row.high, row.low, row.close, row.volume
        );
        copy_value(&mut data, row.vwap.map(|v| format!("{v:?}")));
        data.push('\t');
        copy_value(&mut data, row.trade_count.map(|n| n.to_string()));
        data.push('\n');
    }
    let mut copy = tx
        .copy_in_raw("COPY import_rows FROM STDIN")
        .await
        .map_err(status)?;
    copy.send(data.into_bytes()).await.map_err(status)?;
    copy.finish().await.map_err(status)?;

    // Rows of symbols that are not listed (or delisted) are rejected, not guessed at.
    let unknown = sqlx::query(
        "DELETE FROM import_rows r
         WHERE NOT EXISTS (SELECT 1 FROM symbols s WHERE s.symbol = r.symbol AND s.status = 'active')
         RETURNING line, symbol",
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(status)?;
    for row in unknown {
        let symbol: String = row.get("symbol");
        errors.push(row_error(
            row.get::<i64, _>("line") as u64,
            "symbol",
            format!("{symbol} is not a listed symbol"),
            "",
        ));
    }
    errors.sort_by_key(|e| e.line);
    let rows_rejected = errors.len() as u64;
    let errors_truncated = errors.len() > MAX_ERRORS;
    errors.truncate(MAX_ERRORS);

    let (mics, zones, opens, closes): (Vec<&str>, Vec<&str>, Vec<&str>, Vec<&str>) = {
        let mut parts = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for e in EXCHANGES {
            parts.0.push(e.mic);
            parts.1.push(e.time_zone);
            parts.2.push(e.open);
            parts.3.push(e.close);
        }
        parts
    };
    let interval = match options.timeframe {
        pb::Timeframe::OneMinute => "1 minute",
        pb::Timeframe::FiveMinutes => "5 minutes",
        pb::Timeframe::FifteenMinutes => "15 minutes",
        pb::Timeframe::ThirtyMinutes => "30 minutes",
        pb::Timeframe::OneHour => "1 hour",
        pb::Timeframe::OneWeek => "1 week",
        pb::Timeframe::OneMonth => "1 month",
        _ => "1 day",
    };
    // Daily and coarser bars start at the session open of their local date (the exchange's
    // zone, or the option's); intraday bars at their timestamp.
    let statement = "
        WITH sessions AS (
            SELECT * FROM unnest($1::text[], $2::text[], $3::time[], $4::time[])
                AS s(mic, tz, open_at, close_at)
        ),
        resolved AS (
            SELECT r.*, coalesce($5, ss.tz, 'UTC') AS tz,
                   sy.exchange_mic = ANY($13) AS has_calendar,
                   coalesce(ss.open_at, '00:00') AS open_at,
                   coalesce(ss.close_at, '24:00') AS close_at
            FROM import_rows r
            JOIN symbols sy ON sy.symbol = r.symbol
            LEFT JOIN sessions ss ON ss.mic = sy.exchange_mic
        ),
        timed AS (
            SELECT *, CASE WHEN $7 THEN
                    (CASE kind WHEN 'd' THEN at::date
                               WHEN 'l' THEN at::timestamp::date
                               ELSE (at::timestamptz AT TIME ZONE tz)::date END
                     + open_at) AT TIME ZONE tz
                 ELSE CASE kind WHEN 'l' THEN at::timestamp AT TIME ZONE tz
                                ELSE at::timestamptz END
                 END AS start_at
            FROM resolved
        ),
        counted AS (
            SELECT *, count(*) OVER (PARTITION BY symbol, start_at) AS copies,
                   row_number() OVER (PARTITION BY symbol, start_at ORDER BY line DESC) AS latest
            FROM timed
        ),
        chosen AS (
            SELECT symbol, start_at,
                   CASE WHEN $6 = '1 day' THEN
                        ((start_at AT TIME ZONE tz)::date
                         + CASE WHEN has_calendar AND (start_at AT TIME ZONE tz)::date = ANY($12)
                                THEN '13:00'::time ELSE close_at END) AT TIME ZONE tz
                   ELSE start_at + $6::interval END AS end_at,
                   open, high, low, close, volume, vwap, trade_count,
                   CASE WHEN copies > 1 THEN 1 << 4 ELSE 0 END AS flags
            FROM counted WHERE latest = 1
        ),
        written AS (
            INSERT INTO bars AS b (symbol, timeframe, start_at, end_at, open, high, low, close,
                                   volume, vwap, trade_count, adjustment, source, quality_flags)
            SELECT symbol, $8, start_at, end_at, open, high, low, close, volume, vwap,
                   trade_count, $9, $10, flags
            FROM chosen
            WHERE NOT $11
            ON CONFLICT (symbol, timeframe, start_at) DO UPDATE
                SET end_at = EXCLUDED.end_at, open = EXCLUDED.open, high = EXCLUDED.high,
                    low = EXCLUDED.low, close = EXCLUDED.close, volume = EXCLUDED.volume,
                    vwap = EXCLUDED.vwap, trade_count = EXCLUDED.trade_count,
                    source = EXCLUDED.source, ingested_at = now(),
                    quality_flags = EXCLUDED.quality_flags | (1 << 9)
                WHERE (b.open, b.high, b.low, b.close, b.volume, b.vwap, b.trade_count)
                      IS DISTINCT FROM
                      (EXCLUDED.open, EXCLUDED.high, EXCLUDED.low, EXCLUDED.close,
                       EXCLUDED.volume, EXCLUDED.vwap, EXCLUDED.trade_count)
            RETURNING (xmax = 0) AS inserted
        )
        SELECT (SELECT count(*) FROM chosen) AS distinct_rows,
               (SELECT coalesce(array_agg(symbol ORDER BY symbol COLLATE \"C\", start_at), '{}') FROM chosen)
                   AS chosen_symbols,
               (SELECT coalesce(array_agg(start_at ORDER BY symbol COLLATE \"C\", start_at), '{}') FROM chosen)
                   AS chosen_starts,
               (SELECT count(*) FROM written WHERE inserted) AS inserted,
               (SELECT count(*) FROM written WHERE NOT inserted) AS updated,
               (SELECT min(start_at) FROM chosen) AS first_start,
               (SELECT max(start_at) FROM chosen) AS last_start,
               (SELECT coalesce(array_agg(DISTINCT symbol ORDER BY symbol), '{}') FROM chosen)
                   AS symbols";
    let summary = sqlx::query(statement)
        .bind(&mics)
        .bind(&zones)
        .bind(&opens)
        .bind(&closes)
        .bind(&options.time_zone)
        .bind(interval)
        .bind(!options.intraday())
        .bind(options.timeframe as i16)
        .bind(pb::Adjustment::Raw as i16)
        .bind(&options.source)
        .bind(options.dry_run)
        .bind(
            Calendar::for_mic("XNYS")
                .map(|c| c.early_closes())
                .unwrap_or_default(),
        )
        .bind(
            EXCHANGES
                .iter()
                .filter(|e| Calendar::for_mic(e.mic).is_some())
                .map(|e| e.mic)
                .collect::<Vec<_>>(),
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(status)?;

    // Quality checks per symbol over what was just written (or, in a dry run, would be).
    let chosen_symbols: Vec<String> = summary.get("chosen_symbols");
    let chosen_starts: Vec<DateTime<Utc>> = summary.get("chosen_starts");
    let listed: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT symbol, exchange_mic, asset_type FROM symbols WHERE symbol = ANY($1)",
    )
    .bind(summary.get::<Vec<String>, _>("symbols"))
    .fetch_all(&mut *tx)
    .await
    .map_err(status)?;
    let mut rows_flagged = 0;
    let origin = quality::store::Origin {
        source: &options.source,
        import_id: &import_id,
    };
    for (symbol, mic, asset_type) in &listed {
        let lo = chosen_symbols.partition_point(|s| s < symbol);
        let hi = chosen_symbols.partition_point(|s| s <= symbol);
        let series = quality::store::Series::new(symbol, options.timeframe, mic, asset_type);
        let outcome =
            quality::store::check(&mut tx, settings, &series, &chosen_starts[lo..hi], origin)
                .await
                .map_err(status)?;
        rows_flagged += outcome.flagged;
    }
    if options.dry_run {
        tx.rollback().await.map_err(status)?;
    } else {
        tx.commit().await.map_err(status)?;
    }
    let distinct: i64 = summary.get("distinct_rows");
    let inserted: i64 = summary.get("inserted");
    let updated: i64 = summary.get("updated");
    let first: Option<DateTime<Utc>> = summary.get("first_start");
    let last: Option<DateTime<Utc>> = summary.get("last_start");
    Ok(pb::ImportBarsResponse {
        import_id,
        rows_read,
        rows_inserted: inserted as u64,
        rows_updated: updated as u64,
        rows_unchanged: if options.dry_run {
            0
        } else {
            (distinct - inserted - updated).max(0) as u64
        },
        rows_rejected,
        rows_flagged,
        errors,
        errors_truncated,
        symbols: summary.get("symbols"),
        first_bar_start: first.map(wire::timestamp),
        last_bar_start: last.map(wire::timestamp),
        bytes_read: body.len() as u64,
        elapsed: prost_types::Duration::try_from(started.elapsed()).ok(),
        dry_run: options.dry_run,
    })
}
