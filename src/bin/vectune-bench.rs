//! Benchmark driver: measures vectune in-process on an fvecs data set, or over HTTP
//! against a running server. `scripts/bench.sh` runs it beside hnswlib and faiss on the
//! same data and machine and writes BENCHMARKS.md; it prints JSON.
//!
//! ```text
//! vectune-bench inproc --data DIR --metric cosine [--m 16] [--ec 100] [--efs 10,20,40,80,160]
//! vectune-bench inproc ... [--quantization none|sq8] [--engine native|native_sq8|hnsw_rs]
//! vectune-bench kernels
//! vectune-bench synth --out DIR --n 1000000 --dims 128 [--queries 1000] [--k 100] [--seed 42]
//! vectune-bench extend --data DIR --metric l2 --base 66667 [--m 16] [--ec 80] [--threads 1]
//! vectune-bench http --base http://127.0.0.1:8080 --index NAME --data DIR [--efs ...]
//! vectune-bench grid --data DIR --metric l2 [--ms 8,12,16,24,32] [--ecs 40,80,160,320]
//!     [--quantizations none,sq8,sq4,rabitq] [--target 0.95] [--pick 24,160,36,sq8]
//! ```
//! DIR holds `base.fvecs`, `query.fvecs` and `groundtruth.ivecs` (exact neighbours, best first).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Parser, Subcommand};
use serde_json::{json, Value};
use vectune::distance::Metric;
use vectune::harness::ground_truth;
use vectune::hnsw::{self, reference, BuildOptions, Graph, Knobs};
use vectune::params::{Engine, HnswConfig, Quantization};
use vectune::stats::percentile;
use vectune::vectors::VectorSet;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build, freeze and search in this process.
    Inproc {
        #[arg(long)]
        data: PathBuf,
        #[arg(long, default_value = "cosine")]
        metric: String,
        #[arg(long, default_value_t = 16)]
        m: i64,
        #[arg(long, default_value_t = 100)]
        ec: i64,
        #[arg(long, default_value = "10,20,40,80,160")]
        efs: String,
        /// Skip the single-thread (serial) build, for very large sets.
        #[arg(long)]
        no_serial: bool,
        /// `none`, `sq8`, `sq4` or `rabitq`.
        #[arg(long, default_value = "none")]
        quantization: String,
        /// `native`, `native_sq8` or `hnsw_rs`.
        #[arg(long, default_value = "native")]
        engine: String,
        /// Seed of insertion order and levels.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Early termination: expansions without a better k-th key (0: off).
        #[arg(long, default_value_t = 0)]
        patience: usize,
    },
    /// Insert throughput: the graph of the first `base` rows built (all cores), then the
    /// remaining rows inserted into it on `threads` threads (the fold-in path), timed;
    /// recall of the result at each ef against the set's ground truth.
    Extend {
        #[arg(long)]
        data: PathBuf,
        #[arg(long, default_value = "l2")]
        metric: String,
        #[arg(long)]
        base: usize,
        #[arg(long, default_value_t = 16)]
        m: i64,
        #[arg(long, default_value_t = 80)]
        ec: i64,
        #[arg(long, default_value = "native")]
        engine: String,
        #[arg(long, default_value_t = 1)]
        threads: usize,
        #[arg(long, default_value = "20,40,80,160")]
        efs: String,
    },
    /// Print the kernel levels this CPU supports, lowest first (the last is the default).
    Kernels,
    /// Generate a seeded Gaussian-mixture set with exact L2 ground truth into DIR
    /// (`base.fvecs`, `query.fvecs`, `groundtruth.ivecs`): the scale bench's data, the same
    /// bytes for the same arguments on any machine.
    Synth {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 1_000_000)]
        n: usize,
        #[arg(long, default_value_t = 128)]
        dims: usize,
        #[arg(long, default_value_t = 1000)]
        queries: usize,
        #[arg(long, default_value_t = 100)]
        k: usize,
        #[arg(long, default_value_t = 100)]
        components: usize,
        #[arg(long, default_value_t = 12)]
        latent: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// The offline yardstick of a tuner's pick: every graph of an `m` × `ef_construction`
    /// lattice built once (the quantizations are twins over the same links, their codes
    /// derived, as the tuner does), each config's recall and batch mean swept over `ef`, the
    /// mean at `target` recall interpolated; then the leaders and `--pick` measured again in
    /// rounds alternating configs (each figure's minimum). One line per config on stderr.
    Grid {
        #[arg(long)]
        data: PathBuf,
        #[arg(long, default_value = "l2")]
        metric: String,
        #[arg(long, default_value = "8,12,16,24,32")]
        ms: String,
        #[arg(long, default_value = "40,80,160,320")]
        ecs: String,
        #[arg(long, default_value = "none,sq8,sq4,rabitq")]
        quantizations: String,
        #[arg(
            long,
            default_value = "10,12,14,16,18,20,24,28,32,36,40,48,56,64,80,96,112,128,160,192,256,320,400,512"
        )]
        efs: String,
        #[arg(long, default_value_t = 0.95)]
        target: f64,
        /// The tuner's winner to hold against the grid: `m,ef_construction,ef_search,quantization`.
        #[arg(long)]
        pick: Option<String>,
        #[arg(long, default_value_t = 6)]
        leaders: usize,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        #[arg(long, default_value = "native")]
        engine: String,
    },
    /// Search a running server's index over one keep-alive connection.
    Http {
        #[arg(long)]
        base: String,
        #[arg(long)]
        index: String,
        #[arg(long)]
        data: PathBuf,
        #[arg(long, default_value = "10,20,40,80,160")]
        efs: String,
    },
}

