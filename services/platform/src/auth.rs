//! The caller of an RPC, and role checks every service makes on its RPCs.
//!
//! The gateway authenticates the end user (JWT or API key) and passes the principal on in gRPC
//! metadata: `x-mirai-user-id`, `x-mirai-roles` (comma-separated) and, for API keys,
//! `x-mirai-api-key-id`. The gateway strips these headers from incoming HTTP requests, and in
//! the mesh only the gateway may call the services (Istio `AuthorizationPolicy`), so services
//! can trust them; checking roles again here is defence in depth behind the gateway.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use tonic::metadata::{MetadataMap, MetadataValue};

pub const USER_ID_HEADER: &str = "x-mirai-user-id";
pub const ROLES_HEADER: &str = "x-mirai-roles";
pub const API_KEY_ID_HEADER: &str = "x-mirai-api-key-id";

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_id: String,
    pub roles: BTreeSet<Role>,
    /// Set when the caller used an API key (its roles are then the key's scopes).
    pub api_key_id: Option<String>,
}

impl Principal {
    /// The principal in `metadata`; `Ok(None)` when the call is anonymous.
    pub fn from_metadata(metadata: &MetadataMap) -> Result<Option<Self>, tonic::Status> {
        let text = |name: &str| -> Result<Option<String>, tonic::Status> {
            metadata
                .get(name)
                .map(|value| {
                    value
                        .to_str()
                        .map(str::to_owned)
                        .map_err(|_| tonic::Status::unauthenticated(format!("{name} is not ASCII")))
                })
                .transpose()
        };
        let Some(user_id) = text(USER_ID_HEADER)?.filter(|id| !id.is_empty()) else {
            return Ok(None);
        };
        let roles = text(ROLES_HEADER)?
            .unwrap_or_default()
            .split(',')
            .filter(|role| !role.trim().is_empty())
            .map(|role| role.parse().map_err(tonic::Status::unauthenticated))
            .collect::<Result<_, _>>()?;
        Ok(Some(Self {
            user_id,
            roles,
            api_key_id: text(API_KEY_ID_HEADER)?,
        }))
    }

    /// Writes the principal into outgoing metadata (the gateway's side).
    pub fn insert_into(&self, metadata: &mut MetadataMap) -> Result<(), tonic::Status> {
        let value = |text: &str| {
            MetadataValue::try_from(text)
                .map_err(|_| tonic::Status::invalid_argument("principal is not ASCII"))
        };
        metadata.insert(USER_ID_HEADER, value(&self.user_id)?);
        let roles: Vec<&str> = self.roles.iter().map(|r| r.as_str()).collect();
        metadata.insert(ROLES_HEADER, value(&roles.join(","))?);
        if let Some(key) = &self.api_key_id {
            metadata.insert(API_KEY_ID_HEADER, value(key)?);
        }
        Ok(())
    }

    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// The caller, who must hold at least one of `roles` (any role when `roles` is empty):
/// `UNAUTHENTICATED` for an anonymous call, `PERMISSION_DENIED` for a missing role.
pub fn require<T>(request: &tonic::Request<T>, roles: &[Role]) -> Result<Principal, tonic::Status> {
    let principal = Principal::from_metadata(request.metadata())?
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

    fn request(pairs: &[(&'static str, &str)]) -> tonic::Request<()> {
        let mut request = tonic::Request::new(());
        for (name, value) in pairs {
            request
                .metadata_mut()
                .insert(*name, MetadataValue::try_from(*value).unwrap());
        }
        request
    }

    #[test]
    fn roles_are_checked() {
        let admin = request(&[(USER_ID_HEADER, "u1"), (ROLES_HEADER, "user,admin")]);
        assert_eq!(require(&admin, &[Role::Admin]).unwrap().user_id, "u1");
        let user = request(&[(USER_ID_HEADER, "u2"), (ROLES_HEADER, "user")]);
        let denied = require(&user, &[Role::Admin]).unwrap_err();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        assert_eq!(denied.message(), "requires role admin");
        assert!(require(&user, &[]).is_ok());
        let anonymous = require(&request(&[]), &[]).unwrap_err();
        assert_eq!(anonymous.code(), tonic::Code::Unauthenticated);
        let forged = request(&[(USER_ID_HEADER, "u3"), (ROLES_HEADER, "root")]);
        assert_eq!(
            require(&forged, &[]).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
    }

    #[test]
    fn principals_round_trip_through_metadata() {
        let principal = Principal {
            user_id: "0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".into(),
            roles: [Role::User, Role::Premium].into(),
            api_key_id: Some("key-1".into()),
        };
        let mut metadata = MetadataMap::new();
        principal.insert_into(&mut metadata).unwrap();
        assert_eq!(
            metadata.get(ROLES_HEADER).unwrap().to_str().unwrap(),
            "user,premium"
        );
        assert_eq!(
            Principal::from_metadata(&metadata).unwrap(),
            Some(principal)
        );
    }
}
