//! Handlers: parse into domain types, call one service method, map to a DTO.

use axum::extract::{FromRequest, Request, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Extension;
use axum::Json;
use serde_json::json;

use super::dto::*;
use super::error::ApiError;
use super::extract::{ApiJson, ApiPath, ApiQuery, FastJson};
use super::RouterLimits;
use crate::agent::AgentConfigIn;
use crate::distance::Metric;
use crate::harness::NewQuery;
use crate::hnsw::HnswConfig;
use crate::jobs::Job;
use crate::names::{HarnessName, IndexName};
use crate::service::{AgentView, AutotuneRequest, TrialRequest, Vectune};
use crate::trials::{Axis, Source};
use crate::vectors::{Dims, NewVector, VectorsError};

type ApiResult<T> = Result<T, ApiError>;

pub async fn health() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

pub async fn create_index(
    State(v): State<Vectune>,
    ApiJson(req): ApiJson<CreateIndex>,
) -> ApiResult<impl IntoResponse> {
    let name = IndexName::parse(req.name)?;
    let dims = Dims::parse(req.dims)?;
    let metric = Metric::parse(&req.metric).ok_or(VectorsError::InvalidMetric(req.metric))?;
    let view = v.create_index(name, dims, metric).await?;
    Ok((StatusCode::CREATED, Json(IndexOut::from(view))))
}

pub async fn list_indexes(State(v): State<Vectune>) -> Json<IndexList> {
    Json(IndexList {
        indexes: v.list_indexes().into_iter().map(IndexOut::from).collect(),
    })
}

pub async fn get_index(
    State(v): State<Vectune>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<IndexOut>> {
    Ok(Json(v.get_index(&IndexName::parse(name)?)?.into()))
}

pub async fn delete_index(State(v): State<Vectune>, ApiPath(name): ApiPath<String>) -> ApiResult<StatusCode> {
    v.delete_index(&IndexName::parse(name)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// JSON batches, or with `?format=fvecs|npy` a binary body under its own size limit.
pub async fn append(
    State(v): State<Vectune>,
    Extension(limits): Extension<RouterLimits>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(params): ApiQuery<AppendParams>,
    req: Request,
) -> ApiResult<axum::response::Response> {
    let name = IndexName::parse(name)?;
    if let Some(format) = params.format {
        let limit = limits.max_binary_body_bytes;
        let too_large = || {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("binary bodies are limited to {limit} bytes"),
            )
        };
        let declared = req
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let body = axum::body::to_bytes(req.into_body(), limit)
            .await
            .map_err(|_| too_large())?;
        let (appended, total, first_id, last_id) = v.append_binary(&name, &format, body).await?;
        return Ok(Json(AppendedBinary {
            appended,
            total,
            first_id,
            last_id,
        })
        .into_response());
    }
    let ApiJson(req) = ApiJson::<Append>::from_request(req, &()).await?;
    let batch = req
        .vectors
        .into_iter()
        .map(|x| NewVector {
            id: x.id,
            vector: x.vector,
        })
        .collect();
    let (appended, total) = v.append(&name, batch).await?;
    Ok(Json(Appended { appended, total }).into_response())
}

/// Sync by default; `?async=true` answers 202 with the job at once.
pub async fn activate(
    State(v): State<Vectune>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(params): ApiQuery<AsyncParams>,
) -> ApiResult<axum::response::Response> {
    let name = IndexName::parse(name)?;
    if params.run_async.unwrap_or(false) {
        let job = v.activate_async(&name).await?;
        return Ok((StatusCode::ACCEPTED, Json(JobAccepted::of(&job))).into_response());
    }
    Ok(Json(ActivationOut::from(v.activate(&name).await?)).into_response())
}

pub async fn search(
    State(v): State<Vectune>,
    ApiPath(name): ApiPath<String>,
    FastJson(req): FastJson<Search>,
) -> ApiResult<Json<SearchOut>> {
    let name = IndexName::parse(name)?;
    Ok(Json(v.search(&name, &req.vector, req.k, req.ef_search)?.into()))
}

pub async fn create_harness(
    State(v): State<Vectune>,
    ApiJson(req): ApiJson<CreateHarness>,
) -> ApiResult<impl IntoResponse> {
    let name = HarnessName::parse(req.name)?;
    let index = IndexName::parse(req.index_name)?;
    let queries = req
        .queries
        .into_iter()
        .map(|q| NewQuery {
            id: q.id,
            vector: q.vector,
        })
        .collect();
    let view = v.create_harness(name, &index, req.k, queries).await?;
    Ok((StatusCode::CREATED, Json(HarnessOut::from(view))))
}

pub async fn autogen_harness(
    State(v): State<Vectune>,
    ApiJson(req): ApiJson<AutogenHarness>,
) -> ApiResult<impl IntoResponse> {
    let name = HarnessName::parse(req.name)?;
    let index = IndexName::parse(req.index_name)?;
    let view = v
        .autogen_harness(name, &index, req.queries, req.k, req.seed)
        .await?;
    Ok((StatusCode::CREATED, Json(HarnessOut::from(view))))
}

pub async fn get_harness(
    State(v): State<Vectune>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<HarnessOut>> {
    Ok(Json(v.get_harness(&HarnessName::parse(name)?).await?.into()))
}

pub async fn capture_harness(
    State(v): State<Vectune>,
    ApiJson(req): ApiJson<CaptureHarness>,
) -> ApiResult<impl IntoResponse> {
    let name = HarnessName::parse(req.name)?;
    let index = IndexName::parse(req.index_name)?;
    let view = v
        .capture_harness(name, &index, req.queries, req.k, req.sample_rate)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(HarnessOut::from(view))))
}

pub async fn get_monitor(
    State(v): State<Vectune>,
    ApiPath(index): ApiPath<String>,
) -> ApiResult<Json<MonitorOut>> {
    Ok(Json(v.monitor_settings(&IndexName::parse(index)?)?.into()))
}

pub async fn put_monitor(
    State(v): State<Vectune>,
    ApiPath(index): ApiPath<String>,
    ApiJson(req): ApiJson<MonitorIn>,
) -> ApiResult<Json<MonitorOut>> {
    let index = IndexName::parse(index)?;
    Ok(Json(
        v.set_monitor(&index, req.sample_rate, req.window).await?.into(),
    ))
}

pub async fn run_trial(
    State(v): State<Vectune>,
    ApiJson(req): ApiJson<TrialIn>,
) -> ApiResult<impl IntoResponse> {
    let index = IndexName::parse(req.index_name)?;
    let harness = HarnessName::parse(req.harness)?;
    let config = HnswConfig::parse(&req.config).map_err(crate::service::ServiceError::from)?;
    let trial = v
        .run_trial(TrialRequest {
            index,
            harness,
            config,
            note: req.note,
            source: Source::Manual,
        })
        .await?;
    Ok(Json(trial))
}

pub async fn list_trials(
    State(v): State<Vectune>,
    ApiPath(index): ApiPath<String>,
    ApiQuery(filter): ApiQuery<TrialFilter>,
) -> ApiResult<Json<TrialList>> {
    let index = IndexName::parse(index)?;
    let harness = filter.harness.map(HarnessName::parse).transpose()?;
    Ok(Json(TrialList {
        trials: v.list_trials(&index, harness.as_ref()).await?,
    }))
}

pub async fn pareto(
    State(v): State<Vectune>,
    ApiPath(index): ApiPath<String>,
    ApiQuery(filter): ApiQuery<ParetoParams>,
) -> ApiResult<Json<ParetoOut>> {
    let index = IndexName::parse(index)?;
    let harness = filter.harness.map(HarnessName::parse).transpose()?;
    let axes = match filter.axes.as_deref() {
        Some(a) => Axis::parse_list(a).map_err(crate::service::ServiceError::from)?,
        None => vec![Axis::Recall, Axis::P50],
    };
    let front = v.pareto(&index, harness.as_ref(), &axes).await?;
    Ok(Json(ParetoOut {
        index_name: index.to_string(),
        harness: harness.map(|h| h.to_string()),
        axes: axes.iter().map(|a| a.as_str()).collect(),
        points: front.iter().map(|t| ParetoPoint::from(&**t)).collect(),
    }))
}

pub async fn get_trial(
    State(v): State<Vectune>,
    ApiPath((index, trial)): ApiPath<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let index = IndexName::parse(index)?;
    Ok(Json(v.get_trial(&index, &trial).await?))
}

pub async fn promote(
    State(v): State<Vectune>,
    ApiPath((index, trial)): ApiPath<(String, String)>,
    ApiQuery(p): ApiQuery<PromoteParams>,
) -> ApiResult<Json<PromotedOut>> {
    let index = IndexName::parse(index)?;
    let state = v.promote(&index, &trial, p.promoted_by, p.note).await?;
    Ok(Json(PromotedOut::new(index.as_str(), state)))
}

pub async fn rollback(
    State(v): State<Vectune>,
    ApiPath(index): ApiPath<String>,
) -> ApiResult<Json<PromotedOut>> {
    let index = IndexName::parse(index)?;
    let state = v.rollback(&index).await?;
    Ok(Json(PromotedOut::new(index.as_str(), state)))
}

pub async fn promoted(
    State(v): State<Vectune>,
    ApiPath(index): ApiPath<String>,
) -> ApiResult<Json<PromotedOut>> {
    let index = IndexName::parse(index)?;
    let state = v.promoted(&index).await?;
    Ok(Json(PromotedOut::new(index.as_str(), state)))
}

/// Sync by default; `?async=true` answers 202 with the job at once.
pub async fn autotune(
    State(v): State<Vectune>,
    ApiQuery(params): ApiQuery<AsyncParams>,
    ApiJson(req): ApiJson<AutotuneIn>,
) -> ApiResult<axum::response::Response> {
    let (index, harness, fields) = req.fields();
    let req = AutotuneRequest {
        index: IndexName::parse(index)?,
        harness: HarnessName::parse(harness)?,
        fields,
    };
    if params.run_async.unwrap_or(false) {
        let job = v.autotune_async(req).await?;
        return Ok((StatusCode::ACCEPTED, Json(JobAccepted::of(&job))).into_response());
    }
    Ok(Json(v.autotune(req).await?).into_response())
}

pub async fn get_job(State(v): State<Vectune>, ApiPath(id): ApiPath<String>) -> ApiResult<Json<Job>> {
    Ok(Json(v.job(&id)?))
}

pub async fn cancel_job(State(v): State<Vectune>, ApiPath(id): ApiPath<String>) -> ApiResult<Json<Job>> {
    Ok(Json(v.cancel_job(&id)?))
}

pub async fn list_jobs(
    State(v): State<Vectune>,
    ApiQuery(params): ApiQuery<JobsParams>,
) -> ApiResult<Json<JobList>> {
    let index = IndexName::parse(params.index)?;
    Ok(Json(JobList {
        jobs: v.jobs_of(&index)?,
    }))
}

pub async fn put_agent(
    State(v): State<Vectune>,
    ApiPath(index): ApiPath<String>,
    ApiJson(body): ApiJson<AgentConfigIn>,
) -> ApiResult<Json<AgentView>> {
    Ok(Json(v.put_agent(&IndexName::parse(index)?, body).await?))
}

pub async fn get_agent(
    State(v): State<Vectune>,
    ApiPath(index): ApiPath<String>,
) -> ApiResult<Json<AgentView>> {
    Ok(Json(v.get_agent(&IndexName::parse(index)?).await?))
}

pub async fn delete_agent(
    State(v): State<Vectune>,
    ApiPath(index): ApiPath<String>,
) -> ApiResult<StatusCode> {
    v.delete_agent(&IndexName::parse(index)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route",
    )
}