fn read_vecs(path: &Path) -> Vec<Vec<u32>> {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut out = Vec::new();
    let mut at = 0;
    while at + 4 <= b.len() {
        let d = u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize;
        out.push(
            b[at + 4..at + 4 + 4 * d]
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
                .collect(),
        );
        at += 4 + 4 * d;
    }
    out
}

fn read_f32(path: &Path) -> (usize, Vec<f32>) {
    let rows = read_vecs(path);
    let dims = rows.first().map_or(0, |r| r.len());
    (dims, rows.into_iter().flatten().map(f32::from_bits).collect())
}

/// The data set: its rows, its prepared queries and its ground truth.
fn load(data: &Path, metric: Metric) -> (VectorSet, Vec<Vec<f32>>, Vec<Vec<u32>>) {
    let (dims, base) = read_f32(&data.join("base.fvecs"));
    let (_, qflat) = read_f32(&data.join("query.fvecs"));
    let truth = read_vecs(&data.join("groundtruth.ivecs"));
    let n = base.len() / dims;
    let set = VectorSet::from_rows(dims, metric, (0..n).map(|i| i.to_string()).collect(), base);
    let queries = qflat
        .chunks_exact(dims)
        .map(|q| set.prepare_query(q).expect("finite, non-zero queries"))
        .collect();
    (set, queries, truth)
}

fn efs(s: &str) -> Vec<usize> {
    s.split(',').filter_map(|x| x.trim().parse().ok()).collect()
}

/// The 10th percentile of per-query recall@k.
fn recall_p10(found: &[Vec<u32>], truth: &[Vec<u32>], k: usize) -> f64 {
    let mut per: Vec<f64> = found
        .iter()
        .zip(truth)
        .map(|(f, t)| f.iter().filter(|x| t[..k].contains(x)).count() as f64 / k as f64)
        .collect();
    per.sort_by(f64::total_cmp);
    percentile(&per, 10.0)
}

fn recall(found: &[Vec<u32>], truth: &[Vec<u32>], k: usize) -> f64 {
    let hit: usize = found
        .iter()
        .zip(truth)
        .map(|(f, t)| f.iter().filter(|x| t[..k].contains(x)).count())
        .sum();
    hit as f64 / (found.len() * k) as f64
}

