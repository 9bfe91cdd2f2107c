//! The in-app inbox: listing notifications, marking them read or unread, the unread count and
//! live streams.

use futures::StreamExt as _;
use futures::stream::BoxStream;
use mirai_platform::wire;
use mirai_proto::notification::v1 as pb;
use uuid::Uuid;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::store::notifications;

/// One page of the user's notifications (`limit` of them, older than `before`).
pub async fn list(
    ctx: &Context,
    user_id: Uuid,
    r: &pb::ListNotificationsRequest,
    limit: i64,
    before: Option<Uuid>,
) -> Result<pb::ListNotificationsResponse> {
    let categories: Vec<i16> = r.categories.iter().map(|c| *c as i16).collect();
    let mut conn = ctx.pool.acquire().await?;
    let mut rows = notifications::list(
        &mut conn,
        user_id,
        r.unread_only,
        &categories,
        before,
        limit + 1,
    )
    .await?;
    let next_page_token =
        wire::next_page_token(&mut rows, limit as usize, |r| r.notification_id.to_string());
    Ok(pb::ListNotificationsResponse {
        notifications: rows.iter().map(notifications::Row::to_proto).collect(),
        next_page_token,
    })
}

/// Marks the named (or all) notifications read or unread; answers the unread count after.
pub async fn mark(
    ctx: &Context,
    user_id: Uuid,
    r: pb::MarkNotificationsRequest,
) -> Result<pb::MarkNotificationsResponse> {
    let ids: Vec<Uuid> = r
        .notification_ids
        .iter()
        .filter_map(|id| id.parse().ok())
        .collect();
    let mut conn = ctx.pool.acquire().await?;
    let updated = notifications::mark(
        &mut conn,
        user_id,
        if r.all { None } else { Some(&ids) },
        r.read,
    )
    .await?;
    let unread = notifications::unread_count(&mut conn, user_id).await?;
    Ok(pb::MarkNotificationsResponse {
        updated: updated as u32,
        unread_count: unread.max(0) as u32,
    })
}

pub async fn unread_count(ctx: &Context, user_id: Uuid) -> Result<pb::GetUnreadCountResponse> {
    let mut conn = ctx.pool.acquire().await?;
    let unread = notifications::unread_count(&mut conn, user_id).await?;
    Ok(pb::GetUnreadCountResponse {
        unread_count: unread.max(0) as u32,
    })
}

/// Most notifications a resumed stream replays before the live ones.
pub const REPLAY_LIMIT: i64 = 200;

/// The user's live notifications (within the cap of open streams); each carries how many
/// were dropped before it because the reader fell behind. Resuming `after` a notification, the
/// stored ones newer than it come first (at most [`REPLAY_LIMIT`], oldest first); the live
/// stream is joined before they are read, so none falls between the two, and a live one that
/// was also replayed is not sent twice.
pub async fn stream(
    ctx: &Context,
    user_id: Uuid,
    after: Option<Uuid>,
) -> Result<BoxStream<'static, pb::StreamNotificationsResponse>> {
    let max = ctx.config.caps.streams;
    let receiver = ctx.hub.subscribe(user_id, max).ok_or_else(|| {
        Error::ResourceExhausted(format!(
            "at most {max} open notification streams; close one first"
        ))
    })?;
    let (replay, unread) = match after {
        Some(after) => {
            let mut conn = ctx.pool.acquire().await?;
            let rows = notifications::newer(&mut conn, user_id, after, REPLAY_LIMIT).await?;
            (rows, notifications::unread_count(&mut conn, user_id).await?)
        }
        None => (Vec::new(), 0),
    };
    let replayed: std::collections::HashSet<String> = replay
        .iter()
        .map(|r| r.notification_id.to_string())
        .collect();
    let replay =
        futures::stream::iter(
            replay
                .into_iter()
                .map(move |row| pb::StreamNotificationsResponse {
                    notification: Some(row.to_proto()),
                    unread_count: unread.max(0) as u32,
                    dropped: 0,
                }),
        );
    let live = futures::stream::unfold((receiver, 0u64), |(mut rx, mut dropped)| async move {
        loop {
            match rx.recv().await {
                Ok(mut message) => {
                    message.dropped = dropped;
                    return Some((message, (rx, dropped)));
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => dropped += n,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
    .filter(move |message| {
        let again = message
            .notification
            .as_ref()
            .is_some_and(|n| replayed.contains(&n.notification_id));
        std::future::ready(!again)
    });
    Ok(replay.chain(live).boxed())
}
