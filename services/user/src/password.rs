//! Argon2id password hashing on blocking threads, bounded by a semaphore.
//!
//! Hashes are PHC strings (`$argon2id$v=19$m=..,t=..,p=..$salt$hash`), so each carries the
//! parameters it was made with: verification always uses the stored ones, and
//! [`Hasher::needs_rehash`] tells when the configured ones have risen since.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::TryRngCore as _;
use tokio::sync::Semaphore;

use crate::config::Argon2Config;

/// Errors of hashing itself (never of a wrong password, which is `Ok(false)`).
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// The configured parameters are outside what Argon2 accepts (a configuration defect).
    #[error("argon2: {0}")]
    Argon2(String),
    /// The blocking task panicked or the runtime is shutting down.
    #[error("hashing task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    /// The semaphore was closed (shutdown).
    #[error("hasher closed")]
    Closed,
}

#[derive(Clone)]
pub struct Hasher {
    config: Argon2Config,
    permits: Arc<Semaphore>,
    /// A hash of a random password at the configured parameters: verifying against it when the
    /// email is unknown costs the same as a real verification (no account enumeration by
    /// timing).
    dummy: Arc<str>,
}

impl Hasher {
    pub fn new(config: Argon2Config, max_concurrent: usize) -> Result<Self, HashError> {
        let mut random = [0u8; 32];
        fill_random(&mut random);
        let dummy = hash_now(config, &random)?;
        Ok(Self {
            config,
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            dummy: dummy.into(),
        })
    }

    /// A new PHC hash of `password` at the configured parameters.
    pub async fn hash(&self, password: &str) -> Result<String, HashError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| HashError::Closed)?;
        let config = self.config;
        let password = password.as_bytes().to_vec();
        tokio::task::spawn_blocking(move || hash_now(config, &password)).await?
    }

    /// Whether `password` matches `phc`. With `phc` `None` (unknown account) the dummy hash is
    /// verified and the answer is `false`, at the same cost.
    pub async fn verify(&self, password: &str, phc: Option<&str>) -> Result<bool, HashError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| HashError::Closed)?;
        let known = phc.is_some();
        let phc = phc.map_or_else(|| self.dummy.to_string(), str::to_owned);
        let password = password.as_bytes().to_vec();
        let matched = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&phc)
                .map(|hash| Argon2::default().verify_password(&password, &hash).is_ok())
                .unwrap_or(false)
        })
        .await?;
        Ok(known && matched)
    }

    /// True when `phc` is weaker than the configured parameters (or not Argon2id v1.3).
    pub fn needs_rehash(&self, phc: &str) -> bool {
        let Ok(hash) = PasswordHash::new(phc) else {
            return true;
        };
        if hash.algorithm != Algorithm::Argon2id.ident() || hash.version != Some(0x13) {
            return true;
        }
        let Ok(params) = Params::try_from(&hash) else {
            return true;
        };
        params.m_cost() < self.config.memory_kib
            || params.t_cost() < self.config.iterations
            || params.p_cost() < self.config.parallelism
    }
}

/// One Argon2id hash with a fresh salt, on the calling thread: what [`Hasher::hash`] runs on a
/// blocking thread (benchmarks call it directly).
pub fn hash_now(config: Argon2Config, password: &[u8]) -> Result<String, HashError> {
    let params = Params::new(
        config.memory_kib,
        config.iterations,
        config.parallelism,
        None,
    )
    .map_err(|e| HashError::Argon2(e.to_string()))?;
    let mut salt = [0u8; 16];
    fill_random(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| HashError::Argon2(e.to_string()))?;
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(password, &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| HashError::Argon2(e.to_string()))
}

/// Fills `buf` from the operating system's CSPRNG.
pub fn fill_random(buf: &mut [u8]) {
    rand::rngs::OsRng
        .try_fill_bytes(buf)
        .expect("the operating system's random number generator failed");
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: Argon2Config = Argon2Config {
        memory_kib: 256,
        iterations: 1,
        parallelism: 1,
    };

    #[tokio::test]
    async fn hashes_verify_and_carry_their_parameters() {
        let hasher = Hasher::new(CHEAP, 2).unwrap();
        let phc = hasher.hash("correct horse battery").await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=256,t=1,p=1$"), "{phc}");
        assert!(
            hasher
                .verify("correct horse battery", Some(&phc))
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify("wrong horse battery", Some(&phc))
                .await
                .unwrap()
        );
        assert!(!hasher.verify("correct horse battery", None).await.unwrap());
        assert!(!hasher.needs_rehash(&phc));
        let stronger = Hasher::new(
            Argon2Config {
                memory_kib: 512,
                ..CHEAP
            },
            1,
        )
        .unwrap();
        assert!(stronger.needs_rehash(&phc));
        assert!(stronger.needs_rehash("$2b$12$notargon"));
    }
}
