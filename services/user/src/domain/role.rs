//! Roles: their stored names and wire values.

use mirai_proto::user::v1 as pb;

use crate::error::{Error, Result};

/// The stored name of a role; `None` for `ROLE_UNSPECIFIED`.
pub fn role_name(role: pb::Role) -> Option<&'static str> {
    match role {
        pb::Role::Unspecified => None,
        pb::Role::User => Some("user"),
        pb::Role::Premium => Some("premium"),
        pb::Role::Admin => Some("admin"),
    }
}

pub fn role_of(name: &str) -> pb::Role {
    match name {
        "user" => pb::Role::User,
        "premium" => pb::Role::Premium,
        "admin" => pb::Role::Admin,
        _ => pb::Role::Unspecified,
    }
}

/// A role from its wire value; INVALID_ARGUMENT naming `field` when unknown or unspecified.
pub fn parse_role(value: i32, field: &str) -> Result<&'static str> {
    pb::Role::try_from(value)
        .ok()
        .and_then(role_name)
        .ok_or_else(|| {
            Error::invalid(
                field.to_owned(),
                "must be ROLE_USER, ROLE_PREMIUM or ROLE_ADMIN",
            )
        })
}

/// Roles in their wire form, in a stable order.
pub fn role_values(roles: &[String]) -> Vec<i32> {
    let mut values: Vec<i32> = roles.iter().map(|r| role_of(r) as i32).collect();
    values.sort_unstable();
    values.dedup();
    values
}