/// Builds with `threads` threads: the product's path for native; for hnsw_rs, its serial
/// build at 1 thread and its parallel insert above (benchmarks only).
fn build_with(set: &VectorSet, cfg: HnswConfig, engine: Engine, threads: usize) -> Graph {
    match engine {
        Engine::Native | Engine::NativeSq8 => {
            hnsw::build(set, set.len(), cfg, BuildOptions { engine, threads })
        }
        Engine::HnswRs => {
            let t = Instant::now();
            let layout = reference::build(set, set.len(), cfg, threads);
            Graph::from_layout(layout, set, cfg, engine, t.elapsed())
        }
    }
}

/// See [`Cmd::Extend`].
fn extend(
    data: &Path,
    metric: Metric,
    base: usize,
    cfg: HnswConfig,
    engine: Engine,
    threads: usize,
    ef_list: &[usize],
) -> Value {
    let (set, queries, truth) = load(data, metric);
    let n = set.len();
    let on = match engine {
        Engine::NativeSq8 => hnsw::native::BuildOn::Codes,
        _ => hnsw::native::BuildOn::Rows,
    };
    let (m, ec) = (cfg.m as usize, cfg.ef_construction as usize);
    let all = hnsw::available_threads();
    let t = Instant::now();
    let first = hnsw::native::build(&set, base, m, ec, cfg.seed, all, on);
    let base_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let layout = hnsw::native::extend(&set, &first, n, ec, cfg.seed, threads, on);
    let insert_secs = t.elapsed().as_secs_f64();
    let graph = Graph::from_layout(layout, &set, cfg, engine, std::time::Duration::ZERO);
    let k = 10;
    let recalls: Vec<Value> = ef_list
        .iter()
        .map(|&ef| {
            let found: Vec<Vec<u32>> = queries
                .iter()
                .map(|q| graph.search(&set, q, k, ef).iter().map(|h| h.row).collect())
                .collect();
            json!({"ef": ef, "recall": recall(&found, &truth, k)})
        })
        .collect();
    json!({
        "n": n, "base": base, "inserted": n - base, "m": m, "ef_construction": ec,
        "engine": engine.as_str(), "threads": threads, "kernel": vectune::kernels::level().as_str(),
        "base_build_secs_all_cores": base_secs,
        "insert_secs": insert_secs,
        "insert_rows_per_sec": (n - base) as f64 / insert_secs,
        "recall": recalls,
    })
}

