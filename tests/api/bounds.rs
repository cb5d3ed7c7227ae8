//! The bounds of configs as server settings (`[tuning]`): the seed's by default, raised by a
//! server that needs wider beams or more links; out of them is a 400 that changes nothing,
//! and a config stored under raised bounds stays readable by a server with the seed's.

use axum::http::StatusCode;
use serde_json::json;

use crate::helpers::*;
use vectune::http::{router, RouterLimits};
use vectune::params::Bounds;
use vectune::service::{ServiceOptions, Vectune};
use vectune::storage::Storage;

async fn app_over(storage: Storage, bounds: Bounds) -> TestApp {
    let options = ServiceOptions {
        bounds,
        ..ServiceOptions::default()
    };
    let service = Vectune::open_with(storage, options).await.unwrap();
    TestApp::of(router(
        service,
        RouterLimits {
            max_body_bytes: 1 << 20,
            max_binary_body_bytes: 4096,
            max_ingest_bytes_in_flight: 2 * 4096,
        },
    ))
}

async fn trial_count(app: &TestApp) -> usize {
    let (s, t) = app.trials("idx", "").await;
    assert_eq!(s, StatusCode::OK, "{t:?}");
    t["trials"].as_array().map_or(0, Vec::len)
}

#[tokio::test]
async fn configs_are_held_to_the_servers_bounds_and_stored_ones_read_back_anywhere() {
    let storage = Storage::in_memory();
    let seed = app_over(storage.clone(), Bounds::SEED).await;
    seed.seeded(60).await;
    seed.autogen("h", 8, 5).await;

    // the seed's bounds: past them a 400 naming the bound, nothing journaled
    let wide = json!({"ef_construction": 500, "ef_search": 300, "m": 96});
    let r = seed
        .trial(json!({"index_name": "idx", "harness": "h", "config": wide}))
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_config");
    assert!(
        r.1["error"]["message"].as_str().unwrap().contains("10..=400"),
        "{:?}",
        r.1
    );
    let r = seed
        .autotune(json!({"index_name": "idx", "harness": "h", "grid": [wide]}))
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "no_usable_config");
    assert_eq!(trial_count(&seed).await, 0);

    // a server with raised bounds: the same config is a trial, a grid may hold it
    let bounds = Bounds::raised(600, 800, 96).unwrap();
    let raised = app_over(storage.clone(), bounds).await;
    let (s, t) = raised
        .trial(json!({"index_name": "idx", "harness": "h", "config": wide}))
        .await;
    assert_eq!(s, StatusCode::OK, "{t:?}");
    assert_eq!(
        (
            t["config"]["ef_construction"].clone(),
            t["config"]["ef_search"].clone(),
            t["config"]["m"].clone()
        ),
        (json!(500), json!(300), json!(96))
    );
    // still bounded: one past each raised bound is refused, nothing journaled
    for (bad, field) in [
        (json!({"ef_construction": 80, "ef_search": 801}), "10..=800"),
        (json!({"ef_construction": 601, "ef_search": 30}), "10..=600"),
        (json!({"ef_construction": 80, "ef_search": 30, "m": 97}), "4..=96"),
    ] {
        let r = raised
            .trial(json!({"index_name": "idx", "harness": "h", "config": bad}))
            .await;
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_config");
        assert!(
            r.1["error"]["message"].as_str().unwrap().contains(field),
            "{:?}",
            r.1
        );
    }
    assert_eq!(trial_count(&raised).await, 1);

    // an autotune reports the bounds it ran within and the best recall it saw
    let (s, a) = raised
        .autotune(json!({"index_name": "idx", "harness": "h", "promote": "never",
            "grid": [{"ef_construction": 40, "ef_search": 250}, {"ef_construction": 40, "ef_search": 900}]}))
        .await;
    assert_eq!(s, StatusCode::OK, "{a:?}");
    assert_eq!(
        a["bounds"],
        json!({"max_ef_search": 800, "max_ef_construction": 600, "max_m": 96})
    );
    assert_eq!(a["trials_run"], 1);
    assert!(
        a["skipped"][0]
            .as_str()
            .unwrap()
            .starts_with("grid[1]: ef_search"),
        "{a:?}"
    );
    let best = a["best_recall"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&best), "{a:?}");

    // the wide trial promoted and served; a search may ask for ef up to the raised bound
    let id = t["id"].as_str().unwrap();
    assert_eq!(raised.promote("idx", id, None).await.0, StatusCode::OK);
    let (s, r) = raised.activate("idx").await;
    assert_eq!(s, StatusCode::OK, "{r:?}");
    let q = vec_of(3);
    let (s, r) = raised
        .search("idx", json!({"vector": q, "k": 5, "ef_search": 700}))
        .await;
    assert_eq!(s, StatusCode::OK, "{r:?}");
    let r = raised
        .search("idx", json!({"vector": q, "k": 5, "ef_search": 801}))
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_config");

    // a server with the seed's bounds over the same store reads the stored wide config,
    // serves it, and holds a search's own ef_search to its bounds
    let back = app_over(storage, Bounds::SEED).await;
    let (s, p) = back.promoted("idx").await;
    assert_eq!(s, StatusCode::OK, "{p:?}");
    assert_eq!(p["current"]["config"]["ef_search"], 300, "{p:?}");
    let (s, r) = back.activate("idx").await;
    assert_eq!(s, StatusCode::OK, "{r:?}");
    let (s, r) = back.search("idx", json!({"vector": q, "k": 5})).await;
    assert_eq!(s, StatusCode::OK, "{r:?}");
    assert_eq!(r["config"]["ef_search"], 300, "{r:?}");
    let r = back
        .search("idx", json!({"vector": q, "k": 5, "ef_search": 300}))
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_config");
}
