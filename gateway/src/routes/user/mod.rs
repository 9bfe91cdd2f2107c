//! The user service's routes: `sessions` (sign-up, sessions and tokens, the password change,
//! the public key set and discovery metadata), `account` (the caller's account and API keys)
//! and `admin` (users, roles, lockouts, audit), with the account shapes they share.

pub mod account;
pub mod admin;
pub mod sessions;

use axum::http::{HeaderValue, header};
use chrono::{DateTime, Utc};
use mirai_platform::wire;
use mirai_proto::user::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;

use crate::problem::Problem;
use crate::routes::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(sessions::routes())
        .merge(account::routes())
        .merge(admin::routes())
}

// === Shared shapes ===

/// A role, as the API names it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RoleName {
    User,
    Premium,
    Admin,
}

impl RoleName {
    pub fn from_wire(value: i32) -> Option<Self> {
        match pb::Role::try_from(value).ok()? {
            pb::Role::User => Some(Self::User),
            pb::Role::Premium => Some(Self::Premium),
            pb::Role::Admin => Some(Self::Admin),
            pb::Role::Unspecified => None,
        }
    }

    pub fn to_wire(self) -> i32 {
        match self {
            Self::User => pb::Role::User,
            Self::Premium => pb::Role::Premium,
            Self::Admin => pb::Role::Admin,
        }
        .into()
    }
}

pub fn roles_of(values: &[i32]) -> Vec<RoleName> {
    values
        .iter()
        .filter_map(|r| RoleName::from_wire(*r))
        .collect()
}

/// Lifecycle of an account.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    Active,
    Deleting,
    Deleted,
}

impl AccountStatus {
    pub fn from_wire(value: i32) -> Option<Self> {
        match pb::AccountStatus::try_from(value).ok()? {
            pb::AccountStatus::Active => Some(Self::Active),
            pb::AccountStatus::Deleting => Some(Self::Deleting),
            pb::AccountStatus::Deleted => Some(Self::Deleted),
            pb::AccountStatus::Unspecified => None,
        }
    }

    pub fn to_wire(self) -> i32 {
        match self {
            Self::Active => pb::AccountStatus::Active,
            Self::Deleting => pb::AccountStatus::Deleting,
            Self::Deleted => pb::AccountStatus::Deleted,
        }
        .into()
    }
}

/// An account as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct User {
    pub user_id: String,
    pub email: String,
    pub display_name: String,
    /// IANA time zone; quiet hours and digests use it.
    pub time_zone: String,
    /// BCP 47 locale.
    pub locale: String,
    /// Watched tickers, in the user's order.
    pub watchlist: Vec<String>,
    pub roles: Vec<RoleName>,
    pub status: Option<AccountStatus>,
    pub created_at: Option<DateTime<Utc>>,
    pub last_login_at: Option<DateTime<Utc>>,
    /// Set while a brute-force lockout is in force.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locked_until: Option<DateTime<Utc>>,
}

impl From<pb::User> for User {
    fn from(u: pb::User) -> Self {
        Self {
            roles: roles_of(&u.roles),
            status: AccountStatus::from_wire(u.status),
            created_at: u.created_at.as_ref().and_then(wire::datetime),
            last_login_at: u.last_login_at.as_ref().and_then(wire::datetime),
            locked_until: u.locked_until.as_ref().and_then(wire::datetime),
            user_id: u.user_id,
            email: u.email,
            display_name: u.display_name,
            time_zone: u.time_zone,
            locale: u.locale,
            watchlist: u.watchlist,
        }
    }
}

pub fn user_of(user: Option<pb::User>) -> Result<User, Problem> {
    user.map(User::from)
        .ok_or_else(|| Problem::missing("a user"))
}

fn no_store() -> [(header::HeaderName, HeaderValue); 1] {
    [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))]
}
