//! How this process takes part in elections: [`LeaderElection`] (identity, timing, backend)
//! read from `MIRAI_LEADER_*`, [`LeaseTiming`] and [`LeaseName`].

use std::path::Path;
use std::time::Duration;

use crate::config::{ConfigError, Env};

use super::SERVICE_ACCOUNT_DIR;

/// How this process takes part in leader elections: who it is, how fast it renews, and where
/// the leases live. Read once at startup; tests build it directly.
#[derive(Debug, Clone)]
pub struct LeaderElection {
    /// This candidate's name in the lease (`holderIdentity`) and in logs: `POD_NAME` in a
    /// cluster, `<service>-<random>` locally. Must differ between replicas.
    pub identity: String,
    pub timing: LeaseTiming,
    pub backend: Backend,
}

/// Where the leases live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// `coordination.k8s.io/v1` Leases in `namespace` (the pod's own).
    #[cfg(feature = "leader-kube")]
    Kubernetes { namespace: String },
    /// Session-level advisory locks in the service's database.
    Postgres,
    /// No election: the work runs on every replica, from start to shutdown.
    None,
}

const BACKEND_VAR: &str = "MIRAI_LEADER_BACKEND";

/// `MIRAI_LEADER_BACKEND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BackendChoice {
    Auto,
    Kubernetes,
    Postgres,
    None,
}

impl std::str::FromStr for BackendChoice {
    type Err = &'static str;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "kubernetes" => Ok(Self::Kubernetes),
            "postgres" => Ok(Self::Postgres),
            "none" => Ok(Self::None),
            _ => Err("must be one of auto, kubernetes, postgres, none"),
        }
    }
}

impl LeaderElection {
    /// No election (backend `none`): the work always runs. What tests and single-replica
    /// setups use.
    pub fn disabled(service_name: &str) -> Self {
        Self {
            identity: local_identity(service_name),
            timing: LeaseTiming::default(),
            backend: Backend::None,
        }
    }

    /// Reads `MIRAI_LEADER_*` and decides the backend (see the module docs); `service_name`
    /// names the local identity.
    pub fn from_env(env: &Env, service_name: &str) -> Result<Self, ConfigError> {
        Self::from_env_in(env, service_name, Path::new(SERVICE_ACCOUNT_DIR))
    }

    /// [`LeaderElection::from_env`] with the service-account directory given (tests).
    pub fn from_env_in(
        env: &Env,
        service_name: &str,
        service_account_dir: &Path,
    ) -> Result<Self, ConfigError> {
        let timing = LeaseTiming::from_env(env)?;
        let choice = env.or(BACKEND_VAR, BackendChoice::Auto)?;
        let pod: Option<String> = env.optional("POD_NAME")?;
        let backend = match choice {
            BackendChoice::Postgres => Backend::Postgres,
            BackendChoice::None => Backend::None,
            BackendChoice::Auto | BackendChoice::Kubernetes => {
                kubernetes_backend(env, service_account_dir, choice, pod.is_some())?
            }
        };
        let identity = pod.unwrap_or_else(|| local_identity(service_name));
        Ok(Self {
            identity,
            timing,
            backend,
        })
    }
}

/// `auto` or `kubernetes`: a Lease in the pod's namespace when the pod runs in a cluster with a
/// service-account token (for `auto`, also `POD_NAME`), else PostgreSQL for `auto` and an error
/// for `kubernetes`.
#[cfg(feature = "leader-kube")]
fn kubernetes_backend(
    env: &Env,
    service_account_dir: &Path,
    choice: BackendChoice,
    has_pod_name: bool,
) -> Result<Backend, ConfigError> {
    let in_cluster =
        env.get("KUBERNETES_SERVICE_HOST").is_some() && service_account_dir.join("token").is_file();
    // The pod's namespace: the chart's POD_NAMESPACE, else the service-account volume's.
    let namespace = match env.optional::<String>("POD_NAMESPACE")? {
        Some(namespace) => Some(namespace),
        None => std::fs::read_to_string(service_account_dir.join("namespace"))
            .ok()
            .map(|namespace| namespace.trim().to_owned())
            .filter(|namespace| !namespace.is_empty()),
    };
    match (choice, in_cluster, namespace) {
        (BackendChoice::Kubernetes, true, Some(namespace)) => Ok(Backend::Kubernetes { namespace }),
        (BackendChoice::Kubernetes, ..) => Err(ConfigError::Invalid {
            name: BACKEND_VAR.to_owned(),
            reason: "`kubernetes` needs an in-cluster pod: KUBERNETES_SERVICE_HOST, a \
                     service-account token and POD_NAMESPACE (or the token's namespace file)"
                .to_owned(),
        }),
        (_, true, Some(namespace)) if has_pod_name => Ok(Backend::Kubernetes { namespace }),
        _ => Ok(Backend::Postgres),
    }
}

