//! Trials, the journal, the Pareto frontier, the promotion registry and rollback, SQ8 configs.

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn trials_and_journal() {
    let app = TestApp::new().await;
    app.seeded(60).await;
    app.autogen("h", 8, 5).await;
    app.autogen("h2", 4, 5).await;
    app.other_index_with_harness().await;
    let (s, t) = app.trial(json!({"index_name": "idx", "harness": "h", "config": {"ef_construction": 40, "ef_search": 20}, "note": "first"}))
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
        "recall_p10",
    ] {
        assert!(m[f].as_f64().is_some_and(|x| x >= 0.0), "{f}: {m:?}");
    }
    assert!(m["recall_ci_low"].as_f64() <= m["recall_at_k"].as_f64());
    // the tail is at most the mean
    assert!(m["recall_p10"].as_f64() <= m["recall_at_k"].as_f64());
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

    let (_, t2) = app.trial(json!({"index_name": "idx", "harness": "h2", "config": {"ef_construction": 20, "ef_search": 10, "m": 8, "seed": 1}})).await;
    let id2 = t2["id"].as_str().unwrap().to_string();

    let (s, list) = app.trials("idx", "").await;
    assert_eq!(s, StatusCode::OK);
    let ids: Vec<&str> = list["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![id1.as_str(), id2.as_str()], "oldest first");
    let (_, only) = app.trials("idx", "?harness=h2").await;
    assert_eq!(only["trials"].as_array().unwrap().len(), 1);
    assert_eq!(only["trials"][0]["id"], id2.as_str());
    let (s, one) = app.get_trial("idx", &id1).await;
    assert_eq!((s, one), (StatusCode::OK, t.clone()));

    let trial = |body: Value| async { app.trial(body).await };
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
        &app.trials("nope", "").await,
        StatusCode::NOT_FOUND,
        "index_not_found",
    );
    assert_error(
        &app.trials("idx", "?harness=..").await,
        StatusCode::BAD_REQUEST,
        "invalid_name",
    );
    assert_error(
        &app.get_trial("idx", "not-a-uuid").await,
        StatusCode::NOT_FOUND,
        "trial_not_found",
    );
    assert_error(
        &app.get_trial("other", &id1).await,
        StatusCode::NOT_FOUND,
        "trial_not_found",
    );
    let (_, list) = app.trials("idx", "").await;
    assert_eq!(
        list["trials"].as_array().unwrap().len(),
        2,
        "refused trials stored nothing"
    );
}

