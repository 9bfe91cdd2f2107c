//! The user service's routes: `account` (sign-up, sessions, the caller's account and API keys,
//! the public key set) and `admin` (users, roles, lockouts, audit).

use utoipa_axum::router::OpenApiRouter;

use crate::routes::state::AppState;

pub mod account;
pub mod admin;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(account::routes())
        .merge(admin::routes())
}
