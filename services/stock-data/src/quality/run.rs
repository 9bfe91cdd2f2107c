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
    let from = rows.iter().take_while(|r| r.context).count();
    let (bars, old): (Vec<BarValues>, Vec<i32>) = rows.iter().map(window_bar).unzip();
    let verdict = evaluate(settings, series, &bars, &old, from, written);
    rewrite_flags(
        &mut *conn,
        series,
        &bars[from..],
        &old[from..],
        &verdict.masks,
    )
    .await?;
    verdict.record(conn, series, origin).await
}

/// The checks over bars about to be stored in a range of `series` that holds none yet (a
/// first import): `new` (sorted by start, with their ingest flags) between the stored context
/// before them and the stored bar after them. The bars' flags are returned for the caller to
/// store with them; the flags of stored neighbours that change are rewritten here. Nothing
/// else is written until [`Verdict::record`], once the bars are stored.
pub async fn check_new(
    conn: &mut PgConnection,
    settings: &Settings,
    series: &Series,
    new: &[(BarValues, i32)],
) -> Result<(Vec<i32>, Verdict), sqlx::Error> {
    let (Some(first), Some(last)) = (new.first(), new.last()) else {
        return Ok((Vec::new(), Verdict::default()));
    };
    let rows = store::quality::window(
        &mut *conn,
        series,
        first.0.start,
        last.0.start,
        settings.outlier_window as i64 + 1,
    )
    .await?;
    let from = rows.iter().take_while(|r| r.context).count();
    let stored = &rows[from..];
    debug_assert!(
        stored.iter().all(|r| r.start_at > last.0.start),
        "a range with bars"
    );
    let (mut bars, mut old): (Vec<BarValues>, Vec<i32>) =
        rows[..from].iter().map(window_bar).unzip();
    bars.extend(new.iter().map(|(bar, _)| *bar));
    old.extend(new.iter().map(|(_, flags)| *flags));
    for row in stored {
        let (bar, flags) = window_bar(row);
        bars.push(bar);
        old.push(flags);
    }
    let starts: Vec<DateTime<Utc>> = new.iter().map(|(bar, _)| bar.start).collect();
    let verdict = evaluate(settings, series, &bars, &old, from, &starts);
    // Only the stored bar after the new ones is in the table to rewrite.
    let stored_from = from + new.len();
    let masks = &verdict.masks[new.len()..];
    rewrite_flags(
        &mut *conn,
        series,
        &bars[stored_from..],
        &old[stored_from..],
        masks,
    )
    .await?;
    Ok((verdict.masks[..new.len()].to_vec(), verdict))
}

/// Rewrites the stored flags of `bars` (in step with `old`, their flags now, and `masks`, their
/// flags as checked) where the check changed them.
async fn rewrite_flags(
    conn: &mut PgConnection,
    series: &Series,
    bars: &[BarValues],
    old: &[i32],
    masks: &[i32],
) -> Result<(), sqlx::Error> {
    let (mut at, mut flags) = (Vec::new(), Vec::new());
    for ((bar, old), mask) in bars.iter().zip(old).zip(masks) {
        if mask != old {
            at.push(bar.start);
            flags.push(*mask);
        }
    }
    if !at.is_empty() {
        store::quality::set_flags(conn, series, &at, &flags).await?;
    }
    Ok(())
}

fn window_bar(row: &store::quality::WindowBar) -> (BarValues, i32) {
    let bar = BarValues {
        start: row.start_at,
        open: row.open,
        high: row.high,
        low: row.low,
        close: row.close,
        volume: row.volume,
    };
    (bar, row.quality_flags)
}

/// What the checks concluded over a window of bars: the flags of each checked bar and the
/// findings to record.
#[derive(Debug, Default)]
pub struct Verdict {
    /// The flags of the checked bars (the window from its first checked bar on).
    masks: Vec<i32>,
    issue_at: Vec<DateTime<Utc>>,
    issue_flag: Vec<i16>,
    issue_detail: Vec<String>,
    /// Of the bars just written, how many carry at least one flag.
    flagged: u64,
}

/// Runs the checks over `bars` (oldest first, `old` their flags now) from index `from` on;
/// `written` are the starts of the bars this ingest wrote.
fn evaluate(
    settings: &Settings,
    series: &Series,
    bars: &[BarValues],
    old: &[i32],
    from: usize,
    written: &[DateTime<Utc>],
) -> Verdict {
    let findings = checks::derived(
        bars,
        from,
        &series.asset_type,
        &series.venue,
        series.timeframe,
        settings,
    );
    let written_set: HashSet<&DateTime<Utc>> = written.iter().collect();
    let mut verdict = Verdict::default();
    for i in from..bars.len() {
        let derived_mask = findings[i].iter().fold(0, |m, f| m | bit(f.flag));
        let mask = (old[i] & !DERIVED) | derived_mask;
        verdict.masks.push(mask);
        if mask != 0 && written_set.contains(&bars[i].start) {
            verdict.flagged += 1;
        }
        for f in &findings[i] {
            verdict.issue_at.push(bars[i].start);
            verdict.issue_flag.push(f.flag as i16);
            verdict.issue_detail.push(f.detail.clone());
        }
        for flag in flags_of(mask & !DERIVED) {
            verdict.issue_at.push(bars[i].start);
            verdict.issue_flag.push(flag as i16);
            verdict.issue_detail.push(ingest_detail(flag, &bars[i]));
        }
    }
    verdict
}

impl Verdict {
    /// Records the findings in `quality_issues` and announces the new ones, coalesced to one
    /// `data.quality.issue` event per flag.
    pub async fn record(
        self,
        conn: &mut PgConnection,
        series: &Series,
        origin: Origin<'_>,
    ) -> Result<Outcome, sqlx::Error> {
        let mut outcome = Outcome {
            flagged: self.flagged,
            ..Outcome::default()
        };
        if self.issue_at.is_empty() {
            return Ok(outcome);
        }
        let new_rows = store::quality::record(
            &mut *conn,
            series,
            &self.issue_at,
            &self.issue_flag,
            &self.issue_detail,
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
}
