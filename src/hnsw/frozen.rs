//! The frozen serving graph: a flat, read-only copy of a built HNSW graph.
//!
//! hnsw_rs stores every point behind an `Arc`, every neighbour list behind a lock, and
//! allocates a visited map and several vectors per search; measured here that makes its
//! search ~3× slower than hnswlib at equal recall, with the distance kernel not the cause.
//! Freezing copies the graph's links into contiguous arrays and searches them with
//! standard HNSW (greedy descent through the upper layers, a beam of width `ef` on layer
//! 0), a reusable generation-stamped visited array, by-value heaps, software prefetch of
//! the next vectors, and an AVX2+FMA kernel inlined into the search loop.
//!
//! Layout, for `n` nodes and `m` links per upper-layer node (`m0 = 2·m` on layer 0):
//! - `layer0`: `n × (1 + m0)` u32: a count, then the neighbour rows, padded;
//! - `upper_start[node]`: offset of the node's upper-layer block in `upper`, or `NONE`;
//!   the block holds, for each level `1..=level(node)`, a count then `m` slots;
//! - vectors are not copied: the graph searches the index's [`VectorSet`] it was built
//!   from (rows in the same order), so serving memory is the vectors once plus the links.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::distance::{self, Metric};
use crate::vectors::VectorSet;

/// Marks "no upper-layer block".
const NONE: u32 = u32::MAX;
/// Most layer-0 links a node can have (2 × the largest `m`).
const MAX_M0: usize = 2 * super::config::M.1 as usize;
/// How many neighbours' vectors are prefetched ahead of the one being compared.
const PREFETCH_AHEAD: usize = 1;

/// A frozen graph's links.
#[derive(Debug, Clone, PartialEq)]
pub struct FrozenGraph {
    pub(crate) n: usize,
    pub(crate) m: usize,
    pub(crate) m0: usize,
    pub(crate) max_level: usize,
    pub(crate) entry: u32,
    pub(crate) layer0: Vec<u32>,
    pub(crate) upper_start: Vec<u32>,
    pub(crate) upper: Vec<u32>,
}

/// `(key, row)` ordered by key then row, so heaps are total orders without NaN (keys are
/// finite: vectors and queries are checked finite before they get here).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Cand(f32, u32);
impl Eq for Cand {}
impl PartialOrd for Cand {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Cand {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0).then(self.1.cmp(&other.1))
    }
}

/// Per-thread search scratch, reused across searches (no allocation per search once warm).
#[derive(Default)]
struct Scratch {
    visited: Vec<u32>,
    stamp: u32,
    candidates: BinaryHeap<std::cmp::Reverse<Cand>>,
    results: BinaryHeap<Cand>,
}

