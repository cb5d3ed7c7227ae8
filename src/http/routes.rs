//! Handlers: parse into domain types, call one service method, map to a DTO. Each one's
//! `#[utoipa::path]` is what `/openapi.json` says of it; the router is built from the same
//! list (`http::api`), so the two cannot drift.

use axum::extract::{FromRequest, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;

use super::dto::*;
use super::error::ApiError;
use super::extract::{ApiJson, ApiPath, ApiQuery, FastJson, IndexAndPath, IndexPath};
use super::RouterLimits;
use crate::agent::AgentConfigIn;
use crate::distance::Metric;
use crate::harness::NewQuery;
use crate::names::{HarnessName, IndexName};
use crate::params::HnswConfig;
use crate::service::{AutotuneRequest, TrialRequest, Vectune};
use crate::trials::{Axis, Source};
use crate::vectors::{Dims, NewVector, VectorsError};

type ApiResult<T> = Result<T, ApiError>;

/// Liveness: answers as long as the process serves HTTP.
#[utoipa::path(get, path = "/health", tag = "operations", security(()),
    responses((status = 200, body = Status, description = "Done")))]
pub async fn health() -> Json<Status> {
    Json(Status { status: "ok" })
}

/// Readiness: `200` once the store answers and start-up re-activation is done, `503`
/// before that and while shutting down.
#[utoipa::path(get, path = "/ready", tag = "operations", security(()),
    responses((status = 200, body = Status, description = "Done"), (status = 503, body = ErrorBody, description = "Not now, nothing changed: not_ready, overloaded with Retry-After, timeout or shutting_down")))]
pub async fn ready(State(v): State<Vectune>) -> ApiResult<Json<Status>> {
    v.ready().await?;
    Ok(Json(Status { status: "ready" }))
}

/// Creates an index.
#[utoipa::path(post, path = "/vectors/indexes", tag = "indexes", request_body = CreateIndex,
    responses((status = 201, body = IndexOut, description = "Created",
        links(("GetIndex" = (operation_id = "get_index", parameters(("index" = "$response.body#/name")))), ("AppendVectors" = (operation_id = "append", parameters(("index" = "$response.body#/name")))), ("Activate" = (operation_id = "activate", parameters(("index" = "$response.body#/name")))), ("GetMonitor" = (operation_id = "get_monitor", parameters(("index" = "$response.body#/name")))), ("ListTrials" = (operation_id = "list_trials", parameters(("index" = "$response.body#/name")))), ("GetAgent" = (operation_id = "get_agent", parameters(("index" = "$response.body#/name")))), ("DeleteIndex" = (operation_id = "delete_index", parameters(("index" = "$response.body#/name")))))), (status = "4XX", body = ErrorBody, description = "Refused, nothing changed: bad input 400, no or wrong token 401, read-only token 403, unknown name 404, conflict 409, too large 413, unusable 422"),
        (status = 503, body = ErrorBody, description = "Not now, nothing changed: not_ready, overloaded with Retry-After, timeout or shutting_down")))]
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

/// Every index, by name.
#[utoipa::path(get, path = "/vectors/indexes", tag = "indexes",
    responses((status = 200, body = IndexList, description = "Done"), (status = "4XX", body = ErrorBody, description = "Refused, nothing changed: bad input 400, no or wrong token 401, read-only token 403, unknown name 404, conflict 409, too large 413, unusable 422"),
        (status = 503, body = ErrorBody, description = "Not now, nothing changed: not_ready, overloaded with Retry-After, timeout or shutting_down")))]
pub async fn list_indexes(State(v): State<Vectune>) -> Json<IndexList> {
    Json(IndexList {
        indexes: v.list_indexes().into_iter().map(IndexOut::from).collect(),
    })
}

/// One index, with what serves it and its live recall.
#[utoipa::path(get, path = "/vectors/indexes/{index}", tag = "indexes",
    params(("index" = String, Path, description = "index name", pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")),
    responses((status = 200, body = IndexOut, description = "Done"), (status = "4XX", body = ErrorBody, description = "Refused, nothing changed: bad input 400, no or wrong token 401, read-only token 403, unknown name 404, conflict 409, too large 413, unusable 422"),
        (status = 503, body = ErrorBody, description = "Not now, nothing changed: not_ready, overloaded with Retry-After, timeout or shutting_down")))]
