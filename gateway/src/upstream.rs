//! gRPC clients of the services behind the gateway.

use std::time::Duration;

use std::sync::Arc;

use mirai_platform::grpc::client::{Client, UpstreamChannel};
use mirai_platform::grpc::identity::Signer;
use mirai_platform::telemetry::Metrics;
use mirai_proto::analytics::v1::analytics_service_client::AnalyticsServiceClient;
use mirai_proto::notification::v1::notification_service_client::NotificationServiceClient;
use mirai_proto::prediction::v1::prediction_service_client::PredictionServiceClient;
use mirai_proto::stock::v1::stock_data_service_client::StockDataServiceClient;
use mirai_proto::user::v1::user_service_client::UserServiceClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::config;

/// One upstream service: its name, the channel every typed client is built on (trace context,
/// deadlines, bulkhead, retries, balancing, circuit breakers), and its endpoints' health.
#[derive(Clone)]
pub struct Upstream {
    pub name: &'static str,
    pub channel: UpstreamChannel,
    pub client: Client,
}

impl Upstream {
    /// The upstream's overall gRPC health status.
    pub async fn health(&self) -> Result<ServingStatus, tonic::Status> {
        let response = HealthClient::new(self.channel.clone())
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await?;
        Ok(ServingStatus::try_from(response.into_inner().status).unwrap_or(ServingStatus::Unknown))
    }
}

/// Every upstream service, in the order of ARCHITECTURE.md.
#[derive(Clone)]
pub struct Upstreams {
    pub user: Upstream,
    pub stock_data: Upstream,
    pub prediction: Upstream,
    pub analytics: Upstream,
    pub notification: Upstream,
}

impl Upstreams {
    /// Lazily connecting clients: the gateway starts before its upstreams if it must; a route
    /// whose upstream is missing answers 503 until it is there. Every call carries an internal
    /// identity token signed by `signer`, acting for the principal the handler attached
    /// ([`crate::middleware::auth::forward`]) and carrying the request id.
    pub fn connect(config: &config::Upstreams, metrics: &Metrics, signer: &Arc<Signer>) -> Self {
        let make = |name, config| {
            let client = Client::build(name, config, metrics, signer);
            Upstream {
                name,
                channel: client.channel(),
                client,
            }
        };
        Self {
            user: make("user", &config.user),
            stock_data: make("stock-data", &config.stock_data),
            prediction: make("prediction", &config.prediction),
            analytics: make("analytics", &config.analytics),
            notification: make("notification", &config.notification),
        }
    }

    /// The user service's typed client.
    pub fn user(&self) -> UserServiceClient<UpstreamChannel> {
        UserServiceClient::new(self.user.channel.clone())
    }

    /// The stock-data service's typed client.
    pub fn stock_data(&self) -> StockDataServiceClient<UpstreamChannel> {
        StockDataServiceClient::new(self.stock_data.channel.clone())
    }

    /// The prediction service's typed client.
    pub fn prediction(&self) -> PredictionServiceClient<UpstreamChannel> {
        PredictionServiceClient::new(self.prediction.channel.clone())
    }

    /// The analytics service's typed client.
    pub fn analytics(&self) -> AnalyticsServiceClient<UpstreamChannel> {
        AnalyticsServiceClient::new(self.analytics.channel.clone())
    }

    /// The notification service's typed client.
    pub fn notification(&self) -> NotificationServiceClient<UpstreamChannel> {
        NotificationServiceClient::new(self.notification.channel.clone())
    }

    pub fn all(&self) -> [&Upstream; 5] {
        [
            &self.user,
            &self.stock_data,
            &self.prediction,
            &self.analytics,
            &self.notification,
        ]
    }
}

impl Upstream {
    /// The user service's signing keys, for [`crate::middleware::auth::Verifier`].
    pub fn key_source(&self) -> crate::middleware::auth::KeySource {
        let channel = self.channel.clone();
        std::sync::Arc::new(move || {
            let mut client =
                mirai_proto::user::v1::user_service_client::UserServiceClient::new(channel.clone());
            Box::pin(async move {
                let response = client
                    .get_jwks(mirai_proto::user::v1::GetJwksRequest {})
                    .await
                    .map_err(|status| status.message().to_owned())?
                    .into_inner();
                Ok(crate::middleware::auth::KeySet {
                    keys: response
                        .keys
                        .into_iter()
                        .map(|k| crate::middleware::auth::Jwk {
                            kid: k.kid,
                            kty: k.kty,
                            crv: k.crv,
                            x: k.x,
                            alg: k.alg,
                        })
                        .collect(),
                    max_age: response
                        .max_age
                        .and_then(|d| Duration::try_from(d).ok())
                        .unwrap_or(Duration::from_secs(300)),
                })
            })
        })
    }
}
