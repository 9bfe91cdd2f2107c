//! The profile: display name, time zone, locale and watchlist.

use mirai_platform::events::outbox;
use mirai_proto::events::v1 as ev;
use mirai_proto::user::v1 as pb;
use uuid::Uuid;

use crate::SERVICE;
use crate::context::Context;
use crate::domain;
use crate::error::{Error, Result, db};
use crate::store;

pub async fn update_profile(
    ctx: &Context,
    id: Uuid,
    request: pb::UpdateProfileRequest,
) -> Result<pb::UpdateProfileResponse> {
    let paths = request.update_mask.map(|m| m.paths).unwrap_or_default();
    let new = request.user.unwrap_or_default();
    let (mut display_name, mut time_zone, mut locale, mut watchlist) = (None, None, None, None);
    for path in &paths {
        match path.as_str() {
            "display_name" => {
                display_name = Some(domain::profile::display_name(
                    &new.display_name,
                    "user.display_name",
                )?)
            }
            "time_zone" => {
                time_zone = Some(domain::profile::time_zone(
                    &new.time_zone,
                    "user.time_zone",
                )?)
            }
            "locale" => locale = Some(domain::profile::locale(&new.locale, "user.locale")?),
            "watchlist" => watchlist = Some(domain::profile::watchlist(&new.watchlist)?),
            other => {
                return Err(Error::invalid(
                    "update_mask",
                    format!(
                        "`{other}` cannot be changed (display_name, time_zone, locale, watchlist)"
                    ),
                ));
            }
        }
    }
    let mut tx = ctx.pool.begin().await?;
    let before = store::users::user_for_update(&mut tx, id)
        .await?
        .ok_or_else(|| Error::not_found("account"))?;
    if !before.is_active() {
        return Err(Error::FailedPrecondition("account is being deleted".into()));
    }
    if paths.is_empty() {
        return Ok(pb::UpdateProfileResponse {
            user: Some(before.into()),
        });
    }
    store::users::update_profile(
        &mut *tx,
        id,
        &store::users::ProfileUpdate {
            display_name: display_name.as_deref(),
            time_zone: time_zone.as_deref(),
            locale: locale.as_deref(),
            watchlist: watchlist.as_deref(),
        },
    )
    .await
    .map_err(db("account"))?;
    if let Some(symbols) = watchlist.filter(|w| *w != before.watchlist) {
        let added = symbols
            .iter()
            .filter(|s| !before.watchlist.contains(s))
            .cloned()
            .collect();
        let removed = before
            .watchlist
            .iter()
            .filter(|s| !symbols.contains(s))
            .cloned()
            .collect();
        let event = ev::UserWatchlistChanged {
            user_id: id.to_string(),
            symbols,
            added,
            removed,
        };
        outbox::enqueue(&mut tx, SERVICE, &event, None)
            .await
            .map_err(db("event"))?;
    }
    let user = store::users::user_by_id(&mut *tx, id)
        .await?
        .ok_or_else(|| Error::not_found("account"))?;
    tx.commit().await?;
    Ok(pb::UpdateProfileResponse {
        user: Some(user.into()),
    })
}
