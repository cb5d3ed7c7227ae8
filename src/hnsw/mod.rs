//! HNSW graphs: build → graph → search, with `hnsw_rs` kept behind this boundary.
//!
//! Nothing outside this module sees an `hnsw_rs` type: trials, activation and HTTP speak
//! [`HnswConfig`], [`Graph`] and [`Hit`]. hnsw_rs only builds: every graph is frozen right
//! after its build into the flat form of [`frozen`] and the hnsw_rs structure is dropped,
//! so trials measure exactly the code that serves (hnsw_rs's own search is ~3× slower than
//! hnswlib's at equal recall; the frozen one is faster than hnswlib, see BENCHMARKS.md).
//!
//! Distances: cosine indexes hold unit vectors and use hnsw_rs's AVX2 `DistDot`
//! (`1 - a·b`, ~2× faster than its scalar f64 `DistCosine`); `l2` uses `DistL2`; `dot` uses
//! [`DotOrder`], an order-preserving non-negative transform of `-a·b`, because hnsw_rs
//! asserts non-negative distances and its `DistDot` assumes unit vectors. Reported
//! distances are recomputed exactly with [`Metric::distance`].
//!
//! Reproducibility: hnsw_rs draws node levels from a generator it seeds with a constant, so
//! a serial build over a fixed insertion order is deterministic. vectune's `seed` picks
//! that order (a seeded permutation of the rows): same vectors + config + seed → same graph.
//! Trials build serially for that reason; activation builds in parallel ([`BuildMode`]),
//! ~2× faster on two cores, and stores the graph so a restart serves that same graph.

pub mod config;
pub mod frozen;
pub mod serving;
pub mod store;

use std::time::{Duration, Instant};

use frozen::{FrozenGraph, Links};

use hnsw_rs::prelude::{DistDot, DistL2, Distance, Hnsw};

pub use config::{ConfigError, HnswConfig, RawHnswConfig};

use crate::distance::{self, Metric};
use crate::rng::SplitMix64;
use crate::vectors::VectorSet;

/// Most layers a graph may have (hnsw_rs caps at 16).
const MAX_LAYERS: usize = 16;

/// An order-preserving, strictly positive distance for maximum inner product:
/// `s = -a·b ↦ 1 + s` for `s ≥ 0`, `1 / (1 - s)` for `s < 0`. Strictly increasing in `s`,
/// so nearest-by-this is largest-dot, and never negative or NaN, which hnsw_rs asserts.
#[derive(Debug, Clone, Copy, Default)]
pub struct DotOrder;

impl DotOrder {
    /// The transform itself.
    #[inline]
    pub fn of_dot(d: f32) -> f32 {
        let s = -d;
        let v = if s >= 0.0 { 1.0 + s } else { 1.0 / (1.0 - s) };
        if v.is_nan() {
            f32::MAX
        } else {
            v
        }
    }
}

impl Distance<f32> for DotOrder {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        DotOrder::of_dot(distance::dot(a, b))
    }
}

/// The distance hnsw_rs builds with, chosen by metric.
#[derive(Debug, Clone, Copy)]
struct GraphDistance(Metric);

impl Distance<f32> for GraphDistance {
    #[inline]
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        let d = match self.0 {
            Metric::Cosine => DistDot.eval(a, b),
            Metric::L2 => DistL2.eval(a, b),
            Metric::Dot => DotOrder.eval(a, b),
        };
        // hnsw_rs panics on NaN; finite inputs cannot give one, but a sum can overflow
        if d.is_nan() {
            f32::MAX
        } else {
            d
        }
    }
}

/// One search result: the row number in the vector set and its exact distance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    /// Row in the [`VectorSet`] the graph was built from.
    pub row: u32,
    /// Distance under the index's metric (smaller is nearer).
    pub distance: f32,
}