pub async fn get_index(State(v): State<Vectune>, IndexPath(name): IndexPath) -> ApiResult<Json<IndexOut>> {
    Ok(Json(v.get_index(&name)?.into()))
}

/// Deletes an index with its vectors, harnesses, trials, promotions, jobs and graphs.
#[utoipa::path(delete, path = "/vectors/indexes/{index}", tag = "indexes",
    params(("index" = String, Path, description = "index name", pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")),
    responses((status = 204, description = "deleted"), (status = "4XX", body = ErrorBody, description = "Refused, nothing changed: bad input 400, no or wrong token 401, read-only token 403, unknown name 404, conflict 409, too large 413, unusable 422"),
        (status = 503, body = ErrorBody, description = "Not now, nothing changed: not_ready, overloaded with Retry-After, timeout or shutting_down")))]
pub async fn delete_index(State(v): State<Vectune>, IndexPath(name): IndexPath) -> ApiResult<StatusCode> {
    v.delete_index(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Appends vectors: a JSON batch, or with `?format=fvecs|npy` a binary body
/// (`application/octet-stream`, its own size limit) whose rows get ids continuing from
/// the index's total.
#[utoipa::path(post, path = "/vectors/indexes/{index}/vectors", tag = "indexes",
    params(("index" = String, Path, description = "index name", pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"), AppendParams),
    request_body(content(
        (Append = "application/json"),
        (Vec<u8> = "application/octet-stream"),
    )),
    responses((status = 200, body = AppendOut, description = "Done"), (status = "4XX", body = ErrorBody, description = "Refused, nothing changed: bad input 400, no or wrong token 401, read-only token 403, unknown name 404, conflict 409, too large 413, unusable 422"),
        (status = 503, body = ErrorBody, description = "Not now, nothing changed: not_ready, overloaded with Retry-After, timeout or shutting_down")))]
pub async fn append(
    State(v): State<Vectune>,
    Extension(limits): Extension<RouterLimits>,
    Extension(budget): Extension<std::sync::Arc<crate::http::IngestBudget>>,
    IndexPath(name): IndexPath,
    ApiQuery(params): ApiQuery<AppendParams>,
    req: Request,
) -> ApiResult<Json<AppendOut>> {
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
        // admitted by bytes in flight before a byte is read: held until the append is done
        let bytes = declared.unwrap_or(limit as u64);
        let Some(_ticket) = budget.admit(bytes) else {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                format!(
                    "binary uploads in flight hold {} of {} bytes; this one ({bytes} bytes) must wait",
                    budget.in_flight(),
                    budget.max()
                ),
            ));
        };
        // parsed as it arrives: the body is never held whole (an upload costs its rows)
        let mut parser = v.binary_parser(&name, &format, declared)?;
        let mut body = req.into_body().into_data_stream();
        while let Some(chunk) = futures::StreamExt::next(&mut body).await {
            let chunk = chunk.map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_binary_body",
                    format!("the body ended early or could not be read ({e}); nothing was stored"),
                )
            })?;
            if parser.seen() + chunk.len() as u64 > limit as u64 {
                return Err(too_large());
            }
            parser
                .feed(&chunk)
                .map_err(|e| crate::service::ServiceError::from(crate::vectors::VectorsError::from(e)))?;
        }
        let (appended, total, first_id, last_id) = v.append_parsed(&name, parser).await?;
        return Ok(Json(AppendOut::Binary(AppendedBinary {
            appended,
            total,
            first_id,
            last_id,
        })));
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
    let (appended, total) = if params.upsert == Some(true) {
        v.upsert(&name, batch).await?
    } else {
        v.append(&name, batch).await?
    };
    Ok(Json(AppendOut::Json(Appended { appended, total })))
}

