//! Alerts as their owners manage them: create (starting the activation saga), read, list,
//! update (re-arming a changed condition, releasing or re-requesting the symbol) and delete.

use std::time::Duration;

use chrono::{DateTime, Utc};
use mirai_platform::auth::{Principal, Role};
use mirai_platform::wire;
use mirai_proto::notification::v1 as pb;
use mirai_proto::stock::v1::Timeframe;
use prost::Message as _;
use uuid::Uuid;

use crate::context::Context;
use crate::domain::alert::{DEFAULT_COOLDOWN, Frequency, MIN_COOLDOWN, Status as AlertStatus};
use crate::domain::condition::Condition;
use crate::domain::duration;
use crate::domain::template::Template;
use crate::error::{Error, Result, parse_id};
use crate::saga;
use crate::store::{alerts, endpoints};

/// Tickers as stock-data spells them.
fn parse_symbol(raw: &str) -> Result<String> {
    mirai_platform::wire::ticker(raw)
        .ok_or_else(|| Error::invalid("alert.symbol", mirai_platform::wire::TICKER_RULE))
}

/// Alert fields that can be set on create and update, validated.
struct AlertInput {
    name: String,
    condition: Condition,
    frequency: Frequency,
    timeframe: Timeframe,
    cooldown: Duration,
    expires_at: Option<DateTime<Utc>>,
    message_template: String,
    channels: Vec<pb::Channel>,
    webhook_endpoint_ids: Vec<Uuid>,
}

fn parse_name(name: &str) -> Result<String> {
    if !mirai_platform::wire::is_plain_text(name, 100) {
        return Err(Error::invalid(
            "alert.name",
            "at most 100 characters without control characters",
        ));
    }
    Ok(name.trim().to_owned())
}

fn parse_frequency(value: i32) -> Result<Frequency> {
    Frequency::from_proto(value)
        .ok_or_else(|| Error::invalid("alert.frequency", "unknown frequency"))
}

fn parse_timeframe(value: i32) -> Result<Timeframe> {
    match Timeframe::try_from(value) {
        Ok(Timeframe::Unspecified) => Ok(Timeframe::OneDay),
        Ok(tf) => Ok(tf),
        Err(_) => Err(Error::invalid("alert.bar_timeframe", "unknown timeframe")),
    }
}

fn parse_cooldown(value: Option<&prost_types::Duration>) -> Result<Duration> {
    match value {
        None => Ok(DEFAULT_COOLDOWN),
        Some(d) => match duration(d) {
            Some(d) if d >= MIN_COOLDOWN && d <= Duration::from_secs(365 * 86400) => Ok(d),
            _ => Err(Error::invalid(
                "alert.cooldown",
                "must be between 1 minute and 365 days",
            )),
        },
    }
}

fn parse_expiry(value: Option<&prost_types::Timestamp>) -> Result<Option<DateTime<Utc>>> {
    match value {
        None => Ok(None),
        Some(ts) => {
            let at = wire::datetime(ts)
                .ok_or_else(|| Error::invalid("alert.expires_at", "out of range"))?;
            if at <= Utc::now() {
                return Err(Error::invalid("alert.expires_at", "must be in the future"));
            }
            Ok(Some(at))
        }
    }
}

fn parse_template(text: &str) -> Result<String> {
    Template::parse(text).map_err(|e| Error::invalid("alert.message_template", e))?;
    Ok(text.to_owned())
}

fn parse_channels(values: &[i32]) -> Result<Vec<pb::Channel>> {
    let mut channels = Vec::new();
    for v in values {
        match pb::Channel::try_from(*v) {
            Ok(pb::Channel::Unspecified) | Err(_) => {
                return Err(Error::invalid(
                    "alert.channels",
                    format!("unknown channel {v}"),
                ));
            }
            Ok(c) if !channels.contains(&c) => channels.push(c),
            Ok(_) => {}
        }
    }
    if channels.is_empty() {
        channels.push(pb::Channel::InApp);
    }
    Ok(channels)
}

async fn parse_endpoint_ids(
    conn: &mut sqlx::PgConnection,
    user_id: Uuid,
    ids: &[String],
) -> Result<Vec<Uuid>> {
    let mut out = Vec::new();
    for raw in ids {
        let id = parse_id("alert.webhook_endpoint_ids", raw)?;
        if endpoints::get(conn, user_id, id, false).await?.is_none() {
            return Err(Error::invalid(
                "alert.webhook_endpoint_ids",
                format!("no endpoint {id}"),
            ));
        }
        if !out.contains(&id) {
            out.push(id);
        }
    }
    Ok(out)
}

fn parse_condition(c: Option<&pb::Condition>) -> Result<Condition> {
    let c = c.ok_or_else(|| Error::invalid("alert.condition", "is required"))?;
    Condition::parse(c).map_err(|e| Error::invalid(format!("alert.{}", e.field), e.problem))
}

