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
//!
//! Distances come from a [`Space`]: the f32 rows, or ([`BuildOn::Codes`], the `native_sq8`
//! engine) SQ8 codes of them, a quarter of the bytes a distance reads, as glass builds. The
//! round's work items are structs run inside the kernel level on every thread
//! ([`Kernel::enter`]), so the kernels inline in the workers as on the calling thread.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::frozen::{prefetch_lines, Beam, Cand, FrozenGraph, Patience};
use super::sq::{Bits, QueryCodes, Sq};
use super::{key, MAX_LAYERS};
use crate::distance::Metric;
use crate::kernels::{self, Kernel, Task};
use crate::rng::SplitMix64;
use crate::vectors::VectorSet;

mod extend;
mod watch;
pub use extend::extend;
pub use watch::{BuildProgress, BuildWatch};

/// Largest round, as a fraction of `n`: nodes of one round do not see each other, so a
/// round must stay small beside the graph it searches.
pub const MAX_ROUND_FRACTION: f64 = 0.02;
/// Nodes a worker claims at a time within a round.
const CLAIM: usize = 4;
/// Below this many nodes a round runs on the calling thread (spawning costs more).
const PARALLEL_MIN: usize = 32;

/// The rounds of a build of `n` nodes, as `[start, end)` positions in the insertion order.
pub fn rounds(n: usize) -> Vec<(usize, usize)> {
    if n == 0 {
        return Vec::new();
    }
    let mut out = vec![(0, 1)];
    out.extend(rounds_after(1, n - 1, n).into_iter().map(|(a, b)| (a + 1, b + 1)));
    out
}

/// The rounds that insert `new` nodes into a graph of `held`, as `[start, end)` positions
/// among the new ones: each round at most as many as the graph holds by then and at most
/// [`MAX_ROUND_FRACTION`] of `total`. A build's rounds after its first node, and a graph's
/// extension ([`extend`]), both take them from here.
fn rounds_after(held: usize, new: usize, total: usize) -> Vec<(usize, usize)> {
    let cap = ((total as f64 * MAX_ROUND_FRACTION).ceil() as usize).max(1);
    let (mut out, mut pos) = (Vec::new(), 0);
    while pos < new {
        let len = (held + pos).min(cap).min(new - pos).max(1);
        out.push((pos, pos + len));
        pos += len;
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

/// What a build measures distances on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BuildOn {
    /// The f32 rows.
    #[default]
    Rows,
    /// SQ8 codes of the rows (a quarter of the bytes a distance reads), each node folded
    /// into the codes' space as a query (glass builds on 8-bit codes the same way).
    Codes,
}

/// Builds the graph of the first `n` rows of `set` with the process's kernels.
pub fn build(
    set: &VectorSet,
    n: usize,
    m: usize,
    ef_construction: usize,
    seed: u64,
    threads: usize,
    on: BuildOn,
) -> FrozenGraph {
    build_at(
        kernels::level(),
        set,
        n,
        m,
        ef_construction,
        seed,
        threads,
        on,
        None,
    )
}

/// [`build`] with an explicit kernel level (tests compare levels), reporting to (and stopped
/// by) `watch` when one is given: the one place a build from nothing is started.
#[allow(clippy::too_many_arguments)]
pub fn build_at(
    level: kernels::Level,
    set: &VectorSet,
    n: usize,
    m: usize,
    ef_construction: usize,
    seed: u64,
    threads: usize,
    on: BuildOn,
    watch: Option<&BuildWatch>,
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
            on,
            base: None,
            watch,
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
    on: BuildOn,
    /// A graph of a prefix of the rows to extend instead of building from nothing.
    base: Option<&'a FrozenGraph>,
    /// Progress and stop, when someone watches.
    watch: Option<&'a BuildWatch>,
}

impl Task for BuildTask<'_> {
    type Output = FrozenGraph;
    #[inline(always)]
    fn run<K: Kernel>(self, kernel: K) -> FrozenGraph {
        let set = self.set;
        match (self.on, set.metric()) {
            (BuildOn::Rows, Metric::L2) => build_with(kernel, &Rows::<K, true> { kernel, set }, &self),
            (BuildOn::Rows, Metric::Cosine | Metric::Dot) => {
                build_with(kernel, &Rows::<K, false> { kernel, set }, &self)
            }
            (BuildOn::Codes, _) => {
                let codes = Sq::encode(set, self.n, Bits::Eight);
                build_with(kernel, &Codes { kernel, set, codes }, &self)
            }
        }
    }
}

