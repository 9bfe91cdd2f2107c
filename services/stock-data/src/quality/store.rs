//! Running the checks over stored bars, recording findings, coalesced events, the report.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use mirai_platform::events::outbox;
use mirai_platform::wire;
use mirai_proto::events::v1 as ev;
use mirai_proto::stock::v1::{self as pb, QualityFlag, Timeframe};
use sqlx::{PgConnection, PgPool, Row as _};

use super::checks::{self, BarValues, Venue};
use super::{DERIVED, Settings, bit, flags_of};
use crate::SERVICE;
use crate::calendar::Calendar;
pub use crate::domain::quality::ReportQuery;
use crate::error::{Error, Result, db};

/// One stored series: a symbol's bars of one timeframe.
#[derive(Debug, Clone)]
pub struct Series {
    pub symbol: String,
    pub timeframe: Timeframe,
    pub asset_type: String,
    pub venue: Venue,
}

impl Series {
    /// The series of `symbol` (its exchange decides the calendar and time zone).
    pub fn new(symbol: &str, timeframe: Timeframe, exchange_mic: &str, asset_type: &str) -> Self {
        Self {
            symbol: symbol.to_owned(),
            timeframe,
            asset_type: asset_type.to_owned(),
            venue: venue(exchange_mic),
        }
    }
}

/// The calendar and time zone of an exchange.
pub fn venue(exchange_mic: &str) -> Venue {
    let time_zone: Tz = crate::domain::bars::time_zone(exchange_mic)
        .parse()
        .unwrap_or(chrono_tz::UTC);
    Venue {
        calendar: Calendar::for_mic(exchange_mic),
        time_zone,
    }
}

/// Where the checked bars came from (recorded with each finding and event).
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub source: &'a str,
    /// The import's id; empty for live data.
    pub import_id: &'a str,
}

/// What one check pass found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Of the bars just written, how many carry at least one flag.
    pub flagged: u64,
    /// Findings not recorded before (a re-ingest of identical data finds none).
    pub new_findings: u64,
    /// `data.quality.issue` events enqueued for them.
    pub events: u64,
}

/// Findings of ingest flags, which the stored series cannot explain by itself.
fn ingest_detail(flag: QualityFlag, bar: &BarValues) -> String {
    match flag {
        QualityFlag::Duplicate => {
            "the same bar appeared more than once in one ingest; the last row was kept".into()
        }
        QualityFlag::OutOfOrder => "arrived after a later bar of the same feed".into(),
        QualityFlag::ValueChanged => format!(
            "a re-ingest changed the stored values (now o {} h {} l {} c {} v {})",
            bar.open, bar.high, bar.low, bar.close, bar.volume
        ),
        QualityFlag::SourceRepaired => "marked as repaired or estimated by the source".into(),
        other => other.as_str_name().to_owned(),
    }
}

