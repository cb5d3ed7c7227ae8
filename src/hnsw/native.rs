//! vectune's own HNSW construction: deterministic on any number of threads.
//!
//! Nodes are inserted in the seeded order in **rounds whose boundaries depend only on `n`**
//! (prefix doubling, as ParlayANN does, PPoPP 2024): the first node alone, then rounds of
//! as many nodes as are already in, capped at [`MAX_ROUND_FRACTION`] of `n`. Within a round
//! every new node searches the graph as it stood at the round's start (read-only, in
//! parallel, any thread may take any node), and the links are then applied in a fixed
//! order: forward rows of the new nodes, then reverse links grouped by target node, each
//! target's row recomputed by one worker from its old row and its incoming nodes in
//! insertion order. Nothing depends on which thread did what, so 1 thread and N threads
//! give the same bytes.
//!
//! The rest is hnswlib's algorithm: levels drawn from the seed with the 1/ln(m) multiplier,
//! greedy descent to the node's level, a beam of `ef_construction` on each level below,
//! and hnswlib's neighbour heuristic (keep a candidate only if it is nearer to the node than
//! to every neighbour kept so far) both to pick a new node's `m` links and to shrink a row
//! that overflows its capacity (`2·m` on layer 0, `m` above).

use std::sync::atomic::{AtomicUsize, Ordering};

use super::frozen::{prefetch_lines, Beam, Cand, FrozenGraph};
use super::{key, MAX_LAYERS};
use crate::distance::Metric;
use crate::kernels::{self, Kernel, Task};
use crate::rng::SplitMix64;
use crate::vectors::VectorSet;

/// Largest round, as a fraction of `n`: nodes of one round do not see each other, so a
/// round must stay small beside the graph it searches.
pub const MAX_ROUND_FRACTION: f64 = 0.02;
/// Nodes a worker claims at a time within a round.
const CLAIM: usize = 4;
/// Below this many nodes a round runs on the calling thread (spawning costs more).
const PARALLEL_MIN: usize = 32;

/// The rounds of a build of `n` nodes, as `[start, end)` positions in the insertion order.
pub fn rounds(n: usize) -> Vec<(usize, usize)> {
    let cap = ((n as f64 * MAX_ROUND_FRACTION).ceil() as usize).max(1);
    let mut out = Vec::new();
    if n == 0 {
        return out;
    }
    out.push((0, 1));
    let mut at = 1;
    while at < n {
        let len = at.min(cap).min(n - at);
        out.push((at, at + len));
        at += len;
    }
    out
}

/// Levels of the nodes at each insertion position: `⌊-ln(u)/ln(m)⌋`, capped, from the seed.
fn levels(n: usize, m: usize, seed: u64) -> Vec<u8> {
    let mult = 1.0 / (m.max(2) as f64).ln();
    let mut r = SplitMix64::new(seed ^ 0x9e37_79b9_7f4a_7c15);
    (0..n)
        .map(|_| {
            // u in (0, 1]: 53 random bits, never 0
            let u = ((r.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64;
            ((-u.ln() * mult) as usize).min(MAX_LAYERS - 1) as u8
        })
        .collect()
}

/// Builds the graph of the first `n` rows of `set` with the process's kernels.
pub fn build(
    set: &VectorSet,
    n: usize,
    m: usize,
    ef_construction: usize,
    seed: u64,
    threads: usize,
) -> FrozenGraph {
    build_at(kernels::level(), set, n, m, ef_construction, seed, threads)
}

/// [`build`] with an explicit kernel level (tests compare levels).
pub fn build_at(
    level: kernels::Level,
    set: &VectorSet,
    n: usize,
    m: usize,
    ef_construction: usize,
    seed: u64,
    threads: usize,
) -> FrozenGraph {
    kernels::run_at(
        level,
        BuildTask {
            set,
            n: n.min(set.len()),
            m,
            ef: ef_construction,
            seed,
            threads: threads.max(1),
        },
    )
}

struct BuildTask<'a> {
    set: &'a VectorSet,
    n: usize,
    m: usize,
    ef: usize,
    seed: u64,
    threads: usize,
}

impl Task for BuildTask<'_> {
    type Output = FrozenGraph;
    #[inline(always)]
    fn run<K: Kernel>(self, kernel: K) -> FrozenGraph {
        match self.set.metric() {
            Metric::L2 => build_with::<K, true>(kernel, &self),
            Metric::Cosine | Metric::Dot => build_with::<K, false>(kernel, &self),
        }
    }
}