#[tokio::test]
async fn promotion_registry_and_activation_use_it() {
    let app = TestApp::new().await;
    app.seeded(40).await;
    app.autogen("h", 5, 5).await;
    let (s, p) = app.promoted("idx").await;
    assert_eq!(
        (s, p),
        (
            StatusCode::OK,
            json!({"index_name": "idx", "current": null, "history": []})
        )
    );
    assert_error(
        &app.rollback("idx").await,
        StatusCode::CONFLICT,
        "nothing_to_roll_back",
    );

    let mut ids = Vec::new();
    for (ec, es) in [(20, 10), (60, 40)] {
        let (_, t) = app.trial(json!({"index_name": "idx", "harness": "h", "config": {"ef_construction": ec, "ef_search": es}})).await;
        ids.push(t["id"].as_str().unwrap().to_string());
    }
    let (s, p) = app
        .request(
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
    let (_, p) = app
        .request("POST", &format!("/vectors/hnsw/promote/idx/{}", ids[1]), None)
        .await;
    assert_eq!(
        (p["current"]["promoted_by"].clone(), p["current"]["note"].clone()),
        (json!("api"), Value::Null)
    );
    assert_eq!(p["history"][0]["trial_id"], ids[0].as_str());

    // activation builds with the promoted config; promotion alone does not rebuild
    let (_, a) = app.activate("idx").await;
    assert_eq!(
        a["config"],
        json!({"ef_construction": 60, "ef_search": 40, "m": 16, "seed": 42, "quantization": "none"})
    );
    let (_, p) = app.rollback("idx").await;
    assert_eq!(
        (p["current"]["trial_id"].clone(), p["history"].clone()),
        (json!(ids[0]), json!([]))
    );
    let (_, i) = app.get_index("idx").await;
    assert_eq!(
        i["active"]["config"]["ef_construction"], 60,
        "rollback does not rebuild by itself"
    );
    let (_, a) = app.activate("idx").await;
    assert_eq!(a["config"]["ef_construction"], 20);
    let (_, p) = app.rollback("idx").await;
    assert_eq!(p["current"], Value::Null);
    let (_, a) = app.activate("idx").await;
    assert_eq!(
        a["config"]["ef_construction"], 80,
        "nothing promoted: the default"
    );

    assert_error(
        &app.promote("idx", "00000000-0000-7000-8000-000000000000", None)
            .await,
        StatusCode::NOT_FOUND,
        "trial_not_found",
    );
    assert_error(
        &app.promote("nope", "x", None).await,
        StatusCode::NOT_FOUND,
        "index_not_found",
    );
    let long = "x".repeat(1100);
    assert_error(
        &app.request(
            "POST",
            &format!("/vectors/hnsw/promote/idx/{}?note={long}", ids[0]),
            None,
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_text",
    );
    assert_error(
        &app.request(
            "POST",
            &format!("/vectors/hnsw/promote/idx/{}?bogus=1", ids[0]),
            None,
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_query_string",
    );
    assert_error(
        &app.rollback("nope").await,
        StatusCode::NOT_FOUND,
        "index_not_found",
    );
    assert_error(
        &app.promoted("nope").await,
        StatusCode::NOT_FOUND,
        "index_not_found",
    );
    let (_, p) = app.promoted("idx").await;
    assert_eq!(p["current"], Value::Null, "refused requests changed nothing");
}

/// SQ8 and SQ4 through the HTTP layer: trials carry the field, unknown values are 400 and
/// change nothing, a grid of quantized configs promotes a quantized winner, activation serves
/// it with exact distances, and a repeated trial measures the same graph.
#[tokio::test]
async fn sq8_trials_grids_and_activation() {
    quantized_trials_grids_and_activation("sq8").await;
}

#[tokio::test]
async fn sq4_trials_grids_and_activation() {
    quantized_trials_grids_and_activation("sq4").await;
}

#[tokio::test]
async fn rabitq_trials_grids_and_activation() {
    quantized_trials_grids_and_activation("rabitq").await;
}

async fn quantized_trials_grids_and_activation(quantization: &str) {
    let app = TestApp::new().await;
    app.seeded(400).await;
    app.autogen("q", 20, 5).await;
    let trial = |config: Value| json!({"index_name": "idx", "harness": "q", "config": config});
    let (s, f32_trial) = app
        .trial(trial(json!({"ef_construction": 40, "ef_search": 20})))
        .await;
    assert_eq!(s, StatusCode::OK, "{f32_trial:?}");
    assert_eq!(f32_trial["config"]["quantization"], "none");
    let sq = json!({"ef_construction": 40, "ef_search": 20, "quantization": quantization});
    let (s, a) = app.trial(trial(sq.clone())).await;
    assert_eq!(s, StatusCode::OK, "{a:?}");
    assert_eq!(a["config"]["quantization"], quantization);
    // the codes' bytes: a byte a dimension (sq8) or half a byte (sq4), rows padded to 64
    // dimensions, beside the links; rabitq's 768-byte block a node (8 dimensions padded to
    // 64: the row's line, 32 codes of 8 bytes, 32 × 2 factors, 33 words of ids in 3 lines)
    let extra = a["metrics"]["memory_bytes"].as_u64().unwrap()
        - f32_trial["metrics"]["memory_bytes"].as_u64().unwrap();
    let per_row = match quantization {
        "sq8" => 64,
        "sq4" => 32,
        _ => 64 + 256 + 256 + 192,
    };
    assert!((400 * per_row..400 * per_row + 8192).contains(&extra), "{extra}");
    let (_, b) = app.trial(trial(sq.clone())).await;
    assert_eq!(a["metrics"]["recall_at_k"], b["metrics"]["recall_at_k"]);
    assert_eq!(
        a["metrics"]["distance_evals_per_query"],
        b["metrics"]["distance_evals_per_query"]
    );
    let (_, journal) = app.trials("idx", "").await;
    let before = journal["trials"].as_array().unwrap().len();
    for bad in [json!("pq4"), json!(""), json!(8), json!("SQ8")] {
        let got = app
            .trial(trial(
                json!({"ef_construction": 40, "ef_search": 20, "quantization": bad}),
            ))
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
    let (_, journal) = app.trials("idx", "").await;
    assert_eq!(
        journal["trials"].as_array().unwrap().len(),
        before,
        "refused trials add nothing"
    );
    let (s, r) = app
        .autotune(
            json!({"index_name": "idx", "harness": "q", "promote": "always", "min_recall": 0.0,
            "grid": [sq, {"ef_construction": 40, "ef_search": 40, "quantization": quantization}]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r:?}");
    assert_eq!(
        r["builds"], 1,
        "two ef_search values of one quantized graph share its build"
    );
    assert_eq!(r["winner"]["config"]["quantization"], quantization);
    let (s, act) = app.activate("idx").await;
    assert_eq!(s, StatusCode::OK, "{act:?}");
    assert_eq!(act["config"]["quantization"], quantization);
    let (s, hits) = app.search("idx", json!({"vector": vec_of(7), "k": 5})).await;
    assert_eq!(s, StatusCode::OK, "{hits:?}");
    assert_eq!(hits["hits"][0]["id"], "v7");
    assert!(
        hits["hits"][0]["distance"].as_f64().unwrap().abs() < 1e-5,
        "exact distance after the re-rank"
    );
    assert_eq!(hits["config"]["quantization"], quantization);
}

/// `patience` (early termination, a search-time knob): a trial with it shares the graph of
/// the same config without it (one build in a grid of both), does no more work per query,
/// is echoed in the config (left out when off), and is what the activated index searches
/// with; out of bounds it is a `400` naming the field, nothing journaled.
#[tokio::test]
async fn patience_trials_grids_and_activation() {
    let app = TestApp::new().await;
    app.seeded(600).await;
    app.autogen("q", 30, 10).await;
    let trial = |config: Value| json!({"index_name": "idx", "harness": "q", "config": config});
    let (s, full) = app
        .trial(trial(json!({"ef_construction": 40, "ef_search": 80})))
        .await;
    assert_eq!(s, StatusCode::OK, "{full:?}");
    assert!(
        full["config"].get("patience").is_none(),
        "off is left out: {full:?}"
    );
    let patient = json!({"ef_construction": 40, "ef_search": 80, "patience": 2});
    let (s, p) = app.trial(trial(patient.clone())).await;
    assert_eq!(s, StatusCode::OK, "{p:?}");
    assert_eq!(p["config"]["patience"], 2);
    let work = |t: &Value| t["metrics"]["distance_evals_per_query"].as_f64().unwrap();
    assert!(work(&p) < work(&full), "{} vs {}", work(&p), work(&full));
    let (_, journal) = app.trials("idx", "").await;
    let before = journal["trials"].as_array().unwrap().len();
    for bad in [json!(-1), json!(501), json!("x"), json!(1.5)] {
        let got = app
            .trial(trial(
                json!({"ef_construction": 40, "ef_search": 80, "patience": bad}),
            ))
            .await;
        assert_eq!(got.0, StatusCode::BAD_REQUEST, "{bad}: {:?}", got.1);
        assert!(
            got.1["error"]["message"].as_str().unwrap().contains("patience"),
            "{:?}",
            got.1
        );
    }
    let (_, journal) = app.trials("idx", "").await;
    assert_eq!(journal["trials"].as_array().unwrap().len(), before);
    let (s, r) = app
        .autotune(
            json!({"index_name": "idx", "harness": "q", "promote": "always", "min_recall": 0.0,
            "objective": "min_latency",
            "grid": [patient, {"ef_construction": 40, "ef_search": 80, "patience": 3}]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r:?}");
    assert_eq!(r["builds"], 1, "patience does not change the graph");
    let (s, act) = app.activate("idx").await;
    assert_eq!(s, StatusCode::OK, "{act:?}");
    assert!(
        act["config"]["patience"].as_u64().is_some_and(|p| p > 0),
        "{act:?}"
    );
    let (s, hits) = app.search("idx", json!({"vector": vec_of(7), "k": 5})).await;
    assert_eq!(s, StatusCode::OK, "{hits:?}");
    assert_eq!(hits["hits"][0]["id"], "v7");
    assert_eq!(hits["config"]["patience"], act["config"]["patience"]);
}

#[tokio::test]
async fn the_pareto_frontier_takes_axes() {
    let app = TestApp::new().await;
    app.seeded(300).await;
    app.autogen("h", 10, 5).await;
    let grid: Vec<Value> = [(4, 10), (8, 20), (16, 40)]
        .iter()
        .flat_map(|&(m, ef)| {
            [
                json!({"ef_construction": 40, "ef_search": ef, "m": m}),
                json!({"ef_construction": 40, "ef_search": ef * 2, "m": m}),
            ]
        })
        .collect();
    app.autotune(json!({"index_name": "idx", "harness": "h", "grid": grid, "promote": "never"}))
        .await;
    let (s, two) = app.pareto("idx", "?harness=h").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(two["axes"], json!(["recall", "p50"]));
    let (s, three) = app.pareto("idx", "?harness=h&axes=recall,p50,memory").await;
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
            &app.pareto("idx", &format!("?axes={bad}")).await,
            StatusCode::BAD_REQUEST,
            "invalid_axes",
        );
    }
}
