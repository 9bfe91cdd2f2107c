//! What the API, the bar loop and the background tasks share.

use std::sync::Arc;

use sqlx::PgPool;

use crate::config::ScoringConfig;
use crate::forecasting::Predictor;
use crate::metrics::Metrics;

pub struct Context {
    pub pool: PgPool,
    pub predictor: Arc<Predictor>,
    pub scoring: ScoringConfig,
    pub metrics: Metrics,
}
