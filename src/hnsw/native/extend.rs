//! Folding appended rows into a graph by insertion, instead of building it again.
//!
//! A generation serves a graph of the rows it was built on and scans the rows appended
//! since exactly; the scan grows with every append. Inserting those rows into a copy of the
//! graph — hnswlib's `add_items`, as the builder inserts any node — costs what inserting them
//! costs, not a build of the whole index, and the copy is swapped in as the next generation
//! (searches never wait: they keep the generation they started on). The nodes it had keep
//! their links except where a new node's reverse link lands; rows deleted since stay in it
//! (passed through by searches, never returned, as hnswlib's `mark_deleted`), and rows
//! deleted before they were folded are left out like a build leaves them out.

use super::*;
use crate::hnsw::frozen::NONE;

impl FrozenGraph {
    /// The level of every node (0 for nodes without an upper block). Upper blocks are laid
    /// out in node order, so a node's level is its block's length in rows.
    pub(crate) fn levels(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.n];
        let mut next = self.upper.len();
        for node in (0..self.n).rev() {
            let start = self.upper_start[node];
            if start != NONE {
                out[node] = ((next - start as usize) / (1 + self.m)) as u8;
                next = start as usize;
            }
        }
        out
    }

    /// A copy with room for more nodes of levels `more` (numbered from [`FrozenGraph::len`]
    /// on, no links yet); the nodes it has keep their links, entry and top level.
    pub(crate) fn grown(&self, more: &[u8]) -> FrozenGraph {
        let mut g = self.clone();
        g.n += more.len();
        g.layer0.resize(g.n * (1 + g.m0), 0);
        g.upper_start.reserve(more.len());
        for &l in more {
            if l > 0 {
                g.upper_start.push(g.upper.len() as u32);
                g.upper.resize(g.upper.len() + l as usize * (1 + g.m), 0);
            } else {
                g.upper_start.push(NONE);
            }
        }
        g
    }
}

/// Extends `base`, a graph of the first `base.len()` rows of `set`, to its first `n` rows:
/// the rows after it that are not deleted are inserted in row order, in rounds sized as a
/// build's (at most [`MAX_ROUND_FRACTION`] of the rows, never more than the graph holds),
/// with `base`'s `m`, this `ef_construction`, and levels drawn from `seed` and where the
/// extension starts (so the same extension of the same graph gives the same bytes on any
/// number of threads). An empty `base` is a build.
pub fn extend(
    set: &VectorSet,
    base: &FrozenGraph,
    n: usize,
    ef_construction: usize,
    seed: u64,
    threads: usize,
    on: BuildOn,
) -> FrozenGraph {
    let n = n.min(set.len());
    if base.is_empty() {
        return build(set, n, base.m, ef_construction, seed, threads, on);
    }
    kernels::run_at(
        kernels::level(),
        BuildTask {
            set,
            n: n.max(base.len()),
            m: base.m,
            ef: ef_construction,
            seed,
            threads: threads.max(1),
            on,
            base: Some(base),
            watch: None,
        },
    )
}

