//! Sample-and-transfer: for a large index, graph parameters (`m`, `ef_construction`,
//! quantization) are explored on a uniform sample of its rows, and only the leading graphs
//! are built on the full index, where `ef_search` and the gate are decided against the full
//! ground truth.
//!
//! Why it holds: a graph's quality ranks the same on a uniform sample as on the whole (the
//! sample has the same density structure, only sparser), while what changes with size is
//! how far a search must look — the `ef_search` a recall needs grows with n. So the sample
//! ranks graphs, and the full index decides `ef_search`. A build on a tenth of the rows
//! costs about a twentieth of the full one ([`super::forecast::size_scale`]), so a climb of
//! ten builds on a sample costs under one full build.
//!
//! This module holds the rules (when to sample and how much and on which builder, which
//! graphs lead, how the full index's `ef_search` is found) and what a run reports of it;
//! the run loop ([`super::engine`]) drives them; [`super::forecast`] says what builds cost.

use serde::{Deserialize, Serialize};

use super::spec::Sampling;
use super::Candidate;
use crate::params::{Engine, HnswConfig};

/// Indexes of at least this many rows are sampled when the request leaves it to the run.
pub const SAMPLE_FROM: usize = 250_000;
/// Rows of an automatic sample at least (a smaller one ranks graphs too noisily).
pub const SAMPLE_MIN: usize = 50_000;
/// Rows of an automatic sample at most: past this a sample's builds are themselves slow.
pub const SAMPLE_MAX: usize = 1_000_000;
/// Share of the budget the sample's exploration may take: the rest pays for the full
/// builds and the `ef_search` probes on the full index.
pub const SAMPLE_BUDGET_SHARE: f64 = 0.4;
/// Share of the time left after the sample's exploration that the first full build may
/// take: the sample explores no graph whose full build would not fit (the rest is the
/// `ef_search` probes, the held-out check and the comparisons).
pub const FULL_BUILD_SHARE: f64 = 0.75;
/// Runs of fewer `max_trials` are not sampled: a sample and a full index need a few each.
pub const MIN_SAMPLED_TRIALS: usize = 4;
/// Graphs transferred to the full index at most.
pub const MAX_LEADING: usize = 2;
/// A second leading graph is built on the full index even when the first passes there if
/// its cost on the sample is within this fraction of the first's: a near-tie on the sample
/// is decided on the full index — when their builds cost alike ([`LEADING_BUILD_NEAR`]).
pub const LEADING_NEAR: f64 = 0.10;
/// Near-tied graphs whose sample builds differ by more than this fraction are not both
/// built on the full index: the one cheaper to build leads alone. Why: the sample cannot
/// tell them apart in serving, and the full build is most of a large run's wall — at 1M a
/// near-tie of m 24 / efC 160 with efC 320 (a build 1.6× as long) took the run from 211 s to
/// 485 s for a winner the sample had called equal.
pub const LEADING_BUILD_NEAR: f64 = 0.25;
/// Share of the full index's misses the sample may make: the sample's bar is
/// `1 - (1 - target) · SAMPLE_MISS_SHARE`. A sample misses fewer neighbours than the full
/// index at the same config (measured at 1M rows with a tenth sampled: .964 there, .917 on
/// the whole), and a graph that only just passes on the sample can saturate below the
/// target on the full index however wide its search; ranking graphs at a stricter bar
/// favours those with headroom.
pub const SAMPLE_MISS_SHARE: f64 = 0.5;
/// The `ef_search` probes stop once the passing and failing values are this close
/// (relative to the passing one).
pub const EF_TOLERANCE: f64 = 0.05;

/// Rows of the sample a run of `rows` rows explores on under `sampling`; `None`: tune the
/// index whole.
pub fn sample_rows(rows: usize, sampling: Sampling) -> Option<usize> {
    match sampling {
        Sampling::Off => None,
        Sampling::Rows(s) => (s < rows).then_some(s),
        Sampling::Auto if rows < SAMPLE_FROM => None,
        Sampling::Auto => Some((rows / 10).clamp(SAMPLE_MIN, SAMPLE_MAX).min(rows)),
    }
}

