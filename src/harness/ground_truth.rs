//! Exact brute-force top-k: the yardstick every recall figure is measured against.
//!
//! Blocked and multi-threaded like a GEMM: each thread takes a share of the queries; rows
//! are walked in blocks of [`ROW_BLOCK`] that stay in L2 while every query of the share is
//! compared with them, four queries × two rows at a time in an AVX2+FMA register tile
//! (eight accumulators: six loads feed eight FMAs instead of two loads per FMA; 512-bit
//! registers where the process chose AVX-512: [`Kernel::tile4x2`]). A
//! candidate enters a query's top-k heap only if it beats the current k-th, so the heap
//! work is tiny. Ties are broken by the lower row number, so the answer is a deterministic
//! function of the data.

use std::collections::BinaryHeap;

use crate::distance::Metric;
use crate::kernels::{self, Kernel, Task};
use crate::vectors::{QueryError, VectorSet};

/// Queries per thread-work unit (a multiple of the 4-query tile).
const QUERY_BLOCK: usize = 8;
/// Rows kept hot in cache while the thread's queries pass over them.
const ROW_BLOCK: usize = 128;

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
/// lower row). Queries must be prepared ([`VectorSet::prepare_query`]); one of another
/// length than the set's rows is refused before any SIMD load reads it. CPU-heavy.
pub fn exact(set: &VectorSet, queries: &[Vec<f32>], k: usize) -> Result<Vec<Vec<u32>>, QueryError> {
    exact_with_threads(set, queries, k, available_threads())
}

fn available_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// [`exact`] with an explicit thread count (benches compare 1 vs all).
pub fn exact_with_threads(
    set: &VectorSet,
    queries: &[Vec<f32>],
    k: usize,
    threads: usize,
) -> Result<Vec<Vec<u32>>, QueryError> {
    if let Some(q) = queries.iter().find(|q| q.len() != set.dims()) {
        return Err(QueryError::Dims {
            expected: set.dims(),
            got: q.len(),
        });
    }
    let k = k.min(set.live());
    if queries.is_empty() || k == 0 {
        return Ok(vec![Vec::new(); queries.len()]);
    }
    let threads = threads.clamp(1, queries.len().div_ceil(QUERY_BLOCK).max(1));
    let per = queries.len().div_ceil(threads);
    let mut out: Vec<Vec<u32>> = vec![Vec::new(); queries.len()];
    std::thread::scope(|s| {
        for (qs, outs) in queries.chunks(per).zip(out.chunks_mut(per)) {
            s.spawn(move || {
                kernels::run(Share {
                    set,
                    queries: qs,
                    k,
                    out: outs,
                })
            });
        }
    });
    Ok(out)
}

/// One thread's share of the queries, compiled per kernel.
struct Share<'a> {
    set: &'a VectorSet,
    queries: &'a [Vec<f32>],
    k: usize,
    out: &'a mut [Vec<u32>],
}

impl Task for Share<'_> {
    type Output = ();
    #[inline(always)]
    fn run<K: Kernel>(self, kernel: K) {
        share(kernel, self.set, self.queries, self.k, self.out)
    }
}

/// Top-k state of one query: a max-heap of the best k seen, and the k-th key once full.
struct TopK {
    heap: BinaryHeap<Cand>,
    k: usize,
    worst: f32,
}

impl TopK {
    fn new(k: usize) -> TopK {
        TopK {
            heap: BinaryHeap::with_capacity(k + 1),
            k,
            worst: f32::INFINITY,
        }
    }

    /// Rows arrive in increasing order, so an equal key never beats the current k-th.
    #[inline(always)]
    fn offer(&mut self, key: f32, row: u32) {
        if key < self.worst {
            self.heap.push(Cand(key, row));
            if self.heap.len() > self.k {
                self.heap.pop();
            }
            if self.heap.len() == self.k {
                self.worst = self.heap.peek().map_or(f32::INFINITY, |c| c.0);
            }
        } else if self.heap.len() < self.k {
            self.heap.push(Cand(key, row));
            if self.heap.len() == self.k {
                self.worst = self.heap.peek().map_or(f32::INFINITY, |c| c.0);
            }
        }
    }
}

