//! Measurement: one config's graph timed and scored on prepared queries, or several
//! graphs timed interleaved on the same queries, and the brute-force cost of those queries.
//!
//! Below the tuning engine and the agent (they decide from what is measured here) and above
//! `hnsw`, `vectors` and `harness` (what is measured). One measurement at a time runs in the
//! process: latencies measured beside another measurement would measure the contention.
//!
//! Why paired and interleaved ([`measure_paired`]): comparing two p50s taken minutes apart
//! on a shared machine promoted a config over itself in 4 of 4 runs; timing both configs
//! on each query within milliseconds of each other (block by block of queries), in an
//! order that rotates round after round, puts them under the same conditions, and
//! [`crate::stats::ratio_interval`] decides on the per-query ratio.

use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::harness::ground_truth;
use crate::hnsw::{Graph, Knobs};
use crate::stats::{percentile, ratio_interval, wilson_lower, wilson_upper, Effect};
use crate::trials::TrialMetrics;
use crate::vectors::VectorSet;

/// Rounds of an interleaved comparison (each query timed this many times per config).
pub const ROUNDS: usize = 5;

/// Queries an exact search is timed on at most, evenly spaced over the harness.
///
/// Why not all: an exact search does the same work for every query (a distance to each
/// row, a top-`k`), so its mean is known within a few percent from a handful, while timing
/// every query cost a 1M-row run 58 s of its 284 (800 queries × 73 ms) — for a figure
/// trials are only read against.
pub const BRUTE_FORCE_QUERIES: usize = 16;

/// Positions of the queries [`brute_force_latency_us`] times among `len`: all of them up to
/// [`BRUTE_FORCE_QUERIES`], else that many evenly spaced.
fn brute_force_sample(len: usize) -> impl Iterator<Item = usize> {
    let n = len.min(BRUTE_FORCE_QUERIES);
    (0..n).map(move |i| i * len / n)
}

/// Mean exact brute-force time per query on `queries` (at most [`BRUTE_FORCE_QUERIES`] of
/// them), one thread, µs: the scale a trial's latency is read against. It depends on the
/// vectors and queries only, not on the graph, so a run measures it once per scope (the
/// sample, the full index), not once per trial.
pub fn brute_force_latency_us(set: &VectorSet, queries: &[Vec<f32>], k: usize) -> f64 {
    let _alone = MEASURE.lock().unwrap_or_else(|p| p.into_inner());
    let start = Instant::now();
    let mut timed = 0usize;
    for i in brute_force_sample(queries.len()) {
        let _ = std::hint::black_box(ground_truth::exact_with_threads(
            set,
            std::slice::from_ref(&queries[i]),
            k,
            1,
        ));
        timed += 1;
    }
    match timed {
        0 => 0.0,
        n => start.elapsed().as_secs_f64() * 1e6 / n as f64,
    }
}

/// Timed passes over the queries; a query's latency is the median of its passes, so one
/// preempted run on a shared machine does not become a p99.
pub const REPEATS: usize = 3;

/// Queries each graph of an interleaved comparison searches in turn: enough that a block's
/// paths no longer fit the cache at 1M rows (256 queries touch ~100 MB of links, codes and
/// rows), few enough that both sides of a pair are timed within milliseconds of each other.
pub const PAIRED_BLOCK: usize = 256;