#[allow(clippy::too_many_arguments)]
fn inproc(
    data: &Path,
    metric: Metric,
    m: i64,
    ec: i64,
    ef_list: &[usize],
    no_serial: bool,
    quantization: Quantization,
    engine: Engine,
    seed: u64,
    patience: usize,
) -> Value {
    let (set, queries, truth) = load(data, metric);
    let (n, dims) = (set.len(), set.dims());
    let k = 10;
    let cfg = HnswConfig::new(ec, 10, m, seed)
        .expect("config in bounds")
        .with_quantization(quantization);
    let threads = hnsw::available_threads();

    // exact ground truth: all threads and one thread
    let t = Instant::now();
    let gt = ground_truth::exact(&set, &queries, k).expect("queries of the set's dims");
    let gt_all = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let gt1 = ground_truth::exact_with_threads(&set, &queries, k, 1).expect("queries of the set's dims");
    let gt_one = t.elapsed().as_secs_f64();
    assert_eq!(gt, gt1);
    let gt_agreement = recall(&gt, &truth, k);

    let t = Instant::now();
    let par = build_with(&set, cfg, engine, threads);
    let parallel_secs = t.elapsed().as_secs_f64();
    let serial = if no_serial {
        None
    } else {
        let t = Instant::now();
        let g = build_with(&set, cfg, engine, 1);
        Some((g, t.elapsed().as_secs_f64()))
    };
    let identical = serial.as_ref().map(|(g, _)| g.frozen() == par.frozen());
    let (graph, which) = match &serial {
        Some((g, _)) => (g, "serial"),
        None => (&par, "parallel"),
    };

    let mut rows = Vec::new();
    for &ef in ef_list {
        let search = |g: &Graph| -> (Vec<Vec<u32>>, Vec<f64>, f64, u64) {
            // warm-up pass, then each query once
            let knobs = Knobs { ef, patience };
            for q in &queries {
                std::hint::black_box(g.search_with(&set, q, k, knobs, None));
            }
            let mut lat = Vec::with_capacity(queries.len());
            let mut found = Vec::with_capacity(queries.len());
            let mut evals = 0u64;
            let all = Instant::now();
            for q in &queries {
                let t = Instant::now();
                let hits = g.search_with(&set, q, k, knobs, Some(&mut evals));
                lat.push(t.elapsed().as_secs_f64() * 1e6);
                found.push(hits.iter().map(|h| h.row).collect());
            }
            let total = all.elapsed().as_secs_f64();
            lat.sort_by(f64::total_cmp);
            (found, lat, total, evals)
        };
        let (found, lat, total, evals) = search(graph);
        let pfound = if identical == Some(true) {
            found.clone()
        } else {
            search(&par).0
        };
        rows.push(json!({
            "ef_search": ef,
            "patience": patience,
            "recall_at_10": recall(&found, &truth, k),
            "recall_p10": recall_p10(&found, &truth, k),
            "recall_at_10_parallel_build": recall(&pfound, &truth, k),
            "p50_us": percentile(&lat, 50.0),
            "p99_us": percentile(&lat, 99.0),
            "mean_us": total * 1e6 / queries.len() as f64,
            "qps_1_thread": queries.len() as f64 / total,
            "distance_evals_per_query": evals as f64 / queries.len() as f64,
        }));
    }
    // brute force per query, one thread
    let t = Instant::now();
    for q in queries.iter().take(100) {
        let _ = std::hint::black_box(ground_truth::exact_with_threads(
            &set,
            std::slice::from_ref(q),
            k,
            1,
        ));
    }
    let brute_us = t.elapsed().as_secs_f64() * 1e6 / queries.len().min(100) as f64;
    json!({
        "vectors": n, "dims": dims, "queries": queries.len(), "metric": metric.as_str(),
        "m": m, "ef_construction": ec, "seed": seed,
        "engine": engine.as_str(), "quantization": quantization.as_str(),
        "kernels": vectune::kernels::level().as_str(),
        "threads": threads,
        "build_serial_secs": serial.as_ref().map(|s| s.1),
        "build_parallel_secs": parallel_secs,
        "graphs_identical_1_vs_all_threads": identical,
        "searched_graph": which,
        "graph_bytes": graph.memory_bytes(),
        "vector_bytes": set.data_bytes(),
        "ground_truth_secs_all_threads": gt_all,
        "ground_truth_secs_1_thread": gt_one,
        "ground_truth_agreement_with_dataset": gt_agreement,
        "brute_force_us_per_query": brute_us,
        "search": rows,
    })
}

/// What [`Cmd::Grid`] measures.
struct GridSpec {
    data: PathBuf,
    metric: Metric,
    ms: Vec<usize>,
    ecs: Vec<usize>,
    quantizations: Vec<Quantization>,
    efs: Vec<usize>,
    target: f64,
    pick: Option<(usize, usize, usize, Quantization)>,
    leaders: usize,
    rounds: usize,
    engine: Engine,
}

/// One pass of every query on this thread after a warm-up pass: (found rows, batch mean µs).
fn batch(g: &Graph, set: &VectorSet, queries: &[Vec<f32>], ef: usize) -> (Vec<Vec<u32>>, f64) {
    let knobs = Knobs { ef, patience: 0 };
    for q in queries {
        std::hint::black_box(g.search_with(set, q, 10, knobs, None));
    }
    let t = Instant::now();
    let found: Vec<Vec<u32>> = queries
        .iter()
        .map(|q| {
            g.search_with(set, q, 10, knobs, None)
                .iter()
                .map(|h| h.row)
                .collect()
        })
        .collect();
    (
        found,
        t.elapsed().as_secs_f64() * 1e6 / queries.len().max(1) as f64,
    )
}

