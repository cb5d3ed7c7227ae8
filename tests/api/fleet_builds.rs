//! An autotune's builds spread over two services on one in-memory store: the run offers
//! its graphs as leased work items, the other service builds them (its background builder,
//! as in production), the run loads what was built there; a builder that died holding an
//! item is waited out and its item re-leased. Exact claim races and fencing are unit tests
//! in `src/fleet/work.rs`; the real binaries on the S3 server are `tests/fleet.rs`.

use std::time::{Duration, Instant};

use super::helpers::*;
use axum::http::StatusCode;
use serde_json::{json, Value};
use vectune::fleet::{FleetOptions, Holder, LeaseRecord};
use vectune::service::{ServiceOptions, Vectune};
use vectune::storage::{keys, Storage};

/// A short TTL (liveness seen within a third of it) and a fast sync and builder poll.
fn fleet() -> FleetOptions {
    FleetOptions {
        ttl: Duration::from_millis(900),
        sync_interval: Duration::from_millis(50),
        detect_local_dead: true,
    }
}

async fn open(storage: &Storage) -> Vectune {
    let options = ServiceOptions {
        fleet: fleet(),
        build_options: vectune::hnsw::BuildOptions {
            threads: 1,
            ..vectune::hnsw::BuildOptions::all_cores()
        },
        ..ServiceOptions::default()
    };
    Vectune::open_with(storage.clone(), options).await.unwrap()
}

fn app(v: Vectune) -> TestApp {
    TestApp::of(vectune::http::router(
        v,
        vectune::http::RouterLimits {
            max_body_bytes: 8 << 20,
            max_binary_body_bytes: 4096,
            max_ingest_bytes_in_flight: 2 * 4096,
        },
    ))
}

/// Six graphs of about one build's cost each, two ef_search apiece.
fn grid() -> Vec<Value> {
    [(16, 120), (24, 80), (12, 160), (20, 96), (32, 60), (40, 48)]
        .iter()
        .flat_map(|&(m, ec)| [40, 80].map(|ef| json!({"m": m, "ef_construction": ec, "ef_search": ef})))
        .collect()
}

/// Stored graphs of "idx", as keys.
async fn stored_graphs(storage: &Storage) -> Vec<String> {
    let ix = vectune::names::IndexName::parse("idx").unwrap();
    let graphs = storage.list(&keys::graphs(&ix)).await.unwrap();
    graphs.iter().map(|k| k.to_string()).collect()
}

async fn items_left(storage: &Storage) -> usize {
    let ix = vectune::names::IndexName::parse("idx").unwrap();
    storage.list(&keys::builds(&ix)).await.unwrap().len()
}