/// The builder of a sample's graphs when the index's builder is `engine`: the native
/// builder on SQ8 codes (`native_sq8`) in place of the native one on the rows.
///
/// Why: a sample's graphs only rank configs — they are never stored, served or activated
/// (the leading graph is built on the full index by the index's own builder) — and a build
/// on codes reads a quarter of the bytes per distance: at 100k × 128 1.5–1.8× faster on a
/// Zen 4 with VNNI (1.15–1.26× on an AVX2-only Zen 3), with
/// recall at every `ef_search` within .0011 of the native graph's (BENCHMARKS, Engine III
/// fourth step), well inside the transfer error a sample already has. The reference builder
/// (hnsw_rs) stays itself: a run on it is asked to measure that builder's graphs.
pub fn sample_engine(engine: Engine) -> Engine {
    match engine {
        Engine::Native | Engine::NativeSq8 => Engine::NativeSq8,
        Engine::HnswRs => Engine::HnswRs,
    }
}

/// The sample's bar for a run whose bar is `recall` ([`SAMPLE_MISS_SHARE`]).
pub fn sample_bar(recall: f64) -> f64 {
    1.0 - (1.0 - recall) * SAMPLE_MISS_SHARE
}

/// The graphs the sample's exploration ranks first, each at the `ef_search` it passed with
/// there: the cheapest passing by exact distance evaluations, and the second cheapest too
/// when the sample cannot tell them apart ([`LEADING_NEAR`]; at most [`MAX_LEADING`]) and
/// their builds cost alike (else the cheaper build alone, [`LEADING_BUILD_NEAR`]). When
/// none passed, the one with the highest recall (the full index may pass it with a larger
/// `ef_search`, or a [`stronger`] build of it). `quantization`: the climb's choice, when it
/// made one.
pub fn leading(
    candidates: &[Candidate],
    can_win: &dyn Fn(&Candidate) -> bool,
    quantization: Option<crate::params::Quantization>,
    engine: Engine,
) -> Vec<HnswConfig> {
    let mut best: Vec<&Candidate> = Vec::new();
    let mut passing: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| can_win(c))
        .filter(|c| quantization.is_none_or(|q| c.config.quantization == q))
        .collect();
    // early termination does not transfer: how soon a search may stop depends on the
    // graph's size (a patience tuned on the sample capped recall at .95 on a 1M index at any
    // ef_search), so graphs are carried over with it off when the sample passed them so
    if passing.iter().any(|c| c.config.patience == 0) {
        passing.retain(|c| c.config.patience == 0);
    }
    // nothing passed: the graph with the highest recall, else the cheapest passing one
    let none_pass = passing.is_empty();
    let pool: Vec<&Candidate> = if none_pass {
        candidates.iter().collect()
    } else {
        passing
    };
    let better = |c: &Candidate, b: &Candidate| match none_pass {
        true => c.recall_at_k > b.recall_at_k,
        false => c.distance_evals_per_query < b.distance_evals_per_query,
    };
    for c in pool {
        let id = c.config.graph_id(engine);
        match best.iter_mut().find(|b| b.config.graph_id(engine) == id) {
            Some(b) if better(c, b) => *b = c,
            Some(_) => {}
            None => best.push(c),
        }
    }
    if none_pass {
        best.sort_by(|a, b| b.recall_at_k.total_cmp(&a.recall_at_k));
        best.truncate(1);
    } else {
        best.sort_by(|a, b| a.distance_evals_per_query.total_cmp(&b.distance_evals_per_query));
        // a second graph only when the sample cannot tell them apart, and their builds
        // cost alike; else the cheaper build of a near-tie leads alone
        match best[..] {
            [first, second, ..]
                if second.distance_evals_per_query
                    <= first.distance_evals_per_query * (1.0 + LEADING_NEAR) =>
            {
                let (f, s) = (first.build_time_secs, second.build_time_secs);
                if s * (1.0 + LEADING_BUILD_NEAR) < f {
                    best.swap(0, 1);
                    best.truncate(1);
                } else if f * (1.0 + LEADING_BUILD_NEAR) < s {
                    best.truncate(1);
                } else {
                    best.truncate(MAX_LEADING);
                }
            }
            _ => best.truncate(1),
        }
    }
    best.into_iter().map(|c| c.config).collect()
}

