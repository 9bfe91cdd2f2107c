//! The gRPC API (`mirai.prediction.v1.PredictionService`): parses requests, checks roles, calls
//! the service, and translates the answer. No rules live here.

use std::sync::Arc;

use mirai_platform::auth::{self, Principal, Role as AuthRole};
use mirai_platform::wire;
use mirai_proto::prediction::v1 as pb;
use mirai_proto::prediction::v1::prediction_service_server::PredictionService;
use mirai_proto::stock::v1 as stock;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::context::Context;
use crate::domain::model_ref::ModelRef;
use crate::domain::symbol::Symbol;
use crate::domain::traffic::{Split, Traffic};
use crate::error::{Error, Result};
use crate::store::predictions::{self, Filter};
use crate::store::scores::Window;
use crate::{catalog, history, scoreboard};

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

/// The free-text reason of an admin change, kept in the traffic history: at most 500
/// characters, no control characters (PostgreSQL cannot store NUL in `text`).
fn reason(raw: &str) -> Result<&str> {
    let reason = raw.trim();
    if !mirai_platform::wire::is_plain_text(reason, 500) {
        return Err(Error::invalid(
            "reason",
            "at most 500 characters without control characters",
        ));
    }
    Ok(reason)
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
        let models = catalog::models(&self.context, None, include_retired).await?;
        Ok(Response::new(pb::ListModelsResponse { models }))
    }

    async fn get_model(
        &self,
        request: Request<pb::GetModelRequest>,
    ) -> Result<Response<pb::GetModelResponse>, Status> {
        let r = request.into_inner();
        let model = catalog::models(&self.context, Some(&r.name), r.include_retired)
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
        let traffic = self.context.predictor.traffic.current();
        let version = catalog::version(&self.context, &model, &traffic)
            .await?
            .ok_or_else(|| Error::NotFound(format!("model version {model} not found")))?;
        Ok(Response::new(pb::GetModelVersionResponse {
            version: Some(version),
        }))
    }

    async fn get_traffic(
        &self,
        _request: Request<pb::GetTrafficRequest>,
    ) -> Result<Response<pb::GetTrafficResponse>, Status> {
        let traffic = self.context.predictor.traffic.current();
        Ok(Response::new(pb::GetTrafficResponse {
            traffic: Some(catalog::traffic_to_wire(&traffic)),
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
            reason(&r.reason)?,
        )
        .await?;
        Ok(Response::new(pb::SetTrafficResponse {
            traffic: Some(catalog::traffic_to_wire(&view)),
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
            reason(&r.reason)?,
            r.retire_previous,
        )
        .await?;
        Ok(Response::new(pb::PromoteResponse {
            champion: catalog::version(&self.context, &model, &view).await?,
            previous_champion: previous.map(|p| p.to_wire()),
            traffic: Some(catalog::traffic_to_wire(&view)),
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
            reason(&r.reason)?,
        )
        .await?;
        Ok(Response::new(pb::RetireResponse {
            version: catalog::version(&self.context, &model, &view).await?,
            traffic: Some(catalog::traffic_to_wire(&view)),
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
        let board = scoreboard::board(&self.context, &model, window, symbol.as_ref()).await?;
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
        let scoreboards = scoreboard::boards(&self.context, window, symbol.as_ref()).await?;
        Ok(Response::new(pb::ListScoreboardsResponse { scoreboards }))
    }

    async fn list_predictions(
        &self,
        request: Request<pb::ListPredictionsRequest>,
    ) -> Result<Response<pb::ListPredictionsResponse>, Status> {
        let principal = Principal::of(&request);
        let r = request.into_inner();
        let user = history::whose(principal.as_ref(), user_id("user_id", &r.user_id)?)?;
        let limit = wire::page_size(r.page_size, 100, 1000)?;
        let before = wire::page_after_id(&r.page_token)?;
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
            predictions: rows.into_iter().map(history::stored_to_wire).collect(),
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
