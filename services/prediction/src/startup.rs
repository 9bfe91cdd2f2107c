//! Assembly of `mirai-prediction`.
//!
//! Startup loads and verifies every registered version before the listeners serve (a few
//! seconds: optimising the plans and running the golden vectors is the warm-up), so the first
//! request already finds the champion READY; `/readyz` reports `models` failing while the
//! champion is not READY in this replica. Background tasks then watch the models folder,
//! re-read the traffic configuration, write request-path predictions and apply retention.

use std::sync::Arc;
use std::time::Duration;

use mirai_platform::app::{ServiceApp, StartupError};
use mirai_platform::config::ServiceConfig;
use mirai_platform::grpc::client::Client;
use mirai_proto::prediction::v1::prediction_service_server::PredictionServiceServer;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use tokio_util::sync::CancellationToken;

use crate::bars::BarSource;
use crate::config::Config;
use crate::context::Context;
use crate::domain::traffic::{Split, Traffic};
use crate::forecasting::{Predictor, PredictorSettings};
use crate::grpc::Api;
use crate::metrics::Metrics;
use crate::models::{Change, ModelSet};
use crate::store::predictions::{self, PredictionLog};
use crate::store::traffic::{self, TrafficState};
use crate::store::versions;

/// The service's own schema (versions from 1000; the platform's outbox and inbox tables are
/// applied by [`ServiceApp::prepare`]).
pub static MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

/// Bars kept per symbol: a trading year, or more when a window needs it.
const MIN_BARS_KEPT: usize = 252;

/// Why the service could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The platform skeleton failed (database, migrations, Pub/Sub, listeners).
    #[error(transparent)]
    Startup(#[from] StartupError),
    /// The service's own start-up queries failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// No traffic configuration is stored and registry.json names no usable champion.
    #[error("no traffic configuration: {0}")]
    Traffic(String),
}

/// The assembled service and the state its parts share (tests and benchmarks use it).
pub struct Application {
    pub app: ServiceApp,
    pub context: Arc<Context>,
}

/// The service with default settings around `config` (what the platform's conformance tests
/// and the gateway's in-process tests start).
pub async fn build(config: &ServiceConfig) -> Result<ServiceApp, BuildError> {
    Ok(build_with(&Config::with_service(config.clone())).await?.app)
}