/// Builds (or loads) the next generation with the promoted config and swaps it in while
/// the old one serves. Sync by default; `?async=true` answers 202 with the job at once.
#[utoipa::path(post, path = "/vectors/indexes/{index}/activate", tag = "indexes",
    params(("index" = String, Path, description = "index name", pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"), AsyncParams),
    responses((status = 200, body = ActivationOut, description = "Done"), (status = 202, body = JobAccepted, description = "Accepted: poll the job",
        links(("GetJob" = (operation_id = "get_job", parameters(("job_id" = "$response.body#/job_id")))), ("CancelJob" = (operation_id = "cancel_job", parameters(("job_id" = "$response.body#/job_id")))))),
        (status = "4XX", body = ErrorBody, description = "Refused, nothing changed: bad input 400, no or wrong token 401, read-only token 403, unknown name 404, conflict 409, too large 413, unusable 422"), (status = 503, body = ErrorBody, description = "overloaded or shutting down")))]
pub async fn activate(
    State(v): State<Vectune>,
    IndexPath(name): IndexPath,
    ApiQuery(params): ApiQuery<AsyncParams>,
) -> ApiResult<Response> {
    if params.run_async.unwrap_or(false) {
        let job = v.activate_async(&name).await?;
        return Ok((StatusCode::ACCEPTED, Json(JobAccepted::of(&job))).into_response());
    }
    Ok(Json(ActivationOut::from(v.activate(&name).await?)).into_response())
}

/// The live recall monitor's settings of an index.
#[utoipa::path(get, path = "/vectors/indexes/{index}/monitor", tag = "indexes",
    params(("index" = String, Path, description = "index name", pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")),
    responses((status = 200, body = MonitorOut, description = "Done"), (status = "4XX", body = ErrorBody, description = "Refused, nothing changed: bad input 400, no or wrong token 401, read-only token 403, unknown name 404, conflict 409, too large 413, unusable 422"),
        (status = 503, body = ErrorBody, description = "Not now, nothing changed: not_ready, overloaded with Retry-After, timeout or shutting_down")))]
pub async fn get_monitor(
    State(v): State<Vectune>,
    IndexPath(index): IndexPath,
) -> ApiResult<Json<MonitorOut>> {
    Ok(Json(v.monitor_settings(&index)?.into()))
}

/// Sets the monitor of an index (a field left out keeps its value).
#[utoipa::path(put, path = "/vectors/indexes/{index}/monitor", tag = "indexes",
    params(("index" = String, Path, description = "index name", pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")), request_body = MonitorIn,
    responses((status = 200, body = MonitorOut, description = "Done"), (status = "4XX", body = ErrorBody, description = "Refused, nothing changed: bad input 400, no or wrong token 401, read-only token 403, unknown name 404, conflict 409, too large 413, unusable 422"),
        (status = 503, body = ErrorBody, description = "Not now, nothing changed: not_ready, overloaded with Retry-After, timeout or shutting_down")))]
pub async fn put_monitor(
    State(v): State<Vectune>,
    IndexPath(index): IndexPath,
    ApiJson(req): ApiJson<MonitorIn>,
) -> ApiResult<Json<MonitorOut>> {
    Ok(Json(
        v.set_monitor(&index, req.sample_rate, req.window).await?.into(),
    ))
}

/// Searches the serving generation (never waits behind builds or the job queue).
#[utoipa::path(post, path = "/vectors/search/{index}", tag = "search",
    params(("index" = String, Path, description = "index name", pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")), request_body = Search,
    responses((status = 200, body = SearchOut, description = "Done"), (status = "4XX", body = ErrorBody, description = "Refused, nothing changed: bad input 400, no or wrong token 401, read-only token 403, unknown name 404, conflict 409, too large 413, unusable 422"),
        (status = 503, body = ErrorBody, description = "Not now, nothing changed: not_ready, overloaded with Retry-After, timeout or shutting_down")))]
pub async fn search(
    State(v): State<Vectune>,
    IndexPath(name): IndexPath,
    FastJson(req): FastJson<Search>,
) -> ApiResult<Json<SearchOut>> {
    Ok(Json(v.search(&name, &req.vector, req.k, req.ef_search)?.into()))
}

/// Creates a harness from explicit queries; its exact ground truth is computed now.
#[utoipa::path(post, path = "/vectors/harness", tag = "harnesses", request_body = CreateHarness,
    responses((status = 201, body = HarnessOut, description = "Created", links(("GetHarness" = (operation_id = "get_harness", parameters(("name" = "$response.body#/name")))))), (status = "4XX", body = ErrorBody, description = "Refused, nothing changed: bad input 400, no or wrong token 401, read-only token 403, unknown name 404, conflict 409, too large 413, unusable 422"),
        (status = 503, body = ErrorBody, description = "overloaded or shutting down")))]
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