/// How the builder inserts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildMode {
    /// One thread, rows in the seeded order: same vectors + config + seed → same graph.
    /// Trials use it, so a measurement can be reproduced.
    Serial,
    /// hnsw_rs's parallel insertion on every core: ~2× faster on two cores, not
    /// reproducible run to run (graph quality is statistically the same). Activation uses
    /// it, and stores the graph it built, so a restart serves that very graph again.
    Parallel,
}

/// A built and frozen graph over the first `len()` rows of one [`VectorSet`].
#[derive(Debug)]
pub struct Graph {
    frozen: FrozenGraph,
    metric: Metric,
    config: HnswConfig,
    build_time: Duration,
    freeze_time: Duration,
}

fn build_hnsw(
    set: &VectorSet,
    n: usize,
    config: HnswConfig,
    mode: BuildMode,
) -> Hnsw<'static, f32, GraphDistance> {
    let hnsw = Hnsw::new(
        config.m as usize,
        n.max(1),
        MAX_LAYERS,
        config.ef_construction as usize,
        GraphDistance(set.metric()),
    );
    let order = SplitMix64::new(config.seed).permutation(n);
    match mode {
        BuildMode::Serial => {
            for row in order {
                hnsw.insert_slice((set.row(row), row));
            }
        }
        BuildMode::Parallel => {
            let items: Vec<(&[f32], usize)> = order.into_iter().map(|row| (set.row(row), row)).collect();
            hnsw.parallel_insert_slice(&items);
        }
    }
    hnsw
}

/// Reads the links out of a built hnsw_rs graph through its public API.
fn freeze(hnsw: &Hnsw<'static, f32, GraphDistance>, n: usize, m: usize) -> FrozenGraph {
    let mut level = vec![0u8; n];
    let mut lists: Vec<Vec<Vec<u32>>> = vec![Vec::new(); n];
    let top = hnsw.get_max_level_observed() as usize;
    let indexation = hnsw.get_point_indexation();
    let mut entry = None;
    for layer in 0..=top {
        for point in indexation.get_layer_iterator(layer) {
            let row = point.get_origin_id();
            if row >= n {
                continue;
            }
            level[row] = layer as u8;
            // lists above the point's own level are insertion artefacts: drop them
            lists[row] = point
                .get_neighborhood_id()
                .into_iter()
                .take(layer + 1)
                .map(|l| l.into_iter().map(|nb| nb.d_id as u32).collect())
                .collect();
            if layer == top && entry.is_none() {
                // hnsw_rs's entry point is the first point that reached the top level
                entry = Some(row as u32);
            }
        }
    }
    FrozenGraph::from_links(
        Links {
            level,
            lists,
            entry: entry.unwrap_or(0),
        },
        m,
    )
}

/// Hands memory freed by a dropped hnsw_rs graph back to the OS. The builder allocates
/// several times the frozen graph's size in small blocks; glibc keeps such freed memory
/// in its arenas, so without a trim a server that built a few graphs holds hundreds of
/// MB it does not use (measured: 700 MB RSS serving a 62 MB index of 100k × 128).
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns unused heap memory to the OS; it is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Builds a graph over every row of `set` serially in the seeded insertion order, and
/// freezes it. CPU-heavy: call it from a blocking thread.
pub fn build(set: &VectorSet, config: HnswConfig) -> Graph {
    build_prefix(set, set.len(), config, BuildMode::Serial)
}

/// Builds and freezes a graph over the first `rows` rows of `set` (a restart rebuilds
/// exactly the vectors an activation covered, even if more were appended since). The
/// hnsw_rs structure is dropped once frozen.
pub fn build_prefix(set: &VectorSet, rows: usize, config: HnswConfig, mode: BuildMode) -> Graph {
    let start = Instant::now();
    let n = rows.min(set.len());
    let mut freeze_time = Duration::ZERO;
    let frozen = if n == 0 {
        FrozenGraph::from_links(
            Links {
                level: Vec::new(),
                lists: Vec::new(),
                entry: 0,
            },
            config.m as usize,
        )
    } else {
        let hnsw = build_hnsw(set, n, config, mode);
        let t = Instant::now();
        let frozen = freeze(&hnsw, n, config.m as usize);
        freeze_time = t.elapsed();
        drop(hnsw);
        release_free_memory();
        frozen
    };
    Graph {
        frozen,
        metric: set.metric(),
        config,
        build_time: start.elapsed(),
        freeze_time,
    }
}

