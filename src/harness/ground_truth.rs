//! Exact brute-force top-k: the yardstick every recall figure is measured against.
//!
//! Blocked and multi-threaded: each thread takes a share of the queries and walks the rows
//! once per group of [`QUERY_BLOCK`] queries, so a row is loaded into cache once and
//! compared with the whole group. Ties are broken by the lower row number, so the answer
//! is a deterministic function of the data.

use std::collections::BinaryHeap;

use crate::vectors::VectorSet;

/// Queries compared against each row while it is hot in cache.
const QUERY_BLOCK: usize = 8;

#[derive(PartialEq)]
struct Cand(f32, u32);
impl Eq for Cand {}
impl PartialOrd for Cand {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Cand {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0).then(self.1.cmp(&other.1))
    }
}

/// The exact `k` nearest rows of `set` for each prepared query, nearest first (ties by
/// lower row). Queries must be prepared ([`VectorSet::prepare_query`]). CPU-heavy.
pub fn exact(set: &VectorSet, queries: &[Vec<f32>], k: usize) -> Vec<Vec<u32>> {
    exact_with_threads(set, queries, k, available_threads())
}

fn available_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// [`exact`] with an explicit thread count (benches compare 1 vs all).
pub fn exact_with_threads(set: &VectorSet, queries: &[Vec<f32>], k: usize, threads: usize) -> Vec<Vec<u32>> {
    let k = k.min(set.len());
    if queries.is_empty() || k == 0 {
        return vec![Vec::new(); queries.len()];
    }
    let threads = threads.clamp(1, queries.len().div_ceil(QUERY_BLOCK).max(1));
    let per = queries.len().div_ceil(threads);
    let mut out: Vec<Vec<u32>> = vec![Vec::new(); queries.len()];
    std::thread::scope(|s| {
        for (qs, outs) in queries.chunks(per).zip(out.chunks_mut(per)) {
            s.spawn(move || {
                for (qb, ob) in qs.chunks(QUERY_BLOCK).zip(outs.chunks_mut(QUERY_BLOCK)) {
                    block(set, qb, k, ob);
                }
            });
        }
    });
    out
}

fn block(set: &VectorSet, queries: &[Vec<f32>], k: usize, out: &mut [Vec<u32>]) {
    let metric = set.metric();
    let mut heaps: Vec<BinaryHeap<Cand>> = (0..queries.len())
        .map(|_| BinaryHeap::with_capacity(k + 1))
        .collect();
    for row in 0..set.len() {
        let r = set.row(row);
        for (q, heap) in queries.iter().zip(heaps.iter_mut()) {
            let key = metric.rank_key(q, r);
            if heap.len() < k {
                heap.push(Cand(key, row as u32));
            } else if let Some(top) = heap.peek() {
                if Cand(key, row as u32) < *top {
                    heap.pop();
                    heap.push(Cand(key, row as u32));
                }
            }
        }
    }
    for (heap, o) in heaps.into_iter().zip(out.iter_mut()) {
        *o = heap.into_sorted_vec().into_iter().map(|c| c.1).collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distance::Metric;
    use crate::rng::SplitMix64;
    use proptest::prelude::*;

    fn naive(set: &VectorSet, q: &[f32], k: usize) -> Vec<u32> {
        let mut all: Vec<(f32, u32)> = (0..set.len())
            .map(|i| (set.metric().distance(q, set.row(i)), i as u32))
            .collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        all.into_iter().take(k).map(|p| p.1).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn matches_naive(n in 1usize..120, dims in 1usize..20, nq in 1usize..20, k in 1usize..15, seed in any::<u64>(), m in 0usize..3, threads in 1usize..4) {
            let metric = [Metric::Cosine, Metric::L2, Metric::Dot][m];
            let mut r = SplitMix64::new(seed);
            // integers in a small range make exact ties common, which the tie rule must settle
            let data: Vec<f32> = (0..n * dims).map(|_| (r.below(7) as f32) - 3.0 + 0.001).collect();
            let set = VectorSet::from_rows(dims, metric, (0..n).map(|i| i.to_string()).collect(), data);
            let qs: Vec<Vec<f32>> = (0..nq).map(|i| set.row(i % n).to_vec()).collect();
            let got = exact_with_threads(&set, &qs, k, threads);
            for (q, g) in qs.iter().zip(&got) {
                let want = naive(&set, q, k);
                // the rank key and the reported distance may round differently on near-ties:
                // compare the distances found, position by position
                let dist = |rows: &[u32]| rows.iter().map(|&i| set.metric().distance(q, set.row(i as usize))).collect::<Vec<_>>();
                let (dg, dw) = (dist(g), dist(&want));
                prop_assert_eq!(g.len(), want.len());
                for (a, b) in dg.iter().zip(&dw) {
                    prop_assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{:?} vs {:?}", dg, dw);
                }
            }
        }
    }

    #[test]
    fn k_larger_than_set_is_clamped() {
        let set = VectorSet::from_rows(1, Metric::L2, vec!["a".into(), "b".into()], vec![0.0, 1.0]);
        assert_eq!(exact(&set, &[vec![0.9]], 5), vec![vec![1, 0]]);
    }
}