/// Every query has the set's dims (checked by [`exact_with_threads`]).
#[inline(always)]
fn share<K: Kernel>(kernel: K, set: &VectorSet, queries: &[Vec<f32>], k: usize, out: &mut [Vec<u32>]) {
    let metric = set.metric();
    let l2 = metric == Metric::L2;
    let mut tops: Vec<TopK> = (0..queries.len()).map(|_| TopK::new(k)).collect();
    let n = set.len();
    // deleted rows are never ground truth (a bit test a row only when there are any)
    let dead = set.deleted() > 0;
    let mut start = 0;
    while start < n {
        let end = (start + ROW_BLOCK).min(n);
        for (qi, qs) in queries.chunks(4).enumerate() {
            // pad a short tile by repeating its last query; the extra results are dropped
            let q: [&[f32]; 4] = std::array::from_fn(|i| qs[i.min(qs.len() - 1)].as_slice());
            let mut row = start;
            while row < end {
                let r1 = if row + 1 < end { row + 1 } else { row };
                let keys = kernel.tile4x2(q, [set.row(row), set.row(r1)], l2);
                let (keep0, keep1) = if dead {
                    (!set.is_deleted(row), r1 != row && !set.is_deleted(r1))
                } else {
                    (true, r1 != row)
                };
                for (j, top) in tops[qi * 4..qi * 4 + qs.len()].iter_mut().enumerate() {
                    if keep0 {
                        top.offer(keys[j][0], row as u32);
                    }
                    if keep1 {
                        top.offer(keys[j][1], r1 as u32);
                    }
                }
                row += 2;
            }
        }
        start = end;
    }
    for (top, o) in tops.into_iter().zip(out.iter_mut()) {
        *o = top.heap.into_sorted_vec().into_iter().map(|c| c.1).collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;
    use proptest::prelude::*;

    fn naive(set: &VectorSet, q: &[f32], k: usize) -> Vec<u32> {
        let mut all: Vec<(f32, u32)> = (0..set.len())
            .map(|i| (set.metric().distance(q, set.row(i)), i as u32))
            .collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        all.into_iter().take(k).map(|p| p.1).collect()
    }

    /// Deleted rows are never ground truth, on every kernel level.
    #[test]
    fn deleted_rows_are_left_out() {
        let mut r = SplitMix64::new(12);
        let (n, dims) = (300, 9);
        let data: Vec<f32> = (0..n * dims)
            .map(|_| r.below(2001) as f32 / 1000.0 - 1.0)
            .collect();
        for metric in [Metric::Cosine, Metric::L2, Metric::Dot] {
            let mut set = VectorSet::from_rows(
                dims,
                metric,
                (0..n).map(|i| i.to_string()).collect(),
                data.clone(),
            );
            for row in (0..n).step_by(2) {
                set.delete_row(row);
            }
            let qs: Vec<Vec<f32>> = (0..12).map(|i| set.row(i * 7).to_vec()).collect();
            let live: Vec<usize> = set.live_rows().collect();
            for threads in [1, 3] {
                let got = exact_with_threads(&set, &qs, 10, threads).unwrap();
                for (q, found) in qs.iter().zip(&got) {
                    let mut want: Vec<(f32, u32)> = live
                        .iter()
                        .map(|&i| (set.metric().distance(q, set.row(i)), i as u32))
                        .collect();
                    want.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                    let want: Vec<u32> = want.into_iter().take(10).map(|p| p.1).collect();
                    assert_eq!(found, &want, "{metric:?}");
                }
            }
        }
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
            let got = exact_with_threads(&set, &qs, k, threads).unwrap();
            // and every kernel this CPU has, entered directly
            let mut runs = vec![("dispatched".to_string(), got)];
            for level in crate::kernels::supported() {
                let mut outs = vec![Vec::new(); qs.len()];
                crate::kernels::run_at(level, Share { set: &set, queries: &qs, k: k.min(n), out: &mut outs });
                runs.push((level.to_string(), outs));
            }
            for (which, found) in &runs {
                for (q, g) in qs.iter().zip(found) {
                    let want = naive(&set, q, k);
                    // the rank key and the reported distance may round differently on near-ties:
                    // compare the distances found, position by position
                    let dist = |rows: &[u32]| rows.iter().map(|&i| set.metric().distance(q, set.row(i as usize))).collect::<Vec<_>>();
                    let (dg, dw) = (dist(g), dist(&want));
                    prop_assert_eq!(g.len(), want.len());
                    for (a, b) in dg.iter().zip(&dw) {
                        prop_assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{}: {:?} vs {:?}", which, dg, dw);
                    }
                }
            }
        }
    }

    #[test]
    fn k_larger_than_set_is_clamped() {
        let set = VectorSet::from_rows(1, Metric::L2, vec!["a".into(), "b".into()], vec![0.0, 1.0]);
        assert_eq!(exact(&set, &[vec![0.9]], 5).unwrap(), vec![vec![1, 0]]);
    }

    /// A query shorter (or longer) than the rows is refused before any load reads past it.
    #[test]
    fn a_query_of_another_length_is_refused() {
        let set = VectorSet::from_rows(
            16,
            Metric::L2,
            (0..4).map(|i| i.to_string()).collect(),
            vec![0.5; 64],
        );
        for len in [0, 1, 15, 17] {
            assert_eq!(
                exact(&set, &[vec![0.0; 16], vec![0.0; len]], 2),
                Err(QueryError::Dims {
                    expected: 16,
                    got: len
                })
            );
        }
    }
}
