//! Cross-cutting layers of every route: the request id, the access log line and request
//! metrics, and the request deadline.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::service::Vectune;

/// The header a request id travels in, both ways.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A caller's id is kept when it is 1..=128 visible ASCII characters; else one is made.
fn request_id(req: &Request) -> HeaderValue {
    req.headers()
        .get(&REQUEST_ID)
        .filter(|v| (1..=128).contains(&v.len()) && v.as_bytes().iter().all(|b| b.is_ascii_graphic()))
        .cloned()
        .unwrap_or_else(|| {
            let id = uuid::Uuid::now_v7().simple().to_string();
            // a UUID's hex digits are always a valid header value
            HeaderValue::from_str(&id).unwrap_or(HeaderValue::from_static("unknown"))
        })
}

/// The route template a request matched, or `unmatched` (the raw path never becomes a
/// label or a log field of its own: a client could mint any number of them).
fn route_of(req: &Request) -> &str {
    req.extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED, |m| m.as_str())
}

/// The route label of a request no route matched.
const UNMATCHED: &str = "unmatched";

/// Echoes (or makes) `x-request-id`, then logs one line and counts the request once its
/// answer is ready: method, route template, status, latency, request id.
pub async fn observe(State(service): State<Vectune>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request_id(&req);
    req.headers_mut().insert(REQUEST_ID.clone(), id.clone());
    let method = req.method().clone();
    // the matched template is an `Arc<str>` inside: cloning it copies no bytes
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or(UNMATCHED, |m| m.as_str());
    let mut response = next.run(req).await;
    let status = response.status().as_u16();
    let secs = started.elapsed().as_secs_f64();
    service.metrics().request(method.as_str(), route, status, secs);
    tracing::info!(
        target: "vectune::access",
        method = method.as_str(),
        route,
        status,
        latency_us = (secs * 1e6).round() as u64,
        request_id = id.to_str().unwrap_or(""),
        "request"
    );
    response.headers_mut().insert(REQUEST_ID.clone(), id);
    response
}

/// Routes that start heavy work: bounded by the job queue (and their own cancellation
/// at shutdown), not by the request deadline.
fn starts_work(method: &Method, route: &str) -> bool {
    method == Method::POST
        && matches!(
            route,
            "/vectors/hnsw/trial"
                | "/vectors/hnsw/autotune"
                | "/vectors/indexes/{index}/activate"
                | "/vectors/harness"
                | "/vectors/harness/autogen"
        )
}

/// The deadline of a request that starts no heavy work (`limits.request_timeout_secs`).
/// A read is simply dropped at the deadline. A write is never cut in the middle (that
/// could leave half of it stored): it runs on to its end in its own task and the caller
/// is told `503 timeout` — the write may still complete, as behind any gateway timeout.
pub async fn deadline(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    let (method, route) = (req.method(), route_of(&req));
    if starts_work(method, route) {
        return next.run(req).await;
    }
    let read_only = method == Method::GET || method == Method::HEAD || route == "/vectors/search/{index}";
    let timeout = || {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!("the request ran past its {:.1} s deadline", limit.as_secs_f64()),
        )
        .into_response()
    };
    if read_only {
        return tokio::time::timeout(limit, next.run(req))
            .await
            .unwrap_or_else(|_| timeout());
    }
    // only a write pays for the owned route (its log line outlives the request)
    let route = route.to_string();
    let mut work = tokio::spawn(next.run(req));
    match tokio::time::timeout(limit, &mut work).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "request task failed");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal server error; see the server log",
            )
            .into_response()
        }
        Err(_) => {
            tracing::warn!(
                route = route.as_str(),
                "write ran past its deadline; it goes on in the background"
            );
            timeout()
        }
    }
}
