//! The dashboard: one HTML page for `/ui` and `/ui/indexes/{index}`, its script and its
//! stylesheet, compiled into the binary (nothing fetched from another host, no build step:
//! `cargo build` is all). The page holds no data; it calls the API with the token the user
//! gives it, so it stays open like `/docs`.

use axum::extract::Path;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::service::Vectune;

const PAGE: &str = include_str!("ui/index.html");
const SCRIPT: &str = include_str!("ui/app.js");
const STYLE: &str = include_str!("ui/app.css");
/// Served here so the browser's icon request is not a 404 (a console error) nor blocked.
const ICON: &str = "<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'><circle cx='8' cy='8' r='7' fill='#2f6fde'/></svg>";

/// Everything the page may load comes from this server.
const CSP: &str = "default-src 'self'";

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// The overview: every index, its serving generation, agent and running jobs.
#[utoipa::path(get, path = "/ui", tag = "dashboard", security(()),
    responses((status = 200, content_type = "text/html", body = String, description = "The dashboard's overview page")))]
pub async fn overview() -> Response {
    asset(PAGE, "text/html; charset=utf-8")
}

/// An index's page: Pareto plot, trials, promotions, jobs, agent and live recall.
#[utoipa::path(get, path = "/ui/indexes/{index}", tag = "dashboard", security(()),
    params(("index" = String, Path, description = "The index (the page asks the API for it)")),
    responses((status = 200, content_type = "text/html", body = String, description = "The dashboard's index page")))]
pub async fn index_page(Path(_index): Path<String>) -> Response {
    asset(PAGE, "text/html; charset=utf-8")
}

/// The page's script and stylesheet (not API operations, so not in the OpenAPI document).
pub fn assets() -> Router<Vectune> {
    Router::new()
        .route(
            "/ui/app.js",
            get(|| async { asset(SCRIPT, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/ui/app.css",
            get(|| async { asset(STYLE, "text/css; charset=utf-8") }),
        )
        .route("/ui/favicon.svg", get(|| async { asset(ICON, "image/svg+xml") }))
}

/// Bytes of the page, script and stylesheet together (the whole dashboard).
pub const SIZE_BYTES: usize = PAGE.len() + SCRIPT.len() + STYLE.len() + ICON.len();
