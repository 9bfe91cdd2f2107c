//! The gRPC API (`mirai.prediction.v1.PredictionService`): parses requests, checks roles, calls
//! the service, and translates the answer. No rules live here.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use mirai_platform::auth::{self, Principal, Role as AuthRole};
use mirai_platform::wire;
use mirai_proto::prediction::v1 as pb;
use mirai_proto::prediction::v1::prediction_service_server::PredictionService;
use mirai_proto::stock::v1 as stock;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::artifact::{Card, CardPeriodMetrics, CardSplit};
use crate::context::Context;
use crate::domain::model_ref::ModelRef;
use crate::domain::scoring::Metrics;
use crate::domain::symbol::Symbol;
use crate::domain::traffic::{Role, Split, Traffic};
use crate::error::{Error, Result};
use crate::forecasting::{duration_to_wire, interval_level, role_to_wire};
use crate::models::{Status as ServingStatus, VersionInfo};
use crate::scoreboard::{self, metrics_to_wire};
use crate::store::predictions::{self, Filter, Listed};
use crate::store::scores::{self, Window};
use crate::store::traffic::TrafficView;
use crate::store::versions;

/// Most symbols in one PredictMany.
pub const MAX_BATCH_SYMBOLS: usize = 500;

pub struct Api {
    context: Arc<Context>,
}

impl Api {
    pub fn new(context: Arc<Context>) -> Self {
        Self { context }
    }
}

fn user_id(field: &'static str, raw: &str) -> Result<Option<Uuid>> {
    if raw.trim().is_empty() {
        return Ok(None);
    }
    Uuid::parse_str(raw.trim())
        .map(Some)
        .map_err(|_| Error::invalid(field, format!("`{raw}` is not a UUID")))
}

fn daily(field: &'static str, timeframe: i32) -> Result<()> {
    match stock::Timeframe::try_from(timeframe) {
        Ok(stock::Timeframe::Unspecified | stock::Timeframe::OneDay) => Ok(()),
        Ok(other) => Err(Error::FailedPrecondition(format!(
            "no READY version forecasts {} bars; every model serves daily bars",
            other.as_str_name()
        ))),
        Err(_) => Err(Error::invalid(field, "unknown timeframe")),
    }
}

/// The user a call is made for: the verified caller's, never one named in the request. A
/// `field` naming someone else is refused; empty means the caller.
fn own_user(
    principal: Option<&Principal>,
    field: &'static str,
    claimed: &str,
) -> Result<Option<Uuid>> {
    let caller = principal
        .map(|p| user_id(field, &p.user_id))
        .transpose()?
        .flatten();
    match (user_id(field, claimed)?, caller) {
        (None, caller) => Ok(caller),
        (Some(named), Some(caller)) if named == caller => Ok(Some(caller)),
        (Some(_), _) => Err(Error::PermissionDenied(format!(
            "{field} must be empty or the caller's own user id"
        ))),
    }
}

/// The admin recorded as making a change: the verified caller (`actor_user_id` in the request
/// may only repeat it).
fn actor(principal: &Principal, claimed: &str) -> Result<String> {
    let claimed = claimed.trim();
    if claimed.is_empty() || claimed.eq_ignore_ascii_case(&principal.user_id) {
        Ok(principal.user_id.clone())
    } else {
        Err(Error::PermissionDenied(
            "actor_user_id must be empty or the caller's own user id".into(),
        ))
    }
}

#[tonic::async_trait]
impl PredictionService for Api {
    #[tracing::instrument(skip_all, fields(symbol = %request.get_ref().symbol))]
    async fn predict(
        &self,
        request: Request<pb::PredictRequest>,
    ) -> Result<Response<pb::PredictResponse>, Status> {
        if request.get_ref().model.is_some() {
            auth::require(&request, &[AuthRole::Admin])?;
        }
        let principal = Principal::of(&request);
        let r = request.into_inner();
        let symbol = Symbol::parse(&r.symbol).map_err(Error::from)?;
        let user = own_user(principal.as_ref(), "user_id", &r.user_id)?;
        daily("timeframe", r.timeframe)?;
        let pinned = r
            .model
            .as_ref()
            .map(|m| ModelRef::parse(&m.name, &m.version))
            .transpose()
            .map_err(Error::from)?;
        let made = self
            .context
            .predictor
            .predict(&symbol, user, pinned)
            .await?;
        Ok(Response::new(pb::PredictResponse {
            forecast: Some(made.to_wire()),
        }))
    }

