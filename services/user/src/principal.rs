//! Who is calling: the principal of the call's verified internal identity token (signed by the
//! gateway, checked by the platform's server layer, read by [`mirai_platform::auth`]) and the
//! checks this service makes with it. Kept in one small module so the checks can move into the
//! platform crate unchanged.

use mirai_platform::auth::{self, Principal, Role};
use tonic::Status;

/// Any authenticated caller acting on `user_id`: the account itself, or an admin when
/// `admin_may` is set.
pub fn require_self<T>(
    request: &tonic::Request<T>,
    user_id: &str,
    admin_may: bool,
) -> Result<Principal, Status> {
    let principal = auth::require(request, &[])?;
    if principal.user_id == user_id || (admin_may && principal.has(Role::Admin)) {
        Ok(principal)
    } else {
        Err(Status::permission_denied(
            "may only act on your own account",
        ))
    }
}

/// The account itself, signed in with a session (not an API key): for credential changes and
/// creating API keys, which a leaked script key must not be able to do.
pub fn require_self_session<T>(
    request: &tonic::Request<T>,
    user_id: &str,
) -> Result<Principal, Status> {
    let principal = require_self(request, user_id, false)?;
    if principal.api_key_id.is_some() {
        return Err(Status::permission_denied(
            "not allowed with an API key; sign in with your password",
        ));
    }
    Ok(principal)
}

/// An admin.
pub fn require_admin<T>(request: &tonic::Request<T>) -> Result<Principal, Status> {
    auth::require(request, &[Role::Admin])
}