pub async fn build_with(config: &Config) -> Result<Application, BuildError> {
    let mut app = ServiceApp::prepare(&config.service, &MIGRATIONS).await?;
    let pool = app.pool.clone();
    let metrics = Metrics::register(&app.metrics);

    let models = Arc::new(ModelSet::new(
        config.models_dir.clone(),
        config.batch_sizes.clone(),
        config.batching,
        metrics.clone(),
    ));
    for (model, record) in versions::all(&pool).await? {
        if record.retired_at.is_some() {
            models.retire(&model, record.retire_reason.as_deref().unwrap_or("retired"));
        }
    }
    let changes = models.refresh().await;
    record(&pool, &changes).await;

    let view = match traffic::load(&mut *pool.acquire().await?)
        .await
        .map_err(|e| BuildError::Traffic(format!("{e:#}")))?
    {
        Some(view) => view,
        None => {
            let (champion, challengers) = models.initial_roles().ok_or_else(|| {
                BuildError::Traffic(format!(
                    "{}/registry.json is unreadable",
                    config.models_dir.display()
                ))
            })?;
            // The registry's champion takes every request; its challengers start at 0 %:
            // they forecast every bar and are scored, and an admin gives them traffic.
            let mut splits = vec![Split {
                model: champion.clone(),
                percent: 100,
            }];
            splits.extend(
                challengers
                    .into_iter()
                    .map(|model| Split { model, percent: 0 }),
            );
            let seed = Traffic::new(splits, Vec::new(), champion)
                .map_err(|e| BuildError::Traffic(e.to_string()))?;
            traffic::seed(&pool, &seed)
                .await
                .map_err(|e| BuildError::Traffic(format!("{e:#}")))?
        }
    };
    let traffic = Arc::new(TrafficState::new(view));

    let capacity = models
        .list()
        .iter()
        .filter_map(|i| i.served.as_ref().map(|s| s.window() + 1))
        .max()
        .unwrap_or(0)
        .max(MIN_BARS_KEPT);
    let stock_data = Client::build(
        "stock-data",
        &config.stock_data,
        &app.metrics,
        &config.service.identity.signer,
    );
    let bars = Arc::new(BarSource::new(
        stock_data.channel(),
        capacity,
        config.bar_cache_ttl,
        metrics.clone(),
    ));
    let (log, writer) = PredictionLog::new(pool.clone(), 10_000);
    let predictor = Arc::new(Predictor::new(
        models.clone(),
        traffic.clone(),
        bars,
        log,
        metrics.clone(),
        PredictorSettings {
            shadow_concurrency: config.shadow_concurrency,
            shadow_timeout: config.shadow_timeout,
            forecast_cache: config.forecast_cache,
        },
    ));
    let context = Arc::new(Context {
        pool: pool.clone(),
        predictor,
        scoring: config.scoring,
        metrics,
    });

    app.server
        .add_service(PredictionServiceServer::new(Api::new(context.clone())));
    app.server.add_reflection(mirai_proto::FILE_DESCRIPTOR_SET);
    {
        let (models, traffic) = (models.clone(), traffic.clone());
        app.server.readiness().add_check("models", move || {
            let champion = traffic.current().traffic.champion().clone();
            let ready = models.served(&champion).is_some();
            Box::pin(async move {
                if ready {
                    Ok(())
                } else {
                    Err(format!("the champion {champion} is not READY"))
                }
            })
        });
    }
    crate::events::consume(&mut app, context.clone());

    app.background("prediction-log", move |stop| Box::pin(writer.run(stop)));
    {
        let (models, pool, every) = (models.clone(), pool.clone(), config.models_poll);
        app.background("model-watch", move |stop| {
            Box::pin(periodically(stop, every, move || {
                let (models, pool) = (models.clone(), pool.clone());
                async move {
                    let changes = models.refresh().await;
                    record(&pool, &changes).await;
                }
            }))
        });
    }
    {
        let (traffic, pool, every) = (traffic.clone(), pool.clone(), config.traffic_refresh);
        app.background("traffic-refresh", move |stop| {
            Box::pin(periodically(stop, every, move || {
                let (traffic, pool) = (traffic.clone(), pool.clone());
                async move {
                    if let Err(error) = traffic.refresh(&pool).await {
                        tracing::warn!(message = "Traffic refresh failed.", error = %format!("{error:#}"));
                    }
                }
            }))
        });
    }
    {
        let (pool, retention) = (pool.clone(), config.retention);
        app.background("prediction-retention", move |stop| {
            Box::pin(periodically(stop, Duration::from_secs(3600), move || {
                let pool = pool.clone();
                async move {
                    match predictions::apply_retention(&pool, retention).await {
                        Ok(0) => {}
                        Ok(deleted) => {
                            tracing::info!(message = "Old predictions deleted.", deleted)
                        }
                        Err(error) => tracing::warn!(message = "Retention failed.", %error),
                    }
                }
            }))
        });
    }
    Ok(Application { app, context })
}

/// Runs `work` every `every` until `stop`.
async fn periodically<F, Fut>(stop: CancellationToken, every: Duration, mut work: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => work().await,
        }
    }
}

/// Persists what a refresh did (first seen, last loaded); failures are logged, not fatal.
async fn record(pool: &PgPool, changes: &[Change]) {
    for change in changes {
        let result = match change {
            Change::Registered { model, sha256 } => versions::register(pool, model, sha256).await,
            Change::Ready { model, sha256 } => versions::mark_loaded(pool, model, sha256).await,
            Change::Refused { .. } => Ok(()),
        };
        if let Err(error) = result {
            tracing::warn!(message = "Recording a model change failed.", %error);
        }
    }
}