    #[tracing::instrument(skip_all, fields(symbols = request.get_ref().symbols.len()))]
    async fn predict_many(
        &self,
        request: Request<pb::PredictManyRequest>,
    ) -> Result<Response<pb::PredictManyResponse>, Status> {
        let principal = Principal::of(&request);
        let r = request.into_inner();
        let user = own_user(principal.as_ref(), "user_id", &r.user_id)?;
        daily("timeframe", r.timeframe)?;
        let mut distinct: Vec<String> = Vec::new();
        for s in &r.symbols {
            let normalised = s.trim().to_ascii_uppercase();
            if !distinct.contains(&normalised) {
                distinct.push(normalised);
            }
        }
        if distinct.is_empty() || distinct.len() > MAX_BATCH_SYMBOLS {
            return Err(Error::invalid(
                "symbols",
                format!(
                    "between 1 and {MAX_BATCH_SYMBOLS} distinct symbols, got {}",
                    distinct.len()
                ),
            )
            .into());
        }
        let mut failures = Vec::new();
        let mut symbols = Vec::with_capacity(distinct.len());
        for raw in &distinct {
            match Symbol::parse(raw) {
                Ok(symbol) => symbols.push(symbol),
                Err(error) => failures.push(pb::PredictionFailure {
                    symbol: raw.clone(),
                    code: tonic::Code::InvalidArgument as i32,
                    message: error.to_string(),
                }),
            }
        }
        let results = self.context.predictor.predict_many(symbols, user).await;
        let mut forecasts = Vec::with_capacity(results.len());
        for (symbol, result) in results {
            match result {
                Ok(made) => forecasts.push(made.to_wire()),
                Err(error) => failures.push(pb::PredictionFailure {
                    symbol: symbol.as_str().to_owned(),
                    code: error.code() as i32,
                    message: Status::from(error).message().to_owned(),
                }),
            }
        }
        Ok(Response::new(pb::PredictManyResponse {
            forecasts,
            failures,
        }))
    }

    async fn list_models(
        &self,
        request: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        let include_retired = request.get_ref().include_retired;
        let models = self.models(None, include_retired).await?;
        Ok(Response::new(pb::ListModelsResponse { models }))
    }

    async fn get_model(
        &self,
        request: Request<pb::GetModelRequest>,
    ) -> Result<Response<pb::GetModelResponse>, Status> {
        let r = request.into_inner();
        let model = self
            .models(Some(&r.name), r.include_retired)
            .await?
            .pop()
            .ok_or_else(|| Error::NotFound(format!("model {} not found", r.name)))?;
        Ok(Response::new(pb::GetModelResponse { model: Some(model) }))
    }

    async fn get_model_version(
        &self,
        request: Request<pb::GetModelVersionRequest>,
    ) -> Result<Response<pb::GetModelVersionResponse>, Status> {
        let model = ModelRef::from_wire(request.get_ref().model.as_ref()).map_err(Error::from)?;
        let info = self
            .context
            .predictor
            .models
            .info(&model)
            .ok_or_else(|| Error::NotFound(format!("model version {model} not found")))?;
        let records = versions::all(&self.context.pool)
            .await
            .map_err(Error::from)?;
        let traffic = self.context.predictor.traffic.current();
        Ok(Response::new(pb::GetModelVersionResponse {
            version: Some(version_to_wire(&info, records.get(&model), &traffic)),
        }))
    }

