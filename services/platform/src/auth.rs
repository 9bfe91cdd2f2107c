//! The caller of an RPC, and role checks every service makes on its RPCs.
//!
//! The gateway authenticates the end user (JWT or API key) and attaches the principal to the
//! outgoing call ([`Principal::attach`]); the client layer signs it into the call's internal
//! identity token ([`crate::grpc::identity`]), and the service's server layer verifies that
//! token and puts the [`Caller`] into the request's extensions. [`Principal::of`] and
//! [`require`] read only that verified caller: no header of the request is believed. Checking
//! roles here is defence in depth behind the gateway.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use crate::grpc::identity::Caller;

/// A role. `admin` does not imply the others: each check names the roles it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    User,
    Premium,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Premium => "premium",
            Self::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "user" => Ok(Self::User),
            "premium" => Ok(Self::Premium),
            "admin" => Ok(Self::Admin),
            other => Err(format!("unknown role `{other}`")),
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal {
    pub user_id: String,
    pub roles: BTreeSet<Role>,
    /// Set when the caller used an API key (its roles are then the key's scopes).
    pub api_key_id: Option<String>,
}

/// The end user an outgoing call acts for, in its request's extensions (see
/// [`Principal::attach`]); the client layer signs it into the call's token.
#[derive(Debug, Clone)]
pub(crate) struct OnBehalfOf(pub Principal);

impl Principal {
    /// The verified end user of an incoming call; `None` when the caller acts for nobody (an
    /// anonymous request through the gateway, or a service acting as itself).
    pub fn of<T>(request: &tonic::Request<T>) -> Option<Self> {
        request
            .extensions()
            .get::<Caller>()
            .and_then(|caller| caller.principal.clone())
    }

    /// Makes `request` (an outgoing call) act for this principal: the client layer signs it
    /// into the call's identity token. Only for a principal this process verified.
    pub fn attach<T>(&self, request: &mut tonic::Request<T>) {
        request.extensions_mut().insert(OnBehalfOf(self.clone()));
    }

    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// The caller, who must hold at least one of `roles` (any role when `roles` is empty):
/// `UNAUTHENTICATED` for an anonymous call, `PERMISSION_DENIED` for a missing role.
pub fn require<T>(request: &tonic::Request<T>, roles: &[Role]) -> Result<Principal, tonic::Status> {
    let principal = Principal::of(request)
        .ok_or_else(|| tonic::Status::unauthenticated("authentication required"))?;
    if roles.is_empty() || roles.iter().any(|role| principal.has(*role)) {
        Ok(principal)
    } else {
        let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        Err(tonic::Status::permission_denied(format!(
            "requires role {}",
            names.join(" or ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request whose verified caller acts for `principal`.
    fn request(principal: Option<Principal>) -> tonic::Request<()> {
        let mut request = tonic::Request::new(());
        request.extensions_mut().insert(Caller {
            service: "mirai-gateway".into(),
            principal,
            request_id: None,
        });
        request
    }

    fn user(id: &str, roles: &[Role]) -> Option<Principal> {
        Some(Principal {
            user_id: id.into(),
            roles: roles.iter().copied().collect(),
            api_key_id: None,
        })
    }

    #[test]
    fn roles_are_checked() {
        let admin = request(user("u1", &[Role::User, Role::Admin]));
        assert_eq!(require(&admin, &[Role::Admin]).unwrap().user_id, "u1");
        let user = request(user("u2", &[Role::User]));
        let denied = require(&user, &[Role::Admin]).unwrap_err();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        assert_eq!(denied.message(), "requires role admin");
        assert!(require(&user, &[]).is_ok());
        let anonymous = require(&request(None), &[]).unwrap_err();
        assert_eq!(anonymous.code(), tonic::Code::Unauthenticated);
    }

    #[test]
    fn headers_are_not_a_principal() {
        // The old unsigned headers: a request carrying them and no verified caller is
        // anonymous.
        let mut forged = tonic::Request::new(());
        forged
            .metadata_mut()
            .insert("x-mirai-user-id", "u3".parse().unwrap());
        forged
            .metadata_mut()
            .insert("x-mirai-roles", "admin".parse().unwrap());
        assert_eq!(Principal::of(&forged), None);
        assert_eq!(
            require(&forged, &[Role::Admin]).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
    }
}