impl Graph {
    /// A graph from stored links (see [`store`]).
    pub fn from_frozen(
        frozen: FrozenGraph,
        metric: Metric,
        config: HnswConfig,
        build_time: Duration,
    ) -> Graph {
        Graph {
            frozen,
            metric,
            config,
            build_time,
            freeze_time: Duration::ZERO,
        }
    }

    /// The links.
    pub fn frozen(&self) -> &FrozenGraph {
        &self.frozen
    }
    /// The config it was built with.
    pub fn config(&self) -> HnswConfig {
        self.config
    }
    /// Number of vectors in it.
    pub fn len(&self) -> usize {
        self.frozen.len()
    }
    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.frozen.is_empty()
    }
    /// Wall time of the build (hnsw_rs insertion plus freezing).
    pub fn build_time(&self) -> Duration {
        self.build_time
    }
    /// Wall time of freezing (part of [`Graph::build_time`]).
    pub fn freeze_time(&self) -> Duration {
        self.freeze_time
    }
    /// Bytes of the links that serve (the vectors are the index's, counted by the caller).
    pub fn memory_bytes(&self) -> usize {
        self.frozen.memory_bytes()
    }

    /// The `k` nearest rows to a prepared query (right length, finite, normalised for
    /// cosine; see [`VectorSet::prepare_query`]), nearest first. The candidate list is
    /// `max(ef, k)`. `set` must be the set the graph was built from.
    pub fn search(&self, set: &VectorSet, query: &[f32], k: usize, ef: usize) -> Vec<Hit> {
        self.search_counted(set, query, k, ef, None)
    }

    /// [`Graph::search`] that also adds the number of distance computations to `counter`.
    pub fn search_counted(
        &self,
        set: &VectorSet,
        query: &[f32],
        k: usize,
        ef: usize,
        counter: Option<&mut u64>,
    ) -> Vec<Hit> {
        debug_assert_eq!(query.len(), set.dims());
        self.frozen
            .search(set, query, k, ef, counter)
            .into_iter()
            .map(|(row, key)| Hit {
                row,
                distance: self.metric.key_to_distance(key),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::ground_truth;

    pub(crate) fn random_set(n: usize, dims: usize, metric: Metric, seed: u64) -> VectorSet {
        let mut r = SplitMix64::new(seed);
        let data: Vec<f32> = (0..n * dims)
            .map(|_| (r.next_u64() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0)
            .collect();
        // un-normalised on purpose for dot: scale rows differently
        let data = if metric == Metric::Dot {
            data.chunks(dims)
                .enumerate()
                .flat_map(|(i, c)| {
                    c.iter()
                        .map(move |x| x * (1.0 + (i % 7) as f32))
                        .collect::<Vec<_>>()
                })
                .collect()
        } else {
            data
        };
        VectorSet::from_rows(dims, metric, (0..n).map(|i| format!("v{i}")).collect(), data)
    }

    fn queries(set: &VectorSet, count: usize, seed: u64) -> Vec<Vec<f32>> {
        // perturbed stored vectors: near the data, but not on it
        let mut r = SplitMix64::new(seed);
        (0..count)
            .map(|_| {
                let mut q: Vec<f32> = set.row(r.below(set.len())).to_vec();
                q.iter_mut()
                    .for_each(|x| *x += ((r.next_u64() >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2);
                if set.metric() == Metric::Cosine {
                    crate::distance::normalize(&mut q);
                }
                q
            })
            .collect()
    }

    fn recall_of(truth: &[Vec<u32>], found: &[Vec<u32>], k: usize) -> f64 {
        let hit: usize = truth
            .iter()
            .zip(found)
            .map(|(t, f)| f.iter().filter(|x| t.contains(x)).count())
            .sum();
        hit as f64 / (truth.len() * k) as f64
    }

    #[test]
    fn every_metric_reaches_high_recall_against_exact_search() {
        for metric in [Metric::Cosine, Metric::L2, Metric::Dot] {
            let set = random_set(600, 16, metric, 7);
            let g = build(&set, HnswConfig::new(100, 64, 16, 42).unwrap());
            let qs = queries(&set, 50, 3);
            let truth = ground_truth::exact(&set, &qs, 10);
            let found: Vec<Vec<u32>> = qs
                .iter()
                .map(|q| g.search(&set, q, 10, 100).iter().map(|h| h.row).collect())
                .collect();
            let r = recall_of(&truth, &found, 10);
            assert!(r >= 0.95, "{metric:?} recall {r}");
        }
    }

    /// The frozen copy answers like hnsw_rs's own search on the same graph.
    #[test]
    fn frozen_search_matches_hnsw_rs_recall_at_every_ef() {
        for metric in [Metric::Cosine, Metric::L2] {
            let set = random_set(3000, 24, metric, 11);
            let cfg = HnswConfig::new(60, 10, 12, 5).unwrap();
            let hnsw = build_hnsw(&set, set.len(), cfg, BuildMode::Serial);
            let frozen = freeze(&hnsw, set.len(), cfg.m as usize);
            let g = Graph::from_frozen(frozen, metric, cfg, Duration::ZERO);
            let mut hnsw = hnsw;
            hnsw.set_searching_mode(true);
            let qs = queries(&set, 200, 9);
            let truth = ground_truth::exact(&set, &qs, 10);
            for ef in [10, 20, 40, 80, 160] {
                let ours: Vec<Vec<u32>> = qs
                    .iter()
                    .map(|q| g.search(&set, q, 10, ef).iter().map(|h| h.row).collect())
                    .collect();
                let theirs: Vec<Vec<u32>> = qs
                    .iter()
                    .map(|q| hnsw.search(q, 10, ef).iter().map(|n| n.d_id as u32).collect())
                    .collect();
                let (a, b) = (recall_of(&truth, &ours, 10), recall_of(&truth, &theirs, 10));
                assert!(
                    (a - b).abs() <= 0.01,
                    "{metric:?} ef={ef}: frozen {a} vs hnsw_rs {b}"
                );
            }
        }
    }

    #[test]
    fn every_stored_vector_finds_itself_first() {
        for (metric, mode) in [
            (Metric::Cosine, BuildMode::Serial),
            (Metric::L2, BuildMode::Parallel),
            (Metric::Dot, BuildMode::Serial),
        ] {
            let set = random_set(1500, 12, metric, 4);
            let g = build_prefix(&set, set.len(), HnswConfig::new(80, 40, 16, 1).unwrap(), mode);
            for row in 0..set.len() {
                let hits = g.search(&set, set.row(row), 1, 40);
                // a dot index can hold a vector whose own product is beaten by a longer one
                if metric != Metric::Dot {
                    assert_eq!(hits[0].row as usize, row, "{metric:?} row {row}");
                    assert!(hits[0].distance.abs() < 1e-4);
                } else {
                    let best = ground_truth::exact(&set, &[set.row(row).to_vec()], 1)[0][0];
                    assert_eq!(hits[0].row, best, "dot row {row}");
                }
            }
        }
    }

    #[test]
    fn dot_order_is_strictly_increasing_in_minus_dot() {
        let xs = [-1e30f32, -1e6, -2.0, -1.0, -1e-7, 0.0, 1e-7, 1.0, 3.0, 1e6, 1e30];
        for w in xs.windows(2) {
            // larger dot → smaller distance
            assert!(DotOrder::of_dot(w[1]) < DotOrder::of_dot(w[0]), "{w:?}");
        }
        assert!(xs.iter().all(|&d| DotOrder::of_dot(d) >= 0.0));
        assert_eq!(DotOrder::of_dot(f32::NAN), f32::MAX);
    }

    #[test]
    fn seeded_builds_are_reproducible() {
        let set = random_set(300, 8, Metric::L2, 3);
        let cfg = HnswConfig::new(40, 20, 8, 9).unwrap();
        let (a, b) = (build(&set, cfg), build(&set, cfg));
        assert_eq!(a.frozen(), b.frozen());
        let c = build(&set, HnswConfig { seed: 10, ..cfg });
        assert_ne!(a.frozen(), c.frozen(), "another seed, another insertion order");
    }

    #[test]
    fn small_and_empty_sets() {
        let set = random_set(3, 4, Metric::Cosine, 1);
        let g = build(&set, HnswConfig::DEFAULT);
        let hits = g.search(&set, set.row(1), 10, 10);
        assert_eq!(hits.len(), 3);
        assert_eq!(hits[0].row, 1);
        let empty = VectorSet::from_rows(4, Metric::L2, vec![], vec![]);
        let g = build(&empty, HnswConfig::DEFAULT);
        assert!(g.search(&empty, &[0.0; 4], 5, 10).is_empty());
    }

    #[test]
    fn counted_search_counts_distance_evaluations() {
        let set = random_set(500, 8, Metric::L2, 2);
        let g = build(&set, HnswConfig::DEFAULT);
        let mut n = 0u64;
        g.search_counted(&set, set.row(0), 10, 30, Some(&mut n));
        assert!((30..=500).contains(&n), "{n}");
        let mut m = 0u64;
        g.search_counted(&set, set.row(0), 10, 200, Some(&mut m));
        assert!(m > n, "a wider beam computes more distances");
    }

    #[test]
    fn stored_graphs_round_trip_and_refuse_anything_else() {
        let set = random_set(400, 8, Metric::Cosine, 5);
        let cfg = HnswConfig::new(40, 20, 8, 9).unwrap();
        let g = build(&set, cfg);
        let bytes = store::encode(&g, 8);
        let back = store::decode(&bytes, 400, 8, Metric::Cosine, cfg).unwrap();
        assert_eq!(back.frozen(), g.frozen());
        // another ef_search is the same graph
        assert!(store::decode(
            &bytes,
            400,
            8,
            Metric::Cosine,
            HnswConfig { ef_search: 99, ..cfg }
        )
        .is_ok());
        use store::GraphStoreError as E;
        assert_eq!(
            store::decode(&bytes, 401, 8, Metric::Cosine, cfg).unwrap_err(),
            E::Mismatch
        );
        assert_eq!(
            store::decode(&bytes, 400, 9, Metric::Cosine, cfg).unwrap_err(),
            E::Mismatch
        );
        assert_eq!(
            store::decode(&bytes, 400, 8, Metric::L2, cfg).unwrap_err(),
            E::Mismatch
        );
        assert_eq!(
            store::decode(&bytes, 400, 8, Metric::Cosine, HnswConfig { seed: 1, ..cfg }).unwrap_err(),
            E::Mismatch
        );
        assert_eq!(
            store::decode(&bytes[..bytes.len() - 1], 400, 8, Metric::Cosine, cfg).unwrap_err(),
            E::Checksum
        );
        let mut flipped = bytes.to_vec();
        flipped[200] ^= 1;
        assert_eq!(
            store::decode(&flipped, 400, 8, Metric::Cosine, cfg).unwrap_err(),
            E::Checksum
        );
        assert_eq!(
            store::decode(b"garbage", 400, 8, Metric::Cosine, cfg).unwrap_err(),
            E::Format
        );
    }
}
