//! In-process tests of the operations surface: tokens, /ready, /metrics, the OpenAPI
//! document and /docs, request ids, the request deadline, the heavy-work queue and
//! shutdown, the fleet stepped by hand, the dashboard. Each builds its own router over an
//! in-memory store.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::helpers::*;
use vectune::http::{router_with, HttpOptions, RouterLimits, Tokens};
use vectune::service::{ServiceOptions, Vectune};
use vectune::storage::Storage;

const ADMIN: &str = "admin-token-0123";
const READ: &str = "read-token-4567";

fn limits() -> RouterLimits {
    RouterLimits {
        max_body_bytes: 1 << 20,
        max_binary_body_bytes: 4096,
        max_ingest_bytes_in_flight: 2 * 4096,
    }
}

async fn service(max_queued_jobs: usize) -> Vectune {
    let options = ServiceOptions {
        max_queued_jobs,
        ..ServiceOptions::default()
    };
    Vectune::open_with(Storage::in_memory(), options).await.unwrap()
}

fn app_of(service: Vectune, tokens: Tokens, timeout: Duration) -> TestApp {
    TestApp::of(router_with(
        service,
        HttpOptions {
            limits: limits(),
            tokens,
            request_timeout: timeout,
        },
    ))
}

/// An open router over a queue of `max_queued_jobs`, with index "idx" of `vectors` vectors
/// and harness "h" of `queries` queries (k 5).
async fn seeded_app(max_queued_jobs: usize, vectors: usize, queries: usize) -> (Vectune, TestApp) {
    let svc = service(max_queued_jobs).await;
    let app = app_of(svc.clone(), Tokens::default(), Duration::from_secs(30));
    app.seeded(vectors).await;
    app.autogen("h", queries, 5).await;
    (svc, app)
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

async fn call(
    app: &TestApp,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Answer {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let body = match body {
        Some(b) => {
            req = req.header("content-type", "application/json");
            Body::from(b.to_string())
        }
        None => Body::empty(),
    };
    let resp = app.router.clone().oneshot(req.body(body).unwrap()).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes().to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

#[tokio::test]
async fn health() {
    let app = TestApp::new().await;
    assert_eq!(app.health().await, (StatusCode::OK, json!({"status": "ok"})));
}

#[tokio::test]
async fn tokens_gate_every_route_but_the_open_four_and_refusals_change_nothing() {
    let svc = service(16).await;
    let app = app_of(
        svc.clone(),
        Tokens::new(Some(ADMIN), Some(READ)),
        Duration::from_secs(30),
    );
    let admin = bearer(ADMIN);
    let read = bearer(READ);
    let a = [("authorization", admin.as_str())];
    let r = [("authorization", read.as_str())];
    let body = json!({"name": "idx", "dims": 8, "metric": "cosine"});
    assert_eq!(
        call(&app, "POST", "/vectors/indexes", &a, Some(body.clone()))
            .await
            .status,
        StatusCode::CREATED
    );
    let add = json!({"vectors": (0..50).map(|i| json!({"id": format!("v{i}"), "vector": vec_of(i)})).collect::<Vec<_>>()});
    assert_eq!(
        call(&app, "POST", "/vectors/indexes/idx/vectors", &a, Some(add))
            .await
            .status,
        StatusCode::OK
    );

    // no token, a wrong one, a malformed header: 401 before anything is looked at, even
    // on a route and names that do not exist
    let wrong = bearer("admin-token-0124");
    for h in [
        vec![],
        vec![("authorization", wrong.as_str())],
        vec![("authorization", "Basic YWRtaW4=")],
        vec![("authorization", "Bearer")],
    ] {
        for (m, p, b) in [
            ("GET", "/vectors/indexes", None),
            ("GET", "/metrics", None),
            ("DELETE", "/vectors/indexes/idx", None),
            (
                "POST",
                "/vectors/indexes/idx/vectors",
                Some(json!({"vectors": [{"id": "x", "vector": vec_of(1)}]})),
            ),
            ("POST", "/vectors/indexes", Some(json!("not even an object"))),
            ("GET", "/vectors/indexes/..%2F..", None),
            ("GET", "/no/such/route", None),
        ] {
            let got = call(&app, m, p, &h, b).await;
            assert_eq!(
                got.status,
                StatusCode::UNAUTHORIZED,
                "{m} {p} {h:?}: {}",
                got.text()
            );
            assert_eq!(got.json()["error"]["code"], "unauthorized");
            assert_eq!(got.headers.get("www-authenticate").unwrap(), "Bearer");
        }
    }
    // the read-only token reads and searches, and is refused every write with 403
    assert_eq!(
        call(&app, "GET", "/vectors/indexes/idx", &r, None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        call(&app, "GET", "/metrics", &r, None).await.status,
        StatusCode::OK
    );
    let search = json!({"vector": vec_of(3), "k": 3});
    // not active yet: a 409 from the handler, so the token got through
    assert_error(
        &{
            let g = call(&app, "POST", "/vectors/search/idx", &r, Some(search.clone())).await;
            (g.status, g.json())
        },
        StatusCode::CONFLICT,
        "not_active",
    );
    for (m, p, b) in [
        ("DELETE", "/vectors/indexes/idx", None),
        ("POST", "/vectors/indexes/idx/activate", None),
        (
            "POST",
            "/vectors/indexes",
            Some(json!({"name": "other", "dims": 4, "metric": "l2"})),
        ),
        ("PUT", "/vectors/hnsw/agent/idx", Some(json!({"harness": "h"}))),
        ("POST", "/vectors/hnsw/rollback/idx", None),
    ] {
        let got = call(&app, m, p, &r, b).await;
        assert_error(&(got.status, got.json()), StatusCode::FORBIDDEN, "forbidden");
    }
    // the open four need nothing
    for p in ["/health", "/openapi.json", "/docs/"] {
        assert_eq!(
            call(&app, "GET", p, &[], None).await.status,
            StatusCode::OK,
            "{p}"
        );
    }
    assert_ne!(
        call(&app, "GET", "/ready", &[], None).await.status,
        StatusCode::UNAUTHORIZED
    );
    // nothing changed: one index, 50 vectors, not active, no agent
    let list = call(&app, "GET", "/vectors/indexes", &a, None).await.json();
    assert_eq!(list["indexes"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["indexes"][0]["vectors"], 50);
    assert!(list["indexes"][0]["active"].is_null());
    assert!(call(&app, "GET", "/vectors/hnsw/agent/idx", &a, None)
        .await
        .json()["config"]
        .is_null());
    // the admin token does everything
    assert_eq!(
        call(&app, "POST", "/vectors/indexes/idx/activate", &a, None)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        call(&app, "POST", "/vectors/search/idx", &r, Some(search))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn ready_waits_for_reactivation_and_turns_503_at_shutdown() {
    let svc = service(16).await;
    let app = app_of(svc.clone(), Tokens::default(), Duration::from_secs(30));
    let before = call(&app, "GET", "/ready", &[], None).await;
    assert_error(
        &(before.status, before.json()),
        StatusCode::SERVICE_UNAVAILABLE,
        "not_ready",
    );
    svc.reactivate_all().await.unwrap();
    let ok = call(&app, "GET", "/ready", &[], None).await;
    assert_eq!(
        (ok.status, ok.json()["status"].clone()),
        (StatusCode::OK, json!("ready"))
    );
    svc.stop_background();
    let stopping = call(&app, "GET", "/ready", &[], None).await;
    assert_error(
        &(stopping.status, stopping.json()),
        StatusCode::SERVICE_UNAVAILABLE,
        "shutting_down",
    );
    // /health stays 200: the process is alive, only not taking new work
    assert_eq!(
        call(&app, "GET", "/health", &[], None).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn work_cut_short_by_shutdown_answers_shutting_down_not_500() {
    let (svc, app) = seeded_app(16, 300, 20).await;
    svc.stop_background();
    let trial =
        json!({"index_name": "idx", "harness": "h", "config": {"ef_construction": 40, "ef_search": 40}});
    let got = app.trial(trial).await;
    assert_error(&got, StatusCode::SERVICE_UNAVAILABLE, "shutting_down");
    let got = app.activate("idx").await;
    assert_error(&got, StatusCode::SERVICE_UNAVAILABLE, "shutting_down");
    // nothing journaled
    let trials = app.trials("idx", "").await;
    assert_eq!(trials.1["trials"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn a_full_queue_refuses_heavy_work_with_retry_after_and_never_blocks_searches() {
    let (svc, app) = seeded_app(1, 300, 20).await;
    assert_eq!(app.activate("idx").await.0, StatusCode::OK);
    // one piece of heavy work holds the only place in the queue
    let held = svc.admit().unwrap();
    let trial =
        json!({"index_name": "idx", "harness": "h", "config": {"ef_construction": 40, "ef_search": 40}});
    let autotune =
        json!({"index_name": "idx", "harness": "h", "grid": [{"ef_construction": 40, "ef_search": 40}]});
    for (m, p, b) in [
        ("POST", "/vectors/hnsw/trial", Some(trial.clone())),
        ("POST", "/vectors/hnsw/autotune", Some(autotune.clone())),
        (
            "POST",
            "/vectors/hnsw/autotune?async=true",
            Some(autotune.clone()),
        ),
        ("POST", "/vectors/indexes/idx/activate", None),
        ("POST", "/vectors/indexes/idx/activate?async=true", None),
        (
            "POST",
            "/vectors/harness/autogen",
            Some(json!({"name": "h2", "index_name": "idx", "queries": 5, "k": 3})),
        ),
    ] {
        let got = call(&app, m, p, &[], b).await;
        assert_error(
            &(got.status, got.json()),
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
        );
        assert_eq!(got.headers.get("retry-after").unwrap(), "2", "{m} {p}");
    }
    // searches and reads go on
    let s = app.search("idx", json!({"vector": vec_of(7), "k": 3})).await;
    assert_eq!(s.0, StatusCode::OK, "{:?}", s.1);
    // nothing was queued or stored by the refusals
    assert_eq!(app.jobs("?index=idx").await.1["jobs"], json!([]));
    assert_eq!(app.trials("idx", "").await.1["trials"], json!([]));
    assert_eq!(app.get_harness("h2").await.0, StatusCode::NOT_FOUND);
    let metrics = call(&app, "GET", "/metrics", &[], None).await.text();
    assert!(metrics.contains("vectune_queue_refused_total 6"), "{metrics}");
    assert!(metrics.contains("vectune_queue_admitted 1"), "{metrics}");
    // once the place frees, the same work is admitted
    drop(held);
    assert_eq!(app.trial(trial).await.0, StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn a_request_past_its_deadline_is_503_timeout() {
    let svc = service(16).await;
    let app = app_of(svc, Tokens::default(), Duration::from_secs(5));
    // a body that never ends: the handler waits for it until the deadline
    let (_tx, body) = futures_channel();
    let req = Request::builder()
        .method("POST")
        .uri("/vectors/indexes")
        .header("content-type", "application/json")
        .body(body)
        .unwrap();
    let resp = app.router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let v: Value = serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(v["error"]["code"], "timeout", "{v}");
    // nothing was created
    assert_eq!(app.list_indexes().await.1["indexes"], json!([]));
}

/// A request body that yields nothing until its sender is dropped.
fn futures_channel() -> (tokio::sync::mpsc::Sender<Vec<u8>>, Body) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(1);
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::io::Error>(axum::body::Bytes::from(b)), rx))
    });
    (tx, Body::from_stream(stream))
}

#[tokio::test]
async fn request_ids_are_echoed_or_made() {
    let app = app_of(service(16).await, Tokens::default(), Duration::from_secs(30));
    let given = call(&app, "GET", "/health", &[("x-request-id", "trace-abc-123")], None).await;
    assert_eq!(given.headers.get("x-request-id").unwrap(), "trace-abc-123");
    let made = call(&app, "GET", "/vectors/indexes/nope", &[], None).await;
    let id = made
        .headers
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(id.len(), 32, "{id}");
    let made2 = call(&app, "GET", "/health", &[("x-request-id", "has space")], None).await;
    assert_ne!(made2.headers.get("x-request-id").unwrap(), "has space");
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_and_status() {
    let svc = service(16).await;
    let app = app_of(svc, Tokens::default(), Duration::from_secs(30));
    app.seeded(40).await;
    for _ in 0..3 {
        call(&app, "GET", "/vectors/harness/ghost-harness", &[], None).await;
    }
    let m = call(&app, "GET", "/metrics", &[], None).await;
    assert_eq!(m.status, StatusCode::OK);
    let ct = m.headers.get("content-type").unwrap().to_str().unwrap();
    assert!(
        ct.starts_with("text/plain") || ct.starts_with("application/openmetrics-text"),
        "{ct}"
    );
    let text = m.text();
    assert!(
        text.contains(
            r#"vectune_http_requests_total{method="GET",route="/vectors/harness/{name}",status="404"} 3"#
        ),
        "{text}"
    );
    assert!(
        !text.contains("ghost-harness"),
        "a raw path became a label:\n{text}"
    );
    assert!(
        text.contains(r#"vectune_index_vectors{index="idx"} 40"#),
        "{text}"
    );
    assert!(text.contains(r#"vectune_jobs{state="running"} 0"#), "{text}");
}

#[tokio::test]
async fn openapi_describes_every_route_and_the_docs_page_is_self_contained() {
    let app = app_of(
        service(16).await,
        Tokens::new(Some(ADMIN), None),
        Duration::from_secs(30),
    );
    let spec = call(&app, "GET", "/openapi.json", &[], None).await;
    assert_eq!(spec.status, StatusCode::OK);
    let spec = spec.json();
    assert!(
        spec["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        spec["openapi"]
    );
    let ops: Vec<String> = spec["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(p, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |m| format!("{} {p}", m.to_uppercase()))
        })
        .collect();
    for want in [
        "GET /health",
        "GET /ready",
        "GET /metrics",
        "POST /vectors/indexes",
        "GET /vectors/indexes",
        "GET /vectors/indexes/{index}",
        "DELETE /vectors/indexes/{index}",
        "POST /vectors/indexes/{index}/vectors",
        "POST /vectors/indexes/{index}/activate",
        "GET /vectors/indexes/{index}/monitor",
        "PUT /vectors/indexes/{index}/monitor",
        "POST /vectors/search/{index}",
        "POST /vectors/harness",
        "POST /vectors/harness/autogen",
        "POST /vectors/harness/capture",
        "GET /vectors/harness/{name}",
        "POST /vectors/hnsw/trial",
        "GET /vectors/hnsw/trials/{index}",
        "GET /vectors/hnsw/trials/{index}/{trial_id}",
        "POST /vectors/hnsw/promote/{index}/{trial_id}",
        "POST /vectors/hnsw/rollback/{index}",
        "GET /vectors/hnsw/promoted/{index}",
        "POST /vectors/hnsw/autotune",
        "GET /vectors/hnsw/pareto/{index}",
        "GET /vectors/hnsw/agent/{index}",
        "PUT /vectors/hnsw/agent/{index}",
        "DELETE /vectors/hnsw/agent/{index}",
        "GET /vectors/jobs",
        "GET /vectors/jobs/{job_id}",
        "DELETE /vectors/jobs/{job_id}",
    ] {
        assert!(ops.contains(&want.to_string()), "{want} missing from {ops:?}");
    }
    assert_eq!(
        spec["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    // every response of every operation names its body schema (or has none: 204)
    let schemas = spec["components"]["schemas"].as_object().unwrap();
    for name in [
        "TrialOut",
        "JobOut",
        "AgentOut",
        "PromotedOut",
        "AutotuneOut",
        "ErrorBody",
        "SpecFields",
    ] {
        assert!(schemas.contains_key(name), "{name} not in components");
    }
    let page = call(&app, "GET", "/docs/", &[], None).await;
    assert_eq!(page.status, StatusCode::OK);
    let csp = page
        .headers
        .get("content-security-policy")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(csp.starts_with("default-src 'self'"), "{csp}");
    let html = page.text();
    assert!(html.to_lowercase().contains("swagger"));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "the page names another host:\n{html}"
    );
    let init = call(&app, "GET", "/docs/swagger-initializer.js", &[], None).await;
    assert_eq!(init.status, StatusCode::OK);
    assert!(init.text().contains("/openapi.json"), "{}", init.text());
}

#[test]
fn the_spec_states_the_config_bounds_the_core_enforces() {
    let spec = serde_json::to_value(vectune::http::openapi()).unwrap();
    let raw = &spec["components"]["schemas"]["RawHnswConfig"]["properties"];
    use vectune::params::{EF_CONSTRUCTION, EF_SEARCH, M};
    for (field, (lo, hi)) in [
        ("ef_construction", EF_CONSTRUCTION),
        ("ef_search", EF_SEARCH),
        ("m", M),
    ] {
        assert_eq!(raw[field]["minimum"], json!(lo), "{field}: {}", raw[field]);
        assert_eq!(raw[field]["maximum"], json!(hi), "{field}: {}", raw[field]);
    }
}

#[tokio::test]
async fn an_autotune_body_with_a_typo_is_refused_before_anything_runs() {
    let (_svc, app) = seeded_app(16, 100, 10).await;
    let body = json!({"index_name": "idx", "harness": "h", "min_recal": 0.9});
    let got = app.autotune(body).await;
    assert_error(&got, StatusCode::BAD_REQUEST, "invalid_body");
    assert!(
        got.1["error"]["message"].as_str().unwrap().contains("min_recal"),
        "{:?}",
        got.1
    );
    assert_eq!(app.trials("idx", "").await.1["trials"], json!([]));
}

/// Two services over one store, stepped by hand (`sync_once`) instead of by the clock:
/// what one writes the other answers after its next sync, promotions at once, the autotune
/// claim holds across them, and an activation on one is served by the other from the
/// stored graph.
#[tokio::test]
async fn two_services_over_one_store_behave_as_one() {
    let storage = vectune::storage::Storage::in_memory();
    let open = || async {
        vectune::service::Vectune::open(storage.clone(), 1, vectune::hnsw::BuildOptions::all_cores())
            .await
            .unwrap()
    };
    let (va, vb) = (open().await, open().await);
    let limits = vectune::http::RouterLimits {
        max_body_bytes: 1 << 20,
        max_binary_body_bytes: 4096,
        max_ingest_bytes_in_flight: 2 * 4096,
    };
    let (a, b) = (
        TestApp::of(vectune::http::router(va.clone(), limits)),
        TestApp::of(vectune::http::router(vb.clone(), limits)),
    );
    a.seeded(400).await;
    assert_eq!(b.get_index("idx").await.0, StatusCode::NOT_FOUND);
    vb.sync_once().await.unwrap();
    let (s, i) = b.get_index("idx").await;
    assert_eq!((s, i["vectors"].clone()), (StatusCode::OK, json!(400)));
    b.autogen("h", 10, 5).await;

    // a trial on A, promoted on B: GET promoted on A shows it without a sync
    let (s, t) = a
        .trial(
            json!({"index_name": "idx", "harness": "h", "config": {"ef_construction": 40, "ef_search": 40}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{t}");
    let tid = t["id"].as_str().unwrap();
    let (s, _) = b.promote("idx", &tid, None).await;
    assert_eq!(s, StatusCode::OK);
    let (_, p) = a.promoted("idx").await;
    assert_eq!(p["current"]["trial_id"], json!(tid));

    // an async autotune on A holds the index's lease: B's is 409 until it ends
    // long enough (40 builds at high ef_construction) that the cancel below lands while it
    // runs, on any machine
    let grid: Vec<Value> = (0..40)
        .map(|i| json!({"ef_construction": 300 + 2 * i, "ef_search": 100, "m": 48}))
        .collect();
    let (s, j) = a
        .autotune_async(json!({"index_name": "idx", "harness": "h", "grid": grid}))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{j}");
    let refused = b
        .autotune(
            json!({"index_name": "idx", "harness": "h", "grid": [{"ef_construction": 20, "ef_search": 20}]}),
        )
        .await;
    assert_error(&refused, StatusCode::CONFLICT, "autotune_running");
    // B answers A's job from the store, and a cancel on B reaches A
    let id = j["job_id"].as_str().unwrap();
    let (s, seen) = b.job(&id).await;
    assert_eq!(s, StatusCode::OK, "{seen}");
    assert_eq!(b.cancel_job(&id).await.0, StatusCode::OK);
    va.sync_once().await.unwrap();
    let ended = a
        .poll_job(id, |j| j["state"] != "running" && j["state"] != "queued")
        .await;
    assert_eq!(ended["state"], "cancelled", "{ended}");

    // activation on A; B serves that generation after its sync, loaded, not rebuilt
    let (s, act) = a.activate("idx").await;
    assert_eq!(s, StatusCode::OK, "{act}");
    vb.sync_once().await.unwrap();
    let (_, bi) = b.get_index("idx").await;
    assert_eq!(bi["active"]["generation"], act["generation"]);
    let (s, r) = b.search("idx", json!({"vector": vec_of(7), "k": 1})).await;
    assert_eq!((s, r["hits"][0]["id"].clone()), (StatusCode::OK, json!("v7")));
    assert!(vb
        .metrics_text()
        .contains("vectune_fleet_activation_pickups_total 1"));

    // fresh writes on A are searched on B after its sync; refresh settings too
    let (s, _) = a
        .append(
            "idx",
            json!({"vectors": [{"id": "fresh", "vector": vec_of(9000)}]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(a.delete_vector("idx", "v7").await.0, StatusCode::NO_CONTENT);
    let (s, _) = a
        .put_refresh("idx", json!({"max_fresh_fraction": 0.9, "fold_in_rows": 500}))
        .await;
    assert_eq!(s, StatusCode::OK);
    vb.sync_once().await.unwrap();
    let (_, r) = b.search("idx", json!({"vector": vec_of(9000), "k": 1})).await;
    assert_eq!(r["hits"][0]["id"], json!("fresh"));
    let (_, r) = b.search("idx", json!({"vector": vec_of(7), "k": 5})).await;
    assert!(
        r["hits"].as_array().unwrap().iter().all(|h| h["id"] != "v7"),
        "{r}"
    );
    assert_eq!(
        b.get_refresh("idx").await.1,
        json!({"max_fresh_fraction": 0.9, "fold_in_rows": 500})
    );
    assert_eq!(
        b.get_index("idx").await.1["active"]["fresh"],
        json!({"inserted": 1, "deleted": 1})
    );

    // deleted on B: gone on A after its sync
    assert_eq!(b.delete_index("idx").await.0, StatusCode::NO_CONTENT);
    va.sync_once().await.unwrap();
    assert_eq!(a.get_index("idx").await.0, StatusCode::NOT_FOUND);
    assert_eq!(a.get_harness("h").await.0, StatusCode::NOT_FOUND);
}

/// The dashboard is served from the binary, open like `/docs`, with a CSP that allows
/// nothing from another host; its API calls are gated, and every answer says what the
/// caller's token may do (`x-vectune-role`), which the page reads from `/health`.
#[tokio::test]
async fn the_dashboard_is_open_self_contained_and_told_the_callers_role() {
    let svc = service(16).await;
    let app = app_of(svc, Tokens::new(Some(ADMIN), Some(READ)), Duration::from_secs(30));
    let mut served = 0;
    for (path, ctype) in [
        ("/ui", "text/html"),
        ("/ui/indexes/docs", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/app.css", "text/css"),
        ("/ui/favicon.svg", "image/svg+xml"),
    ] {
        let r = call(&app, "GET", path, &[], None).await;
        served += r.body.len();
        assert_eq!(r.status, StatusCode::OK, "{path} needs no token");
        assert!(
            r.headers["content-type"].to_str().unwrap().starts_with(ctype),
            "{path}"
        );
        assert_eq!(
            r.headers["content-security-policy"], "default-src 'self'",
            "{path}"
        );
    }
    // the page is served twice (two routes); the whole dashboard is small
    assert!(served < 2 * 64 * 1024, "{served} bytes");
    let page = call(&app, "GET", "/ui", &[], None).await.text();
    assert!(page.contains("data-testid=\"token-input\"") && page.contains("src=\"/ui/app.js\""));
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "nothing from another host"
    );
    let script = call(&app, "GET", "/ui/app.js", &[], None).await.text();
    for hook in [
        "pareto-plot",
        "data-points",
        "data-frontier",
        "trial-row",
        "promotion-current",
        "rollback-button",
        "job-progress",
        "vectune_token",
    ] {
        assert!(script.contains(hook), "the script sets {hook}");
    }
    assert!(
        !script.contains("eval(") && !script.contains("innerHTML"),
        "no eval, no HTML strings"
    );

    let role = |r: &Answer| {
        r.headers
            .get("x-vectune-role")
            .map(|v| v.to_str().unwrap().to_string())
    };
    let (admin, read) = (bearer(ADMIN), bearer(READ));
    assert_eq!(
        role(&call(&app, "GET", "/health", &[], None).await).as_deref(),
        Some("none")
    );
    let a = call(&app, "GET", "/health", &[("authorization", admin.as_str())], None).await;
    assert_eq!(role(&a).as_deref(), Some("admin"));
    let r = call(
        &app,
        "GET",
        "/vectors/indexes",
        &[("authorization", read.as_str())],
        None,
    )
    .await;
    assert_eq!((r.status, role(&r).as_deref()), (StatusCode::OK, Some("read")));
    assert_eq!(
        call(&app, "GET", "/vectors/indexes", &[], None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let open = app_of(
        service(16).await,
        Tokens::new(None, None),
        Duration::from_secs(30),
    );
    assert_eq!(
        role(&call(&open, "GET", "/health", &[], None).await).as_deref(),
        Some("open")
    );
}