/// Runs the checks over the bars of `series` between the first and last of `written` (sorted
/// bar starts just stored by this ingest), with enough earlier bars as context and the next bar
/// after the range (whose gap verdict may change). Derived flags are rewritten where they
/// changed; every finding is recorded in `quality_issues`; new findings are announced as
/// `data.quality.issue` events, coalesced to at most one per flag per call, so a 50,000-row
/// import emits a handful of events rather than thousands. Runs in the caller's transaction.
pub async fn check(
    conn: &mut PgConnection,
    settings: &Settings,
    series: &Series,
    written: &[DateTime<Utc>],
    origin: Origin<'_>,
) -> Result<Outcome, sqlx::Error> {
    let (Some(first), Some(last)) = (written.first(), written.last()) else {
        return Ok(Outcome::default());
    };
    let rows = sqlx::query(
        "SELECT start_at, open, high, low, close, volume, quality_flags, start_at < $3 AS context
         FROM (
            (SELECT * FROM bars WHERE symbol = $1 AND timeframe = $2 AND start_at < $3
             ORDER BY start_at DESC LIMIT $5)
            UNION ALL
            (SELECT * FROM bars WHERE symbol = $1 AND timeframe = $2
               AND start_at >= $3 AND start_at <= $4)
            UNION ALL
            (SELECT * FROM bars WHERE symbol = $1 AND timeframe = $2 AND start_at > $4
             ORDER BY start_at LIMIT 1)
         ) b ORDER BY start_at",
    )
    .bind(&series.symbol)
    .bind(series.timeframe as i16)
    .bind(first)
    .bind(last)
    .bind(settings.outlier_window as i64 + 1)
    .fetch_all(&mut *conn)
    .await?;
    let bars: Vec<BarValues> = rows
        .iter()
        .map(|r| BarValues {
            start: r.get("start_at"),
            open: r.get("open"),
            high: r.get("high"),
            low: r.get("low"),
            close: r.get("close"),
            volume: r.get("volume"),
        })
        .collect();
    let old: Vec<i32> = rows.iter().map(|r| r.get("quality_flags")).collect();
    let from = rows
        .iter()
        .take_while(|r| r.get::<bool, _>("context"))
        .count();
    let findings = checks::derived(
        &bars,
        from,
        &series.asset_type,
        &series.venue,
        series.timeframe,
        settings,
    );

    let (mut changed_at, mut changed_flags) = (Vec::new(), Vec::new());
    let (mut issue_at, mut issue_flag, mut issue_detail) = (Vec::new(), Vec::new(), Vec::new());
    let written_set: HashSet<&DateTime<Utc>> = written.iter().collect();
    let mut outcome = Outcome::default();
    for i in from..bars.len() {
        let derived_mask = findings[i].iter().fold(0, |m, f| m | bit(f.flag));
        let mask = (old[i] & !DERIVED) | derived_mask;
        if mask != old[i] {
            changed_at.push(bars[i].start);
            changed_flags.push(mask);
        }
        if mask != 0 && written_set.contains(&bars[i].start) {
            outcome.flagged += 1;
        }
        for f in &findings[i] {
            issue_at.push(bars[i].start);
            issue_flag.push(f.flag as i16);
            issue_detail.push(f.detail.clone());
        }
        for flag in flags_of(mask & !DERIVED) {
            issue_at.push(bars[i].start);
            issue_flag.push(flag as i16);
            issue_detail.push(ingest_detail(flag, &bars[i]));
        }
    }
    if !changed_at.is_empty() {
        sqlx::query(
            "UPDATE bars b SET quality_flags = u.flags
             FROM unnest($3::timestamptz[], $4::int4[]) AS u(start_at, flags)
             WHERE b.symbol = $1 AND b.timeframe = $2 AND b.start_at = u.start_at",
        )
        .bind(&series.symbol)
        .bind(series.timeframe as i16)
        .bind(&changed_at)
        .bind(&changed_flags)
        .execute(&mut *conn)
        .await?;
    }
    if issue_at.is_empty() {
        return Ok(outcome);
    }
    let new_rows = sqlx::query(
        "INSERT INTO quality_issues (symbol, timeframe, bar_start, flag, detail, source, import_id)
         SELECT $1, $2, u.bar_start, u.flag, u.detail, $6, $7
         FROM unnest($3::timestamptz[], $4::int2[], $5::text[]) AS u(bar_start, flag, detail)
         ON CONFLICT (symbol, timeframe, bar_start, flag) DO UPDATE
            SET detail = EXCLUDED.detail, source = EXCLUDED.source,
                import_id = EXCLUDED.import_id, detected_at = now()
            WHERE quality_issues.detail IS DISTINCT FROM EXCLUDED.detail
         RETURNING bar_start, flag, detail",
    )
    .bind(&series.symbol)
    .bind(series.timeframe as i16)
    .bind(&issue_at)
    .bind(&issue_flag)
    .bind(&issue_detail)
    .bind(origin.source)
    .bind(origin.import_id)
    .fetch_all(&mut *conn)
    .await?;
    outcome.new_findings = new_rows.len() as u64;
    // Coalesce: one event per flag, naming the earliest bar and how many bars share the flag.
    let mut by_flag: BTreeMap<i16, Vec<(DateTime<Utc>, String)>> = BTreeMap::new();
    for row in new_rows {
        by_flag
            .entry(row.get("flag"))
            .or_default()
            .push((row.get("bar_start"), row.get("detail")));
    }
    for (flag, mut found) in by_flag {
        found.sort();
        let (first_at, first_detail) = found[0].clone();
        let detail = if found.len() == 1 {
            first_detail
        } else {
            format!(
                "{} bars flagged, {} to {}; first: {first_detail}",
                found.len(),
                first_at.to_rfc3339(),
                found[found.len() - 1].0.to_rfc3339()
            )
        };
        let event = ev::DataQualityIssue {
            symbol: series.symbol.clone(),
            timeframe: series.timeframe.into(),
            flag: i32::from(flag),
            bar_start: Some(wire::timestamp(first_at)),
            detail,
            source: origin.source.to_owned(),
            import_id: origin.import_id.to_owned(),
        };
        outbox::enqueue(conn, SERVICE, &event, None).await?;
        outcome.events += 1;
    }
    Ok(outcome)
}

// === The report ===