/// A graph stronger than `g` within `bounds`: twice the `ef_construction` (a graph built
/// with too narrow a beam saturates on a large index however wide its search), else half
/// as many links again; `None` at both bounds.
pub fn stronger(g: &HnswConfig, bounds: &crate::params::Bounds) -> Option<HnswConfig> {
    if g.ef_construction < bounds.max_ef_construction {
        let ef_construction = (g.ef_construction * 2).min(bounds.max_ef_construction);
        return Some(HnswConfig {
            ef_construction,
            ..*g
        });
    }
    (g.m < bounds.max_m).then(|| HnswConfig {
        m: (g.m + g.m / 2).clamp(g.m + 1, bounds.max_m),
        ..*g
    })
}

/// The `ef_search` probes of the leading graphs on the full index: each graph starts at the
/// `ef_search` it passed with on the sample, doubles it until it passes (a larger index
/// needs more), steps down the ladder while it still passes, then bisects between the last
/// failing and the first passing value. When the first graph passes, a second leading one
/// (a near-tie on the sample) is measured too and the usual steps decide between them; when
/// it cannot pass within the bounds, it was too weak for the full index (a graph built with
/// too narrow a beam saturates there however wide its search) and a [`stronger`] build of it
/// is next, up to the bounds.
///
/// The first graph to pass is also measured in its **twin quantizations** (the same links,
/// codes derived: no build), each from the `ef_search` it passed with, before the near-tie:
/// which codes serve a graph fastest depends on the index's size, not only on the graph.
/// Measured at 1M × 128 (`vectune-bench grid`, each query once per pass): the sample's
/// choice, sq8, served m 24 / efC 160 at recall .95 in 66 µs, its RaBitQ twin in 31 µs —
/// on the 100,000-row sample, which the cache mostly holds, sq8 had ranked first.
///
/// The walk reads **no latency**: every graph and twin climbs until it passes or reaches the
/// top, whatever its probes' timings. Leaving a twin whose failing probe was slower than the
/// fastest passing config (tried: it saved 2–3 s at 1M) let timing noise decide which
/// twins were walked up to the bar; the gate's selection correction counts the graphs near
/// the bar, so two runs of the same request on the same data served ef 37 and ef 40 (the
/// SQ4 twin walked to ef 40 in one, left at ef 20 in the other). The same measurements give
/// the same winner.
#[derive(Debug, Clone)]
pub struct Transfer {
    leading: Vec<HnswConfig>,
    /// Quantizations the first passing graph is measured in besides its own.
    twins: Vec<crate::params::Quantization>,
    /// Whether the twins were queued (once, for the first graph that passed).
    twinned: bool,
    bounds: crate::params::Bounds,
    at: usize,
    /// The `ef_search` rungs within the run's bounds, ascending.
    ladder: Vec<u32>,
    pass: Option<u32>,
    fail: Option<u32>,
    tried: Vec<u32>,
    /// Graphs that passed on the full index.
    passed: usize,
    engine: Engine,
}

impl Transfer {
    /// Probes of `leading` ([`leading`]) on the `ladder`'s rungs within `bounds`, the first
    /// passing graph's `twins` too.
    pub fn new(
        leading: Vec<HnswConfig>,
        twins: Vec<crate::params::Quantization>,
        ladder: Vec<u32>,
        bounds: crate::params::Bounds,
        engine: Engine,
    ) -> Transfer {
        Transfer {
            leading,
            twins,
            twinned: false,
            bounds,
            at: 0,
            ladder,
            pass: None,
            fail: None,
            tried: Vec::new(),
            passed: 0,
            engine,
        }
    }

