//! Live accuracy: scoring matured predictions when the next bar arrives, the rolling
//! scoreboard per version and its events, champion degradation, challenger promotion, and the
//! scoreboards the API reads ([`board`], [`boards`]).

use chrono::{DateTime, Utc};
use mirai_platform::events::outbox;
use mirai_platform::wire;
use mirai_proto::events::v1 as ev;
use mirai_proto::prediction::v1 as pb;
use sqlx::PgConnection;

use crate::bars::Snapshot;
use crate::config::ScoringConfig;
use crate::context::Context;
use crate::domain::model_ref::ModelRef;
use crate::domain::scoring::{self, Levels, Metrics};
use crate::domain::symbol::Symbol;
use crate::domain::traffic::Role;
use crate::forecasting::role_to_wire;
use crate::metrics::Metrics as Prometheus;
use crate::models::Status as ServingStatus;
use crate::store::predictions::{self, Scoring};
use crate::store::scores::{self, NewScore, Window};
use crate::store::traffic::TrafficView;
use crate::store::versions;

/// Days of returns behind the Gaussian baseline's sigma (the card's 20-day rolling volatility).
pub const GAUSSIAN_WINDOW: usize = 20;

/// Scores the predictions made at the bar before the newest one of `snapshot` (which just
/// closed), writes their outcomes and one score per version, and expires predictions whose
/// next bar was missed. Returns the versions that got a new score.
pub async fn score_matured(
    tx: &mut PgConnection,
    snapshot: &Snapshot,
) -> anyhow::Result<Vec<ModelRef>> {
    let series = &snapshot.series;
    let (Some(actual), Some(origin)) = (series.last(), series.previous()) else {
        return Ok(Vec::new());
    };
    let symbol = snapshot.symbol.as_str();
    predictions::expire_before(tx, symbol, origin.start).await?;
    let pending = predictions::pending_at(tx, symbol, origin.start).await?;
    if pending.is_empty() {
        return Ok(Vec::new());
    }
    // The baseline's sigma at the origin: the returns up to the origin, not the new bar.
    let sigma = series.rolling_sigma(GAUSSIAN_WINDOW, 1);
    let Some(sigma) = sigma else {
        anyhow::bail!(
            "{symbol}: fewer than {} bars before {}, cannot score the Gaussian baseline",
            GAUSSIAN_WINDOW + 1,
            origin.start
        );
    };
    let mut outcomes = Vec::with_capacity(pending.len());
    let mut scored_versions: Vec<ModelRef> = Vec::new();
    // Bar-loop predictions first, so each version's score comes from its canonical one.
    let mut ordered = pending;
    ordered.sort_by_key(|p| p.origin != "event");
    for p in &ordered {
        let levels = Levels::parse(&p.levels, p.lower_level, p.upper_level)?;
        let outcome = scoring::score(&levels, &p.log_returns, p.last_close, actual.close, sigma);
        outcomes.push(Scoring {
            id: p.id,
            actual_close: actual.close,
            abs_error: outcome.abs_error,
            naive_abs_error: outcome.naive_abs_error,
            pinball_loss: outcome.pinball,
            inside_interval: outcome.inside,
            direction_hit: outcome.direction_hit,
        });
        if scored_versions.contains(&p.model) {
            continue;
        }
        let inserted = scores::insert(
            tx,
            &NewScore {
                model: &p.model,
                symbol,
                as_of: origin.start,
                target_start: actual.start,
                median: p.log_returns[levels.median()],
                outcome: &outcome,
                nominal_coverage: levels.nominal_coverage(),
            },
        )
        .await?;
        if inserted {
            scored_versions.push(p.model.clone());
        }
    }
    predictions::mark_scored(tx, &outcomes).await?;
    Ok(scored_versions)
}