/// Creates a harness by sampling stored vectors (seeded).
#[utoipa::path(post, path = "/vectors/harness/autogen", tag = "harnesses", request_body = AutogenHarness,
    responses((status = 201, body = HarnessOut, description = "Created", links(("GetHarness" = (operation_id = "get_harness", parameters(("name" = "$response.body#/name")))))), (status = "4XX", body = ErrorBody, description = "Refused, nothing changed: bad input 400, no or wrong token 401, read-only token 403, unknown name 404, conflict 409, too large 413, unusable 422"),
        (status = 503, body = ErrorBody, description = "overloaded or shutting down")))]
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

/// One harness; its ground truth is shown when it matches the index's vectors.
#[utoipa::path(get, path = "/vectors/harness/{name}", tag = "harnesses",
    params(("name" = String, Path, description = "harness name", pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")),
    responses((status = 200, body = HarnessOut, description = "Done"), (status = "4XX", body = ErrorBody, description = "Refused, nothing changed: bad input 400, no or wrong token 401, read-only token 403, unknown name 404, conflict 409, too large 413, unusable 422"),
        (status = 503, body = ErrorBody, description = "Not now, nothing changed: not_ready, overloaded with Retry-After, timeout or shutting_down")))]
pub async fn get_harness(
    State(v): State<Vectune>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<HarnessOut>> {
    Ok(Json(v.get_harness(&HarnessName::parse(name)?).await?.into()))
}

/// Starts capturing a harness from the index's live searches (202: it fills as traffic
/// comes).
#[utoipa::path(post, path = "/vectors/harness/capture", tag = "harnesses", request_body = CaptureHarness,
    responses((status = 202, body = HarnessOut, description = "Accepted: poll the job"), (status = "4XX", body = ErrorBody, description = "Refused, nothing changed: bad input 400, no or wrong token 401, read-only token 403, unknown name 404, conflict 409, too large 413, unusable 422"),
        (status = 503, body = ErrorBody, description = "Not now, nothing changed: not_ready, overloaded with Retry-After, timeout or shutting_down")))]
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

/// Builds a graph under one config, measures it against a harness and journals it.
#[utoipa::path(post, path = "/vectors/hnsw/trial", tag = "trials", request_body = TrialIn,
    responses((status = 200, body = TrialOut, description = "Done",
        links(("GetTrial" = (operation_id = "get_trial", parameters(("index" = "$response.body#/index_name"), ("trial_id" = "$response.body#/id")))), ("Promote" = (operation_id = "promote", parameters(("index" = "$response.body#/index_name"), ("trial_id" = "$response.body#/id")))), ("Pareto" = (operation_id = "pareto", parameters(("index" = "$response.body#/index_name")))))), (status = "4XX", body = ErrorBody, description = "Refused, nothing changed: bad input 400, no or wrong token 401, read-only token 403, unknown name 404, conflict 409, too large 413, unusable 422"),
        (status = 503, body = ErrorBody, description = "overloaded or shutting down")))]
pub async fn run_trial(
    State(v): State<Vectune>,
    ApiJson(req): ApiJson<TrialIn>,
) -> ApiResult<Json<TrialOut>> {
    let index = IndexName::parse(req.index_name)?;
    let harness = HarnessName::parse(req.harness)?;
    let config =
        HnswConfig::parse_within(&req.config, &v.bounds()).map_err(crate::service::ServiceError::from)?;
    let trial = v
        .run_trial(TrialRequest {
            index,
            harness,
            config,
            note: req.note,
            source: Source::Manual,
        })
        .await?;
    Ok(Json(TrialOut::from(&*trial)))
}

/// The trial journal of an index, oldest first.
#[utoipa::path(get, path = "/vectors/hnsw/trials/{index}", tag = "trials",
    params(("index" = String, Path, description = "index name", pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"), TrialFilter),
    responses((status = 200, body = TrialList, description = "Done"), (status = "4XX", body = ErrorBody, description = "Refused, nothing changed: bad input 400, no or wrong token 401, read-only token 403, unknown name 404, conflict 409, too large 413, unusable 422"),
        (status = 503, body = ErrorBody, description = "Not now, nothing changed: not_ready, overloaded with Retry-After, timeout or shutting_down")))]