/// The distances a build measures: from a node prepared as a query to any node. Keys of
/// two different queries must be comparable (the heuristic compares a candidate's key to
/// the new node with its key to each kept neighbour), so a space returns estimates of the
/// exact key, not keys up to a per-query constant.
trait Space: Sync {
    /// A node folded into the space as a query (reused: no allocation once warm).
    type Query: Default + Send;
    fn prepare(&self, node: u32, q: &mut Self::Query);
    fn key(&self, q: &Self::Query, x: u32) -> f32;
    fn prefetch(&self, x: u32);
}

/// Distances on the f32 rows: a query is the node's row.
struct Rows<'a, K, const L2: bool> {
    kernel: K,
    set: &'a VectorSet,
}

impl<'a, K: Kernel, const L2: bool> Space for Rows<'a, K, L2> {
    type Query = &'a [f32];
    #[inline(always)]
    fn prepare(&self, node: u32, q: &mut &'a [f32]) {
        *q = self.set.row(node as usize);
    }
    #[inline(always)]
    fn key(&self, q: &&'a [f32], x: u32) -> f32 {
        key::<K, L2>(self.kernel, q, self.set.row(x as usize))
    }
    #[inline(always)]
    fn prefetch(&self, x: u32) {
        let row = self.set.row(x as usize);
        prefetch_lines(row.as_ptr() as *const u8, row.len() * 4);
    }
}

/// Distances on SQ8 codes: a node's f32 row folded into integer weights against every
/// other node's codes, shifted to an estimate of the exact key ([`super::sq::KeyError::exact`]).
struct Codes<'a, K> {
    kernel: K,
    set: &'a VectorSet,
    codes: Sq,
}

/// A node prepared against the codes.
#[derive(Default)]
struct CodeQuery {
    weights: QueryCodes,
    shift: f32,
}

impl<K: Kernel> Space for Codes<'_, K> {
    type Query = CodeQuery;
    #[inline(always)]
    fn prepare(&self, node: u32, q: &mut CodeQuery) {
        let row = self.set.row(node as usize);
        self.codes.prepare(row, &mut q.weights);
        q.shift = self.codes.error_model(row, &q.weights).exact(0.0);
    }
    #[inline(always)]
    fn key(&self, q: &CodeQuery, x: u32) -> f32 {
        let c = self.codes.codes(x as usize);
        self.codes.key(
            x as usize,
            self.kernel.dot_u8i8(c, &q.weights.weights),
            &q.weights,
        ) + q.shift
    }
    #[inline(always)]
    fn prefetch(&self, x: u32) {
        self.codes.prefetch(x as usize, self.codes.stride());
    }
}

/// One new node's selected links: `(level, neighbours)`, top level first.
struct Linked {
    node: u32,
    levels: Vec<(u8, Vec<u32>)>,
}

/// A build worker's scratch: its beam, the prepared query and the kept neighbours
/// prepared as queries for the heuristic.
#[derive(Default)]
struct Worker<Q> {
    beam: Beam,
    query: Q,
    kept: Vec<Q>,
}

/// hnswlib's heuristic: from `cands` (nearest first, keys to the base node), keep a
/// candidate only if it is nearer to the base than to every one kept; stop at `m`. Fewer
/// than `m` candidates are all kept, as hnswlib does. Each kept candidate is prepared as a
/// query once (into `kept`), and the candidates after it are measured from it.
#[inline(always)]
fn select<S: Space>(space: &S, cands: &[Cand], m: usize, out: &mut Vec<Cand>, kept: &mut Vec<S::Query>) {
    out.clear();
    if cands.len() < m {
        out.extend_from_slice(cands);
        return;
    }
    for &c in cands {
        if out.len() >= m {
            break;
        }
        if kept[..out.len()].iter().all(|r| space.key(r, c.1) >= c.0) {
            if kept.len() <= out.len() {
                kept.push(S::Query::default());
            }
            space.prepare(c.1, &mut kept[out.len()]);
            out.push(c);
        }
    }
}

/// Public for the heuristic's unit tests: [`select`] over precomputed keys, `between`
/// standing for the space.
pub fn select_by(cands: &[(f32, u32)], m: usize, between: impl Fn(u32, u32) -> f32 + Sync) -> Vec<u32> {
    struct Table<F>(F);
    impl<F: Fn(u32, u32) -> f32 + Sync> Space for Table<F> {
        type Query = u32;
        fn prepare(&self, node: u32, q: &mut u32) {
            *q = node;
        }
        fn key(&self, q: &u32, x: u32) -> f32 {
            (self.0)(x, *q)
        }
        fn prefetch(&self, _: u32) {}
    }
    let c: Vec<Cand> = cands.iter().map(|&(d, r)| Cand(d, r)).collect();
    let mut out = Vec::new();
    select(&Table(between), &c, m, &mut out, &mut Vec::new());
    out.into_iter().map(|c| c.1).collect()
}

