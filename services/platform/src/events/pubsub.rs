//! Building Pub/Sub clients.
//!
//! The official `google-cloud-pubsub` crate does not read `PUBSUB_EMULATOR_HOST`; this module
//! does, once: with it set, every client talks to `http://<host>` with anonymous credentials;
//! without it, clients use the default endpoint and Application Default Credentials (Workload
//! Identity on GKE).

use google_cloud_pubsub::client::{BasePublisher, Subscriber, SubscriptionAdmin, TopicAdmin};

use crate::config::{ConfigError, Env};

/// Where Pub/Sub is and which project and name prefix to use.
#[derive(Debug, Clone)]
pub struct PubSubConfig {
    /// `GOOGLE_CLOUD_PROJECT`.
    pub project: String,
    /// `PUBSUB_EMULATOR_HOST` (`host:port`); `None` means Google Cloud.
    pub emulator_host: Option<String>,
    /// `MIRAI_PUBSUB_PREFIX`: prepended to every topic and subscription name (tests use a
    /// unique one so they run in parallel on one emulator). Default empty.
    pub prefix: String,
    /// `MIRAI_PUBSUB_PROVISION`: create the topics and this service's subscriptions at start
    /// (idempotent). Default: on with the emulator, off on Google Cloud, where the chart's
    /// provisioning job or Config Connector owns them.
    pub provision: bool,
}

impl PubSubConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let emulator_host: Option<String> = env.optional("PUBSUB_EMULATOR_HOST")?;
        Ok(Self {
            project: env.required("GOOGLE_CLOUD_PROJECT")?,
            provision: env.or("MIRAI_PUBSUB_PROVISION", emulator_host.is_some())?,
            emulator_host,
            prefix: env.or("MIRAI_PUBSUB_PREFIX", String::new())?,
        })
    }

    /// The emulator of the test run (`PUBSUB_EMULATOR_HOST`, as `scripts/test` exports it) with
    /// a fresh name prefix, so every test has its own topics and subscriptions.
    pub fn for_tests() -> Self {
        let env = Env::from_process();
        let id = uuid::Uuid::now_v7().simple().to_string();
        Self {
            project: env
                .get("GOOGLE_CLOUD_PROJECT")
                .unwrap_or("mirai-test")
                .to_owned(),
            emulator_host: Some(
                env.get("PUBSUB_EMULATOR_HOST")
                    .expect("PUBSUB_EMULATOR_HOST must be set for tests (scripts/test does it)")
                    .to_owned(),
            ),
            // The random tail of a UUIDv7 (its head is the timestamp).
            prefix: format!("t{}-", &id[20..]),
            provision: true,
        }
    }

    /// `projects/<project>/topics/<prefix><name>`.
    pub fn topic_path(&self, name: &str) -> String {
        format!("projects/{}/topics/{}{}", self.project, self.prefix, name)
    }

    /// `projects/<project>/subscriptions/<prefix><name>`.
    pub fn subscription_path(&self, name: &str) -> String {
        format!(
            "projects/{}/subscriptions/{}{}",
            self.project, self.prefix, name
        )
    }

    fn endpoint(&self) -> Option<String> {
        self.emulator_host
            .as_ref()
            .map(|host| format!("http://{host}"))
    }
}

/// A Pub/Sub client could not be built (credentials, endpoint).
#[derive(Debug, thiserror::Error)]
#[error("Pub/Sub client: {0}")]
pub struct ClientError(String);

macro_rules! configure {
    ($builder:expr, $config:expr) => {{
        let builder = $builder;
        match $config.endpoint() {
            Some(endpoint) => builder.with_endpoint(endpoint).with_credentials(
                google_cloud_auth::credentials::anonymous::Builder::new().build(),
            ),
            None => builder,
        }
    }};
}

/// Builds a publisher connection (one per process; cheap per-topic publishers come from it).
pub async fn publisher(config: &PubSubConfig) -> Result<BasePublisher, ClientError> {
    configure!(BasePublisher::builder(), config)
        .build()
        .await
        .map_err(|e| ClientError(e.to_string()))
}

/// Builds a subscriber (streaming pull).
pub async fn subscriber(config: &PubSubConfig) -> Result<Subscriber, ClientError> {
    configure!(Subscriber::builder(), config)
        .build()
        .await
        .map_err(|e| ClientError(e.to_string()))
}

/// Builds the topic admin client (REST).
pub async fn topic_admin(config: &PubSubConfig) -> Result<TopicAdmin, ClientError> {
    configure!(TopicAdmin::builder(), config)
        .build()
        .await
        .map_err(|e| ClientError(e.to_string()))
}

/// Builds the subscription admin client (REST).
pub async fn subscription_admin(config: &PubSubConfig) -> Result<SubscriptionAdmin, ClientError> {
    configure!(SubscriptionAdmin::builder(), config)
        .build()
        .await
        .map_err(|e| ClientError(e.to_string()))
}