fn limit_of(ctx: &Context, principal: &Principal) -> u32 {
    let l = ctx.config.limits;
    let mut limit = l.user;
    if principal.has(Role::Premium) {
        limit = limit.max(l.premium);
    }
    if principal.has(Role::Admin) {
        limit = limit.max(l.admin);
    }
    limit
}

fn saga_deadline(ctx: &Context) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::from_std(ctx.config.saga.activation_timeout).unwrap_or_default()
}

/// Creates the user's alert (within the plan's live-alert limit); an enabled one starts PENDING
/// and asks for its symbol (the activation saga).
pub async fn create(
    ctx: &Context,
    user_id: Uuid,
    principal: &Principal,
    alert: pb::Alert,
) -> Result<pb::Alert> {
    let symbol = parse_symbol(&alert.symbol)?;
    let condition = parse_condition(alert.condition.as_ref())?;
    let mut tx = ctx.pool.begin().await?;
    let input = AlertInput {
        name: parse_name(&alert.name)?,
        condition,
        frequency: parse_frequency(alert.frequency)?,
        timeframe: parse_timeframe(alert.bar_timeframe)?,
        cooldown: parse_cooldown(alert.cooldown.as_ref())?,
        expires_at: parse_expiry(alert.expires_at.as_ref())?,
        message_template: parse_template(&alert.message_template)?,
        channels: parse_channels(&alert.channels)?,
        webhook_endpoint_ids: parse_endpoint_ids(&mut tx, user_id, &alert.webhook_endpoint_ids)
            .await?,
    };
    let enabled = alert.enabled.unwrap_or(true);
    if enabled {
        let live = alerts::count_live_locked(&mut tx, user_id).await?;
        let limit = limit_of(ctx, principal);
        if live >= i64::from(limit) {
            return Err(Error::ResourceExhausted(format!(
                "at most {limit} live alerts for your plan; delete or disable one first"
            )));
        }
    }
    let row = alerts::insert(
        &mut tx,
        &alerts::NewAlert {
            alert_id: Uuid::now_v7(),
            user_id,
            symbol,
            name: input.name,
            condition: input.condition,
            frequency: input.frequency,
            timeframe: input.timeframe,
            cooldown: input.cooldown,
            expires_at: input.expires_at,
            message_template: input.message_template,
            channels: input.channels,
            webhook_endpoint_ids: input.webhook_endpoint_ids,
            enabled,
            saga_next_at: Some(saga_deadline(ctx)),
        },
    )
    .await?;
    if enabled {
        saga::request(&mut tx, &row, 0).await?;
    }
    tx.commit().await?;
    tracing::info!(message = "Alert created.", alert_id = %row.alert_id, symbol = %row.symbol);
    Ok(row.to_proto())
}