#[inline(always)]
fn build_with<K: Kernel, S: Space>(kernel: K, space: &S, t: &BuildTask<'_>) -> FrozenGraph {
    if let Some(base) = t.base {
        return extend::extend_with(kernel, space, t, base);
    }
    let (n, m) = (t.n, t.m);
    // deleted rows are left out: they keep their place (level 0, no links), no node links
    // to them, so no search reaches them; with no deletes this is the order it always was
    let order: Vec<usize> = SplitMix64::new(t.seed)
        .permutation(n)
        .into_iter()
        .filter(|&row| !t.set.is_deleted(row))
        .collect();
    let live = order.len();
    let level_at = levels(live, m, t.seed);
    let mut level = vec![0u8; n];
    for (pos, &row) in order.iter().enumerate() {
        level[row] = level_at[pos];
    }
    let mut g = FrozenGraph::with_levels(&level, m);
    if live == 0 {
        return g;
    }
    g.entry = order[0] as u32;
    g.max_level = level[order[0]] as usize;
    insert_rounds(kernel, space, &mut g, &order, &rounds(live)[1..], &level, t);
    g
}

/// Inserts the nodes `order[start..end]` of each round into `g`, as [`build_with`] does:
/// each round's nodes search the graph as it stood at the round's start, then forward
/// links, then reverse links grouped by target, then a new top becomes the entry.
#[inline(always)]
fn insert_rounds<K: Kernel, S: Space>(
    kernel: K,
    space: &S,
    g: &mut FrozenGraph,
    order: &[usize],
    rounds: &[(usize, usize)],
    level: &[u8],
    t: &BuildTask<'_>,
) {
    let m = t.m;
    let mut workers: Vec<Worker<S::Query>> = (0..t.threads).map(|_| Worker::default()).collect();
    if let Some(w) = t.watch {
        w.start(rounds.last().map_or(0, |r| r.1) - rounds.first().map_or(0, |r| r.0));
    }
    for &(start, end) in rounds {
        let batch = &order[start..end];
        // 1. every new node searches the graph as it stood at the round's start
        let insert = Insert {
            space,
            graph: g,
            batch,
            level,
            ef: t.ef,
            m,
        };
        let linked: Vec<Linked> = parallel(kernel, batch.len(), &mut workers, &insert);
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
        let shrink = Shrink {
            space,
            graph: g,
            reverse: &reverse,
            groups: &groups,
        };
        let rows: Vec<(u8, u32, Vec<u32>)> = parallel(kernel, groups.len(), &mut workers, &shrink);
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
        // the round's end: the checkpoint where progress shows and a stop is obeyed
        if t.watch.is_some_and(|w| w.advance(end - start)) {
            return;
        }
    }
}

/// Work [`parallel`] hands out by item number: a struct with an `#[inline(always)]`
/// method rather than a closure, so the loop that calls it — on the calling thread and
/// inside each worker's [`Kernel::enter`] — compiles it with the level's features and
/// the kernels inline (a closure stays a function of its own, without them: measured
/// 22 % of a build in out-of-line calls of the SQ8 product).
trait Job<W, T>: Sync {
    fn run(&self, i: usize, worker: &mut W, out: &mut Vec<T>);
}

/// Step 1 of a round: new node `batch[i]` searches the graph as it stood at the round's
/// start and selects its links on every level it has.
struct Insert<'a, S> {
    space: &'a S,
    graph: &'a FrozenGraph,
    batch: &'a [usize],
    level: &'a [u8],
    ef: usize,
    m: usize,
}