/// Without the feature: `auto` is PostgreSQL, `kubernetes` an error.
#[cfg(not(feature = "leader-kube"))]
fn kubernetes_backend(
    _env: &Env,
    _service_account_dir: &Path,
    choice: BackendChoice,
    _has_pod_name: bool,
) -> Result<Backend, ConfigError> {
    match choice {
        BackendChoice::Kubernetes => Err(ConfigError::Invalid {
            name: BACKEND_VAR.to_owned(),
            reason: "this build has no Kubernetes backend (feature `leader-kube`)".to_owned(),
        }),
        _ => Ok(Backend::Postgres),
    }
}

/// `<service>-<random>`: distinct for every process on one machine.
fn local_identity(service_name: &str) -> String {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{service_name}-{}", &suffix[..8])
}

/// The three durations of an election (see the module docs for how they relate). Built only
/// through [`LeaseTiming::new`], so an existing value is always consistent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTiming {
    lease_duration: Duration,
    renew_deadline: Duration,
    retry_period: Duration,
}

/// An inconsistent [`LeaseTiming`]; each variant names the duration at fault.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum TimingError {
    /// `leaseDurationSeconds` is an integer number of seconds, at least 1.
    #[error("must be a whole number of seconds, at least 1s (Lease.spec.leaseDurationSeconds)")]
    LeaseNotWholeSeconds,
    /// The gap to the renew deadline is the time the work has to stop.
    #[error("must be longer than the renew deadline ({0:?})")]
    LeaseNotAboveDeadline(Duration),
    /// The leader must get more than one attempt before it gives up.
    #[error("must be longer than the retry period ({0:?})")]
    DeadlineNotAboveRetry(Duration),
    /// Attempts in a tight loop would hammer the API server or the database.
    #[error("must be at least 10ms")]
    RetryTooShort,
}

impl Default for LeaseTiming {
    /// client-go's defaults: 15 s, 10 s, 2 s.
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

impl LeaseTiming {
    pub fn new(
        lease_duration: Duration,
        renew_deadline: Duration,
        retry_period: Duration,
    ) -> Result<Self, TimingError> {
        if lease_duration.subsec_nanos() != 0 || lease_duration < Duration::from_secs(1) {
            return Err(TimingError::LeaseNotWholeSeconds);
        }
        if retry_period < Duration::from_millis(10) {
            return Err(TimingError::RetryTooShort);
        }
        if renew_deadline <= retry_period {
            return Err(TimingError::DeadlineNotAboveRetry(retry_period));
        }
        if lease_duration <= renew_deadline {
            return Err(TimingError::LeaseNotAboveDeadline(renew_deadline));
        }
        Ok(Self {
            lease_duration,
            renew_deadline,
            retry_period,
        })
    }

    fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let default = Self::default();
        let lease = env.duration_or("MIRAI_LEADER_LEASE_DURATION", default.lease_duration)?;
        let deadline = env.duration_or("MIRAI_LEADER_RENEW_DEADLINE", default.renew_deadline)?;
        let retry = env.duration_or("MIRAI_LEADER_RETRY_PERIOD", default.retry_period)?;
        Self::new(lease, deadline, retry).map_err(|error| {
            let name = match error {
                TimingError::LeaseNotWholeSeconds | TimingError::LeaseNotAboveDeadline(_) => {
                    "MIRAI_LEADER_LEASE_DURATION"
                }
                TimingError::DeadlineNotAboveRetry(_) => "MIRAI_LEADER_RENEW_DEADLINE",
                TimingError::RetryTooShort => "MIRAI_LEADER_RETRY_PERIOD",
            };
            ConfigError::Invalid {
                name: name.to_owned(),
                reason: error.to_string(),
            }
        })
    }

