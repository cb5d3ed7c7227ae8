//! The command line against the real server: every subcommand, its output and its exit
//! codes (0 promoted / done, 3 nothing promoted, 1 any error with the code on stderr).

use std::process::{Command, Output};

use serde_json::{json, Value};

#[path = "api/helpers.rs"]
mod helpers;
use helpers::*;

/// `n` rows of `vector(i, dims)` from `from` as a NumPy `.npy` file (v1.0, `<f4`, C order).
fn npy_rows(from: usize, n: usize, dims: usize) -> Vec<u8> {
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({n}, {dims}), }}");
    let pad = 64 - (10 + dict.len() + 1) % 64;
    let header = format!("{dict}{}\n", " ".repeat(pad % 64));
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for i in from..from + n {
        for x in vector(i, dims) {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    out
}

/// Runs `vectune args…` against `s` with `env`; the exit code, stdout and stderr.
fn run(s: &TestServer, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(env!("CARGO_BIN_EXE_vectune"))
        .args(args)
        .env("VECTUNE_SERVER", &s.base)
        .env_remove("VECTUNE_TOKEN")
        .envs(env.iter().copied())
        .output()
        .expect("run vectune");
    (
        status.code().expect("exit code"),
        String::from_utf8(stdout).unwrap(),
        String::from_utf8(stderr).unwrap(),
    )
}

/// `vectune autotune --index cli --harness h` with `extra` flags.
fn tune(s: &TestServer, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["autotune", "--index", "cli", "--harness", "h"];
    args.extend_from_slice(extra);
    run(s, &args, &[])
}

#[tokio::test]
async fn every_subcommand_against_a_real_server_with_its_exit_codes() {
    let (dir, s) = TestServer::in_temp_dir(&[]);
    let file = dir.path().join("rows.fvecs");
    std::fs::write(&file, fvecs_rows(0, 2000, 16)).unwrap();
    let file = file.to_str().unwrap();

    let (code, _, err) = run(&s, &["ingest", "nope", file], &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("index_not_found"), "{err}");
    s.new_index("cli", 16, "l2").await;
    let (code, out, err) = run(&s, &["ingest", "cli", file], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("appended 2000 vectors") && out.contains("ids 0..1999"),
        "{out}"
    );
    let (code, _, err) = run(&s, &["ingest", "cli", "rows.txt"], &[]);
    assert_eq!(code, 1, "{err}");
    let npy = dir.path().join("more.npy");
    std::fs::write(&npy, npy_rows(2000, 500, 16)).unwrap();
    let (code, out, err) = run(&s, &["ingest", "cli", npy.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("appended 500 vectors") && out.contains("2500 stored"),
        "{out}"
    );
    s.autogen("h", "cli", 30, 10).await;

    // a winner promoted: 0, progress lines on stderr (not a terminal: no carriage returns)
    let grid = dir.path().join("grid.json");
    std::fs::write(
        &grid,
        json!({"index_name": "ignored", "grid": [
            {"ef_construction": 40, "ef_search": 40}, {"ef_construction": 80, "ef_search": 80}, {"ef_construction": 120, "ef_search": 120}
        ]})
        .to_string(),
    )
    .unwrap();
    let grid = grid.to_str().unwrap();
    let (code, out, err) = tune(&s, &["--body", grid]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("promoted: true") && out.contains("winner: m="),
        "{out}"
    );
    assert!(
        err.contains("autotune") && err.contains("/3") && !err.contains('\r'),
        "{err}"
    );
    let (_, jobs) = s.jobs("?index=cli").await;
    let first = jobs["jobs"][0]["id"].as_str().unwrap().to_string();

    // nothing eligible: 3, and --json gives the raw result
    // a cheap grid cannot be exact on every query
    std::fs::write(
        dir.path().join("cheap.json"),
        r#"{"grid": [{"ef_construction": 10, "ef_search": 10, "m": 4}]}"#,
    )
    .unwrap();
    let cheap = dir.path().join("cheap.json");
    let cheap = cheap.to_str().unwrap();
    let (code3, out3, err3) = tune(
        &s,
        &[
            "--target-recall",
            "1.0",
            "--objective",
            "min_latency",
            "--body",
            cheap,
            "--json",
        ],
    );
    assert_eq!(code3, 3, "{out3}\n{err3}");
    let raw: Value = serde_json::from_str(&out3).unwrap();
    assert_eq!(
        (raw["promoted"].clone(), raw["trials_eligible"].clone()),
        (json!(false), json!(0)),
        "{raw}"
    );
    // a refused request: 1 with the code
    let (code, _, err) = tune(&s, &["--strategy", "random"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("invalid_strategy") || err.contains("invalid"),
        "{err}"
    );

    let (code, out, _) = run(&s, &["promoted", "cli"], &[]);
    assert_eq!(code, 0);
    assert!(out.starts_with("cli: m="), "{out}");
    let (code, out, _) = run(&s, &["promoted", "cli", "--json"], &[]);
    assert_eq!(code, 0);
    let (_, p) = s.promoted("cli").await;
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), p);

    let (code, out, err) = run(&s, &["activate", "cli", "--wait"], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("cli serves generation 1"), "{out}");
    let (code, out, _) = run(&s, &["activate", "cli"], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("vectune jobs watch"), "{out}");

    let (code, out, _) = run(&s, &["jobs", "list", "--index", "cli"], &[]);
    assert_eq!(code, 0);
    assert!(out.lines().count() == 4 && out.contains(&first), "{out}");
    let (code, out, _) = run(&s, &["jobs", "watch", &first], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("promoted: true"), "{out}");
    let (code, _, err) = run(
        &s,
        &["jobs", "watch", "0190a000-0000-7000-8000-000000000000"],
        &[],
    );
    assert_eq!((code, err.contains("job_not_found")), (1, true), "{err}");

    // roll back until nothing is left: then 1 with the code
    let mut rolled = 0;
    loop {
        let (code, _, err) = run(&s, &["rollback", "cli"], &[]);
        if code != 0 {
            assert_eq!(code, 1);
            assert!(err.contains("nothing_to_roll_back"), "{err}");
            break;
        }
        rolled += 1;
        assert!(rolled < 10);
    }
    assert!(rolled >= 1);
    assert!(s.terminate().success());
}

#[tokio::test]
async fn with_auth_on_the_token_comes_from_the_flag_or_the_environment() {
    let token = "cli-admin-token-0123";
    let (_dir, s) = TestServer::in_temp_dir(&[("VECTUNE_API_TOKEN", token)]);
    let (code, _, err) = run(&s, &["promoted", "x"], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("unauthorized"), "{err}");
    let (code, _, err) = run(&s, &["promoted", "x"], &[("VECTUNE_TOKEN", token)]);
    assert_eq!(code, 1, "authorised now: the index is what is missing");
    assert!(err.contains("index_not_found"), "{err}");
    let (code, _, err) = run(&s, &["promoted", "x", "--token", token], &[]);
    assert!(code == 1 && err.contains("index_not_found"), "{err}");
}

/// `vectune autotune` with defaults and a latency target: the confident gate picks, and the
/// winner holds the target on a harness of queries the run never saw.
#[tokio::test]
async fn a_default_cli_autotune_holds_its_target_on_held_out_queries() {
    let (_dir, s) = TestServer::in_temp_dir(&[]);
    s.new_index("cli", 24, "l2").await;
    s.append_fvecs("cli", 0, 3000, 24).await;
    let autogen = |name: &str, seed: u64| json!({"name": name, "index_name": "cli", "queries": 250, "k": 10, "seed": seed});
    assert_eq!(s.autogen_harness(autogen("h", 1)).await.0, 201);
    assert_eq!(s.autogen_harness(autogen("check", 2)).await.0, 201);
    let (code, out, err) = tune(
        &s,
        &["--objective", "min_latency", "--target-recall", "0.9", "--json"],
    );
    assert!(code == 0 || code == 3, "{out}\n{err}");
    let r: Value = serde_json::from_str(&out).unwrap();
    let w = &r["winner"];
    assert_eq!(w["assurance"]["gate"], "confident", "{r}");
    assert!(w["assurance"]["recall_ci_low"].as_f64().unwrap() >= 0.9, "{r}");
    let (st, t) = s
        .trial(json!({"index_name": "cli", "harness": "check", "config": w["config"]}))
        .await;
    assert_eq!(st, 200, "{t}");
    assert!(
        t["metrics"]["recall_at_k"].as_f64().unwrap() >= 0.9,
        "held out: {t}"
    );
}

/// `vectune-bench synth` writes a seeded set whose files are the library generator's bytes
/// (the same arguments, the same set), `vectune ingest` loads its base into the real server,
/// and the server's exact ground truth for its queries is the file's: the scale bench's
/// data checked end to end at small n.
#[tokio::test]
async fn the_bench_generator_writes_a_set_the_server_ingests_with_the_same_truth() {
    use vectune::harness::synth::{generate, write_fvecs, write_ivecs, SynthSpec};
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("set");
    let args = [
        "synth",
        "--out",
        out.to_str().unwrap(),
        "--n",
        "2000",
        "--dims",
        "16",
        "--queries",
        "12",
        "--k",
        "10",
        "--components",
        "8",
        "--latent",
        "4",
        "--seed",
        "9",
    ];
    let o = Command::new(env!("CARGO_BIN_EXE_vectune-bench"))
        .args(args)
        .output()
        .expect("run vectune-bench");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let said: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (said["n"].clone(), said["dims"].clone()),
        (json!(2000), json!(16))
    );
    let spec = SynthSpec {
        n: 2000,
        queries: 12,
        dims: 16,
        components: 8,
        latent: 4,
        k: 10,
        seed: 9,
    };
    let set = generate(&spec).unwrap();
    let file = |name: &str| std::fs::read(out.join(name)).unwrap();
    let (mut base, mut queries, mut truth) = (Vec::new(), Vec::new(), Vec::new());
    write_fvecs(&mut base, &set.base, 16).unwrap();
    write_fvecs(&mut queries, &set.queries, 16).unwrap();
    write_ivecs(&mut truth, &set.truth).unwrap();
    assert!(
        file("base.fvecs") == base && file("query.fvecs") == queries && file("groundtruth.ivecs") == truth
    );

    // into the real server through the command line's binary ingest
    let (_dir, s) = TestServer::in_temp_dir(&[]);
    s.new_index("synth", 16, "l2").await;
    let (code, stdout, stderr) = run(
        &s,
        &["ingest", "synth", out.join("base.fvecs").to_str().unwrap()],
        &[],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (_, i) = s.get_index("synth").await;
    assert_eq!(i["vectors"], 2000, "{i}");
    // the server's exact ground truth of the queries is the file's (ids are row numbers)
    let qs: Vec<Value> = set
        .queries
        .chunks_exact(16)
        .enumerate()
        .map(|(n, q)| json!({"id": format!("q{n}"), "vector": q}))
        .collect();
    let (st, h) = s
        .create_harness(json!({"name": "h", "index_name": "synth", "k": 10, "queries": qs}))
        .await;
    assert_eq!(st, 201, "{h}");
    // ground truth is computed on first use: a trial
    let (st, t) = s
        .trial(json!({"index_name": "synth", "harness": "h", "config": {"ef_construction": 80, "ef_search": 80}}))
        .await;
    assert_eq!(st, 200, "{t}");
    assert!(t["metrics"]["recall_at_k"].as_f64().unwrap() >= 0.9, "{t}");
    let (st, h) = s.get_harness("h").await;
    assert_eq!((st, h["ground_truth_built"].clone()), (200, json!(true)), "{h}");
    for (q, want) in h["queries"].as_array().unwrap().iter().zip(&set.truth) {
        let got: Vec<u32> = q["ground_truth"]
            .as_array()
            .unwrap()
            .iter()
            .map(|id| id.as_str().unwrap().parse().unwrap())
            .collect();
        // equal distances may order differently: compare as sets
        let (mut a, mut b) = (got.clone(), want.clone());
        a.sort_unstable();
        b.sort_unstable();
        assert_eq!(a, b, "query {}", q["id"]);
    }
}

/// `vectune ingest` against a server whose upload budget another upload holds: the
/// `503 overloaded` stored nothing, so the command waits and sends again (saying so on
/// stderr), and lands once the other upload is done — acknowledged exactly once.
#[tokio::test]
async fn ingest_sends_again_while_the_server_is_busy_with_other_uploads() {
    use std::io::Write;
    let (_dir, s) = TestServer::in_temp_dir(&[
        ("VECTUNE_MAX_BINARY_BODY_BYTES", "4096"),
        ("VECTUNE_MAX_INGEST_BYTES_IN_FLIGHT", "4096"),
    ]);
    s.new_index("busy", 8, "l2").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rows.fvecs");
    std::fs::write(&file, fvecs_rows(0, 10, 8)).unwrap();
    // another client's upload, declared 4,000 bytes and held open half sent: it holds the
    // whole budget until it finishes
    let addr = s.base.trim_start_matches("http://").to_string();
    let held = fvecs_rows(100, 40, 8); // 40 rows x 36 B = 1,440 B
    let mut other = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        other,
        "POST /vectors/indexes/busy/vectors?format=fvecs HTTP/1.1\r\nhost: x\r\ncontent-type: application/octet-stream\r\ncontent-length: 4000\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    other.write_all(&held[..720]).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let base = s.base.clone();
    let path = file.to_str().unwrap().to_string();
    let cli = std::thread::spawn(move || {
        Command::new(env!("CARGO_BIN_EXE_vectune"))
            .args(["ingest", "busy", &path])
            .env("VECTUNE_SERVER", &base)
            .env_remove("VECTUNE_TOKEN")
            .output()
            .expect("run vectune")
    });
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(
        s.get_index("busy").await.1["vectors"],
        0,
        "nothing stored while refused"
    );
    // the other upload gives up: its budget is free, the command's next try lands
    drop(other);
    let out = cli.join().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stderr.contains("503 overloaded"), "{stderr}");
    assert!(stdout.contains("appended 10"), "{stdout}");
    assert_eq!(s.get_index("busy").await.1["vectors"], 10);
}