/// One measurement at a time in this process: latencies measured while another
/// measurement runs would measure the contention.
static MEASURE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Measures `graph` (built over the first `graph.len()` rows of `set`) at `ef` on
/// prepared queries with their exact top-`k` rows: one warm-up pass, then [`REPEATS`]
/// timed passes, each query once per pass with a monotonic clock (median per query,
/// percentiles over queries), distance evaluations counted exactly on the first.
/// CPU-heavy: run it on a blocking thread; it holds the process-wide measurement lock.
///
/// Why passes and not a query repeated back to back: serving meets a query with the cache
/// as the other queries left it. Repeated back to back, a query finds its own path warm —
/// harmless while the index fits the cache, but at 1M rows it read a config several times
/// faster than it serves, and favoured configs whose distances are cheap over configs
/// whose memory reads are few (codes beside the links).
///
/// `cancel` is read between queries: a cancelled job stops within one query's search, not
/// one sweep, and `None` is returned (a half-measured trial is no trial).
#[allow(clippy::too_many_arguments)]
pub fn measure(
    set: &VectorSet,
    graph: &Graph,
    knobs: Knobs,
    queries: &[Vec<f32>],
    truth: &[Vec<u32>],
    k: usize,
    brute_force_latency_us: f64,
    cancel: &CancellationToken,
) -> Option<TrialMetrics> {
    let _alone = MEASURE.lock().unwrap_or_else(|p| p.into_inner());
    for q in queries {
        if cancel.is_cancelled() {
            return None;
        }
        std::hint::black_box(graph.search_with(set, q, k, knobs, None));
    }
    let mut evals = 0u64;
    // runs[q * REPEATS + pass]; neighbours found per query on the first pass
    let mut runs = vec![0f64; queries.len() * REPEATS];
    let mut got = vec![0usize; queries.len()];
    for pass in 0..REPEATS {
        for (qi, (q, t)) in queries.iter().zip(truth).enumerate() {
            if cancel.is_cancelled() {
                return None;
            }
            let start = Instant::now();
            let hits = graph.search_with(set, q, k, knobs, (pass == 0).then_some(&mut evals));
            runs[qi * REPEATS + pass] = start.elapsed().as_secs_f64() * 1e6;
            if pass == 0 {
                got[qi] = found_of(&hits, t, k);
            }
        }
    }
    let mut lat = medians(&mut runs, REPEATS);
    let (mut found, mut slots) = (0usize, 0usize);
    let mut per_query = Vec::with_capacity(queries.len());
    for (t, &g) in truth.iter().zip(&got) {
        let want = t.len().min(k);
        if want > 0 {
            per_query.push(g as f32 / want as f32);
        }
        found += g;
        slots += want;
    }
    let mean = lat.iter().sum::<f64>() / lat.len().max(1) as f64;
    lat.sort_by(f64::total_cmp);
    let rows = graph.len();
    let nq = queries.len().max(1) as f64;
    Some(TrialMetrics {
        build_time_secs: graph.build_time().as_secs_f64(),
        search_latency_p50_us: percentile(&lat, 50.0),
        search_latency_p95_us: percentile(&lat, 95.0),
        search_latency_p99_us: percentile(&lat, 99.0),
        recall_at_k: if slots == 0 {
            0.0
        } else {
            found as f64 / slots as f64
        },
        memory_bytes: (graph.memory_bytes() + rows * set.dims() * 4) as u64,
        vectors: rows as u64,
        eval_queries: queries.len() as u64,
        brute_force_latency_us,
        recall_ci_low: wilson_lower(found, slots),
        distance_evals_per_query: evals as f64 / nq,
        search_latency_mean_us: mean,
        qps: if mean > 0.0 { 1e6 / mean } else { 0.0 },
        recall_p10: recall_p10(&per_query),
        per_query_recall: per_query,
    })
}

/// Measures several graphs (each at its `ef`) interleaved on the same queries: after a
/// warm-up pass, round after round each block of [`PAIRED_BLOCK`] queries is searched on
/// every graph in turn, in an order that rotates with the round and the block, so no config
/// is always the first (or second) to touch a query, and none finds the cache warmed by the
/// other's search of the same query a moment before (see [`measure`]). Per graph and query
/// the latency is the median over the rounds; found neighbours are counted on the first
/// round. `None` when cancelled.
pub fn measure_paired(
    set: &VectorSet,
    graphs: &[(&Graph, Knobs)],
    queries: &[Vec<f32>],
    truth: &[Vec<u32>],
    k: usize,
    rounds: usize,
    cancel: &CancellationToken,
) -> Option<Paired> {
    let _alone = MEASURE.lock().unwrap_or_else(|p| p.into_inner());
    let n = graphs.len();
    for q in queries {
        for (g, knobs) in graphs {
            std::hint::black_box(g.search_with(set, q, k, *knobs, None));
        }
    }
    let rounds = rounds.max(1);
    // times[g][q * rounds + r]
    let mut times = vec![vec![0f64; queries.len() * rounds]; n];
    let mut found = vec![vec![0u32; queries.len()]; n];
    for r in 0..rounds {
        for (b, block) in queries.chunks(PAIRED_BLOCK).enumerate() {
            for j in 0..n {
                let gi = (j + r + b) % n;
                let (g, knobs) = graphs[gi];
                for (o, q) in block.iter().enumerate() {
                    if cancel.is_cancelled() {
                        return None;
                    }
                    let qi = b * PAIRED_BLOCK + o;
                    let start = Instant::now();
                    let hits = g.search_with(set, q, k, knobs, None);
                    times[gi][qi * rounds + r] = start.elapsed().as_secs_f64() * 1e6;
                    if r == 0 {
                        found[gi][qi] = found_of(&hits, &truth[qi], k) as u32;
                    }
                }
            }
        }
    }
    let latency_us = times.iter_mut().map(|t| medians(t, rounds)).collect();
    Some(Paired {
        latency_us,
        found,
        slots: truth.iter().map(|t| t.len().min(k) as u32).collect(),
        rounds,
    })
}

/// Of a query's exact top-`k` rows (`truth`, best first), how many `hits` found.
fn found_of(hits: &[crate::hnsw::Hit], truth: &[u32], k: usize) -> usize {
    let want = &truth[..truth.len().min(k)];
    hits.iter().filter(|h| want.contains(&h.row)).count()
}

/// The median of each run of `per` timings in `times` (one query's repeats, laid out
/// query after query); `times` is left sorted within each run.
fn medians(times: &mut [f64], per: usize) -> Vec<f64> {
    times
        .chunks_mut(per.max(1))
        .map(|c| {
            c.sort_by(f64::total_cmp);
            c[c.len() / 2]
        })
        .collect()
}

