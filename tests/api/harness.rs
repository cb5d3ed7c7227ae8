//! Eval harnesses: explicit, sampled and captured from live searches, with their ground truth.

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn harnesses() {
    let app = TestApp::new().await;
    app.seeded(30).await;
    let (s, h) = app
        .autogen_harness(json!({"name": "auto", "index_name": "idx", "queries": 5, "k": 3, "seed": 7}))
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
    let (_, h2) = app
        .autogen_harness(json!({"name": "auto2", "index_name": "idx", "queries": 5, "k": 3, "seed": 7}))
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

    let (s, e) = app.create_harness(json!({"name": "explicit", "index_name": "idx", "k": 2, "queries": [{"vector": vec_of(3)}, {"id": "mine", "vector": vec_of(4)}]}))
    .await;
    assert_eq!(s, StatusCode::CREATED, "{e:?}");
    assert_eq!(e["queries"][0]["id"], "q0");
    assert_eq!(e["queries"][1]["id"], "mine");
    assert_eq!(e["queries"][0]["ground_truth"][0], "v3");

    let bad = |body: Value| async { app.create_harness(body).await };
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
    let auto = |body: Value| async { app.autogen_harness(body).await };
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
        &app.get_harness("h").await,
        StatusCode::NOT_FOUND,
        "harness_not_found",
    );

    let (s, got) = app.get_harness("auto").await;
    assert_eq!(
        (s, got["queries"].clone()),
        (StatusCode::OK, h["queries"].clone())
    );

    // growth makes the stored ground truth stale: it is no longer shown as built
    let r = app
        .append("idx", json!({"vectors": [{"id": "new", "vector": vec_of(99)}]}))
        .await;
    assert_eq!(r.0, StatusCode::OK);
    let (_, got) = app.get_harness("auto").await;
    assert_eq!(got["ground_truth_built"], false);
    assert_eq!(got["queries"][0]["ground_truth"], Value::Null);

    // deleting the index deletes its harnesses
    assert_eq!(app.delete_index("idx").await.0, StatusCode::NO_CONTENT);
    assert_error(
        &app.get_harness("auto").await,
        StatusCode::NOT_FOUND,
        "harness_not_found",
    );
}

#[tokio::test]
async fn a_capture_collects_distinct_searches_then_serves_as_a_harness() {
    let app = TestApp::new().await;
    app.seeded(300).await;
    let cap = json!({"name": "cap", "index_name": "idx", "queries": 6, "k": 5});
    for (bad, status, code) in [
        (
            json!({"name": "c", "index_name": "idx", "queries": 0, "k": 5}),
            StatusCode::BAD_REQUEST,
            "no_queries",
        ),
        (
            json!({"name": "c", "index_name": "idx", "queries": 5, "k": 0}),
            StatusCode::BAD_REQUEST,
            "invalid_k",
        ),
        (
            json!({"name": "c", "index_name": "idx", "queries": 5, "k": 5, "sample_rate": 0}),
            StatusCode::BAD_REQUEST,
            "invalid_sample_rate",
        ),
        (
            json!({"name": "c", "index_name": "idx", "queries": 5, "k": 5, "sample_rate": 1.5}),
            StatusCode::BAD_REQUEST,
            "invalid_sample_rate",
        ),
        (
            json!({"name": "../c", "index_name": "idx", "queries": 5, "k": 5}),
            StatusCode::BAD_REQUEST,
            "invalid_name",
        ),
        (
            json!({"name": "c", "index_name": "nope", "queries": 5, "k": 5}),
            StatusCode::NOT_FOUND,
            "index_not_found",
        ),
    ] {
        assert_error(&app.capture_harness(bad).await, status, code);
    }
    let (s, h) = app.capture_harness(cap.clone()).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{h:?}");
    assert_eq!(h["capture"], json!({"state": "capturing", "have": 0, "want": 6}));
    assert_eq!(
        (h["queries"].clone(), h["ground_truth_built"].clone()),
        (json!([]), json!(false))
    );
    assert_error(
        &app.capture_harness(cap).await,
        StatusCode::CONFLICT,
        "harness_exists",
    );
    // nothing to measure yet
    let trial =
        json!({"index_name": "idx", "harness": "cap", "config": {"ef_construction": 40, "ef_search": 20}});
    assert_error(
        &app.trial(trial.clone()).await,
        StatusCode::CONFLICT,
        "harness_capturing",
    );
    assert_error(
        &app.autotune(json!({"index_name": "idx", "harness": "cap"})).await,
        StatusCode::CONFLICT,
        "harness_capturing",
    );
    app.activate("idx").await;
    for i in 0..4 {
        app.search_ok(vec_of(5000 + i)).await;
        app.search_ok(vec_of(5000 + i)).await; // a repeat is one query
    }
    let h = app
        .wait_for("/vectors/harness/cap", |v| v["capture"]["have"] == 4)
        .await;
    assert_eq!(h["capture"]["state"], "capturing");
    for i in 4..9 {
        app.search_ok(vec_of(5000 + i)).await;
    }
    let h = app
        .wait_for("/vectors/harness/cap", |v| v["capture"]["state"] == "complete")
        .await;
    assert_eq!(h["capture"], json!({"state": "complete", "have": 6, "want": 6}));
    let got: Vec<Vec<f32>> = h["queries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| floats(&q["vector"]))
        .collect();
    let sent: Vec<Vec<f32>> = (0..6).map(|i| vec_of(5000 + i)).collect();
    assert_eq!(got, sent, "the first six distinct searched vectors, in order");
    let (s, t) = app.trial(trial).await;
    assert_eq!(s, StatusCode::OK, "{t:?}");
    assert_eq!(
        (t["metrics"]["eval_queries"].clone(), t["eval_set"].clone()),
        (json!(6), json!("cap"))
    );
    let h = app
        .wait_for("/vectors/harness/cap", |v| v["ground_truth_built"] == true)
        .await;
    assert!(h["queries"]
        .as_array()
        .unwrap()
        .iter()
        .all(|q| q["ground_truth"].as_array().map(Vec::len) == Some(5)));
}
