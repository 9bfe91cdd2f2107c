//! The `NotificationService` gRPC API: translation between the wire and the modules that do
//! the work. Every RPC names its user; the caller (the principal the gateway forwards) must be
//! that user or an admin.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use mirai_platform::auth::{self, Principal, Role};
use mirai_platform::wire;
use mirai_proto::notification::v1 as pb;
use mirai_proto::notification::v1::notification_service_server::NotificationService;
use mirai_proto::stock::v1::Timeframe;
use prost::Message as _;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::context::Shared;
use crate::domain::alert::{DEFAULT_COOLDOWN, Frequency, MIN_COOLDOWN, Status as AlertStatus};
use crate::domain::condition::Condition;
use crate::domain::preferences;
use crate::domain::target;
use crate::domain::template::Template;
use crate::error::{Error, Result};
use crate::saga;
use crate::store::{alerts, deliveries, endpoints, notifications};
use crate::symbols;
use crate::verify;

pub struct Api {
    ctx: Shared,
}

impl Api {
    pub fn new(ctx: Shared) -> Self {
        Self { ctx }
    }
}

/// The caller, who must be `user_id` or an admin; returns the user's id.
fn caller<T>(request: &Request<T>, user_id: &str) -> Result<(Uuid, Principal), Status> {
    let principal = auth::require(request, &[])?;
    if principal.user_id != user_id && !principal.has(Role::Admin) {
        return Err(Status::permission_denied("may only act for the caller"));
    }
    let id = user_id
        .parse()
        .map_err(|_| mirai_platform::error::invalid_argument("user_id", "not a UUID"))?;
    Ok((id, principal))
}

fn parse_id(field: &'static str, raw: &str) -> Result<Uuid> {
    raw.parse()
        .map_err(|_| Error::invalid(field, "not a valid id"))
}

fn limit(requested: u32) -> Result<i64, Status> {
    Ok(i64::from(wire::page_size(requested, 50, 200)?))
}

fn before(token: &str) -> Result<Option<Uuid>, Status> {
    let key = wire::page_after(token)?;
    if key.is_empty() {
        return Ok(None);
    }
    key.parse().map(Some).map_err(|_| {
        mirai_platform::error::invalid_argument("page_token", "not a token from this API")
    })
}

/// Tickers as stock-data spells them.
fn parse_symbol(raw: &str) -> Result<String> {
    mirai_platform::wire::ticker(raw)
        .ok_or_else(|| Error::invalid("alert.symbol", mirai_platform::wire::TICKER_RULE))
}

