//! Jobs: an autotune or an activation as a background job, with progress, listing and cancel.

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn async_autotune_runs_as_a_job_with_progress_listing_and_cancel() {
    let app = TestApp::new().await;
    app.seeded(2000).await;
    app.autogen("h", 40, 10).await;
    let grid = json!([{"ef_construction": 40, "ef_search": 10}, {"ef_construction": 40, "ef_search": 30}]);
    let (s, acc) = app
        .autotune_async(
            json!({"index_name": "idx", "harness": "h", "grid": grid, "promote": "never", "min_recall": 0.0}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{acc:?}");
    let id = acc["job_id"].as_str().unwrap().to_string();
    assert_eq!(acc["status_url"], format!("/vectors/jobs/{id}"));
    let job = app.poll_job(&id, |j| j["state"] == "succeeded").await;
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
    let (s, acc) = app.autotune_async(long.clone()).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let long_id = acc["job_id"].as_str().unwrap().to_string();
    assert_error(
        &app.autotune(long.clone()).await,
        StatusCode::CONFLICT,
        "autotune_running",
    );
    assert_error(
        &app.autotune_async(long).await,
        StatusCode::CONFLICT,
        "autotune_running",
    );
    let (_, jobs) = app.jobs("?index=idx").await;
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
    let job = app
        .poll_job(&long_id, |j| {
            j["progress"]["done"].as_u64() >= Some(1) || j["state"] != "running" && j["state"] != "queued"
        })
        .await;
    assert_eq!(job["progress"]["total"], 40);
    let (s, d) = app.cancel_job(&long_id).await;
    assert_eq!(s, StatusCode::OK, "{d:?}");
    let job = app
        .poll_job(&long_id, |j| j["state"] != "running" && j["state"] != "queued")
        .await;
    if job["state"] == "cancelled" {
        let (_, list) = app.trials("idx", "").await;
        let trials = list["trials"].as_array().unwrap().len() as u64;
        assert_eq!(
            trials,
            2 + job["progress"]["done"].as_u64().unwrap(),
            "finished trials stay"
        );
        assert_eq!(job["result"], Value::Null);
        assert_eq!(
            app.promoted("idx").await.1["current"],
            Value::Null,
            "a cancelled job (promote always) promotes nothing"
        );
    } else {
        // it finished between the poll and the cancel: still a clean end
        assert_eq!(job["state"], "succeeded", "{job:?}");
    }
    // the index is free again
    let (s, _) = app
        .autotune(json!({"index_name": "idx", "harness": "h",
        "grid": [grid[0]], "promote": "never"}))
        .await;
    assert_eq!(s, StatusCode::OK);

    let uuid = "01900000-0000-7000-8000-000000000000";
    for (m, uri) in [
        ("GET", format!("/vectors/jobs/{uuid}")),
        ("DELETE", format!("/vectors/jobs/{uuid}")),
        ("GET", "/vectors/jobs/not-a-uuid".to_string()),
    ] {
        assert_error(
            &app.request(m, &uri, None).await,
            StatusCode::NOT_FOUND,
            "job_not_found",
        );
    }
    assert_error(
        &app.jobs("?index=nope").await,
        StatusCode::NOT_FOUND,
        "index_not_found",
    );
    assert_error(
        &app.jobs("").await,
        StatusCode::BAD_REQUEST,
        "invalid_query_string",
    );
}

#[tokio::test]
async fn activation_can_run_as_a_job() {
    let app = TestApp::new().await;
    app.seeded(300).await;
    // refused before a job exists: unknown index, empty index, a bad ?async
    assert_error(
        &app.activate_async("nope").await,
        StatusCode::NOT_FOUND,
        "index_not_found",
    );
    let r = app
        .create_index(json!({"name": "empty", "dims": 8, "metric": "l2"}))
        .await;
    assert_eq!(r.0, StatusCode::CREATED);
    assert_error(
        &app.activate_async("empty").await,
        StatusCode::CONFLICT,
        "index_empty",
    );
    assert_eq!(app.jobs("?index=empty").await.1["jobs"], json!([]));
    assert_error(
        &app.request("POST", "/vectors/indexes/idx/activate?async=yes", None)
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_query_string",
    );

    let (s, acc) = app.activate_async("idx").await;
    assert_eq!(s, StatusCode::ACCEPTED, "{acc:?}");
    let id = acc["job_id"].as_str().unwrap().to_string();
    assert_eq!(acc["status_url"], format!("/vectors/jobs/{id}"));
    let job = app
        .poll_job(&id, |j| j["state"] != "queued" && j["state"] != "running")
        .await;
    assert_eq!(job["state"], "succeeded", "{job:?}");
    assert_eq!(job["kind"], "activate");
    assert_eq!(job["progress"], json!({"done": 1, "total": 1}));
    assert_eq!(job["result"]["index_name"], "idx");
    assert_eq!(job["result"]["generation"], 1);
    assert_eq!(job["result"]["vectors"], 300);
    let (_, index) = app.get_index("idx").await;
    assert_eq!(index["active"]["generation"], 1, "{index:?}");
    // the sync form answers as before
    let (s, a) = app.activate("idx").await;
    assert_eq!((s, a["generation"].clone()), (StatusCode::OK, json!(2)));
}

/// A job shows the build under way as rows inserted of its rows, and a cancel during a long
/// build stops it at its next round's end: the job ends cancelled with the build where it
/// stopped (short of its rows), nothing journaled, and the index's next autotune runs.
#[tokio::test]
async fn a_job_shows_its_build_and_a_cancel_stops_the_build_within_a_round() {
    let app = TestApp::with_limit(64 << 20).await;
    let r = app
        .create_index(json!({"name": "big", "dims": 8, "metric": "l2"}))
        .await;
    assert_eq!(r.0, StatusCode::CREATED);
    for part in 0..6 {
        let r = app
            .append("big", batch_of(&format!("p{part}-"), part * 10_000, 10_000))
            .await;
        assert_eq!(r.0, StatusCode::OK, "{:?}", r.1);
    }
    let r = app
        .autogen_harness(json!({"name": "bh", "index_name": "big", "queries": 20, "k": 10}))
        .await;
    assert_eq!(r.0, StatusCode::CREATED, "{:?}", r.1);
    // one dear build: 60,000 rows at m 64 / efC 400
    let grid = json!([{"ef_construction": 400, "ef_search": 10, "m": 64}]);
    let (s, acc) = app
        .autotune_async(json!({"index_name": "big", "harness": "bh", "grid": grid, "promote": "never"}))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{acc:?}");
    let end = cancel_mid_build(&app, acc["job_id"].as_str().unwrap()).await;
    assert_eq!(end["progress"]["done"], 0);
    let (_, trials) = app.trials("big", "").await;
    assert_eq!(
        trials["trials"].as_array().map_or(0, Vec::len),
        0,
        "nothing journaled"
    );
}

/// An activation job shows its build as rows inserted of its rows, and a cancel during the
/// build stops it at the round's end: the job ends cancelled with the build where it
/// stopped and nothing serves (an incomplete graph is never stored or swapped in).
#[tokio::test]
async fn an_activation_job_shows_its_build_and_a_cancel_stops_it_within_a_round() {
    let app = TestApp::with_limit(64 << 20).await;
    let r = app
        .create_index(json!({"name": "big", "dims": 8, "metric": "l2"}))
        .await;
    assert_eq!(r.0, StatusCode::CREATED);
    let r = app.append("big", batch_of("p0-", 0, 1_000)).await;
    assert_eq!(r.0, StatusCode::OK, "{:?}", r.1);
    let r = app
        .autogen_harness(json!({"name": "bh", "index_name": "big", "queries": 10, "k": 10}))
        .await;
    assert_eq!(r.0, StatusCode::CREATED, "{:?}", r.1);
    // a dear config, promoted while the index is small; then the index grows to 60,000
    let dear = json!({"ef_construction": 400, "ef_search": 10, "m": 64});
    let (s, t) = app
        .trial(json!({"index_name": "big", "harness": "bh", "config": dear}))
        .await;
    assert_eq!(s, StatusCode::OK, "{t:?}");
    let (s, p) = app.promote("big", t["id"].as_str().unwrap(), None).await;
    assert_eq!(s, StatusCode::OK, "{p:?}");
    for part in 1..6 {
        let r = app
            .append(
                "big",
                batch_of(&format!("p{part}-"), 1_000 + (part - 1) * 11_800, 11_800),
            )
            .await;
        assert_eq!(r.0, StatusCode::OK, "{:?}", r.1);
    }
    let (s, acc) = app.activate_async("big").await;
    assert_eq!(s, StatusCode::ACCEPTED, "{acc:?}");
    cancel_mid_build(&app, acc["job_id"].as_str().unwrap()).await;
    // nothing serves
    let (_, index) = app.get_index("big").await;
    assert!(index["active"].is_null(), "{index:?}");
}

/// Waits until job `id` shows a build of a 60,000-row index under way (every row but the
/// first is inserted in rounds), cancels it, and returns the job once it ended: cancelled,
/// with the build stopped short of its rows.
async fn cancel_mid_build(app: &TestApp, id: &str) -> Value {
    let building = app
        .poll_job(id, |j| {
            j["state"] != "running" && j["state"] != "queued" || !j["progress"]["build"].is_null()
        })
        .await;
    let b = &building["progress"]["build"];
    assert_eq!(b["total"], 59_999, "every row but the first: {building}");
    assert!(b["done"].as_u64().unwrap() < 59_999, "{building}");
    assert_eq!(app.cancel_job(id).await.0, StatusCode::OK);
    let end = app
        .poll_job(id, |j| j["state"] != "running" && j["state"] != "queued")
        .await;
    assert_eq!(end["state"], "cancelled", "{end}");
    let stopped = end["progress"]["build"]["done"]
        .as_u64()
        .expect("where the build stopped");
    assert!(stopped < 59_999, "the build stopped short of its rows: {end}");
    end
}
