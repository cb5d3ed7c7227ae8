//! The reference builder: the hnsw_rs crate, its graph copied into the flat layout.
//!
//! Kept so every native graph can be checked against an independent implementation (the
//! differential test) and the benchmark can report both. hnsw_rs draws node levels from a
//! generator it seeds with a constant, so a serial build over a fixed insertion order is
//! deterministic; its parallel insert is not (and is known upstream to leave, rarely, a
//! point that cannot find itself under CPU contention), so the product builds it serially.
//!
//! Distances: cosine indexes hold unit vectors and use hnsw_rs's AVX2 `DistDot` (`1 - a·b`);
//! `l2` uses `DistL2`; `dot` uses [`DotOrder`], an order-preserving non-negative transform
//! of `-a·b`, because hnsw_rs asserts non-negative distances and its `DistDot` assumes unit
//! vectors. No hnsw_rs type leaves this file.

use hnsw_rs::prelude::{DistDot, DistL2, Distance, Hnsw};

use super::frozen::{FrozenGraph, Links};
use super::MAX_LAYERS;
use crate::distance::{self, Metric};
use crate::params::HnswConfig;
use crate::rng::SplitMix64;
use crate::vectors::VectorSet;

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

fn build_hnsw(
    set: &VectorSet,
    n: usize,
    config: HnswConfig,
    threads: usize,
) -> Hnsw<'static, f32, GraphDistance> {
    let hnsw = Hnsw::new(
        config.m as usize,
        n.max(1),
        MAX_LAYERS,
        config.ef_construction as usize,
        GraphDistance(set.metric()),
    );
    // deleted rows are left out (the freezer gives them level 0 and no links)
    let order: Vec<usize> = SplitMix64::new(config.seed)
        .permutation(n)
        .into_iter()
        .filter(|&row| !set.is_deleted(row))
        .collect();
    if threads <= 1 {
        for row in order {
            hnsw.insert_slice((set.row(row), row));
        }
    } else {
        let items: Vec<(&[f32], usize)> = order.into_iter().map(|row| (set.row(row), row)).collect();
        hnsw.parallel_insert_slice(&items);
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

/// Builds the first `n` rows of `set` with hnsw_rs and copies the graph into the flat
/// layout. `threads == 1` is the reproducible serial build; more uses hnsw_rs's parallel
/// insert (benchmarks only).
pub fn build(set: &VectorSet, n: usize, config: HnswConfig, threads: usize) -> FrozenGraph {
    let n = n.min(set.len());
    if n == 0 {
        return FrozenGraph::with_levels(&[], config.m as usize);
    }
    let hnsw = build_hnsw(set, n, config, threads);
    freeze(&hnsw, n, config.m as usize)
}

/// hnsw_rs's own search over its own structure, for the test that the flat copy answers
/// like the original.
#[cfg(test)]
pub(crate) fn own_search(
    set: &VectorSet,
    config: HnswConfig,
    queries: &[Vec<f32>],
    k: usize,
    ef: usize,
) -> (FrozenGraph, Vec<Vec<u32>>) {
    let mut hnsw = build_hnsw(set, set.len(), config, 1);
    let frozen = freeze(&hnsw, set.len(), config.m as usize);
    hnsw.set_searching_mode(true);
    let found = queries
        .iter()
        .map(|q| hnsw.search(q, k, ef).iter().map(|n| n.d_id as u32).collect())
        .collect();
    (frozen, found)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
