//! `/v1/notification-preferences`: delivery preferences per category and channel, quiet hours
//! and digests; `/v1/notification-email/{confirm,resend}`: verification of the email address
//! they deliver to.

use axum::extract::State;
use chrono::{DateTime, Utc};
use mirai_proto::notification::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::middleware::auth::{Caller, forward};
use crate::problem::{Json, Problem, Query};
use crate::routes::fields::time;
use crate::routes::state::AppState;

use super::ChannelName;
use super::inbox::{CategoryName, categories_of};

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_preferences, update_preferences))
        .routes(routes!(confirm_email_link, confirm_email))
        .routes(routes!(resend_email_verification))
}

// === Preferences ===

/// Whether one channel delivers one category.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelPreference {
    pub channel: ChannelName,
    pub category: CategoryName,
    pub enabled: bool,
}

/// A daily period in which non-critical email, push and webhook deliveries are held back
/// (in-app notifications are still stored).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuietHours {
    pub enabled: bool,
    /// Local "HH:MM".
    pub start: String,
    /// Local "HH:MM"; before `start` wraps past midnight.
    pub end: String,
    /// IANA time zone; the profile's when empty.
    #[serde(default)]
    pub time_zone: String,
}

/// How often non-critical notifications are bundled.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DigestFrequency {
    Off,
    Hourly,
    Daily,
}

/// Digest settings (email, push and webhook; in-app is never delayed).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Digest {
    pub frequency: DigestFrequency,
    /// Local "HH:MM" of the daily digest; default "08:00".
    #[serde(default)]
    pub deliver_at: String,
    /// Categories bundled; every non-critical one when empty.
    #[serde(default)]
    pub categories: Vec<CategoryName>,
}

/// The caller's delivery preferences.
#[derive(Debug, Serialize, ToSchema)]
pub struct Preferences {
    pub channels: Vec<ChannelPreference>,
    pub quiet_hours: Option<QuietHours>,
    pub digest: Option<Digest>,
    /// Address for email; the account's when empty.
    pub email: String,
    /// Unset while the defaults apply.
    pub updated_at: Option<DateTime<Utc>>,
}

fn preferences_of(p: Option<pb::Preferences>) -> Result<Preferences, Problem> {
    let p = p.ok_or_else(|| Problem::missing("preferences"))?;
    Ok(Preferences {
        channels: p
            .channels
            .iter()
            .filter_map(|c| {
                Some(ChannelPreference {
                    channel: ChannelName::from_wire(c.channel)?,
                    category: CategoryName::from_wire(c.category)?,
                    enabled: c.enabled,
                })
            })
            .collect(),
        quiet_hours: p.quiet_hours.map(|q| QuietHours {
            enabled: q.enabled,
            start: q.start,
            end: q.end,
            time_zone: q.time_zone,
        }),
        digest: p.digest.map(|d| Digest {
            frequency: match pb::DigestFrequency::try_from(d.frequency) {
                Ok(pb::DigestFrequency::Hourly) => DigestFrequency::Hourly,
                Ok(pb::DigestFrequency::Daily) => DigestFrequency::Daily,
                _ => DigestFrequency::Off,
            },
            deliver_at: d.deliver_at,
            categories: categories_of(&d.categories),
        }),
        email: p.email,
        updated_at: time(&p.updated_at),
    })
}

/// The caller's delivery preferences (defaults when never set).
#[utoipa::path(get, path = "/v1/notification-preferences", tag = "notifications",
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, description = "The preferences", body = Preferences)))]
async fn get_preferences(
    State(state): State<AppState>,
    Caller(principal): Caller,
) -> Result<axum::Json<Preferences>, Problem> {
    let request = forward(
        pb::GetPreferencesRequest {
            user_id: principal.user_id.clone(),
        },
        &principal,
    )?;
    let r = state
        .upstreams
        .notification()
        .get_preferences(request)
        .await?
        .into_inner();
    Ok(axum::Json(preferences_of(r.preferences)?))
}

/// Body of `PATCH /v1/notification-preferences` (absent = unchanged; `channels` replaces the
/// whole list).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreferencesChange {
    pub channels: Option<Vec<ChannelPreference>>,
    pub quiet_hours: Option<QuietHours>,
    pub digest: Option<Digest>,
    pub email: Option<String>,
}

