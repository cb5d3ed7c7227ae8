//! HNSW graphs: build → graph → search, with `hnsw_rs` kept behind this boundary.
//!
//! Nothing outside this module sees an `hnsw_rs` type: trials, activation and HTTP speak
//! [`HnswConfig`], [`Graph`] and [`Hit`]. That keeps the door open to serving from a frozen
//! flat copy of the built graph (hnsw_rs's own layout costs ~3× hnswlib's search time)
//! without touching the tuning loop.
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

pub mod config;
pub mod serving;

use std::time::{Duration, Instant};

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

/// A built graph over one [`VectorSet`].
pub struct Graph {
    inner: Hnsw<'static, f32, GraphDistance>,
    metric: Metric,
    config: HnswConfig,
    len: usize,
    build_time: Duration,
    memory_bytes: usize,
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Graph")
            .field("config", &self.config)
            .field("len", &self.len)
            .finish()
    }
}

/// Builds a graph over every row of `set`, serially in the seeded insertion order.
/// CPU-heavy: call it from a blocking thread.
pub fn build(set: &VectorSet, config: HnswConfig) -> Graph {
    build_prefix(set, set.len(), config)
}

/// Builds a graph over the first `rows` rows of `set` (a restart rebuilds exactly the
/// vectors an activation covered, even if more were appended since).
pub fn build_prefix(set: &VectorSet, rows: usize, config: HnswConfig) -> Graph {
    let start = Instant::now();
    let n = rows.min(set.len());
    let inner = Hnsw::new(
        config.m as usize,
        n.max(1),
        MAX_LAYERS,
        config.ef_construction as usize,
        GraphDistance(set.metric()),
    );
    for row in SplitMix64::new(config.seed).permutation(n) {
        inner.insert_slice((set.row(row), row));
    }
    let mut inner = inner;
    inner.set_searching_mode(true);
    let build_time = start.elapsed();
    Graph {
        memory_bytes: estimate_memory(set, n, config),
        inner,
        metric: set.metric(),
        config,
        len: n,
        build_time,
    }
}

/// Memory of what serves, estimated from sizes: every row is copied once into the graph
/// (`dims` f32), and each node carries about `2·m` layer-0 links plus `m` upper-layer
/// links on average, each an `Arc` to a 32-byte neighbour record (8 + 32 bytes), plus a
/// ~96-byte point header. The caller's vector set is shared, not counted twice.
fn estimate_memory(set: &VectorSet, rows: usize, config: HnswConfig) -> usize {
    let per_node = set.dims() * 4 + 96 + (3 * config.m as usize) * 40;
    rows * per_node
}

impl Graph {
    /// The config it was built with.
    pub fn config(&self) -> HnswConfig {
        self.config
    }
    /// Number of vectors in it.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Wall time of the build.
    pub fn build_time(&self) -> Duration {
        self.build_time
    }
    /// Estimated bytes of the serving structure (see `estimate_memory`).
    pub fn memory_bytes(&self) -> usize {
        self.memory_bytes
    }

    /// The `k` nearest rows to a prepared query (right length, finite, normalised for
    /// cosine; see [`VectorSet::prepare_query`]), nearest first. The effective candidate
    /// list is `max(ef, k)`. `set` must be the set the graph was built from.
    pub fn search(&self, set: &VectorSet, query: &[f32], k: usize, ef: usize) -> Vec<Hit> {
        if self.len == 0 || k == 0 {
            return Vec::new();
        }
        debug_assert_eq!(query.len(), set.dims());
        let ef = ef.max(k);
        let mut hits: Vec<Hit> = self
            .inner
            .search(query, k, ef)
            .into_iter()
            .filter(|n| n.d_id < self.len)
            .map(|n| Hit {
                row: n.d_id as u32,
                distance: self.metric.distance(query, set.row(n.d_id)),
            })
            .collect();
        hits.sort_by(|a, b| a.distance.total_cmp(&b.distance).then(a.row.cmp(&b.row)));
        hits.truncate(k);
        hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::ground_truth;

    fn random_set(n: usize, dims: usize, metric: Metric, seed: u64) -> VectorSet {
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

    fn recall(set: &VectorSet, g: &Graph, queries: &[usize], k: usize, ef: usize) -> f64 {
        let qs: Vec<Vec<f32>> = queries.iter().map(|&q| set.row(q).to_vec()).collect();
        let truth = ground_truth::exact(set, &qs, k);
        let mut found = 0;
        for (q, t) in qs.iter().zip(&truth) {
            let hits = g.search(set, q, k, ef);
            found += hits.iter().filter(|h| t.contains(&h.row)).count();
        }
        found as f64 / (queries.len() * k) as f64
    }

    #[test]
    fn every_metric_reaches_high_recall_against_exact_search() {
        for metric in [Metric::Cosine, Metric::L2, Metric::Dot] {
            let set = random_set(600, 16, metric, 7);
            let g = build(&set, HnswConfig::new(100, 64, 16, 42).unwrap());
            let r = recall(&set, &g, &(0..50).collect::<Vec<_>>(), 10, 100);
            assert!(r >= 0.95, "{metric:?} recall {r}");
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
        for q in 0..30 {
            let q = set.row(q).to_vec();
            assert_eq!(a.search(&set, &q, 10, 10), b.search(&set, &q, 10, 10));
        }
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
}
