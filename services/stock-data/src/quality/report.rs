//! The quality report of one series (`GetQualityReport`).

use chrono::{DateTime, Utc};
use mirai_platform::wire;
use mirai_proto::stock::v1::{self as pb, Timeframe};
use sqlx::PgPool;

use super::run::venue;
use crate::domain::quality::ReportQuery;
use crate::error::{Error, Result, db};
use crate::store;

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
    let totals = store::quality::totals(pool, &symbol.symbol, query)
        .await
        .map_err(&status)?;
    let counts = store::quality::counts(pool, &symbol.symbol, query)
        .await
        .map_err(&status)?;
    let mut issues = store::quality::issues(pool, &symbol.symbol, query)
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
        let days = store::quality::days(pool, &symbol.symbol, query, venue.time_zone.name())
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
    let first: Option<DateTime<Utc>> = totals.first;
    let last: Option<DateTime<Utc>> = totals.last;
    Ok(pb::GetQualityReportResponse {
        symbol: symbol.symbol.clone(),
        timeframe: query.timeframe.into(),
        first_bar_start: first.map(wire::timestamp),
        last_bar_start: last.map(wire::timestamp),
        bars_checked: totals.checked as u64,
        bars_clean: totals.clean as u64,
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
