//! `/v1/push-devices`: the caller's push devices.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use mirai_proto::notification::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::middleware::auth::{Caller, forward};
use crate::problem::{Json, Path, Problem};
use crate::routes::fields::time;
use crate::routes::state::AppState;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register_device, list_devices))
        .routes(routes!(unregister_device))
}

// === Push devices ===

/// Platform of a push device.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DevicePlatform {
    Android,
    Ios,
    Web,
}

/// A registered push device (FCM).
#[derive(Debug, Serialize, ToSchema)]
pub struct PushDevice {
    pub push_device_id: String,
    pub platform: Option<DevicePlatform>,
    pub name: String,
    /// Last 8 characters of the FCM token.
    pub token_suffix: String,
    pub created_at: Option<DateTime<Utc>>,
    pub last_delivered_at: Option<DateTime<Utc>>,
}

impl From<pb::PushDevice> for PushDevice {
    fn from(d: pb::PushDevice) -> Self {
        Self {
            platform: match pb::DevicePlatform::try_from(d.platform) {
                Ok(pb::DevicePlatform::Android) => Some(DevicePlatform::Android),
                Ok(pb::DevicePlatform::Ios) => Some(DevicePlatform::Ios),
                Ok(pb::DevicePlatform::Web) => Some(DevicePlatform::Web),
                _ => None,
            },
            created_at: time(&d.created_at),
            last_delivered_at: time(&d.last_delivered_at),
            push_device_id: d.push_device_id,
            name: d.name,
            token_suffix: d.token_suffix,
        }
    }
}

/// Body of `POST /v1/push-devices`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDevice {
    /// FCM registration token.
    pub token: String,
    pub platform: DevicePlatform,
    pub name: Option<String>,
}

/// Registers a device for push; idempotent per token for its owner.
#[utoipa::path(post, path = "/v1/push-devices", tag = "notifications",
    security(("bearer" = []), ("api_key" = [])),
    request_body = NewDevice,
    responses(
        (status = 200, description = "The device", body = PushDevice),
        (status = 400, description = "A field is invalid", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The token is registered to another account (it is never moved silently; unregister it there first)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many push devices (10 by default)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn register_device(
    State(state): State<AppState>,
    Caller(principal): Caller,
    Json(body): Json<NewDevice>,
) -> Result<axum::Json<PushDevice>, Problem> {
    let platform = match body.platform {
        DevicePlatform::Android => pb::DevicePlatform::Android,
        DevicePlatform::Ios => pb::DevicePlatform::Ios,
        DevicePlatform::Web => pb::DevicePlatform::Web,
    };
    let request = forward(
        pb::RegisterPushDeviceRequest {
            user_id: principal.user_id.clone(),
            token: body.token,
            platform: platform.into(),
            name: body.name.unwrap_or_default(),
        },
        &principal,
    )?;
    let r = state
        .upstreams
        .notification()
        .register_push_device(request)
        .await?
        .into_inner();
    Ok(axum::Json(
        r.device
            .map(PushDevice::from)
            .ok_or_else(|| Problem::missing("a device"))?,
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceList {
    pub devices: Vec<PushDevice>,
}

/// The caller's push devices.
#[utoipa::path(get, path = "/v1/push-devices", tag = "notifications",
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, description = "The devices", body = DeviceList)))]
async fn list_devices(
    State(state): State<AppState>,
    Caller(principal): Caller,
) -> Result<axum::Json<DeviceList>, Problem> {
    let request = forward(
        pb::ListPushDevicesRequest {
            user_id: principal.user_id.clone(),
        },
        &principal,
    )?;
    let r = state
        .upstreams
        .notification()
        .list_push_devices(request)
        .await?
        .into_inner();
    Ok(axum::Json(DeviceList {
        devices: r.devices.into_iter().map(PushDevice::from).collect(),
    }))
}

/// Removes a push device; idempotent.
#[utoipa::path(delete, path = "/v1/push-devices/{push_device_id}", tag = "notifications",
    security(("bearer" = []), ("api_key" = [])),
    params(("push_device_id" = String, Path, description = "Device id")),
    responses((status = 204, description = "Removed (or never existed)")))]
async fn unregister_device(
    State(state): State<AppState>,
    Caller(principal): Caller,
    Path(push_device_id): Path<String>,
) -> Result<StatusCode, Problem> {
    let request = forward(
        pb::UnregisterPushDeviceRequest {
            user_id: principal.user_id.clone(),
            push_device_id,
        },
        &principal,
    )?;
    state
        .upstreams
        .notification()
        .unregister_push_device(request)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
