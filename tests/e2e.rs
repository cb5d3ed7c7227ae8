//! End-to-end tests: the real binary on a free loopback port over a temp-dir store.
//! Set `TEST_LOG=1` to see the server's log.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

#[path = "api/helpers.rs"]
mod helpers;
use helpers::*;

#[tokio::test]
async fn state_survives_a_restart_and_the_active_generation_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path());
    assert_eq!(s.health().await, (200, json!({"status": "ok"})));
    let (st, _) = s
        .create_index(json!({"name": "docs", "dims": 16, "metric": "cosine"}))
        .await;
    assert_eq!(st, 201);
    s.append_range("docs", 0..300, 16).await;
    let (st, h) = s
        .autogen_harness(json!({"name": "smoke", "index_name": "docs", "queries": 10, "k": 10}))
        .await;
    assert_eq!(st, 201, "{h}");
    assert_eq!(s.activate("docs").await.0, 200);
    let (st, a) = s.activate("docs").await;
    assert_eq!((st, a["generation"].clone()), (200, json!(2)));
    let (_, before) = s.search("docs", json!({"vector": vector(5, 16), "k": 5})).await;
    assert_eq!(before["hits"][0]["id"], "v5");
    let status = s.terminate();
    assert!(status.success(), "SIGTERM exit status {status:?}");

    let s = TestServer::start(dir.path());
    let (_, i) = s.get_index("docs").await;
    assert_eq!(i["vectors"], 300);
    let (st, h2) = s.get_harness("smoke").await;
    assert_eq!(st, 200);
    assert_eq!(h2["ground_truth_built"], true);
    assert_eq!(h2["queries"], h["queries"], "queries and ground truth persisted");
    let active = s.wait_active("docs").await;
    assert_eq!(active["generation"], 2);
    assert_eq!(active["config"], a["config"]);
    let (st, after) = s.search("docs", json!({"vector": vector(5, 16), "k": 5})).await;
    assert_eq!(st, 200);
    assert_eq!(
        after["hits"], before["hits"],
        "same vectors, config and seed: same answers"
    );
    assert_eq!(after["generation"], 2);
    // the next activation continues the numbering
    let (_, a3) = s.activate("docs").await;
    assert_eq!(a3["generation"], 3);
    assert!(s.terminate().success());
}

#[tokio::test]
async fn searches_during_an_activation_are_answered_by_the_previous_generation() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path());
    let dims = 48;
    s.new_index("big", dims, "l2").await;
    // big enough that a build takes a while
    for start in (0..24_000).step_by(6000) {
        s.append_range("big", start..start + 6000, dims).await;
    }
    let (st, first) = s.activate("big").await;
    assert_eq!((st, first["generation"].clone()), (200, json!(1)));
    // a few rows more: searched beside the graph, far below the refresh rule's share
    s.append_range("big", 24_000..24_010, dims).await;
    let base = s.base.clone();
    let activation = tokio::spawn(async move {
        let r = reqwest::Client::new()
            .post(format!("{base}/vectors/indexes/big/activate"))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    });
    let mut during = 0;
    while !activation.is_finished() {
        let (st, r) = s.search("big", json!({"vector": vector(3, dims), "k": 3})).await;
        assert_eq!(st, 200, "{r}");
        if !activation.is_finished() {
            assert_eq!(r["generation"], 1, "the old generation serves until the swap");
            assert_eq!(r["hits"][0]["id"], "v3");
            during += 1;
        }
        assert_eq!(s.health().await.0, 200, "health never waits for a build");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (st, second) = activation.await.unwrap();
    assert_eq!((st, second["generation"].clone()), (200, json!(2)), "{second}");
    assert!(during >= 1, "no search ran while the activation was building");
    let (_, r) = s
        .search("big", json!({"vector": vector(20_000, dims), "k": 1}))
        .await;
    assert_eq!(
        (r["generation"].clone(), r["hits"][0]["id"].clone()),
        (json!(2), json!("v20000"))
    );
    assert!(s.terminate().success());
}

/// The same persistence story over a real S3-compatible server (`scripts/test.sh` starts
/// one, sets `VECTUNE_TEST_S3_URL` / `VECTUNE_TEST_S3_ENDPOINT` and includes ignored tests).
#[tokio::test]
#[ignore = "needs an S3-compatible server: scripts/test.sh starts one"]
async fn s3_store_survives_a_restart() {
    let (url, endpoint) = (
        std::env::var("VECTUNE_TEST_S3_URL").expect("VECTUNE_TEST_S3_URL (scripts/test.sh sets it)"),
        std::env::var("VECTUNE_TEST_S3_ENDPOINT")
            .expect("VECTUNE_TEST_S3_ENDPOINT (scripts/test.sh sets it)"),
    );
    let url = format!("{}/e2e-{}", url.trim_end_matches('/'), std::process::id());
    let env = [
        ("VECTUNE_S3_ENDPOINT", endpoint.as_str()),
        ("VECTUNE_S3_ALLOW_HTTP", "true"),
    ];
    let s = TestServer::start_url(&url, &env);
    s.new_index("s3idx", 8, "dot").await;
    assert_eq!(
        s.create_index(json!({"name": "s3idx", "dims": 8, "metric": "dot"}))
            .await
            .0,
        409
    );
    s.append_range("s3idx", 0..120, 8).await;
    let (st, _) = s
        .autogen_harness(json!({"name": "s3h", "index_name": "s3idx", "queries": 5, "k": 5}))
        .await;
    assert_eq!(st, 201);
    assert_eq!(s.activate("s3idx").await.0, 200);
    assert!(s.terminate().success());
    let s = TestServer::start_url(&url, &env);
    let (_, i) = s.get_index("s3idx").await;
    assert_eq!(
        (i["vectors"].clone(), i["metric"].clone()),
        (json!(120), json!("dot"))
    );
    assert_eq!(s.get_harness("s3h").await.1["ground_truth_built"], true);
    assert_eq!(s.wait_active("s3idx").await["generation"], 1);
    assert_eq!(
        s.call(reqwest::Method::DELETE, "/vectors/indexes/s3idx", None)
            .await
            .0,
        204
    );
    assert_eq!(s.get_harness("s3h").await.0, 404);
    assert!(s.terminate().success());
}