/// One new node's selected links: `(level, neighbours)`, top level first.
struct Linked {
    node: u32,
    levels: Vec<(u8, Vec<u32>)>,
}

/// hnswlib's heuristic: from `cands` (nearest first, keys to the base node), keep a
/// candidate only if it is nearer to the base than to every one kept; stop at `m`. Fewer
/// than `m` candidates are all kept, as hnswlib does.
#[inline(always)]
fn select<F: FnMut(u32, u32) -> f32>(cands: &[Cand], m: usize, out: &mut Vec<Cand>, between: &mut F) {
    out.clear();
    if cands.len() < m {
        out.extend_from_slice(cands);
        return;
    }
    for &c in cands {
        if out.len() >= m {
            break;
        }
        if out.iter().all(|r| between(c.1, r.1) >= c.0) {
            out.push(c);
        }
    }
}

/// Public for the heuristic's unit tests: [`select`] over precomputed keys.
pub fn select_by(cands: &[(f32, u32)], m: usize, between: impl Fn(u32, u32) -> f32) -> Vec<u32> {
    let c: Vec<Cand> = cands.iter().map(|&(d, r)| Cand(d, r)).collect();
    let mut out = Vec::new();
    select(&c, m, &mut out, &mut |a, b| between(a, b));
    out.into_iter().map(|c| c.1).collect()
}

