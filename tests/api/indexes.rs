//! Indexes, vectors, activation and search: lifecycle and errors, all-or-nothing appends,
//! body limits, binary ingest, stored graphs, unknown routes.

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn index_lifecycle_and_errors() {
    let app = TestApp::new().await;
    let (s, body) = app
        .create_index(json!({"name": "a", "dims": 4, "metric": "l2"}))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(
        (body["name"].clone(), body["dims"].clone(), body["metric"].clone()),
        (json!("a"), json!(4), json!("l2"))
    );
    assert_eq!(
        (body["vectors"].clone(), body["active"].clone()),
        (json!(0), Value::Null)
    );

    let dup = app
        .create_index(json!({"name": "a", "dims": 4, "metric": "l2"}))
        .await;
    assert_error(&dup, StatusCode::CONFLICT, "index_exists");
    for (body, code) in [
        (
            json!({"name": "../escape", "dims": 4, "metric": "cosine"}),
            "invalid_name",
        ),
        (
            json!({"name": ".", "dims": 4, "metric": "cosine"}),
            "invalid_name",
        ),
        (
            json!({"name": "b", "dims": 0, "metric": "cosine"}),
            "invalid_dims",
        ),
        (
            json!({"name": "b", "dims": 4097, "metric": "cosine"}),
            "invalid_dims",
        ),
        (
            json!({"name": "b", "dims": 4, "metric": "hamming"}),
            "invalid_metric",
        ),
        (
            json!({"name": "b", "dims": 4, "metric": "l2", "extra": 1}),
            "invalid_body",
        ),
        (json!({"name": "b", "metric": "l2"}), "invalid_body"),
    ] {
        assert_error(&app.create_index(body).await, StatusCode::BAD_REQUEST, code);
    }
    let r = app
        .send_raw(
            "POST",
            "/vectors/indexes",
            Some("application/json"),
            b"{\"name\": ".to_vec(),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_json");
    let r = app
        .send_raw("POST", "/vectors/indexes", Some("text/plain"), b"{}".to_vec())
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_content_type");

    let (s, list) = app.list_indexes().await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        list["indexes"].as_array().unwrap().len(),
        1,
        "refused creates stored nothing"
    );
    assert_eq!(app.get_index("a").await.0, StatusCode::OK);
    assert_error(
        &app.get_index("zz").await,
        StatusCode::NOT_FOUND,
        "index_not_found",
    );
    assert_error(
        &app.get_index("..").await,
        StatusCode::BAD_REQUEST,
        "invalid_name",
    );
    assert_eq!(app.delete_index("a").await.0, StatusCode::NO_CONTENT);
    assert_error(
        &app.get_index("a").await,
        StatusCode::NOT_FOUND,
        "index_not_found",
    );
    assert_error(
        &app.delete_index("a").await,
        StatusCode::NOT_FOUND,
        "index_not_found",
    );
}

