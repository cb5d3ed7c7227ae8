//! In-process HTTP tests: the whole router over an in-memory store, driven by `oneshot`.

mod support;

use axum::http::StatusCode;
use axum::Router;
use serde_json::{json, Value};
use support::*;

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
        json!({"ef_construction": 80, "ef_search": 30, "m": 16, "seed": 42, "quantization": "none"})
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

/// A second index with harness "other-h", for cross-index checks.
async fn other_index_with_harness(app: &Router) {
    let r = send(
        app,
        "POST",
        "/vectors/indexes",
        Some(json!({"name": "other", "dims": 8, "metric": "l2"})),
    )
    .await;
    assert_eq!(r.0, StatusCode::CREATED);
    let vectors: Vec<Value> = (0..20)
        .map(|i| json!({"id": format!("o{i}"), "vector": vec_of(i + 500)}))
        .collect();
    assert_eq!(
        send(
            app,
            "POST",
            "/vectors/indexes/other/vectors",
            Some(json!({ "vectors": vectors }))
        )
        .await
        .0,
        StatusCode::OK
    );
    let r = send(
        app,
        "POST",
        "/vectors/harness/autogen",
        Some(json!({"name": "other-h", "index_name": "other", "queries": 3, "k": 3})),
    )
    .await;
    assert_eq!(r.0, StatusCode::CREATED);
}

