//! Several instances on one bucket: two (or three) real binaries over one prefix of a real
//! S3-compatible server (`scripts/test.sh` starts moto and includes these ignored tests).
//!
//! moto checks `If-None-Match` and then writes without a lock, so two truly simultaneous
//! creates can both succeed there (real S3 never allows it); the exact races are unit tests
//! on the in-memory store (`src/fleet/tests.rs`). These tests show the fleet's behaviour end
//! to end: what one instance writes the other answers, promotions and appends racing across
//! instances all land, `409 autotune_running` holds across instances, a killed holder is
//! taken over after the TTL, a paused one is fenced, and an activation is served by every
//! instance from the stored graph. Figures are printed (run with `--nocapture`), never
//! asserted on.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

#[path = "api/helpers.rs"]
mod helpers;
use helpers::*;

/// A fresh prefix of the test bucket and the environment that reaches the server.
fn bucket(test: &str) -> (String, String) {
    let url = std::env::var("VECTUNE_TEST_S3_URL").expect("VECTUNE_TEST_S3_URL (scripts/test.sh sets it)");
    let endpoint = std::env::var("VECTUNE_TEST_S3_ENDPOINT")
        .expect("VECTUNE_TEST_S3_ENDPOINT (scripts/test.sh sets it)");
    let url = format!(
        "{}/{test}-{}",
        url.trim_end_matches('/'),
        uuid::Uuid::now_v7().simple()
    );
    (url, endpoint)
}

fn instance(url: &str, endpoint: &str, extra: &[(&str, &str)]) -> TestServer {
    let mut env = vec![
        ("VECTUNE_S3_ENDPOINT", endpoint),
        ("VECTUNE_S3_ALLOW_HTTP", "true"),
    ];
    env.extend_from_slice(extra);
    TestServer::start_url(url, &env)
}

fn signal(s: &TestServer, sig: &str) {
    let pid = s.child.id().to_string();
    assert!(Command::new("kill").args([sig, &pid]).status().unwrap().success());
}

