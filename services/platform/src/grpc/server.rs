//! The gRPC server of a service, with its admin server and shutdown sequence.

use std::convert::Infallible;
use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use super::{Faults, Identity, RpcMetrics, ServerLayer};
use crate::admin::{self, Readiness};
use crate::config::{Profile, ServiceConfig, ShutdownConfig};
use crate::shutdown;
use crate::telemetry::Metrics;

/// Why a server stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A listener could not be bound (port in use, no permission).
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The reflection service could not decode the embedded descriptors (a build defect).
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The transport failed while serving.
    #[error("gRPC transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The admin server failed while serving.
    #[error("admin server: {0}")]
    Admin(std::io::Error),
    /// The configuration asks for fault injection in the production profile (a config built
    /// in code; from the environment this is already a configuration error).
    #[error("fault injection is refused with the production profile")]
    FaultInjectionInProduction,
    /// The internal identity keys are missing in production.
    #[error("internal identity: {0}")]
    Identity(#[from] crate::config::ConfigError),
}

/// A service's gRPC listener and admin listener, bound and ready to serve.
///
/// Binding happens in [`GrpcServer::bind`] so tests can ask for port 0 and read the real
/// ports before serving.
pub struct GrpcServer {
    grpc: TcpListener,
    admin: TcpListener,
    routes: RoutesBuilder,
    service_names: Vec<&'static str>,
    descriptor_sets: Vec<&'static [u8]>,
    health: HealthReporter,
    readiness: Readiness,
    metrics: Metrics,
    shutdown: ShutdownConfig,
    name: &'static str,
    max_in_flight: usize,
    faults: Option<Faults>,
    reflection: bool,
    identity: Identity,
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

impl GrpcServer {
    /// Binds both listeners and sets up the health service (reflection is added at serve time).
    /// Refuses fault injection in the production profile, and serving there without the
    /// internal identity keys.
    pub async fn bind(config: &ServiceConfig, metrics: Metrics) -> Result<Self, ServeError> {
        if config.profile == Profile::Production && config.fault_injection.is_some() {
            return Err(ServeError::FaultInjectionInProduction);
        }
        config.identity.require_keys()?;
        let grpc = bind(config.grpc_addr).await?;
        let admin = bind(config.admin_addr).await?;
        let (health, health_service) = tonic_health::server::health_reporter();
        let mut routes = RoutesBuilder::default();
        routes.add_service(health_service);
        Ok(Self {
            grpc,
            admin,
            routes,
            service_names: Vec::new(),
            descriptor_sets: vec![tonic_health::pb::FILE_DESCRIPTOR_SET],
            health,
            readiness: Readiness::default(),
            metrics,
            shutdown: config.shutdown,
            name: config.name,
            max_in_flight: config.max_in_flight,
            faults: config.fault_injection.clone().map(Faults::new),
            reflection: config.reflection,
            identity: config.identity.clone(),
        })
    }

    /// Adds a generated tonic service; its health status follows the server's.
    pub fn add_service<S>(&mut self, service: S) -> &mut Self
    where
        S: tower::Service<http::Request<tonic::body::Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        self.service_names.push(S::NAME);
        self.routes.add_service(service);
        self
    }

    /// Makes the services described by an encoded `FileDescriptorSet` (e.g.
    /// `mirai_proto::FILE_DESCRIPTOR_SET`) discoverable through gRPC server reflection, when
    /// reflection is on (`MIRAI_GRPC_REFLECTION`; off by default in production).
    pub fn add_reflection(&mut self, descriptor_set: &'static [u8]) -> &mut Self {
        self.descriptor_sets.push(descriptor_set);
        self
    }

    /// Readiness checks shown by `/readyz` (add the database, upstreams, ...).
    pub fn readiness(&self) -> &Readiness {
        &self.readiness
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The live fault rules when fault injection is on (`None` when off): clone the handle
    /// before [`serve`](Self::serve) to change the rules while serving.
    pub fn faults(&self) -> Option<&Faults> {
        self.faults.as_ref()
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc
            .local_addr()
            .expect("bound listener has an address")
    }

    /// The drain delay and grace period this server was configured with.
    pub fn shutdown_timings(&self) -> &ShutdownConfig {
        &self.shutdown
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Serves until `shutdown` is cancelled, then: health NOT_SERVING and `/readyz` 503, wait
    /// the drain delay, stop accepting, let in-flight calls finish within the grace period,
    /// and stop the admin server last. Injected hangs end as soon as `shutdown` fires.
    pub async fn serve(self, shutdown: CancellationToken) -> Result<(), ServeError> {
        let Self {
            grpc,
            admin,
            mut routes,
            service_names,
            descriptor_sets,
            health,
            readiness,
            metrics,
            shutdown: timings,
            name,
            max_in_flight,
            faults,
            reflection,
            identity,
        } = self;

        if reflection {
            let reflection = descriptor_sets
                .into_iter()
                .fold(
                    tonic_reflection::server::Builder::configure(),
                    |builder, set| builder.register_encoded_file_descriptor_set(set),
                )
                .build_v1()?;
            routes.add_service(reflection);
        }
        for name in service_names.iter().copied().chain([""]) {
            health
                .set_service_status(name, ServingStatus::Serving)
                .await;
        }
        let grpc_addr = grpc.local_addr().ok();
        let admin_addr = admin.local_addr().ok();
        tracing::info!(
            message = "Serving.",
            ?grpc_addr,
            ?admin_addr,
            max_in_flight,
            reflection
        );

        let mut layer = ServerLayer::new(RpcMetrics::register(&metrics))
            .with_max_in_flight(name, max_in_flight)
            .with_identity(identity.verifier);
        let mut admin_router = admin::router(metrics.clone(), readiness.clone());
        if let Some(faults) = faults {
            tracing::warn!(
                message = "Fault injection is on; rules can be changed at the admin port's /faults.",
                rules = %faults.rules()
            );
            layer = layer.with_faults(faults.clone(), &metrics, shutdown.clone());
            admin_router = admin_router.merge(admin::fault_routes(faults));
        }

        let admin_stop = CancellationToken::new();
        let admin_task = tokio::spawn(admin::serve_router(admin, admin_router, admin_stop.clone()));

        let stop_accepting = {
            let (shutdown, readiness, health) =
                (shutdown.clone(), readiness.clone(), health.clone());
            async move {
                shutdown.cancelled().await;
                for name in service_names.iter().copied().chain([""]) {
                    health
                        .set_service_status(name, ServingStatus::NotServing)
                        .await;
                }
                shutdown::stop_accepting(shutdown, readiness, timings.drain_delay).await;
                tracing::info!(message = "Listener closed; waiting for in-flight calls.");
            }
        };

        // HTTP/2 flow control sized from the measured round trip (BDP) instead of h2's fixed
        // 64 KiB stream window: a 15 MB ImportBars upload over loopback otherwise waits on a
        // window update every 64 KiB.
        let server = tonic::transport::Server::builder()
            .http2_adaptive_window(Some(true))
            .layer(layer)
            .add_routes(routes.routes())
            .serve_with_incoming_shutdown(TcpListenerStream::new(grpc), stop_accepting);
        let grace = timings.drain_delay + timings.grace;
        let outcome = shutdown::bounded(server, &shutdown, grace).await;

        admin_stop.cancel();
        let admin_result = admin_task.await;
        match outcome {
            Some(Err(error)) => return Err(error.into()),
            Some(Ok(())) => tracing::info!(message = "gRPC server drained."),
            None => {}
        }
        match admin_result {
            Ok(Err(error)) => Err(ServeError::Admin(error)),
            _ => Ok(()),
        }
    }
}