#[tokio::test]
async fn trials_and_journal() {
    let app = app().await;
    seeded(&app, 60).await;
    autogen(&app, "h", 8, 5).await;
    autogen(&app, "h2", 4, 5).await;
    other_index_with_harness(&app).await;
    let (s, t) = send(
        &app,
        "POST",
        "/vectors/hnsw/trial",
        Some(json!({"index_name": "idx", "harness": "h", "config": {"ef_construction": 40, "ef_search": 20}, "note": "first"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{t:?}");
    assert_eq!(
        t["config"],
        json!({"ef_construction": 40, "ef_search": 20, "m": 16, "seed": 42, "quantization": "none"})
    );
    assert_eq!(
        (t["index_name"].clone(), t["eval_set"].clone(), t["note"].clone()),
        (json!("idx"), json!("h"), json!("first"))
    );
    assert_eq!(t["source"], "manual");
    let m = &t["metrics"];
    for f in [
        "build_time_secs",
        "search_latency_p50_us",
        "search_latency_p95_us",
        "search_latency_p99_us",
        "recall_at_k",
        "memory_bytes",
        "brute_force_latency_us",
        "recall_ci_low",
        "distance_evals_per_query",
        "search_latency_mean_us",
        "qps",
    ] {
        assert!(m[f].as_f64().is_some_and(|x| x >= 0.0), "{f}: {m:?}");
    }
    assert!(m["recall_ci_low"].as_f64() <= m["recall_at_k"].as_f64());
    assert!(m["distance_evals_per_query"].as_f64().unwrap() >= 1.0);
    assert_eq!(t["validation"], Value::Null);
    assert_eq!(
        (m["vectors"].clone(), m["eval_queries"].clone()),
        (json!(60), json!(8))
    );
    assert!(m["search_latency_p50_us"].as_f64() <= m["search_latency_p95_us"].as_f64());
    assert!(m["search_latency_p95_us"].as_f64() <= m["search_latency_p99_us"].as_f64());
    assert!(m["recall_at_k"].as_f64().unwrap() <= 1.0);
    let id1 = t["id"].as_str().unwrap().to_string();

    let (_, t2) = send(&app, "POST", "/vectors/hnsw/trial", Some(json!({"index_name": "idx", "harness": "h2", "config": {"ef_construction": 20, "ef_search": 10, "m": 8, "seed": 1}}))).await;
    let id2 = t2["id"].as_str().unwrap().to_string();

    let (s, list) = send(&app, "GET", "/vectors/hnsw/trials/idx", None).await;
    assert_eq!(s, StatusCode::OK);
    let ids: Vec<&str> = list["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![id1.as_str(), id2.as_str()], "oldest first");
    let (_, only) = send(&app, "GET", "/vectors/hnsw/trials/idx?harness=h2", None).await;
    assert_eq!(only["trials"].as_array().unwrap().len(), 1);
    assert_eq!(only["trials"][0]["id"], id2.as_str());
    let (s, one) = send(&app, "GET", &format!("/vectors/hnsw/trials/idx/{id1}"), None).await;
    assert_eq!((s, one), (StatusCode::OK, t.clone()));

    let trial = |body: Value| async { send(&app, "POST", "/vectors/hnsw/trial", Some(body)).await };
    let cfg = json!({"ef_construction": 40, "ef_search": 20});
    assert_error(
        &trial(json!({"index_name": "nope", "harness": "h", "config": cfg})).await,
        StatusCode::NOT_FOUND,
        "index_not_found",
    );
    assert_error(
        &trial(json!({"index_name": "idx", "harness": "nope", "config": cfg})).await,
        StatusCode::NOT_FOUND,
        "harness_not_found",
    );
    assert_error(
        &trial(json!({"index_name": "idx", "harness": "other-h", "config": cfg})).await,
        StatusCode::BAD_REQUEST,
        "harness_index_mismatch",
    );
    for bad in [
        json!({"ef_construction": 5000, "ef_search": 30}),
        json!({"ef_construction": 40, "ef_search": 9}),
        json!({"ef_construction": 40, "ef_search": 30, "m": 65}),
        json!({"ef_construction": 40, "ef_search": 30, "m": 3}),
    ] {
        assert_error(
            &trial(json!({"index_name": "idx", "harness": "h", "config": bad})).await,
            StatusCode::BAD_REQUEST,
            "invalid_config",
        );
    }
    assert_error(&trial(json!({"index_name": "idx", "harness": "h", "config": {"ef_construction": 40, "ef_search": 30, "M": 3}})).await, StatusCode::BAD_REQUEST, "invalid_body");
    assert_error(
        &trial(json!({"index_name": "idx", "harness": "h"})).await,
        StatusCode::BAD_REQUEST,
        "invalid_body",
    );
    assert_error(
        &send(&app, "GET", "/vectors/hnsw/trials/nope", None).await,
        StatusCode::NOT_FOUND,
        "index_not_found",
    );
    assert_error(
        &send(&app, "GET", "/vectors/hnsw/trials/idx?harness=..", None).await,
        StatusCode::BAD_REQUEST,
        "invalid_name",
    );
    assert_error(
        &send(&app, "GET", "/vectors/hnsw/trials/idx/not-a-uuid", None).await,
        StatusCode::NOT_FOUND,
        "trial_not_found",
    );
    assert_error(
        &send(&app, "GET", &format!("/vectors/hnsw/trials/other/{id1}"), None).await,
        StatusCode::NOT_FOUND,
        "trial_not_found",
    );
    let (_, list) = send(&app, "GET", "/vectors/hnsw/trials/idx", None).await;
    assert_eq!(
        list["trials"].as_array().unwrap().len(),
        2,
        "refused trials stored nothing"
    );
}

#[tokio::test]
async fn promotion_registry_and_activation_use_it() {
    let app = app().await;
    seeded(&app, 40).await;
    autogen(&app, "h", 5, 5).await;
    let (s, p) = send(&app, "GET", "/vectors/hnsw/promoted/idx", None).await;
    assert_eq!(
        (s, p),
        (
            StatusCode::OK,
            json!({"index_name": "idx", "current": null, "history": []})
        )
    );
    assert_error(
        &send(&app, "POST", "/vectors/hnsw/rollback/idx", None).await,
        StatusCode::CONFLICT,
        "nothing_to_roll_back",
    );

    let mut ids = Vec::new();
    for (ec, es) in [(20, 10), (60, 40)] {
        let (_, t) = send(&app, "POST", "/vectors/hnsw/trial", Some(json!({"index_name": "idx", "harness": "h", "config": {"ef_construction": ec, "ef_search": es}}))).await;
        ids.push(t["id"].as_str().unwrap().to_string());
    }
    let (s, p) = send(
        &app,
        "POST",
        &format!(
            "/vectors/hnsw/promote/idx/{}?promoted_by=ci&note=hello%20world",
            ids[0]
        ),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{p:?}");
    assert_eq!(p["current"]["trial_id"], ids[0].as_str());
    assert_eq!(
        (p["current"]["promoted_by"].clone(), p["current"]["note"].clone()),
        (json!("ci"), json!("hello world"))
    );
    assert_eq!(p["current"]["config"]["ef_construction"], 20);
    assert!(p["current"]["promoted_at"].as_str().is_some());
    let (_, p) = send(
        &app,
        "POST",
        &format!("/vectors/hnsw/promote/idx/{}", ids[1]),
        None,
    )
    .await;
    assert_eq!(
        (p["current"]["promoted_by"].clone(), p["current"]["note"].clone()),
        (json!("api"), Value::Null)
    );
    assert_eq!(p["history"][0]["trial_id"], ids[0].as_str());

    // activation builds with the promoted config; promotion alone does not rebuild
    let (_, a) = send(&app, "POST", "/vectors/indexes/idx/activate", None).await;
    assert_eq!(
        a["config"],
        json!({"ef_construction": 60, "ef_search": 40, "m": 16, "seed": 42, "quantization": "none"})
    );
    let (_, p) = send(&app, "POST", "/vectors/hnsw/rollback/idx", None).await;
    assert_eq!(
        (p["current"]["trial_id"].clone(), p["history"].clone()),
        (json!(ids[0]), json!([]))
    );
    let (_, i) = send(&app, "GET", "/vectors/indexes/idx", None).await;
    assert_eq!(
        i["active"]["config"]["ef_construction"], 60,
        "rollback does not rebuild by itself"
    );
    let (_, a) = send(&app, "POST", "/vectors/indexes/idx/activate", None).await;
    assert_eq!(a["config"]["ef_construction"], 20);
    let (_, p) = send(&app, "POST", "/vectors/hnsw/rollback/idx", None).await;
    assert_eq!(p["current"], Value::Null);
    let (_, a) = send(&app, "POST", "/vectors/indexes/idx/activate", None).await;
    assert_eq!(
        a["config"]["ef_construction"], 80,
        "nothing promoted: the default"
    );

    assert_error(
        &send(
            &app,
            "POST",
            "/vectors/hnsw/promote/idx/00000000-0000-7000-8000-000000000000",
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
        "trial_not_found",
    );
    assert_error(
        &send(&app, "POST", "/vectors/hnsw/promote/nope/x", None).await,
        StatusCode::NOT_FOUND,
        "index_not_found",
    );
    let long = "x".repeat(1100);
    assert_error(
        &send(
            &app,
            "POST",
            &format!("/vectors/hnsw/promote/idx/{}?note={long}", ids[0]),
            None,
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_text",
    );
    assert_error(
        &send(
            &app,
            "POST",
            &format!("/vectors/hnsw/promote/idx/{}?bogus=1", ids[0]),
            None,
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_query_string",
    );
    assert_error(
        &send(&app, "POST", "/vectors/hnsw/rollback/nope", None).await,
        StatusCode::NOT_FOUND,
        "index_not_found",
    );
    assert_error(
        &send(&app, "GET", "/vectors/hnsw/promoted/nope", None).await,
        StatusCode::NOT_FOUND,
        "index_not_found",
    );
    let (_, p) = send(&app, "GET", "/vectors/hnsw/promoted/idx", None).await;
    assert_eq!(p["current"], Value::Null, "refused requests changed nothing");
}

#[tokio::test]
async fn autotune_rules() {
    let app = app().await;
    seeded(&app, 50).await;
    autogen(&app, "h", 10, 10).await;
    other_index_with_harness(&app).await;
    let (s, r) = send(
        &app,
        "POST",
        "/vectors/hnsw/autotune",
        Some(json!({"index_name": "idx", "harness": "h"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r:?}");
    assert_eq!(
        (
            r["trials_run"].clone(),
            r["promoted"].clone(),
            r["skipped"].clone()
        ),
        (json!(5), json!(true), json!([]))
    );
    assert!(r["duration_secs"].as_f64().unwrap() > 0.0);
    assert_eq!(
        r["builds"], 4,
        "ef_search 30 and 60 at ef_construction 80 share one graph"
    );
    let w = &r["winner"];
    for f in [
        "trial_id",
        "config",
        "recall_at_k",
        "search_latency_p50_us",
        "build_time_secs",
    ] {
        assert!(!w[f].is_null(), "winner.{f}");
    }
    let (_, p) = send(&app, "GET", "/vectors/hnsw/promoted/idx", None).await;
    assert_eq!(p["current"]["trial_id"], w["trial_id"]);
    assert_eq!(p["current"]["promoted_by"], "autotune");
    assert!(p["current"]["note"]
        .as_str()
        .unwrap()
        .starts_with("autotune winner: recall="));
    let (_, list) = send(&app, "GET", "/vectors/hnsw/trials/idx", None).await;
    let trials = list["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 5);
    assert!(trials.iter().all(|t| t["source"] == "autotune"));
    let eligible = trials
        .iter()
        .filter(|t| t["metrics"]["recall_at_k"].as_f64().unwrap() >= 0.9)
        .count();
    assert_eq!(r["trials_eligible"], eligible);

    // the Pareto frontier of the journal
    let (s, front) = send(&app, "GET", "/vectors/hnsw/pareto/idx?harness=h", None).await;
    assert_eq!(s, StatusCode::OK, "{front:?}");
    assert_eq!(
        (front["index_name"].clone(), front["harness"].clone()),
        (json!("idx"), json!("h"))
    );
    let points = front["points"].as_array().unwrap();
    assert!(!points.is_empty());
    let recall: Vec<f64> = points
        .iter()
        .map(|p| p["recall_at_k"].as_f64().unwrap())
        .collect();
    assert!(
        recall.windows(2).all(|w| w[0] <= w[1]),
        "recall ascending {recall:?}"
    );
    for p in points {
        let t = trials
            .iter()
            .find(|t| t["id"] == p["trial_id"])
            .expect("a journal trial");
        assert_eq!(p["config"], t["config"]);
        assert_eq!(p["search_latency_p50_us"], t["metrics"]["search_latency_p50_us"]);
        // no journal trial dominates it
        let (r, l) = (
            p["recall_at_k"].as_f64().unwrap(),
            p["search_latency_p50_us"].as_f64().unwrap(),
        );
        assert!(!trials.iter().any(|u| {
            let (ur, ul) = (
                u["metrics"]["recall_at_k"].as_f64().unwrap(),
                u["metrics"]["search_latency_p50_us"].as_f64().unwrap(),
            );
            ur >= r && ul <= l && (ur > r || ul < l)
        }));
    }
    assert_error(
        &send(&app, "GET", "/vectors/hnsw/pareto/nope?harness=h", None).await,
        StatusCode::NOT_FOUND,
        "index_not_found",
    );
    assert_error(
        &send(&app, "GET", "/vectors/hnsw/pareto/idx?harness=nope", None).await,
        StatusCode::NOT_FOUND,
        "harness_not_found",
    );
    assert_error(
        &send(&app, "GET", "/vectors/hnsw/pareto/idx?harness=other-h", None).await,
        StatusCode::BAD_REQUEST,
        "harness_index_mismatch",
    );

    // a grid: out-of-bounds entries are skipped and reported
    let (s, r) = send(
        &app,
        "POST",
        "/vectors/hnsw/autotune",
        Some(json!({"index_name": "idx", "harness": "h", "min_recall": 0.0,
                    "grid": [{"ef_construction": 1, "ef_search": 30}, {"ef_construction": 30, "ef_search": 15, "m": 6, "seed": 3}]})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r:?}");
    assert_eq!(r["trials_run"], 1);
    assert_eq!(r["skipped"].as_array().unwrap().len(), 1);
    assert_eq!(
        r["winner"]["config"],
        json!({"ef_construction": 30, "ef_search": 15, "m": 6, "seed": 3, "quantization": "none"})
    );

    let tune = |body: Value| async { send(&app, "POST", "/vectors/hnsw/autotune", Some(body)).await };
    assert_error(
        &tune(
            json!({"index_name": "idx", "harness": "h", "grid": [{"ef_construction": 1, "ef_search": 30}]}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "no_usable_config",
    );
    assert_error(
        &tune(json!({"index_name": "idx", "harness": "h", "grid": []})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "no_usable_config",
    );
    assert_error(
        &tune(json!({"index_name": "idx", "harness": "h", "min_recall": 1.5})).await,
        StatusCode::BAD_REQUEST,
        "invalid_min_recall",
    );
    assert_error(
        &tune(json!({"index_name": "idx", "harness": "nope"})).await,
        StatusCode::NOT_FOUND,
        "harness_not_found",
    );
    assert_error(
        &tune(json!({"index_name": "nope", "harness": "h"})).await,
        StatusCode::NOT_FOUND,
        "index_not_found",
    );
    assert_error(
        &tune(json!({"index_name": "idx", "harness": "other-h"})).await,
        StatusCode::BAD_REQUEST,
        "harness_index_mismatch",
    );
    assert_error(
        &tune(json!({"index_name": "idx", "harness": "h", "strategy": "magic"})).await,
        StatusCode::BAD_REQUEST,
        "invalid_autotune_request",
    );
    assert_error(
        &tune(json!({"index_name": "idx", "harness": "h", "stratgey": "adaptive"})).await,
        StatusCode::BAD_REQUEST,
        "invalid_body",
    );
    let (_, list) = send(&app, "GET", "/vectors/hnsw/trials/idx", None).await;
    assert_eq!(
        list["trials"].as_array().unwrap().len(),
        6,
        "refused autotunes ran nothing"
    );
}

#[tokio::test]
async fn autotune_without_an_eligible_trial_promotes_nothing() {
    let app = app().await;
    // 1,500 vectors searched with the sparsest graph and smallest ef: recall stays below 1
    let r = send(
        &app,
        "POST",
        "/vectors/indexes",
        Some(json!({"name": "idx", "dims": 8, "metric": "l2"})),
    )
    .await;
    assert_eq!(r.0, StatusCode::CREATED);
    let vectors: Vec<Value> = (0..1500)
        .map(|i| json!({"id": format!("v{i}"), "vector": vec_of(i)}))
        .collect();
    assert_eq!(
        send(
            &app,
            "POST",
            "/vectors/indexes/idx/vectors",
            Some(json!({ "vectors": vectors }))
        )
        .await
        .0,
        StatusCode::OK
    );
    autogen(&app, "h", 50, 50).await;
    let (s, r) = send(
        &app,
        "POST",
        "/vectors/hnsw/autotune",
        Some(json!({"index_name": "idx", "harness": "h", "min_recall": 1.0, "grid": [{"ef_construction": 10, "ef_search": 10, "m": 4}]})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r:?}");
    assert_eq!(
        (
            r["winner"].clone(),
            r["promoted"].clone(),
            r["trials_eligible"].clone()
        ),
        (Value::Null, json!(false), json!(0))
    );
    assert_eq!(
        send(&app, "GET", "/vectors/hnsw/promoted/idx", None).await.1["current"],
        Value::Null
    );
}

#[tokio::test]
async fn a_second_concurrent_autotune_is_409() {
    let app = app().await;
    seeded(&app, 300).await;
    autogen(&app, "h", 20, 10).await;
    let body = json!({"index_name": "idx", "harness": "h"});
    let (a, b) = tokio::join!(
        send(&app, "POST", "/vectors/hnsw/autotune", Some(body.clone())),
        send(&app, "POST", "/vectors/hnsw/autotune", Some(body.clone()))
    );
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::CONFLICT]);
    let conflict = if a.0 == StatusCode::CONFLICT { a } else { b };
    assert_error(&conflict, StatusCode::CONFLICT, "autotune_running");
    // once the first is done, the index is free again
    assert_eq!(
        send(&app, "POST", "/vectors/hnsw/autotune", Some(body)).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn stored_graphs_are_reused_checked_and_collected() {
    use vectune::http::{router, RouterLimits};
    use vectune::service::Vectune;
    use vectune::storage::{keys, Storage};
    let service = Vectune::open(Storage::in_memory(), 1, vectune::hnsw::BuildOptions::all_cores())
        .await
        .unwrap();
    let storage = service.storage().clone();
    let app = router(
        service,
        RouterLimits {
            max_body_bytes: 1 << 20,
            max_binary_body_bytes: 1 << 20,
        },
    );
    seeded(&app, 200).await;
    let (_, a) = send(&app, "POST", "/vectors/indexes/idx/activate", None).await;
    assert_eq!(
        (a["generation"].clone(), a["loaded_from_store"].clone()),
        (json!(1), json!(false))
    );
    let (_, a) = send(&app, "POST", "/vectors/indexes/idx/activate", None).await;
    assert_eq!(
        (a["generation"].clone(), a["loaded_from_store"].clone()),
        (json!(2), json!(true))
    );

    // a damaged graph is never loaded: the activation rebuilds and stores a sound one
    let idx = vectune::names::IndexName::parse("idx").unwrap();
    let graphs = storage.list(&keys::graphs(&idx)).await.unwrap();
    assert_eq!(graphs.len(), 1);
    let mut bytes = storage.get(&graphs[0]).await.unwrap().unwrap().to_vec();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    storage.put_overwrite(&graphs[0], bytes.into()).await.unwrap();
    let (_, a) = send(&app, "POST", "/vectors/indexes/idx/activate", None).await;
    assert_eq!(a["loaded_from_store"], false, "{a:?}");
    let (s, r) = send(
        &app,
        "POST",
        "/vectors/search/idx",
        Some(json!({"vector": vec_of(9), "k": 1})),
    )
    .await;
    assert_eq!((s, r["hits"][0]["id"].clone()), (StatusCode::OK, json!("v9")));
    let (_, a) = send(&app, "POST", "/vectors/indexes/idx/activate", None).await;
    assert_eq!(a["loaded_from_store"], true, "the rebuilt graph was stored");

    // growth: a new graph is built and the old one, which can never serve again, is deleted
    let r = send(
        &app,
        "POST",
        "/vectors/indexes/idx/vectors",
        Some(json!({"vectors": [{"id": "late", "vector": vec_of(999)}]})),
    )
    .await;
    assert_eq!(r.0, StatusCode::OK);
    let (_, a) = send(&app, "POST", "/vectors/indexes/idx/activate", None).await;
    assert_eq!(
        (a["loaded_from_store"].clone(), a["vectors"].clone()),
        (json!(false), json!(201))
    );
    let graphs = storage.list(&keys::graphs(&idx)).await.unwrap();
    assert_eq!(graphs.len(), 1);
    assert_eq!(keys::graph_vectors_of(&graphs[0]), Some(201));
}

#[tokio::test]
async fn binary_ingest_assigns_row_ids_and_refuses_bad_bodies_whole() {
    let app = app().await; // binary limit 4096 bytes
    let r = send(
        &app,
        "POST",
        "/vectors/indexes",
        Some(json!({"name": "b", "dims": 2, "metric": "l2"})),
    )
    .await;
    assert_eq!(r.0, StatusCode::CREATED);
    let fvecs = |rows: &[[f32; 2]]| -> Vec<u8> {
        let mut out = Vec::new();
        for r in rows {
            out.extend_from_slice(&2i32.to_le_bytes());
            r.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
        }
        out
    };
    let octet = Some("application/octet-stream");
    let r = send_raw(
        &app,
        "POST",
        "/vectors/indexes/b/vectors?format=fvecs",
        octet,
        fvecs(&[[1.0, 2.0], [3.0, 4.0]]),
    )
    .await;
    assert_eq!(
        r,
        (
            StatusCode::OK,
            json!({"appended": 2, "total": 2, "first_id": "0", "last_id": "1"})
        )
    );
    for (uri, body, code) in [
        (
            "/vectors/indexes/b/vectors?format=csv",
            fvecs(&[[1.0, 2.0]]),
            "invalid_format",
        ),
        (
            "/vectors/indexes/b/vectors?format=fvecs",
            Vec::new(),
            "invalid_binary_body",
        ),
        (
            "/vectors/indexes/b/vectors?format=fvecs",
            fvecs(&[[1.0, f32::NAN]]),
            "non_finite_value",
        ),
        (
            "/vectors/indexes/b/vectors?format=npy",
            fvecs(&[[1.0, 2.0]]),
            "invalid_binary_body",
        ),
    ] {
        assert_error(
            &send_raw(&app, "POST", uri, octet, body).await,
            StatusCode::BAD_REQUEST,
            code,
        );
    }
    let big = fvecs(&vec![[1.0, 2.0]; 400]); // 4,800 bytes over the 4,096 limit
    assert_error(
        &send_raw(
            &app,
            "POST",
            "/vectors/indexes/b/vectors?format=fvecs",
            octet,
            big,
        )
        .await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );
    // an assigned id that JSON took already refuses the batch, and uses no id up
    let r = send(
        &app,
        "POST",
        "/vectors/indexes/b/vectors",
        Some(json!({"vectors": [{"id": "3", "vector": [0.5, 0.5]}]})),
    )
    .await;
    assert_eq!(r.0, StatusCode::OK);
    let r = send_raw(
        &app,
        "POST",
        "/vectors/indexes/b/vectors?format=fvecs",
        octet,
        fvecs(&[[1.0, 1.0]]),
    )
    .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "duplicate_id");
    assert_eq!(
        send(&app, "GET", "/vectors/indexes/b", None).await.1["vectors"],
        3
    );
    let r = send_raw(
        &app,
        "POST",
        "/vectors/indexes/nope/vectors?format=fvecs",
        octet,
        fvecs(&[[1.0, 1.0]]),
    )
    .await;
    assert_error(&r, StatusCode::NOT_FOUND, "index_not_found");
}

#[tokio::test]
async fn autotune_objectives_gates_and_promote_modes() {
    let app = app().await;
    seeded(&app, 300).await;
    autogen(&app, "h", 30, 10).await;
    let tune = |body: Value| async { send(&app, "POST", "/vectors/hnsw/autotune", Some(body)).await };
    for (field, value) in [
        ("objective", json!("fastest")),
        ("gate", json!("bayes")),
        ("promote", json!("sometimes")),
        ("target_recall", json!(1.5)),
        ("target_recall", json!(-0.1)),
    ] {
        let mut body = json!({"index_name": "idx", "harness": "h"});
        body[field] = value;
        assert_error(
            &tune(body).await,
            StatusCode::BAD_REQUEST,
            "invalid_autotune_request",
        );
    }
    let strong = json!({"ef_construction": 200, "ef_search": 200, "m": 32});
    let weak = json!({"ef_construction": 10, "ef_search": 10, "m": 4});
    let (_, r) = tune(
        json!({"index_name": "idx", "harness": "h", "grid": [strong], "promote": "never", "min_recall": 0.0}),
    )
    .await;
    assert_eq!(r["promoted"], false);
    assert!(r["reason"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(
        send(&app, "GET", "/vectors/hnsw/promoted/idx", None).await.1["current"],
        Value::Null
    );
    let (_, r) =
        tune(json!({"index_name": "idx", "harness": "h", "grid": [strong], "min_recall": 0.0})).await;
    assert_eq!(r["promoted"], true, "if_better with nothing promoted: {r:?}");
    let strong_id = r["winner"]["trial_id"].clone();
    // a weaker winner does not replace a stronger incumbent; the reason says why
    let (_, r) = tune(json!({"index_name": "idx", "harness": "h", "grid": [weak], "min_recall": 0.0})).await;
    if r["winner"]["recall_at_k"].as_f64() < Some(1.0) {
        assert_eq!(r["promoted"], false, "{r:?}");
        assert!(r["reason"].as_str().unwrap().starts_with("kept"), "{r:?}");
        assert_eq!(
            r["builds"], 2,
            "one build for the run, one to re-measure the incumbent"
        );
        assert_eq!(
            send(&app, "GET", "/vectors/hnsw/promoted/idx", None).await.1["current"]["trial_id"],
            strong_id
        );
    }
    // promote always takes it anyway
    let (_, r) = tune(
        json!({"index_name": "idx", "harness": "h", "grid": [weak], "min_recall": 0.0, "promote": "always"}),
    )
    .await;
    assert_eq!(r["promoted"], true);
    // min_latency with a Wilson gate no bound reaches: nothing eligible, nothing promoted
    let (_, r) = tune(
        json!({"index_name": "idx", "harness": "h", "grid": [strong], "objective": "min_latency",
                             "target_recall": 1.0, "gate": "wilson", "promote": "always"}),
    )
    .await;
    assert_eq!(
        (
            r["winner"].clone(),
            r["trials_eligible"].clone(),
            r["promoted"].clone()
        ),
        (Value::Null, json!(0), json!(false))
    );
    // min_latency picks the fastest trial past the target
    let (_, r) = tune(json!({"index_name": "idx", "harness": "h", "objective": "min_latency", "target_recall": 0.5,
                             "promote": "never", "grid": [strong, weak, {"ef_construction": 40, "ef_search": 20}]})).await;
    let (_, list) = send(&app, "GET", "/vectors/hnsw/trials/idx", None).await;
    let run: Vec<&Value> = list["trials"].as_array().unwrap().iter().rev().take(3).collect();
    let best = run
        .iter()
        .filter(|t| t["metrics"]["recall_at_k"].as_f64().unwrap() >= 0.5)
        .map(|t| t["metrics"]["search_latency_p50_us"].as_f64().unwrap())
        .fold(f64::INFINITY, f64::min);
    assert_eq!(r["winner"]["search_latency_p50_us"].as_f64(), Some(best), "{r:?}");
}

#[tokio::test]
async fn validation_fraction_holds_queries_out_and_reports_the_winner_on_them() {
    let app = app().await;
    seeded(&app, 300).await;
    autogen(&app, "h", 40, 10).await;
    let grid =
        json!([{"ef_construction": 40, "ef_search": 10, "m": 4}, {"ef_construction": 80, "ef_search": 40}]);
    let (s, r) = send(
        &app,
        "POST",
        "/vectors/hnsw/autotune",
        Some(
            json!({"index_name": "idx", "harness": "h", "grid": grid, "validation_fraction": 0.25,
                    "promote": "never", "min_recall": 0.0}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r:?}");
    let v = &r["winner"]["validation"];
    assert_eq!(v["eval_queries"], 10, "{r:?}");
    assert!(v["recall_at_k"]
        .as_f64()
        .is_some_and(|x| (0.0..=1.0).contains(&x)));
    assert!(v["search_latency_p50_us"].as_f64().is_some_and(|x| x > 0.0));
    let (_, list) = send(&app, "GET", "/vectors/hnsw/trials/idx", None).await;
    let trials = list["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 2);
    for t in trials {
        assert_eq!(t["metrics"]["eval_queries"], 30, "tuned on the other 30");
        if t["id"] == r["winner"]["trial_id"] {
            assert_eq!(&t["validation"], v, "the winner's journal trial carries it");
        } else {
            assert_eq!(t["validation"], Value::Null);
        }
    }
    // without it, every query is used and nothing is validated
    let (_, r) = send(
        &app,
        "POST",
        "/vectors/hnsw/autotune",
        Some(json!({"index_name": "idx", "harness": "h", "grid": [grid[0]], "promote": "never", "min_recall": 0.0})),
    )
    .await;
    assert_eq!(r["winner"]["validation"], Value::Null);
}

#[tokio::test]
async fn adaptive_strategy_keeps_to_max_trials_and_bounds() {
    let app = app().await;
    seeded(&app, 300).await;
    autogen(&app, "h", 20, 10).await;
    let (s, r) = send(
        &app,
        "POST",
        "/vectors/hnsw/autotune",
        Some(
            json!({"index_name": "idx", "harness": "h", "strategy": "adaptive", "max_trials": 5,
                    "objective": "min_latency", "target_recall": 0.9, "promote": "never"}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r:?}");
    let n = r["trials_run"].as_u64().unwrap();
    assert!((1..=5).contains(&n), "{r:?}");
    assert!(r["builds"].as_u64().unwrap() <= n);
    let (_, list) = send(&app, "GET", "/vectors/hnsw/trials/idx", None).await;
    let trials = list["trials"].as_array().unwrap();
    assert_eq!(trials.len() as u64, n);
    for t in trials {
        let c = &t["config"];
        assert!((4..=64).contains(&c["m"].as_u64().unwrap()));
        assert!((10..=400).contains(&c["ef_construction"].as_u64().unwrap()));
        assert!((10..=200).contains(&c["ef_search"].as_u64().unwrap()));
        assert_eq!(t["source"], "autotune");
    }
}

#[tokio::test]
async fn new_autotune_fields_are_checked_before_anything_runs() {
    let app = app().await;
    seeded(&app, 100).await;
    autogen(&app, "h", 10, 5).await;
    for extra in [
        json!({"strategy": "random"}),
        json!({"validation_fraction": 0.5}),
        json!({"validation_fraction": -0.1}),
        json!({"strategy": "adaptive", "max_trials": 0}),
        json!({"strategy": "adaptive", "budget_secs": -5}),
        json!({"strategy": "adaptive", "budget_secs": 0}),
        json!({"strategy": "adaptive", "grid": [{"ef_construction": 40, "ef_search": 10}]}),
    ] {
        let mut body = json!({"index_name": "idx", "harness": "h"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        for uri in ["/vectors/hnsw/autotune", "/vectors/hnsw/autotune?async=true"] {
            assert_error(
                &send(&app, "POST", uri, Some(body.clone())).await,
                StatusCode::BAD_REQUEST,
                "invalid_autotune_request",
            );
        }
    }
    assert_error(
        &send(
            &app,
            "POST",
            "/vectors/hnsw/autotune?async=maybe",
            Some(json!({"index_name": "idx", "harness": "h"})),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_query_string",
    );
    let (_, list) = send(&app, "GET", "/vectors/hnsw/trials/idx", None).await;
    assert_eq!(list["trials"], json!([]));
    let (_, jobs) = send(&app, "GET", "/vectors/jobs?index=idx", None).await;
    assert_eq!(jobs["jobs"], json!([]), "no job for a refused request");
}

#[tokio::test]
async fn async_autotune_runs_as_a_job_with_progress_listing_and_cancel() {
    let app = app().await;
    seeded(&app, 2000).await;
    autogen(&app, "h", 40, 10).await;
    let grid = json!([{"ef_construction": 40, "ef_search": 10}, {"ef_construction": 40, "ef_search": 30}]);
    let (s, acc) = send(
        &app,
        "POST",
        "/vectors/hnsw/autotune?async=true",
        Some(
            json!({"index_name": "idx", "harness": "h", "grid": grid, "promote": "never", "min_recall": 0.0}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{acc:?}");
    let id = acc["job_id"].as_str().unwrap().to_string();
    assert_eq!(acc["status_url"], format!("/vectors/jobs/{id}"));
    let job = poll_job(&app, &id, |j| j["state"] == "succeeded").await;
    assert_eq!(job["kind"], "autotune");
    assert_eq!(job["index_name"], "idx");
    assert_eq!(job["progress"], json!({"done": 2, "total": 2}));
    assert_eq!(job["result"]["trials_run"], 2);
    assert_eq!(job["result"]["builds"], 1, "two ef_search values on one graph");
    assert_eq!(job["result"]["job_id"], id.as_str());
    assert_eq!(job["error"], Value::Null);
    for f in ["created_at", "started_at", "finished_at"] {
        assert!(job[f].is_string(), "{f}: {job:?}");
    }

    // a long adaptive job: while it runs, any other autotune of the index is 409
    let long = json!({"index_name": "idx", "harness": "h", "strategy": "adaptive", "max_trials": 40,
                      "objective": "min_latency", "target_recall": 0.99, "promote": "always"});
    let (s, acc) = send(
        &app,
        "POST",
        "/vectors/hnsw/autotune?async=true",
        Some(long.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let long_id = acc["job_id"].as_str().unwrap().to_string();
    assert_error(
        &send(&app, "POST", "/vectors/hnsw/autotune", Some(long.clone())).await,
        StatusCode::CONFLICT,
        "autotune_running",
    );
    assert_error(
        &send(&app, "POST", "/vectors/hnsw/autotune?async=true", Some(long)).await,
        StatusCode::CONFLICT,
        "autotune_running",
    );
    let (_, jobs) = send(&app, "GET", "/vectors/jobs?index=idx", None).await;
    let ids: Vec<&str> = jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![long_id.as_str(), id.as_str()],
        "newest first, no job for the 409s"
    );
    let job = poll_job(&app, &long_id, |j| {
        j["progress"]["done"].as_u64() >= Some(1) || j["state"] != "running" && j["state"] != "queued"
    })
    .await;
    assert_eq!(job["progress"]["total"], 40);
    let (s, d) = send(&app, "DELETE", &format!("/vectors/jobs/{long_id}"), None).await;
    assert_eq!(s, StatusCode::OK, "{d:?}");
    let job = poll_job(&app, &long_id, |j| {
        j["state"] != "running" && j["state"] != "queued"
    })
    .await;
    if job["state"] == "cancelled" {
        let (_, list) = send(&app, "GET", "/vectors/hnsw/trials/idx", None).await;
        let trials = list["trials"].as_array().unwrap().len() as u64;
        assert_eq!(
            trials,
            2 + job["progress"]["done"].as_u64().unwrap(),
            "finished trials stay"
        );
        assert_eq!(job["result"], Value::Null);
        assert_eq!(
            send(&app, "GET", "/vectors/hnsw/promoted/idx", None).await.1["current"],
            Value::Null,
            "a cancelled job (promote always) promotes nothing"
        );
    } else {
        // it finished between the poll and the cancel: still a clean end
        assert_eq!(job["state"], "succeeded", "{job:?}");
    }
    // the index is free again
    let (s, _) = send(
        &app,
        "POST",
        "/vectors/hnsw/autotune",
        Some(json!({"index_name": "idx", "harness": "h",
        "grid": [grid[0]], "promote": "never"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);

    let uuid = "01900000-0000-7000-8000-000000000000";
    for (m, uri) in [
        ("GET", format!("/vectors/jobs/{uuid}")),
        ("DELETE", format!("/vectors/jobs/{uuid}")),
        ("GET", "/vectors/jobs/not-a-uuid".to_string()),
    ] {
        assert_error(
            &send(&app, m, &uri, None).await,
            StatusCode::NOT_FOUND,
            "job_not_found",
        );
    }
    assert_error(
        &send(&app, "GET", "/vectors/jobs?index=nope", None).await,
        StatusCode::NOT_FOUND,
        "index_not_found",
    );
    assert_error(
        &send(&app, "GET", "/vectors/jobs", None).await,
        StatusCode::BAD_REQUEST,
        "invalid_query_string",
    );
}

#[tokio::test]
async fn agent_routes_settings_errors_first_run_and_disable() {
    let app = app().await;
    seeded(&app, 300).await;
    autogen(&app, "h", 20, 10).await;
    let (s, st) = send(&app, "GET", "/vectors/hnsw/agent/idx", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (st["config"].clone(), st["state"].clone()),
        (Value::Null, json!("disabled"))
    );
    let good = json!({"harness": "h", "enabled": true, "cooldown_secs": 600, "max_trials_per_hour": 2,
                      "epsilon": 0.5, "retune_on_growth": 0.1, "objective": "min_latency", "target_recall": 0.5});
    for (field, value) in [
        ("epsilon", json!(1.5)),
        ("cooldown_secs", json!(-1)),
        ("max_trials_per_hour", json!(-1)),
        ("retune_on_growth", json!(-0.5)),
        ("objective", json!("fastest")),
        ("target_recall", json!(1.2)),
    ] {
        let mut body = good.clone();
        body[field] = value;
        let r = send(&app, "PUT", "/vectors/hnsw/agent/idx", Some(body)).await;
        assert_eq!(r.0, StatusCode::BAD_REQUEST, "{field}: {r:?}");
    }
    let mut body = good.clone();
    body["harness"] = json!("nope");
    assert_error(
        &send(&app, "PUT", "/vectors/hnsw/agent/idx", Some(body)).await,
        StatusCode::NOT_FOUND,
        "harness_not_found",
    );
    for m in ["GET", "PUT", "DELETE"] {
        let body = (m == "PUT").then(|| good.clone());
        assert_error(
            &send(&app, m, "/vectors/hnsw/agent/nope", body).await,
            StatusCode::NOT_FOUND,
            "index_not_found",
        );
    }
    assert_eq!(
        send(&app, "GET", "/vectors/hnsw/agent/idx", None).await.1["config"],
        Value::Null
    );

    let (s, st) = send(&app, "PUT", "/vectors/hnsw/agent/idx", Some(good.clone())).await;
    assert_eq!(s, StatusCode::OK, "{st:?}");
    assert_eq!(st["config"]["max_trials_per_hour"], 2);
    assert_eq!(st["config"]["objective"], "min_latency");
    assert_ne!(st["state"], "disabled");
    // its first run starts at once (no cooldown first), at most 2 trials
    let mut agent_trials = 0;
    for _ in 0..600 {
        let (_, list) = send(&app, "GET", "/vectors/hnsw/trials/idx", None).await;
        agent_trials = list["trials"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["source"] == "agent")
            .count();
        let st = send(&app, "GET", "/vectors/hnsw/agent/idx", None).await.1;
        if agent_trials > 0 && st["state"] == "cooling_down" {
            assert_eq!(st["runs"], 1);
            assert!(st["last_run_at"].is_string());
            assert_eq!(st["trials_last_hour"], agent_trials as u64);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!((1..=2).contains(&agent_trials), "{agent_trials}");
    // if better only: nothing promoted before, so its winner is promoted by the agent
    let p = send(&app, "GET", "/vectors/hnsw/promoted/idx", None).await.1;
    if !p["current"].is_null() {
        assert_eq!(p["current"]["promoted_by"], "agent");
    }
    let (s, _) = send(&app, "DELETE", "/vectors/hnsw/agent/idx", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let st = send(&app, "GET", "/vectors/hnsw/agent/idx", None).await.1;
    assert_eq!(st["state"], "disabled");
    assert_eq!(st["config"]["enabled"], false, "settings kept, disabled");
}

#[tokio::test]
async fn activation_can_run_as_a_job() {
    let app = app().await;
    seeded(&app, 300).await;
    // refused before a job exists: unknown index, empty index, a bad ?async
    assert_error(
        &send(&app, "POST", "/vectors/indexes/nope/activate?async=true", None).await,
        StatusCode::NOT_FOUND,
        "index_not_found",
    );
    let r = send(
        &app,
        "POST",
        "/vectors/indexes",
        Some(json!({"name": "empty", "dims": 8, "metric": "l2"})),
    )
    .await;
    assert_eq!(r.0, StatusCode::CREATED);
    assert_error(
        &send(&app, "POST", "/vectors/indexes/empty/activate?async=true", None).await,
        StatusCode::CONFLICT,
        "index_empty",
    );
    assert_eq!(
        send(&app, "GET", "/vectors/jobs?index=empty", None).await.1["jobs"],
        json!([])
    );
    assert_error(
        &send(&app, "POST", "/vectors/indexes/idx/activate?async=yes", None).await,
        StatusCode::BAD_REQUEST,
        "invalid_query_string",
    );

    let (s, acc) = send(&app, "POST", "/vectors/indexes/idx/activate?async=true", None).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{acc:?}");
    let id = acc["job_id"].as_str().unwrap().to_string();
    assert_eq!(acc["status_url"], format!("/vectors/jobs/{id}"));
    let job = poll_job(&app, &id, |j| j["state"] != "queued" && j["state"] != "running").await;
    assert_eq!(job["state"], "succeeded", "{job:?}");
    assert_eq!(job["kind"], "activate");
    assert_eq!(job["progress"], json!({"done": 1, "total": 1}));
    assert_eq!(job["result"]["index_name"], "idx");
    assert_eq!(job["result"]["generation"], 1);
    assert_eq!(job["result"]["vectors"], 300);
    let (_, index) = send(&app, "GET", "/vectors/indexes/idx", None).await;
    assert_eq!(index["active"]["generation"], 1, "{index:?}");
    // the sync form answers as before
    let (s, a) = send(&app, "POST", "/vectors/indexes/idx/activate", None).await;
    assert_eq!((s, a["generation"].clone()), (StatusCode::OK, json!(2)));
}

/// SQ8 through the HTTP layer: trials carry the field, unknown values are 400 and change
/// nothing, a grid of sq8 configs promotes an sq8 winner, activation serves it with exact
/// distances, and a repeated trial measures the same graph.
#[tokio::test]
async fn sq8_trials_grids_and_activation() {
    let app = app().await;
    seeded(&app, 400).await;
    autogen(&app, "q", 20, 5).await;
    let trial = |config: Value| json!({"index_name": "idx", "harness": "q", "config": config});
    let (s, f32_trial) = send(
        &app,
        "POST",
        "/vectors/hnsw/trial",
        Some(trial(json!({"ef_construction": 40, "ef_search": 20}))),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{f32_trial:?}");
    assert_eq!(f32_trial["config"]["quantization"], "none");
    let sq = json!({"ef_construction": 40, "ef_search": 20, "quantization": "sq8"});
    let (s, a) = send(&app, "POST", "/vectors/hnsw/trial", Some(trial(sq.clone()))).await;
    assert_eq!(s, StatusCode::OK, "{a:?}");
    assert_eq!(a["config"]["quantization"], "sq8");
    assert!(a["metrics"]["memory_bytes"].as_u64() > f32_trial["metrics"]["memory_bytes"].as_u64());
    let (_, b) = send(&app, "POST", "/vectors/hnsw/trial", Some(trial(sq.clone()))).await;
    assert_eq!(a["metrics"]["recall_at_k"], b["metrics"]["recall_at_k"]);
    assert_eq!(
        a["metrics"]["distance_evals_per_query"],
        b["metrics"]["distance_evals_per_query"]
    );
    let (_, journal) = send(&app, "GET", "/vectors/hnsw/trials/idx", None).await;
    let before = journal["trials"].as_array().unwrap().len();
    for bad in [json!("pq4"), json!(""), json!(8), json!("SQ8")] {
        let got = send(
            &app,
            "POST",
            "/vectors/hnsw/trial",
            Some(trial(
                json!({"ef_construction": 40, "ef_search": 20, "quantization": bad}),
            )),
        )
        .await;
        assert_eq!(got.0, StatusCode::BAD_REQUEST, "{bad}: {:?}", got.1);
        assert!(
            got.1["error"]["message"]
                .as_str()
                .unwrap()
                .contains("quantization"),
            "{:?}",
            got.1
        );
    }
    let (_, journal) = send(&app, "GET", "/vectors/hnsw/trials/idx", None).await;
    assert_eq!(
        journal["trials"].as_array().unwrap().len(),
        before,
        "refused trials add nothing"
    );
    let (s, r) = send(
        &app,
        "POST",
        "/vectors/hnsw/autotune",
        Some(
            json!({"index_name": "idx", "harness": "q", "promote": "always", "min_recall": 0.0,
            "grid": [sq, {"ef_construction": 40, "ef_search": 40, "quantization": "sq8"}]}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r:?}");
    assert_eq!(
        r["builds"], 1,
        "two ef_search values of one sq8 graph share its build"
    );
    assert_eq!(r["winner"]["config"]["quantization"], "sq8");
    let (s, act) = send(&app, "POST", "/vectors/indexes/idx/activate", None).await;
    assert_eq!(s, StatusCode::OK, "{act:?}");
    assert_eq!(act["config"]["quantization"], "sq8");
    let (s, hits) = send(
        &app,
        "POST",
        "/vectors/search/idx",
        Some(json!({"vector": vec_of(7), "k": 5})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{hits:?}");
    assert_eq!(hits["hits"][0]["id"], "v7");
    assert!(
        hits["hits"][0]["distance"].as_f64().unwrap().abs() < 1e-5,
        "exact distance after the re-rank"
    );
    assert_eq!(hits["config"]["quantization"], "sq8");
}