/// After new scores: each version's rolling scoreboard → `model.performance.updated`; the
/// champion's thresholds → `model.degraded` on the transition; challengers and shadows that
/// beat the champion significantly → proposed, or promoted when configured.
pub async fn after_scoring(
    tx: &mut PgConnection,
    traffic: &TrafficView,
    versions_scored: &[ModelRef],
    config: &ScoringConfig,
    prometheus: &Prometheus,
    correlation: Option<String>,
) -> anyhow::Result<Option<PromotionDecision>> {
    let champion = traffic.traffic.champion().clone();
    let mut promotion = None;
    for model in versions_scored {
        let role = traffic.traffic.role_of(model);
        let window = Window::Last(config.window);
        let loaded = scores::load(tx, model, window, None).await?;
        let nominal = loaded.nominal_coverage.unwrap_or(0.9);
        let metrics = Metrics::of(&loaded.scored, nominal);
        let period = period(loaded.first_target, loaded.last_target);
        publish_gauges(prometheus, model, &metrics);
        outbox::enqueue(
            tx,
            crate::SERVICE,
            &ev::ModelPerformanceUpdated {
                model_name: model.name().to_owned(),
                model_version: model.version().to_owned(),
                role: role_to_wire(role).into(),
                window: Some(period),
                metrics: Some(metrics_to_wire(&metrics)),
                newly_scored: 1,
            },
            correlation.clone(),
        )
        .await?;
        if *model == champion {
            check_degradation(
                tx,
                model,
                role,
                &metrics,
                period,
                config,
                correlation.clone(),
            )
            .await?;
        } else if matches!(role, Role::Challenger | Role::Shadow) {
            let comparison = compare(tx, model, &champion, window, None, config).await?;
            let health = versions::health(tx, model).await?;
            match comparison.filter(|c| c.proposed) {
                Some(c) => {
                    let reason = format!(
                        "Diebold–Mariano on daily pinball loss vs {champion}: DM {:.3}, p = {:.4} over {} paired bars (mean difference {:.3e})",
                        c.test.statistic, c.test.p_value, c.test.n, c.test.mean_difference
                    );
                    if !health.proposed {
                        tracing::info!(message = "Challenger proposed for promotion.", model = %model, %reason);
                        versions::set_proposal(tx, model, Some(&reason)).await?;
                    }
                    if config.auto_promote && promotion.is_none() {
                        promotion = Some(PromotionDecision {
                            model: model.clone(),
                            reason,
                        });
                    }
                }
                None if health.proposed => versions::set_proposal(tx, model, None).await?,
                None => {}
            }
        }
    }
    Ok(promotion)
}

/// A challenger the bar loop decided to promote automatically.
#[derive(Debug, Clone)]
pub struct PromotionDecision {
    pub model: ModelRef,
    pub reason: String,
}