/// Polls `until` on `s`'s answer to GET `path` for up to `secs`; returns the answer and
/// how long it took.
async fn eventually(
    s: &TestServer,
    path: &str,
    secs: u64,
    until: impl Fn(u16, &Value) -> bool,
) -> (Value, Duration) {
    let t = Instant::now();
    loop {
        let (st, v) = s.get(path).await;
        if until(st, &v) {
            return (v, t.elapsed());
        }
        assert!(
            t.elapsed() < Duration::from_secs(secs),
            "{path}: not there after {secs} s: {st} {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

async fn metrics(s: &TestServer) -> String {
    s.client
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
#[ignore = "needs an S3-compatible server: scripts/test.sh starts one"]
async fn what_one_instance_writes_the_other_answers_and_both_serve_one_generation() {
    let (url, endpoint) = bucket("fleet-sync");
    // the default sync interval (2 s); a short TTL so the liveness records (which carry
    // what each instance serves) renew every second
    let env = [("VECTUNE_LEASE_TTL_SECS", "3")];
    let a = instance(&url, &endpoint, &env);
    let b = instance(&url, &endpoint, &env);

    a.new_index("shared", 16, "l2").await;
    let (_, seen_index) = eventually(&b, "/vectors/indexes/shared", 10, |st, _| st == 200).await;
    a.append_range("shared", 0..600, 16).await;
    let (_, seen_append) = eventually(&b, "/vectors/indexes/shared", 10, |_, i| {
        i["vectors"] == json!(600)
    })
    .await;
    // appends racing from both instances all land: the loser of a manifest version
    // adopts the winner's and goes again
    tokio::join!(
        a.append_range("shared", 600..700, 16),
        b.append_range("shared", 700..800, 16)
    );
    eventually(&a, "/vectors/indexes/shared", 10, |_, i| {
        i["vectors"] == json!(800)
    })
    .await;
    eventually(&b, "/vectors/indexes/shared", 10, |_, i| {
        i["vectors"] == json!(800)
    })
    .await;

    b.autogen("h", "shared", 20, 5).await;
    let (st, trial) = a.trial(json!({"index_name": "shared", "harness": "h", "config": {"ef_construction": 40, "ef_search": 40}}))
        .await;
    assert_eq!(st, 200, "a trial on A with B's harness: {trial}");
    let tid = trial["id"].as_str().unwrap().to_string();
    // the journal and the registry are read from the store: at once
    let (st, t) = b.get_trial("shared", &tid).await;
    assert_eq!((st, t["id"].clone()), (200, json!(tid)));

    // concurrent promotes from both instances: every one is in the history
    let promote = |s: &TestServer, who: &str, i: usize| {
        let path = format!("/vectors/hnsw/promote/shared/{tid}?promoted_by={who}&note={who}-{i}");
        let s = s.client.post(format!("{}{path}", s.base));
        async move { s.send().await.unwrap().status().as_u16() }
    };
    let rounds = 8;
    for i in 0..rounds {
        let (x, y) = tokio::join!(promote(&a, "A", i), promote(&b, "B", i));
        assert_eq!((x, y), (200, 200), "round {i}");
    }
    let (_, p) = b.promoted("shared").await;
    let mut notes: Vec<String> = std::iter::once(&p["current"])
        .chain(p["history"].as_array().unwrap())
        .map(|e| e["note"].as_str().unwrap().to_string())
        .collect();
    notes.sort();
    let mut want: Vec<String> = (0..rounds)
        .flat_map(|i| [format!("A-{i}"), format!("B-{i}")])
        .collect();
    want.sort();
    assert_eq!(notes, want, "no promotion lost across instances");
    let (_, pa) = a.promoted("shared").await;
    assert_eq!(pa, p, "both instances answer the same registry at once");

    // agent settings PUT on A show on B
    let (st, _) = a
        .put_agent(
            "shared",
            json!({"harness": "h", "enabled": false, "cooldown_secs": 60}),
        )
        .await;
    assert_eq!(st, 200);
    let (ag, _) = eventually(&b, "/vectors/hnsw/agent/shared", 10, |_, g| {
        !g["config"].is_null()
    })
    .await;
    assert_eq!(ag["config"]["cooldown_secs"], json!(60.0));

    // an activation on A: B serves the same generation from the stored graph
    let t = Instant::now();
    let (st, act) = a.activate("shared").await;
    assert_eq!(st, 200, "{act}");
    let built = t.elapsed();
    let generation = act["generation"].clone();
    let (bi, pickup) = eventually(&b, "/vectors/indexes/shared", 15, |_, i| {
        i["active"]["generation"] == generation
    })
    .await;
    assert_eq!(bi["active"]["config"], act["config"]);
    let (st, hits) = b.search("shared", json!({"vector": vector(3, 16), "k": 3})).await;
    assert_eq!((st, hits["generation"].clone()), (200, generation.clone()));
    assert_eq!(hits["hits"][0]["id"], "v3");
    let mb = metrics(&b).await;
    assert_eq!(
        metric(&mb, "vectune_fleet_activation_pickups_total"),
        1.0,
        "loaded, not rebuilt"
    );
    assert_eq!(
        metric(&mb, r#"vectune_graph_builds_total{purpose="activation"}"#),
        0.0,
        "B built no serving graph"
    );
    assert_eq!(metric(&mb, "vectune_fleet_instances"), 2.0);
    // every instance's /metrics shows the whole fleet on one generation
    let converged = |m: &str| {
        m.lines()
            .filter(|l| l.starts_with("vectune_fleet_serving_generation{") && l.contains(r#"index="shared""#))
            .filter(|l| l.trim_end().ends_with(&format!(" {generation}")))
            .count()
            == 2
    };
    let t = Instant::now();
    while !converged(&metrics(&a).await) {
        assert!(t.elapsed() < Duration::from_secs(15), "{}", metrics(&a).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // fresh writes on one instance are searched on the other within the sync bound:
    // an append, a delete, an upsert the other way round
    let (st, _) = a
        .append(
            "shared",
            json!({"vectors": [{"id": "x1", "vector": vector(5000, 16)}]}),
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(
        top(&a, vector(5000, 16)).await,
        "x1",
        "found at once where it was written"
    );
    let fresh_append = until(&b, vector(5000, 16), "x1", true).await;
    assert_eq!(a.delete_vector("shared", "v3").await.0, 204);
    let fresh_delete = until(&b, vector(3, 16), "v3", false).await;
    let (st, _) = b
        .upsert(
            "shared",
            json!({"vectors": [{"id": "v4", "vector": vector(6000, 16)}]}),
        )
        .await;
    assert_eq!(st, 200);
    until(&a, vector(6000, 16), "v4", true).await;
    until(&a, vector(4, 16), "v4", false).await;
    eprintln!("fresh writes across instances: an append searched on B after {fresh_append:?}, a delete after {fresh_delete:?}");

    // a deletion on A: B answers 404 within the bound
    assert_eq!(
        a.call(reqwest::Method::DELETE, "/vectors/indexes/shared", None)
            .await
            .0,
        204
    );
    let (_, seen_delete) = eventually(&b, "/vectors/indexes/shared", 10, |st, _| st == 404).await;
    eprintln!(
        "fleet sync (sync_secs 2): index seen on B after {seen_index:?}, append after {seen_append:?}, \
         delete after {seen_delete:?}; activation built on A in {built:?}, served by B {pickup:?} after A answered; \
         {} concurrent promotes, 0 lost",
        2 * rounds
    );
    assert!(a.terminate().success());
    assert!(b.terminate().success());
}

/// The id of the top hit of a search of "shared" for `v`.
async fn top(s: &TestServer, v: Vec<f32>) -> String {
    let (st, r) = s.search("shared", json!({"vector": v, "k": 3})).await;
    assert_eq!(st, 200, "{r}");
    r["hits"][0]["id"].as_str().unwrap_or_default().to_string()
}

/// Polls until the top hit for `v` is `want` (or, with `present` false, is not); how long.
async fn until(s: &TestServer, v: Vec<f32>, want: &str, present: bool) -> Duration {
    let t = Instant::now();
    loop {
        if (top(s, v.clone()).await == want) == present {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{want} (present: {present}) not seen"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A slow async autotune on `s` (a few seconds of builds on two cores).
async fn long_autotune(s: &TestServer) -> (u16, Value) {
    let grid: Vec<Value> = (0..12)
        .map(|i| json!({"ef_construction": 200 + 10 * i, "ef_search": 40 + i, "m": 32}))
        .collect();
    s.autotune_async(json!({"index_name": "tuned", "harness": "th", "grid": grid, "promote": "always"}))
        .await
}

async fn seed_tuned(s: &TestServer) {
    s.new_index("tuned", 32, "l2").await;
    s.append_fvecs("tuned", 0, 4000, 32).await;
    s.autogen("th", "tuned", 30, 10).await;
}

/// A 3 s TTL, judged by expiry only (every instance of these tests runs on this machine,
/// where a dead process would otherwise be recognised at once).
const SHORT_TTL: [(&str, &str); 3] = [
    ("VECTUNE_LEASE_TTL_SECS", "3"),
    ("VECTUNE_FLEET_SYNC_SECS", "0.5"),
    ("VECTUNE_DETECT_LOCAL_DEAD", "false"),
];

/// Two instances with a 3 s TTL that judge each other's death only by it (both run on
/// this machine) and an index both see ([`seed_tuned`] on the first).
async fn seeded_pair(test: &str) -> (TestServer, TestServer) {
    let (url, endpoint) = bucket(test);
    let a = instance(&url, &endpoint, &SHORT_TTL);
    let b = instance(&url, &endpoint, &SHORT_TTL);
    seed_tuned(&a).await;
    eventually(&b, "/vectors/indexes/tuned", 10, |_, i| {
        i["vectors"] == json!(4000)
    })
    .await;
    (a, b)
}

/// [`seeded_pair`] with a long autotune job running on the first.
async fn holder_and_standby(test: &str) -> (TestServer, TestServer, String) {
    let (a, b) = seeded_pair(test).await;
    let (st, j) = long_autotune(&a).await;
    assert_eq!(st, 202, "{j}");
    let job = j["job_id"].as_str().unwrap().to_string();
    eventually(&a, &format!("/vectors/jobs/{job}"), 30, |_, j| {
        j["state"] == "running"
    })
    .await;
    (a, b, job)
}

/// POSTs `body` to `path` on `s` until it is not `409` (30 s at most): the status, the answer.
async fn until_admitted(s: &TestServer, path: &str, body: Value) -> (u16, Value) {
    let t = Instant::now();
    loop {
        let (st, r) = s.post(path, Some(body.clone())).await;
        if st != 409 {
            return (st, r);
        }
        assert!(t.elapsed() < Duration::from_secs(30), "never taken over: {r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
#[ignore = "needs an S3-compatible server: scripts/test.sh starts one"]
async fn the_autotune_lease_holds_across_instances_and_a_killed_holder_is_taken_over_after_the_ttl() {
    let (a, b, job) = holder_and_standby("fleet-kill").await;
    let (st, e) = long_autotune(&b).await;
    assert_eq!(
        (st, e["error"]["code"].clone()),
        (409, json!("autotune_running")),
        "{e}"
    );
    let (st, e) = b.autotune(json!({"index_name": "tuned", "harness": "th", "grid": [{"ef_construction": 20, "ef_search": 20}]}))
        .await;
    assert_eq!(
        (st, e["error"]["code"].clone()),
        (409, json!("autotune_running")),
        "sync too: {e}"
    );
    // B shows A's running job as A stored it, alone
    let (_, seen) = b.job(&job).await;
    assert_eq!(
        seen["state"], "running",
        "a live instance's job is left alone: {seen}"
    );

    signal(&a, "-KILL");
    let killed = Instant::now();
    // B may tune once A's lease expired
    let (st, mine) = until_admitted(
        &b,
        "/vectors/hnsw/autotune?async=true",
        json!({"index_name": "tuned", "harness": "th", "grid": [{"ef_construction": 20, "ef_search": 20}]}),
    )
    .await;
    let takeover = killed.elapsed();
    assert_eq!(st, 202, "{mine}");
    let (dead, reaped) = eventually(&b, &format!("/vectors/jobs/{job}"), 30, |_, j| {
        j["state"] == "failed"
    })
    .await;
    assert_eq!(dead["error"]["code"], "interrupted", "{dead}");
    let theirs = mine["job_id"].as_str().unwrap();
    let (done, _) = eventually(&b, &format!("/vectors/jobs/{theirs}"), 60, |_, j| {
        j["state"] == "succeeded"
    })
    .await;
    assert_eq!(done["result"]["trials_run"], 1);
    let m = metrics(&b).await;
    assert_eq!(
        metric(&m, r#"vectune_lease_takeovers_total{kind="autotune"}"#),
        1.0
    );
    assert_eq!(metric(&m, "vectune_fleet_jobs_reaped_total"), 1.0);
    eprintln!(
        "kill -9 of the holder (TTL 3 s): B's autotune admitted {takeover:?} after the kill, \
         A's job interrupted on B {:?} after the kill",
        takeover + reaped
    );
    assert!(b.terminate().success());
}

#[tokio::test]
#[ignore = "needs an S3-compatible server: scripts/test.sh starts one"]
async fn a_paused_holder_is_fenced_it_writes_nothing_after_its_lease_was_taken() {
    let (a, b, job) = holder_and_standby("fleet-pause").await;

    // a stop-the-world pause longer than the TTL (GC, VM migration, SIGSTOP)
    signal(&a, "-STOP");
    let paused = Instant::now();
    let (st, mine) = until_admitted(
        &b,
        "/vectors/hnsw/autotune",
        json!({"index_name": "tuned", "harness": "th", "grid": [{"ef_construction": 20, "ef_search": 20}], "promote": "always", "min_recall": 0.0}),
    )
    .await;
    assert_eq!(
        (st, mine["promoted"].clone()),
        (200, json!(true)),
        "B tuned while A was paused: {mine}"
    );
    let taken_at = chrono::Utc::now();
    signal(&a, "-CONT");
    // A wakes up, finds its lease gone and stops before its next write
    let (ended, _) = eventually(&a, &format!("/vectors/jobs/{job}"), 60, |_, j| {
        j["state"] == "failed"
    })
    .await;
    let code = ended["error"]["code"].as_str().unwrap();
    assert!(code == "lease_lost" || code == "interrupted", "{ended}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, trials) = b.trials("tuned", "").await;
    let trials = trials["trials"].as_array().unwrap();
    let epochs: Vec<u64> = trials.iter().filter_map(|t| t["lease_epoch"].as_u64()).collect();
    let b_epoch = *epochs.iter().max().unwrap();
    for t in trials {
        if t["lease_epoch"].as_u64() < Some(b_epoch) {
            let at: chrono::DateTime<chrono::Utc> = t["created_at"].as_str().unwrap().parse().unwrap();
            assert!(
                at < taken_at,
                "the fenced holder journaled after the takeover: {t}"
            );
        }
    }
    let (_, p) = b.promoted("tuned").await;
    assert_eq!(
        p["current"]["lease_epoch"],
        json!(b_epoch),
        "the current promotion is B's: {p}"
    );
    let ma = metrics(&a).await;
    assert_eq!(metric(&ma, r#"vectune_lease_lost_total{kind="autotune"}"#), 1.0);
    eprintln!(
        "pause of the holder past its TTL: taken over after {:?}; A's job ended {code}, its trials all before the takeover",
        paused.elapsed()
    );
    assert!(a.terminate().success());
    assert!(b.terminate().success());
}

/// This instance's id, from its `/metrics`.
async fn instance_id(s: &TestServer) -> String {
    let m = metrics(s).await;
    let line = m
        .lines()
        .find(|l| l.starts_with("vectune_instance{"))
        .unwrap()
        .to_string();
    line.split("instance=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string()
}

#[tokio::test]
#[ignore = "needs an S3-compatible server: scripts/test.sh starts one"]
async fn an_agent_runs_on_one_instance_and_another_takes_it_over_when_that_one_dies() {
    let (url, endpoint) = bucket("fleet-agent");
    let a = instance(&url, &endpoint, &SHORT_TTL);
    let b = instance(&url, &endpoint, &SHORT_TTL);
    let (ida, idb) = (instance_id(&a).await, instance_id(&b).await);
    a.new_index("ag", 16, "l2").await;
    a.append_fvecs("ag", 0, 1500, 16).await;
    a.autogen("agh", "ag", 20, 5).await;
    eventually(&b, "/vectors/indexes/ag", 10, |_, i| i["vectors"] == json!(1500)).await;
    let (st, _) = a
        .put_agent(
            "ag",
            json!({"harness": "agh", "enabled": true, "cooldown_secs": 0.5, "max_trials_per_hour": 1000}),
        )
        .await;
    assert_eq!(st, 200);
    // B learns the settings, but the agent runs where its lease is held: on one instance
    let (held, _) = eventually(&b, "/vectors/hnsw/agent/ag", 20, |_, g| {
        g["instance"].is_string() && g["runs"].as_u64() >= Some(1)
    })
    .await;
    let holder = held["instance"].as_str().unwrap().to_string();
    assert!(holder == ida || holder == idb, "{held}");
    let (dying, survivor) = if holder == ida { (&a, &b) } else { (&b, &a) };
    let survivor_id = if holder == ida { &idb } else { &ida };
    let (_, ga) = a.get_agent("ag").await;
    assert_eq!(
        ga["instance"],
        json!(holder),
        "both instances name the same holder"
    );

    signal(dying, "-KILL");
    let (_, took) = eventually(survivor, "/vectors/hnsw/agent/ag", 30, |_, g| {
        g["instance"] == json!(survivor_id)
    })
    .await;
    let (after, _) = eventually(survivor, "/vectors/hnsw/agent/ag", 60, |_, g| {
        g["instance"] == json!(survivor_id) && g["runs"].as_u64() > held["runs"].as_u64()
    })
    .await;
    // one holder per epoch: the survivor's agent trials carry a newer epoch than the dead one's
    let (_, trials) = survivor.trials("ag", "").await;
    let epochs: std::collections::BTreeSet<u64> = trials["trials"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["source"] == "agent")
        .filter_map(|t| t["lease_epoch"].as_u64())
        .collect();
    assert!(epochs.len() >= 2, "two tenures, each its own epoch: {epochs:?}");
    let m = metrics(survivor).await;
    assert_eq!(metric(&m, r#"vectune_lease_takeovers_total{kind="agent"}"#), 1.0);
    eprintln!(
        "agent lease (TTL 3 s): taken over {took:?} after the holder's kill -9; runs {} -> {}, epochs {epochs:?}",
        held["runs"], after["runs"]
    );
}

/// Six graphs of about one build's cost each, two `ef_search` apiece: builds the second
/// instance can share.
fn shared_grid() -> Vec<Value> {
    [(16, 240), (24, 160), (12, 320), (20, 192), (32, 120), (40, 96)]
        .iter()
        .flat_map(|&(m, ec)| [40, 80].map(|ef| json!({"m": m, "ef_construction": ec, "ef_search": ef})))
        .collect()
}

#[tokio::test]
#[ignore = "needs an S3-compatible server: scripts/test.sh starts one"]
async fn two_instances_share_one_autotune_s_builds_and_a_killed_builder_s_item_is_re_leased() {
    let (a, b) = seeded_pair("fleet-builds").await;
    // both count two live instances (a heartbeat is a third of the TTL)
    for s in [&a, &b] {
        let (_, t) = eventually_metric(s, "vectune_fleet_instances", 10, |v| v == 2.0).await;
        eprintln!("two instances seen after {t:?}");
    }
    let body = json!({"index_name": "tuned", "harness": "th", "grid": shared_grid(), "promote": "never",
        "objective": "min_latency", "target_recall": 0.5});

    // 1. B builds some of A's graphs, A loads them from the bucket
    let t = Instant::now();
    let (st, r) = a.autotune(body.clone()).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(
        (r["builds"].clone(), r["trials_run"].clone()),
        (json!(6), json!(12)),
        "{r}"
    );
    let elsewhere = r["builds_elsewhere"].as_u64().unwrap();
    assert!(elsewhere >= 1, "B built none: {r}");
    let built_on_b = metric(
        &metrics(&b).await,
        r#"vectune_graph_builds_total{purpose="fleet"}"#,
    );
    assert!(built_on_b >= elsewhere as f64, "{built_on_b} < {elsewhere}");
    eprintln!(
        "shared autotune: {:?}, {elsewhere} of 6 graphs built on B",
        t.elapsed()
    );

    // 2. B dies (kill -9) in the middle of an item: A waits out its claim, re-leases the
    // item, builds it itself and finishes the run
    let (st, j) = a.autotune_async(body.clone()).await;
    assert_eq!(st, 202, "{j}");
    eventually_metric(&b, "vectune_fleet_building", 60, |v| v == 1.0).await;
    signal(&b, "-KILL");
    let killed = Instant::now();
    let job = j["job_id"].as_str().unwrap();
    let (done, _) = eventually(&a, &format!("/vectors/jobs/{job}"), 300, |_, j| {
        j["state"] != "running" && j["state"] != "queued"
    })
    .await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let r = &done["result"];
    assert_eq!(
        r["builds"],
        json!(6),
        "every graph measured, B's last one rebuilt on A: {r}"
    );
    assert!(r["builds_elsewhere"].as_u64().unwrap() < 6, "{r}");
    eprintln!(
        "builder killed mid-item: A finished {:?} later, {} of 6 graphs from B",
        killed.elapsed(),
        r["builds_elsewhere"]
    );
    assert!(a.terminate().success());
}

/// Polls `series` in `s`'s metrics until `until` holds (for up to `secs`).
async fn eventually_metric(
    s: &TestServer,
    series: &str,
    secs: u64,
    until: impl Fn(f64) -> bool,
) -> (f64, Duration) {
    let t = Instant::now();
    loop {
        let text = metrics(s).await;
        let v = text
            .lines()
            .find_map(|l| l.strip_prefix(series).and_then(|r| r.trim().parse().ok()))
            .unwrap_or(f64::NAN);
        if until(v) {
            return (v, t.elapsed());
        }
        assert!(
            t.elapsed() < Duration::from_secs(secs),
            "{series} = {v} after {secs} s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
