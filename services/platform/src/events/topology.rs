//! Every topic and subscription of the platform, in one table, and their provisioning.
//!
//! Each publishing service has one topic; each consuming service has one subscription per topic
//! it reads, with message ordering, an ack deadline, a retry policy and a dead-letter topic
//! that has its own subscription (so dead letters are kept and can be inspected or replayed).

use std::time::Duration;

use google_cloud_pubsub::model::{DeadLetterPolicy, RetryPolicy, Subscription};

use super::pubsub::{self, ClientError, PubSubConfig};

/// Topics, by publisher.
pub mod topics {
    pub const USER: &str = "user-events";
    pub const STOCK: &str = "stock-events";
    pub const PREDICTION: &str = "prediction-events";
    pub const ANALYTICS: &str = "analytics-events";
    pub const NOTIFICATION: &str = "notification-events";
    /// The public topic: JSON CloudEvents for other systems.
    pub const PRICE_ALERTS: &str = "price-alerts";

    pub const ALL: &[&str] = &[
        USER,
        STOCK,
        PREDICTION,
        ANALYTICS,
        NOTIFICATION,
        PRICE_ALERTS,
    ];
}

/// A consuming service's subscription to a topic.
#[derive(Debug, Clone, Copy)]
pub struct SubscriptionSpec {
    /// `<consumer>.<topic>`.
    pub name: &'static str,
    pub topic: &'static str,
}

/// Every subscription of the platform.
pub const SUBSCRIPTIONS: &[SubscriptionSpec] = &[
    SubscriptionSpec {
        name: "notification.stock-events",
        topic: topics::STOCK,
    },
    SubscriptionSpec {
        name: "analytics.stock-events",
        topic: topics::STOCK,
    },
    SubscriptionSpec {
        name: "prediction.stock-events",
        topic: topics::STOCK,
    },
    SubscriptionSpec {
        name: "stock-data.notification-events",
        topic: topics::NOTIFICATION,
    },
    SubscriptionSpec {
        name: "notification.prediction-events",
        topic: topics::PREDICTION,
    },
    SubscriptionSpec {
        name: "analytics.prediction-events",
        topic: topics::PREDICTION,
    },
    SubscriptionSpec {
        name: "notification.user-events",
        topic: topics::USER,
    },
    SubscriptionSpec {
        name: "stock-data.user-events",
        topic: topics::USER,
    },
    SubscriptionSpec {
        name: "prediction.user-events",
        topic: topics::USER,
    },
    SubscriptionSpec {
        name: "analytics.user-events",
        topic: topics::USER,
    },
    SubscriptionSpec {
        name: "user.notification-events",
        topic: topics::NOTIFICATION,
    },
    SubscriptionSpec {
        name: "user.stock-events",
        topic: topics::STOCK,
    },
    SubscriptionSpec {
        name: "user.prediction-events",
        topic: topics::PREDICTION,
    },
    SubscriptionSpec {
        name: "user.analytics-events",
        topic: topics::ANALYTICS,
    },
    SubscriptionSpec {
        name: "notification.analytics-events",
        topic: topics::ANALYTICS,
    },
];

/// Delivery settings shared by every subscription.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryPolicy {
    /// Time a consumer has to ack before redelivery (lease extension keeps long handlers alive).
    pub ack_deadline: Duration,
    /// Redelivery backoff after a nack or an expired deadline.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// Deliveries before Pub/Sub itself moves a message to the dead-letter topic (5..=100): a
    /// backstop above the consumer's own limit (`ConsumerSettings::max_attempts`), for
    /// messages a consumer cannot even count (e.g. it crashes on them).
    pub max_delivery_attempts: i32,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        Self {
            ack_deadline: Duration::from_secs(30),
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            max_delivery_attempts: 10,
        }
    }
}

/// The subscriptions a consumer reads (those named `<consumer>.<topic>`), e.g. `"notification"`.
pub fn subscriptions_of(consumer: &str) -> Vec<SubscriptionSpec> {
    SUBSCRIPTIONS
        .iter()
        .filter(|spec| spec.name.split_once('.').map(|(c, _)| c) == Some(consumer))
        .copied()
        .collect()
}

/// The dead-letter topic of a subscription, and the name of the subscription that keeps it.
pub fn dead_letter_name(subscription: &str) -> String {
    format!("{subscription}.dlq")
}

/// Why provisioning failed.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The admin API refused a create for another reason than "already exists".
    #[error("creating {name}: {error}")]
    Create { name: String, error: String },
}

fn already_exists(error: &google_cloud_pubsub::Error) -> bool {
    error
        .status()
        .is_some_and(|s| s.code == google_cloud_gax::error::rpc::Code::AlreadyExists)
        || error.http_status_code() == Some(409)
}

fn duration(d: Duration) -> google_cloud_wkt::Duration {
    google_cloud_wkt::Duration::try_from(d).unwrap_or_default()
}

/// Creates every topic, every subscription (ordered, with retry and dead-letter policies) and
/// each dead-letter topic with its own subscription. Existing ones are left as they are, so it
/// is safe to run on every start.
pub async fn provision(
    config: &PubSubConfig,
    subscriptions: &[SubscriptionSpec],
    policy: DeliveryPolicy,
) -> Result<(), ProvisionError> {
    let topic_admin = pubsub::topic_admin(config).await?;
    let subscription_admin = pubsub::subscription_admin(config).await?;

    let create_topic = |name: String| {
        let topic_admin = topic_admin.clone();
        async move {
            match topic_admin
                .create_topic()
                .set_name(name.clone())
                .send()
                .await
            {
                Ok(_) => Ok(()),
                Err(error) if already_exists(&error) => Ok(()),
                Err(error) => Err(ProvisionError::Create {
                    name,
                    error: error.to_string(),
                }),
            }
        }
    };
    let create_subscription = |subscription: Subscription| {
        let subscription_admin = subscription_admin.clone();
        async move {
            let name = subscription.name.clone();
            match subscription_admin
                .create_subscription()
                .with_request(subscription)
                .send()
                .await
            {
                Ok(_) => Ok(()),
                Err(error) if already_exists(&error) => Ok(()),
                Err(error) => Err(ProvisionError::Create {
                    name,
                    error: error.to_string(),
                }),
            }
        }
    };

    for topic in topics::ALL {
        create_topic(config.topic_path(topic)).await?;
    }
    for spec in subscriptions {
        let dead_letter = dead_letter_name(spec.name);
        create_topic(config.topic_path(&dead_letter)).await?;
        create_subscription(
            Subscription::new()
                .set_name(config.subscription_path(&dead_letter))
                .set_topic(config.topic_path(&dead_letter))
                .set_ack_deadline_seconds(60),
        )
        .await?;
        create_subscription(
            Subscription::new()
                .set_name(config.subscription_path(spec.name))
                .set_topic(config.topic_path(spec.topic))
                .set_ack_deadline_seconds(policy.ack_deadline.as_secs() as i32)
                .set_enable_message_ordering(true)
                .set_retry_policy(
                    RetryPolicy::new()
                        .set_minimum_backoff(duration(policy.min_backoff))
                        .set_maximum_backoff(duration(policy.max_backoff)),
                )
                .set_dead_letter_policy(
                    DeadLetterPolicy::new()
                        .set_dead_letter_topic(config.topic_path(&dead_letter))
                        .set_max_delivery_attempts(policy.max_delivery_attempts),
                ),
        )
        .await?;
    }
    Ok(())
}
