//! What the gRPC handlers share, built once at start.

use std::sync::Arc;

use sqlx::PgPool;
use uuid::Uuid;

use crate::config::AuthConfig;
use crate::error::{Error, Result};
use crate::keys::KeyRing;
use crate::password::Hasher;
use crate::store;
use crate::store::users::UserRow;
use crate::tokens::TokenIssuer;

pub struct Context {
    pub pool: PgPool,
    pub config: AuthConfig,
    pub hasher: Hasher,
    pub keys: Arc<KeyRing>,
    pub issuer: TokenIssuer,
}

impl Context {
    pub fn new(pool: PgPool, config: AuthConfig, keys: KeyRing) -> Result<Self, String> {
        let hasher =
            Hasher::new(config.argon2, config.max_concurrent_hashes).map_err(|e| e.to_string())?;
        Ok(Self {
            issuer: TokenIssuer {
                issuer: config.issuer.clone(),
                audience: config.audience.clone(),
                ttl: config.access_token_ttl,
            },
            pool,
            config,
            hasher,
            keys: Arc::new(keys),
        })
    }

    pub async fn load_user(&self, id: Uuid) -> Result<UserRow> {
        store::users::user_by_id(&self.pool, id)
            .await?
            .ok_or_else(|| Error::not_found("account"))
    }
}