pub async fn list_trials(
    State(v): State<Vectune>,
    IndexPath(index): IndexPath,
    ApiQuery(filter): ApiQuery<TrialFilter>,
) -> ApiResult<Json<TrialList>> {
    let harness = filter.harness.map(HarnessName::parse).transpose()?;
    let trials = v.list_trials(&index, harness.as_ref()).await?;
    Ok(Json(TrialList {
        trials: trials.iter().map(|t| TrialOut::from(&**t)).collect(),
    }))
}

/// The Pareto frontier of an index's trials over the chosen objectives.
#[utoipa::path(get, path = "/vectors/hnsw/pareto/{index}", tag = "trials",
    params(("index" = String, Path, description = "index name", pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"), ParetoParams),
    responses((status = 200, body = ParetoOut, description = "Done"), (status = "4XX", body = ErrorBody, description = "Refused, nothing changed: bad input 400, no or wrong token 401, read-only token 403, unknown name 404, conflict 409, too large 413, unusable 422"),
        (status = 503, body = ErrorBody, description = "Not now, nothing changed: not_ready, overloaded with Retry-After, timeout or shutting_down")))]
pub async fn pareto(
    State(v): State<Vectune>,
    IndexPath(index): IndexPath,
    ApiQuery(filter): ApiQuery<ParetoParams>,
) -> ApiResult<Json<ParetoOut>> {
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

/// One journaled trial.
#[utoipa::path(get, path = "/vectors/hnsw/trials/{index}/{trial_id}", tag = "trials",
    params(("index" = String, Path, description = "index name", pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"), ("trial_id" = String, Path, description = "trial id")),
    responses((status = 200, body = TrialOut, description = "Done"), (status = "4XX", body = ErrorBody, description = "Refused, nothing changed: bad input 400, no or wrong token 401, read-only token 403, unknown name 404, conflict 409, too large 413, unusable 422"),
        (status = 503, body = ErrorBody, description = "Not now, nothing changed: not_ready, overloaded with Retry-After, timeout or shutting_down")))]
pub async fn get_trial(
    State(v): State<Vectune>,
    IndexAndPath(index, trial): IndexAndPath,
) -> ApiResult<Json<TrialOut>> {
    Ok(Json(TrialOut::from(&*v.get_trial(&index, &trial).await?)))
}

/// Promotes a trial's config: the next activation builds with it.
#[utoipa::path(post, path = "/vectors/hnsw/promote/{index}/{trial_id}", tag = "promotion",
    params(("index" = String, Path, description = "index name", pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"), ("trial_id" = String, Path, description = "trial id"), PromoteParams),
    responses((status = 200, body = PromotedOut, description = "Done"), (status = "4XX", body = ErrorBody, description = "Refused, nothing changed: bad input 400, no or wrong token 401, read-only token 403, unknown name 404, conflict 409, too large 413, unusable 422"),
        (status = 503, body = ErrorBody, description = "Not now, nothing changed: not_ready, overloaded with Retry-After, timeout or shutting_down")))]
pub async fn promote(
    State(v): State<Vectune>,
    IndexAndPath(index, trial): IndexAndPath,
    ApiQuery(p): ApiQuery<PromoteParams>,
) -> ApiResult<Json<PromotedOut>> {
    let state = v.promote(&index, &trial, p.promoted_by, p.note).await?;
    Ok(Json(PromotedOut::new(index.as_str(), state)))
}

/// Rolls the promotion registry back one step.
#[utoipa::path(post, path = "/vectors/hnsw/rollback/{index}", tag = "promotion",
    params(("index" = String, Path, description = "index name", pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")),
    responses((status = 200, body = PromotedOut, description = "Done"), (status = "4XX", body = ErrorBody, description = "Refused, nothing changed: bad input 400, no or wrong token 401, read-only token 403, unknown name 404, conflict 409, too large 413, unusable 422"),
        (status = 503, body = ErrorBody, description = "Not now, nothing changed: not_ready, overloaded with Retry-After, timeout or shutting_down")))]
pub async fn rollback(State(v): State<Vectune>, IndexPath(index): IndexPath) -> ApiResult<Json<PromotedOut>> {
    let state = v.rollback(&index).await?;
    Ok(Json(PromotedOut::new(index.as_str(), state)))
}

/// The promotion registry of an index: current and history.
#[utoipa::path(get, path = "/vectors/hnsw/promoted/{index}", tag = "promotion",
    params(("index" = String, Path, description = "index name", pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")),
    responses((status = 200, body = PromotedOut, description = "Done"), (status = "4XX", body = ErrorBody, description = "Refused, nothing changed: bad input 400, no or wrong token 401, read-only token 403, unknown name 404, conflict 409, too large 413, unusable 422"),
        (status = 503, body = ErrorBody, description = "Not now, nothing changed: not_ready, overloaded with Retry-After, timeout or shutting_down")))]
pub async fn promoted(State(v): State<Vectune>, IndexPath(index): IndexPath) -> ApiResult<Json<PromotedOut>> {
    let state = v.promoted(&index).await?;
    Ok(Json(PromotedOut::new(index.as_str(), state)))
}

/// Runs an autotune (grid or adaptive), picks a winner that clears the gate and promotes
/// it by the rule asked. Sync by default; `?async=true` answers 202 with the job at once.
#[utoipa::path(post, path = "/vectors/hnsw/autotune", tag = "autotune",
    params(AsyncParams), request_body = AutotuneIn,
    responses((status = 200, body = AutotuneOut, description = "Done"), (status = 202, body = JobAccepted, description = "Accepted: poll the job",
        links(("GetJob" = (operation_id = "get_job", parameters(("job_id" = "$response.body#/job_id")))), ("CancelJob" = (operation_id = "cancel_job", parameters(("job_id" = "$response.body#/job_id")))))),
        (status = "4XX", body = ErrorBody, description = "Refused, nothing changed: bad input 400, no or wrong token 401, read-only token 403, unknown name 404, conflict 409, too large 413, unusable 422"), (status = 503, body = ErrorBody, description = "overloaded or shutting down")))]