impl<S: Space> Job<Worker<S::Query>, Linked> for Insert<'_, S> {
    #[inline(always)]
    fn run(&self, i: usize, w: &mut Worker<S::Query>, out: &mut Vec<Linked>) {
        let (space, graph) = (self.space, self.graph);
        let node = self.batch[i] as u32;
        let Worker { beam, query, kept } = w;
        space.prepare(node, query);
        let q = &*query;
        let mut dist = |x: u32| space.key(q, x);
        let prefetch = |x: u32| space.prefetch(x);
        let mut evals = 0u64;
        let top = self.level[node as usize] as usize;
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
            graph.beam(
                lv,
                ep,
                d_ep,
                (self.ef, Patience::OFF),
                beam,
                &mut dist,
                &prefetch,
                &mut evals,
            );
            beam.results_into(&mut cands);
            select(space, &cands, self.m, &mut chosen, kept);
            if let Some(c) = chosen.first() {
                (ep, d_ep) = (c.1, c.0);
            }
            levels.push((lv as u8, chosen.iter().map(|c| c.1).collect()));
        }
        out.push(Linked { node, levels });
    }
}

/// Step 3 of a round: target `reverse[groups[i].0].1`'s row on its level gains its
/// incoming links, shrunk by the heuristic when they overflow its capacity.
struct Shrink<'a, S> {
    space: &'a S,
    graph: &'a FrozenGraph,
    reverse: &'a [(u8, u32, u32)],
    groups: &'a [(usize, usize)],
}

impl<S: Space> Job<Worker<S::Query>, (u8, u32, Vec<u32>)> for Shrink<'_, S> {
    #[inline(always)]
    fn run(&self, gi: usize, w: &mut Worker<S::Query>, out: &mut Vec<(u8, u32, Vec<u32>)>) {
        let (space, graph) = (self.space, self.graph);
        let (a, b) = self.groups[gi];
        let (lv, target) = (self.reverse[a].0, self.reverse[a].1);
        let cap = graph.cap(lv as usize);
        let old = graph.neighbours(target, lv as usize);
        let incoming = self.reverse[a..b].iter().map(|r| r.2);
        if old.len() + (b - a) <= cap {
            let mut row = old.to_vec();
            row.extend(incoming);
            out.push((lv, target, row));
            return;
        }
        space.prepare(target, &mut w.query);
        let q = &w.query;
        let mut cands: Vec<Cand> = old
            .iter()
            .copied()
            .chain(incoming)
            .map(|x| Cand(space.key(q, x), x))
            .collect();
        cands.sort_unstable();
        let mut kept = Vec::new();
        select(space, &cands, cap, &mut kept, &mut w.kept);
        out.push((lv, target, kept.iter().map(|c| c.1).collect()));
    }
}

/// Runs `work(i, worker, out)` for every `i < count` on up to `workers.len()` threads, each
/// with its own scratch, and returns the outputs in the order of `i`, whichever thread ran it.
/// Each spawned thread enters `kernel`'s level first ([`Kernel::enter`]), so its loop is
/// compiled with the level's features like the calling thread's.
#[inline(always)]
fn parallel<K: Kernel, T: Send, W: Send, J: Job<W, T>>(
    kernel: K,
    count: usize,
    workers: &mut [W],
    work: &J,
) -> Vec<T> {
    let threads = workers.len().min(count.div_ceil(CLAIM)).max(1);
    if threads == 1 || count < PARALLEL_MIN {
        let mut out = Vec::with_capacity(count);
        for i in 0..count {
            work.run(i, &mut workers[0], &mut out);
        }
        return out;
    }
    let next = AtomicUsize::new(0);
    let mut parts: Vec<Vec<(usize, T)>> = std::thread::scope(|s| {
        let handles: Vec<_> = workers[..threads]
            .iter_mut()
            .map(|worker| {
                let claims = Claims {
                    count,
                    next: &next,
                    worker,
                    work,
                    out: std::marker::PhantomData,
                };
                s.spawn(move || kernel.enter(claims))
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

/// One thread's share of [`parallel`]: it claims [`CLAIM`] items at a time until none are
/// left, keeping each output with its item's number.
struct Claims<'a, T, W, J> {
    count: usize,
    next: &'a AtomicUsize,
    worker: &'a mut W,
    work: &'a J,
    out: std::marker::PhantomData<T>,
}

impl<T, W, J: Job<W, T>> Task for Claims<'_, T, W, J> {
    type Output = Vec<(usize, T)>;
    #[inline(always)]
    fn run<K: Kernel>(self, _: K) -> Vec<(usize, T)> {
        let mut mine = Vec::new();
        let mut buf = Vec::with_capacity(1);
        loop {
            let from = self.next.fetch_add(CLAIM, Ordering::Relaxed);
            if from >= self.count {
                break;
            }
            for i in from..(from + CLAIM).min(self.count) {
                self.work.run(i, self.worker, &mut buf);
                mine.extend(buf.drain(..).map(|t| (i, t)));
            }
        }
        mine
    }
}