fn duration(d: &prost_types::Duration) -> Option<Duration> {
    (d.seconds >= 0 && d.nanos >= 0).then(|| Duration::new(d.seconds as u64, d.nanos as u32))
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
    if name.chars().count() > 100 {
        return Err(Error::invalid("alert.name", "at most 100 characters"));
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

impl Api {
    fn limit_of(&self, principal: &Principal) -> u32 {
        let l = self.ctx.config.limits;
        let mut limit = l.user;
        if principal.has(Role::Premium) {
            limit = limit.max(l.premium);
        }
        if principal.has(Role::Admin) {
            limit = limit.max(l.admin);
        }
        limit
    }

    fn saga_deadline(&self) -> DateTime<Utc> {
        Utc::now()
            + chrono::Duration::from_std(self.ctx.config.saga.activation_timeout)
                .unwrap_or_default()
    }

    async fn create_alert_inner(
        &self,
        user_id: Uuid,
        principal: &Principal,
        alert: pb::Alert,
    ) -> Result<pb::Alert> {
        let symbol = parse_symbol(&alert.symbol)?;
        let condition = parse_condition(alert.condition.as_ref())?;
        let mut tx = self.ctx.pool.begin().await?;
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
            let limit = self.limit_of(principal);
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
                saga_next_at: Some(self.saga_deadline()),
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

    async fn update_alert_inner(
        &self,
        user_id: Uuid,
        principal: &Principal,
        alert: pb::Alert,
        paths: Vec<String>,
    ) -> Result<pb::Alert> {
        let id = parse_id("alert.alert_id", &alert.alert_id)?;
        let mut tx = self.ctx.pool.begin().await?;
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
            let limit = self.limit_of(principal);
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
            let row = alerts::restart_saga(&mut tx, id, self.saga_deadline()).await?;
            saga::request(&mut tx, &row, 0).await?;
        }
        let row = alerts::get(&mut tx, user_id, id, false)
            .await?
            .ok_or_else(|| Error::not_found("alert"))?;
        tx.commit().await?;
        Ok(row.to_proto())
    }

    async fn delete_alert_inner(&self, user_id: Uuid, alert_id: &str) -> Result<()> {
        let Ok(id) = alert_id.parse::<Uuid>() else {
            return Ok(());
        };
        let mut tx = self.ctx.pool.begin().await?;
        if let Some(row) = alerts::get(&mut tx, user_id, id, true).await? {
            alerts::delete(&mut tx, id).await?;
            if row.status().is_live() {
                saga::release(&mut tx, id, &row.symbol).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn endpoint_input(&self, e: &pb::WebhookEndpoint) -> Result<(String, String, Vec<i16>)> {
        let url = target::parse_url(&e.url, &self.ctx.config.webhooks.target_policy())
            .map_err(|err| Error::invalid("endpoint.url", err))?;
        if e.description.chars().count() > 200 {
            return Err(Error::invalid(
                "endpoint.description",
                "at most 200 characters",
            ));
        }
        let mut categories = Vec::new();
        for c in &e.categories {
            match pb::Category::try_from(*c) {
                Ok(pb::Category::Unspecified) | Err(_) => {
                    return Err(Error::invalid(
                        "endpoint.categories",
                        format!("unknown category {c}"),
                    ));
                }
                Ok(_) => categories.push(*c as i16),
            }
        }
        Ok((url.to_string(), e.description.clone(), categories))
    }
}

type NotificationStream =
    futures::stream::BoxStream<'static, Result<pb::StreamNotificationsResponse, Status>>;

#[tonic::async_trait]
impl NotificationService for Api {
    #[tracing::instrument(skip_all)]
    async fn create_alert(
        &self,
        request: Request<pb::CreateAlertRequest>,
    ) -> Result<Response<pb::CreateAlertResponse>, Status> {
        let (user_id, principal) = caller(&request, &request.get_ref().user_id)?;
        let alert = request.into_inner().alert.unwrap_or_default();
        let alert = self.create_alert_inner(user_id, &principal, alert).await?;
        Ok(Response::new(pb::CreateAlertResponse {
            alert: Some(alert),
        }))
    }

    async fn get_alert(
        &self,
        request: Request<pb::GetAlertRequest>,
    ) -> Result<Response<pb::GetAlertResponse>, Status> {
        let (user_id, _) = caller(&request, &request.get_ref().user_id)?;
        let id = parse_id("alert_id", &request.get_ref().alert_id)?;
        let mut conn = self.ctx.pool.acquire().await.map_err(Error::from)?;
        let row = alerts::get(&mut conn, user_id, id, false)
            .await
            .map_err(Error::from)?
            .ok_or_else(|| Error::not_found("alert"))?;
        Ok(Response::new(pb::GetAlertResponse {
            alert: Some(row.to_proto()),
        }))
    }

    async fn list_alerts(
        &self,
        request: Request<pb::ListAlertsRequest>,
    ) -> Result<Response<pb::ListAlertsResponse>, Status> {
        let (user_id, _) = caller(&request, &request.get_ref().user_id)?;
        let r = request.into_inner();
        let limit = limit(r.page_size)?;
        let before = before(&r.page_token)?;
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
            &self.ctx.pool,
            user_id,
            &statuses,
            symbol.as_deref(),
            before,
            limit + 1,
        )
        .await
        .map_err(Error::from)?;
        let next_page_token =
            wire::next_page_token(&mut rows, limit as usize, |r| r.alert_id.to_string());
        Ok(Response::new(pb::ListAlertsResponse {
            alerts: rows.iter().map(alerts::Row::to_proto).collect(),
            next_page_token,
        }))
    }

    async fn update_alert(
        &self,
        request: Request<pb::UpdateAlertRequest>,
    ) -> Result<Response<pb::UpdateAlertResponse>, Status> {
        let (user_id, principal) = caller(&request, &request.get_ref().user_id)?;
        let r = request.into_inner();
        let alert = r.alert.unwrap_or_default();
        let paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
        let alert = self
            .update_alert_inner(user_id, &principal, alert, paths)
            .await?;
        Ok(Response::new(pb::UpdateAlertResponse {
            alert: Some(alert),
        }))
    }

    async fn delete_alert(
        &self,
        request: Request<pb::DeleteAlertRequest>,
    ) -> Result<Response<()>, Status> {
        let (user_id, _) = caller(&request, &request.get_ref().user_id)?;
        self.delete_alert_inner(user_id, &request.get_ref().alert_id)
            .await?;
        Ok(Response::new(()))
    }

    async fn list_notifications(
        &self,
        request: Request<pb::ListNotificationsRequest>,
    ) -> Result<Response<pb::ListNotificationsResponse>, Status> {
        let (user_id, _) = caller(&request, &request.get_ref().user_id)?;
        let r = request.into_inner();
        let limit = limit(r.page_size)?;
        let before = before(&r.page_token)?;
        let categories: Vec<i16> = r.categories.iter().map(|c| *c as i16).collect();
        let mut conn = self.ctx.pool.acquire().await.map_err(Error::from)?;
        let mut rows = notifications::list(
            &mut conn,
            user_id,
            r.unread_only,
            &categories,
            before,
            limit + 1,
        )
        .await
        .map_err(Error::from)?;
        let next_page_token =
            wire::next_page_token(&mut rows, limit as usize, |r| r.notification_id.to_string());
        Ok(Response::new(pb::ListNotificationsResponse {
            notifications: rows.iter().map(notifications::Row::to_proto).collect(),
            next_page_token,
        }))
    }

    async fn mark_notifications(
        &self,
        request: Request<pb::MarkNotificationsRequest>,
    ) -> Result<Response<pb::MarkNotificationsResponse>, Status> {
        let (user_id, _) = caller(&request, &request.get_ref().user_id)?;
        let r = request.into_inner();
        let ids: Vec<Uuid> = r
            .notification_ids
            .iter()
            .filter_map(|id| id.parse().ok())
            .collect();
        let mut conn = self.ctx.pool.acquire().await.map_err(Error::from)?;
        let updated = notifications::mark(
            &mut conn,
            user_id,
            if r.all { None } else { Some(&ids) },
            r.read,
        )
        .await
        .map_err(Error::from)?;
        let unread = notifications::unread_count(&mut conn, user_id)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(pb::MarkNotificationsResponse {
            updated: updated as u32,
            unread_count: unread.max(0) as u32,
        }))
    }

    async fn get_unread_count(
        &self,
        request: Request<pb::GetUnreadCountRequest>,
    ) -> Result<Response<pb::GetUnreadCountResponse>, Status> {
        let (user_id, _) = caller(&request, &request.get_ref().user_id)?;
        let mut conn = self.ctx.pool.acquire().await.map_err(Error::from)?;
        let unread = notifications::unread_count(&mut conn, user_id)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(pb::GetUnreadCountResponse {
            unread_count: unread.max(0) as u32,
        }))
    }

    async fn stream_notifications(
        &self,
        request: Request<pb::StreamNotificationsRequest>,
    ) -> Result<Response<NotificationStream>, Status> {
        let (user_id, _) = caller(&request, &request.get_ref().user_id)?;
        let max = self.ctx.config.caps.streams;
        let receiver = self.ctx.hub.subscribe(user_id, max).ok_or_else(|| {
            Error::ResourceExhausted(format!(
                "at most {max} open notification streams; close one first"
            ))
        })?;
        let live = futures::stream::unfold((receiver, 0u64), |(mut rx, mut dropped)| async move {
            loop {
                match rx.recv().await {
                    Ok(mut message) => {
                        message.dropped = dropped;
                        return Some((Ok(message), (rx, dropped)));
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => dropped += n,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        Ok(Response::new(live.boxed()))
    }

    async fn create_webhook_endpoint(
        &self,
        request: Request<pb::CreateWebhookEndpointRequest>,
    ) -> Result<Response<pb::CreateWebhookEndpointResponse>, Status> {
        let (user_id, _) = caller(&request, &request.get_ref().user_id)?;
        let e = request.into_inner().endpoint.unwrap_or_default();
        let (url, description, categories) = self.endpoint_input(&e).await?;
        let mut tx = self.ctx.pool.begin().await.map_err(Error::from)?;
        crate::store::lock_for_user(&mut tx, "mirai_endpoints", user_id)
            .await
            .map_err(Error::from)?;
        let max = self.ctx.config.webhooks.max_endpoints;
        if endpoints::count(&mut tx, user_id)
            .await
            .map_err(Error::from)?
            >= i64::from(max)
        {
            return Err(
                Error::ResourceExhausted(format!("at most {max} webhook endpoints")).into(),
            );
        }
        let secret = endpoints::new_secret();
        let id = Uuid::now_v7();
        let sealed = crate::secrets::seal(
            self.ctx.config.webhooks.secret_keys.as_ref(),
            id.as_bytes(),
            &secret,
        );
        let endpoint = endpoints::insert(
            &mut tx,
            id,
            user_id,
            &url,
            &description,
            &categories,
            e.enabled.unwrap_or(true),
            &sealed,
        )
        .await
        .map_err(Error::from)?;
        tx.commit().await.map_err(Error::from)?;
        Ok(Response::new(pb::CreateWebhookEndpointResponse {
            endpoint: Some(endpoint.to_proto()),
            secret,
        }))
    }

    async fn get_webhook_endpoint(
        &self,
        request: Request<pb::GetWebhookEndpointRequest>,
    ) -> Result<Response<pb::GetWebhookEndpointResponse>, Status> {
        let (user_id, _) = caller(&request, &request.get_ref().user_id)?;
        let id = parse_id(
            "webhook_endpoint_id",
            &request.get_ref().webhook_endpoint_id,
        )?;
        let mut conn = self.ctx.pool.acquire().await.map_err(Error::from)?;
        let e = endpoints::get(&mut conn, user_id, id, false)
            .await
            .map_err(Error::from)?
            .ok_or_else(|| Error::not_found("webhook endpoint"))?;
        Ok(Response::new(pb::GetWebhookEndpointResponse {
            endpoint: Some(e.to_proto()),
        }))
    }

    async fn list_webhook_endpoints(
        &self,
        request: Request<pb::ListWebhookEndpointsRequest>,
    ) -> Result<Response<pb::ListWebhookEndpointsResponse>, Status> {
        let (user_id, _) = caller(&request, &request.get_ref().user_id)?;
        let mut conn = self.ctx.pool.acquire().await.map_err(Error::from)?;
        let list = endpoints::list(&mut conn, user_id)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(pb::ListWebhookEndpointsResponse {
            endpoints: list.iter().map(endpoints::Endpoint::to_proto).collect(),
        }))
    }

    async fn update_webhook_endpoint(
        &self,
        request: Request<pb::UpdateWebhookEndpointRequest>,
    ) -> Result<Response<pb::UpdateWebhookEndpointResponse>, Status> {
        let (user_id, _) = caller(&request, &request.get_ref().user_id)?;
        let r = request.into_inner();
        let e = r.endpoint.unwrap_or_default();
        let id = parse_id("endpoint.webhook_endpoint_id", &e.webhook_endpoint_id)?;
        let mut tx = self.ctx.pool.begin().await.map_err(Error::from)?;
        let mut stored = endpoints::get(&mut tx, user_id, id, true)
            .await
            .map_err(Error::from)?
            .ok_or_else(|| Error::not_found("webhook endpoint"))?;
        for path in r.update_mask.map(|m| m.paths).unwrap_or_default() {
            match path.as_str() {
                "url" => {
                    stored.url =
                        target::parse_url(&e.url, &self.ctx.config.webhooks.target_policy())
                            .map_err(|err| Error::invalid("endpoint.url", err))?
                            .to_string();
                }
                "description" => {
                    if e.description.chars().count() > 200 {
                        return Err(Error::invalid(
                            "endpoint.description",
                            "at most 200 characters",
                        )
                        .into());
                    }
                    stored.description = e.description.clone();
                }
                "categories" => {
                    stored.categories = self
                        .endpoint_input(&pb::WebhookEndpoint {
                            url: stored.url.clone(),
                            categories: e.categories.clone(),
                            ..Default::default()
                        })
                        .await?
                        .2
                }
                "enabled" => {
                    let on = e.enabled.ok_or_else(|| {
                        Error::invalid("endpoint.enabled", "must be set when named")
                    })?;
                    if on {
                        // Re-enabling clears the failure state.
                        stored.status = "ENABLED".into();
                        stored.disabled_reason.clear();
                        stored.failing_since = None;
                        stored.last_error.clear();
                    } else {
                        stored.status = "DISABLED".into();
                        stored.disabled_reason = "switched off".into();
                    }
                }
                other => {
                    return Err(Error::invalid(
                        "update_mask",
                        format!("{other} cannot be changed"),
                    )
                    .into());
                }
            }
        }
        let saved = endpoints::save(&mut tx, &stored)
            .await
            .map_err(Error::from)?;
        tx.commit().await.map_err(Error::from)?;
        Ok(Response::new(pb::UpdateWebhookEndpointResponse {
            endpoint: Some(saved.to_proto()),
        }))
    }

    async fn delete_webhook_endpoint(
        &self,
        request: Request<pb::DeleteWebhookEndpointRequest>,
    ) -> Result<Response<()>, Status> {
        let (user_id, _) = caller(&request, &request.get_ref().user_id)?;
        let Ok(id) = request.get_ref().webhook_endpoint_id.parse::<Uuid>() else {
            return Ok(Response::new(()));
        };
        let mut tx = self.ctx.pool.begin().await.map_err(Error::from)?;
        if endpoints::delete(&mut tx, id, user_id)
            .await
            .map_err(Error::from)?
        {
            // Queued deliveries to it end FAILED, kept in the log.
            deliveries::fail_for_deleted_endpoint(&mut tx, user_id, id)
                .await
                .map_err(Error::from)?;
        }
        tx.commit().await.map_err(Error::from)?;
        Ok(Response::new(()))
    }

    async fn rotate_webhook_secret(
        &self,
        request: Request<pb::RotateWebhookSecretRequest>,
    ) -> Result<Response<pb::RotateWebhookSecretResponse>, Status> {
        let (user_id, _) = caller(&request, &request.get_ref().user_id)?;
        let r = request.into_inner();
        let id = parse_id("webhook_endpoint_id", &r.webhook_endpoint_id)?;
        let overlap = match r.overlap.as_ref() {
            None => Duration::from_secs(24 * 3600),
            Some(d) => match duration(d) {
                Some(d) if d <= Duration::from_secs(7 * 24 * 3600) => d,
                _ => return Err(Error::invalid("overlap", "must be between 0 and 7 days").into()),
            },
        };
        let mut tx = self.ctx.pool.begin().await.map_err(Error::from)?;
        let mut stored = endpoints::get(&mut tx, user_id, id, true)
            .await
            .map_err(Error::from)?
            .ok_or_else(|| Error::not_found("webhook endpoint"))?;
        let secret = endpoints::new_secret();
        // Stored sealed (envelope encryption); the previous one moves over sealed as it was.
        let sealed = crate::secrets::seal(
            self.ctx.config.webhooks.secret_keys.as_ref(),
            id.as_bytes(),
            &secret,
        );
        stored.previous_secret = Some(std::mem::replace(&mut stored.secret, sealed));
        stored.previous_secret_expires_at =
            Some(Utc::now() + chrono::Duration::from_std(overlap).unwrap_or_default());
        let saved = endpoints::save(&mut tx, &stored)
            .await
            .map_err(Error::from)?;
        tx.commit().await.map_err(Error::from)?;
        Ok(Response::new(pb::RotateWebhookSecretResponse {
            endpoint: Some(saved.to_proto()),
            secret,
        }))
    }

    async fn list_deliveries(
        &self,
        request: Request<pb::ListDeliveriesRequest>,
    ) -> Result<Response<pb::ListDeliveriesResponse>, Status> {
        let (user_id, _) = caller(&request, &request.get_ref().user_id)?;
        let r = request.into_inner();
        let limit = limit(r.page_size)?;
        let before = before(&r.page_token)?;
        let mut filter = deliveries::Filter::default();
        if !r.webhook_endpoint_id.is_empty() {
            filter.target =
                Some(parse_id("webhook_endpoint_id", &r.webhook_endpoint_id)?.to_string());
            filter.channel = Some(pb::Channel::Webhook as i16);
        }
        if !r.notification_id.is_empty() {
            filter.notification_id = Some(parse_id("notification_id", &r.notification_id)?);
        }
        if r.channel != 0 {
            filter.channel = Some(r.channel as i16);
        }
        for s in &r.statuses {
            let name = pb::DeliveryStatus::try_from(*s)
                .ok()
                .and_then(deliveries::status_name)
                .ok_or_else(|| Error::invalid("statuses", format!("unknown status {s}")))?;
            filter.statuses.push(name.to_owned());
        }
        let mut conn = self.ctx.pool.acquire().await.map_err(Error::from)?;
        let mut rows = deliveries::list(&mut conn, user_id, &filter, before, limit + 1)
            .await
            .map_err(Error::from)?;
        let next_page_token =
            wire::next_page_token(&mut rows, limit as usize, |r| r.delivery_id.to_string());
        let ids: Vec<Uuid> = rows.iter().map(|r| r.delivery_id).collect();
        let attempts = deliveries::attempts_of(&mut conn, &ids)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(pb::ListDeliveriesResponse {
            deliveries: rows
                .iter()
                .map(|row| {
                    row.to_proto(
                        attempts
                            .iter()
                            .filter(|a| a.delivery_id == row.delivery_id)
                            .map(deliveries::Attempt::to_proto)
                            .collect(),
                    )
                })
                .collect(),
            next_page_token,
        }))
    }

    async fn resend_delivery(
        &self,
        request: Request<pb::ResendDeliveryRequest>,
    ) -> Result<Response<pb::ResendDeliveryResponse>, Status> {
        let (user_id, _) = caller(&request, &request.get_ref().user_id)?;
        let id = parse_id("delivery_id", &request.get_ref().delivery_id)?;
        let mut tx = self.ctx.pool.begin().await.map_err(Error::from)?;
        let original = deliveries::get(&mut tx, user_id, id)
            .await
            .map_err(Error::from)?
            .ok_or_else(|| Error::not_found("delivery"))?;
        let channel = crate::store::channel_of(original.channel);
        if channel == pb::Channel::InApp {
            return Err(Error::FailedPrecondition(
                "in-app notifications are stored, not sent".into(),
            )
            .into());
        }
        if channel == pb::Channel::Webhook {
            let endpoint = match original.target.parse::<Uuid>() {
                Ok(e) => endpoints::get(&mut tx, user_id, e, false)
                    .await
                    .map_err(Error::from)?,
                Err(_) => None,
            };
            match endpoint {
                None => {
                    return Err(Error::FailedPrecondition("the endpoint was deleted".into()).into());
                }
                Some(e) if !e.enabled() => {
                    return Err(Error::FailedPrecondition(
                        "the endpoint is disabled; enable it first".into(),
                    )
                    .into());
                }
                Some(_) => {}
            }
        }
        let created = deliveries::insert(
            &mut tx,
            &deliveries::New {
                user_id,
                notification_id: original.notification_id,
                channel,
                target: original.target.clone(),
                status: "QUEUED",
                next_attempt_at: Some(Utc::now()),
                digest: false,
                last_error: String::new(),
                resend_of: Some(original.delivery_id),
            },
        )
        .await
        .map_err(Error::from)?
        .ok_or_else(|| Error::Internal("resend not stored".into()))?;
        tx.commit().await.map_err(Error::from)?;
        Ok(Response::new(pb::ResendDeliveryResponse {
            delivery: Some(created.to_proto(Vec::new())),
        }))
    }

    async fn register_push_device(
        &self,
        request: Request<pb::RegisterPushDeviceRequest>,
    ) -> Result<Response<pb::RegisterPushDeviceResponse>, Status> {
        let (user_id, _) = caller(&request, &request.get_ref().user_id)?;
        let r = request.into_inner();
        if r.token.is_empty() || r.token.len() > 4096 {
            return Err(Error::invalid("token", "1-4,096 characters").into());
        }
        if r.name.chars().count() > 100 {
            return Err(Error::invalid("name", "at most 100 characters").into());
        }
        let platform = match pb::DevicePlatform::try_from(r.platform) {
            Ok(pb::DevicePlatform::Unspecified) | Err(_) => {
                return Err(Error::invalid("platform", "android, ios or web").into());
            }
            Ok(p) => p as i16,
        };
        let mut tx = self.ctx.pool.begin().await.map_err(Error::from)?;
        crate::store::lock_for_user(&mut tx, "mirai_push_devices", user_id)
            .await
            .map_err(Error::from)?;
        let holder = endpoints::token_holder(&mut tx, &r.token)
            .await
            .map_err(Error::from)?;
        if holder.is_none() {
            let max = self.ctx.config.caps.push_devices;
            if endpoints::device_count(&mut tx, user_id)
                .await
                .map_err(Error::from)?
                >= i64::from(max)
            {
                return Err(Error::ResourceExhausted(format!(
                    "at most {max} push devices; remove one first"
                ))
                .into());
            }
        }
        // Idempotent per token for its owner. A token registered to another account is never
        // moved silently (whoever learnt a token could take over that phone's notifications):
        // the device must unregister there first (the app does on sign-out).
        let device = endpoints::register_device(&mut tx, user_id, &r.token, platform, &r.name)
            .await
            .map_err(Error::from)?;
        let device = device.ok_or_else(|| {
            Error::FailedPrecondition(
                "this device token is registered to another account; unregister it there first"
                    .into(),
            )
        })?;
        tx.commit().await.map_err(Error::from)?;
        Ok(Response::new(pb::RegisterPushDeviceResponse {
            device: Some(device.to_proto()),
        }))
    }

    async fn list_push_devices(
        &self,
        request: Request<pb::ListPushDevicesRequest>,
    ) -> Result<Response<pb::ListPushDevicesResponse>, Status> {
        let (user_id, _) = caller(&request, &request.get_ref().user_id)?;
        let mut conn = self.ctx.pool.acquire().await.map_err(Error::from)?;
        let devices = endpoints::devices(&mut conn, user_id)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(pb::ListPushDevicesResponse {
            devices: devices.iter().map(endpoints::Device::to_proto).collect(),
        }))
    }

    async fn unregister_push_device(
        &self,
        request: Request<pb::UnregisterPushDeviceRequest>,
    ) -> Result<Response<()>, Status> {
        let (user_id, _) = caller(&request, &request.get_ref().user_id)?;
        if let Ok(id) = request.get_ref().push_device_id.parse::<Uuid>() {
            endpoints::unregister_device(&self.ctx.pool, id, user_id)
                .await
                .map_err(Error::from)?;
        }
        Ok(Response::new(()))
    }

    async fn get_preferences(
        &self,
        request: Request<pb::GetPreferencesRequest>,
    ) -> Result<Response<pb::GetPreferencesResponse>, Status> {
        let (user_id, _) = caller(&request, &request.get_ref().user_id)?;
        let mut conn = self.ctx.pool.acquire().await.map_err(Error::from)?;
        let (mut prefs, updated_at) = crate::store::preferences::get(&mut conn, user_id)
            .await
            .map_err(Error::from)?;
        prefs.user_id = user_id.to_string();
        prefs.updated_at = updated_at.map(wire::timestamp);
        Ok(Response::new(pb::GetPreferencesResponse {
            preferences: Some(prefs),
        }))
    }

    async fn update_preferences(
        &self,
        request: Request<pb::UpdatePreferencesRequest>,
    ) -> Result<Response<pb::UpdatePreferencesResponse>, Status> {
        let (user_id, _) = caller(&request, &request.get_ref().user_id)?;
        let r = request.into_inner();
        let new = r.preferences.unwrap_or_default();
        let mut tx = self.ctx.pool.begin().await.map_err(Error::from)?;
        let (mut prefs, mut updated_at) = crate::store::preferences::get(&mut tx, user_id)
            .await
            .map_err(Error::from)?;
        let paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
        let old_email = prefs.email.clone();
        for path in &paths {
            match path.as_str() {
                "channels" => prefs.channels = new.channels.clone(),
                "quiet_hours" => prefs.quiet_hours = new.quiet_hours.clone(),
                "digest" => prefs.digest = new.digest.clone(),
                "email" => prefs.email = new.email.trim().to_owned(),
                other => {
                    return Err(Error::invalid(
                        "update_mask",
                        format!("{other} cannot be changed"),
                    )
                    .into());
                }
            }
        }
        if !paths.is_empty() {
            preferences::validate(&prefs).map_err(|e| Error::invalid(e.field, e.problem))?;
            updated_at = Some(
                crate::store::preferences::put(&mut tx, user_id, &prefs)
                    .await
                    .map_err(Error::from)?,
            );
        }
        let new_email = (verify::normalise(&prefs.email) != verify::normalise(&old_email))
            .then(|| prefs.email.clone());
        if new_email.is_some() {
            // A changed address starts unverified; the old one is forgotten (unless it is the
            // account's).
            let account = crate::store::users::get(&mut tx, user_id)
                .await
                .map_err(Error::from)?
                .map(|p| p.email)
                .unwrap_or_default();
            verify::forget_others(&mut tx, user_id, &[account.as_str(), prefs.email.as_str()])
                .await
                .map_err(Error::from)?;
        }
        tx.commit().await.map_err(Error::from)?;
        if let Some(address) = new_email.filter(|a| !a.is_empty())
            && self.ctx.email.is_some()
            && let Err(error) = verify::send_link(&self.ctx, user_id, &address).await
        {
            // The preferences are saved; the user can ask for the link again.
            tracing::warn!(message = "Sending a verification link failed.", %error);
        }
        prefs.user_id = user_id.to_string();
        prefs.updated_at = updated_at.map(wire::timestamp);
        Ok(Response::new(pb::UpdatePreferencesResponse {
            preferences: Some(prefs),
        }))
    }

    async fn confirm_email_address(
        &self,
        request: Request<pb::ConfirmEmailAddressRequest>,
    ) -> Result<Response<pb::ConfirmEmailAddressResponse>, Status> {
        // The signed token is the credential: no principal is required.
        let email = verify::confirm(&self.ctx, &request.get_ref().token).await?;
        Ok(Response::new(pb::ConfirmEmailAddressResponse { email }))
    }

    async fn resend_email_verification(
        &self,
        request: Request<pb::ResendEmailVerificationRequest>,
    ) -> Result<Response<pb::ResendEmailVerificationResponse>, Status> {
        let (user_id, _) = caller(&request, &request.get_ref().user_id)?;
        if self.ctx.email.is_none() {
            return Err(Error::FailedPrecondition("email is not configured".into()).into());
        }
        let mut conn = self.ctx.pool.acquire().await.map_err(Error::from)?;
        let (prefs, _) = crate::store::preferences::get(&mut conn, user_id)
            .await
            .map_err(Error::from)?;
        let account = crate::store::users::get(&mut conn, user_id)
            .await
            .map_err(Error::from)?
            .map(|p| p.email)
            .unwrap_or_default();
        drop(conn);
        let mut addresses: Vec<String> = [account, prefs.email]
            .iter()
            .filter(|a| !a.trim().is_empty())
            .map(|a| verify::normalise(a))
            .collect();
        addresses.dedup();
        let mut sent_to = Vec::new();
        let mut limited = false;
        for address in addresses {
            match verify::send_link(&self.ctx, user_id, &address).await {
                Ok(verify::Sent::Sent) => sent_to.push(address),
                Ok(verify::Sent::Limited) => limited = true,
                Ok(verify::Sent::Verified) => {}
                Err(error) => return Err(Error::from(error).into()),
            }
        }
        if limited && sent_to.is_empty() {
            return Err(Error::ResourceExhausted(
                "too many verification links for this address or user in the last hour; try again later".into(),
            )
            .into());
        }
        Ok(Response::new(pb::ResendEmailVerificationResponse {
            sent_to,
        }))
    }

    async fn list_known_symbols(
        &self,
        request: Request<pb::ListKnownSymbolsRequest>,
    ) -> Result<Response<pb::ListKnownSymbolsResponse>, Status> {
        symbols::list(&self.ctx.pool, request.get_ref())
            .await
            .map(Response::new)
    }
}
