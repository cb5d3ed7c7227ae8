//! The HTTP edge: routes of `shared/API.md` over the typed core in [`crate::service`].
//!
//! Nothing below this module knows about axum. Every answer that is not a success goes
//! through [`error::ApiError`], including malformed bodies, unknown routes and oversized
//! requests, so clients only ever see one error shape.

pub mod dto;
pub mod error;
pub mod extract;
mod routes;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

use crate::service::Vectune;

/// Limits the router enforces.
#[derive(Debug, Clone, Copy)]
pub struct RouterLimits {
    /// Largest JSON body, bytes.
    pub max_body_bytes: usize,
    /// Largest binary (fvecs / npy) body, bytes.
    pub max_binary_body_bytes: usize,
}

/// The whole API as a router over `service`.
pub fn router(service: Vectune, limits: RouterLimits) -> Router {
    Router::new()
        .route("/health", get(routes::health))
        .route(
            "/vectors/indexes",
            post(routes::create_index).get(routes::list_indexes),
        )
        .route(
            "/vectors/indexes/{index}",
            get(routes::get_index).delete(routes::delete_index),
        )
        .route("/vectors/indexes/{index}/vectors", post(routes::append))
        .route("/vectors/indexes/{index}/activate", post(routes::activate))
        .route(
            "/vectors/indexes/{index}/monitor",
            get(routes::get_monitor).put(routes::put_monitor),
        )
        .route("/vectors/search/{index}", post(routes::search))
        .route("/vectors/harness", post(routes::create_harness))
        .route("/vectors/harness/autogen", post(routes::autogen_harness))
        .route("/vectors/harness/capture", post(routes::capture_harness))
        .route("/vectors/harness/{name}", get(routes::get_harness))
        .route("/vectors/hnsw/trial", post(routes::run_trial))
        .route("/vectors/hnsw/trials/{index}", get(routes::list_trials))
        .route("/vectors/hnsw/trials/{index}/{trial_id}", get(routes::get_trial))
        .route("/vectors/hnsw/promote/{index}/{trial_id}", post(routes::promote))
        .route("/vectors/hnsw/rollback/{index}", post(routes::rollback))
        .route("/vectors/hnsw/promoted/{index}", get(routes::promoted))
        .route("/vectors/hnsw/autotune", post(routes::autotune))
        .route("/vectors/hnsw/pareto/{index}", get(routes::pareto))
        .route(
            "/vectors/hnsw/agent/{index}",
            get(routes::get_agent)
                .put(routes::put_agent)
                .delete(routes::delete_agent),
        )
        .route("/vectors/jobs", get(routes::list_jobs))
        .route(
            "/vectors/jobs/{job_id}",
            get(routes::get_job).delete(routes::cancel_job),
        )
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(axum::Extension(limits))
        .with_state(service)
}
