//! Assembly of the gateway.

use std::net::SocketAddr;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use mirai_platform::admin::{self, Readiness};
use mirai_platform::config::ShutdownConfig;
use mirai_platform::shutdown;
use mirai_platform::telemetry::Metrics;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use redis::aio::ConnectionManager;

use crate::config::Config;
use crate::middleware::auth::{self, Authenticator, Verifier};
use crate::middleware::client::TrustedProxies;
use crate::middleware::edge;
use crate::middleware::idempotency::{self, Idempotency};
use crate::middleware::observability::{self, HttpMetrics};
use crate::middleware::ratelimit::{self, RateLimiter};
use crate::routes::market::streams::QuoteHub;
use crate::routes::market::symbols::QuoteCache;
use crate::routes::{self, state::AppState};
use crate::upstream::Upstreams;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// `MIRAI_REDIS_URL` is malformed, Redis did not answer at start, or its certificate is
    /// not signed by `MIRAI_REDIS_CA_CERT` (the URL is not repeated: it may hold a password).
    #[error("Redis (MIRAI_REDIS_URL): {0}")]
    Redis(redis::RedisError),
}

/// The bound gateway, ready to serve.
pub struct Application {
    http: TcpListener,
    admin: TcpListener,
    router: Router,
    readiness: Readiness,
    metrics: Metrics,
    shutdown: ShutdownConfig,
    streams_stop: CancellationToken,
    limiter: Arc<RateLimiter>,
}

async fn connect_redis(
    url: &str,
    ca_cert: Option<&[u8]>,
) -> Result<ConnectionManager, StartupError> {
    let client = match ca_cert {
        Some(pem) => redis::Client::build_with_tls(
            url,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.to_vec()),
            },
        ),
        None => redis::Client::open(url),
    }
    .map_err(StartupError::Redis)?;
    ConnectionManager::new(client)
        .await
        .map_err(StartupError::Redis)
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartupError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartupError::Bind { addr, source })
}

impl Application {
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        let http = bind(config.http_addr).await?;
        let admin = bind(config.admin_addr).await?;
        let metrics = Metrics::new();
        let upstreams = Upstreams::connect(&config.upstreams, &metrics, &config.identity.signer);
        let streams_stop = CancellationToken::new();
        let redis = match &config.redis_url {
            Some(url) => Some(connect_redis(url, config.redis_ca_cert.as_deref()).await?),
            None => None,
        };
        let limiter = Arc::new(RateLimiter::new(
            &config.rate_limits,
            redis.clone().map(|c| (c, config.redis_prefix.as_str())),
            &metrics,
        ));
        let idempotency = Arc::new(match redis {
            Some(connection) => Idempotency::redis_with(
                connection,
                &config.redis_prefix,
                config.max_body,
                config.idempotency,
            ),
            None => Idempotency::memory_with(config.max_body, config.idempotency),
        });
        let authenticator = Arc::new(Authenticator {
            verifier: Verifier::new(
                &config.jwt_issuer,
                &config.jwt_audience,
                upstreams.user.key_source(),
            )
            .with_metrics(&metrics),
            user: upstreams.user.channel.clone(),
            guard: auth::FailureGuard::new(
                &config.auth_failures,
                limiter.auth_failures(),
                &metrics,
            ),
        });
        // Ready means "this gateway can serve": its listener and a key set to verify tokens
        // with. Upstreams are not checked: one that is down makes its own routes answer 503
        // while every other route goes on (see `/v1/status`).
        let readiness = Readiness::default();
        readiness.add_check("jwks", {
            let authenticator = authenticator.clone();
            move || {
                let authenticator = authenticator.clone();
                Box::pin(async move { authenticator.verifier.ready().await })
            }
        });
        let streams = Arc::new(QuoteHub::new(
            upstreams.stock_data.channel.clone(),
            upstreams.user.channel.clone(),
            config.streams,
            streams_stop.clone(),
        ));
        let state = AppState {
            streams,
            upstreams: Arc::new(upstreams),
            streams_stop: streams_stop.clone(),
            public_url: config.public_url.as_str().into(),
            quotes: Arc::new(QuoteCache::new(config.quote_fallback_max_age, &metrics)),
            readiness: readiness.clone(),
        };
        // Innermost first: the handler sees idempotency, then rate limits (which need the
        // principal), then authentication; CORS answers preflights before any of them; the
        // request id and metrics wrap everything, so even a refused request is counted and
        // carries its id.
        let mut router = routes::router(state);
        if let Some(dir) = &config.console_dir {
            router = router.merge(routes::console::router(dir));
        }
        let router = router
            .layer(axum::middleware::from_fn_with_state(
                idempotency,
                idempotency::idempotent,
            ))
            .layer(axum::middleware::from_fn_with_state(
                limiter.clone(),
                ratelimit::limit,
            ))
            .layer(axum::middleware::from_fn_with_state(
                authenticator,
                auth::authenticate,
            ))
            .layer(DefaultBodyLimit::max(config.max_body))
            .layer(axum::Extension(TrustedProxies {
                hops: config.trusted_proxy_hops,
            }))
            .layer(edge::cors(&config.cors_origins));
        let router = edge::security_headers(router)
            .layer(axum::middleware::from_fn(edge::request_id))
            .layer(axum::middleware::from_fn_with_state(
                HttpMetrics::register(&metrics),
                observability::track,
            ));
        Ok(Self {
            http,
            admin,
            router,
            readiness,
            metrics,
            shutdown: config.shutdown,
            streams_stop,
            limiter,
        })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http
            .local_addr()
            .expect("bound listener has an address")
    }

    /// The registry behind `/metrics` (an embedding process may read it directly).
    pub fn metrics(&self) -> Metrics {
        self.metrics.clone()
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Serves until `shutdown` fires, then runs the platform's drain sequence.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> std::io::Result<()> {
        tracing::info!(
            message = "Serving.",
            http_addr = ?self.http.local_addr().ok(),
            admin_addr = ?self.admin.local_addr().ok()
        );
        // Live streams end when shutdown begins, so draining does not wait for their clients.
        tokio::spawn(self.limiter.clone().prune_periodically(shutdown.clone()));
        let streams_stop = self.streams_stop.clone();
        let stop_streams = shutdown.clone();
        tokio::spawn(async move {
            stop_streams.cancelled().await;
            streams_stop.cancel();
        });
        let admin_stop = CancellationToken::new();
        let admin_task = tokio::spawn(admin::serve(
            self.admin,
            self.metrics.clone(),
            self.readiness.clone(),
            admin_stop.clone(),
        ));
        let server = axum::serve(
            self.http,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown::stop_accepting(
            shutdown.clone(),
            self.readiness.clone(),
            self.shutdown.drain_delay,
        ));
        let outcome = shutdown::bounded(
            server.into_future(),
            &shutdown,
            self.shutdown.drain_delay + self.shutdown.grace,
        )
        .await;
        admin_stop.cancel();
        let _ = admin_task.await;
        match outcome {
            Some(result) => result,
            None => Ok(()),
        }
    }
}