#[inline(always)]
pub(super) fn extend_with<K: Kernel, S: Space>(
    kernel: K,
    space: &S,
    t: &BuildTask<'_>,
    base: &FrozenGraph,
) -> FrozenGraph {
    let from = base.len();
    let order: Vec<usize> = (from..t.n).filter(|&row| !t.set.is_deleted(row)).collect();
    let stream = t.seed ^ (from as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5bd1_e995;
    let level_at = levels(order.len(), t.m, stream);
    let mut more = vec![0u8; t.n - from];
    for (pos, &row) in order.iter().enumerate() {
        more[row - from] = level_at[pos];
    }
    let mut g = base.grown(&more);
    let mut level = base.levels();
    level.extend_from_slice(&more);
    // rounds as a build's: never more new nodes than the graph holds, nor a larger share
    // of the whole than a build's round
    let rounds = rounds_after(from, order.len(), t.n);
    insert_rounds(kernel, space, &mut g, &order, &rounds, &level, t);
    g
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distance::Metric;
    use crate::hnsw::tests::clustered_set;
    use crate::params::{Engine, HnswConfig};
    use crate::rng::SplitMix64;

    fn graph_of(g: &FrozenGraph, s: &VectorSet) -> crate::hnsw::Graph {
        let config = HnswConfig::new(60, 40, g.m as i64, 11).unwrap();
        crate::hnsw::Graph::from_layout(g.clone(), s, config, Engine::Native, std::time::Duration::ZERO)
    }

    /// Recall@10 of the graph's search at ef 40 for perturbed stored rows as queries,
    /// against a scan of the live rows.
    fn recall(g: &FrozenGraph, s: &VectorSet, queries: &[Vec<f32>]) -> f64 {
        let graph = graph_of(g, s);
        let mut hit = 0;
        for q in queries {
            let mut exact: Vec<(f32, usize)> = (0..s.len())
                .filter(|&r| !s.is_deleted(r))
                .map(|r| (Metric::L2.rank_key(q, s.row(r)), r))
                .collect();
            exact.sort_by(|a, b| a.0.total_cmp(&b.0));
            let truth: Vec<usize> = exact.iter().take(10).map(|e| e.1).collect();
            let got = graph.search(s, q, 10, 40);
            hit += got.iter().filter(|h| truth.contains(&(h.row as usize))).count();
        }
        hit as f64 / (10 * queries.len()) as f64
    }

    #[test]
    fn an_extended_graph_searches_as_well_as_a_build_and_finds_every_new_row() {
        let s = clustered_set(3_000, 16, Metric::L2, 5);
        let base = build(&s, 2_000, 8, 60, 11, 1, BuildOn::Rows);
        let ext = extend(&s, &base, 3_000, 60, 11, 1, BuildOn::Rows);
        let full = build(&s, 3_000, 8, 60, 11, 1, BuildOn::Rows);
        assert_eq!(ext.len(), 3_000);
        let levels = ext.levels();
        assert_eq!(base.levels(), levels[..2_000].to_vec());
        for node in 0..3_000u32 {
            for lv in 0..=levels[node as usize] as usize {
                let row = ext.neighbours(node, lv);
                assert!(row.len() <= ext.cap(lv));
                assert!(row.iter().all(|&x| (x as usize) < 3_000 && x != node));
            }
            assert!(!ext.neighbours(node, 0).is_empty(), "node {node} unlinked");
        }
        let mut r = SplitMix64::new(9);
        let queries: Vec<Vec<f32>> = (0..80)
            .map(|_| {
                let mut q = s.row(r.below(3_000)).to_vec();
                q.iter_mut()
                    .for_each(|x| *x += ((r.next_u64() >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2);
                q
            })
            .collect();
        let (re, rf) = (recall(&ext, &s, &queries), recall(&full, &s, &queries));
        assert!(re >= rf - 0.03, "extended {re} vs built {rf}");
        let eg = graph_of(&ext, &s);
        let found = (2_000..3_000)
            .filter(|&row| eg.search(&s, s.row(row), 1, 40)[0].row as usize == row)
            .count();
        assert!(found >= 990, "{found} of 1000 new rows found by their own vector");
    }

    #[test]
    fn one_thread_and_two_give_the_same_bytes_and_deleted_new_rows_stay_out() {
        let mut s = clustered_set(1_500, 8, Metric::L2, 3);
        let base = build(&s, 1_000, 6, 40, 2, 1, BuildOn::Codes);
        for row in [1_003usize, 1_200, 1_499] {
            s.delete_row(row);
        }
        let one = extend(&s, &base, 1_500, 40, 2, 1, BuildOn::Codes);
        let two = extend(&s, &base, 1_500, 40, 2, 2, BuildOn::Codes);
        assert_eq!(one, two);
        for row in [1_003u32, 1_200, 1_499] {
            assert!(one.neighbours(row, 0).is_empty());
            for node in 0..1_500u32 {
                assert!(
                    !one.neighbours(node, 0).contains(&row),
                    "{node} links to deleted {row}"
                );
            }
        }
        // an empty base is a build
        let empty = FrozenGraph::with_levels(&[], 6);
        assert_eq!(
            extend(&s, &empty, 1_500, 40, 2, 1, BuildOn::Codes),
            build(&s, 1_500, 6, 40, 2, 1, BuildOn::Codes)
        );
    }
}
