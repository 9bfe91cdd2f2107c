//! The notification service's routes: `alerts` (the caller's price and forecast alerts, their
//! `conditions`), `inbox` (in-app notifications: list, mark read, unread count, and their live
//! stream `/v1/stream/notifications`), `webhooks` (endpoints, secrets, rotation), `deliveries`
//! (the delivery log and resending), `devices` (push devices), `preferences` (delivery
//! preferences and verification of the notification email address). The delivery channel
//! names (`ChannelName`) several of them share are here.

pub mod alerts;
pub mod conditions;
pub mod deliveries;
pub mod devices;
pub mod inbox;
pub mod preferences;
pub mod webhooks;

use mirai_proto::notification::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;

use crate::routes::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(alerts::routes())
        .merge(inbox::routes())
        .merge(webhooks::routes())
        .merge(deliveries::routes())
        .merge(devices::routes())
        .merge(preferences::routes())
}

/// A delivery channel.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChannelName {
    InApp,
    Email,
    Webhook,
    Push,
}

impl ChannelName {
    pub fn to_wire(self) -> i32 {
        match self {
            Self::InApp => pb::Channel::InApp,
            Self::Email => pb::Channel::Email,
            Self::Webhook => pb::Channel::Webhook,
            Self::Push => pb::Channel::Push,
        }
        .into()
    }

    pub fn from_wire(value: i32) -> Option<Self> {
        Some(match pb::Channel::try_from(value).ok()? {
            pb::Channel::InApp => Self::InApp,
            pb::Channel::Email => Self::Email,
            pb::Channel::Webhook => Self::Webhook,
            pb::Channel::Push => Self::Push,
            pb::Channel::Unspecified => return None,
        })
    }
}
