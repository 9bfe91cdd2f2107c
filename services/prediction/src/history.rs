//! The prediction history the API lists: whose predictions a caller may see, and a stored
//! prediction with its outcome as the contract shows it.

use mirai_platform::auth::{Principal, Role};
use mirai_platform::wire;
use mirai_proto::prediction::v1 as pb;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::forecasting::{duration_to_wire, interval_level};
use crate::store::predictions::Listed;

/// Whose predictions a listing covers, as `store::predictions::Filter::user` takes it: `None`
/// everyone's (admins without a user), `Some(None)` the predictions no user is attached to
/// (the public track record: bar loop, anonymous requests), `Some(Some(id))` one user's — the
/// caller's own, or anyone's for an admin.
pub fn whose(
    principal: Option<&Principal>,
    requested: Option<Uuid>,
) -> Result<Option<Option<Uuid>>> {
    let admin = principal.is_some_and(|p| p.has(Role::Admin));
    match (requested, admin) {
        (None, true) => Ok(None),
        (None, false) => Ok(Some(None)),
        (Some(id), true) => Ok(Some(Some(id))),
        (Some(id), false) => {
            let own = principal.is_some_and(|p| p.user_id.eq_ignore_ascii_case(&id.to_string()));
            if !own {
                return Err(Error::PermissionDenied(
                    "only admins may list another user's predictions".into(),
                ));
            }
            Ok(Some(Some(id)))
        }
    }
}

pub fn stored_to_wire(row: Listed) -> pb::StoredPrediction {
    let model = pb::ModelRef {
        name: row.model_name.clone(),
        version: row.model_version.clone(),
    };
    let forecast = pb::Forecast {
        prediction_id: row.id.to_string(),
        symbol: row.symbol.clone(),
        timeframe: i32::from(row.timeframe),
        model: Some(model),
        role: i32::from(row.role),
        as_of: Some(wire::timestamp(row.as_of)),
        target_start: Some(wire::timestamp(row.target_start)),
        last_close: row.last_close,
        point: row.point,
        lower: row.lower,
        upper: row.upper,
        interval_level: interval_level(row.lower_level, row.upper_level),
        p_up: row.p_up,
        quantiles: row
            .levels
            .iter()
            .zip(&row.log_returns)
            .map(|(level, q)| pb::QuantileValue {
                level: *level,
                price: row.last_close * q.exp(),
            })
            .collect(),
        latency: Some(duration_to_wire(std::time::Duration::from_micros(
            row.latency_us.max(0) as u64,
        ))),
        adjustment: i32::from(row.adjustment),
    };
    let outcome = match (
        row.scored_at,
        row.actual_close,
        row.abs_error,
        row.naive_abs_error,
        row.pinball_loss,
        row.inside_interval,
        row.direction_hit,
    ) {
        (
            Some(at),
            Some(actual),
            Some(abs),
            Some(naive),
            Some(pinball),
            Some(inside),
            Some(hit),
        ) => Some(pb::Outcome {
            actual_close: actual,
            scored_at: Some(wire::timestamp(at)),
            abs_error: abs,
            naive_abs_error: naive,
            pinball_loss: pinball,
            inside_interval: inside,
            direction_hit: hit,
        }),
        _ => None,
    };
    pb::StoredPrediction {
        forecast: Some(forecast),
        user_id: row.user_id.map(|u| u.to_string()).unwrap_or_default(),
        served: row.served,
        created_at: Some(wire::timestamp(row.created_at)),
        outcome,
    }
}
