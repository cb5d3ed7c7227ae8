//! In-process HTTP tests of the tuning-engine-II routes: the live recall monitor, harness
//! capture, the new autotune fields, the three-axis Pareto frontier and the agent's
//! closing-the-loop settings.

mod support;

use std::time::Duration;

use axum::http::StatusCode;
use axum::Router;
use serde_json::{json, Value};
use support::*;

async fn wait_for(app: &Router, uri: &str, until: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..1500 {
        let (s, v) = send(app, "GET", uri, None).await;
        assert_eq!(s, StatusCode::OK, "{v:?}");
        if until(&v) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{uri} did not get there in 30 s");
}

async fn search(app: &Router, v: Vec<f32>) {
    let (s, r) = send(
        app,
        "POST",
        "/vectors/search/idx",
        Some(json!({"vector": v, "k": 5})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r:?}");
}

#[tokio::test]
async fn monitor_settings_are_checked_and_live_recall_follows_the_serving_generation() {
    let app = app().await;
    seeded(&app, 300).await;
    let (s, m) = send(&app, "GET", "/vectors/indexes/idx/monitor", None).await;
    assert_eq!(
        (s, m.clone()),
        (StatusCode::OK, json!({"sample_rate": 0.01, "window": 1000}))
    );
    for bad in [
        json!({"sample_rate": 1.5}),
        json!({"sample_rate": -0.1}),
        json!({"window": 0}),
        json!({"window": 2_000_000}),
        json!({"sample_rate": "all"}),
        json!({"rate": 0.5}),
    ] {
        let r = send(&app, "PUT", "/vectors/indexes/idx/monitor", Some(bad.clone())).await;
        assert_eq!(r.0, StatusCode::BAD_REQUEST, "{bad}: {:?}", r.1);
    }
    assert_error(
        &send(
            &app,
            "PUT",
            "/vectors/indexes/nope/monitor",
            Some(json!({"window": 5})),
        )
        .await,
        StatusCode::NOT_FOUND,
        "index_not_found",
    );
    assert_eq!(
        send(&app, "GET", "/vectors/indexes/idx/monitor", None).await.1,
        m,
        "refusals changed nothing"
    );
    let (s, m) = send(
        &app,
        "PUT",
        "/vectors/indexes/idx/monitor",
        Some(json!({"sample_rate": 1.0, "window": 50})),
    )
    .await;
    assert_eq!(
        (s, m),
        (StatusCode::OK, json!({"sample_rate": 1.0, "window": 50}))
    );

    let (_, ix) = send(&app, "GET", "/vectors/indexes/idx", None).await;
    assert_eq!(ix["live"], Value::Null, "nothing sampled yet");
    send(&app, "POST", "/vectors/indexes/idx/activate", None).await;
    for i in 0..80 {
        search(&app, vec_of(10_000 + i)).await;
    }
    let ix = wait_for(&app, "/vectors/indexes/idx", |v| v["live"]["queries"] == 50).await;
    let live = &ix["live"];
    assert_eq!(
        (live["window"].clone(), live["generation"].clone()),
        (json!(50), json!(1))
    );
    let (r, low) = (
        live["recall_at_k"].as_f64().unwrap(),
        live["recall_ci_low"].as_f64().unwrap(),
    );
    assert!((0.0..=1.0).contains(&r) && low <= r, "{live:?}");
    // a new generation starts an empty window
    send(&app, "POST", "/vectors/indexes/idx/activate", None).await;
    let (_, ix) = send(&app, "GET", "/vectors/indexes/idx", None).await;
    assert_eq!(ix["live"], Value::Null, "{ix:?}");
    search(&app, vec_of(20_000)).await;
    let ix = wait_for(&app, "/vectors/indexes/idx", |v| v["live"]["queries"] == 1).await;
    assert_eq!(ix["live"]["generation"], 2);
}

#[tokio::test]
async fn a_capture_collects_distinct_searches_then_serves_as_a_harness() {
    let app = app().await;
    seeded(&app, 300).await;
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
        assert_error(
            &send(&app, "POST", "/vectors/harness/capture", Some(bad)).await,
            status,
            code,
        );
    }
    let (s, h) = send(&app, "POST", "/vectors/harness/capture", Some(cap.clone())).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{h:?}");
    assert_eq!(h["capture"], json!({"state": "capturing", "have": 0, "want": 6}));
    assert_eq!(
        (h["queries"].clone(), h["ground_truth_built"].clone()),
        (json!([]), json!(false))
    );
    assert_error(
        &send(&app, "POST", "/vectors/harness/capture", Some(cap)).await,
        StatusCode::CONFLICT,
        "harness_exists",
    );
    // nothing to measure yet
    let trial =
        json!({"index_name": "idx", "harness": "cap", "config": {"ef_construction": 40, "ef_search": 20}});
    assert_error(
        &send(&app, "POST", "/vectors/hnsw/trial", Some(trial.clone())).await,
        StatusCode::CONFLICT,
        "harness_capturing",
    );
    assert_error(
        &send(
            &app,
            "POST",
            "/vectors/hnsw/autotune",
            Some(json!({"index_name": "idx", "harness": "cap"})),
        )
        .await,
        StatusCode::CONFLICT,
        "harness_capturing",
    );
    send(&app, "POST", "/vectors/indexes/idx/activate", None).await;
    for i in 0..4 {
        search(&app, vec_of(5000 + i)).await;
        search(&app, vec_of(5000 + i)).await; // a repeat is one query
    }
    let h = wait_for(&app, "/vectors/harness/cap", |v| v["capture"]["have"] == 4).await;
    assert_eq!(h["capture"]["state"], "capturing");
    for i in 4..9 {
        search(&app, vec_of(5000 + i)).await;
    }
    let h = wait_for(&app, "/vectors/harness/cap", |v| {
        v["capture"]["state"] == "complete"
    })
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
    let (s, t) = send(&app, "POST", "/vectors/hnsw/trial", Some(trial)).await;
    assert_eq!(s, StatusCode::OK, "{t:?}");
    assert_eq!(
        (t["metrics"]["eval_queries"].clone(), t["eval_set"].clone()),
        (json!(6), json!("cap"))
    );
    let h = wait_for(&app, "/vectors/harness/cap", |v| v["ground_truth_built"] == true).await;
    assert!(h["queries"]
        .as_array()
        .unwrap()
        .iter()
        .all(|q| q["ground_truth"].as_array().map(Vec::len) == Some(5)));
}

#[tokio::test]
async fn new_autotune_fields_refuse_bad_values_and_caps_say_why() {
    let app = app().await;
    seeded(&app, 300).await;
    autogen(&app, "h", 10, 5).await;
    let base = json!({"index_name": "idx", "harness": "h"});
    for (field, value) in [
        ("min_improvement", json!(-0.1)),
        ("min_improvement", json!(1.5)),
        ("max_memory_bytes", json!(0)),
        ("max_memory_bytes", json!(-5)),
        ("max_memory_bytes", json!(1.5)),
        ("max_build_secs", json!(0)),
        ("max_build_secs", json!("soon")),
    ] {
        let mut body = base.clone();
        body[field] = value.clone();
        for q in ["", "?async=true"] {
            let r = send(
                &app,
                "POST",
                &format!("/vectors/hnsw/autotune{q}"),
                Some(body.clone()),
            )
            .await;
            assert_eq!(r.0, StatusCode::BAD_REQUEST, "{field}={value}{q}: {:?}", r.1);
        }
    }
    assert_eq!(
        send(&app, "GET", "/vectors/jobs?index=idx", None).await.1["jobs"],
        json!([])
    );
    let grid = json!([{"ef_construction": 40, "ef_search": 20, "m": 8}, {"ef_construction": 40, "ef_search": 40, "m": 8}]);
    let (s, r) = send(
        &app,
        "POST",
        "/vectors/hnsw/autotune",
        Some(json!({"index_name": "idx", "harness": "h", "grid": grid, "promote": "always", "min_recall": 0.0, "max_memory_bytes": 1000})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r:?}");
    assert_eq!(
        (
            r["trials_eligible"].clone(),
            r["promoted"].clone(),
            r["winner"].clone()
        ),
        (json!(0), json!(false), Value::Null)
    );
    assert!(r["reason"].as_str().unwrap().contains("memory"), "{r:?}");
    assert_eq!(r["ineligible"].as_array().unwrap().len(), 2, "{r:?}");
    let (_, list) = send(&app, "GET", "/vectors/hnsw/trials/idx", None).await;
    assert!(list["trials"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["note"].as_str().unwrap().contains("ineligible: memory")));
    // a generous build cap changes nothing
    let (_, r) = send(
        &app,
        "POST",
        "/vectors/hnsw/autotune",
        Some(json!({"index_name": "idx", "harness": "h", "grid": grid, "promote": "never", "min_recall": 0.0, "max_build_secs": 3600})),
    )
    .await;
    assert_eq!(r["trials_eligible"], 2, "{r:?}");
}

#[tokio::test]
async fn the_pareto_frontier_takes_axes() {
    let app = app().await;
    seeded(&app, 300).await;
    autogen(&app, "h", 10, 5).await;
    let grid: Vec<Value> = [(4, 10), (8, 20), (16, 40)]
        .iter()
        .flat_map(|&(m, ef)| {
            [
                json!({"ef_construction": 40, "ef_search": ef, "m": m}),
                json!({"ef_construction": 40, "ef_search": ef * 2, "m": m}),
            ]
        })
        .collect();
    send(
        &app,
        "POST",
        "/vectors/hnsw/autotune",
        Some(json!({"index_name": "idx", "harness": "h", "grid": grid, "promote": "never"})),
    )
    .await;
    let (s, two) = send(&app, "GET", "/vectors/hnsw/pareto/idx?harness=h", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(two["axes"], json!(["recall", "p50"]));
    let (s, three) = send(
        &app,
        "GET",
        "/vectors/hnsw/pareto/idx?harness=h&axes=recall,p50,memory",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{three:?}");
    assert_eq!(three["axes"], json!(["recall", "p50", "memory"]));
    let pts = three["points"].as_array().unwrap();
    assert!(pts.len() >= two["points"].as_array().unwrap().len());
    let key = |p: &Value| {
        [
            p["recall_at_k"].as_f64().unwrap(),
            -p["search_latency_p50_us"].as_f64().unwrap(),
            -p["memory_bytes"].as_f64().unwrap(),
        ]
    };
    for a in pts {
        for b in pts {
            let (ka, kb) = (key(a), key(b));
            let dominates = kb.iter().zip(&ka).all(|(x, y)| x >= y) && kb != ka;
            assert!(!dominates, "{b:?} dominates {a:?}");
        }
    }
    for bad in ["recall,color", "recall", "recall,recall", ""] {
        assert_error(
            &send(&app, "GET", &format!("/vectors/hnsw/pareto/idx?axes={bad}"), None).await,
            StatusCode::BAD_REQUEST,
            "invalid_axes",
        );
    }
}

#[tokio::test]
async fn agent_loop_settings_are_checked_and_shown() {
    let app = app().await;
    seeded(&app, 300).await;
    autogen(&app, "h", 10, 5).await;
    for bad in [
        json!({"harness": "h", "canary_queries": 0}),
        json!({"harness": "h", "canary_queries": -3}),
        json!({"harness": "h", "activate": "yes"}),
        json!({"harness": "h", "refresh_harness": 1}),
    ] {
        let r = send(&app, "PUT", "/vectors/hnsw/agent/idx", Some(bad.clone())).await;
        assert_eq!(r.0, StatusCode::BAD_REQUEST, "{bad}: {:?}", r.1);
    }
    assert_eq!(
        send(&app, "GET", "/vectors/hnsw/agent/idx", None).await.1["config"],
        Value::Null,
        "refusals stored nothing"
    );
    let (s, a) = send(
        &app,
        "PUT",
        "/vectors/hnsw/agent/idx",
        Some(json!({"harness": "h", "enabled": false, "activate": true, "canary_queries": 20, "refresh_harness": false})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{a:?}");
    assert_eq!(
        (
            a["config"]["activate"].clone(),
            a["config"]["canary_queries"].clone(),
            a["config"]["refresh_harness"].clone()
        ),
        (json!(true), json!(20), json!(false))
    );
    assert_eq!(
        (a["last_decision"].clone(), a["decisions"].clone()),
        (Value::Null, json!([]))
    );
    let (_, a) = send(
        &app,
        "PUT",
        "/vectors/hnsw/agent/idx",
        Some(json!({"harness": "h", "enabled": false})),
    )
    .await;
    assert_eq!(
        (
            a["config"]["activate"].clone(),
            a["config"]["canary_queries"].clone()
        ),
        (json!(false), json!(500))
    );
}

#[tokio::test]
async fn an_agent_with_refresh_harness_recaptures_while_the_old_queries_serve() {
    let app = app().await;
    seeded(&app, 300).await;
    send(&app, "POST", "/vectors/indexes/idx/activate", None).await;
    let (s, _) = send(
        &app,
        "POST",
        "/vectors/harness/capture",
        Some(json!({"name": "cap", "index_name": "idx", "queries": 5, "k": 5})),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    for i in 0..5 {
        search(&app, vec_of(7000 + i)).await;
    }
    let first = wait_for(&app, "/vectors/harness/cap", |v| {
        v["capture"]["state"] == "complete"
    })
    .await;
    let (s, a) = send(
        &app,
        "PUT",
        "/vectors/hnsw/agent/idx",
        Some(json!({"harness": "cap", "cooldown_secs": 3600, "refresh_harness": true})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{a:?}");
    wait_for(&app, "/vectors/hnsw/agent/idx", |a| a["runs"] == 1).await;
    // a new capture is under way; the complete queries still serve trials
    let (_, h) = send(&app, "GET", "/vectors/harness/cap", None).await;
    assert_eq!(
        h["capture"],
        json!({"state": "capturing", "have": 0, "want": 5}),
        "{h:?}"
    );
    assert_eq!(h["queries"], first["queries"]);
    let trial =
        json!({"index_name": "idx", "harness": "cap", "config": {"ef_construction": 40, "ef_search": 20}});
    assert_eq!(
        send(&app, "POST", "/vectors/hnsw/trial", Some(trial.clone()))
            .await
            .0,
        StatusCode::OK
    );
    for i in 0..5 {
        search(&app, vec_of(8000 + i)).await;
    }
    let h = wait_for(&app, "/vectors/harness/cap", |v| {
        v["capture"]["state"] == "complete"
    })
    .await;
    let v0 = floats(&h["queries"][0]["vector"]);
    assert_eq!(v0, vec_of(8000), "the new window of traffic replaced the old");
    // its ground truth is of the new queries, not the old revision's
    let h = wait_for(&app, "/vectors/harness/cap", |v| v["ground_truth_built"] == true).await;
    let (_, t) = send(&app, "POST", "/vectors/hnsw/trial", Some(trial)).await;
    assert_eq!(t["metrics"]["eval_queries"], 5);
    assert_ne!(
        h["queries"][0]["ground_truth"],
        first["queries"][0]["ground_truth"]
    );
    send(&app, "DELETE", "/vectors/hnsw/agent/idx", None).await;
}
