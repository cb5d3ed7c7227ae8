//! The HTTP edge: routes of `shared/API.md` over the typed core in [`crate::service`].
//!
//! Nothing below this module knows about axum. Every answer that is not a success goes
//! through [`error::ApiError`], including malformed bodies, unknown routes and oversized
//! requests, so clients only ever see one error shape. The routes are registered once,
//! through `utoipa-axum`, which yields the router and its OpenAPI 3.1 document together.
//!
//! Layers, outermost first: request id + access log + request metrics ([`layers::observe`]),
//! the token check ([`auth`]), the request deadline ([`layers::deadline`]), then the body
//! limit and the handler.

pub mod auth;
pub mod dto;
pub mod error;
pub mod extract;
pub mod layers;
mod routes;
pub mod ui;
mod writes;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue};
use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

use crate::service::Vectune;
pub use auth::Tokens;

/// Limits the router enforces.
#[derive(Debug, Clone, Copy)]
pub struct RouterLimits {
    /// Largest JSON body, bytes.
    pub max_body_bytes: usize,
    /// Largest binary (fvecs / npy) body, bytes.
    pub max_binary_body_bytes: usize,
    /// Bytes of binary uploads admitted at once ([`IngestBudget`]).
    pub max_ingest_bytes_in_flight: u64,
}

/// The bytes of binary uploads in flight, shared by the router's requests: an upload is
/// admitted only if its bytes fit beside the others' (`503 overloaded` otherwise, before a
/// byte of it is read), and gives them back when its request ends.
#[derive(Debug)]
pub struct IngestBudget {
    in_flight: std::sync::atomic::AtomicU64,
    max: u64,
}

/// Bytes an admitted upload holds until it is dropped.
pub struct IngestTicket<'a> {
    budget: &'a IngestBudget,
    bytes: u64,
}

impl IngestBudget {
    /// A budget of `max` bytes.
    pub fn new(max: u64) -> IngestBudget {
        IngestBudget {
            in_flight: std::sync::atomic::AtomicU64::new(0),
            max,
        }
    }

    /// Admits `bytes` if they fit beside what is in flight.
    pub fn admit(&self, bytes: u64) -> Option<IngestTicket<'_>> {
        use std::sync::atomic::Ordering;
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                now.checked_add(bytes).filter(|&total| total <= self.max)
            })
            .ok()
            .map(|_| IngestTicket { budget: self, bytes })
    }

    /// Bytes in flight now.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The budget.
    pub fn max(&self) -> u64 {
        self.max
    }
}

impl Drop for IngestTicket<'_> {
    fn drop(&mut self) {
        (self.budget.in_flight).fetch_sub(self.bytes, std::sync::atomic::Ordering::AcqRel);
    }
}

/// The deadline of a request that starts no heavy work, unless configured.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything the HTTP layer is configured with.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Body limits.
    pub limits: RouterLimits,
    /// Bearer tokens (none: open).
    pub tokens: Tokens,
    /// Deadline of a request that starts no heavy work.
    pub request_timeout: Duration,
}

impl HttpOptions {
    /// Open (no token), the given limits, a 30 s deadline.
    pub fn open(limits: RouterLimits) -> HttpOptions {
        HttpOptions {
            limits,
            tokens: Tokens::default(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "vectune",
        description = "Self-tuning HNSW vector index service: trials, autotune, promotion, activation.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    modifiers(&BearerScheme),
    security(("bearer" = [])),
    tags(
        (name = "indexes", description = "Indexes, vectors, activation and the live monitor"),
        (name = "search", description = "k-NN search on the serving generation"),
        (name = "harnesses", description = "Eval harnesses with exact ground truth"),
        (name = "trials", description = "The trial journal and its Pareto frontier"),
        (name = "promotion", description = "The promotion registry"),
        (name = "autotune", description = "Autotune runs"),
        (name = "jobs", description = "Background jobs"),
        (name = "agents", description = "Background tuning agents"),
        (name = "operations", description = "Probes and metrics"),
    )
)]
struct ApiDoc;

/// Adds the `bearer` security scheme the operations refer to ("Authorize" in `/docs`).
struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The admin token (auth.token) or the read-only token (auth.read_token); \
                         not needed when the server has no token configured",
                    ))
                    .build(),
            ),
        );
    }
}

/// Every API route with its OpenAPI operation, in the order of `shared/API.md`.
fn api() -> OpenApiRouter<Vectune> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(routes::health))
        .routes(routes!(routes::ready))
        .routes(routes!(routes::metrics))
        .routes(routes!(routes::create_index, routes::list_indexes))
        .routes(routes!(routes::get_index, routes::delete_index))
        .routes(routes!(routes::append))
        .routes(routes!(writes::delete_vector))
        .routes(routes!(
            writes::delete_vectors,
            writes::delete_vector_named_delete
        ))
        .routes(routes!(writes::get_refresh, writes::put_refresh))
        .routes(routes!(routes::activate))
        .routes(routes!(routes::get_monitor, routes::put_monitor))
        .routes(routes!(routes::search))
        .routes(routes!(routes::create_harness))
        .routes(routes!(routes::autogen_harness))
        .routes(routes!(routes::capture_harness))
        .routes(routes!(routes::get_harness))
        .routes(routes!(routes::run_trial))
        .routes(routes!(routes::list_trials))
        .routes(routes!(routes::get_trial))
        .routes(routes!(routes::promote))
        .routes(routes!(routes::rollback))
        .routes(routes!(routes::promoted))
        .routes(routes!(routes::autotune))
        .routes(routes!(routes::pareto))
        .routes(routes!(
            routes::get_agent,
            routes::put_agent,
            routes::delete_agent
        ))
        .routes(routes!(routes::list_jobs))
        .routes(routes!(routes::get_job, routes::cancel_job))
        .routes(routes!(ui::overview))
        .routes(routes!(ui::index_page))
}

/// The OpenAPI document of [`router`] (what `GET /openapi.json` serves).
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().split_for_parts().1
}

/// The docs page loads nothing from another host (Swagger UI's icons are `data:` URIs
/// inside its stylesheet, and its online validator is off).
async fn with_csp(mut r: axum::response::Response) -> axum::response::Response {
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; img-src 'self' data:"),
    );
    r
}

/// The whole API as a router over `service`, open (no token), 30 s deadline.
pub fn router(service: Vectune, limits: RouterLimits) -> Router {
    router_with(service, HttpOptions::open(limits))
}

/// The whole API as a router over `service`.
pub fn router_with(service: Vectune, options: HttpOptions) -> Router {
    let (api, spec) = api().split_for_parts();
    let api = api
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(DefaultBodyLimit::max(options.limits.max_body_bytes))
        .layer(axum::Extension(options.limits))
        .layer(axum::Extension(Arc::new(IngestBudget::new(
            options.limits.max_ingest_bytes_in_flight,
        ))))
        .layer(axum::middleware::from_fn_with_state(
            options.request_timeout,
            layers::deadline,
        ));
    let docs: Router<Vectune> = Router::from(
        SwaggerUi::new("/docs").url("/openapi.json", spec).config(
            utoipa_swagger_ui::Config::default()
                .validator_url("none")
                .persist_authorization(true),
        ),
    )
    .layer(axum::middleware::map_response(with_csp));
    api.merge(docs)
        .merge(ui::assets())
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(options.tokens),
            auth::require_token,
        ))
        .layer(axum::middleware::from_fn_with_state(
            service.clone(),
            layers::observe,
        ))
        .with_state(service)
}