pub async fn autotune(
    State(v): State<Vectune>,
    ApiQuery(params): ApiQuery<AsyncParams>,
    ApiJson(req): ApiJson<AutotuneIn>,
) -> ApiResult<Response> {
    if let Some(field) = req.unknown.keys().next() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            format!("unknown field `{}`", field.chars().take(64).collect::<String>()),
        ));
    }
    let req = AutotuneRequest {
        index: IndexName::parse(req.index_name)?,
        harness: HarnessName::parse(req.harness)?,
        fields: req.spec,
    };
    if params.run_async.unwrap_or(false) {
        let job = v.autotune_async(req).await?;
        return Ok((StatusCode::ACCEPTED, Json(JobAccepted::of(&job))).into_response());
    }
    Ok(Json(AutotuneOut::from(&v.autotune(req).await?)).into_response())
}

/// One job, with live progress.
#[utoipa::path(get, path = "/vectors/jobs/{job_id}", tag = "jobs",
    params(("job_id" = String, Path, description = "job id")),
    responses((status = 200, body = JobOut, description = "Done"), (status = "4XX", body = ErrorBody, description = "Refused, nothing changed: bad input 400, no or wrong token 401, read-only token 403, unknown name 404, conflict 409, too large 413, unusable 422"),
        (status = 503, body = ErrorBody, description = "Not now, nothing changed: not_ready, overloaded with Retry-After, timeout or shutting_down")))]
pub async fn get_job(State(v): State<Vectune>, ApiPath(id): ApiPath<String>) -> ApiResult<Json<JobOut>> {
    Ok(Json(JobOut::from(&v.job(&id).await?)))
}

/// Asks a job to stop at its next trial or query; answers it as it is now.
#[utoipa::path(delete, path = "/vectors/jobs/{job_id}", tag = "jobs",
    params(("job_id" = String, Path, description = "job id")),
    responses((status = 200, body = JobOut, description = "Done"), (status = "4XX", body = ErrorBody, description = "Refused, nothing changed: bad input 400, no or wrong token 401, read-only token 403, unknown name 404, conflict 409, too large 413, unusable 422"),
        (status = 503, body = ErrorBody, description = "Not now, nothing changed: not_ready, overloaded with Retry-After, timeout or shutting_down")))]