/// The folder of the item a run offers last (it needs it last), once all six are offered.
async fn last_offer(storage: &Storage, started: Instant) -> object_store::path::Path {
    let ix = vectune::names::IndexName::parse("idx").unwrap();
    let last = loop {
        let items: Vec<_> = storage
            .list(&keys::builds(&ix))
            .await
            .unwrap()
            .into_iter()
            .filter(|k| k.filename() == Some("item.json"))
            .collect();
        if items.len() == 6 {
            let mut best = None;
            for k in items {
                let item: vectune::fleet::BuildItem = storage.get_json(&k).await.unwrap().unwrap();
                if best.as_ref().is_none_or(|(s, _)| item.seq > *s) {
                    best = Some((item.seq, k));
                }
            }
            break best.unwrap().1;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "offers not seen");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    keys::build_item_of(&last)
}

/// A service on `storage` with 3,000 rows and a harness, beside a peer that is alive (its
/// record renewed) but builds nothing, so the run offers its graphs; the peer's heartbeat.
async fn with_idle_peer(storage: &Storage) -> (TestApp, tokio::task::JoinHandle<()>) {
    let va = open(storage).await;
    let a = app(va.clone());
    a.seeded(3000).await;
    a.autogen("h", 20, 10).await;
    let peer = vectune::fleet::Fleet::new(storage.clone(), fleet());
    let beat = tokio::spawn(async move {
        loop {
            peer.heartbeat(Default::default()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    (a, beat)
}

/// The record of a claim another (planted) builder holds at epoch 1, live until `expires_at`.
fn planted_claim(expires_at: chrono::DateTime<chrono::Utc>, status: Option<&str>) -> LeaseRecord {
    LeaseRecord {
        epoch: 1,
        holder: Holder::current(uuid::Uuid::now_v7()),
        acquired_at: chrono::Utc::now(),
        renewed_at: chrono::Utc::now(),
        expires_at,
        released: false,
        status: status.map(str::to_owned),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_other_service_builds_what_an_autotune_offers_and_the_run_loads_it() {
    let storage = Storage::in_memory();
    let (va, vb) = (open(&storage).await, open(&storage).await);
    let (a, b) = (app(va.clone()), app(vb.clone()));
    a.seeded(4000).await;
    a.autogen("h", 30, 10).await;
    vb.sync_once().await.unwrap();
    assert_eq!(b.get_index("idx").await.1["vectors"], json!(4000));
    // both have seen each other's liveness record
    tokio::time::sleep(Duration::from_millis(700)).await;

    let (s, r) = a
        .autotune(
            json!({"index_name": "idx", "harness": "h", "grid": grid(), "promote": "always",
            "objective": "min_latency", "target_recall": 0.5}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(
        (r["trials_run"].clone(), r["builds"].clone()),
        (json!(12), json!(6)),
        "{r}"
    );
    let elsewhere = r["builds_elsewhere"].as_u64().unwrap();
    assert!(
        (1..=5).contains(&elsewhere),
        "the other service built some, not all: {r}"
    );
    // every trial journaled once, on the run's instance
    assert_eq!(
        a.trials("idx", "").await.1["trials"].as_array().unwrap().len(),
        12
    );
    // the run cleared its items; of the graphs built elsewhere only the winner's may stay
    assert_eq!(items_left(&storage).await, 0);
    let w = &r["winner"]["config"];
    let winner_key = format!("-m{}-ec{}-s", w["m"], w["ef_construction"]);
    let stored = stored_graphs(&storage).await;
    assert!(
        stored.iter().all(|k| k.contains(&winner_key)),
        "{stored:?} vs {w}"
    );
    // activation loads the winner when the other service built it
    let (s, act) = a.activate("idx").await;
    assert_eq!(s, StatusCode::OK, "{act}");
    assert_eq!(
        act["loaded_from_store"],
        json!(!stored.is_empty()),
        "{act} {stored:?}"
    );
}

/// A service beside an idle peer ([`with_idle_peer`]) running the grid autotune as a job:
/// the app, the peer's heartbeat, the job id, the folder of the item it needs last, and when
/// the job started.
async fn offers_beside_an_idle_peer(
    storage: &Storage,
) -> (
    TestApp,
    tokio::task::JoinHandle<()>,
    String,
    object_store::path::Path,
    Instant,
) {
    let (a, beat) = with_idle_peer(storage).await;
    let started = Instant::now();
    let id = start_grid(&a).await;
    let folder = last_offer(storage, started).await;
    (a, beat, id, folder, started)
}

/// Starts the grid autotune as a job on `a`; its id.
async fn start_grid(a: &TestApp) -> String {
    let (s, job) = a
        .autotune_async(
            json!({"index_name": "idx", "harness": "h", "grid": grid(), "promote": "never",
            "objective": "min_latency", "target_recall": 0.5}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    job["job_id"].as_str().unwrap().to_owned()
}

/// The ended job's result, which must have built all six graphs on the run's instance.
async fn built_all_here(a: &TestApp, id: &str) -> Value {
    let ended = a
        .poll_job(id, |j| j["state"] != "running" && j["state"] != "queued")
        .await;
    assert_eq!(ended["state"], "succeeded", "{ended}");
    let r = ended["result"].clone();
    assert_eq!(
        (r["builds"].clone(), r["builds_elsewhere"].clone()),
        (json!(6), json!(0)),
        "{r}"
    );
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_builder_that_died_holding_an_item_is_waited_out_and_its_item_re_leased() {
    let storage = Storage::in_memory();
    // nobody but the planted dead claim takes an item; the last graph the run needs is
    // claimed by a builder that then died (never renewed)
    let (a, beat, id, folder, started) = offers_beside_an_idle_peer(&storage).await;
    let dies_at = chrono::Utc::now() + chrono::Duration::milliseconds(2500);
    storage
        .put_json_new(&keys::build_claim(&folder, 1), &planted_claim(dies_at, None))
        .await
        .unwrap();

    built_all_here(&a, &id).await;
    // the run waited for the dead builder's claim to run out, then built it itself
    let waited = (dies_at - chrono::Utc::now()).num_milliseconds();
    assert!(
        waited <= 0,
        "finished {waited} ms before the dead claim expired (wall {:?})",
        started.elapsed()
    );
    assert_eq!(items_left(&storage).await, 0);
    beat.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_builder_that_renews_its_claim_without_progress_is_not_waited_on() {
    let storage = Storage::in_memory();
    // the last graph the run needs: claimed by a builder that stays alive (renews every
    // 100 ms) but whose build never moves, as a hung build or a busy process would
    let (a, beat, id, folder, _) = offers_beside_an_idle_peer(&storage).await;
    let key = keys::build_claim(&folder, 1);
    let stuck = |expires| planted_claim(expires, Some("built 0 of 3000 rows"));
    let ttl = chrono::Duration::from_std(fleet().ttl).unwrap();
    storage
        .put_json_new(&key, &stuck(chrono::Utc::now() + ttl))
        .await
        .unwrap();
    let renew = {
        let (storage, key) = (storage.clone(), key.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let record = stuck(chrono::Utc::now() + ttl);
                storage.put_json_overwrite(&key, &record).await.unwrap();
            }
        })
    };

    // the claim never expires: the run ended because it stopped waiting and built it
    built_all_here(&a, &id).await;
    assert!(!renew.is_finished(), "the stuck claim was live throughout");
    renew.abort();
    let ix = vectune::names::IndexName::parse("idx").unwrap();
    let left = storage.list(&keys::builds(&ix)).await.unwrap();
    assert!(
        left.iter().all(|k| k.filename() != Some("item.json")),
        "the run withdrew its offers: {left:?}"
    );
    beat.abort();
}
