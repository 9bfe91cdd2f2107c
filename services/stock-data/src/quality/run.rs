//! Running the checks over stored bars inside an ingest's transaction: rewriting derived
//! flags, recording findings, announcing them as coalesced events (the statements are in
//! [`crate::store::quality`]).

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use mirai_platform::events::outbox;
use mirai_platform::wire;
use mirai_proto::events::v1 as ev;
use mirai_proto::stock::v1::{QualityFlag, Timeframe};
use sqlx::PgConnection;

use super::checks::{self, BarValues, Venue};
use super::{DERIVED, Settings, bit, flags_of};
use crate::SERVICE;
use crate::calendar::Calendar;
use crate::store;

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
    let rows = store::quality::window(
        &mut *conn,
        series,
        *first,
        *last,
        settings.outlier_window as i64 + 1,
    )
    .await?;
    let bars: Vec<BarValues> = rows
        .iter()
        .map(|r| BarValues {
            start: r.start_at,
            open: r.open,
            high: r.high,
            low: r.low,
            close: r.close,
            volume: r.volume,
        })
        .collect();
    let old: Vec<i32> = rows.iter().map(|r| r.quality_flags).collect();
    let from = rows.iter().take_while(|r| r.context).count();
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
        store::quality::set_flags(&mut *conn, series, &changed_at, &changed_flags).await?;
    }
    if issue_at.is_empty() {
        return Ok(outcome);
    }
    let new_rows = store::quality::record(
        &mut *conn,
        series,
        &issue_at,
        &issue_flag,
        &issue_detail,
        origin,
    )
    .await?;
    outcome.new_findings = new_rows.len() as u64;
    // Coalesce: one event per flag, naming the earliest bar and how many bars share the flag.
    let mut by_flag: BTreeMap<i16, Vec<(DateTime<Utc>, String)>> = BTreeMap::new();
    for row in new_rows {
        by_flag
            .entry(row.flag)
            .or_default()
            .push((row.bar_start, row.detail));
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