pub async fn cancel_job(State(v): State<Vectune>, ApiPath(id): ApiPath<String>) -> ApiResult<Json<JobOut>> {
    Ok(Json(JobOut::from(&v.cancel_job(&id).await?)))
}

/// The jobs of an index, newest first.
#[utoipa::path(get, path = "/vectors/jobs", tag = "jobs", params(JobsParams),
    responses((status = 200, body = JobList, description = "Done"), (status = "4XX", body = ErrorBody, description = "Refused, nothing changed: bad input 400, no or wrong token 401, read-only token 403, unknown name 404, conflict 409, too large 413, unusable 422"),
        (status = 503, body = ErrorBody, description = "Not now, nothing changed: not_ready, overloaded with Retry-After, timeout or shutting_down")))]
pub async fn list_jobs(
    State(v): State<Vectune>,
    ApiQuery(params): ApiQuery<JobsParams>,
) -> ApiResult<Json<JobList>> {
    let index = IndexName::parse(params.index)?;
    Ok(Json(JobList {
        jobs: v.jobs_of(&index).await?.iter().map(JobOut::from).collect(),
    }))
}

/// Sets (and starts) the background agent of an index.
#[utoipa::path(put, path = "/vectors/hnsw/agent/{index}", tag = "agents",
    params(("index" = String, Path, description = "index name", pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")), request_body = AgentConfigIn,
    responses((status = 200, body = AgentOut, description = "Done"), (status = "4XX", body = ErrorBody, description = "Refused, nothing changed: bad input 400, no or wrong token 401, read-only token 403, unknown name 404, conflict 409, too large 413, unusable 422"),
        (status = 503, body = ErrorBody, description = "Not now, nothing changed: not_ready, overloaded with Retry-After, timeout or shutting_down")))]
pub async fn put_agent(
    State(v): State<Vectune>,
    IndexPath(index): IndexPath,
    ApiJson(body): ApiJson<AgentConfigIn>,
) -> ApiResult<Json<AgentOut>> {
    Ok(Json(AgentOut::from(&v.put_agent(&index, body).await?)))
}

/// The agent of an index: settings, state and decisions.
#[utoipa::path(get, path = "/vectors/hnsw/agent/{index}", tag = "agents",
    params(("index" = String, Path, description = "index name", pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")),
    responses((status = 200, body = AgentOut, description = "Done"), (status = "4XX", body = ErrorBody, description = "Refused, nothing changed: bad input 400, no or wrong token 401, read-only token 403, unknown name 404, conflict 409, too large 413, unusable 422"),
        (status = 503, body = ErrorBody, description = "Not now, nothing changed: not_ready, overloaded with Retry-After, timeout or shutting_down")))]
pub async fn get_agent(State(v): State<Vectune>, IndexPath(index): IndexPath) -> ApiResult<Json<AgentOut>> {
    Ok(Json(AgentOut::from(&v.get_agent(&index).await?)))
}

/// Stops and removes the agent of an index.
#[utoipa::path(delete, path = "/vectors/hnsw/agent/{index}", tag = "agents",
    params(("index" = String, Path, description = "index name", pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")),
    responses((status = 204, description = "removed"), (status = "4XX", body = ErrorBody, description = "Refused, nothing changed: bad input 400, no or wrong token 401, read-only token 403, unknown name 404, conflict 409, too large 413, unusable 422"),
        (status = 503, body = ErrorBody, description = "Not now, nothing changed: not_ready, overloaded with Retry-After, timeout or shutting_down")))]
pub async fn delete_agent(State(v): State<Vectune>, IndexPath(index): IndexPath) -> ApiResult<StatusCode> {
    v.delete_agent(&index).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Prometheus text of the service's metrics.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, content_type = "application/openmetrics-text; version=1.0.0", body = String, description = "Done"), (status = "4XX", body = ErrorBody, description = "Refused, nothing changed: bad input 400, no or wrong token 401, read-only token 403, unknown name 404, conflict 409, too large 413, unusable 422"),
        (status = 503, body = ErrorBody, description = "Not now, nothing changed: not_ready, overloaded with Retry-After, timeout or shutting_down")))]
pub async fn metrics(State(v): State<Vectune>) -> Response {
    let text = v.metrics_text();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
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