/// Changes delivery preferences. Critical system notifications ignore them.
#[utoipa::path(patch, path = "/v1/notification-preferences", tag = "notifications",
    security(("bearer" = []), ("api_key" = [])),
    request_body = PreferencesChange,
    responses(
        (status = 200, description = "The preferences after the change", body = Preferences),
        (status = 400, description = "A field is invalid (named in detail)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn update_preferences(
    State(state): State<AppState>,
    Caller(principal): Caller,
    Json(body): Json<PreferencesChange>,
) -> Result<axum::Json<Preferences>, Problem> {
    let mut paths = Vec::new();
    let mut prefs = pb::Preferences::default();
    if let Some(channels) = body.channels {
        paths.push("channels".to_owned());
        prefs.channels = channels
            .into_iter()
            .map(|c| pb::ChannelPreference {
                channel: c.channel.to_wire(),
                category: c.category.to_wire(),
                enabled: c.enabled,
            })
            .collect();
    }
    if let Some(q) = body.quiet_hours {
        paths.push("quiet_hours".to_owned());
        prefs.quiet_hours = Some(pb::QuietHours {
            enabled: q.enabled,
            start: q.start,
            end: q.end,
            time_zone: q.time_zone,
        });
    }
    if let Some(d) = body.digest {
        paths.push("digest".to_owned());
        prefs.digest = Some(pb::Digest {
            frequency: match d.frequency {
                DigestFrequency::Off => pb::DigestFrequency::Off,
                DigestFrequency::Hourly => pb::DigestFrequency::Hourly,
                DigestFrequency::Daily => pb::DigestFrequency::Daily,
            }
            .into(),
            deliver_at: d.deliver_at,
            categories: d
                .categories
                .into_iter()
                .map(CategoryName::to_wire)
                .collect(),
        });
    }
    if let Some(email) = body.email {
        paths.push("email".to_owned());
        prefs.email = email;
    }
    let request = forward(
        pb::UpdatePreferencesRequest {
            user_id: principal.user_id.clone(),
            preferences: Some(prefs),
            update_mask: Some(prost_types::FieldMask { paths }),
        },
        &principal,
    )?;
    let r = state
        .upstreams
        .notification()
        .update_preferences(request)
        .await?
        .into_inner();
    Ok(axum::Json(preferences_of(r.preferences)?))
}

// === Email address verification ===

/// A verification link's token.
#[derive(Debug, Deserialize, ToSchema, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EmailToken {
    /// The `token` of the link in the verification email.
    pub token: String,
}

/// The address a link confirmed.
#[derive(Debug, Serialize, ToSchema)]
pub struct EmailConfirmed {
    pub email: String,
    pub verified: bool,
}

async fn confirm_with(
    state: &AppState,
    token: String,
) -> Result<axum::Json<EmailConfirmed>, Problem> {
    // The signed, single-use token is the credential: the link works signed in or not.
    let r = state
        .upstreams
        .notification()
        .confirm_email_address(tonic::Request::new(pb::ConfirmEmailAddressRequest {
            token,
        }))
        .await?
        .into_inner();
    Ok(axum::Json(EmailConfirmed {
        email: r.email,
        verified: true,
    }))
}

/// Confirms an email address from the link in the verification email (alert email goes only
/// to confirmed addresses). Links expire (24 h by default) and work once.
#[utoipa::path(get, path = "/v1/notification-email/confirm", tag = "notifications",
    params(EmailToken),
    responses(
        (status = 200, description = "The address is verified", body = EmailConfirmed),
        (status = 400, description = "Not a token from this service", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Expired, already used, or replaced by a newer link", body = Problem, content_type = "application/problem+json"),
    ))]
async fn confirm_email_link(
    State(state): State<AppState>,
    Query(q): Query<EmailToken>,
) -> Result<axum::Json<EmailConfirmed>, Problem> {
    confirm_with(&state, q.token).await
}

/// Confirms an email address with the token of a verification link (for clients that
/// open the link themselves).
#[utoipa::path(post, path = "/v1/notification-email/confirm", tag = "notifications",
    request_body = EmailToken,
    responses(
        (status = 200, description = "The address is verified", body = EmailConfirmed),
        (status = 400, description = "Not a token from this service", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Expired, already used, or replaced by a newer link", body = Problem, content_type = "application/problem+json"),
    ))]
async fn confirm_email(
    State(state): State<AppState>,
    Json(body): Json<EmailToken>,
) -> Result<axum::Json<EmailConfirmed>, Problem> {
    confirm_with(&state, body.token).await
}

/// Where verification links were sent.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerificationSent {
    /// Empty when every address is already verified.
    pub sent_to: Vec<String>,
}

/// Sends a fresh verification link to each of the caller's unverified addresses (the
/// account's, and the one in the preferences). At most 3 links per address and 5 per user an
/// hour.
#[utoipa::path(post, path = "/v1/notification-email/resend", tag = "notifications",
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "Links sent", body = VerificationSent),
        (status = 409, description = "Email is not configured", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many links in the last hour", body = Problem, content_type = "application/problem+json"),
    ))]
async fn resend_email_verification(
    State(state): State<AppState>,
    Caller(principal): Caller,
) -> Result<axum::Json<VerificationSent>, Problem> {
    let request = forward(
        pb::ResendEmailVerificationRequest {
            user_id: principal.user_id.clone(),
        },
        &principal,
    )?;
    let r = state
        .upstreams
        .notification()
        .resend_email_verification(request)
        .await?
        .into_inner();
    Ok(axum::Json(VerificationSent { sent_to: r.sent_to }))
}
