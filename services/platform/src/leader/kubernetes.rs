//! The lease protocol of client-go's `leaderelection`, on `coordination.k8s.io/v1` Leases.
//!
//! An attempt reads the lease (`GET`), creates it when absent (`POST`), and otherwise writes
//! the whole object back (`PUT`) with the `resourceVersion` it read: the API server rejects a
//! write based on a stale read with `409 Conflict`, so two candidates can never both win.
//! The holder renews from its cached copy (one `PUT`), and reads again only after a conflict.
//!
//! Expiry is judged on our own monotonic clock: a lease held by someone else is live until
//! `leaseDurationSeconds` have passed since we last saw it change (its `resourceVersion`), not
//! since its `renewTime`, which was written by another node's clock.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use std::time::Duration;
use tokio::time::Instant;

use super::{Attempt, Failure, Lock};

pub(super) struct LeaseLock {
    api: Api<Lease>,
    name: String,
    identity: String,
    lease_duration_seconds: i32,
    observed: Option<Observed>,
}

/// The lease as last read or written, and when we first saw this version of it.
struct Observed {
    lease: Lease,
    since: Instant,
}

impl LeaseLock {
    pub(super) fn new(
        client: kube::Client,
        name: &str,
        identity: &str,
        lease_duration: Duration,
    ) -> Self {
        Self {
            api: Api::default_namespaced(client),
            name: name.to_owned(),
            identity: identity.to_owned(),
            // LeaseTiming guarantees whole seconds ≥ 1; a day is far beyond any sane value.
            lease_duration_seconds: i32::try_from(lease_duration.as_secs()).unwrap_or(86_400),
            observed: None,
        }
    }

    fn observe(&mut self, lease: Lease, now: Instant) {
        let since = match &self.observed {
            Some(seen)
                if seen.lease.metadata.resource_version == lease.metadata.resource_version =>
            {
                seen.since
            }
            _ => now,
        };
        self.observed = Some(Observed { lease, since });
    }

    /// True when the last version we saw names us as the holder.
    fn holds(&self) -> bool {
        self.observed
            .as_ref()
            .and_then(|seen| holder(&seen.lease))
            .is_some_and(|holder| holder == self.identity)
    }

    /// The live holder other than us, if any.
    fn other_live_holder(&self, now: Instant) -> Option<String> {
        let seen = self.observed.as_ref()?;
        let holder = holder(&seen.lease).filter(|holder| *holder != self.identity)?;
        let spec = seen.lease.spec.as_ref()?;
        let seconds = spec
            .lease_duration_seconds
            .unwrap_or(self.lease_duration_seconds);
        let expires = seen.since + Duration::from_secs(u64::try_from(seconds).unwrap_or(0));
        (now < expires).then(|| holder.to_owned())
    }

    /// `lease` as we write it: renewed if we hold it, taken over otherwise.
    fn claimed(&self, mut lease: Lease, ours: bool) -> Lease {
        let now = MicroTime(Timestamp::now());
        let old = lease.spec.take().unwrap_or_default();
        lease.spec = Some(LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.lease_duration_seconds),
            renew_time: Some(now.clone()),
            acquire_time: if ours { old.acquire_time } else { Some(now) },
            lease_transitions: Some(match (ours, old.lease_transitions) {
                (true, transitions) => transitions.unwrap_or(0),
                (false, transitions) => transitions.unwrap_or(0).saturating_add(1),
            }),
            ..old
        });
        lease
    }

    fn fresh(&self) -> Lease {
        let now = MicroTime(Timestamp::now());
        Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.identity.clone()),
                lease_duration_seconds: Some(self.lease_duration_seconds),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        }
    }

    /// `PUT`s `lease`; a conflict means someone wrote since we read.
    async fn write(&mut self, lease: &Lease, now: Instant) -> Result<(), kube::Error> {
        let written = self
            .api
            .replace(&self.name, &PostParams::default(), lease)
            .await?;
        self.observe(written, now);
        Ok(())
    }

    async fn read(&mut self, now: Instant) -> Result<bool, kube::Error> {
        match self.api.get_opt(&self.name).await? {
            Some(lease) => {
                self.observe(lease, now);
                Ok(true)
            }
            None => {
                self.observed = None;
                Ok(false)
            }
        }
    }
}

fn holder(lease: &Lease) -> Option<&str> {
    lease
        .spec
        .as_ref()?
        .holder_identity
        .as_deref()
        .filter(|holder| !holder.is_empty())
}

fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.is_conflict() || status.is_already_exists())
}

impl Lock for LeaseLock {
    async fn try_acquire_or_renew(&mut self) -> Result<Attempt, Failure> {
        let now = Instant::now();
        if self.holds()
            && let Some(seen) = &self.observed
        {
            // The holder renews from its cached copy, as client-go does: one request per
            // renewal. A conflict means someone else wrote: read below and decide afresh.
            let renewed = self.claimed(seen.lease.clone(), true);
            match self.write(&renewed, now).await {
                Ok(()) => return Ok(Attempt::Leading),
                Err(error) if is_conflict(&error) => {}
                Err(error) => return Err(Failure::transient(error)),
            }
        }
        if !self.read(now).await.map_err(Failure::transient)? {
            let fresh = self.fresh();
            return match self.api.create(&PostParams::default(), &fresh).await {
                Ok(created) => {
                    self.observe(created, now);
                    Ok(Attempt::Leading)
                }
                // Another candidate created it first; the next attempt reads theirs.
                Err(error) => Err(Failure::transient(error)),
            };
        }
        if let Some(other) = self.other_live_holder(now) {
            return Ok(Attempt::HeldBy(Some(other)));
        }
        let ours = self.holds();
        let Some(seen) = &self.observed else {
            return Err(Failure::transient("the lease vanished while being read"));
        };
        let claimed = self.claimed(seen.lease.clone(), ours);
        // A conflict here is a lost race: the winner's write is what the next attempt reads.
        self.write(&claimed, now)
            .await
            .map_err(Failure::transient)?;
        Ok(Attempt::Leading)
    }

    async fn release(&mut self) -> Result<(), Failure> {
        // Two tries: our own last renewal may have landed after we stopped waiting for it,
        // leaving a newer resourceVersion than the one cached.
        for _ in 0..2 {
            if !self.holds() {
                return Ok(());
            }
            let Some(seen) = &self.observed else {
                return Ok(());
            };
            let now = MicroTime(Timestamp::now());
            let mut lease = seen.lease.clone();
            let old = lease.spec.take().unwrap_or_default();
            // As client-go releases: no holder, a one-second duration, the transition count
            // kept. Standbys see an empty holder and take over on their next attempt.
            lease.spec = Some(LeaseSpec {
                holder_identity: None,
                lease_duration_seconds: Some(1),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                ..old
            });
            match self.write(&lease, Instant::now()).await {
                Ok(()) => return Ok(()),
                Err(error) if is_conflict(&error) => {
                    self.read(Instant::now())
                        .await
                        .map_err(Failure::transient)?;
                }
                Err(error) => return Err(Failure::transient(error)),
            }
        }
        Err(Failure::transient(
            "the lease kept changing while being released",
        ))
    }

    fn abandon(&mut self) {
        // Nothing is held open; the cached lease still tells whether it stayed ours (an API
        // outage that healed before anyone took over), which the next attempt checks.
    }

    async fn close(&mut self) {}
}
