//! Helpers of the in-process router tests: the router over an in-memory store, requests
//! through `oneshot`, and small fixtures. Each test crate uses a part of them.
#![allow(dead_code)]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use vectune::http::{router, RouterLimits};
use vectune::service::Vectune;
use vectune::storage::Storage;

pub async fn app_with_limit(max_body_bytes: usize) -> Router {
    let service = Vectune::open(Storage::in_memory(), 1, vectune::hnsw::BuildOptions::all_cores())
        .await
        .unwrap();
    router(
        service,
        RouterLimits {
            max_body_bytes,
            max_binary_body_bytes: 4096,
        },
    )
}

pub async fn app() -> Router {
    app_with_limit(1 << 20).await
}

pub async fn send_raw(
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

pub async fn send(app: &Router, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
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

pub fn assert_error(got: &(StatusCode, Value), status: StatusCode, code: &str) {
    assert_eq!(got.0, status, "{:?}", got.1);
    assert_eq!(got.1["error"]["code"], code, "{:?}", got.1);
    assert!(
        got.1["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{:?}",
        got.1
    );
}

/// A cosine index "idx" of `n` deterministic 8-d vectors ids "v0".."v{n-1}".
pub async fn seeded(app: &Router, n: usize) {
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
pub fn vec_of(i: usize) -> Vec<f32> {
    (0..8)
        .map(|d| {
            let mut z = (i as u64 * 8 + d as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 31)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

pub async fn autogen(app: &Router, name: &str, queries: usize, k: usize) {
    let r = send(
        app,
        "POST",
        "/vectors/harness/autogen",
        Some(json!({"name": name, "index_name": "idx", "queries": queries, "k": k})),
    )
    .await;
    assert_eq!(r.0, StatusCode::CREATED, "{:?}", r.1);
}

pub async fn poll_job(app: &Router, id: &str, until: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..3000 {
        let (s, j) = send(app, "GET", &format!("/vectors/jobs/{id}"), None).await;
        assert_eq!(s, StatusCode::OK, "{j:?}");
        let (done, total) = (
            j["progress"]["done"].as_u64().unwrap(),
            j["progress"]["total"].as_u64().unwrap(),
        );
        assert!(done <= total, "{j:?}");
        if until(&j) {
            return j;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("job {id} did not get there in 60 s");
}

/// A JSON array of numbers as the f32 vector it was serialised from.
pub fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|x| x.as_f64().expect("a number") as f32)
        .collect()
}
