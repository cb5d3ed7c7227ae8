//! Fresh writes: appends found at once, deletes (one and many), upserts, the refresh rule,
//! and every refusal leaving the index as it was.

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

/// The ids of a search's hits.
fn ids(r: &Value) -> Vec<String> {
    r["hits"]
        .as_array()
        .map(|h| {
            h.iter()
                .map(|x| x["id"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

async fn top(app: &TestApp, v: Vec<f32>, k: usize) -> Vec<String> {
    let (s, r) = app.search("idx", json!({"vector": v, "k": k})).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    ids(&r)
}

#[tokio::test]
async fn appends_deletes_and_upserts_are_seen_by_the_next_search() {
    let app = TestApp::new().await;
    app.seeded(60).await;
    assert_eq!(app.activate("idx").await.0, StatusCode::OK);
    // an append is found at once, by its own vector, without an activation
    let fresh = vec_of(1000);
    let (s, r) = app
        .append("idx", json!({"vectors": [{"id": "new", "vector": fresh}]}))
        .await;
    assert_eq!((s, r["total"].clone()), (StatusCode::OK, json!(61)));
    assert_eq!(top(&app, fresh.clone(), 3).await[0], "new");
    let (_, index) = app.get_index("idx").await;
    assert_eq!(index["active"]["fresh"], json!({"inserted": 1, "deleted": 0}));
    assert_eq!(index["active"]["vectors"], json!(60));

    // one delete: 204, then never returned; again: 404
    assert_eq!(app.delete_vector("idx", "new").await.0, StatusCode::NO_CONTENT);
    assert!(!top(&app, fresh.clone(), 10).await.contains(&"new".to_string()));
    assert_error(
        &app.delete_vector("idx", "new").await,
        StatusCode::NOT_FOUND,
        "vector_not_found",
    );
    assert_error(
        &app.delete_vector("nope", "v1").await,
        StatusCode::NOT_FOUND,
        "index_not_found",
    );

    // many: all or none
    let before = app.get_index("idx").await.1["vectors"].clone();
    let v3 = top(&app, vec_of(3), 5).await;
    for (body, code) in [
        (json!({"ids": []}), "empty_batch"),
        (json!({"ids": ["v1", "v1"]}), "duplicate_id"),
        (json!({"ids": ["v1", "missing"]}), "unknown_id"),
        (json!({"ids": ["v1"], "extra": 1}), "invalid_body"),
        (json!({"ids": "v1"}), "invalid_body"),
        (json!({}), "invalid_body"),
    ] {
        assert_error(
            &app.delete_vectors("idx", body).await,
            StatusCode::BAD_REQUEST,
            code,
        );
    }
    assert_eq!(
        app.get_index("idx").await.1["vectors"],
        before,
        "a refusal deleted something"
    );
    assert_eq!(top(&app, vec_of(3), 5).await, v3);
    let (s, r) = app.delete_vectors("idx", json!({"ids": ["v1", "v3"]})).await;
    assert_eq!((s, r), (StatusCode::OK, json!({"deleted": 2, "total": 58})));
    for i in [1, 3] {
        let found = top(&app, vec_of(i), 10).await;
        assert!(
            !found.contains(&format!("v{i}")),
            "a deleted id returned: {found:?}"
        );
        assert_eq!(found.len(), 10);
    }
    let (_, index) = app.get_index("idx").await;
    assert_eq!(index["vectors"], json!(58));
    assert_eq!(index["active"]["fresh"], json!({"inserted": 1, "deleted": 3}));

    // an id that is the bulk route's last segment is deleted by its own DELETE too
    let (s, _) = app
        .append(
            "idx",
            json!({"vectors": [{"id": "delete", "vector": vec_of(4000)}]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(app.delete_vector("idx", "delete").await.0, StatusCode::NO_CONTENT);
    assert_error(
        &app.delete_vector("idx", "delete").await,
        StatusCode::NOT_FOUND,
        "vector_not_found",
    );

    // a deleted id may be appended again
    let (s, _) = app
        .append("idx", json!({"vectors": [{"id": "v1", "vector": vec_of(1)}]}))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(top(&app, vec_of(1), 1).await, vec!["v1"]);

    // upsert: stored ids replaced, new ones appended, one batch; a bad one changes nothing
    let bad = json!({"vectors": [{"id": "v10", "vector": vec_of(2000)}, {"id": "v11", "vector": [1.0]}]});
    assert_error(
        &app.upsert("idx", bad).await,
        StatusCode::BAD_REQUEST,
        "dimension_mismatch",
    );
    assert_eq!(top(&app, vec_of(10), 1).await, vec!["v10"]);
    let (s, r) = app
        .upsert(
            "idx",
            json!({"vectors": [{"id": "v10", "vector": vec_of(2000)}, {"id": "u1", "vector": vec_of(2001)}]}),
        )
        .await;
    assert_eq!((s, r), (StatusCode::OK, json!({"appended": 2, "total": 60})));
    assert_eq!(top(&app, vec_of(2000), 1).await, vec!["v10"]);
    assert!(
        !top(&app, vec_of(10), 3).await.contains(&"v10".to_string()),
        "the old v10 still found"
    );
    // without upsert a stored id is still refused
    let dup = json!({"vectors": [{"id": "v10", "vector": vec_of(5)}]});
    assert_error(
        &app.append("idx", dup).await,
        StatusCode::BAD_REQUEST,
        "duplicate_id",
    );

    // queries are sampled among the vectors stored (ground truth leaving deleted rows
    // out: `harness::ground_truth`'s unit test)
    app.autogen("after", 55, 10).await;
    let (_, h) = app.get_harness("after").await;
    for q in h["queries"].as_array().unwrap() {
        assert!(!["v3", "new"].contains(&q["id"].as_str().unwrap()), "{q}");
    }
}

/// A delete body over the JSON limit is 413 and deletes nothing.
#[tokio::test]
async fn a_delete_body_over_the_limit_is_refused_whole() {
    let app = TestApp::with_limit(4096).await;
    app.seeded(10).await;
    let ids: Vec<String> = (0..1000).map(|i| format!("v{i}")).collect();
    assert_error(
        &app.delete_vectors("idx", json!({ "ids": ids })).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );
    assert_eq!(app.get_index("idx").await.1["vectors"], json!(10));
}

#[tokio::test]
async fn the_refresh_rule_reactivates_by_itself() {
    let app = TestApp::new().await;
    app.seeded(40).await;
    let defaults = json!({"max_fresh_fraction": 0.2, "fold_in_rows": 1000});
    assert_eq!(app.get_refresh("idx").await.1, defaults);
    for (body, code) in [
        (json!({"max_fresh_fraction": 1.5}), "invalid_refresh"),
        (json!({"max_fresh_fraction": -0.1}), "invalid_refresh"),
        (json!({"fold_in_rows": -1}), "invalid_refresh"),
        (json!({"fold_in_rows": 10_000_001}), "invalid_refresh"),
        (
            json!({"max_fresh_fraction": 0.5, "fold_in_rows": -1}),
            "invalid_refresh",
        ),
        (json!({"fold_in_rows": 1.5}), "invalid_body"),
        (json!({"max_fresh_fraction": "x"}), "invalid_body"),
        (json!({"other": 1}), "invalid_body"),
    ] {
        assert_error(&app.put_refresh("idx", body).await, StatusCode::BAD_REQUEST, code);
    }
    assert_error(
        &app.get_refresh("nope").await,
        StatusCode::NOT_FOUND,
        "index_not_found",
    );
    assert_eq!(app.get_refresh("idx").await.1, defaults);
    assert_eq!(app.activate("idx").await.1["generation"], json!(1));
    // 8 writes of 40 is 0.2: not past the rule
    assert_eq!(app.append("idx", batch_of("n", 3000, 8)).await.0, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (_, index) = app.get_index("idx").await;
    assert_eq!(index["active"]["generation"], json!(1));
    assert_eq!(index["active"]["fresh"], json!({"inserted": 8, "deleted": 0}));
    // one more delete passes it: a background re-activation folds every write in
    assert_eq!(app.delete_vector("idx", "v0").await.0, StatusCode::NO_CONTENT);
    let mut index = Value::Null;
    for _ in 0..100 {
        index = app.get_index("idx").await.1;
        if index["active"]["generation"] == json!(2) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(index["active"]["generation"], json!(2), "{index}");
    assert_eq!(index["active"]["fresh"], json!({"inserted": 0, "deleted": 0}));
    assert_eq!(index["active"]["vectors"], json!(47));
    assert!(!top(&app, vec_of(0), 10).await.contains(&"v0".to_string()));
    assert_eq!(top(&app, vec_of(3004), 1).await, vec!["n4"]);
    let (s, r) = app.put_refresh("idx", json!({"max_fresh_fraction": 0.5})).await;
    let half = json!({"max_fresh_fraction": 0.5, "fold_in_rows": 1000});
    assert_eq!((s, r), (StatusCode::OK, half.clone()));
    assert_eq!(app.get_refresh("idx").await.1, half);
}

#[tokio::test]
async fn appended_rows_are_folded_into_the_graph_by_insertion() {
    let app = TestApp::new().await;
    app.seeded(300).await;
    assert_eq!(app.activate("idx").await.1["generation"], json!(1));
    let first = app.get_index("idx").await.1["active"]["config"].clone();
    assert!(first.is_object(), "{first}");
    let (s, r) = app
        .put_refresh("idx", json!({"max_fresh_fraction": 1.0, "fold_in_rows": 20}))
        .await;
    assert_eq!(
        (s, r),
        (
            StatusCode::OK,
            json!({"max_fresh_fraction": 1.0, "fold_in_rows": 20})
        )
    );
    // 19 rows wait in the scan; the 20th starts a fold-in
    for i in 0..25 {
        let v = json!({"vectors": [{"id": format!("f{i}"), "vector": vec_of(5000 + i)}]});
        assert_eq!(app.append("idx", v).await.0, StatusCode::OK);
    }
    // one of them deleted before or after the fold: never returned either way
    assert_eq!(app.delete_vector("idx", "f3").await.0, StatusCode::NO_CONTENT);
    let index = app
        .wait_for("/vectors/indexes/idx", |v| v["active"]["generation"] == 2)
        .await;
    let active = &index["active"];
    assert!(active["vectors"].as_u64().unwrap() >= 300 + 20 - 1, "{index}");
    assert!(active["fresh"]["inserted"].as_u64().unwrap() <= 5, "{index}");
    for i in (0..25).filter(|&i| i != 3) {
        assert_eq!(top(&app, vec_of(5000 + i), 1).await, vec![format!("f{i}")]);
    }
    assert!(!top(&app, vec_of(5003), 10).await.contains(&"f3".to_string()));
    // the graph of generation 1 extended: its config, not a newer promotion's
    assert_eq!(active["config"], first);
    // fold_in_rows 0: the rows wait in the scan, no new generation
    assert_eq!(
        app.put_refresh("idx", json!({"fold_in_rows": 0})).await.0,
        StatusCode::OK
    );
    let before = app.get_index("idx").await.1["active"]["generation"].clone();
    assert_eq!(app.append("idx", batch_of("g", 7000, 40)).await.0, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let index = app.get_index("idx").await.1;
    assert_eq!(index["active"]["generation"], before);
    assert_eq!(top(&app, vec_of(7007), 1).await, vec!["g7"]);
}
