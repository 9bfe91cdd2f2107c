//! Webhook endpoints: create (with a signing secret shown once), read, list, update, delete
//! (failing what was queued for them) and secret rotation with an overlap.

use std::time::Duration;

use chrono::Utc;
use mirai_proto::notification::v1 as pb;
use uuid::Uuid;

use crate::context::Context;
use crate::domain::{duration, target};
use crate::error::{Error, Result, parse_id};
use crate::store::{deliveries, endpoints};

/// The URL (checked against the target policy), description and categories of an endpoint.
async fn endpoint_input(
    ctx: &Context,
    e: &pb::WebhookEndpoint,
) -> Result<(String, String, Vec<i16>)> {
    let url = target::parse_url(&e.url, &ctx.config.webhooks.target_policy())
        .map_err(|err| Error::invalid("endpoint.url", err))?;
    if !mirai_platform::wire::is_plain_text(&e.description, 200) {
        return Err(Error::invalid(
            "endpoint.description",
            "at most 200 characters without control characters",
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

/// Creates an endpoint (within the cap) with a fresh signing secret, returned this once.
pub async fn create(
    ctx: &Context,
    user_id: Uuid,
    r: pb::CreateWebhookEndpointRequest,
) -> Result<pb::CreateWebhookEndpointResponse> {
    let e = r.endpoint.unwrap_or_default();
    let (url, description, categories) = endpoint_input(ctx, &e).await?;
    let mut tx = ctx.pool.begin().await?;
    crate::store::lock_for_user(&mut tx, "mirai_endpoints", user_id).await?;
    let max = ctx.config.webhooks.max_endpoints;
    if endpoints::count(&mut tx, user_id).await? >= i64::from(max) {
        return Err(Error::ResourceExhausted(format!(
            "at most {max} webhook endpoints"
        )));
    }
    let secret = endpoints::new_secret();
    let id = Uuid::now_v7();
    let sealed = crate::secrets::seal(
        ctx.config.webhooks.secret_keys.as_ref(),
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
    .await?;
    tx.commit().await?;
    Ok(pb::CreateWebhookEndpointResponse {
        endpoint: Some(endpoint.to_proto()),
        secret,
    })
}

pub async fn get(
    ctx: &Context,
    user_id: Uuid,
    r: &pb::GetWebhookEndpointRequest,
) -> Result<pb::GetWebhookEndpointResponse> {
    let id = parse_id("webhook_endpoint_id", &r.webhook_endpoint_id)?;
    let mut conn = ctx.pool.acquire().await?;
    let e = endpoints::get(&mut conn, user_id, id, false)
        .await?
        .ok_or_else(|| Error::not_found("webhook endpoint"))?;
    Ok(pb::GetWebhookEndpointResponse {
        endpoint: Some(e.to_proto()),
    })
}

pub async fn list(ctx: &Context, user_id: Uuid) -> Result<pb::ListWebhookEndpointsResponse> {
    let mut conn = ctx.pool.acquire().await?;
    let list = endpoints::list(&mut conn, user_id).await?;
    Ok(pb::ListWebhookEndpointsResponse {
        endpoints: list.iter().map(endpoints::Endpoint::to_proto).collect(),
    })
}

/// Applies the fields the mask names; re-enabling clears the failure state.
pub async fn update(
    ctx: &Context,
    user_id: Uuid,
    r: pb::UpdateWebhookEndpointRequest,
) -> Result<pb::UpdateWebhookEndpointResponse> {
    let e = r.endpoint.unwrap_or_default();
    let id = parse_id("endpoint.webhook_endpoint_id", &e.webhook_endpoint_id)?;
    let mut tx = ctx.pool.begin().await?;
    let mut stored = endpoints::get(&mut tx, user_id, id, true)
        .await?
        .ok_or_else(|| Error::not_found("webhook endpoint"))?;
    for path in r.update_mask.map(|m| m.paths).unwrap_or_default() {
        match path.as_str() {
            "url" => {
                stored.url = target::parse_url(&e.url, &ctx.config.webhooks.target_policy())
                    .map_err(|err| Error::invalid("endpoint.url", err))?
                    .to_string();
            }
            "description" => {
                if !mirai_platform::wire::is_plain_text(&e.description, 200) {
                    return Err(Error::invalid(
                        "endpoint.description",
                        "at most 200 characters without control characters",
                    ));
                }
                stored.description = e.description.clone();
            }
            "categories" => {
                stored.categories = endpoint_input(
                    ctx,
                    &pb::WebhookEndpoint {
                        url: stored.url.clone(),
                        categories: e.categories.clone(),
                        ..Default::default()
                    },
                )
                .await?
                .2
            }
            "enabled" => {
                let on = e
                    .enabled
                    .ok_or_else(|| Error::invalid("endpoint.enabled", "must be set when named"))?;
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
                ));
            }
        }
    }
    let saved = endpoints::save(&mut tx, &stored).await?;
    tx.commit().await?;
    Ok(pb::UpdateWebhookEndpointResponse {
        endpoint: Some(saved.to_proto()),
    })
}

/// Deletes the endpoint (an unknown id is no error); its queued deliveries end FAILED.
pub async fn delete(
    ctx: &Context,
    user_id: Uuid,
    r: &pb::DeleteWebhookEndpointRequest,
) -> Result<()> {
    let Ok(id) = r.webhook_endpoint_id.parse::<Uuid>() else {
        return Ok(());
    };
    let mut tx = ctx.pool.begin().await?;
    if endpoints::delete(&mut tx, id, user_id).await? {
        // Queued deliveries to it end FAILED, kept in the log.
        deliveries::fail_for_deleted_endpoint(&mut tx, user_id, id).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// A new signing secret; the previous one keeps signing for `overlap` (default a day).
pub async fn rotate_secret(
    ctx: &Context,
    user_id: Uuid,
    r: pb::RotateWebhookSecretRequest,
) -> Result<pb::RotateWebhookSecretResponse> {
    let id = parse_id("webhook_endpoint_id", &r.webhook_endpoint_id)?;
    let overlap = match r.overlap.as_ref() {
        None => Duration::from_secs(24 * 3600),
        Some(d) => match duration(d) {
            Some(d) if d <= Duration::from_secs(7 * 24 * 3600) => d,
            _ => return Err(Error::invalid("overlap", "must be between 0 and 7 days")),
        },
    };
    let mut tx = ctx.pool.begin().await?;
    let mut stored = endpoints::get(&mut tx, user_id, id, true)
        .await?
        .ok_or_else(|| Error::not_found("webhook endpoint"))?;
    let secret = endpoints::new_secret();
    // Stored sealed (envelope encryption); the previous one moves over sealed as it was.
    let sealed = crate::secrets::seal(
        ctx.config.webhooks.secret_keys.as_ref(),
        id.as_bytes(),
        &secret,
    );
    stored.previous_secret = Some(std::mem::replace(&mut stored.secret, sealed));
    stored.previous_secret_expires_at =
        Some(Utc::now() + chrono::Duration::from_std(overlap).unwrap_or_default());
    let saved = endpoints::save(&mut tx, &stored).await?;
    tx.commit().await?;
    Ok(pb::RotateWebhookSecretResponse {
        endpoint: Some(saved.to_proto()),
        secret,
    })
}
