//! Autotune: grid and adaptive runs, objectives, gates, promotion modes, held-out queries,
//! and every field checked before anything runs.

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn autotune_rules() {
    let app = TestApp::new().await;
    app.seeded(50).await;
    app.autogen("h", 10, 10).await;
    app.other_index_with_harness().await;
    let (s, r) = app.autotune(json!({"index_name": "idx", "harness": "h"})).await;
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
    let (_, p) = app.promoted("idx").await;
    assert_eq!(p["current"]["trial_id"], w["trial_id"]);
    assert_eq!(p["current"]["promoted_by"], "autotune");
    assert!(p["current"]["note"]
        .as_str()
        .unwrap()
        .starts_with("autotune winner: recall="));
    let (_, list) = app.trials("idx", "").await;
    let trials = list["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 5);
    assert!(trials.iter().all(|t| t["source"] == "autotune"));
    let eligible = trials
        .iter()
        .filter(|t| t["metrics"]["recall_at_k"].as_f64().unwrap() >= 0.9)
        .count();
    assert_eq!(r["trials_eligible"], eligible);

    // the Pareto frontier of the journal
    let (s, front) = app.pareto("idx", "?harness=h").await;
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
        &app.pareto("nope", "?harness=h").await,
        StatusCode::NOT_FOUND,
        "index_not_found",
    );
    assert_error(
        &app.pareto("idx", "?harness=nope").await,
        StatusCode::NOT_FOUND,
        "harness_not_found",
    );
    assert_error(
        &app.pareto("idx", "?harness=other-h").await,
        StatusCode::BAD_REQUEST,
        "harness_index_mismatch",
    );

    // a grid: out-of-bounds entries are skipped and reported
    let (s, r) = app.autotune(json!({"index_name": "idx", "harness": "h", "min_recall": 0.0,
                    "grid": [{"ef_construction": 1, "ef_search": 30}, {"ef_construction": 30, "ef_search": 15, "m": 6, "seed": 3}]}))
    .await;
    assert_eq!(s, StatusCode::OK, "{r:?}");
    assert_eq!(r["trials_run"], 1);
    assert_eq!(r["skipped"].as_array().unwrap().len(), 1);
    assert_eq!(
        r["winner"]["config"],
        json!({"ef_construction": 30, "ef_search": 15, "m": 6, "seed": 3, "quantization": "none"})
    );

    let tune = |body: Value| async { app.autotune(body).await };
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
    let (_, list) = app.trials("idx", "").await;
    assert_eq!(
        list["trials"].as_array().unwrap().len(),
        6,
        "refused autotunes ran nothing"
    );
}

#[tokio::test]
async fn autotune_without_an_eligible_trial_promotes_nothing() {
    let app = TestApp::new().await;
    // 1,500 vectors searched with the sparsest graph and smallest ef: recall stays below 1
    let r = app
        .create_index(json!({"name": "idx", "dims": 8, "metric": "l2"}))
        .await;
    assert_eq!(r.0, StatusCode::CREATED);
    let vectors: Vec<Value> = (0..1500)
        .map(|i| json!({"id": format!("v{i}"), "vector": vec_of(i)}))
        .collect();
    assert_eq!(
        app.append("idx", json!({ "vectors": vectors })).await.0,
        StatusCode::OK
    );
    app.autogen("h", 50, 50).await;
    let (s, r) = app.autotune(json!({"index_name": "idx", "harness": "h", "min_recall": 1.0, "grid": [{"ef_construction": 10, "ef_search": 10, "m": 4}]}))
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
    assert_eq!(app.promoted("idx").await.1["current"], Value::Null);
}

#[tokio::test]
async fn a_second_concurrent_autotune_is_409() {
    let app = TestApp::new().await;
    app.seeded(300).await;
    app.autogen("h", 20, 10).await;
    let body = json!({"index_name": "idx", "harness": "h"});
    let (a, b) = tokio::join!(app.autotune(body.clone()), app.autotune(body.clone()));
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::CONFLICT]);
    let conflict = if a.0 == StatusCode::CONFLICT { a } else { b };
    assert_error(&conflict, StatusCode::CONFLICT, "autotune_running");
    // once the first is done, the index is free again
    assert_eq!(app.autotune(body).await.0, StatusCode::OK);
}