#[tokio::test]
async fn append_is_all_or_nothing() {
    let app = TestApp::new().await;
    app.seeded(5).await;
    let ok = |id: &str| json!({"id": id, "vector": [1.0, 0, 0, 0, 0, 0, 0, 0]});
    let cases = [
        (json!({"vectors": []}), "empty_batch"),
        (
            json!({"vectors": [ok("n1"), {"id": "n2", "vector": [1.0]}]}),
            "dimension_mismatch",
        ),
        (json!({"vectors": [ok("n1"), ok("n1")]}), "duplicate_id"),
        (json!({"vectors": [ok("n1"), ok("v0")]}), "duplicate_id"),
        (
            json!({"vectors": [{"id": "n1", "vector": [0.0, 0, 0, 0, 0, 0, 0, 0]}]}),
            "zero_vector",
        ),
        (json!({"vectors": [ok("")]}), "invalid_id"),
        (json!({"vectors": [ok("n1")], "more": true}), "invalid_body"),
    ];
    for (body, code) in cases {
        let r = app.append("idx", body).await;
        assert_error(&r, StatusCode::BAD_REQUEST, code);
    }
    // 1e39 overflows f32 to infinity: refused as non-finite
    let raw = br#"{"vectors": [{"id": "big", "vector": [1e39, 0, 0, 0, 0, 0, 0, 0]}]}"#.to_vec();
    let r = app
        .send_raw(
            "POST",
            "/vectors/indexes/idx/vectors",
            Some("application/json"),
            raw,
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "non_finite_value");
    let raw = br#"{"vectors": [{"id": "y", "vector": [NaN"#.to_vec();
    let r = app
        .send_raw(
            "POST",
            "/vectors/indexes/idx/vectors",
            Some("application/json"),
            raw,
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_json");
    assert_eq!(app.get_index("idx").await.1["vectors"], 5);

    let r = app.append("idx", json!({"vectors": [ok("n1"), ok("n2")]})).await;
    assert_eq!(r, (StatusCode::OK, json!({"appended": 2, "total": 7})));
    let r = app.append("nope", json!({"vectors": [ok("n1")]})).await;
    assert_error(&r, StatusCode::NOT_FOUND, "index_not_found");
}

#[tokio::test]
async fn body_limit_answers_413_in_json() {
    let app = TestApp::with_limit(512).await;
    seeded_small(&app).await;
    let vectors: Vec<Value> = (0..40)
        .map(|i| json!({"id": format!("x{i}"), "vector": [1.0, 2.0]}))
        .collect();
    let r = app.append("s", json!({ "vectors": vectors })).await;
    assert_error(&r, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    assert_eq!(app.get_index("s").await.1["vectors"], 0);
}

async fn seeded_small(app: &TestApp) {
    let r = app
        .create_index(json!({"name": "s", "dims": 2, "metric": "l2"}))
        .await;
    assert_eq!(r.0, StatusCode::CREATED);
}

#[tokio::test]
async fn activation_and_search() {
    let app = TestApp::new().await;
    app.seeded(40).await;
    let q = json!({"vector": vec_of(7), "k": 3});
    assert_error(
        &app.search("idx", q.clone()).await,
        StatusCode::CONFLICT,
        "not_active",
    );

    let (s, a) = app.activate("idx").await;
    assert_eq!(s, StatusCode::OK, "{a:?}");
    assert_eq!(a["generation"], 1);
    assert_eq!(a["index_name"], "idx");
    assert_eq!(
        a["config"],
        json!({"ef_construction": 80, "ef_search": 30, "m": 16, "seed": 42, "quantization": "none"})
    );
    assert!(a["build_time_secs"].as_f64().unwrap() >= 0.0);

    let (s, r) = app.search("idx", q.clone()).await;
    assert_eq!(s, StatusCode::OK, "{r:?}");
    let hits = r["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 3);
    assert_eq!(hits[0]["id"], "v7");
    let d: Vec<f64> = hits.iter().map(|h| h["distance"].as_f64().unwrap()).collect();
    assert!(d.windows(2).all(|w| w[0] <= w[1]), "ascending distances {d:?}");
    assert_eq!(r["generation"], 1);

    let (_, i) = app.get_index("idx").await;
    assert_eq!(i["active"]["generation"], 1);
    assert_eq!(i["active"]["config"]["ef_construction"], 80);
    let (_, a2) = app.activate("idx").await;
    assert_eq!(a2["generation"], 2);

    let (s, r) = app
        .search("idx", json!({"vector": vec_of(7), "k": 50, "ef_search": 10}))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        r["hits"].as_array().unwrap().len(),
        40,
        "at most k hits, at most every vector"
    );
    assert_eq!(r["ef_search_used"], 50);

    for (body, code) in [
        (json!({"vector": vec_of(1), "k": 0}), "invalid_k"),
        (json!({"vector": vec_of(1), "k": 1001}), "invalid_k"),
        (
            json!({"vector": vec_of(1), "k": 5, "ef_search": 5}),
            "invalid_config",
        ),
        (
            json!({"vector": vec_of(1), "k": 5, "ef_search": 201}),
            "invalid_config",
        ),
        (json!({"vector": [1.0, 2.0], "k": 5}), "invalid_query"),
        (json!({"vector": vec![0.0f32; 8], "k": 5}), "invalid_query"),
        (json!({"k": 5}), "invalid_body"),
    ] {
        assert_error(&app.search("idx", body).await, StatusCode::BAD_REQUEST, code);
    }
    assert_error(
        &app.search("nope", q).await,
        StatusCode::NOT_FOUND,
        "index_not_found",
    );
    assert_error(
        &app.activate("nope").await,
        StatusCode::NOT_FOUND,
        "index_not_found",
    );
    seeded_small(&app).await;
    assert_error(&app.activate("s").await, StatusCode::CONFLICT, "index_empty");
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let app = TestApp::new().await;
    assert_error(
        &app.request("GET", "/nope", None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &app.request("PUT", "/health", None).await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
}

#[tokio::test]
async fn stored_graphs_are_reused_checked_and_collected() {
    use vectune::http::{router, RouterLimits};
    use vectune::service::Vectune;
    use vectune::storage::{keys, Storage};
    let service = Vectune::open(Storage::in_memory(), 1, vectune::hnsw::BuildOptions::all_cores())
        .await
        .unwrap();
    let storage = service.storage().clone();
    let app = TestApp::of(router(
        service,
        RouterLimits {
            max_body_bytes: 1 << 20,
            max_binary_body_bytes: 1 << 20,
            max_ingest_bytes_in_flight: 2 << 20,
        },
    ));
    app.seeded(200).await;
    let (_, a) = app.activate("idx").await;
    assert_eq!(
        (a["generation"].clone(), a["loaded_from_store"].clone()),
        (json!(1), json!(false))
    );
    let (_, a) = app.activate("idx").await;
    assert_eq!(
        (a["generation"].clone(), a["loaded_from_store"].clone()),
        (json!(2), json!(true))
    );

    // a damaged graph is never loaded: the activation rebuilds and stores a sound one
    let idx = vectune::names::IndexName::parse("idx").unwrap();
    let graphs = storage.list(&keys::graphs(&idx)).await.unwrap();
    assert_eq!(graphs.len(), 1);
    let mut bytes = storage.get(&graphs[0]).await.unwrap().unwrap().to_vec();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    storage.put_overwrite(&graphs[0], bytes.into()).await.unwrap();
    let (_, a) = app.activate("idx").await;
    assert_eq!(a["loaded_from_store"], false, "{a:?}");
    let (s, r) = app.search("idx", json!({"vector": vec_of(9), "k": 1})).await;
    assert_eq!((s, r["hits"][0]["id"].clone()), (StatusCode::OK, json!("v9")));
    let (_, a) = app.activate("idx").await;
    assert_eq!(a["loaded_from_store"], true, "the rebuilt graph was stored");

    // growth: a new graph is built and the old one, which can never serve again, is deleted
    let r = app
        .append("idx", json!({"vectors": [{"id": "late", "vector": vec_of(999)}]}))
        .await;
    assert_eq!(r.0, StatusCode::OK);
    let (_, a) = app.activate("idx").await;
    assert_eq!(
        (a["loaded_from_store"].clone(), a["vectors"].clone()),
        (json!(false), json!(201))
    );
    let graphs = storage.list(&keys::graphs(&idx)).await.unwrap();
    assert_eq!(graphs.len(), 1);
    assert_eq!(keys::graph_vectors_of(&graphs[0]), Some(201));
}

#[tokio::test]
async fn binary_ingest_assigns_row_ids_and_refuses_bad_bodies_whole() {
    let app = TestApp::new().await; // binary limit 4096 bytes
    let r = app
        .create_index(json!({"name": "b", "dims": 2, "metric": "l2"}))
        .await;
    assert_eq!(r.0, StatusCode::CREATED);
    let fvecs = |rows: &[[f32; 2]]| -> Vec<u8> {
        let mut out = Vec::new();
        for r in rows {
            out.extend_from_slice(&2i32.to_le_bytes());
            r.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
        }
        out
    };
    let octet = Some("application/octet-stream");
    let r = app
        .send_raw(
            "POST",
            "/vectors/indexes/b/vectors?format=fvecs",
            octet,
            fvecs(&[[1.0, 2.0], [3.0, 4.0]]),
        )
        .await;
    assert_eq!(
        r,
        (
            StatusCode::OK,
            json!({"appended": 2, "total": 2, "first_id": "0", "last_id": "1"})
        )
    );
    for (uri, body, code) in [
        (
            "/vectors/indexes/b/vectors?format=csv",
            fvecs(&[[1.0, 2.0]]),
            "invalid_format",
        ),
        (
            "/vectors/indexes/b/vectors?format=fvecs",
            Vec::new(),
            "invalid_binary_body",
        ),
        (
            "/vectors/indexes/b/vectors?format=fvecs",
            fvecs(&[[1.0, f32::NAN]]),
            "non_finite_value",
        ),
        (
            "/vectors/indexes/b/vectors?format=npy",
            fvecs(&[[1.0, 2.0]]),
            "invalid_binary_body",
        ),
    ] {
        assert_error(
            &app.send_raw("POST", uri, octet, body).await,
            StatusCode::BAD_REQUEST,
            code,
        );
    }
    let big = fvecs(&vec![[1.0, 2.0]; 400]); // 4,800 bytes over the 4,096 limit
    assert_error(
        &app.send_raw("POST", "/vectors/indexes/b/vectors?format=fvecs", octet, big)
            .await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );
    // an assigned id that JSON took already refuses the batch, and uses no id up
    let r = app
        .append("b", json!({"vectors": [{"id": "3", "vector": [0.5, 0.5]}]}))
        .await;
    assert_eq!(r.0, StatusCode::OK);
    let r = app
        .send_raw(
            "POST",
            "/vectors/indexes/b/vectors?format=fvecs",
            octet,
            fvecs(&[[1.0, 1.0]]),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "duplicate_id");
    assert_eq!(app.get_index("b").await.1["vectors"], 3);
    let r = app
        .send_raw(
            "POST",
            "/vectors/indexes/nope/vectors?format=fvecs",
            octet,
            fvecs(&[[1.0, 1.0]]),
        )
        .await;
    assert_error(&r, StatusCode::NOT_FOUND, "index_not_found");
}

/// Binary uploads are admitted by their bytes in flight (this app: 4 KiB a body, 8 KiB in
/// flight): two slow uploads that declare 4 KiB each fill the budget, a third is `503
/// overloaded` with `Retry-After` before a byte of it is read and stores nothing; once one
/// finishes, the third is admitted.
#[tokio::test]
async fn binary_uploads_are_admitted_by_bytes_in_flight() {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;
    let app = TestApp::new().await;
    let r = app
        .create_index(json!({"name": "b", "dims": 2, "metric": "l2"}))
        .await;
    assert_eq!(r.0, StatusCode::CREATED);
    let row = |x: f32| -> Vec<u8> {
        let mut out = 2i32.to_le_bytes().to_vec();
        out.extend_from_slice(&x.to_le_bytes());
        out.extend_from_slice(&(x + 1.0).to_le_bytes());
        out
    };
    // an upload whose body arrives only when the test says so
    let slow = |x: f32| {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let body = row(x);
        let stream = futures::stream::once(async move {
            rx.await.ok();
            Ok::<_, std::io::Error>(bytes::Bytes::from(body))
        });
        let req = Request::builder()
            .method("POST")
            .uri("/vectors/indexes/b/vectors?format=fvecs")
            .header("content-type", "application/octet-stream")
            .header("content-length", "4096")
            .body(Body::from_stream(stream))
            .unwrap();
        let router = app.router.clone();
        (
            tx,
            tokio::spawn(async move { router.oneshot(req).await.unwrap() }),
        )
    };
    let (go_a, a) = slow(1.0);
    let (go_b, b) = slow(5.0);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let octet = Some("application/octet-stream");
    let url = "/vectors/indexes/b/vectors?format=fvecs";
    let (s, r) = app.send_raw("POST", url, octet, row(9.0)).await;
    assert_error(&(s, r), StatusCode::SERVICE_UNAVAILABLE, "overloaded");
    let resp = app
        .router
        .clone()
        .oneshot(
            Request::builder()
                .method("POST")
                .uri(url)
                .header("content-type", "application/octet-stream")
                .body(Body::from(row(9.0)))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(resp.headers().contains_key("retry-after"));
    assert_eq!(app.get_index("b").await.1["vectors"], json!(0), "nothing stored");
    // one finishes: its bytes are given back and the next upload is admitted
    go_a.send(()).ok();
    assert_eq!(a.await.unwrap().status(), StatusCode::OK);
    let (s, r) = app.send_raw("POST", url, octet, row(9.0)).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    go_b.send(()).ok();
    assert_eq!(b.await.unwrap().status(), StatusCode::OK);
    assert_eq!(app.get_index("b").await.1["vectors"], json!(3));
}

/// A binary body is parsed as it arrives, in whatever frames it comes: rows and headers
/// split across frames append whole; a body that grows past the binary limit without a
/// declared length is `413` once it does, and one that breaks off (the client went away
/// mid-upload) or ends inside a row is `400`: nothing stored in any of them.
#[tokio::test]
async fn binary_bodies_stream_in_any_frames_and_a_cut_one_stores_nothing() {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;
    let app = TestApp::new().await;
    for (name, dims) in [("s", 3), ("n", 3)] {
        let r = app
            .create_index(json!({"name": name, "dims": dims, "metric": "l2"}))
            .await;
        assert_eq!(r.0, StatusCode::CREATED);
    }
    let fvecs = |rows: std::ops::Range<usize>| -> Vec<u8> {
        let mut out = Vec::new();
        for i in rows {
            out.extend_from_slice(&3i32.to_le_bytes());
            for d in 0..3 {
                out.extend_from_slice(&((i * 3 + d) as f32).to_le_bytes());
            }
        }
        out
    };
    let npy = |rows: std::ops::Range<usize>| -> Vec<u8> {
        let n = rows.len();
        let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({n}, 3), }}");
        let pad = (64 - (10 + dict.len() + 1) % 64) % 64;
        let header = format!("{dict}{}\n", " ".repeat(pad));
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        for i in rows {
            for d in 0..3 {
                out.extend_from_slice(&((i * 3 + d) as f32).to_le_bytes());
            }
        }
        out
    };
    // frames of `sizes` bytes in turn, then (if `fail`) a broken stream
    let send = |index: &str, format: &str, body: Vec<u8>, sizes: Vec<usize>, fail: bool, length: bool| {
        let mut frames: Vec<Result<bytes::Bytes, std::io::Error>> = Vec::new();
        let mut at = 0;
        let mut k = 0;
        while at < body.len() {
            let n = sizes[k % sizes.len()].min(body.len() - at);
            frames.push(Ok(bytes::Bytes::copy_from_slice(&body[at..at + n])));
            at += n;
            k += 1;
        }
        if fail {
            frames.push(Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "client went away",
            )));
        }
        let mut req = Request::builder()
            .method("POST")
            .uri(format!("/vectors/indexes/{index}/vectors?format={format}"))
            .header("content-type", "application/octet-stream");
        if length {
            req = req.header("content-length", body.len().to_string());
        }
        let req = req
            .body(Body::from_stream(futures::stream::iter(frames)))
            .unwrap();
        let router = app.router.clone();
        async move {
            let resp = router.oneshot(req).await.unwrap();
            let status = resp.status();
            let bytes = http_body_util::BodyExt::collect(resp.into_body())
                .await
                .unwrap()
                .to_bytes();
            (
                status,
                serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null),
            )
        }
    };
    // frames of 1, 5 and 7 bytes: every row and the npy header split across frames
    let (s, r) = send("s", "fvecs", fvecs(0..20), vec![1, 5, 7], false, true).await;
    assert_eq!((s, r["appended"].clone()), (StatusCode::OK, json!(20)), "{r}");
    let (s, r) = send("n", "npy", npy(0..20), vec![3, 11, 2], false, false).await;
    assert_eq!((s, r["appended"].clone()), (StatusCode::OK, json!(20)), "{r}");
    for index in ["s", "n"] {
        assert_eq!(app.get_index(index).await.1["vectors"], json!(20));
    }
    // refused, nothing stored: past the limit with no declared length (4,096 B here), cut off
    // by the client, ending inside a row, or a header that lies about its rows
    let big = fvecs(0..300); // 4,800 bytes
    let r = send("s", "fvecs", big, vec![1000], false, false).await;
    assert_error(&r, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    let r = send("s", "fvecs", fvecs(20..40), vec![16], true, true).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_binary_body");
    let mut cut = fvecs(20..40);
    cut.truncate(cut.len() - 5);
    let r = send("s", "fvecs", cut, vec![9], false, false).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_binary_body");
    let r = send("n", "npy", npy(20..40), vec![64], true, false).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_binary_body");
    let mut short = npy(20..40);
    short.truncate(short.len() - 12);
    let r = send("n", "npy", short, vec![50], false, false).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_binary_body");
    for index in ["s", "n"] {
        assert_eq!(
            app.get_index(index).await.1["vectors"],
            json!(20),
            "{index}: nothing stored"
        );
    }
    // an unknown index or format is refused before the body is read
    let r = send("nope", "fvecs", fvecs(0..2), vec![8], false, true).await;
    assert_error(&r, StatusCode::NOT_FOUND, "index_not_found");
    let r = send("s", "csv", fvecs(0..2), vec![8], false, true).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_format");
}
