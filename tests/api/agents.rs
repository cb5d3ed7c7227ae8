//! The background agent's routes: settings checked, its first run, disable, closing-the-loop
//! settings, harness refresh.

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn agent_routes_settings_errors_first_run_and_disable() {
    let app = TestApp::new().await;
    app.seeded(300).await;
    app.autogen("h", 20, 10).await;
    let (s, st) = app.get_agent("idx").await;
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
        let r = app.put_agent("idx", body).await;
        assert_eq!(r.0, StatusCode::BAD_REQUEST, "{field}: {r:?}");
    }
    let mut body = good.clone();
    body["harness"] = json!("nope");
    assert_error(
        &app.put_agent("idx", body).await,
        StatusCode::NOT_FOUND,
        "harness_not_found",
    );
    for m in ["GET", "PUT", "DELETE"] {
        let body = (m == "PUT").then(|| good.clone());
        assert_error(
            &app.request(m, "/vectors/hnsw/agent/nope", body).await,
            StatusCode::NOT_FOUND,
            "index_not_found",
        );
    }
    assert_eq!(app.get_agent("idx").await.1["config"], Value::Null);

    let (s, st) = app.put_agent("idx", good.clone()).await;
    assert_eq!(s, StatusCode::OK, "{st:?}");
    assert_eq!(st["config"]["max_trials_per_hour"], 2);
    assert_eq!(st["config"]["objective"], "min_latency");
    assert_ne!(st["state"], "disabled");
    // its first run starts at once (no cooldown first), at most 2 trials
    let mut agent_trials = 0;
    for _ in 0..600 {
        let (_, list) = app.trials("idx", "").await;
        agent_trials = list["trials"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["source"] == "agent")
            .count();
        let st = app.get_agent("idx").await.1;
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
    let p = app.promoted("idx").await.1;
    if !p["current"].is_null() {
        assert_eq!(p["current"]["promoted_by"], "agent");
    }
    let (s, _) = app.delete_agent("idx").await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let st = app.get_agent("idx").await.1;
    assert_eq!(st["state"], "disabled");
    assert_eq!(st["config"]["enabled"], false, "settings kept, disabled");
}

#[tokio::test]
async fn agent_loop_settings_are_checked_and_shown() {
    let app = TestApp::new().await;
    app.seeded(300).await;
    app.autogen("h", 10, 5).await;
    for bad in [
        json!({"harness": "h", "canary_queries": 0}),
        json!({"harness": "h", "canary_queries": -3}),
        json!({"harness": "h", "activate": "yes"}),
        json!({"harness": "h", "refresh_harness": 1}),
    ] {
        let r = app.put_agent("idx", bad.clone()).await;
        assert_eq!(r.0, StatusCode::BAD_REQUEST, "{bad}: {:?}", r.1);
    }
    assert_eq!(
        app.get_agent("idx").await.1["config"],
        Value::Null,
        "refusals stored nothing"
    );
    let (s, a) = app.put_agent("idx", json!({"harness": "h", "enabled": false, "activate": true, "canary_queries": 20, "refresh_harness": false}))
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
    let (_, a) = app
        .put_agent("idx", json!({"harness": "h", "enabled": false}))
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
    let app = TestApp::new().await;
    app.seeded(300).await;
    app.activate("idx").await;
    let (s, _) = app
        .capture_harness(json!({"name": "cap", "index_name": "idx", "queries": 5, "k": 5}))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    for i in 0..5 {
        app.search_ok(vec_of(7000 + i)).await;
    }
    let first = app
        .wait_for("/vectors/harness/cap", |v| v["capture"]["state"] == "complete")
        .await;
    let (s, a) = app
        .put_agent(
            "idx",
            json!({"harness": "cap", "cooldown_secs": 3600, "refresh_harness": true}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{a:?}");
    app.wait_for("/vectors/hnsw/agent/idx", |a| a["runs"] == 1).await;
    // a new capture is under way; the complete queries still serve trials
    let (_, h) = app.get_harness("cap").await;
    assert_eq!(
        h["capture"],
        json!({"state": "capturing", "have": 0, "want": 5}),
        "{h:?}"
    );
    assert_eq!(h["queries"], first["queries"]);
    let trial =
        json!({"index_name": "idx", "harness": "cap", "config": {"ef_construction": 40, "ef_search": 20}});
    assert_eq!(app.trial(trial.clone()).await.0, StatusCode::OK);
    for i in 0..5 {
        app.search_ok(vec_of(8000 + i)).await;
    }
    let h = app
        .wait_for("/vectors/harness/cap", |v| v["capture"]["state"] == "complete")
        .await;
    let v0 = floats(&h["queries"][0]["vector"]);
    assert_eq!(v0, vec_of(8000), "the new window of traffic replaced the old");
    // its ground truth is of the new queries, not the old revision's
    let h = app
        .wait_for("/vectors/harness/cap", |v| v["ground_truth_built"] == true)
        .await;
    let (_, t) = app.trial(trial).await;
    assert_eq!(t["metrics"]["eval_queries"], 5);
    assert_ne!(
        h["queries"][0]["ground_truth"],
        first["queries"][0]["ground_truth"]
    );
    app.delete_agent("idx").await;
}
