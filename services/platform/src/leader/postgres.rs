//! Leases as PostgreSQL session-level advisory locks.
//!
//! Each candidate keeps one session of its own (outside the service's pool) and tries
//! `pg_try_advisory_lock` on it every retry period; the key is derived from the lease name by
//! sqlx's [`PgAdvisoryLock::new`] (a stable hash). The session that wins holds the lock until
//! it unlocks or ends, so the leader's "renewal" is a round trip proving its session is still
//! alive: if that fails the session is gone, the server has already freed the lock, and the
//! loss is certain.

use std::time::Duration;

use sqlx::postgres::{PgAdvisoryLock, PgAdvisoryLockGuard, PgConnectOptions, PgConnection};
use sqlx::{Connection as _, Either};

use super::{Attempt, Failure, Lock};

pub(super) struct AdvisoryLock {
    options: PgConnectOptions,
    lock: PgAdvisoryLock,
    state: State,
}

enum State {
    /// Not holding; the session of the last attempt, kept for the next one.
    Idle(Option<PgConnection>),
    /// Holding the lock on this session.
    Held(PgAdvisoryLockGuard<PgConnection>),
}

impl AdvisoryLock {
    pub(super) fn new(
        options: &PgConnectOptions,
        name: &str,
        identity: &str,
        lease_duration: Duration,
    ) -> Self {
        let idle_timeout = lease_duration.as_millis().to_string();
        Self {
            options: options
                .clone()
                // Shows who holds which lock in pg_stat_activity (joined with pg_locks).
                .application_name(&format!("mirai-leader {identity}"))
                // The server ends a session silent for a lease duration, freeing its lock: a
                // partitioned or frozen leader is replaced as a Kubernetes lease would be, while
                // a live one queries every retry period and never idles that long.
                .options([("idle_session_timeout", idle_timeout.as_str())]),
            lock: PgAdvisoryLock::new(format!("mirai-leader/{name}")),
            state: State::Idle(None),
        }
    }
}

impl Lock for AdvisoryLock {
    async fn try_acquire_or_renew(&mut self) -> Result<Attempt, Failure> {
        // Taken out first: if this attempt is dropped half-way, what it held is dropped with
        // it (closing a session frees its lock) and the next attempt starts from scratch.
        match std::mem::replace(&mut self.state, State::Idle(None)) {
            State::Held(mut guard) => match sqlx::query("SELECT 1").execute(guard.as_mut()).await {
                Ok(_) => {
                    self.state = State::Held(guard);
                    Ok(Attempt::Leading)
                }
                // The session is gone, and the lock with it: nothing to unlock.
                Err(error) => {
                    drop(guard.leak());
                    Err(Failure::fatal(error))
                }
            },
            State::Idle(session) => {
                let session = match session {
                    Some(session) => session,
                    None => PgConnection::connect_with(&self.options)
                        .await
                        .map_err(Failure::transient)?,
                };
                match self
                    .lock
                    .try_acquire(session)
                    .await
                    .map_err(Failure::transient)?
                {
                    Either::Left(guard) => {
                        self.state = State::Held(guard);
                        Ok(Attempt::Leading)
                    }
                    Either::Right(session) => {
                        self.state = State::Idle(Some(session));
                        Ok(Attempt::HeldBy(None))
                    }
                }
            }
        }
    }

    async fn release(&mut self) -> Result<(), Failure> {
        match std::mem::replace(&mut self.state, State::Idle(None)) {
            State::Held(guard) => {
                let session = guard.release_now().await.map_err(Failure::transient)?;
                self.state = State::Idle(Some(session));
                Ok(())
            }
            idle => {
                self.state = idle;
                Ok(())
            }
        }
    }

    fn abandon(&mut self) {
        if let State::Held(guard) = std::mem::replace(&mut self.state, State::Idle(None)) {
            // Dropping the session ends it on the server, which frees the lock if it still
            // held it.
            drop(guard.leak());
        }
    }

    async fn close(&mut self) {
        let session = match std::mem::replace(&mut self.state, State::Idle(None)) {
            State::Held(guard) => Some(guard.leak()),
            State::Idle(session) => session,
        };
        if let Some(session) = session {
            let _ = session.close().await;
        }
    }
}