/// The mean µs at `target` recall, linear between the sweep's points around it; the
/// bracketing efs. `None` when no point reaches it. `points` are (ef, recall, µs), ef rising.
fn at_target(points: &[(usize, f64, f64)], target: f64) -> Option<(f64, usize, usize)> {
    let i = points.iter().position(|p| p.1 >= target)?;
    if i == 0 {
        return Some((points[0].2, points[0].0, points[0].0));
    }
    let (a, b) = (points[i - 1], points[i]);
    let w = if b.1 > a.1 {
        (target - a.1) / (b.1 - a.1)
    } else {
        1.0
    };
    Some((a.2 + w * (b.2 - a.2), a.0, b.0))
}

/// See [`Cmd::Grid`].
fn grid(spec: &GridSpec) -> Value {
    let (set, queries, truth) = load(&spec.data, spec.metric);
    let threads = hnsw::available_threads();
    let mut lattice: Vec<(usize, usize)> = spec
        .ms
        .iter()
        .flat_map(|&m| spec.ecs.iter().map(move |&ec| (m, ec)))
        .collect();
    if let Some((m, ec, _, _)) = spec.pick {
        if !lattice.contains(&(m, ec)) {
            lattice.push((m, ec));
        }
    }
    let config = |m: usize, ec: usize, ef: usize, q: Quantization| {
        HnswConfig::new(ec as i64, ef as i64, m as i64, vectune::params::DEFAULT_SEED)
            .expect("config in bounds")
            .with_quantization(q)
    };
    // every graph's links kept (the final rounds derive their codes again), and every
    // config's sweep: (m, ec, quantization, build secs, [(ef, recall, µs)])
    let mut layouts = Vec::new();
    let mut sweeps = Vec::new();
    let started = Instant::now();
    for &(m, ec) in &lattice {
        let t = Instant::now();
        let base = build_with(&set, config(m, ec, 10, Quantization::None), spec.engine, threads);
        let build_secs = t.elapsed().as_secs_f64();
        for &q in &spec.quantizations {
            let derive = Instant::now();
            let g = Graph::from_layout(
                base.links(),
                &set,
                config(m, ec, 10, q),
                spec.engine,
                base.build_time(),
            );
            // what a twin costs a tuning run (and an activation loading a stored graph)
            let derive_secs = derive.elapsed().as_secs_f64();
            let mut points = Vec::new();
            let mut past = 0;
            for &ef in &spec.efs {
                let (found, us) = batch(&g, &set, &queries, ef);
                let r = recall(&found, &truth, 10);
                points.push((ef, r, us));
                past += usize::from(r >= spec.target);
                if past >= 2 || r >= 0.999 {
                    break;
                }
            }
            let at = at_target(&points, spec.target);
            eprintln!(
                "grid m {m} efC {ec} {:>6}: build {build_secs:.1} s, codes {derive_secs:.2} s, {} efs swept, at {:.3}: {} [{:.0} s]",
                q.as_str(),
                points.len(),
                spec.target,
                at.map_or("never".into(), |a| format!("{:.2} µs (ef {}..{})", a.0, a.1, a.2)),
                started.elapsed().as_secs_f64()
            );
            sweeps.push((m, ec, q, build_secs, points));
        }
        layouts.push(((m, ec), base.links(), base.build_time()));
    }
    // the leaders by their sweep, and the pick, measured again in alternating rounds
    let mut ranked: Vec<(usize, f64)> = sweeps
        .iter()
        .enumerate()
        .filter_map(|(i, s)| at_target(&s.4, spec.target).map(|a| (i, a.0)))
        .collect();
    ranked.sort_by(|a, b| a.1.total_cmp(&b.1));
    // (sweep index, efs measured again)
    let mut again: Vec<(usize, Vec<usize>)> = ranked
        .iter()
        .take(spec.leaders)
        .map(|&(i, _)| {
            let (_, lo, hi) = at_target(&sweeps[i].4, spec.target).expect("ranked passes");
            (i, if lo == hi { vec![lo] } else { vec![lo, hi] })
        })
        .collect();
    let pick_at = spec.pick.map(|(m, ec, ef, q)| {
        let i = sweeps
            .iter()
            .position(|s| (s.0, s.1, s.2) == (m, ec, q))
            .expect("the pick's quantization is among --quantizations");
        match again.iter_mut().find(|a| a.0 == i) {
            Some(a) if !a.1.contains(&ef) => a.1.push(ef),
            Some(_) => {}
            None => again.push((i, vec![ef])),
        }
        (i, ef)
    });
    let graphs: Vec<Graph> = again
        .iter()
        .map(|(i, _)| {
            let (m, ec, q) = (sweeps[*i].0, sweeps[*i].1, sweeps[*i].2);
            let (_, layout, bt) = layouts.iter().find(|l| l.0 == (m, ec)).expect("built");
            Graph::from_layout(layout.clone(), &set, config(m, ec, 10, q), spec.engine, *bt)
        })
        .collect();
    // best[(entry, ef)] = (recall, min µs)
    let mut best: Vec<Vec<(f64, f64)>> = again
        .iter()
        .map(|a| vec![(0.0, f64::INFINITY); a.1.len()])
        .collect();
    let mut round_log = Vec::new();
    for round in 0..spec.rounds {
        let order: Vec<usize> = if round % 2 == 0 {
            (0..again.len()).collect()
        } else {
            (0..again.len()).rev().collect()
        };
        let mut line = Vec::new();
        for e in order {
            for (j, &ef) in again[e].1.iter().enumerate() {
                let (found, us) = batch(&graphs[e], &set, &queries, ef);
                let r = recall(&found, &truth, 10);
                best[e][j] = (r, best[e][j].1.min(us));
                let s = &sweeps[again[e].0];
                line.push(json!({"m": s.0, "ef_construction": s.1, "quantization": s.2.as_str(), "ef_search": ef, "recall_at_10": r, "mean_us": us}));
            }
        }
        eprintln!(
            "round {round}: {}",
            serde_json::to_string(&line).unwrap_or_default()
        );
        round_log.push(Value::Array(line));
    }
    let finals: Vec<Value> = again
        .iter()
        .enumerate()
        .map(|(e, (i, efs_again))| {
            let s = &sweeps[*i];
            let mut pts: Vec<(usize, f64, f64)> = efs_again.iter().zip(&best[e]).map(|(&ef, &(r, us))| (ef, r, us)).collect();
            pts.sort_by_key(|p| p.0);
            let at = at_target(&pts, spec.target);
            json!({"m": s.0, "ef_construction": s.1, "quantization": s.2.as_str(),
                   "points": pts.iter().map(|p| json!({"ef_search": p.0, "recall_at_10": p.1, "min_mean_us": p.2})).collect::<Vec<_>>(),
                   "mean_us_at_target": at.map(|a| a.0)})
        })
        .collect();
    let best_grid = finals
        .iter()
        .filter_map(|f| f["mean_us_at_target"].as_f64().map(|us| (us, f)))
        .min_by(|a, b| a.0.total_cmp(&b.0));
    let pick = pick_at.map(|(i, ef)| {
        let e = again.iter().position(|a| a.0 == i).expect("pick measured");
        let j = again[e]
            .1
            .iter()
            .position(|&x| x == ef)
            .expect("pick's ef measured");
        let (r, us) = best[e][j];
        json!({"m": sweeps[i].0, "ef_construction": sweeps[i].1, "ef_search": ef,
               "quantization": sweeps[i].2.as_str(), "recall_at_10": r, "min_mean_us": us,
               "ratio_to_best_grid": best_grid.map(|b| us / b.0)})
    });
    json!({
        "vectors": set.len(), "dims": set.dims(), "queries": queries.len(),
        "metric": spec.metric.as_str(), "engine": spec.engine.as_str(),
        "kernels": vectune::kernels::level().as_str(), "build_threads": threads,
        "target": spec.target, "builds": lattice.len(), "configs": sweeps.len(),
        "secs": started.elapsed().as_secs_f64(),
        "sweeps": sweeps.iter().map(|s| json!({"m": s.0, "ef_construction": s.1, "quantization": s.2.as_str(),
            "build_secs": s.3, "mean_us_at_target": at_target(&s.4, spec.target).map(|a| a.0),
            "points": s.4.iter().map(|p| json!({"ef_search": p.0, "recall_at_10": p.1, "mean_us": p.2})).collect::<Vec<_>>()})).collect::<Vec<_>>(),
        "rounds": round_log,
        "finals": finals,
        "best_grid": best_grid.map(|b| b.1.clone()),
        "pick": pick,
    })
}