fn current_and_history(p: &Value) -> (Value, Vec<Value>) {
    let hist = p["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["trial_id"].clone())
        .collect();
    (p["current"]["trial_id"].clone(), hist)
}

/// The seed story, in Rust: 54 vectors of 64 dims, a 10-query autogen harness, autotune,
/// manual trial and promote, rollback twice, 409, re-promote, restart, and activation with
/// the promoted config.
#[tokio::test]
async fn the_seed_story() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path());
    s.new_index("seed", 64, "cosine").await;
    s.append_range("seed", 0..54, 64).await;
    let (st, _) = s
        .autogen_harness(json!({"name": "smoke", "index_name": "seed", "queries": 10, "k": 10, "seed": 42}))
        .await;
    assert_eq!(st, 201);
    let (st, r) = s
        .autotune(json!({"index_name": "seed", "harness": "smoke"}))
        .await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(
        (r["trials_run"].clone(), r["promoted"].clone()),
        (json!(5), json!(true))
    );
    let win = r["winner"]["trial_id"].clone();
    assert!(r["winner"]["recall_at_k"].as_f64().unwrap() >= 0.9);

    let (st, manual) = s.trial(json!({"index_name": "seed", "harness": "smoke", "config": {"ef_construction": 80, "ef_search": 30, "seed": 42}}))
        .await;
    assert_eq!(st, 200);
    let man = manual["id"].clone();
    let man_s = man.as_str().unwrap();
    let (_, p) = s
        .post(
            &format!("/vectors/hnsw/promote/seed/{man_s}?promoted_by=ci&note=manual"),
            None,
        )
        .await;
    assert_eq!(current_and_history(&p), (man.clone(), vec![win.clone()]));
    let (_, p) = s.rollback("seed").await;
    assert_eq!(current_and_history(&p), (win.clone(), vec![]));
    let (_, p) = s.rollback("seed").await;
    assert_eq!(current_and_history(&p), (Value::Null, vec![]));
    let (st, e) = s.rollback("seed").await;
    assert_eq!(
        (st, e["error"]["code"].clone()),
        (409, json!("nothing_to_roll_back"))
    );
    let (_, p) = s
        .post(
            &format!("/vectors/hnsw/promote/seed/{man_s}?promoted_by=ci"),
            None,
        )
        .await;
    assert_eq!(current_and_history(&p), (man.clone(), vec![]));
    assert!(s.terminate().success());

    let s = TestServer::start(dir.path());
    let (_, p) = s.promoted("seed").await;
    assert_eq!(current_and_history(&p), (man.clone(), vec![]));
    assert_eq!(p["current"]["promoted_by"], "ci");
    let (_, t) = s.trials("seed", "").await;
    let ids: Vec<Value> = t["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].clone())
        .collect();
    assert_eq!(ids.len(), 6);
    assert_eq!(ids[5], man, "the manual trial is the newest");
    assert!(ids.contains(&win));
    let (st, a) = s.activate("seed").await;
    assert_eq!(st, 200);
    assert_eq!(
        a["config"], manual["config"],
        "activation uses the promoted config"
    );
    let (_, hits) = s.search("seed", json!({"vector": vector(3, 64), "k": 5})).await;
    assert_eq!(hits["hits"][0]["id"], "v3");
    assert!(s.terminate().success());
}

#[tokio::test]
async fn job_lifecycle_cancel_and_interrupted_by_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path());
    let (st, _) = s
        .create_index(json!({"name": "jobs", "dims": 32, "metric": "l2"}))
        .await;
    assert_eq!(st, 201);
    for chunk in 0..5 {
        s.append_range("jobs", chunk * 1000..(chunk + 1) * 1000, 32).await;
    }
    let (st, _) = s
        .autogen_harness(json!({"name": "jq", "index_name": "jobs", "queries": 40, "k": 10, "seed": 1}))
        .await;
    assert_eq!(st, 201);

    // 202 -> running -> succeeded
    let grid = json!([{"ef_construction": 40, "ef_search": 10}, {"ef_construction": 40, "ef_search": 40}]);
    let (st, acc) = s.autotune_async(json!({"index_name": "jobs", "harness": "jq", "grid": grid, "promote": "never", "min_recall": 0.0}))
        .await;
    assert_eq!(st, 202, "{acc}");
    let ok_id = acc["job_id"].as_str().unwrap().to_string();
    let done = s
        .poll_job(&ok_id, |j| j["state"] == "succeeded" || j["state"] == "failed")
        .await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["progress"], json!({"done": 2, "total": 2}));
    assert_eq!(done["result"]["trials_run"], 2);

    // a long adaptive job, cancelled once it has a trial
    let long = json!({"index_name": "jobs", "harness": "jq", "strategy": "adaptive", "max_trials": 40,
                      "objective": "min_latency", "target_recall": 0.999, "promote": "always"});
    let (st, acc) = s.autotune_async(long.clone()).await;
    assert_eq!(st, 202);
    let cancel_id = acc["job_id"].as_str().unwrap().to_string();
    let j = s
        .poll_job(&cancel_id, |j| {
            j["progress"]["done"].as_u64() >= Some(1) || j["state"] == "succeeded"
        })
        .await;
    assert_eq!(j["state"], "running", "still running after its first trial: {j}");
    let (st, d) = s
        .call(
            reqwest::Method::DELETE,
            &format!("/vectors/jobs/{cancel_id}"),
            None,
        )
        .await;
    assert_eq!(st, 200, "{d}");
    let j = s.poll_job(&cancel_id, |j| j["state"] != "running").await;
    assert_eq!(j["state"], "cancelled", "{j}");
    let (_, p) = s.promoted("jobs").await;
    assert_eq!(p["current"], Value::Null, "a cancelled job promotes nothing");
    let (_, list) = s.trials("jobs", "").await;
    assert_eq!(
        list["trials"].as_array().unwrap().len() as u64,
        2 + j["progress"]["done"].as_u64().unwrap()
    );

    // an agent enabled with a long cooldown, to see its settings come back
    let (st, _) = s
        .call(
            reqwest::Method::PUT,
            "/vectors/hnsw/agent/jobs",
            Some(json!({"harness": "jq", "cooldown_secs": 3600, "max_trials_per_hour": 1})),
        )
        .await;
    assert_eq!(st, 200);

    // another long job, killed while it runs
    let (st, acc) = s.autotune_async(long).await;
    assert_eq!(st, 202, "{acc}");
    let killed_id = acc["job_id"].as_str().unwrap().to_string();
    let j = s.poll_job(&killed_id, |j| j["state"] != "queued").await;
    assert_eq!(j["state"], "running", "{j}");
    let mut s = s;
    s.child.kill().unwrap();
    s.child.wait().unwrap();
    drop(s);

    let s = TestServer::start(dir.path());
    let (st, j) = s.job(&killed_id).await;
    assert_eq!(st, 200);
    assert_eq!(j["state"], "failed", "{j}");
    assert_eq!(j["error"]["code"], "interrupted", "{j}");
    let (_, jobs) = s.jobs("?index=jobs").await;
    let states: Vec<(&str, &str)> = jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| (j["id"].as_str().unwrap(), j["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        states,
        vec![
            (killed_id.as_str(), "failed"),
            (cancel_id.as_str(), "cancelled"),
            (ok_id.as_str(), "succeeded")
        ]
    );
    let (_, j) = s.job(&ok_id).await;
    assert_eq!(j["result"]["trials_run"], 2, "a result survives the restart");
    let (_, a) = s.get_agent("jobs").await;
    assert_eq!(a["config"]["cooldown_secs"], 3600.0, "{a}");
    assert_ne!(a["state"], "disabled", "{a}");
    // the interrupted job holds no claim: the index tunes again
    let (st, r) = s
        .autotune(json!({"index_name": "jobs", "harness": "jq", "grid": [grid[0]], "promote": "never"}))
        .await;
    assert!(st == 200 || st == 409, "{r}");
    assert_eq!(s.terminate().code(), Some(0));
}

/// An sq8 (and an sq4, and a rabitq) activation is stored; after a restart the same generation serves the
/// stored graph (loaded, not rebuilt) and answers exactly as before.
#[tokio::test]
async fn a_restart_serves_the_stored_sq8_graph() {
    a_restart_serves_the_stored_quantized_graph("sq8").await;
}

#[tokio::test]
async fn a_restart_serves_the_stored_sq4_graph() {
    a_restart_serves_the_stored_quantized_graph("sq4").await;
}

#[tokio::test]
async fn a_restart_serves_the_stored_rabitq_graph() {
    a_restart_serves_the_stored_quantized_graph("rabitq").await;
}

