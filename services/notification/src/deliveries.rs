//! The delivery log as users see it: listing deliveries with their attempts, and re-sending
//! one (the worker that attempts them is [`crate::deliver`]).

use chrono::Utc;
use mirai_platform::wire;
use mirai_proto::notification::v1 as pb;
use uuid::Uuid;

use crate::context::Context;
use crate::error::{Error, Result, parse_id};
use crate::store::{deliveries, endpoints};

/// One page of the user's deliveries (`limit` of them, older than `before`), filtered.
pub async fn list(
    ctx: &Context,
    user_id: Uuid,
    r: &pb::ListDeliveriesRequest,
    limit: i64,
    before: Option<Uuid>,
) -> Result<pb::ListDeliveriesResponse> {
    let mut filter = deliveries::Filter::default();
    if !r.webhook_endpoint_id.is_empty() {
        filter.target = Some(parse_id("webhook_endpoint_id", &r.webhook_endpoint_id)?.to_string());
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
    let mut conn = ctx.pool.acquire().await?;
    let mut rows = deliveries::list(&mut conn, user_id, &filter, before, limit + 1).await?;
    let next_page_token =
        wire::next_page_token(&mut rows, limit as usize, |r| r.delivery_id.to_string());
    let ids: Vec<Uuid> = rows.iter().map(|r| r.delivery_id).collect();
    let attempts = deliveries::attempts_of(&mut conn, &ids).await?;
    Ok(pb::ListDeliveriesResponse {
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
    })
}

/// Queues a new delivery of a sent (or failed) one to the same target.
pub async fn resend(
    ctx: &Context,
    user_id: Uuid,
    r: &pb::ResendDeliveryRequest,
) -> Result<pb::ResendDeliveryResponse> {
    let id = parse_id("delivery_id", &r.delivery_id)?;
    let mut tx = ctx.pool.begin().await?;
    let original = deliveries::get(&mut tx, user_id, id)
        .await?
        .ok_or_else(|| Error::not_found("delivery"))?;
    let channel = crate::store::channel_of(original.channel);
    if channel == pb::Channel::InApp {
        return Err(Error::FailedPrecondition(
            "in-app notifications are stored, not sent".into(),
        ));
    }
    if channel == pb::Channel::Webhook {
        let endpoint = match original.target.parse::<Uuid>() {
            Ok(e) => endpoints::get(&mut tx, user_id, e, false).await?,
            Err(_) => None,
        };
        match endpoint {
            None => {
                return Err(Error::FailedPrecondition("the endpoint was deleted".into()));
            }
            Some(e) if !e.enabled() => {
                return Err(Error::FailedPrecondition(
                    "the endpoint is disabled; enable it first".into(),
                ));
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
    .await?
    .ok_or_else(|| Error::Internal("resend not stored".into()))?;
    tx.commit().await?;
    Ok(pb::ResendDeliveryResponse {
        delivery: Some(created.to_proto(Vec::new())),
    })
}