/// The 10th percentile (nearest rank) of per-query recall.
pub fn recall_p10(per_query: &[f32]) -> f64 {
    let mut v: Vec<f64> = per_query.iter().map(|&r| r as f64).collect();
    v.sort_by(f64::total_cmp);
    percentile(&v, 10.0)
}

/// Per-query figures of configs measured interleaved on the same queries.
#[derive(Debug, Clone, PartialEq)]
pub struct Paired {
    /// Per config: per query, its median latency over the rounds, µs.
    pub latency_us: Vec<Vec<f64>>,
    /// Per config: exact neighbours found, per query.
    pub found: Vec<Vec<u32>>,
    /// Exact neighbours asked for, per query (the same slots for every config).
    pub slots: Vec<u32>,
    /// Rounds measured.
    pub rounds: usize,
}

impl Paired {
    /// Recall of config `i` over all slots, with its Wilson bounds `(recall, low, high)`.
    pub fn recall(&self, i: usize) -> (f64, f64, f64) {
        let found: usize = self.found[i].iter().map(|&f| f as usize).sum();
        let slots: usize = self.slots.iter().map(|&s| s as usize).sum();
        let r = if slots == 0 {
            0.0
        } else {
            found as f64 / slots as f64
        };
        (r, wilson_lower(found, slots), wilson_upper(found, slots))
    }

    /// A query-level lower bound, at `1 - alpha`, of config `i`'s recall: per-query recall
    /// on these queries, its spread over them ([`crate::stats::mean_lower_bound`]).
    pub fn query_recall_low(&self, i: usize, alpha: f64) -> f64 {
        let per_query: Vec<f64> = self.found[i]
            .iter()
            .zip(&self.slots)
            .filter(|(_, &s)| s > 0)
            .map(|(&f, &s)| f as f64 / s as f64)
            .collect();
        crate::stats::mean_lower_bound(&per_query, alpha)
    }

    /// The latency effect of config `b` against config `a`.
    pub fn effect(&self, a: usize, b: usize) -> Effect {
        ratio_interval(&self.latency_us[a], &self.latency_us[b])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tail figure: nearest rank over per-query recall (10 queries: the lowest; 20: the
    /// second lowest), empty is 0.
    #[test]
    fn recall_p10_is_the_nearest_rank_tenth_percentile() {
        let ten: Vec<f32> = (0..10).map(|i| 0.5 + 0.05 * i as f32).collect();
        assert_eq!(recall_p10(&ten), 0.5);
        let mut twenty: Vec<f32> = (0..20).map(|i| 1.0 - 0.01 * i as f32).collect();
        twenty.reverse();
        assert!(
            (recall_p10(&twenty) - 0.82).abs() < 1e-6,
            "{}",
            recall_p10(&twenty)
        );
        assert_eq!(recall_p10(&[]), 0.0);
        assert_eq!(recall_p10(&[1.0; 7]), 1.0);
    }

    /// The exact search is timed on every query of a small harness, and on a bounded,
    /// evenly spread, duplicate-free share of a large one.
    #[test]
    fn brute_force_is_timed_on_a_bounded_spread_of_queries() {
        assert_eq!(brute_force_sample(0).count(), 0);
        assert_eq!(brute_force_sample(5).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
        let big: Vec<usize> = brute_force_sample(800).collect();
        assert_eq!(big.len(), BRUTE_FORCE_QUERIES);
        assert!(big.windows(2).all(|w| w[1] - w[0] == 50), "{big:?}");
        let odd: Vec<usize> = brute_force_sample(17).collect();
        assert_eq!(odd.len(), BRUTE_FORCE_QUERIES);
        assert!(odd.windows(2).all(|w| w[0] < w[1]) && odd[15] < 17, "{odd:?}");
        let ids = (0..100).map(|i| format!("r{i}")).collect();
        let data = (0..400).map(|i| i as f32).collect();
        let set = VectorSet::from_rows(4, crate::distance::Metric::L2, ids, data);
        let queries: Vec<Vec<f32>> = (0..40).map(|i| vec![i as f32; 4]).collect();
        let us = brute_force_latency_us(&set, &queries, 3);
        assert!(us.is_finite() && us > 0.0, "{us}");
        assert_eq!(brute_force_latency_us(&set, &[], 3), 0.0);
    }

    #[test]
    fn paired_recall_uses_the_same_slots() {
        let p = Paired {
            latency_us: vec![vec![1.0, 1.0], vec![1.0, 1.0]],
            found: vec![vec![10, 8], vec![10, 10]],
            slots: vec![10, 10],
            rounds: 1,
        };
        let (r0, lo0, hi0) = p.recall(0);
        assert!((r0 - 0.9).abs() < 1e-12 && lo0 < 0.9 && hi0 > 0.9);
        assert_eq!(p.recall(1).0, 1.0);
    }
}
