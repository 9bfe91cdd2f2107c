//! Bulk import of bars (CSV or NDJSON) through PostgreSQL `COPY`.
//!
//! Rows are parsed, checked and resolved to their bar's interval here (time zones through
//! `chrono-tz`, session hours and early closes from the exchange's calendar), which keeps the
//! database's work to storing; every rejected row is reported with its line number, the
//! column at fault and the reason, and never stops the good rows. Good rows go to a temporary
//! table with `COPY`, then into `bars` in one statement: new bars are inserted, identical ones
//! left alone, changed ones replaced and flagged `VALUE_CHANGED`, so re-importing a file is
//! idempotent. A duplicate within one file is flagged `DUPLICATE` (the last row wins); then
//! the quality checks run over every symbol's imported range in the same transaction
//! ([`crate::quality::run::check`]), so flags, findings and `data.quality.issue` events
//! commit with the bars (and a dry run reports them without storing anything).

use std::borrow::Cow;
use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeZone as _, Utc};
use chrono_tz::Tz;
use mirai_platform::db::copy::BinaryRows;
use mirai_platform::wire;
use mirai_proto::stock::v1 as pb;
use sqlx::PgPool;

use crate::calendar::Calendar;
use crate::domain::DomainError;
use crate::domain::Ticker;
use crate::domain::bars::{EXCHANGES, time_zone};
use crate::domain::import::Format;
pub use crate::domain::import::Options;
use crate::error::{Error, Result, db};
use crate::quality;
use crate::quality::checks::BarValues;
use crate::quality::run::Series;
use crate::store;

/// Uploads above this size are refused (RESOURCE_EXHAUSTED); split larger files.
pub const MAX_BYTES: usize = 256 * 1024 * 1024;
/// Rejected rows listed in the response; the count covers all of them.
const MAX_ERRORS: usize = 10_000;

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