    async fn get_traffic(
        &self,
        _request: Request<pb::GetTrafficRequest>,
    ) -> Result<Response<pb::GetTrafficResponse>, Status> {
        let traffic = self.context.predictor.traffic.current();
        Ok(Response::new(pb::GetTrafficResponse {
            traffic: Some(traffic_to_wire(&traffic)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn set_traffic(
        &self,
        request: Request<pb::SetTrafficRequest>,
    ) -> Result<Response<pb::SetTrafficResponse>, Status> {
        let principal = auth::require(&request, &[AuthRole::Admin])?;
        let r = request.into_inner();
        let traffic = traffic_from_wire(r.traffic.as_ref())?;
        let view = crate::admin::set_traffic(
            &self.context,
            traffic,
            &actor(&principal, &r.actor_user_id)?,
            &r.reason,
        )
        .await?;
        Ok(Response::new(pb::SetTrafficResponse {
            traffic: Some(traffic_to_wire(&view)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn promote(
        &self,
        request: Request<pb::PromoteRequest>,
    ) -> Result<Response<pb::PromoteResponse>, Status> {
        let principal = auth::require(&request, &[AuthRole::Admin])?;
        let r = request.into_inner();
        let model = ModelRef::from_wire(r.model.as_ref()).map_err(Error::from)?;
        let (view, previous) = crate::admin::promote(
            &self.context,
            &model,
            &actor(&principal, &r.actor_user_id)?,
            &r.reason,
            r.retire_previous,
        )
        .await?;
        let records = versions::all(&self.context.pool)
            .await
            .map_err(Error::from)?;
        let info = self.context.predictor.models.info(&model);
        Ok(Response::new(pb::PromoteResponse {
            champion: info.map(|i| version_to_wire(&i, records.get(&model), &view)),
            previous_champion: previous.map(|p| p.to_wire()),
            traffic: Some(traffic_to_wire(&view)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn retire(
        &self,
        request: Request<pb::RetireRequest>,
    ) -> Result<Response<pb::RetireResponse>, Status> {
        let principal = auth::require(&request, &[AuthRole::Admin])?;
        let r = request.into_inner();
        let model = ModelRef::from_wire(r.model.as_ref()).map_err(Error::from)?;
        let view = crate::admin::retire(
            &self.context,
            &model,
            &actor(&principal, &r.actor_user_id)?,
            &r.reason,
        )
        .await?;
        let records = versions::all(&self.context.pool)
            .await
            .map_err(Error::from)?;
        let info = self.context.predictor.models.info(&model);
        Ok(Response::new(pb::RetireResponse {
            version: info.map(|i| version_to_wire(&i, records.get(&model), &view)),
            traffic: Some(traffic_to_wire(&view)),
        }))
    }

    async fn get_scoreboard(
        &self,
        request: Request<pb::GetScoreboardRequest>,
    ) -> Result<Response<pb::GetScoreboardResponse>, Status> {
        let r = request.into_inner();
        let model = ModelRef::from_wire(r.model.as_ref()).map_err(Error::from)?;
        if self.context.predictor.models.info(&model).is_none() {
            return Err(Error::NotFound(format!("model version {model} not found")).into());
        }
        let window = self.window(r.window.as_ref())?;
        let symbol = symbol_filter(&r.symbol)?;
        let board = self.scoreboard(&model, window, symbol.as_ref()).await?;
        Ok(Response::new(pb::GetScoreboardResponse {
            scoreboard: Some(board),
        }))
    }

    async fn list_scoreboards(
        &self,
        request: Request<pb::ListScoreboardsRequest>,
    ) -> Result<Response<pb::ListScoreboardsResponse>, Status> {
        let r = request.into_inner();
        let window = self.window(r.window.as_ref())?;
        let symbol = symbol_filter(&r.symbol)?;
        let traffic = self.context.predictor.traffic.current();
        let mut models: Vec<ModelRef> = self
            .context
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
            scoreboards.push(self.scoreboard(model, window, symbol.as_ref()).await?);
        }
        Ok(Response::new(pb::ListScoreboardsResponse { scoreboards }))
    }

    async fn list_predictions(
        &self,
        request: Request<pb::ListPredictionsRequest>,
    ) -> Result<Response<pb::ListPredictionsResponse>, Status> {
        let principal = Principal::of(&request);
        let admin = principal.as_ref().is_some_and(|p| p.has(AuthRole::Admin));
        let r = request.into_inner();
        let requested = user_id("user_id", &r.user_id)?;
        let user = match (requested, admin) {
            (None, true) => None,
            // Without a user: the predictions no user is attached to (the public track
            // record: bar loop, anonymous requests).
            (None, false) => Some(None),
            (Some(id), true) => Some(Some(id)),
            (Some(id), false) => {
                let own = principal
                    .as_ref()
                    .is_some_and(|p| p.user_id.eq_ignore_ascii_case(&id.to_string()));
                if !own {
                    return Err(Error::PermissionDenied(
                        "only admins may list another user's predictions".into(),
                    )
                    .into());
                }
                Some(Some(id))
            }
        };
        let limit = wire::page_size(r.page_size, 100, 1000)?;
        let after = wire::page_after(&r.page_token)?;
        let before = if after.is_empty() {
            None
        } else {
            Some(
                Uuid::parse_str(&after)
                    .map_err(|_| Error::invalid("page_token", "not a token from this API"))?,
            )
        };
        let filter = Filter {
            symbol: symbol_filter(&r.symbol)?.map(|s| s.as_str().to_owned()),
            model: r
                .model
                .as_ref()
                .map(|m| ModelRef::parse(&m.name, &m.version))
                .transpose()
                .map_err(Error::from)?,
            user,
            include_shadow: r.include_shadow,
            matured: match pb::MaturityFilter::try_from(r.maturity) {
                Ok(pb::MaturityFilter::Matured) => Some(true),
                Ok(pb::MaturityFilter::Pending) => Some(false),
                Ok(pb::MaturityFilter::Unspecified) => None,
                Err(_) => return Err(Error::invalid("maturity", "unknown filter").into()),
            },
            since: r.since.as_ref().and_then(wire::datetime),
            until: r.until.as_ref().and_then(wire::datetime),
            before,
        };
        let mut rows = predictions::list(&self.context.pool, &filter, limit + 1)
            .await
            .map_err(Error::from)?;
        let next_page_token =
            wire::next_page_token(&mut rows, limit as usize, |r| r.id.to_string());
        Ok(Response::new(pb::ListPredictionsResponse {
            predictions: rows.into_iter().map(stored_to_wire).collect(),
            next_page_token,
        }))
    }
}

fn symbol_filter(raw: &str) -> Result<Option<Symbol>> {
    if raw.trim().is_empty() {
        Ok(None)
    } else {
        Ok(Some(Symbol::parse(raw)?))
    }
}

impl Api {
    fn window(&self, window: Option<&pb::ScoreWindow>) -> Result<Window> {
        use pb::score_window::Window as W;
        match window.and_then(|w| w.window) {
            None => Ok(Window::Last(self.context.scoring.window)),
            Some(W::Last(n)) if (1..=100_000).contains(&n) => Ok(Window::Last(n)),
            Some(W::Last(n)) => Err(Error::invalid(
                "window.last",
                format!("must be 1-100000, got {n}"),
            )),
            Some(W::Period(period)) => {
                let start = period.start.as_ref().and_then(wire::datetime);
                let end = period.end.as_ref().and_then(wire::datetime);
                if let (Some(s), Some(e)) = (start, end)
                    && e < s
                {
                    return Err(Error::invalid("window.period", "end is before start"));
                }
                Ok(Window::Period { start, end })
            }
        }
    }

    async fn scoreboard(
        &self,
        model: &ModelRef,
        window: Window,
        symbol: Option<&Symbol>,
    ) -> Result<pb::Scoreboard> {
        let pool = &self.context.pool;
        let symbol_text = symbol.map(|s| s.as_str());
        let mut conn = pool.acquire().await?;
        let loaded = scores::load(&mut conn, model, window, symbol_text).await?;
        let nominal = loaded
            .nominal_coverage
            .or_else(|| {
                self.context
                    .predictor
                    .models
                    .served(model)
                    .map(|s| s.verified.levels.nominal_coverage())
            })
            .unwrap_or(0.0);
        let metrics = Metrics::of(&loaded.scored, nominal);
        let traffic = self.context.predictor.traffic.current();
        let champion = traffic.traffic.champion().clone();
        let versus_champion = if *model == champion {
            None
        } else {
            scoreboard::compare(
                &mut conn,
                model,
                &champion,
                window,
                symbol_text,
                &self.context.scoring,
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
            Window::Last(_) => scoreboard::period(loaded.first_target, loaded.last_target),
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

    async fn models(&self, name: Option<&str>, include_retired: bool) -> Result<Vec<pb::Model>> {
        let records = versions::all(&self.context.pool).await?;
        let traffic = self.context.predictor.traffic.current();
        let mut by_name: BTreeMap<String, Vec<pb::ModelVersion>> = BTreeMap::new();
        let mut infos = self.context.predictor.models.list();
        // Newest first: by first-seen time, then version text.
        infos.sort_by(|a, b| {
            let at = |i: &VersionInfo| records.get(&i.model).and_then(|r| r.created_at);
            at(b)
                .cmp(&at(a))
                .then_with(|| b.model.version().cmp(a.model.version()))
        });
        for info in infos {
            if name.is_some_and(|n| n != info.model.name()) {
                continue;
            }
            if info.status == ServingStatus::Retired && !include_retired {
                continue;
            }
            by_name
                .entry(info.model.name().to_owned())
                .or_default()
                .push(version_to_wire(&info, records.get(&info.model), &traffic));
        }
        Ok(by_name
            .into_iter()
            .map(|(name, versions)| pb::Model { name, versions })
            .collect())
    }
}

fn traffic_from_wire(traffic: Option<&pb::Traffic>) -> Result<Traffic> {
    let traffic = traffic.ok_or_else(|| Error::invalid("traffic", "is required"))?;
    let splits = traffic
        .splits
        .iter()
        .map(|s| {
            Ok(Split {
                model: ModelRef::from_wire(s.model.as_ref())?,
                percent: s.percent,
            })
        })
        .collect::<Result<Vec<_>, crate::domain::model_ref::ModelRefError>>()?;
    let shadows = traffic
        .shadows
        .iter()
        .map(|m| ModelRef::parse(&m.name, &m.version))
        .collect::<Result<Vec<_>, _>>()?;
    let champion = ModelRef::from_wire(traffic.champion.as_ref())?;
    Ok(Traffic::new(splits, shadows, champion)?)
}

pub fn traffic_to_wire(view: &TrafficView) -> pb::Traffic {
    pb::Traffic {
        splits: view
            .traffic
            .splits()
            .iter()
            .map(|s| pb::TrafficSplit {
                model: Some(s.model.to_wire()),
                percent: s.percent,
            })
            .collect(),
        shadows: view
            .traffic
            .shadows()
            .iter()
            .map(ModelRef::to_wire)
            .collect(),
        champion: Some(view.traffic.champion().to_wire()),
        updated_at: Some(wire::timestamp(view.updated_at)),
        updated_by: view.updated_by.clone(),
    }
}

fn version_to_wire(
    info: &VersionInfo,
    record: Option<&versions::Record>,
    traffic: &TrafficView,
) -> pb::ModelVersion {
    let retired = record.and_then(|r| r.retired_at);
    let status = if retired.is_some() {
        pb::ModelStatus::Retired
    } else {
        match info.status {
            ServingStatus::Loading => pb::ModelStatus::Loading,
            ServingStatus::Ready => pb::ModelStatus::Ready,
            ServingStatus::Failed => pb::ModelStatus::Failed,
            ServingStatus::Retired => pb::ModelStatus::Retired,
        }
    };
    let status_reason = match (status, record.and_then(|r| r.retire_reason.clone())) {
        (pb::ModelStatus::Retired, Some(reason)) if !reason.is_empty() => reason,
        _ => info.reason.clone(),
    };
    let role = if status == pb::ModelStatus::Retired {
        Role::Idle
    } else {
        traffic.traffic.role_of(&info.model)
    };
    pb::ModelVersion {
        model: Some(info.model.to_wire()),
        status: status.into(),
        status_reason,
        role: role_to_wire(role).into(),
        traffic_percent: traffic.traffic.percent_of(&info.model),
        sha256: info.served.as_ref().map_or_else(
            || info.registered_sha256.clone(),
            |s| s.verified.sha256.clone(),
        ),
        card: info.served.as_ref().map(|s| card_to_wire(&s.verified.card)),
        created_at: record.and_then(|r| r.created_at).map(wire::timestamp),
        loaded_at: info
            .served
            .as_ref()
            .map(|s| s.loaded_at)
            .or_else(|| record.and_then(|r| r.loaded_at))
            .map(wire::timestamp),
        retired_at: retired.map(wire::timestamp),
    }
}

fn day_start(date: NaiveDate) -> DateTime<Utc> {
    date.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
}

fn split_period(split: &CardSplit) -> pb::Period {
    pb::Period {
        start: Some(wire::timestamp(day_start(split.target_from))),
        end: split
            .target_to
            .succ_opt()
            .map(|d| wire::timestamp(day_start(d))),
    }
}

/// The card's metrics in the contract's terms: `naive_mae` is the random walk's MAE and
/// `mase` = MAE / naive MAE on the same days (the card's own MASE uses the training split's
/// scale; both are in `raw_json`).
fn card_metrics(m: &CardPeriodMetrics) -> pb::ScoreMetrics {
    pb::ScoreMetrics {
        count: m.n,
        mae: m.mae.model,
        rmse: m.rmse.model,
        naive_mae: m.mae.baseline.random_walk,
        mase: (m.mae.baseline.random_walk > 0.0).then(|| m.mae.model / m.mae.baseline.random_walk),
        hit_rate: m.hit_rate.model,
        always_up_hit_rate: m.hit_rate.always_up,
        pinball_loss: m.pinball.model,
        baseline_pinball_loss: m.pinball.baseline.gaussian_rolling_vol,
        coverage: m.coverage_90.model,
        nominal_coverage: m.coverage_90.nominal,
        information_coefficient: None,
        rank_information_coefficient: None,
    }
}

fn card_to_wire(card: &Card) -> pb::ModelCard {
    pb::ModelCard {
        description: card.description.clone(),
        features: card
            .features
            .iter()
            .map(|f| format!("{}: {}", f.name, f.formula))
            .collect(),
        window: card.window as u32,
        timeframe: stock::Timeframe::OneDay.into(),
        quantiles: card.quantiles.clone(),
        target: card.target.clone(),
        data_sha256: card.data.sha256.clone(),
        train: Some(split_period(&card.splits.train)),
        validation: Some(split_period(&card.splits.validation)),
        test: Some(split_period(&card.splits.test)),
        training_duration: Some(duration_to_wire(std::time::Duration::from_secs_f64(
            card.training.seconds.max(0.0),
        ))),
        test_metrics: Some(card_metrics(&card.metrics.test)),
        test_metrics_by_year: card
            .metrics
            .test_by_year
            .iter()
            .map(|(year, m)| (year.clone(), card_metrics(m)))
            .collect(),
        limitations: card.limitations(),
        raw_json: card.raw.clone(),
    }
}

fn stored_to_wire(row: Listed) -> pb::StoredPrediction {
    let model = pb::ModelRef {
        name: row.model_name.clone(),
        version: row.model_version.clone(),
    };
    let forecast = pb::Forecast {
        prediction_id: row.id.to_string(),
        symbol: row.symbol.clone(),
        timeframe: i32::from(row.timeframe),
        model: Some(model),
        role: i32::from(row.role),
        as_of: Some(wire::timestamp(row.as_of)),
        target_start: Some(wire::timestamp(row.target_start)),
        last_close: row.last_close,
        point: row.point,
        lower: row.lower,
        upper: row.upper,
        interval_level: interval_level(row.lower_level, row.upper_level),
        p_up: row.p_up,
        quantiles: row
            .levels
            .iter()
            .zip(&row.log_returns)
            .map(|(level, q)| pb::QuantileValue {
                level: *level,
                price: row.last_close * q.exp(),
            })
            .collect(),
        latency: Some(duration_to_wire(std::time::Duration::from_micros(
            row.latency_us.max(0) as u64,
        ))),
        adjustment: i32::from(row.adjustment),
    };
    let outcome = match (
        row.scored_at,
        row.actual_close,
        row.abs_error,
        row.naive_abs_error,
        row.pinball_loss,
        row.inside_interval,
        row.direction_hit,
    ) {
        (
            Some(at),
            Some(actual),
            Some(abs),
            Some(naive),
            Some(pinball),
            Some(inside),
            Some(hit),
        ) => Some(pb::Outcome {
            actual_close: actual,
            scored_at: Some(wire::timestamp(at)),
            abs_error: abs,
            naive_abs_error: naive,
            pinball_loss: pinball,
            inside_interval: inside,
            direction_hit: hit,
        }),
        _ => None,
    };
    pb::StoredPrediction {
        forecast: Some(forecast),
        user_id: row.user_id.map(|u| u.to_string()).unwrap_or_default(),
        served: row.served,
        created_at: Some(wire::timestamp(row.created_at)),
        outcome,
    }
}