#[inline(always)]
fn build_with<K: Kernel, const L2: bool>(kernel: K, t: &BuildTask<'_>) -> FrozenGraph {
    let (set, n, m) = (t.set, t.n, t.m);
    let order = SplitMix64::new(t.seed).permutation(n);
    let level_at = levels(n, m, t.seed);
    let mut level = vec![0u8; n];
    for (pos, &row) in order.iter().enumerate() {
        level[row] = level_at[pos];
    }
    let mut g = FrozenGraph::with_levels(&level, m);
    if n == 0 {
        return g;
    }
    g.entry = order[0] as u32;
    g.max_level = level[order[0]] as usize;
    let mut beams: Vec<Beam> = (0..t.threads).map(|_| Beam::default()).collect();
    let row_bytes = set.dims() * 4;
    for (start, end) in rounds(n).into_iter().skip(1) {
        let batch = &order[start..end];
        // 1. every new node searches the graph as it stood at the round's start
        let graph = &g;
        let linked: Vec<Linked> = parallel(batch.len(), &mut beams, |i, beam, out: &mut Vec<Linked>| {
            let node = batch[i] as u32;
            let q = set.row(node as usize);
            let mut dist = |x: u32| key::<K, L2>(kernel, q, set.row(x as usize));
            let prefetch = |x: u32| prefetch_lines(set.row(x as usize).as_ptr() as *const u8, row_bytes);
            let mut between = |a: u32, b: u32| key::<K, L2>(kernel, set.row(a as usize), set.row(b as usize));
            let mut evals = 0u64;
            let top = level[node as usize] as usize;
            let d_ep = dist(graph.entry);
            let (mut ep, mut d_ep) = graph.descend(
                graph.entry,
                d_ep,
                graph.max_level,
                top,
                &mut dist,
                &|_| {},
                &mut evals,
            );
            let mut cands = Vec::new();
            let mut chosen = Vec::new();
            let mut levels = Vec::new();
            for lv in (0..=top.min(graph.max_level)).rev() {
                graph.beam(lv, ep, d_ep, t.ef, beam, &mut dist, &prefetch, &mut evals);
                beam.results_into(&mut cands);
                select(&cands, m, &mut chosen, &mut between);
                if let Some(c) = chosen.first() {
                    (ep, d_ep) = (c.1, c.0);
                }
                levels.push((lv as u8, chosen.iter().map(|c| c.1).collect()));
            }
            out.push(Linked { node, levels });
        });
        // 2. forward links of the new nodes
        for l in &linked {
            for (lv, list) in &l.levels {
                g.set_neighbours(l.node, *lv as usize, list);
            }
        }
        // 3. reverse links, grouped by (level, target), sources in insertion order
        let mut reverse: Vec<(u8, u32, u32)> = Vec::new();
        for l in &linked {
            for (lv, list) in &l.levels {
                reverse.extend(list.iter().map(|&target| (*lv, target, l.node)));
            }
        }
        // stable: sources of one target stay in insertion order
        reverse.sort_by_key(|&(lv, target, _)| (lv, target));
        let mut groups: Vec<(usize, usize)> = Vec::new();
        let mut i = 0;
        while i < reverse.len() {
            let mut j = i + 1;
            while j < reverse.len() && reverse[j].0 == reverse[i].0 && reverse[j].1 == reverse[i].1 {
                j += 1;
            }
            groups.push((i, j));
            i = j;
        }
        let graph = &g;
        let rows: Vec<(u8, u32, Vec<u32>)> = parallel(
            groups.len(),
            &mut beams,
            |gi, _beam, out: &mut Vec<(u8, u32, Vec<u32>)>| {
                let (a, b) = groups[gi];
                let (lv, target) = (reverse[a].0, reverse[a].1);
                let cap = graph.cap(lv as usize);
                let old = graph.neighbours(target, lv as usize);
                let incoming = reverse[a..b].iter().map(|r| r.2);
                if old.len() + (b - a) <= cap {
                    let mut row = old.to_vec();
                    row.extend(incoming);
                    out.push((lv, target, row));
                    return;
                }
                let t_row = set.row(target as usize);
                let mut cands: Vec<Cand> = old
                    .iter()
                    .copied()
                    .chain(incoming)
                    .map(|x| Cand(key::<K, L2>(kernel, t_row, set.row(x as usize)), x))
                    .collect();
                cands.sort_unstable();
                let mut kept = Vec::new();
                let mut between =
                    |x: u32, y: u32| key::<K, L2>(kernel, set.row(x as usize), set.row(y as usize));
                select(&cands, cap, &mut kept, &mut between);
                out.push((lv, target, kept.iter().map(|c| c.1).collect()));
            },
        );
        for (lv, target, row) in rows {
            g.set_neighbours(target, lv as usize, &row);
        }
        // 4. a new node above the top becomes the entry point (the first such, in order)
        for &row in batch {
            if level[row] as usize > g.max_level {
                g.max_level = level[row] as usize;
                g.entry = row as u32;
            }
        }
    }
    g
}

/// Runs `work(i, beam, out)` for every `i < count` on up to `beams.len()` threads, each
/// with its own beam, and returns the outputs in the order of `i`, whichever thread ran it.
#[inline(always)]
fn parallel<T: Send, F>(count: usize, beams: &mut [Beam], work: F) -> Vec<T>
where
    F: Fn(usize, &mut Beam, &mut Vec<T>) + Sync,
{
    let threads = beams.len().min(count.div_ceil(CLAIM)).max(1);
    if threads == 1 || count < PARALLEL_MIN {
        let mut out = Vec::with_capacity(count);
        for i in 0..count {
            work(i, &mut beams[0], &mut out);
        }
        return out;
    }
    let next = AtomicUsize::new(0);
    let mut parts: Vec<Vec<(usize, T)>> = std::thread::scope(|s| {
        let handles: Vec<_> = beams[..threads]
            .iter_mut()
            .map(|beam| {
                let (next, work) = (&next, &work);
                s.spawn(move || {
                    let mut mine = Vec::new();
                    let mut buf = Vec::with_capacity(1);
                    loop {
                        let from = next.fetch_add(CLAIM, Ordering::Relaxed);
                        if from >= count {
                            break;
                        }
                        for i in from..(from + CLAIM).min(count) {
                            work(i, beam, &mut buf);
                            mine.extend(buf.drain(..).map(|t| (i, t)));
                        }
                    }
                    mine
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut all: Vec<(usize, T)> = parts.iter_mut().flat_map(|p| p.drain(..)).collect();
    all.sort_by_key(|p| p.0);
    all.into_iter().map(|p| p.1).collect()
}