/// Parses one record, given a field accessor; `content` gives the raw line for error reports
/// (built only for a row that fails).
fn parse_row<'a>(
    line: u64,
    field: impl Fn(&str) -> Option<Cow<'a, str>>,
    content: impl Fn() -> String,
    options: &Options,
) -> Result<Row, pb::RowError> {
    let fail = |column: &str, reason: String| row_error(line, column, reason, &content());
    let required = |column: &str| -> Result<Cow<'a, str>, pb::RowError> {
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

fn parse_csv(body: &[u8], options: &Options) -> Result<Parsed, DomainError> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(body);
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| DomainError::invalid("data", format!("unreadable CSV header: {e}")))?
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    for column in ["timestamp", "open", "high", "low", "close", "volume"] {
        if !header.iter().any(|h| h == column) {
            return Err(DomainError::invalid(
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
                let content = || record.iter().collect::<Vec<_>>().join(",");
                let field = |name: &str| {
                    index
                        .get(name)
                        .and_then(|i| record.get(*i))
                        .map(Cow::Borrowed)
                };
                match parse_row(line, field, content, options) {
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
            serde_json::Value::String(s) => Some(Cow::Owned(s.clone())),
            serde_json::Value::Null => None,
            other => Some(Cow::Owned(other.to_string())),
        };
        match parse_row(line, field, || content.to_string(), options) {
            Ok(row) => rows.push(row),
            Err(error) => errors.push(error),
        }
    }
    (rows, errors, read)
}

/// A listed symbol as the import needs it.
struct Listed {
    time_zone: Tz,
    open: NaiveTime,
    close: NaiveTime,
    /// The exchange's calendar (early closes end daily bars at 13:00).
    calendar: Option<Calendar>,
    exchange_mic: String,
    asset_type: String,
}

/// A row resolved to its bar's interval.
struct Resolved {
    row: Row,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

impl Resolved {
    fn values(&self) -> BarValues {
        BarValues {
            start: self.start,
            open: self.row.open,
            high: self.row.high,
            low: self.row.low,
            close: self.row.close,
            volume: self.row.volume,
        }
    }
}

/// The instant a local time names in `tz`; `None` in a DST gap.
fn local(tz: Tz, at: NaiveDateTime) -> Option<DateTime<Utc>> {
    tz.from_local_datetime(&at).earliest().map(|t| t.to_utc())
}

/// Resolves a row's start and end: daily and coarser bars start at the session open of their
/// local date (the exchange's zone, or the option's) and daily bars end at its close (13:00 on
/// the calendar's early-close days); intraday bars start at their timestamp.
fn resolve(row: Row, listed: &Listed, options: &Options) -> Result<Resolved, pb::RowError> {
    let tz = match &options.time_zone {
        Some(name) => name.parse::<Tz>().unwrap_or(listed.time_zone),
        None => listed.time_zone,
    };
    let fail = |reason: String| row_error(row.line, "timestamp", reason, "");
    let (start, end) = if options.intraday() {
        let start = match row.when {
            When::Instant(at) => at,
            When::Local(at) => local(tz, at).ok_or_else(|| {
                fail(format!(
                    "{at} does not exist in {tz} (a daylight-saving gap)"
                ))
            })?,
            When::Date(date) => {
                return Err(fail(format!(
                    "a date without a time cannot start an intraday bar: '{date}'"
                )));
            }
        };
        let minutes = match options.timeframe {
            pb::Timeframe::FiveMinutes => 5,
            pb::Timeframe::FifteenMinutes => 15,
            pb::Timeframe::ThirtyMinutes => 30,
            pb::Timeframe::OneHour => 60,
            _ => 1,
        };
        (start, start + chrono::Duration::minutes(minutes))
    } else {
        let date = match row.when {
            When::Instant(at) => at.with_timezone(&tz).date_naive(),
            When::Local(at) => at.date(),
            When::Date(date) => date,
        };
        let open = local(tz, date.and_time(listed.open))
            .ok_or_else(|| fail(format!("the session open of {date} does not exist in {tz}")))?;
        let end = match options.timeframe {
            pb::Timeframe::OneWeek => open + chrono::Duration::weeks(1),
            pb::Timeframe::OneMonth => open
                .checked_add_months(chrono::Months::new(1))
                .ok_or_else(|| fail("out of range".into()))?,
            _ => {
                let early = listed
                    .calendar
                    .and_then(|c| c.session(date).flatten())
                    .filter(|s| s.is_early_close())
                    .map(|s| s.close);
                match early.or(Some(listed.close)).filter(|c| *c > listed.open) {
                    Some(close) => local(tz, date.and_time(close)),
                    // An exchange without a session table: the whole local day.
                    None => local(
                        tz,
                        (date + chrono::Duration::days(1)).and_time(NaiveTime::MIN),
                    ),
                }
                .ok_or_else(|| {
                    fail(format!(
                        "the session close of {date} does not exist in {tz}"
                    ))
                })?
            }
        };
        (open, end)
    };
    Ok(Resolved { row, start, end })
}

/// The bars of a first import (`runs` of `chosen` per symbol, none stored in their ranges):
/// checked against their stored neighbours in memory, then copied into `bars` with their flags,
/// then the findings recorded. Returns how many carry a flag.
async fn import_new(
    conn: &mut sqlx::PgConnection,
    settings: &quality::Settings,
    options: &Options,
    chosen: &[(Resolved, u32)],
    ingest_flags: &[i32],
    runs: &[(Series, std::ops::Range<usize>)],
    origin: quality::run::Origin<'_>,
) -> std::result::Result<u64, sqlx::Error> {
    let started = std::time::Instant::now();
    let mut flags = ingest_flags.to_vec();
    let mut verdicts = Vec::with_capacity(runs.len());
    for (series, range) in runs {
        let new: Vec<(BarValues, i32)> = chosen[range.clone()]
            .iter()
            .zip(&ingest_flags[range.clone()])
            .map(|((bar, _), flags)| (bar.values(), *flags))
            .collect();
        let (masks, verdict) = quality::run::check_new(&mut *conn, settings, series, &new).await?;
        flags[range.clone()].copy_from_slice(&masks);
        verdicts.push(verdict);
    }
    let checked = started.elapsed();
    let data = copy_rows(chosen, &flags, Some(options)).map_err(sqlx::Error::Encode)?;
    let encoded = started.elapsed();
    store::import::copy_new(&mut *conn, data).await?;
    let copied = started.elapsed();
    let mut flagged = 0;
    for ((series, _), verdict) in runs.iter().zip(verdicts) {
        flagged += verdict.record(&mut *conn, series, origin).await?.flagged;
    }
    tracing::debug!(
        message = "First import phases.",
        check_ms = checked.as_millis() as u64,
        encode_ms = (encoded - checked).as_millis() as u64,
        copy_ms = (copied - encoded).as_millis() as u64,
        record_ms = (started.elapsed() - copied).as_millis() as u64,
    );
    Ok(flagged)
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|e| e.kind() == sqlx::error::ErrorKind::UniqueViolation)
}

/// Binary `COPY` rows of `chosen` with `flags` (in step): the staging table's columns
/// (symbol, start, end, OHLCV, vwap, trade count, flags), or, given the import's options,
/// those of `bars` ([`store::import::copy_new`]).
fn copy_rows(
    chosen: &[(Resolved, u32)],
    flags: &[i32],
    into_bars: Option<&Options>,
) -> std::result::Result<BinaryRows, sqlx::error::BoxDynError> {
    let fields = if into_bars.is_some() { 14 } else { 11 };
    let mut rows = BinaryRows::new(fields, chosen.len() * (fields as usize * 4 + 100));
    for ((bar, _), flags) in chosen.iter().zip(flags) {
        let row = &bar.row;
        rows.push(row.symbol.as_str())?;
        if let Some(options) = into_bars {
            rows.push(options.timeframe as i16)?;
        }
        rows.push(bar.start)?;
        rows.push(bar.end)?;
        for value in [row.open, row.high, row.low, row.close, row.volume] {
            rows.push(value)?;
        }
        rows.push(row.vwap)?;
        rows.push(row.trade_count)?;
        if let Some(options) = into_bars {
            rows.push(pb::Adjustment::Raw as i16)?;
            rows.push(options.source.as_str())?;
        }
        rows.push(*flags)?;
    }
    Ok(rows)
}

/// Imports `body` with `options`.
///
/// Rows are parsed, checked against the symbol table and resolved to their bar intervals
/// here; the distinct bars go to a temporary table with `COPY` and into `bars` with one
/// `INSERT … ON CONFLICT` (new bars inserted, identical ones left alone, changed ones replaced
/// and flagged `VALUE_CHANGED`); then the quality checks run over each symbol's range, all in
/// one transaction.
pub async fn run(
    pool: &PgPool,
    settings: &quality::Settings,
    options: &Options,
    body: &[u8],
) -> Result<pb::ImportBarsResponse> {
    let started = std::time::Instant::now();
    let import_id = uuid::Uuid::now_v7().to_string();
    let status = db("bars");
    if let Some(tz) = &options.time_zone
        && tz.parse::<Tz>().is_err()
    {
        return Err(Error::invalid(
            "options.time_zone",
            format!("unknown time zone `{tz}` (an IANA name, e.g. America/New_York)"),
        ));
    }
    let (rows, mut errors, rows_read) = match options.format {
        Format::Csv => parse_csv(body, options)?,
        Format::Ndjson => parse_ndjson(body, options),
    };

    // The symbols named in the file; rows of unknown or delisted ones are rejected.
    let mut names: Vec<String> = rows.iter().map(|r| r.symbol.clone()).collect();
    names.sort();
    names.dedup();
    let found = store::import::symbols(pool, &names)
        .await
        .map_err(&status)?;
    let listed: HashMap<String, Listed> = found
        .into_iter()
        .filter(|(.., status)| status == "active")
        .map(|(symbol, mic, asset_type, _)| {
            let exchange = EXCHANGES.iter().find(|e| e.mic == mic);
            let time = |t: &str| NaiveTime::parse_from_str(t, "%H:%M").unwrap_or(NaiveTime::MIN);
            let listed = Listed {
                time_zone: time_zone(&mic).parse().unwrap_or(chrono_tz::UTC),
                open: exchange.map_or(NaiveTime::MIN, |e| time(e.open)),
                close: exchange.map_or(NaiveTime::MIN, |e| time(e.close)),
                calendar: Calendar::for_mic(&mic),
                exchange_mic: mic,
                asset_type,
            };
            (symbol, listed)
        })
        .collect();

    // Resolve, then keep the last row of each (symbol, start): earlier copies are reported as
    // duplicates through the kept bar's flag.
    let mut resolved: Vec<Resolved> = Vec::with_capacity(rows.len());
    for row in rows {
        let Some(symbol) = listed.get(&row.symbol) else {
            errors.push(row_error(
                row.line,
                "symbol",
                format!("{} is not a listed symbol", row.symbol),
                "",
            ));
            continue;
        };
        match resolve(row, symbol, options) {
            Ok(bar) => resolved.push(bar),
            Err(error) => errors.push(error),
        }
    }
    // In (symbol, start, line) order the copies of a bar are adjacent, the last row last (a
    // file in time order is sorted already, which the sort notices in one pass).
    resolved.sort_by(|a, b| {
        (&a.row.symbol, a.start, a.row.line).cmp(&(&b.row.symbol, b.start, b.row.line))
    });
    let mut chosen: Vec<(Resolved, u32)> = Vec::with_capacity(resolved.len());
    for bar in resolved {
        match chosen.last_mut() {
            Some((kept, copies))
                if kept.row.symbol == bar.row.symbol && kept.start == bar.start =>
            {
                *kept = bar;
                *copies += 1;
            }
            _ => chosen.push((bar, 1)),
        }
    }
    errors.sort_by_key(|e| e.line);
    let rows_rejected = errors.len() as u64;
    let errors_truncated = errors.len() > MAX_ERRORS;
    errors.truncate(MAX_ERRORS);

    let ingest_flags: Vec<i32> = chosen
        .iter()
        .map(|(_, copies)| {
            if *copies > 1 {
                quality::bit(pb::QualityFlag::Duplicate)
            } else {
                0
            }
        })
        .collect();
    // Each symbol's run of `chosen` (sorted by symbol, then start).
    let mut runs: Vec<(Series, std::ops::Range<usize>)> = Vec::new();
    let mut i = 0;
    while i < chosen.len() {
        let symbol = &chosen[i].0.row.symbol;
        let j = i + chosen[i..]
            .iter()
            .take_while(|(b, _)| &b.row.symbol == symbol)
            .count();
        let info = &listed[symbol];
        let series = Series::new(
            symbol,
            options.timeframe,
            &info.exchange_mic,
            &info.asset_type,
        );
        runs.push((series, i..j));
        i = j;
    }
    let symbols: Vec<String> = runs.iter().map(|(s, _)| s.symbol.clone()).collect();
    let origin = quality::run::Origin {
        source: &options.source,
        import_id: &import_id,
    };

    let prepared = started.elapsed();
    let mut tx = pool.begin().await.map_err(&status)?;
    // A first import of its ranges (no bar stored between any symbol's first and last) is
    // checked in memory and copied straight into `bars`; otherwise, or when a concurrent writer
    // stored one of the bars meanwhile, through a staging table and `INSERT … ON CONFLICT`.
    let firsts: Vec<DateTime<Utc>> = runs.iter().map(|(_, r)| chosen[r.start].0.start).collect();
    let lasts: Vec<DateTime<Utc>> = runs
        .iter()
        .map(|(_, r)| chosen[r.end - 1].0.start)
        .collect();
    let untouched = store::import::untouched(&mut tx, options.timeframe, &symbols, &firsts, &lasts)
        .await
        .map_err(&status)?;
    let mut first_import = None;
    if untouched {
        let mut direct = sqlx::Connection::begin(&mut *tx).await.map_err(&status)?;
        match import_new(
            &mut direct,
            settings,
            options,
            &chosen,
            &ingest_flags,
            &runs,
            origin,
        )
        .await
        {
            Ok(flagged) => {
                direct.commit().await.map_err(&status)?;
                first_import = Some(flagged);
            }
            Err(e) if is_unique_violation(&e) => {
                tracing::info!(
                    message = "A concurrent writer stored bars of the range first: importing through the staging table.",
                    %import_id,
                );
                direct.rollback().await.map_err(&status)?;
            }
            Err(e) => return Err(status(e)),
        }
    }
    let copied = started.elapsed();
    let (inserted, updated, rows_flagged, stored) = match first_import {
        Some(flagged) => (chosen.len() as i64, 0, flagged, copied),
        None => {
            let data = copy_rows(&chosen, &ingest_flags, None)
                .map_err(sqlx::Error::Encode)
                .map_err(&status)?;
            store::import::copy(&mut tx, data).await.map_err(&status)?;
            let (inserted, updated) =
                store::import::insert(&mut tx, options.timeframe, &options.source)
                    .await
                    .map_err(&status)?;
            let stored = started.elapsed();
            // Quality checks per symbol over what was just written. A dry run writes and checks
            // the same way and then rolls everything back, so its report is what a real import
            // would say.
            let mut rows_flagged = 0;
            for (series, range) in &runs {
                let starts: Vec<DateTime<Utc>> =
                    chosen[range.clone()].iter().map(|(b, _)| b.start).collect();
                let outcome = quality::run::check(&mut tx, settings, series, &starts, origin)
                    .await
                    .map_err(&status)?;
                rows_flagged += outcome.flagged;
            }
            (inserted, updated, rows_flagged, stored)
        }
    };
    let checked = started.elapsed();
    // Where the time went, for tuning (parse and resolve in Rust, COPY, INSERT, checks).
    tracing::debug!(
        message = "Import phases.",
        rows = chosen.len(),
        first_import = first_import.is_some(),
        prepare_ms = prepared.as_millis() as u64,
        direct_ms = (copied - prepared).as_millis() as u64,
        staged_ms = (stored - copied).as_millis() as u64,
        quality_ms = (checked - stored).as_millis() as u64,
    );
    if options.dry_run {
        tx.rollback().await.map_err(&status)?;
    } else {
        tx.commit().await.map_err(&status)?;
    }
    let distinct = chosen.len() as i64;
    let first = chosen.iter().map(|(b, _)| b.start).min();
    let last = chosen.iter().map(|(b, _)| b.start).max();
    Ok(pb::ImportBarsResponse {
        import_id,
        rows_read,
        rows_inserted: inserted as u64,
        rows_updated: updated as u64,
        rows_unchanged: (distinct - inserted - updated).max(0) as u64,
        rows_rejected,
        rows_flagged,
        errors,
        errors_truncated,
        symbols,
        first_bar_start: first.map(wire::timestamp),
        last_bar_start: last.map(wire::timestamp),
        bytes_read: body.len() as u64,
        elapsed: prost_types::Duration::try_from(started.elapsed()).ok(),
        dry_run: options.dry_run,
    })
}
