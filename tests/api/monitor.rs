//! The live recall monitor: settings checked, live recall following the serving generation.

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn monitor_settings_are_checked_and_live_recall_follows_the_serving_generation() {
    let app = TestApp::new().await;
    app.seeded(300).await;
    let (s, m) = app.get_monitor("idx").await;
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
        let r = app.put_monitor("idx", bad.clone()).await;
        assert_eq!(r.0, StatusCode::BAD_REQUEST, "{bad}: {:?}", r.1);
    }
    assert_error(
        &app.put_monitor("nope", json!({"window": 5})).await,
        StatusCode::NOT_FOUND,
        "index_not_found",
    );
    assert_eq!(app.get_monitor("idx").await.1, m, "refusals changed nothing");
    let (s, m) = app
        .put_monitor("idx", json!({"sample_rate": 1.0, "window": 50}))
        .await;
    assert_eq!(
        (s, m),
        (StatusCode::OK, json!({"sample_rate": 1.0, "window": 50}))
    );

    let (_, ix) = app.get_index("idx").await;
    assert_eq!(ix["live"], Value::Null, "nothing sampled yet");
    app.activate("idx").await;
    for i in 0..80 {
        app.search_ok(vec_of(10_000 + i)).await;
    }
    let ix = app
        .wait_for("/vectors/indexes/idx", |v| v["live"]["queries"] == 50)
        .await;
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
    app.activate("idx").await;
    let (_, ix) = app.get_index("idx").await;
    assert_eq!(ix["live"], Value::Null, "{ix:?}");
    app.search_ok(vec_of(20_000)).await;
    let ix = app
        .wait_for("/vectors/indexes/idx", |v| v["live"]["queries"] == 1)
        .await;
    assert_eq!(ix["live"]["generation"], 2);
    // a fold-in of appended rows is a new generation of the same build: the window goes on
    let (s, _) = app.put_refresh("idx", json!({"fold_in_rows": 5})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        app.append("idx", batch_of("fold", 30_000, 6)).await.0,
        StatusCode::OK
    );
    let ix = app
        .wait_for("/vectors/indexes/idx", |v| v["active"]["generation"] == 3)
        .await;
    assert_eq!(ix["live"]["generation"], 2, "{ix}");
    assert_eq!(ix["live"]["queries"], 1, "{ix}");
    app.search_ok(vec_of(20_001)).await;
    let ix = app
        .wait_for("/vectors/indexes/idx", |v| v["live"]["queries"] == 2)
        .await;
    assert_eq!(ix["live"]["generation"], 2);
}
