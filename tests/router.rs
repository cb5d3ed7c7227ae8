//! In-process HTTP tests: the whole router over an in-memory store, driven by `oneshot`.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use vectune::http::{router, RouterLimits};
use vectune::service::Vectune;
use vectune::storage::Storage;

async fn app_with_limit(max_body_bytes: usize) -> Router {
    let service = Vectune::open(Storage::in_memory(), 1).await.unwrap();
    router(service, RouterLimits { max_body_bytes })
}

async fn app() -> Router {
    app_with_limit(1 << 20).await
}

async fn send_raw(
    app: &Router,
    method: &str,
    uri: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| panic!("non-JSON body: {:?}", String::from_utf8_lossy(&bytes)))
    };
    (status, value)
}

async fn send(app: &Router, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
    match body {
        Some(b) => {
            send_raw(
                app,
                method,
                uri,
                Some("application/json"),
                b.to_string().into_bytes(),
            )
            .await
        }
        None => send_raw(app, method, uri, None, Vec::new()).await,
    }
}

fn assert_error(got: &(StatusCode, Value), status: StatusCode, code: &str) {
    assert_eq!(got.0, status, "{:?}", got.1);
    assert_eq!(got.1["error"]["code"], code, "{:?}", got.1);
    assert!(
        got.1["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{:?}",
        got.1
    );
}

/// A cosine index "idx" of `n` deterministic 8-d vectors ids "v0".."v{n-1}".
async fn seeded(app: &Router, n: usize) {
    let r = send(
        app,
        "POST",
        "/vectors/indexes",
        Some(json!({"name": "idx", "dims": 8, "metric": "cosine"})),
    )
    .await;
    assert_eq!(r.0, StatusCode::CREATED, "{:?}", r.1);
    let vectors: Vec<Value> = (0..n)
        .map(|i| json!({"id": format!("v{i}"), "vector": vec_of(i)}))
        .collect();
    let r = send(
        app,
        "POST",
        "/vectors/indexes/idx/vectors",
        Some(json!({ "vectors": vectors })),
    )
    .await;
    assert_eq!(r.0, StatusCode::OK, "{:?}", r.1);
}

/// A deterministic pseudo-random 8-d vector per `i` (distinct for distinct `i`).
fn vec_of(i: usize) -> Vec<f32> {
    (0..8)
        .map(|d| {
            let mut z = (i as u64 * 8 + d as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 31)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

#[tokio::test]
async fn health() {
    let app = app().await;
    assert_eq!(
        send(&app, "GET", "/health", None).await,
        (StatusCode::OK, json!({"status": "ok"}))
    );
}

#[tokio::test]
async fn index_lifecycle_and_errors() {
    let app = app().await;
    let (s, body) = send(
        &app,
        "POST",
        "/vectors/indexes",
        Some(json!({"name": "a", "dims": 4, "metric": "l2"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(
        (body["name"].clone(), body["dims"].clone(), body["metric"].clone()),
        (json!("a"), json!(4), json!("l2"))
    );
    assert_eq!(
        (body["vectors"].clone(), body["active"].clone()),
        (json!(0), Value::Null)
    );

    let dup = send(
        &app,
        "POST",
        "/vectors/indexes",
        Some(json!({"name": "a", "dims": 4, "metric": "l2"})),
    )
    .await;
    assert_error(&dup, StatusCode::CONFLICT, "index_exists");
    for (body, code) in [
        (
            json!({"name": "../escape", "dims": 4, "metric": "cosine"}),
            "invalid_name",
        ),
        (
            json!({"name": ".", "dims": 4, "metric": "cosine"}),
            "invalid_name",
        ),
        (
            json!({"name": "b", "dims": 0, "metric": "cosine"}),
            "invalid_dims",
        ),
        (
            json!({"name": "b", "dims": 4097, "metric": "cosine"}),
            "invalid_dims",
        ),
        (
            json!({"name": "b", "dims": 4, "metric": "hamming"}),
            "invalid_metric",
        ),
        (
            json!({"name": "b", "dims": 4, "metric": "l2", "extra": 1}),
            "invalid_body",
        ),
        (json!({"name": "b", "metric": "l2"}), "invalid_body"),
    ] {
        assert_error(
            &send(&app, "POST", "/vectors/indexes", Some(body)).await,
            StatusCode::BAD_REQUEST,
            code,
        );
    }
    let r = send_raw(
        &app,
        "POST",
        "/vectors/indexes",
        Some("application/json"),
        b"{\"name\": ".to_vec(),
    )
    .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_json");
    let r = send_raw(
        &app,
        "POST",
        "/vectors/indexes",
        Some("text/plain"),
        b"{}".to_vec(),
    )
    .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_content_type");

    let (s, list) = send(&app, "GET", "/vectors/indexes", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        list["indexes"].as_array().unwrap().len(),
        1,
        "refused creates stored nothing"
    );
    assert_eq!(
        send(&app, "GET", "/vectors/indexes/a", None).await.0,
        StatusCode::OK
    );
    assert_error(
        &send(&app, "GET", "/vectors/indexes/zz", None).await,
        StatusCode::NOT_FOUND,
        "index_not_found",
    );
    assert_error(
        &send(&app, "GET", "/vectors/indexes/..", None).await,
        StatusCode::BAD_REQUEST,
        "invalid_name",
    );
    assert_eq!(
        send(&app, "DELETE", "/vectors/indexes/a", None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_error(
        &send(&app, "GET", "/vectors/indexes/a", None).await,
        StatusCode::NOT_FOUND,
        "index_not_found",
    );
    assert_error(
        &send(&app, "DELETE", "/vectors/indexes/a", None).await,
        StatusCode::NOT_FOUND,
        "index_not_found",
    );
}

#[tokio::test]
async fn append_is_all_or_nothing() {
    let app = app().await;
    seeded(&app, 5).await;
    let ok = |id: &str| json!({"id": id, "vector": [1.0, 0, 0, 0, 0, 0, 0, 0]});
    let cases = [
        (json!({"vectors": []}), "empty_batch"),
        (
            json!({"vectors": [ok("n1"), {"id": "n2", "vector": [1.0]}]}),
            "dimension_mismatch",
        ),
        (json!({"vectors": [ok("n1"), ok("n1")]}), "duplicate_id"),
        (json!({"vectors": [ok("n1"), ok("v0")]}), "duplicate_id"),
        (
            json!({"vectors": [{"id": "n1", "vector": [0.0, 0, 0, 0, 0, 0, 0, 0]}]}),
            "zero_vector",
        ),
        (json!({"vectors": [ok("")]}), "invalid_id"),
        (json!({"vectors": [ok("n1")], "more": true}), "invalid_body"),
    ];
    for (body, code) in cases {
        let r = send(&app, "POST", "/vectors/indexes/idx/vectors", Some(body)).await;
        assert_error(&r, StatusCode::BAD_REQUEST, code);
    }
    // 1e39 overflows f32 to infinity: refused as non-finite
    let raw = br#"{"vectors": [{"id": "big", "vector": [1e39, 0, 0, 0, 0, 0, 0, 0]}]}"#.to_vec();
    let r = send_raw(
        &app,
        "POST",
        "/vectors/indexes/idx/vectors",
        Some("application/json"),
        raw,
    )
    .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "non_finite_value");
    let raw = br#"{"vectors": [{"id": "y", "vector": [NaN"#.to_vec();
    let r = send_raw(
        &app,
        "POST",
        "/vectors/indexes/idx/vectors",
        Some("application/json"),
        raw,
    )
    .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_json");
    assert_eq!(
        send(&app, "GET", "/vectors/indexes/idx", None).await.1["vectors"],
        5
    );

    let r = send(
        &app,
        "POST",
        "/vectors/indexes/idx/vectors",
        Some(json!({"vectors": [ok("n1"), ok("n2")]})),
    )
    .await;
    assert_eq!(r, (StatusCode::OK, json!({"appended": 2, "total": 7})));
    let r = send(
        &app,
        "POST",
        "/vectors/indexes/nope/vectors",
        Some(json!({"vectors": [ok("n1")]})),
    )
    .await;
    assert_error(&r, StatusCode::NOT_FOUND, "index_not_found");
}

#[tokio::test]
async fn body_limit_answers_413_in_json() {
    let app = app_with_limit(512).await;
    seeded_small(&app).await;
    let vectors: Vec<Value> = (0..40)
        .map(|i| json!({"id": format!("x{i}"), "vector": [1.0, 2.0]}))
        .collect();
    let r = send(
        &app,
        "POST",
        "/vectors/indexes/s/vectors",
        Some(json!({ "vectors": vectors })),
    )
    .await;
    assert_error(&r, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    assert_eq!(
        send(&app, "GET", "/vectors/indexes/s", None).await.1["vectors"],
        0
    );
}

async fn seeded_small(app: &Router) {
    let r = send(
        app,
        "POST",
        "/vectors/indexes",
        Some(json!({"name": "s", "dims": 2, "metric": "l2"})),
    )
    .await;
    assert_eq!(r.0, StatusCode::CREATED);
}

#[tokio::test]
async fn harnesses() {
    let app = app().await;
    seeded(&app, 30).await;
    let (s, h) = send(
        &app,
        "POST",
        "/vectors/harness/autogen",
        Some(json!({"name": "auto", "index_name": "idx", "queries": 5, "k": 3, "seed": 7})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{h:?}");
    assert_eq!(h["ground_truth_built"], true);
    let qs = h["queries"].as_array().unwrap();
    assert_eq!(qs.len(), 5);
    for q in qs {
        // an autogen query is a stored vector: it is its own nearest neighbour
        assert_eq!(q["ground_truth"][0], q["id"]);
        assert_eq!(q["ground_truth"].as_array().unwrap().len(), 3);
    }
    // same seed, same sample
    let (_, h2) = send(
        &app,
        "POST",
        "/vectors/harness/autogen",
        Some(json!({"name": "auto2", "index_name": "idx", "queries": 5, "k": 3, "seed": 7})),
    )
    .await;
    let ids = |h: &Value| {
        h["queries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|q| q["id"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&h), ids(&h2));

    let (s, e) = send(
        &app,
        "POST",
        "/vectors/harness",
        Some(json!({"name": "explicit", "index_name": "idx", "k": 2, "queries": [{"vector": vec_of(3)}, {"id": "mine", "vector": vec_of(4)}]})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{e:?}");
    assert_eq!(e["queries"][0]["id"], "q0");
    assert_eq!(e["queries"][1]["id"], "mine");
    assert_eq!(e["queries"][0]["ground_truth"][0], "v3");

    let bad = |body: Value| async { send(&app, "POST", "/vectors/harness", Some(body)).await };
    let q = json!([{"vector": vec_of(1)}]);
    assert_error(
        &bad(json!({"name": "explicit", "index_name": "idx", "k": 2, "queries": q})).await,
        StatusCode::CONFLICT,
        "harness_exists",
    );
    assert_error(
        &bad(json!({"name": "h", "index_name": "idx", "k": 0, "queries": q})).await,
        StatusCode::BAD_REQUEST,
        "invalid_k",
    );
    assert_error(
        &bad(json!({"name": "h", "index_name": "idx", "k": 31, "queries": q})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "k_too_large",
    );
    assert_error(
        &bad(json!({"name": "h", "index_name": "idx", "k": 2, "queries": []})).await,
        StatusCode::BAD_REQUEST,
        "no_queries",
    );
    assert_error(
        &bad(json!({"name": "h", "index_name": "idx", "k": 2, "queries": [{"vector": [1.0]}]})).await,
        StatusCode::BAD_REQUEST,
        "invalid_query",
    );
    assert_error(
        &bad(json!({"name": "h", "index_name": "idx", "k": 2, "queries": [{"vector": vec![0.0f32; 8]}]}))
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_query",
    );
    assert_error(&bad(json!({"name": "h", "index_name": "idx", "k": 2, "queries": [{"id": "a", "vector": vec_of(1)}, {"id": "a", "vector": vec_of(2)}]})).await, StatusCode::BAD_REQUEST, "invalid_query_id");
    assert_error(
        &bad(json!({"name": "h", "index_name": "nope", "k": 2, "queries": q})).await,
        StatusCode::NOT_FOUND,
        "index_not_found",
    );
    assert_error(
        &bad(json!({"name": "a/b", "index_name": "idx", "k": 2, "queries": q})).await,
        StatusCode::BAD_REQUEST,
        "invalid_name",
    );
    let auto = |body: Value| async { send(&app, "POST", "/vectors/harness/autogen", Some(body)).await };
    assert_error(
        &auto(json!({"name": "h", "index_name": "idx", "queries": 31, "k": 2})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "too_many_queries",
    );
    assert_error(
        &auto(json!({"name": "h", "index_name": "idx", "queries": 0, "k": 2})).await,
        StatusCode::BAD_REQUEST,
        "no_queries",
    );
    assert_error(
        &send(&app, "GET", "/vectors/harness/h", None).await,
        StatusCode::NOT_FOUND,
        "harness_not_found",
    );

    let (s, got) = send(&app, "GET", "/vectors/harness/auto", None).await;
    assert_eq!(
        (s, got["queries"].clone()),
        (StatusCode::OK, h["queries"].clone())
    );

    // growth makes the stored ground truth stale: it is no longer shown as built
    let r = send(
        &app,
        "POST",
        "/vectors/indexes/idx/vectors",
        Some(json!({"vectors": [{"id": "new", "vector": vec_of(99)}]})),
    )
    .await;
    assert_eq!(r.0, StatusCode::OK);
    let (_, got) = send(&app, "GET", "/vectors/harness/auto", None).await;
    assert_eq!(got["ground_truth_built"], false);
    assert_eq!(got["queries"][0]["ground_truth"], Value::Null);

    // deleting the index deletes its harnesses
    assert_eq!(
        send(&app, "DELETE", "/vectors/indexes/idx", None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_error(
        &send(&app, "GET", "/vectors/harness/auto", None).await,
        StatusCode::NOT_FOUND,
        "harness_not_found",
    );
}

#[tokio::test]
async fn activation_and_search() {
    let app = app().await;
    seeded(&app, 40).await;
    let q = json!({"vector": vec_of(7), "k": 3});
    assert_error(
        &send(&app, "POST", "/vectors/search/idx", Some(q.clone())).await,
        StatusCode::CONFLICT,
        "not_active",
    );

    let (s, a) = send(&app, "POST", "/vectors/indexes/idx/activate", None).await;
    assert_eq!(s, StatusCode::OK, "{a:?}");
    assert_eq!(a["generation"], 1);
    assert_eq!(a["index_name"], "idx");
    assert_eq!(
        a["config"],
        json!({"ef_construction": 80, "ef_search": 30, "m": 16, "seed": 42})
    );
    assert!(a["build_time_secs"].as_f64().unwrap() >= 0.0);

    let (s, r) = send(&app, "POST", "/vectors/search/idx", Some(q.clone())).await;
    assert_eq!(s, StatusCode::OK, "{r:?}");
    let hits = r["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 3);
    assert_eq!(hits[0]["id"], "v7");
    let d: Vec<f64> = hits.iter().map(|h| h["distance"].as_f64().unwrap()).collect();
    assert!(d.windows(2).all(|w| w[0] <= w[1]), "ascending distances {d:?}");
    assert_eq!(r["generation"], 1);

    let (_, i) = send(&app, "GET", "/vectors/indexes/idx", None).await;
    assert_eq!(i["active"]["generation"], 1);
    assert_eq!(i["active"]["config"]["ef_construction"], 80);
    let (_, a2) = send(&app, "POST", "/vectors/indexes/idx/activate", None).await;
    assert_eq!(a2["generation"], 2);

    let (s, r) = send(
        &app,
        "POST",
        "/vectors/search/idx",
        Some(json!({"vector": vec_of(7), "k": 50, "ef_search": 10})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        r["hits"].as_array().unwrap().len(),
        40,
        "at most k hits, at most every vector"
    );
    assert_eq!(r["ef_search_used"], 50);

    for (body, code) in [
        (json!({"vector": vec_of(1), "k": 0}), "invalid_k"),
        (json!({"vector": vec_of(1), "k": 1001}), "invalid_k"),
        (
            json!({"vector": vec_of(1), "k": 5, "ef_search": 5}),
            "invalid_config",
        ),
        (
            json!({"vector": vec_of(1), "k": 5, "ef_search": 201}),
            "invalid_config",
        ),
        (json!({"vector": [1.0, 2.0], "k": 5}), "invalid_query"),
        (json!({"vector": vec![0.0f32; 8], "k": 5}), "invalid_query"),
        (json!({"k": 5}), "invalid_body"),
    ] {
        assert_error(
            &send(&app, "POST", "/vectors/search/idx", Some(body)).await,
            StatusCode::BAD_REQUEST,
            code,
        );
    }
    assert_error(
        &send(&app, "POST", "/vectors/search/nope", Some(q)).await,
        StatusCode::NOT_FOUND,
        "index_not_found",
    );
    assert_error(
        &send(&app, "POST", "/vectors/indexes/nope/activate", None).await,
        StatusCode::NOT_FOUND,
        "index_not_found",
    );
    seeded_small(&app).await;
    assert_error(
        &send(&app, "POST", "/vectors/indexes/s/activate", None).await,
        StatusCode::CONFLICT,
        "index_empty",
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let app = app().await;
    assert_error(
        &send(&app, "GET", "/nope", None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &send(&app, "PUT", "/health", None).await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
}
