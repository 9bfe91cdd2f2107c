//! PostgreSQL access (sqlx), one module per table group.

pub mod alerts;
pub mod deliveries;
pub mod endpoints;
pub mod notifications;
pub mod preferences;
pub mod users;

use mirai_proto::notification::v1 as pb;

pub fn category_of(code: i16) -> pb::Category {
    pb::Category::try_from(i32::from(code)).unwrap_or(pb::Category::Unspecified)
}

pub fn channel_of(code: i16) -> pb::Channel {
    pb::Channel::try_from(i32::from(code)).unwrap_or(pb::Channel::Unspecified)
}