    /// How long a standby waits for a silent holder.
    pub fn lease_duration(&self) -> Duration {
        self.lease_duration
    }

    /// How long the leader retries renewals before it stops the work.
    pub fn renew_deadline(&self) -> Duration {
        self.renew_deadline
    }

    /// The interval between attempts.
    pub fn retry_period(&self) -> Duration {
        self.retry_period
    }

    /// How long stopped work may take before it is aborted: a standby cannot take over before.
    pub fn stop_budget(&self) -> Duration {
        self.lease_duration - self.renew_deadline
    }
}

/// The name of one lease: a lowercase RFC 1123 subdomain (a Kubernetes object name), e.g.
/// `mirai-stock-data-feeds`. Also the `name` label of `mirai_leader` and, for PostgreSQL, the
/// source of the advisory-lock key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeaseName(String);

/// A lease name Kubernetes would reject.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("invalid lease name `{name}`: {reason}")]
pub struct InvalidLeaseName {
    pub name: String,
    pub reason: &'static str,
}

impl LeaseName {
    pub fn parse(name: impl Into<String>) -> Result<Self, InvalidLeaseName> {
        let name = name.into();
        let reason = if name.is_empty() || name.len() > 253 {
            Some("must be 1 to 253 characters")
        } else if !name.split('.').all(|label| {
            let bytes = label.as_bytes();
            !bytes.is_empty()
                && bytes.len() <= 63
                && bytes[0].is_ascii_alphanumeric()
                && bytes[bytes.len() - 1].is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        }) {
            Some(
                "must be lowercase letters, digits and `-`, in dot-separated labels that start \
                 and end with a letter or digit",
            )
        } else {
            None
        };
        match reason {
            Some(reason) => Err(InvalidLeaseName { name, reason }),
            None => Ok(Self(name)),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for LeaseName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn defaults_are_client_go_s_and_consistent() {
        let config =
            LeaderElection::from_env_in(&env(&[]), "mirai-test", Path::new("/nowhere")).unwrap();
        assert_eq!(config.backend, Backend::Postgres);
        assert_eq!(config.timing, LeaseTiming::default());
        assert_eq!(config.timing.stop_budget(), Duration::from_secs(5));
        assert!(
            config.identity.starts_with("mirai-test-"),
            "{}",
            config.identity
        );
        let other =
            LeaderElection::from_env_in(&env(&[]), "mirai-test", Path::new("/nowhere")).unwrap();
        assert_ne!(
            config.identity, other.identity,
            "local identities must differ"
        );
    }

    #[test]
    fn inconsistent_durations_name_the_variable() {
        let cases = [
            (
                [("MIRAI_LEADER_LEASE_DURATION", "10s")],
                "MIRAI_LEADER_LEASE_DURATION is invalid: must be longer than the renew deadline",
            ),
            (
                [("MIRAI_LEADER_LEASE_DURATION", "15500ms")],
                "MIRAI_LEADER_LEASE_DURATION is invalid: must be a whole number of seconds",
            ),
            (
                [("MIRAI_LEADER_RENEW_DEADLINE", "2s")],
                "MIRAI_LEADER_RENEW_DEADLINE is invalid: must be longer than the retry period",
            ),
            (
                [("MIRAI_LEADER_RETRY_PERIOD", "1ms")],
                "MIRAI_LEADER_RETRY_PERIOD is invalid: must be at least 10ms",
            ),
            (
                [("MIRAI_LEADER_RETRY_PERIOD", "often")],
                "MIRAI_LEADER_RETRY_PERIOD is invalid",
            ),
        ];
        for (pairs, expected) in cases {
            let error = LeaderElection::from_env_in(&env(&pairs), "s", Path::new("/nowhere"))
                .unwrap_err()
                .to_string();
            assert!(error.starts_with(expected), "{error}");
        }
    }

    #[test]
    fn kubernetes_is_chosen_only_with_pod_env_and_a_token() {
        let dir = tempfile::tempdir().unwrap();
        let pod = [
            ("POD_NAME", "mirai-stock-data-7d9f-abcde"),
            ("POD_NAMESPACE", "mirai"),
            ("KUBERNETES_SERVICE_HOST", "10.0.0.1"),
        ];
        // No token mounted (the chart mounts one only with leaderElection.enabled).
        let config = LeaderElection::from_env_in(&env(&pod), "s", dir.path()).unwrap();
        assert_eq!(config.backend, Backend::Postgres);
        assert_eq!(config.identity, "mirai-stock-data-7d9f-abcde");

        std::fs::write(dir.path().join("token"), "t").unwrap();
        let config = LeaderElection::from_env_in(&env(&pod), "s", dir.path()).unwrap();
        #[cfg(feature = "leader-kube")]
        assert_eq!(
            config.backend,
            Backend::Kubernetes {
                namespace: "mirai".into()
            }
        );
        #[cfg(not(feature = "leader-kube"))]
        assert_eq!(config.backend, Backend::Postgres);

        // Outside a cluster (no API server address) the token alone does not count.
        let config = LeaderElection::from_env_in(&env(&pod[..2]), "s", dir.path()).unwrap();
        assert_eq!(config.backend, Backend::Postgres);
    }

    #[test]
    fn the_backend_can_be_forced() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "t").unwrap();
        std::fs::write(dir.path().join("namespace"), "mirai-ns\n").unwrap();
        let in_cluster = [
            ("POD_NAME", "mirai-stock-data-7d9f-abcde"),
            ("KUBERNETES_SERVICE_HOST", "10.0.0.1"),
        ];
        let choose = |backend: &str, pairs: &[(&str, &str)]| {
            let mut pairs = pairs.to_vec();
            pairs.push(("MIRAI_LEADER_BACKEND", backend));
            LeaderElection::from_env_in(&env(&pairs), "s", dir.path())
        };
        assert_eq!(choose("none", &in_cluster).unwrap().backend, Backend::None);
        assert_eq!(
            choose("postgres", &in_cluster).unwrap().backend,
            Backend::Postgres
        );
        let error = choose("etcd", &[]).unwrap_err().to_string();
        assert!(
            error.starts_with("MIRAI_LEADER_BACKEND is invalid: must be one of"),
            "{error}"
        );
        // Forced Kubernetes outside a cluster is an error, not a silent fallback.
        let error = choose("kubernetes", &in_cluster[..1])
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("MIRAI_LEADER_BACKEND is invalid"),
            "{error}"
        );
        // In a cluster the namespace comes from the service-account volume when POD_NAMESPACE
        // is not set.
        let forced = choose("kubernetes", &in_cluster);
        #[cfg(feature = "leader-kube")]
        assert_eq!(
            forced.unwrap().backend,
            Backend::Kubernetes {
                namespace: "mirai-ns".into()
            }
        );
        #[cfg(not(feature = "leader-kube"))]
        assert!(forced.unwrap_err().to_string().contains("leader-kube"));
    }

    #[test]
    fn lease_names_are_kubernetes_object_names() {
        for good in ["mirai-stock-data-feeds", "a", "feeds.stock-data", "x1"] {
            assert_eq!(LeaseName::parse(good).unwrap().as_str(), good);
        }
        for bad in [
            "",
            "Feeds",
            "-feeds",
            "feeds-",
            "a..b",
            "feeds_live",
            "feeds live",
            &"a".repeat(254),
            &format!("{}.b", "a".repeat(64)),
        ] {
            assert!(LeaseName::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn timing_rejects_each_inconsistency() {
        let s = Duration::from_secs;
        assert!(LeaseTiming::new(s(15), s(10), s(2)).is_ok());
        assert_eq!(
            LeaseTiming::new(s(10), s(10), s(2)),
            Err(TimingError::LeaseNotAboveDeadline(s(10)))
        );
        assert_eq!(
            LeaseTiming::new(s(15), s(2), s(2)),
            Err(TimingError::DeadlineNotAboveRetry(s(2)))
        );
        assert_eq!(
            LeaseTiming::new(Duration::ZERO, s(0), s(0)),
            Err(TimingError::LeaseNotWholeSeconds)
        );
    }
}
