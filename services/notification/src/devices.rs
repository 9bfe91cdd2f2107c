//! Push devices: register (idempotent per token, never moved between accounts silently),
//! list and unregister.

use mirai_proto::notification::v1 as pb;
use uuid::Uuid;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::store::endpoints;

/// Registers a device token for the user (within the cap).
pub async fn register(
    ctx: &Context,
    user_id: Uuid,
    r: pb::RegisterPushDeviceRequest,
) -> Result<pb::RegisterPushDeviceResponse> {
    if r.token.is_empty() || r.token.len() > 4096 || r.token.chars().any(char::is_control) {
        return Err(Error::invalid(
            "token",
            "1-4,096 characters without control characters",
        ));
    }
    if !mirai_platform::wire::is_plain_text(&r.name, 100) {
        return Err(Error::invalid(
            "name",
            "at most 100 characters without control characters",
        ));
    }
    let platform = match pb::DevicePlatform::try_from(r.platform) {
        Ok(pb::DevicePlatform::Unspecified) | Err(_) => {
            return Err(Error::invalid("platform", "android, ios or web"));
        }
        Ok(p) => p as i16,
    };
    let mut tx = ctx.pool.begin().await?;
    crate::store::lock_for_user(&mut tx, "mirai_push_devices", user_id).await?;
    let holder = endpoints::token_holder(&mut tx, &r.token).await?;
    if holder.is_none() {
        let max = ctx.config.caps.push_devices;
        if endpoints::device_count(&mut tx, user_id).await? >= i64::from(max) {
            return Err(Error::ResourceExhausted(format!(
                "at most {max} push devices; remove one first"
            )));
        }
    }
    // Idempotent per token for its owner. A token registered to another account is never
    // moved silently (whoever learnt a token could take over that phone's notifications):
    // the device must unregister there first (the app does on sign-out).
    let device = endpoints::register_device(&mut tx, user_id, &r.token, platform, &r.name).await?;
    let device = device.ok_or_else(|| {
        Error::FailedPrecondition(
            "this device token is registered to another account; unregister it there first".into(),
        )
    })?;
    tx.commit().await?;
    Ok(pb::RegisterPushDeviceResponse {
        device: Some(device.to_proto()),
    })
}

pub async fn list(ctx: &Context, user_id: Uuid) -> Result<pb::ListPushDevicesResponse> {
    let mut conn = ctx.pool.acquire().await?;
    let devices = endpoints::devices(&mut conn, user_id).await?;
    Ok(pb::ListPushDevicesResponse {
        devices: devices.iter().map(endpoints::Device::to_proto).collect(),
    })
}

/// Removes the user's device; an unknown id is no error.
pub async fn unregister(
    ctx: &Context,
    user_id: Uuid,
    r: &pb::UnregisterPushDeviceRequest,
) -> Result<()> {
    if let Ok(id) = r.push_device_id.parse::<Uuid>() {
        endpoints::unregister_device(&ctx.pool, id, user_id).await?;
    }
    Ok(())
}
