//! Extractors whose rejections answer in the API's JSON error shape, never plain text.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::names::IndexName;

/// `axum::Json` with [`ApiError`] rejections (malformed JSON, wrong content type,
/// unknown fields, too large).
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let axum::Json(v) = axum::Json::<T>::from_request(req, state).await?;
        Ok(ApiJson(v))
    }
}

/// A leaner JSON body for the hot search route: the same checks as [`ApiJson`]
/// (content type, body limit, unknown fields) but parsed straight from the bytes, without
/// the path-tracking wrapper axum's `Json` adds for its error messages (measured at a
/// few µs per search request).
pub struct FastJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for FastJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| {
                let v = v.trim();
                v.eq_ignore_ascii_case("application/json")
                    || (v.starts_with("application/") && v.ends_with("+json"))
            });
        if !is_json {
            return Err(ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "invalid_content_type",
                "Expected request with `Content-Type: application/json`",
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state).await.map_err(|r| {
            let status = r.status();
            if status == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(status, "payload_too_large", r.body_text())
            } else {
                ApiError::new(axum::http::StatusCode::BAD_REQUEST, "invalid_body", r.body_text())
            }
        })?;
        serde_json::from_slice(&bytes).map(FastJson).map_err(|e| {
            let code = if e.is_data() {
                "invalid_body"
            } else {
                "invalid_json"
            };
            ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                code,
                format!("invalid request body: {e}"),
            )
        })
    }
}

/// `axum::extract::Path` with [`ApiError`] rejections.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(v) = axum::extract::Path::<T>::from_request_parts(parts, state).await?;
        Ok(ApiPath(v))
    }
}

/// An index name from the path, parsed at the edge: a handler that takes it holds a valid
/// [`IndexName`], and a bad one answers like any bad name (`400 invalid_name`), before the
/// body is read.
pub struct IndexPath(pub IndexName);

impl<S: Send + Sync> FromRequestParts<S> for IndexPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let ApiPath(raw) = ApiPath::<String>::from_request_parts(parts, state).await?;
        Ok(IndexPath(IndexName::parse(raw)?))
    }
}

/// An index name and a second segment (a trial id) from the path, the name parsed.
pub struct IndexAndPath(pub IndexName, pub String);

impl<S: Send + Sync> FromRequestParts<S> for IndexAndPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let ApiPath((raw, rest)) = ApiPath::<(String, String)>::from_request_parts(parts, state).await?;
        Ok(IndexAndPath(IndexName::parse(raw)?, rest))
    }
}

/// `axum::extract::Query` with [`ApiError`] rejections.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Query(v) = axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(ApiQuery(v))
    }
}