async fn check_degradation(
    tx: &mut PgConnection,
    model: &ModelRef,
    role: Role,
    metrics: &Metrics,
    period: pb::Period,
    config: &ScoringConfig,
    correlation: Option<String>,
) -> anyhow::Result<()> {
    let breaches = breaches(metrics, config);
    let health = versions::health(tx, model).await?;
    if !breaches.is_empty() && !health.degraded {
        let reason = breaches
            .iter()
            .map(|b| {
                let op = if b.bound == "above" { ">" } else { "<" };
                format!(
                    "rolling {} {:.4} {op} {:.4}",
                    b.metric, b.value, b.threshold
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        tracing::warn!(message = "Champion degraded.", model = %model, %reason);
        versions::set_degraded(tx, model, true, &reason).await?;
        outbox::enqueue(
            tx,
            crate::SERVICE,
            &ev::ModelDegraded {
                model_name: model.name().to_owned(),
                model_version: model.version().to_owned(),
                role: role_to_wire(role).into(),
                reason,
                breaches,
                metrics: Some(metrics_to_wire(metrics)),
                window: Some(period),
            },
            correlation,
        )
        .await?;
    } else if breaches.is_empty() && health.degraded {
        tracing::info!(message = "Champion recovered.", model = %model);
        versions::set_degraded(tx, model, false, "").await?;
    }
    Ok(())
}

/// The thresholds a version's rolling metrics breach (none before `min_count` scores).
pub fn breaches(metrics: &Metrics, config: &ScoringConfig) -> Vec<ev::ThresholdBreach> {
    let mut out = Vec::new();
    if metrics.count < config.min_count {
        return out;
    }
    if let Some(mase) = metrics.mase
        && mase > config.max_mase
    {
        out.push(ev::ThresholdBreach {
            metric: "mase".into(),
            value: mase,
            threshold: config.max_mase,
            bound: "above".into(),
        });
    }
    if metrics.coverage < config.min_coverage {
        out.push(ev::ThresholdBreach {
            metric: "coverage".into(),
            value: metrics.coverage,
            threshold: config.min_coverage,
            bound: "below".into(),
        });
    }
    if metrics.coverage > config.max_coverage {
        out.push(ev::ThresholdBreach {
            metric: "coverage".into(),
            value: metrics.coverage,
            threshold: config.max_coverage,
            bound: "above".into(),
        });
    }
    out
}

/// A version's standing against the champion.
#[derive(Debug, Clone, Copy)]
pub struct Comparison {
    pub test: scoring::DieboldMariano,
    /// Better at the configured level, with enough pairs.
    pub proposed: bool,
}

pub async fn compare(
    tx: &mut PgConnection,
    model: &ModelRef,
    champion: &ModelRef,
    window: Window,
    symbol: Option<&str>,
    config: &ScoringConfig,
) -> Result<Option<Comparison>, sqlx::Error> {
    let differences =
        scores::paired_pinball_differences(tx, model, champion, window, symbol).await?;
    if differences.is_empty() {
        return Ok(None);
    }
    let test = scoring::diebold_mariano(&differences);
    Ok(Some(Comparison {
        proposed: test.n as u64 >= config.promotion_min_paired
            && test.mean_difference < 0.0
            && test.p_value < config.promotion_alpha,
        test,
    }))
}

/// The scoreboard of `model` over `window` (one symbol's or all), with the comparison to the
/// champion for any other version.
pub async fn board(
    context: &Context,
    model: &ModelRef,
    window: Window,
    symbol: Option<&Symbol>,
) -> crate::error::Result<pb::Scoreboard> {
    let pool = &context.pool;
    let symbol_text = symbol.map(|s| s.as_str());
    let mut conn = pool.acquire().await?;
    let loaded = scores::load(&mut conn, model, window, symbol_text).await?;
    let nominal = loaded
        .nominal_coverage
        .or_else(|| {
            context
                .predictor
                .models
                .served(model)
                .map(|s| s.verified.levels.nominal_coverage())
        })
        .unwrap_or(0.0);
    let metrics = Metrics::of(&loaded.scored, nominal);
    let traffic = context.predictor.traffic.current();
    let champion = traffic.traffic.champion().clone();
    let versus_champion = if *model == champion {
        None
    } else {
        compare(
            &mut conn,
            model,
            &champion,
            window,
            symbol_text,
            &context.scoring,
        )
        .await?
        .map(|c| pb::ChampionComparison {
            champion: Some(champion.to_wire()),
            paired: c.test.n as u64,
            mean_loss_difference: c.test.mean_difference,
            statistic: c.test.statistic,
            p_value: c.test.p_value,
            promotion_proposed: c.proposed,
        })
    };
    drop(conn);
    let period = match window {
        Window::Period { start, end } => pb::Period {
            start: start.or(loaded.first_target).map(wire::timestamp),
            end: end
                .or(loaded
                    .last_target
                    .map(|l| l + chrono::Duration::microseconds(1)))
                .map(wire::timestamp),
        },
        Window::Last(_) => period(loaded.first_target, loaded.last_target),
    };
    Ok(pb::Scoreboard {
        model: Some(model.to_wire()),
        role: role_to_wire(traffic.traffic.role_of(model)).into(),
        window: Some(period),
        symbol: symbol_text.unwrap_or_default().to_owned(),
        metrics: Some(metrics_to_wire(&metrics)),
        pending: predictions::count_pending(pool, model, symbol_text).await?,
        updated_at: loaded.last_scored_at.map(wire::timestamp),
        versus_champion,
    })
}

/// The scoreboards of every version not retired: champion first, then challengers, shadows
/// and idle versions, by name and version within a role.
pub async fn boards(
    context: &Context,
    window: Window,
    symbol: Option<&Symbol>,
) -> crate::error::Result<Vec<pb::Scoreboard>> {
    let traffic = context.predictor.traffic.current();
    let mut models: Vec<ModelRef> = context
        .predictor
        .models
        .list()
        .into_iter()
        .filter(|i| i.status != ServingStatus::Retired)
        .map(|i| i.model)
        .collect();
    models.sort_by_key(|m| {
        let rank = match traffic.traffic.role_of(m) {
            Role::Champion => 0,
            Role::Challenger => 1,
            Role::Shadow => 2,
            Role::Idle => 3,
        };
        (rank, m.clone())
    });
    let mut scoreboards = Vec::with_capacity(models.len());
    for model in &models {
        scoreboards.push(board(context, model, window, symbol).await?);
    }
    Ok(scoreboards)
}

fn publish_gauges(prometheus: &Prometheus, model: &ModelRef, m: &Metrics) {
    prometheus.score(model, "count", m.count as f64);
    prometheus.score(model, "mae", m.mae);
    prometheus.score(model, "naive_mae", m.naive_mae);
    prometheus.score(model, "rmse", m.rmse);
    if let Some(mase) = m.mase {
        prometheus.score(model, "mase", mase);
    }
    prometheus.score(model, "pinball", m.pinball);
    prometheus.score(model, "baseline_pinball", m.baseline_pinball);
    prometheus.score(model, "coverage", m.coverage);
    prometheus.score(model, "hit_rate", m.hit_rate);
}

pub fn period(first: Option<DateTime<Utc>>, last: Option<DateTime<Utc>>) -> pb::Period {
    pb::Period {
        start: first.map(wire::timestamp),
        // Exclusive end just after the newest target bar's start.
        end: last.map(|l| wire::timestamp(l + chrono::Duration::microseconds(1))),
    }
}

pub fn metrics_to_wire(m: &Metrics) -> pb::ScoreMetrics {
    pb::ScoreMetrics {
        count: m.count,
        mae: m.mae,
        rmse: m.rmse,
        naive_mae: m.naive_mae,
        mase: m.mase,
        hit_rate: m.hit_rate,
        always_up_hit_rate: m.always_up_hit_rate,
        pinball_loss: m.pinball,
        baseline_pinball_loss: m.baseline_pinball,
        coverage: m.coverage,
        nominal_coverage: m.nominal_coverage,
        information_coefficient: m.information_coefficient,
        rank_information_coefficient: m.rank_information_coefficient,
    }
}