/// Applies the fields the mask names; a changed condition re-arms, switching off releases the
/// symbol and switching on asks for it again.
pub async fn update(
    ctx: &Context,
    user_id: Uuid,
    principal: &Principal,
    alert: pb::Alert,
    paths: Vec<String>,
) -> Result<pb::Alert> {
    let id = parse_id("alert.alert_id", &alert.alert_id)?;
    let mut tx = ctx.pool.begin().await?;
    let row = alerts::get(&mut tx, user_id, id, true)
        .await?
        .ok_or_else(|| Error::not_found("alert"))?;
    let mut name = row.name.clone();
    let mut condition = row.condition.clone();
    let mut frequency = row.frequency;
    let mut timeframe = row.bar_timeframe;
    let mut cooldown = row.cooldown_secs;
    let mut expires_at = row.expires_at;
    let mut template = row.message_template.clone();
    let mut channels = row.channels.clone();
    let mut endpoint_ids = row.webhook_endpoint_ids.clone();
    let mut enabled = row.enabled;
    let mut rule_changed = false;
    let mut rearm = false;
    for path in &paths {
        match path.as_str() {
            "name" => name = parse_name(&alert.name)?,
            "condition" => {
                condition = parse_condition(alert.condition.as_ref())?
                    .to_proto()
                    .encode_to_vec();
                rule_changed = true;
                rearm = true;
            }
            "frequency" => {
                frequency = parse_frequency(alert.frequency)?.to_proto() as i16;
                rule_changed = true;
            }
            "bar_timeframe" => {
                timeframe = parse_timeframe(alert.bar_timeframe)? as i16;
                rule_changed = true;
            }
            "cooldown" => {
                cooldown = parse_cooldown(alert.cooldown.as_ref())?.as_secs() as i64;
                rule_changed = true;
            }
            "expires_at" => expires_at = parse_expiry(alert.expires_at.as_ref())?,
            "message_template" => {
                template = parse_template(&alert.message_template)?;
                rule_changed = true;
            }
            "channels" => channels = alerts::channel_codes(&parse_channels(&alert.channels)?),
            "webhook_endpoint_ids" => {
                endpoint_ids =
                    parse_endpoint_ids(&mut tx, user_id, &alert.webhook_endpoint_ids).await?
            }
            "enabled" => {
                enabled = alert
                    .enabled
                    .ok_or_else(|| Error::invalid("alert.enabled", "must be set when named"))?
            }
            "symbol" => {
                return Err(Error::invalid(
                    "update_mask",
                    "symbol is immutable; create a new alert instead",
                ));
            }
            other => {
                return Err(Error::invalid(
                    "update_mask",
                    format!("{other} cannot be changed"),
                ));
            }
        }
    }
    if paths.is_empty() {
        return Ok(row.to_proto());
    }
    let status = row.status();
    let rearm_arm = if rearm {
        Some(
            parse_condition(Some(
                &pb::Condition::decode(condition.as_slice())
                    .map_err(|e| Error::Internal(e.to_string()))?,
            ))?
            .initial_arm(),
        )
    } else {
        None
    };
    alerts::update(
        &mut tx,
        &alerts::Changes {
            alert_id: id,
            name: &name,
            condition: &condition,
            frequency,
            bar_timeframe: timeframe,
            cooldown_secs: cooldown,
            expires_at,
            message_template: &template,
            channels: &channels,
            webhook_endpoint_ids: &endpoint_ids,
            enabled,
            rule_changed,
            rearm: rearm_arm,
        },
    )
    .await?;
    // Switching off releases the symbol; switching on asks for it again.
    if !enabled && status.is_live() {
        alerts::set_status(&mut tx, id, AlertStatus::Disabled, "switched off").await?;
        saga::release(&mut tx, id, &row.symbol).await?;
    } else if enabled && !status.is_live() && paths.iter().any(|p| p == "enabled") {
        let live = alerts::count_live_locked(&mut tx, user_id).await?;
        let limit = limit_of(ctx, principal);
        if live >= i64::from(limit) {
            return Err(Error::ResourceExhausted(format!(
                "at most {limit} live alerts for your plan; delete or disable one first"
            )));
        }
        if expires_at.is_some_and(|e| e <= Utc::now()) {
            return Err(Error::FailedPrecondition(
                "the alert has expired; set a new expires_at to enable it".into(),
            ));
        }
        alerts::reset_trigger_count(&mut tx, id).await?;
        let row = alerts::restart_saga(&mut tx, id, saga_deadline(ctx)).await?;
        saga::request(&mut tx, &row, 0).await?;
    }
    let row = alerts::get(&mut tx, user_id, id, false)
        .await?
        .ok_or_else(|| Error::not_found("alert"))?;
    tx.commit().await?;
    Ok(row.to_proto())
}

/// Deletes the user's alert (releasing the tracking of a live one); an unknown id is no error.
pub async fn delete(ctx: &Context, user_id: Uuid, alert_id: &str) -> Result<()> {
    let Ok(id) = alert_id.parse::<Uuid>() else {
        return Ok(());
    };
    let mut tx = ctx.pool.begin().await?;
    if let Some(row) = alerts::get(&mut tx, user_id, id, true).await? {
        alerts::delete(&mut tx, id).await?;
        if row.status().is_live() {
            saga::release(&mut tx, id, &row.symbol).await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// One of the user's alerts.
pub async fn get(ctx: &Context, user_id: Uuid, id: Uuid) -> Result<pb::Alert> {
    let mut conn = ctx.pool.acquire().await?;
    let row = alerts::get(&mut conn, user_id, id, false)
        .await?
        .ok_or_else(|| Error::not_found("alert"))?;
    Ok(row.to_proto())
}

/// One page of the user's alerts (`limit` of them, older than `before`).
pub async fn list(
    ctx: &Context,
    user_id: Uuid,
    r: &pb::ListAlertsRequest,
    limit: i64,
    before: Option<Uuid>,
) -> Result<pb::ListAlertsResponse> {
    let mut statuses = Vec::new();
    for s in &r.statuses {
        let status = pb::AlertStatus::try_from(*s)
            .ok()
            .and_then(AlertStatus::from_proto)
            .ok_or_else(|| Error::invalid("statuses", format!("unknown status {s}")))?;
        statuses.push(status.as_str().to_owned());
    }
    let symbol = if r.symbol.is_empty() {
        None
    } else {
        Some(r.symbol.trim().to_ascii_uppercase())
    };
    let mut rows = alerts::list(
        &ctx.pool,
        user_id,
        &statuses,
        symbol.as_deref(),
        before,
        limit + 1,
    )
    .await?;
    let next_page_token =
        wire::next_page_token(&mut rows, limit as usize, |r| r.alert_id.to_string());
    Ok(pb::ListAlertsResponse {
        alerts: rows.iter().map(alerts::Row::to_proto).collect(),
        next_page_token,
    })
}
