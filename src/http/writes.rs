//! Handlers of fresh writes: deletes and the refresh rule (appends and upserts are
//! `routes::append`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use super::dto::*;
use super::error::ApiError;
use super::extract::{ApiJson, IndexAndPath, IndexPath};
use crate::service::Vectune;

type ApiResult<T> = Result<T, ApiError>;

/// Deletes one vector: never returned by a search answered after this response.
#[utoipa::path(delete, path = "/vectors/indexes/{index}/vectors/{id}", tag = "indexes",
    params(("index" = String, Path, description = "index name", pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"),
        ("id" = String, Path, description = "vector id")),
    responses((status = 204, description = "deleted"), (status = "4XX", body = ErrorBody, description = "Refused, nothing changed: bad input 400, no or wrong token 401, read-only token 403, unknown index or vector 404, conflict 409, too large 413, unusable 422"),
        (status = 503, body = ErrorBody, description = "Not now, nothing changed: not_ready, overloaded with Retry-After, timeout or shutting_down")))]
pub async fn delete_vector(
    State(v): State<Vectune>,
    IndexAndPath(name, id): IndexAndPath,
) -> ApiResult<StatusCode> {
    v.delete_vector(&name, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes the vector whose id is `delete`: its path is the bulk delete's (`POST` there
/// deletes many), so `DELETE …/vectors/{id}` with that id lands here.
#[utoipa::path(delete, path = "/vectors/indexes/{index}/vectors/delete", tag = "indexes",
    params(("index" = String, Path, description = "index name", pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")),
    responses((status = 204, description = "deleted"), (status = "4XX", body = ErrorBody, description = "Refused, nothing changed: bad input 400, no or wrong token 401, read-only token 403, unknown index or vector 404, conflict 409, too large 413, unusable 422"),
        (status = 503, body = ErrorBody, description = "Not now, nothing changed: not_ready, overloaded with Retry-After, timeout or shutting_down")))]
pub async fn delete_vector_named_delete(
    State(v): State<Vectune>,
    IndexPath(name): IndexPath,
) -> ApiResult<StatusCode> {
    v.delete_vector(&name, "delete".to_string()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes vectors, all or none (an empty list, a repeated id or one not stored: `400`,
/// nothing deleted).
#[utoipa::path(post, path = "/vectors/indexes/{index}/vectors/delete", tag = "indexes",
    params(("index" = String, Path, description = "index name", pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")),
    request_body = DeleteIds,
    responses((status = 200, body = Deleted, description = "Done"), (status = "4XX", body = ErrorBody, description = "Refused, nothing changed: bad input 400, no or wrong token 401, read-only token 403, unknown name 404, conflict 409, too large 413, unusable 422"),
        (status = 503, body = ErrorBody, description = "Not now, nothing changed: not_ready, overloaded with Retry-After, timeout or shutting_down")))]
pub async fn delete_vectors(
    State(v): State<Vectune>,
    IndexPath(name): IndexPath,
    ApiJson(req): ApiJson<DeleteIds>,
) -> ApiResult<Json<Deleted>> {
    let (deleted, total) = v.delete_vectors(&name, req.ids).await?;
    Ok(Json(Deleted { deleted, total }))
}

/// The refresh rule of an index.
#[utoipa::path(get, path = "/vectors/indexes/{index}/refresh", tag = "indexes",
    params(("index" = String, Path, description = "index name", pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")),
    responses((status = 200, body = RefreshOut, description = "Done"), (status = "4XX", body = ErrorBody, description = "Refused, nothing changed: bad input 400, no or wrong token 401, read-only token 403, unknown name 404, conflict 409, too large 413, unusable 422"),
        (status = 503, body = ErrorBody, description = "Not now, nothing changed: not_ready, overloaded with Retry-After, timeout or shutting_down")))]
pub async fn get_refresh(
    State(v): State<Vectune>,
    IndexPath(name): IndexPath,
) -> ApiResult<Json<RefreshOut>> {
    Ok(Json(v.refresh_settings(&name)?.into()))
}

/// Sets the refresh rule of an index (a field left out keeps its value); a rule now due
/// starts the re-activation.
#[utoipa::path(put, path = "/vectors/indexes/{index}/refresh", tag = "indexes",
    params(("index" = String, Path, description = "index name", pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")),
    request_body = RefreshIn,
    responses((status = 200, body = RefreshOut, description = "Done"), (status = "4XX", body = ErrorBody, description = "Refused, nothing changed: bad input 400, no or wrong token 401, read-only token 403, unknown name 404, conflict 409, too large 413, unusable 422"),
        (status = 503, body = ErrorBody, description = "Not now, nothing changed: not_ready, overloaded with Retry-After, timeout or shutting_down")))]
pub async fn put_refresh(
    State(v): State<Vectune>,
    IndexPath(name): IndexPath,
    ApiJson(req): ApiJson<RefreshIn>,
) -> ApiResult<Json<RefreshOut>> {
    Ok(Json(
        v.set_refresh(&name, req.max_fresh_fraction, req.fold_in_rows)
            .await?
            .into(),
    ))
}