    /// The graphs transferred.
    pub fn leading(&self) -> &[HnswConfig] {
        &self.leading
    }

    /// Moves to the next graph after the current one `passed` (or not): after the first
    /// passed, its twins, then the second leading graph if there is one; after a failure
    /// with nothing passed, a [`stronger`] build of the failed graph; `false` when done.
    fn next_graph(&mut self, passed: bool) -> bool {
        let current = self.leading[self.at];
        let ef = self.pass.unwrap_or(current.ef_search);
        self.at += 1;
        self.pass = None;
        self.fail = None;
        self.tried.clear();
        if passed && !self.twinned {
            self.twinned = true;
            let twins: Vec<HnswConfig> = self
                .twins
                .iter()
                .filter(|&&q| q != current.quantization)
                .map(|&q| HnswConfig {
                    ef_search: ef,
                    ..current.with_quantization(q)
                })
                .collect();
            self.leading.splice(self.at..self.at, twins);
        }
        if self.passed > 0 {
            // one passed: its twins and the near-tie are measured, each once, then done
            return self.at < self.leading.len();
        }
        match stronger(&current, &self.bounds) {
            Some(g) => {
                self.leading.truncate(self.at);
                self.leading.push(g);
                true
            }
            None => false,
        }
    }

    /// The next config to measure on the full index, `None` when done. `affordable` says
    /// whether the budget pays for a graph's full build (asked before each graph after the
    /// first).
    pub fn next(&mut self, affordable: &dyn Fn(&HnswConfig) -> bool) -> Option<HnswConfig> {
        loop {
            let g = *self.leading.get(self.at)?;
            // a twin of a graph measured before needs no build
            let derived = self.leading[..self.at]
                .iter()
                .any(|p| p.links_id(self.engine) == g.links_id(self.engine));
            if self.at > 0 && self.tried.is_empty() && !derived && !affordable(&g) {
                return None;
            }
            let top = self
                .ladder
                .last()
                .copied()
                .unwrap_or(g.ef_search)
                .max(g.ef_search);
            let ef = match (self.pass, self.fail) {
                _ if self.tried.is_empty() => Some(g.ef_search),
                // failing so far: the next rung up
                (None, Some(f)) if f >= top => None,
                (None, Some(f)) => Some(f.saturating_mul(2).min(top)),
                (None, None) => None,
                // passing, nothing below tried: the next rung down
                (Some(p), None) => self.ladder.iter().copied().rev().find(|&r| r < p),
                (Some(p), Some(f)) => {
                    let gap = f64::from(p - f.min(p));
                    (gap > (f64::from(p) * EF_TOLERANCE).max(1.0)).then(|| f + (p - f) / 2)
                }
            };
            match ef.filter(|e| !self.tried.contains(e)) {
                Some(ef) => {
                    self.tried.push(ef);
                    return Some(HnswConfig { ef_search: ef, ..g });
                }
                None => {
                    let passed_this = self.pass.is_some();
                    self.passed += usize::from(passed_this);
                    if !self.next_graph(passed_this) {
                        self.at = self.leading.len();
                        return None;
                    }
                }
            }
        }
    }

    /// What `config`'s measurement on the full index said: whether it passes (no latency:
    /// see the type's doc).
    pub fn observe(&mut self, config: HnswConfig, passes: bool) {
        let Some(g) = self.leading.get(self.at) else {
            return;
        };
        if config.graph_id(self.engine) != g.graph_id(self.engine) {
            return;
        }
        let ef = config.ef_search;
        if passes {
            self.pass = Some(self.pass.map_or(ef, |p| p.min(ef)));
        } else {
            self.fail = Some(self.fail.map_or(ef, |f| f.max(ef)));
        }
    }
}