/// The quality report of one series over a range: counts per flag (over every bar in the
/// range), the findings the bars still carry (paged), and the sessions missing per the calendar.
pub async fn report(pool: &PgPool, query: &ReportQuery) -> Result<pb::GetQualityReportResponse> {
    let status = db("quality report");
    let symbol = crate::store::symbols::get(pool, &query.ticker)
        .await
        .map_err(&status)?
        .ok_or_else(|| {
            Error::NotFound(format!("symbol {} is not listed", query.ticker.as_str()))
        })?;
    let venue = venue(&symbol.exchange_mic);
    let tf = query.timeframe as i16;
    let range = "symbol = $1 AND timeframe = $2
                 AND ($3::timestamptz IS NULL OR start_at >= $3)
                 AND ($4::timestamptz IS NULL OR start_at < $4)";
    let totals = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) AS checked, count(*) FILTER (WHERE quality_flags = 0) AS clean,
                min(start_at) AS first, max(start_at) AS last
         FROM bars WHERE {range}"
    )))
    .bind(&symbol.symbol)
    .bind(tf)
    .bind(query.start)
    .bind(query.end)
    .fetch_one(pool)
    .await
    .map_err(&status)?;
    let counts: Vec<(i32, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT f, count(*) FROM bars, generate_series(1, 10) AS f
         WHERE {range} AND quality_flags & (1 << f) <> 0
         GROUP BY f ORDER BY f"
    )))
    .bind(&symbol.symbol)
    .bind(tf)
    .bind(query.start)
    .bind(query.end)
    .fetch_all(pool)
    .await
    .map_err(&status)?;
    let (after_at, after_flag) = query.after.unzip();
    let mut issues: Vec<(DateTime<Utc>, i16, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT q.bar_start, q.flag, q.detail, q.detected_at
         FROM quality_issues q
         JOIN bars b ON b.symbol = q.symbol AND b.timeframe = q.timeframe
                    AND b.start_at = q.bar_start
         WHERE q.symbol = $1 AND q.timeframe = $2
           AND ($3::timestamptz IS NULL OR q.bar_start >= $3)
           AND ($4::timestamptz IS NULL OR q.bar_start < $4)
           AND b.quality_flags & (1 << q.flag) <> 0
           AND ($5::timestamptz IS NULL OR (q.bar_start, q.flag) > ($5, $6))
         ORDER BY q.bar_start, q.flag
         LIMIT $7",
    )
    .bind(&symbol.symbol)
    .bind(tf)
    .bind(query.start)
    .bind(query.end)
    .bind(after_at)
    .bind(after_flag.unwrap_or(0))
    .bind(i64::from(query.max_issues) + 1)
    .fetch_all(pool)
    .await
    .map_err(&status)?;
    let truncated = issues.len() > query.max_issues as usize;
    issues.truncate(query.max_issues as usize);
    let next_page_token = if truncated {
        issues
            .last()
            .map(|(at, flag, ..)| wire::page_token(&format!("{}|{flag}", at.to_rfc3339())))
            .unwrap_or_default()
    } else {
        String::new()
    };

    // Missing sessions: the trading days between the first and last bar that have no bar.
    let mut missing_sessions = Vec::new();
    if let Some(calendar) = venue
        .calendar
        .filter(|_| !matches!(query.timeframe, Timeframe::OneWeek | Timeframe::OneMonth))
    {
        let days: Vec<NaiveDate> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT DISTINCT (start_at AT TIME ZONE $5)::date AS day FROM bars
             WHERE {range} ORDER BY day"
        )))
        .bind(&symbol.symbol)
        .bind(tf)
        .bind(query.start)
        .bind(query.end)
        .bind(venue.time_zone.name())
        .fetch_all(pool)
        .await
        .map_err(&status)?;
        'days: for pair in days.windows(2) {
            for day in calendar
                .sessions_between(pair[0], pair[1])
                .unwrap_or_default()
            {
                if missing_sessions.len() >= 10_000 {
                    break 'days;
                }
                if let Some(Some(session)) = calendar.session(day)
                    && let Some(open) = day
                        .and_time(session.open)
                        .and_local_timezone(venue.time_zone)
                        .earliest()
                {
                    missing_sessions.push(wire::timestamp(open.to_utc()));
                }
            }
        }
    }
    let first: Option<DateTime<Utc>> = totals.get("first");
    let last: Option<DateTime<Utc>> = totals.get("last");
    Ok(pb::GetQualityReportResponse {
        symbol: symbol.symbol.clone(),
        timeframe: query.timeframe.into(),
        first_bar_start: first.map(wire::timestamp),
        last_bar_start: last.map(wire::timestamp),
        bars_checked: totals.get::<i64, _>("checked") as u64,
        bars_clean: totals.get::<i64, _>("clean") as u64,
        counts: counts
            .into_iter()
            .map(|(flag, count)| pb::FlagCount {
                flag,
                count: count as u64,
            })
            .collect(),
        issues: issues
            .into_iter()
            .map(|(at, flag, detail, detected)| pb::QualityIssue {
                flag: i32::from(flag),
                bar_start: Some(wire::timestamp(at)),
                detail,
                detected_at: Some(wire::timestamp(detected)),
            })
            .collect(),
        issues_truncated: truncated,
        missing_sessions,
        calendar: venue
            .calendar
            .map(|c| c.name.to_owned())
            .unwrap_or_default(),
        next_page_token,
    })
}