#[tokio::test]
async fn autotune_objectives_gates_and_promote_modes() {
    let app = TestApp::new().await;
    app.seeded(300).await;
    app.autogen("h", 30, 10).await;
    let tune = |body: Value| async { app.autotune(body).await };
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
    assert_eq!(app.promoted("idx").await.1["current"], Value::Null);
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
        assert_eq!(app.promoted("idx").await.1["current"]["trial_id"], strong_id);
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
    let (_, list) = app.trials("idx", "").await;
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
    let app = TestApp::new().await;
    app.seeded(300).await;
    app.autogen("h", 40, 10).await;
    let grid =
        json!([{"ef_construction": 40, "ef_search": 10, "m": 4}, {"ef_construction": 80, "ef_search": 40}]);
    let (s, r) = app
        .autotune(
            json!({"index_name": "idx", "harness": "h", "grid": grid, "validation_fraction": 0.25,
                    "promote": "never", "min_recall": 0.0}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r:?}");
    let v = &r["winner"]["validation"];
    assert_eq!(v["eval_queries"], 10, "{r:?}");
    assert!(v["recall_at_k"]
        .as_f64()
        .is_some_and(|x| (0.0..=1.0).contains(&x)));
    assert!(v["search_latency_p50_us"].as_f64().is_some_and(|x| x > 0.0));
    let (_, list) = app.trials("idx", "").await;
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
    let (_, r) = app.autotune(json!({"index_name": "idx", "harness": "h", "grid": [grid[0]], "promote": "never", "min_recall": 0.0}))
    .await;
    assert_eq!(r["winner"]["validation"], Value::Null);
}

#[tokio::test]
async fn adaptive_strategy_keeps_to_max_trials_and_bounds() {
    let app = TestApp::new().await;
    app.seeded(300).await;
    app.autogen("h", 20, 10).await;
    let (s, r) = app
        .autotune(
            json!({"index_name": "idx", "harness": "h", "strategy": "adaptive", "max_trials": 5,
                    "objective": "min_latency", "target_recall": 0.9, "promote": "never"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r:?}");
    let n = r["trials_run"].as_u64().unwrap();
    assert!((1..=5).contains(&n), "{r:?}");
    assert!(r["sample"].is_null(), "a small index is tuned whole: {r:?}");
    assert!(r["builds"].as_u64().unwrap() <= n);
    let (_, list) = app.trials("idx", "").await;
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
    let app = TestApp::new().await;
    app.seeded(100).await;
    app.autogen("h", 10, 5).await;
    for extra in [
        json!({"strategy": "random"}),
        json!({"validation_fraction": 0.5}),
        json!({"validation_fraction": -0.1}),
        json!({"strategy": "adaptive", "max_trials": 0}),
        json!({"strategy": "adaptive", "budget_secs": -5}),
        json!({"strategy": "adaptive", "budget_secs": 0}),
        json!({"strategy": "adaptive", "grid": [{"ef_construction": 40, "ef_search": 10}]}),
        json!({"strategy": "adaptive", "sample_rows": 999}),
        json!({"strategy": "adaptive", "sample_rows": -1}),
        json!({"sample_rows": 5000}),
    ] {
        let mut body = json!({"index_name": "idx", "harness": "h"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        for uri in ["/vectors/hnsw/autotune", "/vectors/hnsw/autotune?async=true"] {
            assert_error(
                &app.request("POST", uri, Some(body.clone())).await,
                StatusCode::BAD_REQUEST,
                "invalid_autotune_request",
            );
        }
    }
    assert_error(
        &app.request(
            "POST",
            "/vectors/hnsw/autotune?async=maybe",
            Some(json!({"index_name": "idx", "harness": "h"})),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_query_string",
    );
    let (_, list) = app.trials("idx", "").await;
    assert_eq!(list["trials"], json!([]));
    let (_, jobs) = app.jobs("?index=idx").await;
    assert_eq!(jobs["jobs"], json!([]), "no job for a refused request");
}

#[tokio::test]
async fn new_autotune_fields_refuse_bad_values_and_caps_say_why() {
    let app = TestApp::new().await;
    app.seeded(300).await;
    app.autogen("h", 10, 5).await;
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
            let r = app
                .request("POST", &format!("/vectors/hnsw/autotune{q}"), Some(body.clone()))
                .await;
            assert_eq!(r.0, StatusCode::BAD_REQUEST, "{field}={value}{q}: {:?}", r.1);
        }
    }
    assert_eq!(app.jobs("?index=idx").await.1["jobs"], json!([]));
    let grid = json!([{"ef_construction": 40, "ef_search": 20, "m": 8}, {"ef_construction": 40, "ef_search": 40, "m": 8}]);
    let (s, r) = app.autotune(json!({"index_name": "idx", "harness": "h", "grid": grid, "promote": "always", "min_recall": 0.0, "max_memory_bytes": 1000}))
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
    let (_, list) = app.trials("idx", "").await;
    assert!(list["trials"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["note"].as_str().unwrap().contains("ineligible: memory")));
    // a generous build cap changes nothing
    let (_, r) = app.autotune(json!({"index_name": "idx", "harness": "h", "grid": grid, "promote": "never", "min_recall": 0.0, "max_build_secs": 3600}))
    .await;
    assert_eq!(r["trials_eligible"], 2, "{r:?}");
}

/// `min_latency` judges by the confident gate unless a gate is named; the winner says how it
/// was judged, and `point` / `wilson` by name keep their literal rules.
#[tokio::test]
async fn the_confident_gate_is_the_min_latency_default_and_the_winner_carries_its_assurance() {
    let app = TestApp::new().await;
    app.seeded(300).await;
    app.autogen("h", 40, 10).await;
    let grid = json!([
        {"ef_construction": 80, "ef_search": 10, "m": 8},
        {"ef_construction": 80, "ef_search": 40, "m": 8},
        {"ef_construction": 200, "ef_search": 200, "m": 32}
    ]);
    let body = |gate: Option<&str>| {
        let mut b = json!({"index_name": "idx", "harness": "h", "grid": grid, "objective": "min_latency",
            "target_recall": 0.9, "promote": "never"});
        if let Some(g) = gate {
            b["gate"] = json!(g);
        }
        b
    };
    for gate in [None, Some("confident")] {
        let (s, r) = app.autotune(body(gate)).await;
        assert_eq!(s, StatusCode::OK, "{r:?}");
        let a = &r["winner"]["assurance"];
        assert_eq!(a["gate"], "confident", "{r:?}");
        assert!(
            a["method"].as_str().is_some_and(|m| m.contains("per-query")),
            "{a:?}"
        );
        assert!(a["recall_ci_low"].as_f64().unwrap() >= 0.9, "{a:?}");
        assert!(
            a["recall_ci_low"].as_f64() <= a["recall_estimate"].as_f64(),
            "{a:?}"
        );
        assert_eq!(a["queries"], 40);
        assert!(
            a["near_ties_compared"].is_u64() && a["graphs_compared"].is_u64(),
            "{a:?}"
        );
    }
    for gate in ["point", "wilson"] {
        let (s, r) = app.autotune(body(Some(gate))).await;
        assert_eq!(s, StatusCode::OK, "{r:?}");
        let (w, a) = (&r["winner"], &r["winner"]["assurance"]);
        assert_eq!(a["gate"], gate);
        assert_eq!(a["method"], Value::Null);
        assert_eq!(a["recall_estimate"], w["recall_at_k"]);
        let low = if gate == "wilson" {
            w["recall_ci_low"].clone()
        } else {
            Value::Null
        };
        assert_eq!(a["recall_ci_low"], low);
        let bar = if gate == "wilson" {
            &w["recall_ci_low"]
        } else {
            &w["recall_at_k"]
        };
        assert!(bar.as_f64().unwrap() >= 0.9, "{r:?}");
    }
    // max_recall keeps the seed's rule and reports it as point
    let (_, r) = app
        .autotune(
            json!({"index_name": "idx", "harness": "h", "grid": grid, "promote": "never", "min_recall": 0.5}),
        )
        .await;
    assert_eq!(r["winner"]["assurance"]["gate"], "point", "{r:?}");
}

/// A config and its SQ8 twin share the links: one run builds the graph once and derives
/// the other (the contract's "trials that share (m, ef_construction, seed) share one
/// graph"); both are measured and journaled.
#[tokio::test]
async fn a_config_and_its_sq8_twin_share_one_build() {
    let app = TestApp::new().await;
    app.seeded(300).await;
    app.autogen("h", 30, 10).await;
    let grid = json!([
        {"ef_construction": 40, "ef_search": 20, "m": 8},
        {"ef_construction": 40, "ef_search": 20, "m": 8, "quantization": "sq8"}
    ]);
    let (s, r) = app
        .autotune(
            json!({"index_name": "idx", "harness": "h", "grid": grid, "promote": "never", "min_recall": 0.0}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r:?}");
    assert_eq!(
        (r["trials_run"].as_u64(), r["builds"].as_u64()),
        (Some(2), Some(1)),
        "{r:?}"
    );
    let (_, list) = app.trials("idx", "").await;
    let q: Vec<&str> = list["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["config"]["quantization"].as_str().unwrap())
        .collect();
    assert_eq!(q, ["none", "sq8"]);
}

/// An adaptive `min_latency` run measures which of f32 and sq8 serves faster before it
/// climbs, and its first trial says what the paired comparison showed; every later config
/// of the climb is in the chosen one, and refinement probes only the twins the comparison
/// did not cover (sq4, rabitq).
#[tokio::test]
async fn the_adaptive_climb_chooses_its_quantization_by_a_paired_comparison() {
    let app = TestApp::new().await;
    app.seeded(400).await;
    app.autogen("h", 40, 10).await;
    let (s, r) = app
        .autotune(
            json!({"index_name": "idx", "harness": "h", "strategy": "adaptive", "objective": "min_latency",
            "target_recall": 0.9, "max_trials": 12, "promote": "never"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r:?}");
    let (_, list) = app.trials("idx", "").await;
    let trials = list["trials"].as_array().unwrap();
    let note = trials[0]["note"].as_str().unwrap();
    let chosen = if note.contains("the climb searches sq8") {
        "sq8"
    } else {
        assert!(note.contains("the climb searches none"), "{note}");
        "none"
    };
    assert!(note.contains("paired"), "{note}");
    assert!(!note.contains("sq4"), "{note}");
    for t in trials.iter().skip(1) {
        let q = t["config"]["quantization"].as_str().unwrap();
        if t["note"].as_str().unwrap_or("").contains("refinement") {
            // the comparison's loser is not probed again; the twins it did not compare are
            assert!(q == chosen || q == "sq4" || q == "rabitq", "{t:?}");
        } else {
            assert_eq!(q, chosen, "{t:?}");
        }
    }
}

/// A large index is tuned on a sample, then the leading graphs on the full index: here a
/// 3,000-row index asked to sample 1,000 rows. Only the full index's trials are journaled
/// (they can win), the result says what each size cost and how far recall moved, and the
/// winner's activation loads the graph the run stored instead of building it again.
#[tokio::test]
async fn a_sampled_run_transfers_its_leading_graphs_and_activation_loads_the_winner() {
    // a run keeps one graph in memory at a time: a full build it needs again is reloaded
    // from what it stored, never built twice
    let options = vectune::service::ServiceOptions {
        run_graph_bytes: 1,
        ..vectune::service::ServiceOptions::default()
    };
    let storage = vectune::storage::Storage::in_memory();
    let service = vectune::service::Vectune::open_with(storage.clone(), options)
        .await
        .unwrap();
    let limits = vectune::http::RouterLimits {
        max_body_bytes: 1 << 20,
        max_binary_body_bytes: 4096,
        max_ingest_bytes_in_flight: 2 * 4096,
    };
    let app = TestApp::of(vectune::http::router(service, limits));
    app.seeded(3000).await;
    app.autogen("h", 40, 10).await;
    let (s, r) = app
        .autotune(
            json!({"index_name": "idx", "harness": "h", "strategy": "adaptive", "max_trials": 15,
                "objective": "min_latency", "target_recall": 0.9, "gate": "point", "promote": "always",
                "validation_fraction": 0.25, "sample_rows": 1000}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r:?}");
    let sample = &r["sample"];
    assert_eq!(
        (
            sample["rows"].clone(),
            sample["of_rows"].clone(),
            sample["chosen_by"].clone()
        ),
        (json!(1000), json!(3000), json!("request")),
        "{r:?}"
    );
    let (on_sample, on_full) = (
        sample["builds"].as_u64().unwrap(),
        sample["full_builds"].as_u64().unwrap(),
    );
    assert!(on_sample >= 1 && (1..=2).contains(&on_full), "{sample:?}");
    assert_eq!(r["builds"].as_u64().unwrap(), on_sample + on_full);
    // the sample's graphs only rank configs: built on codes
    assert_eq!(sample["engine"], "native_sq8", "{sample:?}");
    let t = &sample["transfer"];
    let (sr, fr) = (
        t["sample_recall"].as_f64().unwrap(),
        t["full_recall"].as_f64().unwrap(),
    );
    assert!((0.0..=1.0).contains(&sr) && (0.0..=1.0).contains(&fr), "{t:?}");
    assert!((t["error"].as_f64().unwrap() - (sr - fr)).abs() < 1e-9);
    assert!(
        sample["leading"].as_array().unwrap().contains(&t["config"]),
        "{sample:?}"
    );
    // the journal holds the full index's trials only
    let (_, list) = app.trials("idx", "").await;
    let trials = list["trials"].as_array().unwrap();
    assert_eq!(trials.len() as u64, r["trials_run"].as_u64().unwrap());
    assert!(!trials.is_empty());
    let (mut graphs, mut quantizations) =
        (std::collections::HashSet::new(), std::collections::HashSet::new());
    for t in trials {
        assert_eq!(t["metrics"]["vectors"], 3000, "{t:?}");
        let c = &t["config"];
        graphs.insert((c["m"].clone(), c["ef_construction"].clone()));
        quantizations.insert(c["quantization"].clone());
    }
    // one build per full graph's links: its twin quantizations are derived, not built
    assert_eq!(on_full as usize, graphs.len(), "one build per full graph: {r:?}");
    assert_eq!(
        quantizations.len(),
        4,
        "the passing graph in every quantization: {r:?}"
    );
    assert!(r["winner"]["validation"]["recall_at_k"].is_number(), "{r:?}");
    // the winner is one of the transferred graphs, and it was promoted
    let w = &r["winner"]["config"];
    assert_eq!(r["promoted"], true, "{r:?}");
    assert!(
        sample["leading"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["m"] == w["m"] && l["ef_construction"] == w["ef_construction"]),
        "{r:?}"
    );
    // the run stored its full builds and kept only the winner's
    let idx = vectune::names::IndexName::parse("idx").unwrap();
    let stored = storage.list(&vectune::storage::keys::graphs(&idx)).await.unwrap();
    let winner_graph = format!("-m{}-ec{}-s{}-", w["m"], w["ef_construction"], w["seed"]);
    assert_eq!(stored.len(), 1, "{stored:?} of {sample:?}");
    assert!(stored[0].as_ref().contains(&winner_graph), "{stored:?} vs {w:?}");
    // at the winner's own key, whichever quantization of the build won
    let quantization = format!("-{}-", w["quantization"].as_str().unwrap());
    assert!(stored[0].as_ref().contains(&quantization), "{stored:?} vs {w:?}");
    // built by the index's builder, not the sample's
    assert!(stored[0].as_ref().ends_with("-native.graph"), "{stored:?}");
    // its graph was stored by the run: activation loads it
    let (s, a) = app.activate("idx").await;
    assert_eq!(s, StatusCode::OK, "{a:?}");
    assert_eq!(a["config"], *w, "{a:?}");
    assert_eq!(a["loaded_from_store"], true, "{a:?}");
    // as a job, its progress counts the trials at both sizes
    let (s, acc) = app
        .autotune_async(
            json!({"index_name": "idx", "harness": "h", "strategy": "adaptive", "max_trials": 15,
                "objective": "min_latency", "target_recall": 0.9, "promote": "never", "sample_rows": 1000}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{acc:?}");
    let job = app
        .poll_job(acc["job_id"].as_str().unwrap(), |j| {
            j["state"] != "running" && j["state"] != "queued"
        })
        .await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let r = &job["result"];
    assert_eq!(job["progress"]["total"], 30, "{job}");
    assert_eq!(
        job["progress"]["done"].as_u64().unwrap(),
        r["trials_run"].as_u64().unwrap() + r["sample"]["trials"].as_u64().unwrap(),
        "{job}"
    );
}