/// The sample's pick measured on both sizes: how far its recall moved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferError {
    /// The config (the sample's leading graph at the `ef_search` it passed with there).
    pub config: HnswConfig,
    /// Its recall@k on the sample (against the sample's exact ground truth).
    pub sample_recall: f64,
    /// Its recall@k on the full index (against the full ground truth).
    pub full_recall: f64,
}

impl TransferError {
    /// Sample recall minus full recall (positive: the full index is harder).
    pub fn error(&self) -> f64 {
        self.sample_recall - self.full_recall
    }
}

/// What a sampled run did at each size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleReport {
    /// Rows of the sample.
    pub rows: usize,
    /// Rows of the index.
    pub of_rows: usize,
    /// Whether the run chose the size (`auto`) or the request did (`request`).
    pub chosen_by: String,
    /// Trials measured on the sample (not journaled: the journal holds the index's).
    pub trials: usize,
    /// Graphs built on the sample.
    pub builds: usize,
    /// Their builder ([`sample_engine`]; reports from before it was chosen: the index's).
    #[serde(default)]
    pub engine: Engine,
    /// Graphs built on the full index.
    pub full_builds: usize,
    /// The graphs built on the full index, in order, each at the `ef_search` it started
    /// from there (the one it passed with on the sample; a graph made stronger after one
    /// failed, at the failed one's).
    pub leading: Vec<HnswConfig>,
    /// The first transferred config's recall on the sample and on the full index.
    pub transfer: Option<TransferError>,
    /// Seconds the sample's exploration took (sampling, its ground truth, its builds).
    pub secs: f64,
    /// The first full build's seconds as forecast from the sample's builds
    /// ([`super::forecast`]), and as measured: how well the budget's forecast held.
    #[serde(default)]
    pub full_build_forecast_secs: Option<f64>,
    /// See `full_build_forecast_secs`.
    #[serde(default)]
    pub full_build_secs: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(m: u32, ec: u32, ef: u32) -> HnswConfig {
        HnswConfig {
            m,
            ef_construction: ec,
            ef_search: ef,
            ..HnswConfig::DEFAULT
        }
    }

    fn cand(c: HnswConfig, recall: f64, cost: f64) -> Candidate {
        let m = crate::trials::TrialMetrics {
            build_time_secs: 1.0,
            search_latency_p50_us: cost / 10.0,
            search_latency_p95_us: cost / 5.0,
            search_latency_p99_us: cost / 4.0,
            recall_at_k: recall,
            memory_bytes: 1000,
            vectors: 1000,
            eval_queries: 100,
            brute_force_latency_us: 100.0,
            recall_ci_low: recall - 0.01,
            distance_evals_per_query: cost,
            search_latency_mean_us: cost / 10.0,
            qps: 1.0,
            recall_p10: recall - 0.02,
            per_query_recall: vec![recall as f32; 100],
        };
        super::super::candidate_of(uuid::Uuid::now_v7(), c, &m)
    }

    #[test]
    fn the_sample_size_is_a_tenth_within_its_limits_and_small_indexes_are_whole() {
        assert_eq!(sample_rows(100_000, Sampling::Auto), None);
        assert_eq!(sample_rows(SAMPLE_FROM, Sampling::Auto), Some(SAMPLE_MIN));
        assert_eq!(sample_rows(1_000_000, Sampling::Auto), Some(100_000));
        assert_eq!(sample_rows(100_000_000, Sampling::Auto), Some(SAMPLE_MAX));
        assert_eq!(sample_rows(1_000_000, Sampling::Off), None);
        assert_eq!(sample_rows(5000, Sampling::Rows(2000)), Some(2000));
        assert_eq!(
            sample_rows(2000, Sampling::Rows(2000)),
            None,
            "not smaller: whole"
        );
    }

    #[test]
    fn a_sample_is_built_on_codes_unless_the_reference_builder_is_asked_for() {
        assert_eq!(sample_engine(Engine::Native), Engine::NativeSq8);
        assert_eq!(sample_engine(Engine::NativeSq8), Engine::NativeSq8);
        assert_eq!(sample_engine(Engine::HnswRs), Engine::HnswRs);
    }

    #[test]
    fn leading_graphs_are_the_cheapest_passing_and_a_second_only_near_the_first() {
        let all = [
            cand(cfg(16, 80, 40), 0.96, 1000.0),
            cand(cfg(16, 80, 30), 0.95, 900.0),
            cand(cfg(24, 160, 30), 0.96, 950.0),
            cand(cfg(8, 80, 100), 0.90, 500.0),
        ];
        let pass = |c: &Candidate| c.recall_at_k >= 0.95;
        let l = leading(&all, &pass, None, Engine::Native);
        // 900 and 950: within 10 %, both lead
        assert_eq!(l, vec![cfg(16, 80, 30), cfg(24, 160, 30)]);
        let far = [
            all[0].clone(),
            all[1].clone(),
            cand(cfg(24, 160, 30), 0.96, 2000.0),
        ];
        // far apart: the first alone
        assert_eq!(leading(&far, &pass, None, Engine::Native), vec![cfg(16, 80, 30)]);
        // near in serving, far in building: the cheaper build alone, whichever is first
        let built = |c: &Candidate, secs: f64| Candidate {
            build_time_secs: secs,
            ..c.clone()
        };
        let dear_second = [built(&all[1], 5.0), built(&all[2], 7.7)];
        assert_eq!(
            leading(&dear_second, &pass, None, Engine::Native),
            vec![cfg(16, 80, 30)]
        );
        let dear_first = [built(&all[1], 7.7), built(&all[2], 5.0)];
        assert_eq!(
            leading(&dear_first, &pass, None, Engine::Native),
            vec![cfg(24, 160, 30)]
        );
        // builds within a quarter of each other: both, as before
        let alike = [built(&all[1], 5.0), built(&all[2], 6.0)];
        assert_eq!(leading(&alike, &pass, None, Engine::Native).len(), 2);
        // a patience tuned on the sample is left there when the graph passed without one
        let mut early = cfg(16, 80, 30);
        early.patience = 24;
        let with_early = [all[1].clone(), cand(early, 0.95, 700.0)];
        assert_eq!(
            leading(&with_early, &pass, None, Engine::Native),
            vec![cfg(16, 80, 30)]
        );
        // nothing passes: the highest recall, to be pushed by ef on the full index
        let none = |_: &Candidate| false;
        assert_eq!(leading(&all, &none, None, Engine::Native), vec![cfg(16, 80, 40)]);
        assert!(leading(&[], &pass, None, Engine::Native).is_empty());
        assert!((sample_bar(0.95) - 0.975).abs() < 1e-12);
    }

    fn bounds() -> crate::params::Bounds {
        crate::params::Bounds::SEED
    }

    /// Probes of `leading` on `ladder` within the seed's bounds, no twin quantizations.
    fn without_twins(leading: Vec<HnswConfig>, ladder: &[u32]) -> Transfer {
        Transfer::new(leading, Vec::new(), ladder.to_vec(), bounds(), Engine::Native)
    }

    /// Probes against a known threshold: a config passes from `need` up.
    fn probe(t: &mut Transfer, need: &dyn Fn(&HnswConfig) -> u32) -> Vec<HnswConfig> {
        let mut seen = Vec::new();
        while let Some(c) = t.next(&|_| true) {
            assert!(seen.len() < 60, "probes end");
            t.observe(c, c.ef_search >= need(&c));
            seen.push(c);
        }
        seen
    }

    #[test]
    fn ef_climbs_until_it_passes_then_bisects_to_the_least_that_does() {
        let ladder = vec![10, 20, 40, 80, 120, 200];
        let mut t = without_twins(vec![cfg(16, 80, 40)], &ladder);
        let seen = probe(&mut t, &|_| 97);
        let efs: Vec<u32> = seen.iter().map(|c| c.ef_search).collect();
        assert_eq!(efs[..3], [40, 80, 160], "doubling from the sample's ef");
        let least_pass = efs.iter().copied().filter(|&e| e >= 97).min().unwrap();
        let most_fail = efs.iter().copied().filter(|&e| e < 97).max().unwrap();
        assert!(least_pass - most_fail <= 6, "{efs:?}");
        // passing at once: steps down, then bisects
        let mut t = without_twins(vec![cfg(16, 80, 80)], &ladder);
        let efs: Vec<u32> = probe(&mut t, &|_| 25).iter().map(|c| c.ef_search).collect();
        assert_eq!(efs[..3], [80, 40, 20]);
        assert!(efs.iter().any(|&e| (25..=26).contains(&e)), "{efs:?}");
    }

    #[test]
    fn a_near_tie_is_measured_after_a_pass_and_a_graph_that_cannot_pass_is_built_stronger() {
        let ladder = vec![10, 20, 40, 80, 120, 200];
        let (a, b) = (cfg(8, 80, 40), cfg(16, 80, 40));
        // both pass: both measured (the sample could not tell them apart)
        let mut t = without_twins(vec![a, b], &ladder);
        let seen = probe(&mut t, &|_| 50);
        assert!(
            seen.iter().any(|c| c.m == 8) && seen.iter().any(|c| c.m == 16),
            "{seen:?}"
        );
        // one leading graph that passes: one graph
        let mut t = without_twins(vec![b], &ladder);
        assert!(probe(&mut t, &|_| 50).iter().all(|c| c.m == 16));
        // a never passes within 200 at efC 80: a stronger a (efC 160), not the near-tie
        let mut t = without_twins(vec![a, b], &ladder);
        let seen = probe(&mut t, &|c| if c.ef_construction < 160 { 1000 } else { 60 });
        assert!(
            seen.iter().any(|c| c.m == 8 && c.ef_search == 200),
            "a up to the bound: {seen:?}"
        );
        assert!(seen.iter().all(|c| c.m == 8), "{seen:?}");
        assert!(
            seen.iter().any(|c| c.ef_construction == 160 && c.ef_search >= 60),
            "{seen:?}"
        );
        assert_eq!(
            t.leading().last().map(|g| (g.m, g.ef_construction)),
            Some((8, 160))
        );
        // nothing passes up to the bounds: efC doubled to 400, then m grown, then done
        let mut t = without_twins(vec![cfg(32, 200, 40)], &ladder);
        let seen = probe(&mut t, &|_| 1000);
        let graphs: Vec<(u32, u32)> = t.leading().iter().map(|g| (g.m, g.ef_construction)).collect();
        assert_eq!(graphs, vec![(32, 200), (32, 400), (48, 400), (64, 400)]);
        assert!(seen.iter().all(|c| c.ef_search <= 200));
        assert_eq!(stronger(&cfg(64, 400, 40), &bounds()), None);
        // a stronger build the budget cannot pay for is not started
        let mut t = without_twins(vec![a], &ladder);
        let mut seen = Vec::new();
        while let Some(c) = t.next(&|c| c.ef_construction == 80) {
            t.observe(c, false);
            seen.push(c);
        }
        assert!(seen.iter().all(|c| c.ef_construction == 80));
    }

    /// Every twin climbs until it passes, however slow its probes: the walk takes no
    /// latency, so the configs it measures — and the gate's count of graphs near the bar,
    /// which moves the winner's bound — are the same in every run of the same request.
    #[test]
    fn every_twin_climbs_until_it_passes() {
        use crate::params::Quantization as Q;
        let ladder = vec![10, 20, 40, 80, 120, 200];
        let a = cfg(8, 80, 40).with_quantization(Q::Sq8);
        // sq8 passes from ef 50, f32 from 60, sq4 from 90, rabitq from 70
        let need = |c: &HnswConfig| match c.quantization {
            Q::Sq8 => 50,
            Q::None => 60,
            Q::Sq4 => 90,
            Q::Rabitq => 70,
        };
        let walk = || {
            let twins = vec![Q::None, Q::Sq4, Q::Rabitq];
            probe(
                &mut Transfer::new(vec![a], twins, ladder.clone(), bounds(), Engine::Native),
                &need,
            )
        };
        let seen = walk();
        for q in [Q::Sq8, Q::None, Q::Sq4, Q::Rabitq] {
            let least = seen
                .iter()
                .filter(|c| c.quantization == q && c.ef_search >= need(c))
                .map(|c| c.ef_search)
                .min();
            // each found its least passing ef within the probes' tolerance
            assert!(
                least.is_some_and(|e| f64::from(e) <= f64::from(need(&a.with_quantization(q))) * 1.1 + 1.0),
                "{q:?}: {seen:?}"
            );
        }
        assert_eq!(walk(), seen, "the same probes every time");
    }

    #[test]
    fn the_first_passing_graph_is_measured_in_its_twin_quantizations_before_the_near_tie() {
        use crate::params::Quantization::{Rabitq, Sq4, Sq8};
        let ladder = vec![10, 20, 40, 80, 120, 200];
        let (a, b) = (
            cfg(8, 80, 40).with_quantization(Sq8),
            cfg(16, 80, 40).with_quantization(Sq8),
        );
        let mut t = Transfer::new(
            vec![a, b],
            vec![Sq8, Sq4, Rabitq],
            ladder,
            bounds(),
            Engine::Native,
        );
        // a passes from ef 50; its sq4 twin from 90, its rabitq twin never within the bound
        let need = |c: &HnswConfig| match (c.m, c.quantization) {
            (8, Sq4) => 90,
            (8, Rabitq) => 1000,
            _ => 50,
        };
        let mut seen = Vec::new();
        // the budget pays for no build: the twins need none, the near-tie b does
        while let Some(c) = t.next(&|g| g.m == 8) {
            assert!(seen.len() < 60, "probes end");
            t.observe(c, c.ef_search >= need(&c));
            seen.push(c);
        }
        let order: Vec<_> = seen.iter().map(|c| (c.m, c.quantization)).collect();
        let first_twin = order.iter().position(|o| o.1 != Sq8).unwrap();
        assert!(order[..first_twin].iter().all(|o| *o == (8, Sq8)), "{order:?}");
        // each twin starts from the ef its sibling passed with, and climbs or bisects
        let a_pass = seen[..first_twin]
            .iter()
            .map(|c| c.ef_search)
            .filter(|&e| e >= 50)
            .min()
            .unwrap();
        for q in [Sq4, Rabitq] {
            let efs: Vec<u32> = seen
                .iter()
                .filter(|c| c.quantization == q)
                .map(|c| c.ef_search)
                .collect();
            assert_eq!(efs.first(), Some(&a_pass), "{q:?}: {efs:?}");
        }
        assert!(
            seen.iter()
                .any(|c| c.quantization == Sq4 && (90..=95).contains(&c.ef_search)),
            "{seen:?}"
        );
        assert!(
            seen.iter()
                .any(|c| c.quantization == Rabitq && c.ef_search == 200),
            "{seen:?}"
        );
        // no stronger build for a failing twin, and the near-tie's build was not affordable
        assert!(
            seen.iter().all(|c| c.m == 8 && c.ef_construction == 80),
            "{seen:?}"
        );
        // affordable: the near-tie comes after the twins, in its own quantization only
        let mut t = Transfer::new(
            vec![a, b],
            vec![Sq4],
            vec![10, 20, 40, 80, 120, 200],
            bounds(),
            Engine::Native,
        );
        let seen = probe(&mut t, &|_| 50);
        let order: Vec<_> = seen.iter().map(|c| (c.m, c.quantization)).collect();
        let last_twin = order.iter().rposition(|o| o.1 == Sq4).unwrap();
        let first_b = order.iter().position(|o| o.0 == 16).unwrap();
        assert!(last_twin < first_b, "{order:?}");
        assert!(order[first_b..].iter().all(|o| *o == (16, Sq8)), "{order:?}");
    }
}