/// One HTTP/1.1 POST on a keep-alive connection; returns the body.
fn post(conn: &mut TcpStream, host: &str, path: &str, body: &[u8], buf: &mut Vec<u8>) -> Vec<u8> {
    request(conn, "POST", host, path, body, buf)
}

/// One HTTP/1.1 request on a keep-alive connection; returns the body.
fn request(
    conn: &mut TcpStream,
    method: &str,
    host: &str,
    path: &str,
    body: &[u8],
    buf: &mut Vec<u8>,
) -> Vec<u8> {
    let head = if method == "GET" {
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n")
    } else {
        format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
    };
    conn.write_all(head.as_bytes()).unwrap();
    conn.write_all(body).unwrap();
    buf.clear();
    let mut chunk = [0u8; 65536];
    loop {
        let n = conn.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let headers = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = headers
                .lines()
                .find_map(|l| {
                    l.strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .expect("content-length");
            while buf.len() < end + 4 + len {
                let n = conn.read(&mut chunk).unwrap();
                assert!(n > 0, "connection closed");
                buf.extend_from_slice(&chunk[..n]);
            }
            return buf[end + 4..end + 4 + len].to_vec();
        }
    }
}

fn http(base: &str, index: &str, data: &Path, ef_list: &[usize]) -> Value {
    let host = base.trim_start_matches("http://").trim_end_matches('/');
    let mut conn = TcpStream::connect(host).expect("connect");
    conn.set_nodelay(true).unwrap();
    let (dims, qflat) = read_f32(&data.join("query.fvecs"));
    let truth = read_vecs(&data.join("groundtruth.ivecs"));
    let bodies: Vec<Vec<Vec<u8>>> = ef_list
        .iter()
        .map(|ef| {
            qflat
                .chunks_exact(dims)
                .map(|q| serde_json::to_vec(&json!({"vector": q, "k": 10, "ef_search": ef})).unwrap())
                .collect()
        })
        .collect();
    let path = format!("/vectors/search/{index}");
    let mut buf = Vec::new();
    // the floor: a request the server answers without any work (GET /health)
    let mut floor = Vec::new();
    for i in 0..600 {
        let t = Instant::now();
        request(&mut conn, "GET", host, "/health", b"", &mut buf);
        if i >= 100 {
            floor.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    floor.sort_by(f64::total_cmp);
    let mut rows = Vec::new();
    for (ef, bodies) in ef_list.iter().zip(&bodies) {
        for b in bodies {
            post(&mut conn, host, &path, b, &mut buf);
        }
        let mut lat = Vec::new();
        let mut found = Vec::new();
        for b in bodies {
            let t = Instant::now();
            let resp = post(&mut conn, host, &path, b, &mut buf);
            lat.push(t.elapsed().as_secs_f64() * 1e6);
            let v: Value = serde_json::from_slice(&resp).unwrap();
            found.push(
                v["hits"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|h| h["id"].as_str().unwrap().parse::<u32>().unwrap())
                    .collect::<Vec<u32>>(),
            );
        }
        lat.sort_by(f64::total_cmp);
        rows.push(
            json!({"ef_search": ef, "recall_at_10": recall(&found, &truth, 10),
                         "p50_us": percentile(&lat, 50.0), "p99_us": percentile(&lat, 99.0)}),
        );
    }
    json!({"http": rows, "floor_p50_us": percentile(&floor, 50.0)})
}

fn quantization_of(s: &str) -> Quantization {
    match s {
        "none" => Quantization::None,
        "sq8" => Quantization::Sq8,
        "sq4" => Quantization::Sq4,
        "rabitq" => Quantization::Rabitq,
        other => panic!("--quantization none|sq8|sq4|rabitq, not {other}"),
    }
}

/// Generates the set and writes its three files; what it made, as JSON.
fn synth(dir: &Path, spec: &vectune::harness::synth::SynthSpec) -> Value {
    use vectune::harness::synth;
    let t = Instant::now();
    let set = synth::generate(spec).unwrap_or_else(|e| {
        eprintln!("vectune-bench synth: {e}");
        std::process::exit(2)
    });
    let secs = t.elapsed().as_secs_f64();
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    let write = |name: &str, f: &dyn Fn(&mut std::io::BufWriter<std::fs::File>) -> std::io::Result<()>| {
        let path = dir.join(name);
        let file = std::fs::File::create(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        let mut w = std::io::BufWriter::new(file);
        f(&mut w)
            .and_then(|_| w.flush())
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    };
    write("base.fvecs", &|w| synth::write_fvecs(w, &set.base, set.dims));
    write("query.fvecs", &|w| synth::write_fvecs(w, &set.queries, set.dims));
    write("groundtruth.ivecs", &|w| synth::write_ivecs(w, &set.truth));
    json!({
        "out": dir.display().to_string(),
        "n": spec.n, "dims": spec.dims, "queries": spec.queries, "k": spec.k,
        "components": spec.components, "latent": spec.latent, "seed": spec.seed,
        "generate_and_truth_secs": secs,
    })
}

fn main() {
    let out = match Cli::parse().cmd {
        Cmd::Synth {
            out,
            n,
            dims,
            queries,
            k,
            components,
            latent,
            seed,
        } => synth(
            &out,
            &vectune::harness::synth::SynthSpec {
                n,
                queries,
                dims,
                components,
                latent,
                k,
                seed,
            },
        ),
        Cmd::Kernels => {
            let levels: Vec<&str> = vectune::kernels::supported().iter().map(|l| l.as_str()).collect();
            println!("{}", levels.join(" "));
            return;
        }
        Cmd::Inproc {
            data,
            metric,
            m,
            ec,
            efs: e,
            no_serial,
            quantization,
            engine,
            seed,
            patience,
        } => inproc(
            &data,
            Metric::parse(&metric).expect("metric"),
            m,
            ec,
            &efs(&e),
            no_serial,
            quantization_of(&quantization),
            Engine::parse(&engine).expect("--engine native|native_sq8|hnsw_rs"),
            seed,
            patience,
        ),
        Cmd::Grid {
            data,
            metric,
            ms,
            ecs,
            quantizations,
            efs: e,
            target,
            pick,
            leaders,
            rounds,
            engine,
        } => grid(&GridSpec {
            data,
            metric: Metric::parse(&metric).expect("metric"),
            ms: efs(&ms),
            ecs: efs(&ecs),
            quantizations: quantizations
                .split(',')
                .map(|q| quantization_of(q.trim()))
                .collect(),
            efs: efs(&e),
            target,
            pick: pick.map(|p| {
                let f: Vec<&str> = p.split(',').map(str::trim).collect();
                assert_eq!(f.len(), 4, "--pick m,ef_construction,ef_search,quantization");
                let n = |s: &str| s.parse::<usize>().expect("--pick numbers");
                (n(f[0]), n(f[1]), n(f[2]), quantization_of(f[3]))
            }),
            leaders,
            rounds,
            engine: Engine::parse(&engine).expect("--engine native|native_sq8"),
        }),
        Cmd::Http {
            base,
            index,
            data,
            efs: e,
        } => http(&base, &index, &data, &efs(&e)),
        Cmd::Extend {
            data,
            metric,
            base,
            m,
            ec,
            engine,
            threads,
            efs: e,
        } => extend(
            &data,
            Metric::parse(&metric).expect("metric"),
            base,
            HnswConfig::new(ec, 10, m, 42).expect("config in bounds"),
            Engine::parse(&engine).expect("--engine native|native_sq8"),
            threads,
            &efs(&e),
        ),
    };
    println!("{}", serde_json::to_string_pretty(&out).unwrap());
}