impl Scratch {
    /// Starts a new search over `n` nodes: a new stamp instead of clearing the array.
    fn begin(&mut self, n: usize) {
        if self.visited.len() < n {
            self.visited.resize(n, 0);
        }
        self.stamp = self.stamp.wrapping_add(1);
        if self.stamp == 0 {
            self.visited.iter_mut().for_each(|v| *v = 0);
            self.stamp = 1;
        }
        self.candidates.clear();
        self.results.clear();
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// The neighbour lists of one built graph, as the freezer reads them.
pub struct Links {
    /// Level of each node (row).
    pub level: Vec<u8>,
    /// `lists[node][l]`: neighbour rows of `node` on level `l` (for `l <= level[node]`).
    pub lists: Vec<Vec<Vec<u32>>>,
    /// Entry point row.
    pub entry: u32,
}

impl FrozenGraph {
    /// Freezes links read from a builder. Links to nodes that are not on that level are
    /// dropped (hnsw_rs leaves a few), and lists are capped at the slot width.
    pub fn from_links(links: Links, m: usize) -> FrozenGraph {
        let n = links.level.len();
        let m0 = 2 * m;
        let max_level = links.level.iter().copied().max().unwrap_or(0) as usize;
        let mut layer0 = vec![0u32; n * (1 + m0)];
        let mut upper_start = vec![NONE; n];
        let mut upper = Vec::new();
        for node in 0..n {
            let lvl = links.level[node] as usize;
            let lists = &links.lists[node];
            let row = &mut layer0[node * (1 + m0)..(node + 1) * (1 + m0)];
            let l0: Vec<u32> = lists.first().map_or(Vec::new(), |l| {
                l.iter()
                    .copied()
                    .filter(|&x| (x as usize) < n && x as usize != node)
                    .take(m0)
                    .collect()
            });
            row[0] = l0.len() as u32;
            row[1..1 + l0.len()].copy_from_slice(&l0);
            if lvl > 0 {
                upper_start[node] = upper.len() as u32;
                for l in 1..=lvl {
                    let list: Vec<u32> = lists.get(l).map_or(Vec::new(), |v| {
                        v.iter()
                            .copied()
                            .filter(|&x| {
                                (x as usize) < n
                                    && x as usize != node
                                    && links.level[x as usize] as usize >= l
                            })
                            .take(m)
                            .collect()
                    });
                    upper.push(list.len() as u32);
                    upper.extend_from_slice(&list);
                    upper.extend(std::iter::repeat_n(0, m - list.len()));
                }
            }
        }
        FrozenGraph {
            n,
            m,
            m0,
            max_level,
            entry: links.entry,
            layer0,
            upper_start,
            upper,
        }
    }

    /// Nodes in the graph.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether it has no nodes.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Bytes held by the links (the vectors are the index's, counted once elsewhere).
    pub fn memory_bytes(&self) -> usize {
        (self.layer0.len() + self.upper_start.len() + self.upper.len()) * 4 + std::mem::size_of::<Self>()
    }

    #[inline]
    fn neighbours0(&self, node: u32) -> &[u32] {
        let at = node as usize * (1 + self.m0);
        let count = self.layer0[at] as usize;
        &self.layer0[at + 1..at + 1 + count]
    }

    #[inline]
    fn neighbours_up(&self, node: u32, level: usize) -> &[u32] {
        let start = self.upper_start[node as usize];
        if start == NONE {
            return &[];
        }
        let at = start as usize + (level - 1) * (1 + self.m);
        // never panics, even on links a checksum could not vouch for
        match self.upper.get(at) {
            Some(&count) => self
                .upper
                .get(at + 1..at + 1 + (count as usize).min(self.m))
                .unwrap_or(&[]),
            None => &[],
        }
    }

    /// The `k` nearest rows to a prepared query (right length, finite, normalised for
    /// cosine), as `(row, rank key)` nearest first; the rank key is
    /// [`Metric::rank_key`]. `set` must be the set the graph was frozen over.
    /// `counter` (if any) is incremented by the number of distance computations.
    pub fn search(
        &self,
        set: &VectorSet,
        query: &[f32],
        k: usize,
        ef: usize,
        counter: Option<&mut u64>,
    ) -> Vec<(u32, f32)> {
        if self.n == 0 || k == 0 {
            return Vec::new();
        }
        let ef = ef.max(k);
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            #[cfg(target_arch = "x86_64")]
            {
                if distance::has_avx2_fma() {
                    // SAFETY: the CPU supports AVX2 and FMA (checked at run time above).
                    return unsafe { self.search_avx2(set, query, k, ef, &mut s, counter) };
                }
            }
            self.search_with(set, query, k, ef, &mut s, counter, |a, b| {
                scalar_key(set.metric(), a, b)
            })
        })
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn search_avx2(
        &self,
        set: &VectorSet,
        query: &[f32],
        k: usize,
        ef: usize,
        s: &mut Scratch,
        counter: Option<&mut u64>,
    ) -> Vec<(u32, f32)> {
        match set.metric() {
            // SAFETY (closures): only reached when AVX2 and FMA are present.
            Metric::Cosine | Metric::Dot => self.search_with(set, query, k, ef, s, counter, |a, b| -unsafe {
                distance::dot_avx2(a, b)
            }),
            Metric::L2 => self.search_with(set, query, k, ef, s, counter, |a, b| unsafe {
                distance::l2sq_avx2(a, b)
            }),
        }
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn search_with<F: Fn(&[f32], &[f32]) -> f32>(
        &self,
        set: &VectorSet,
        query: &[f32],
        k: usize,
        ef: usize,
        s: &mut Scratch,
        counter: Option<&mut u64>,
        key: F,
    ) -> Vec<(u32, f32)> {
        let mut evals = 0u64;
        let mut ep = self.entry;
        let mut d_ep = key(query, set.row(ep as usize));
        evals += 1;
        // greedy descent: on each upper level, move while a neighbour is nearer
        for level in (1..=self.max_level).rev() {
            loop {
                let mut moved = false;
                for &nb in self.neighbours_up(ep, level) {
                    let d = key(query, set.row(nb as usize));
                    evals += 1;
                    if d < d_ep {
                        d_ep = d;
                        ep = nb;
                        moved = true;
                    }
                }
                if !moved {
                    break;
                }
            }
        }
        // beam search on layer 0
        s.begin(self.n);
        let stamp = s.stamp;
        s.visited[ep as usize] = stamp;
        s.candidates.push(std::cmp::Reverse(Cand(d_ep, ep)));
        s.results.push(Cand(d_ep, ep));
        while let Some(std::cmp::Reverse(Cand(d, node))) = s.candidates.pop() {
            let worst = s.results.peek().map_or(f32::INFINITY, |c| c.0);
            if d > worst && s.results.len() >= ef {
                break;
            }
            // first the unvisited neighbours (marking them), then their distances with the
            // vectors a few ahead prefetched whole: a search is bound by memory latency, not
            // by arithmetic (a 384-d vector is 24 cache lines)
            let mut todo = [0u32; MAX_M0];
            let mut count = 0;
            for &nb in self.neighbours0(node).iter().take(MAX_M0) {
                let seen = &mut s.visited[nb as usize];
                if *seen != stamp {
                    *seen = stamp;
                    todo[count] = nb;
                    count += 1;
                }
            }
            for &nb in &todo[..count.min(PREFETCH_AHEAD)] {
                prefetch_row(set.row(nb as usize));
            }
            for j in 0..count {
                if let Some(&ahead) = todo[..count].get(j + PREFETCH_AHEAD) {
                    prefetch_row(set.row(ahead as usize));
                }
                let nb = todo[j];
                let dn = key(query, set.row(nb as usize));
                evals += 1;
                let worst = s.results.peek().map_or(f32::INFINITY, |c| c.0);
                if s.results.len() < ef || dn < worst {
                    s.candidates.push(std::cmp::Reverse(Cand(dn, nb)));
                    s.results.push(Cand(dn, nb));
                    if s.results.len() > ef {
                        s.results.pop();
                    }
                }
            }
            if let Some(&std::cmp::Reverse(Cand(_, next))) = s.candidates.peek() {
                prefetch(self.layer0.as_ptr().wrapping_add(next as usize * (1 + self.m0)) as *const f32);
            }
        }
        if let Some(c) = counter {
            *c += evals;
        }
        let mut out: Vec<Cand> = s.results.drain().collect();
        out.sort_unstable();
        out.truncate(k);
        out.into_iter().map(|c| (c.1, c.0)).collect()
    }
}

/// The rank key without SIMD (the portable path).
fn scalar_key(metric: Metric, a: &[f32], b: &[f32]) -> f32 {
    match metric {
        Metric::Cosine | Metric::Dot => -distance::dot_scalar(a, b),
        Metric::L2 => distance::l2_squared_scalar(a, b),
    }
}

/// Prefetches every cache line of a vector.
#[inline(always)]
fn prefetch_row(row: &[f32]) {
    let p = row.as_ptr();
    let mut off = 0;
    while off < row.len() {
        prefetch(p.wrapping_add(off));
        off += 16; // 64-byte lines
    }
}

#[inline(always)]
fn prefetch(p: *const f32) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetch is a hint; it never faults, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch(p as *const i8, std::arch::x86_64::_MM_HINT_T0);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