async fn a_restart_serves_the_stored_quantized_graph(quantization: &str) {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path());
    let (st, _) = s
        .create_index(json!({"name": "q8", "dims": 24, "metric": "l2"}))
        .await;
    assert_eq!(st, 201);
    s.append_range("q8", 0..800, 24).await;
    let (st, _) = s
        .autogen_harness(json!({"name": "q8h", "index_name": "q8", "queries": 20, "k": 10}))
        .await;
    assert_eq!(st, 201);
    let (st, t) = s
        .trial(json!({"index_name": "q8", "harness": "q8h",
                "config": {"ef_construction": 60, "ef_search": 30, "m": 12, "quantization": quantization}}))
        .await;
    assert_eq!(st, 200, "{t}");
    let id = t["id"].as_str().unwrap().to_string();
    assert_eq!(s.promote("q8", &id, None).await.0, 200);
    let (st, a) = s.activate("q8").await;
    assert_eq!(st, 200, "{a}");
    assert_eq!(a["config"]["quantization"], quantization);
    assert_eq!(a["loaded_from_store"], false);
    let query = json!({"vector": vector(11, 24), "k": 10});
    let (_, before) = s.search("q8", query.clone()).await;
    assert_eq!(before["hits"][0]["id"], "v11");
    assert!(s.terminate().success());
    // the stored graph, named by its identity; a rebuild would write it again
    let graphs: Vec<_> = std::fs::read_dir(dir.path().join("indexes/q8/graphs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(graphs.len(), 1, "{graphs:?}");
    assert!(
        graphs[0]
            .to_string_lossy()
            .ends_with(&format!("-m12-ec60-s42-{quantization}-native.graph")),
        "{graphs:?}"
    );
    let stamp = |p: &std::path::Path| std::fs::metadata(p).unwrap().modified().unwrap();
    let written = stamp(&graphs[0]);

    let s = TestServer::start(dir.path());
    let active = s.wait_active("q8").await;
    assert_eq!(active["config"], a["config"]);
    assert_eq!(active["generation"], a["generation"]);
    let (_, after) = s.search("q8", query).await;
    assert_eq!(after["hits"], before["hits"]);
    assert_eq!(after["config"]["quantization"], quantization);
    assert_eq!(
        stamp(&graphs[0]),
        written,
        "the restart loaded the stored graph, it did not rebuild"
    );
    // and an activation of the same config loads it too
    let (_, again) = s.activate("q8").await;
    assert_eq!(again["loaded_from_store"], true, "{again}");
    assert!(s.terminate().success());
}

/// `build.engine = "native_sq8"` (the builder on SQ8 codes): an activation builds and stores
/// the graph under that builder's name, a restart loads it instead of rebuilding, and a
/// server set to `native` does not take the other builder's graph for its own (its restart
/// builds and stores its own, beside it).
#[tokio::test]
async fn the_codes_builder_stores_its_own_graphs() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().display().to_string();
    let sq8 = [("VECTUNE_BUILD_ENGINE", "native_sq8")];
    let s = TestServer::start_url(&store, &sq8);
    let (st, _) = s
        .create_index(json!({"name": "b8", "dims": 24, "metric": "l2"}))
        .await;
    assert_eq!(st, 201);
    s.append_range("b8", 0..800, 24).await;
    let (st, a) = s.activate("b8").await;
    assert_eq!(st, 200, "{a}");
    assert_eq!(a["loaded_from_store"], false);
    let query = json!({"vector": vector(11, 24), "k": 10});
    let (_, before) = s.search("b8", query.clone()).await;
    assert_eq!(before["hits"][0]["id"], "v11");
    assert!(s.terminate().success());
    let graphs = || -> Vec<String> {
        let mut g: Vec<String> = std::fs::read_dir(dir.path().join("indexes/b8/graphs"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        g.sort();
        g
    };
    let first = graphs();
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(first[0].ends_with("-native_sq8.graph"), "{first:?}");

    let s = TestServer::start_url(&store, &sq8);
    let active = s.wait_active("b8").await;
    assert_eq!(active["generation"], a["generation"]);
    let (_, after) = s.search("b8", query.clone()).await;
    assert_eq!(after["hits"], before["hits"]);
    let (_, again) = s.activate("b8").await;
    assert_eq!(again["loaded_from_store"], true, "{again}");
    assert_eq!(graphs(), first, "loaded, not rebuilt");
    assert!(s.terminate().success());

    // on `native` the restart builds the native graph (the stored one is another
    // builder's) and stores it beside; an activation then loads that one
    let s = TestServer::start(dir.path());
    s.wait_active("b8").await;
    let both = graphs();
    assert_eq!(both.len(), 2, "{both:?}");
    assert!(both.iter().any(|g| g.ends_with("-native.graph")), "{both:?}");
    let (_, own) = s.activate("b8").await;
    assert_eq!(own["loaded_from_store"], true, "{own}");
    assert_eq!(graphs(), both);
    let (_, hits) = s.search("b8", query).await;
    assert_eq!(hits["hits"][0]["id"], "v11");
    assert!(s.terminate().success());
}

/// `n` l2 vectors in 12 Gaussian clusters of `dims` dimensions (ids `v{i}`), seeded.
fn clustered(n: usize, dims: usize) -> Vec<Vec<f32>> {
    let mut rng = vectune::rng::SplitMix64::new(11);
    let mut gauss = move || {
        let s: f64 = (0..12)
            .map(|_| (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
            .sum();
        (s - 6.0) as f32
    };
    let centres: Vec<Vec<f32>> = (0..12)
        .map(|_| (0..dims).map(|_| gauss() * 4.0).collect())
        .collect();
    (0..n)
        .map(|i| centres[i % 12].iter().map(|c| c + gauss()).collect())
        .collect()
}

/// A search vector far from the clusters' centres: off the data's distribution.
fn off_distribution(i: usize, dims: usize) -> Vec<f32> {
    vector(100_000 + i, dims).iter().map(|x| x * 8.0).collect()
}

async fn clustered_index(s: &TestServer, name: &str, n: usize, dims: usize) {
    let (st, _) = s
        .create_index(json!({"name": name, "dims": dims, "metric": "l2"}))
        .await;
    assert_eq!(st, 201);
    let vs = clustered(n, dims);
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let vectors: Vec<Value> = chunk
            .iter()
            .map(|&i| json!({"id": format!("v{i}"), "vector": vs[i]}))
            .collect();
        let (st, b) = s.append(&name, json!({ "vectors": vectors })).await;
        assert_eq!(st, 200, "{b}");
    }
}

#[tokio::test]
async fn live_searches_are_monitored_captured_and_tuned_on() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path());
    clustered_index(&s, "live", 2000, 16).await;
    let (st, m) = s
        .put_monitor("live", json!({"sample_rate": 1.0, "window": 100}))
        .await;
    assert_eq!((st, m.clone()), (200, json!({"sample_rate": 1.0, "window": 100})));
    let (st, _) = s.activate("live").await;
    assert_eq!(st, 200);
    let (st, h) = s
        .capture_harness(json!({"name": "traffic", "index_name": "live", "queries": 40, "k": 10}))
        .await;
    assert_eq!(
        (st, h["capture"]["state"].clone()),
        (202, json!("capturing")),
        "{h}"
    );
    for i in 0..60 {
        let (st, r) = s
            .search("live", json!({"vector": off_distribution(i, 16), "k": 10}))
            .await;
        assert_eq!(st, 200, "{r}");
    }
    let h = s
        .wait_for("/vectors/harness/traffic", |h| h["ground_truth_built"] == true)
        .await;
    assert_eq!(h["capture"], json!({"state": "complete", "have": 40, "want": 40}));
    let first = h["queries"][0]["vector"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect::<Vec<_>>();
    assert_eq!(
        first,
        off_distribution(0, 16),
        "queries are the searched vectors, in order"
    );
    let ix = s
        .wait_for("/vectors/indexes/live", |i| i["live"]["queries"] == 60)
        .await;
    let live = &ix["live"];
    assert_eq!(
        (live["generation"].clone(), live["window"].clone()),
        (json!(1), json!(100))
    );
    assert!(
        live["recall_ci_low"].as_f64() <= live["recall_at_k"].as_f64(),
        "{live}"
    );

    // tuned on the captured traffic
    let (st, r) = s.autotune(json!({"index_name": "live", "harness": "traffic", "promote": "always", "min_recall": 0.0,
            "grid": [{"ef_construction": 40, "ef_search": 20, "m": 8}, {"ef_construction": 40, "ef_search": 60, "m": 8}]}))
        .await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["promoted"], true, "{r}");
    let (_, trials) = s.trials("live", "?harness=traffic").await;
    assert!(trials["trials"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["metrics"]["eval_queries"] == 40));

    // a swap starts the live window anew; settings and the harness survive a restart
    let (_, a) = s.activate("live").await;
    assert_eq!(a["generation"], 2);
    let (_, ix) = s.get_index("live").await;
    assert_eq!(ix["live"], Value::Null, "{ix}");
    for i in 0..5 {
        s.search("live", json!({"vector": off_distribution(i, 16), "k": 10}))
            .await;
    }
    let ix = s
        .wait_for("/vectors/indexes/live", |i| i["live"]["queries"] == 5)
        .await;
    assert_eq!(ix["live"]["generation"], 2);
    assert!(s.terminate().success());
    let s = TestServer::start(dir.path());
    assert_eq!(s.get_monitor("live").await.1, m);
    let (_, h2) = s.get_harness("traffic").await;
    assert_eq!(
        (h2["capture"].clone(), h2["queries"].as_array().map(Vec::len)),
        (h["capture"].clone(), Some(40))
    );
    assert!(s.terminate().success());
}

#[tokio::test]
async fn the_agent_activates_and_rolls_back_a_config_its_live_canary_fails() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path());
    clustered_index(&s, "can", 3000, 24).await;
    // the harness is easy (stored vectors as queries); live traffic is not
    let (st, _) = s
        .autogen_harness(json!({"name": "easy", "index_name": "can", "queries": 40, "k": 10, "seed": 5}))
        .await;
    assert_eq!(st, 201);
    s.put_monitor("can", json!({"sample_rate": 1.0, "window": 200}))
        .await;
    let (_, first) = s.activate("can").await;
    let (st, t) = s
        .trial(json!({"index_name": "can", "harness": "easy",
            "config": {"ef_construction": 10, "ef_search": 10, "m": 4}}))
        .await;
    assert_eq!(st, 200, "{t}");
    let weak = t["config"].clone();
    let (st, _) = s
        .post(
            &format!("/vectors/hnsw/promote/can/{}", t["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(st, 200);
    let (st, ag) = s
        .put_agent(
            "can",
            json!({"harness": "easy", "cooldown_secs": 3600, "epsilon": 0.0,
            "objective": "min_latency", "target_recall": 0.99, "activate": true, "canary_queries": 60}),
        )
        .await;
    assert_eq!(st, 200, "{ag}");
    let mut i = 0;
    let mut last = Value::Null;
    for _ in 0..1200 {
        for _ in 0..5 {
            s.search("can", json!({"vector": off_distribution(i, 24), "k": 10}))
                .await;
            i += 1;
        }
        let (_, a) = s.get_agent("can").await;
        last = a["last_decision"].clone();
        if last["action"] == "rolled_back" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(last["action"], "rolled_back", "{last}");
    let reason = last["reason"].as_str().unwrap();
    assert!(
        reason.contains("canary failed") && reason.contains("0.99"),
        "{reason}"
    );
    let (_, ag) = s.get_agent("can").await;
    let actions: Vec<&str> = ag["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["action"].as_str().unwrap())
        .collect();
    assert!(actions.starts_with(&["rolled_back", "activated"]), "{actions:?}");
    let rejected = ag["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 1, "{ag}");
    // what serves is what is promoted, and it is not the rejected config
    let (_, ix) = s.get_index("can").await;
    let (_, p) = s.promoted("can").await;
    let promoted = if p["current"].is_null() {
        first["config"].clone()
    } else {
        p["current"]["config"].clone()
    };
    assert_eq!(ix["active"]["config"], promoted, "{ix} {p}");
    assert_ne!(ix["active"]["config"], rejected[0]);
    if rejected[0] == weak {
        assert_eq!(
            p["current"],
            Value::Null,
            "the only promotion was rolled back: {p}"
        );
    }
    s.call(reqwest::Method::DELETE, "/vectors/hnsw/agent/can", None)
        .await;
    assert!(s.terminate().success());
}

/// The Python with the real parsers (`scripts/test.sh` sets it up).
fn python() -> String {
    std::env::var("VECTUNE_TEST_PYTHON")
        .expect("VECTUNE_TEST_PYTHON must name a Python with prometheus_client and openapi-spec-validator (scripts/test.sh sets it)")
}

/// Runs `code` on `python()` with `input` on stdin; its stdout.
fn run_python(code: &str, input: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new(python())
        .args(["-c", code])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

async fn seeded_server(dir: &Path, env: &[(&str, &str)]) -> TestServer {
    let s = TestServer::start_url(&dir.display().to_string(), env);
    s.new_index("ops", 16, "l2").await;
    s.append_range("ops", 0..200, 16).await;
    s
}

/// `/metrics` as the Python `prometheus_client` OpenMetrics parser reads it: families,
/// types and samples, not string matching.
#[tokio::test]
#[ignore = "needs Python's prometheus_client: scripts/test.sh provides it"]
async fn metrics_parse_with_the_prometheus_client_parser() {
    let dir = tempfile::tempdir().unwrap();
    let s = seeded_server(dir.path(), &[("VECTUNE_MONITOR_SAMPLE_RATE", "1")]).await;
    assert_eq!(s.activate("ops").await.0, 200);
    for i in 0..5 {
        let q = json!({"vector": vector(i, 16), "k": 3});
        assert_eq!(s.search("ops", q).await.0, 200);
    }
    assert_eq!(s.get_harness("nope").await.0, 404);
    // every search is sampled: wait until the monitor has judged them
    s.wait_for("/vectors/indexes/ops", |v| v["live"]["queries"] == 5)
        .await;
    let resp = s.client.get(format!("{}/metrics", s.base)).send().await.unwrap();
    let ctype = resp.headers()["content-type"].to_str().unwrap().to_string();
    let text = resp.bytes().await.unwrap();
    let parser = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = {}
for f in text_string_to_metric_families(sys.stdin.read()):
    out[f.name] = {"type": f.type, "samples": [[s.name, s.labels, s.value] for s in f.samples]}
print(json.dumps(out))
"#;
    let families: Value = serde_json::from_str(&run_python(parser, &text)).unwrap();
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    let fam = |name: &str| -> &Value {
        families.get(name).unwrap_or_else(|| {
            panic!(
                "no family {name} in {:?}",
                families.as_object().unwrap().keys().collect::<Vec<_>>()
            )
        })
    };
    for (name, kind) in [
        ("vectune_http_requests", "counter"),
        ("vectune_http_request_duration_seconds", "histogram"),
        ("vectune_trials", "counter"),
        ("vectune_graph_builds", "counter"),
        ("vectune_graph_build_duration_seconds", "histogram"),
        ("vectune_autotune_runs", "counter"),
        ("vectune_agent_decisions", "counter"),
        ("vectune_queue_refused", "counter"),
        ("vectune_index_vectors", "gauge"),
        ("vectune_index_active_generation", "gauge"),
        ("vectune_index_live_recall_ratio", "gauge"),
        ("vectune_jobs", "gauge"),
        ("vectune_queue_admitted", "gauge"),
        ("vectune_queue_capacity", "gauge"),
    ] {
        assert_eq!(fam(name)["type"], kind, "{name}");
    }
    let samples = |name: &str| fam(name)["samples"].as_array().unwrap().clone();
    let searches = samples("vectune_http_requests")
        .into_iter()
        .find(|s| s[1]["route"] == "/vectors/search/{index}" && s[1]["status"] == "200")
        .expect("a search series");
    assert_eq!(searches[2], 5.0);
    assert!(samples("vectune_http_requests")
        .iter()
        .any(|s| s[1]["route"] == "/vectors/harness/{name}" && s[1]["status"] == "404"));
    assert!(samples("vectune_index_vectors")
        .iter()
        .any(|s| s[1]["index"] == "ops" && s[2] == 200.0));
    assert!(samples("vectune_index_active_generation")
        .iter()
        .any(|s| s[1]["index"] == "ops" && s[2] == 1.0));
    assert!(samples("vectune_index_live_recall_ratio")
        .iter()
        .any(|s| s[1]["index"] == "ops" && s[2].as_f64().is_some_and(|r| r > 0.0 && r <= 1.0)));
    let outcomes: Vec<Value> = samples("vectune_autotune_runs")
        .iter()
        .map(|s| s[1]["outcome"].clone())
        .collect();
    assert_eq!(outcomes.len(), 5, "{outcomes:?}");
    let builds = samples("vectune_graph_builds");
    assert!(
        builds
            .iter()
            .any(|s| s[1]["purpose"] == "activation" && s[2] == 1.0),
        "{builds:?}"
    );
    assert!(s.terminate().success());
}

/// `/openapi.json` passes `openapi-spec-validator` (OpenAPI 3.1).
#[tokio::test]
#[ignore = "needs Python's openapi-spec-validator: scripts/test.sh provides it"]
async fn the_openapi_document_validates() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path());
    let resp = s
        .client
        .get(format!("{}/openapi.json", s.base))
        .send()
        .await
        .unwrap();
    let spec = resp.bytes().await.unwrap();
    let out = run_python(
        "import json, sys\nfrom openapi_spec_validator import validate\nfrom openapi_spec_validator.validation import OpenAPIV31SpecValidator\nspec = json.load(sys.stdin)\nvalidate(spec, cls=OpenAPIV31SpecValidator)\nprint(spec['openapi'], len(spec['paths']))",
        &spec,
    );
    assert!(out.starts_with("3.1"), "{out}");
    assert!(s.terminate().success());
}

/// `--log-format json` (here through `VECTUNE_LOG_FORMAT`): every line is a JSON object,
/// and each request has one with its method, route template, status, latency and id.
#[tokio::test]
async fn json_logs_carry_every_request() {
    let (_dir, s) = TestServer::in_temp_dir(&[("VECTUNE_LOG_FORMAT", "json")]);
    let resp = s
        .client
        .get(format!("{}/vectors/indexes/missing-one", s.base))
        .header("x-request-id", "e2e-req-7")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    assert_eq!(resp.headers()["x-request-id"], "e2e-req-7");
    let mut line = None;
    for _ in 0..100 {
        line = s
            .log
            .lock()
            .unwrap()
            .iter()
            .find(|l| l.contains("e2e-req-7"))
            .cloned();
        if line.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let v: Value = serde_json::from_str(&line.expect("a log line for the request")).unwrap();
    assert_eq!(v["method"], "GET", "{v}");
    assert_eq!(v["route"], "/vectors/indexes/{index}", "{v}");
    assert_eq!(v["status"], 404, "{v}");
    assert!(v["latency_us"].is_u64(), "{v}");
    assert_eq!(v["request_id"], "e2e-req-7", "{v}");
    let log = s.log.clone();
    assert!(s.terminate().success());
    for l in log.lock().unwrap().iter() {
        assert!(
            serde_json::from_str::<Value>(l).is_ok_and(|v| v.is_object()),
            "not a JSON object: {l}"
        );
    }
}

/// Tokens from files (kept out of the process listing): the admin token writes, the
/// read-only one reads and searches and is refused writes, and no token is refused.
#[tokio::test]
async fn tokens_from_files_admin_and_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let (admin, read) = ("e2e-admin-token-1", "e2e-read-token-2");
    std::fs::write(dir.path().join("admin"), format!("{admin}\n")).unwrap();
    std::fs::write(dir.path().join("read"), format!("{read}\n")).unwrap();
    let cfg = dir.path().join("vectune.toml");
    std::fs::write(
        &cfg,
        format!(
            "[auth]\ntoken_file = {:?}\nread_token_file = {:?}\n",
            dir.path().join("admin").display().to_string(),
            dir.path().join("read").display().to_string()
        ),
    )
    .unwrap();
    let store = dir.path().join("store");
    let s = TestServer::start_url(
        &store.display().to_string(),
        &[("VECTUNE_CONFIG", cfg.to_str().unwrap())],
    );
    let send = |method: reqwest::Method, path: &str, token: Option<&str>, body: Option<Value>| {
        let mut req = s.client.request(method, format!("{}{}", s.base, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    use reqwest::Method;
    let index = json!({"name": "sec", "dims": 2, "metric": "l2"});
    assert_eq!(
        send(Method::POST, "/vectors/indexes", None, Some(index.clone())).await,
        401
    );
    assert_eq!(
        send(Method::POST, "/vectors/indexes", Some(read), Some(index.clone())).await,
        403
    );
    assert_eq!(
        send(Method::POST, "/vectors/indexes", Some(admin), Some(index)).await,
        201
    );
    assert_eq!(
        send(Method::GET, "/vectors/indexes/sec", Some(read), None).await,
        200
    );
    assert_eq!(send(Method::GET, "/metrics", Some(read), None).await, 200);
    assert_eq!(send(Method::GET, "/metrics", None, None).await, 401);
    assert_eq!(send(Method::GET, "/ready", None, None).await, 200);
    assert_eq!(
        send(Method::DELETE, "/vectors/indexes/sec", Some(read), None).await,
        403
    );
    assert_eq!(
        send(Method::GET, "/vectors/indexes/sec", Some(admin), None).await,
        200
    );
    assert!(s.terminate().success());
}

/// A burst of activations against a queue of two: every answer is 202 or 503
/// `overloaded` with `Retry-After`, the first is always admitted, and exactly the
/// admitted ones became jobs. Prints the split (the figure in the closing note).
#[tokio::test]
async fn a_burst_beyond_the_queue_is_refused_not_queued() {
    let (_dir, s) =
        TestServer::in_temp_dir(&[("VECTUNE_MAX_QUEUED_JOBS", "2"), ("VECTUNE_BUILD_THREADS", "1")]);
    let n = 8;
    for b in 0..n {
        let name = format!("burst{b}");
        s.new_index(&name, 32, "l2").await;
        s.append_range(&name, b * 3000..(b + 1) * 3000, 32).await;
    }
    let answers = futures::future::join_all((0..n).map(|b| {
        let req = s
            .client
            .post(format!("{}/vectors/indexes/burst{b}/activate?async=true", s.base));
        async move {
            let r = req.send().await.unwrap();
            let retry = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            (r.status().as_u16(), retry, r.json::<Value>().await.unwrap())
        }
    }))
    .await;
    let admitted: Vec<usize> = (0..n).filter(|&b| answers[b].0 == 202).collect();
    for (status, retry, body) in &answers {
        match status {
            202 => assert!(body["job_id"].is_string(), "{body}"),
            503 => {
                assert_eq!(body["error"]["code"], "overloaded", "{body}");
                assert!(retry.is_some(), "503 without Retry-After");
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(!admitted.is_empty(), "{answers:?}");
    eprintln!(
        "burst of {n} async activations, queue of 2: {} admitted, {} refused (503 overloaded)",
        admitted.len(),
        n - admitted.len()
    );
    for b in 0..n {
        let (st, jobs) = s.jobs(&format!("?index=burst{b}")).await;
        assert_eq!(st, 200);
        let want = usize::from(admitted.contains(&b));
        assert_eq!(jobs["jobs"].as_array().unwrap().len(), want, "burst{b}: {jobs}");
    }
    assert!(s.terminate().success());
}

/// SIGTERM in the middle of a sync autotune: the run stops at its
/// next step and its caller is told `503 shutting_down` (not a 500, not a hang); the
/// process exits 0 and the trials journaled before the signal are still there.
#[tokio::test]
async fn a_sync_autotune_cut_short_by_shutdown_answers_shutting_down() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().display().to_string();
    let s = TestServer::start_url(&store, &[("VECTUNE_BUILD_THREADS", "1")]);
    let dims = 48;
    s.new_index("long", dims, "l2").await;
    s.append_fvecs("long", 0, 12_000, dims).await;
    s.autogen("lh", "long", 50, 10).await;
    // eight distinct graphs, each a few seconds on one thread
    let grid: Vec<Value> = [
        (200, 24),
        (240, 28),
        (280, 32),
        (320, 36),
        (360, 40),
        (400, 44),
        (380, 48),
        (300, 40),
    ]
    .iter()
    .map(|(ec, m)| json!({"ef_construction": ec, "ef_search": 100, "m": m}))
    .collect();
    let run = s
        .client
        .post(format!("{}/vectors/hnsw/autotune", s.base))
        .json(&json!({"index_name": "long", "harness": "lh", "grid": grid}))
        .send();
    let answer = tokio::spawn(run);
    // the signal comes once the first trial is journaled: the run is certainly under way
    s.wait_for("/vectors/hnsw/trials/long", |v| {
        !v["trials"].as_array().unwrap().is_empty()
    })
    .await;
    let pid = s.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let resp = answer
        .await
        .unwrap()
        .expect("an answer, not a dropped connection");
    assert_eq!(resp.status().as_u16(), 503);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "shutting_down", "{v}");
    let mut s = s;
    let status = (0..300)
        .find_map(|_| {
            let st = s.child.try_wait().unwrap();
            if st.is_none() {
                std::thread::sleep(Duration::from_millis(100));
            }
            st
        })
        .expect("exited within 30 s of SIGTERM");
    assert!(status.success(), "{status:?}");
    // what was journaled before the signal survives the restart
    let again = TestServer::start(dir.path());
    let (_, trials) = again.get("/vectors/hnsw/trials/long").await;
    let n = trials["trials"].as_array().unwrap().len();
    assert!((1..8).contains(&n), "{n} trials");
    assert!(again.terminate().success());
}

/// kill -9 while a client ingests, runs trials and promotes, twenty times over one store:
/// after every restart each acknowledged batch, trial and promotion is there, the batch in
/// flight is all there or not at all, and the promoted trial is the last acknowledged one
/// (or the one in flight).
#[tokio::test]
async fn kill_9_during_ingest_trials_and_promotes_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().display().to_string();
    let dims = 16;
    let s = TestServer::start(dir.path());
    s.new_index("k9", dims, "l2").await;
    s.append_range("k9", 0..100, dims).await;
    s.autogen("k9h", "k9", 20, 5).await;
    drop(s);
    let (mut acked_vectors, mut next_id) = (100usize, 100usize);
    let mut acked_trials: Vec<String> = Vec::new();
    let mut promoted: Option<String> = None;
    let iterations = 20;
    for it in 0..iterations {
        let s = TestServer::start_url(&store, &[]);
        // the client's work runs until the kill cuts it off mid-request
        let client = s.client.clone();
        let base = s.base.clone();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(&'static str, Option<String>, usize)>();
        let start_id = next_id;
        let work = tokio::spawn(async move {
            let mut id = start_id;
            for step in 0.. {
                let kind = if step % 4 == 3 { "trial" } else { "batch" };
                // announce what is about to be in flight, then whether it was acknowledged
                let _ = tx.send(("in_flight", Some(kind.to_string()), 25));
                if kind == "batch" {
                    let vs: Vec<Value> = (id..id + 25)
                        .map(|i| json!({"id": format!("v{i}"), "vector": vector(i, dims)}))
                        .collect();
                    let r = client
                        .post(format!("{base}/vectors/indexes/k9/vectors"))
                        .json(&json!({ "vectors": vs }))
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status() == 200 => {
                            id += 25;
                            let _ = tx.send(("batch", None, 25));
                        }
                        _ => return,
                    }
                } else {
                    let body = json!({"index_name": "k9", "harness": "k9h",
                        "config": {"ef_construction": 20 + (step % 7) * 10, "ef_search": 20}});
                    let Ok(r) = client
                        .post(format!("{base}/vectors/hnsw/trial"))
                        .json(&body)
                        .send()
                        .await
                    else {
                        return;
                    };
                    let Ok(t) = r.json::<Value>().await else { return };
                    let tid = t["id"].as_str().unwrap().to_string();
                    let _ = tx.send(("trial", Some(tid.clone()), 0));
                    let _ = tx.send(("in_flight", Some(format!("promote:{tid}")), 0));
                    let Ok(r) = client
                        .post(format!("{base}/vectors/hnsw/promote/k9/{tid}"))
                        .send()
                        .await
                    else {
                        return;
                    };
                    if r.status() != 200 {
                        return;
                    }
                    let _ = tx.send(("promoted", Some(tid), 0));
                }
            }
        });
        // a different moment each time: 40 .. 400 ms into the work
        tokio::time::sleep(Duration::from_millis(40 + (it as u64 * 97) % 360)).await;
        let mut s = s;
        s.child.kill().unwrap(); // SIGKILL
        s.child.wait().unwrap();
        let _ = work.await;
        let mut in_flight: Option<String> = None;
        while let Ok((what, detail, n)) = rx.try_recv() {
            match what {
                "in_flight" => in_flight = detail,
                "batch" => {
                    acked_vectors += n;
                    next_id += n;
                    in_flight = None;
                }
                "trial" => {
                    acked_trials.push(detail.unwrap());
                    in_flight = None;
                }
                "promoted" => {
                    promoted = detail;
                    in_flight = None;
                }
                _ => unreachable!(),
            }
        }
        drop(s);
        // restart and check
        let s = TestServer::start_url(&store, &[]);
        let (st, ix) = s.get_index("k9").await;
        assert_eq!(st, 200, "iteration {it}: {ix}");
        let n = ix["vectors"].as_u64().unwrap() as usize;
        let batch_in_flight = in_flight.as_deref() == Some("batch");
        assert!(
            n == acked_vectors || (batch_in_flight && n == acked_vectors + 25),
            "iteration {it}: {n} vectors stored, {acked_vectors} acknowledged (in flight: {in_flight:?})"
        );
        if n != acked_vectors {
            // the batch in flight landed whole: it counts from here on
            acked_vectors = n;
            next_id += 25;
        }
        let (_, trials) = s.trials("k9", "").await;
        let stored: Vec<&str> = trials["trials"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap())
            .collect();
        for t in &acked_trials {
            assert!(
                stored.contains(&t.as_str()),
                "iteration {it}: acknowledged trial {t} lost"
            );
        }
        let (_, reg) = s.promoted("k9").await;
        let current = reg["current"]["trial_id"].as_str().map(str::to_string);
        let promote_in_flight = in_flight
            .as_deref()
            .and_then(|f| f.strip_prefix("promote:"))
            .map(str::to_string);
        assert!(
            current == promoted || (promote_in_flight.is_some() && current == promote_in_flight),
            "iteration {it}: promoted {current:?}, acknowledged {promoted:?}, in flight {in_flight:?}"
        );
        promoted = current;
        drop(s);
    }
    eprintln!(
        "kill -9 loop: {iterations} kills, {acked_vectors} vectors, {} trials, every acknowledged write kept",
        acked_trials.len()
    );
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Load on loopback, bounded: four clients search without pause and one polls `/health`
/// while an activation builds and then while an autotune runs. Every answer must be a 200;
/// the figures (requests, errors, p50/p99 of each) are printed for BENCHMARKS.md, never
/// asserted (timing differs by machine).
#[tokio::test]
async fn searches_and_health_stay_up_under_load_while_building_and_tuning() {
    let (_dir, s) = TestServer::in_temp_dir(&[]);
    let dims = 48;
    s.new_index("load", dims, "l2").await;
    s.append_fvecs("load", 0, 8000, dims).await;
    assert_eq!(s.activate("load").await.0, 200);
    s.autogen("lh", "load", 50, 10).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for c in 0..5 {
        let (client, base, stop) = (s.client.clone(), s.base.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors) = (Vec::new(), 0usize);
            let mut i = c * 100_000;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t = std::time::Instant::now();
                let ok = if c == 4 {
                    let r = client.get(format!("{base}/health")).send().await;
                    r.is_ok_and(|r| r.status() == 200)
                } else {
                    let q = json!({"vector": vector(i, 48), "k": 10});
                    i += 1;
                    let r = client
                        .post(format!("{base}/vectors/search/load"))
                        .json(&q)
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status() == 200 => r.bytes().await.is_ok(),
                        _ => false,
                    }
                };
                lat.push(t.elapsed().as_secs_f64() * 1e6);
                errors += usize::from(!ok);
                if c == 4 {
                    // a prober, not a fifth load client
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            (c == 4, lat, errors)
        }));
    }
    // under load: a rebuild over more vectors, then an autotune of three configs
    s.append_fvecs("load", 8000, 2000, dims).await;
    let (st, job) = s.activate_async("load").await;
    assert_eq!(st, 202, "{job}");
    let path = format!("/vectors/jobs/{}", job["job_id"].as_str().unwrap());
    let done = s
        .wait_for(&path, |j| j["state"] != "queued" && j["state"] != "running")
        .await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let grid = json!([{"ef_construction": 60, "ef_search": 40}, {"ef_construction": 100, "ef_search": 60, "m": 24},
                      {"ef_construction": 40, "ef_search": 30, "m": 8}]);
    let (st, job) = s
        .autotune_async(json!({"index_name": "load", "harness": "lh", "grid": grid, "promote": "never"}))
        .await;
    assert_eq!(st, 202, "{job}");
    let path = format!("/vectors/jobs/{}", job["job_id"].as_str().unwrap());
    let done = s
        .wait_for(&path, |j| j["state"] != "queued" && j["state"] != "running")
        .await;
    assert_eq!(done["state"], "succeeded", "{done}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut search, mut health, mut errors) = (Vec::new(), Vec::new(), 0);
    for t in tasks {
        let (is_health, lat, e) = t.await.unwrap();
        errors += e;
        if is_health {
            health.extend(lat);
        } else {
            search.extend(lat);
        }
    }
    search.sort_by(f64::total_cmp);
    health.sort_by(f64::total_cmp);
    eprintln!(
        "load: {} searches (p50 {:.0} µs, p99 {:.0} µs), {} /health (p50 {:.0} µs, p99 {:.0} µs), {errors} errors, \
         during a 10,000×48 rebuild and a 3-config autotune",
        search.len(),
        percentile(&search, 0.5),
        percentile(&search, 0.99),
        health.len(),
        percentile(&health, 0.5),
        percentile(&health, 0.99)
    );
    assert_eq!(errors, 0, "every search and /health must be answered with 200");
    assert!(!search.is_empty() && !health.is_empty());
    assert!(s.terminate().success());
}

/// Fresh writes under load, on the real binary: a writer appends rows one at a time and
/// deletes some while four clients search. Every acknowledged append is the top hit of
/// a search for its own vector sent right after the acknowledgement; no id whose delete
/// was acknowledged before a search was sent is ever in that search's hits; nothing
/// errs. Every 40 appended rows are folded into the graph by insertion (a new generation)
/// and the refresh rule (20 % of the generation) may re-activate, both in the background
/// during the run, so searches cross generation swaps too.
#[tokio::test]
async fn a_writer_appends_and_deletes_while_four_clients_search() {
    use std::collections::HashSet;
    use std::sync::Mutex;
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(TestServer::start(dir.path()));
    let dims = 24;
    s.new_index("live", dims, "l2").await;
    s.append_range("live", 0..1000, dims).await;
    assert_eq!(s.activate("live").await.0, 200);
    let (st, r) = s.put_refresh("live", json!({"fold_in_rows": 40})).await;
    assert_eq!(st, 200, "{r}");
    let deleted: Arc<Mutex<HashSet<String>>> = Arc::default();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut searchers = Vec::new();
    for c in 0..4usize {
        let (s, deleted, done) = (s.clone(), deleted.clone(), done.clone());
        searchers.push(tokio::spawn(async move {
            let mut checks = 0usize;
            let mut i = c;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                // deleted before this search was sent: must not come back
                let gone = deleted.lock().unwrap().clone();
                let q = vector(i % 1400, dims);
                let (st, r) = s.search("live", json!({"vector": q, "k": 10})).await;
                assert_eq!(st, 200, "{r}");
                for h in r["hits"].as_array().unwrap() {
                    let id = h["id"].as_str().unwrap();
                    assert!(
                        !gone.contains(id),
                        "{id} returned after its delete was acknowledged"
                    );
                    checks += 1;
                }
                i += 4;
            }
            checks
        }));
    }
    let mut generations = HashSet::new();
    for i in 1000..1300usize {
        let id = format!("v{i}");
        let (st, r) = s
            .append(
                "live",
                json!({"vectors": [{"id": id, "vector": vector(i, dims)}]}),
            )
            .await;
        assert_eq!(st, 200, "{r}");
        let (st, r) = s.search("live", json!({"vector": vector(i, dims), "k": 1})).await;
        assert_eq!(st, 200, "{r}");
        assert_eq!(
            r["hits"][0]["id"],
            json!(id),
            "an acknowledged append not found at once"
        );
        assert_eq!(r["hits"][0]["distance"], json!(0.0));
        generations.insert(r["generation"].as_u64().unwrap());
        if i % 3 == 0 {
            // a base row and the row appended just now
            for gone in [format!("v{}", i - 1000), id] {
                let (st, r) = s.delete_vector("live", &gone).await;
                assert_eq!(st, 204, "{r}");
                deleted.lock().unwrap().insert(gone);
            }
        }
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut checks = 0;
    for t in searchers {
        checks += t.await.unwrap();
    }
    assert!(checks > 1000, "only {checks} hits checked");
    assert!(
        generations.len() >= 3,
        "searches crossed no fold-ins: {generations:?}"
    );
    let (_, index) = s.get_index("live").await;
    assert_eq!(index["vectors"], json!(1300 - 200));
    let s = Arc::into_inner(s).expect("the only owner");
    assert!(s.terminate().success());
}

/// kill -9 while a client deletes, ten times over one store: after every restart each
/// acknowledged delete holds (the id is unknown, its vector never a hit), the delete in
/// flight is whole or absent, and nothing else went missing.
#[tokio::test]
async fn kill_9_during_deletes_loses_nothing_and_resurrects_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().display().to_string();
    let dims = 16;
    let s = TestServer::start(dir.path());
    s.new_index("kd", dims, "l2").await;
    for start in (0..6000).step_by(2000) {
        s.append_range("kd", start..start + 2000, dims).await;
    }
    assert_eq!(s.activate("kd").await.0, 200);
    drop(s);
    let mut deleted: Vec<usize> = Vec::new();
    let mut next = 0usize;
    for it in 0..10u64 {
        let s = TestServer::start_url(&store, &[]);
        let (client, base) = (s.client.clone(), s.base.clone());
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(bool, usize)>();
        let start = next;
        let work = tokio::spawn(async move {
            // pairs of rows from `start` on, one bulk delete each: (false, i) announces the
            // pair in flight, (true, i) its acknowledgement
            for i in (start..6000).step_by(2) {
                let _ = tx.send((false, i));
                let body = json!({"ids": [format!("v{i}"), format!("v{}", i + 1)]});
                match client
                    .post(format!("{base}/vectors/indexes/kd/vectors/delete"))
                    .json(&body)
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 200 => {
                        let _ = tx.send((true, i));
                    }
                    _ => return,
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(40 + (it * 97) % 360)).await;
        let mut s = s;
        s.child.kill().unwrap(); // SIGKILL
        s.child.wait().unwrap();
        let _ = work.await;
        let mut in_flight = None;
        while let Ok((acked, i)) = rx.try_recv() {
            if acked {
                deleted.extend([i, i + 1]);
                next = i + 2;
                in_flight = None;
            } else {
                in_flight = Some(i);
            }
        }
        drop(s);
        let s = TestServer::start_url(&store, &[]);
        let n = s.get_index("kd").await.1["vectors"].as_u64().unwrap() as usize;
        let landed = n + deleted.len() + 2 == 6000;
        assert!(
            n + deleted.len() == 6000 || (in_flight.is_some() && landed),
            "iteration {it}: {n} stored, {} deletes acknowledged, in flight {in_flight:?}",
            deleted.len()
        );
        if let (true, Some(i)) = (landed, in_flight) {
            deleted.extend([i, i + 1]);
            next = i + 2;
        }
        // every acknowledged delete of this round, and a spread of the earlier ones
        let earlier = deleted.len().saturating_sub(600);
        let checks = deleted[earlier..]
            .iter()
            .chain(deleted[..earlier].iter().step_by(17));
        for &i in checks {
            let (st, r) = s.delete_vector("kd", format!("v{i}")).await;
            assert_eq!(st, 404, "iteration {it}: v{i} came back: {r}");
        }
        s.wait_active("kd").await;
        for &i in deleted.iter().rev().take(20) {
            let (_, r) = s.search("kd", json!({"vector": vector(i, dims), "k": 5})).await;
            let hits: Vec<&str> = r["hits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h["id"].as_str().unwrap())
                .collect();
            assert!(
                !hits.contains(&format!("v{i}").as_str()),
                "iteration {it}: v{i} returned"
            );
        }
        drop(s);
    }
    assert!(!deleted.is_empty(), "no delete was ever acknowledged");
    eprintln!(
        "kill -9 during deletes: 10 kills, {} deletes acknowledged, none lost or undone",
        deleted.len()
    );
}

/// Over a real socket to the real binary: a binary body sent in small writes with its
/// length declared streams into rows (the server never needs it whole); one whose client
/// stops sending and closes before the declared length stores nothing, and the index goes on
/// taking appends. (The 2 GB figure, peak memory over what the index keeps, is
/// `scripts/ingest_memory.py`, in BENCHMARKS.md.)
#[tokio::test]
async fn a_binary_upload_streams_over_the_socket_and_a_cut_one_stores_nothing() {
    use std::io::{Read, Write};
    let (_dir, s) = TestServer::in_temp_dir(&[]);
    s.new_index("st", 16, "l2").await;
    let addr = s.base.trim_start_matches("http://").to_string();
    let body = fvecs_rows(0, 5000, 16); // 340 KB
    let post = |body: &[u8], declared: usize| -> String {
        let mut c = std::net::TcpStream::connect(&addr).unwrap();
        let head = format!(
            "POST /vectors/indexes/st/vectors?format=fvecs HTTP/1.1\r\nhost: x\r\ncontent-type: application/octet-stream\r\ncontent-length: {declared}\r\nconnection: close\r\n\r\n"
        );
        c.write_all(head.as_bytes()).unwrap();
        for part in body.chunks(4093) {
            c.write_all(part).unwrap();
        }
        if body.len() < declared {
            // the client gives up: its side closes mid-body
            c.shutdown(std::net::Shutdown::Write).unwrap();
        }
        let mut answer = String::new();
        c.read_to_string(&mut answer).ok();
        answer
    };
    let whole = post(&body, body.len());
    assert!(whole.starts_with("HTTP/1.1 200"), "{whole}");
    assert!(whole.contains("\"appended\":5000"), "{whole}");
    // declared whole, cut off after 60 %: refused (or the connection dropped), nothing stored
    let cut = post(&body[..body.len() * 6 / 10], body.len());
    assert!(cut.is_empty() || cut.starts_with("HTTP/1.1 400"), "{cut}");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let (_, i) = s.get_index("st").await;
    assert_eq!(i["vectors"], 5000, "{i}");
    // and the next whole upload lands after it
    let again = post(&fvecs_rows(5000, 10, 16), 10 * (4 + 64));
    assert!(again.contains("\"appended\":10"), "{again}");
    assert_eq!(s.get_index("st").await.1["vectors"], 5010);
}
