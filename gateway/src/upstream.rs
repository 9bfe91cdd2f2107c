//! gRPC channels to the services behind the gateway.

use std::time::Duration;

use futures::future::BoxFuture;
use mirai_platform::grpc::client::{self, TracedChannel};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::config;

/// One upstream service: its name and a channel that propagates trace context and deadlines.
#[derive(Clone)]
pub struct Upstream {
    pub name: &'static str,
    pub channel: TracedChannel,
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

    /// A `/readyz` check: the upstream answers SERVING.
    pub fn readiness_check(
        &self,
    ) -> impl Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync + 'static {
        let upstream = self.clone();
        move || {
            let upstream = upstream.clone();
            Box::pin(async move {
                match upstream.health().await {
                    Ok(ServingStatus::Serving) => Ok(()),
                    Ok(other) => Err(format!("{} is {}", upstream.name, other.as_str_name())),
                    Err(status) => Err(format!("{}: {}", upstream.name, status.message())),
                }
            })
        }
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
    /// Lazily connecting channels: the gateway starts before its upstreams if it must, and
    /// `/readyz` says when they are all there.
    pub fn connect(
        config: &config::Upstreams,
        timeout: Duration,
    ) -> Result<Self, tonic::transport::Error> {
        let make = |name, url: &str| -> Result<Upstream, tonic::transport::Error> {
            Ok(Upstream {
                name,
                channel: client::traced(url, timeout)?,
            })
        };
        Ok(Self {
            user: make("user", &config.user)?,
            stock_data: make("stock-data", &config.stock_data)?,
            prediction: make("prediction", &config.prediction)?,
            analytics: make("analytics", &config.analytics)?,
            notification: make("notification", &config.notification)?,
        })
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
    /// The user service's signing keys, for [`crate::auth::Verifier`].
    pub fn key_source(&self) -> crate::auth::KeySource {
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
                Ok(crate::auth::KeySet {
                    keys: response
                        .keys
                        .into_iter()
                        .map(|k| crate::auth::Jwk {
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
