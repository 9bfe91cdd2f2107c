//! The analytics service's routes: `/v1/analytics` (`indicators`, `statistics` and `trends`
//! over the service's read model of bars) and `/v1/reports` (`reports`: asynchronous report
//! jobs with their files).

pub mod indicators;
pub mod reports;
pub mod statistics;
pub mod trends;

use chrono::{DateTime, Utc};
use mirai_platform::wire;
use mirai_proto::analytics::v1 as pb;
use utoipa_axum::router::OpenApiRouter;

use crate::routes::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(indicators::routes())
        .merge(statistics::routes())
        .merge(trends::routes())
        .merge(reports::routes())
}

fn times(ts: &[prost_types::Timestamp]) -> Vec<DateTime<Utc>> {
    ts.iter().filter_map(wire::datetime).collect()
}

fn values(values: Vec<pb::OptionalDouble>) -> Vec<Option<f64>> {
    values.into_iter().map(|v| v.value).collect()
}
