//! HNSW graphs: build → graph → search, with one flat layout for every graph.
//!
//! Nothing outside this module sees an `hnsw_rs` type: trials, activation and HTTP speak
//! [`HnswConfig`], [`Graph`] and [`Hit`]. Graphs are built by vectune's own builder
//! ([`native`], the default: deterministic on any thread count, so trials build on every
//! core and activation rebuilds exactly the graph a trial measured) or by the hnsw_rs
//! reference ([`reference`], copied into the same layout). Either way one search code
//! ([`frozen`]) answers, on f32 rows or on SQ8 / SQ4 codes ([`sq`]) with an exact re-rank, or
//! on RaBitQ blocks ([`rabitq`]: neighbours scored together, expanded nodes measured exactly),
//! and every distance goes through the kernels chosen once per process ([`crate::kernels`]).
//!
//! Reported distances are exact: cosine indexes hold unit vectors and rank by `-a·b`, l2 by
//! `|a-b|²`, dot by `-a·b`, each turned into the contract's distance by
//! [`Metric::key_to_distance`].

pub mod frozen;
pub mod native;
pub mod rabitq;
pub mod reference;
pub mod sq;
pub mod store;

use std::cell::RefCell;
use std::time::{Duration, Instant};

use frozen::{prefetch_lines, Beam, Cand, FrozenGraph, Patience};
use native::BuildOn;
use rabitq::{QueryLut, Rabitq};
use sq::{Bits, QueryCodes, Sq};

use crate::params::{Engine, HnswConfig, Quantization};

use crate::distance::Metric;
use crate::kernels::{self, Kernel, Task};
use crate::vectors::VectorSet;

/// Most layers a graph may have (hnsw_rs caps at 16).
pub const MAX_LAYERS: usize = 16;

/// How graphs are built: by which engine, on how many threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildOptions {
    /// The builder.
    pub engine: Engine,
    /// Threads a native build uses (the graph is the same for any count). hnsw_rs always
    /// builds on one, its only reproducible mode.
    pub threads: usize,
}

impl BuildOptions {
    /// The native engine on every core.
    pub fn all_cores() -> BuildOptions {
        BuildOptions {
            engine: Engine::Native,
            threads: available_threads(),
        }
    }
}

/// The machine's core count (1 if it cannot be told).
pub fn available_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// One search result: the row number in the vector set and its exact distance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    /// Row in the [`VectorSet`] the graph was built from.
    pub row: u32,
    /// Distance under the index's metric (smaller is nearer).
    pub distance: f32,
}

/// A graph over the first `len()` rows of one [`VectorSet`], with SQ8 or SQ4 codes of those rows
/// or RaBitQ blocks of its nodes when its config asks for them.
#[derive(Debug)]
pub struct Graph {
    /// Shared with its twin quantizations ([`Graph::links`]): one copy (1M × 128, m 24: 200 MB).
    layout: std::sync::Arc<FrozenGraph>,
    reads: Reads,
    metric: Metric,
    dims: usize,
    config: HnswConfig,
    engine: Engine,
    build_time: Duration,
}

/// What a graph's beam reads besides the links: one of three, by its config's quantization
/// (one field, so a graph cannot hold codes and blocks at once).
#[derive(Debug)]
enum Reads {
    /// The f32 rows themselves.
    Rows,
    /// SQ8 / SQ4 codes of the rows, re-ranked on the rows.
    Codes(Sq),
    /// RaBitQ blocks of the nodes.
    Blocks(Rabitq),
}

/// Hands memory freed by a build back to the OS. Builders allocate many short-lived blocks
/// (hnsw_rs several times the graph's size); glibc keeps such freed memory in its arenas,
/// so without a trim a server that built a few graphs holds hundreds of MB it does not use
/// (measured: 700 MB RSS serving a 62 MB index of 100k × 128 after hnsw_rs builds).
pub(crate) fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns unused heap memory to the OS; it is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Builds the graph of the first `rows` rows of `set` under `config` (a restart rebuilds
/// exactly the vectors an activation covered, even if more were appended since).
/// CPU-heavy: call it from a blocking thread.
pub fn build(set: &VectorSet, rows: usize, config: HnswConfig, opts: BuildOptions) -> Graph {
    build_watched(set, rows, config, opts, None)
}

/// [`build`] that a caller can stop: its rows shown on `progress` at each round's end, and
/// `stop` asked there (and before it starts). `None` when it was stopped — the incomplete
/// graph is dropped here, so no caller can store or serve it; once done, `progress` shows no
/// build under way.
pub fn build_stoppable(
    set: &VectorSet,
    rows: usize,
    config: HnswConfig,
    opts: BuildOptions,
    progress: std::sync::Arc<native::BuildProgress>,
    stop: impl Fn() -> bool + Send + Sync + 'static,
) -> Option<Graph> {
    if stop() {
        return None;
    }
    let watch = native::BuildWatch::new(progress.clone(), stop);
    let graph = build_watched(set, rows, config, opts, Some(&watch));
    if watch.stopped() {
        return None;
    }
    progress.clear();
    Some(graph)
}

/// [`build`], showing its progress on `watch` and stopping within one round when it says
/// so (the graph returned then is incomplete: check the watch's stop before using it). The
/// reference engine (hnsw_rs) reports nothing and runs to its end.
pub fn build_watched(
    set: &VectorSet,
    rows: usize,
    config: HnswConfig,
    opts: BuildOptions,
    watch: Option<&native::BuildWatch>,
) -> Graph {
    let start = Instant::now();
    let n = rows.min(set.len());
    let on = if opts.engine == Engine::NativeSq8 {
        BuildOn::Codes
    } else {
        BuildOn::Rows
    };
    let (m, ec) = (config.m as usize, config.ef_construction as usize);
    let layout = match opts.engine {
        Engine::Native | Engine::NativeSq8 => native::build_at(
            kernels::level(),
            set,
            n,
            m,
            ec,
            config.seed,
            opts.threads,
            on,
            watch,
        ),
        Engine::HnswRs => reference::build(set, n, config, 1),
    };
    let graph = Graph::from_layout(layout, set, config, opts.engine, Duration::ZERO);
    release_free_memory();
    Graph {
        build_time: start.elapsed(),
        ..graph
    }
}

/// The rank key of two rows: `|a-b|²` (l2) or `-a·b` (cosine, dot).
#[inline(always)]
pub(crate) fn key<K: Kernel, const L2: bool>(kernel: K, a: &[f32], b: &[f32]) -> f32 {
    if L2 {
        kernel.l2sq(a, b)
    } else {
        -kernel.dot(a, b)
    }
}

/// What a search is asked beside `k`: the beam width and the early-termination rule, the
/// two search-time knobs of a config ([`HnswConfig::ef_search`], [`HnswConfig::patience`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Knobs {
    /// The beam width (at least `k` is used).
    pub ef: usize,
    /// Expansions without a better `k`-th key before the beam stops (0: off).
    pub patience: usize,
}

impl Knobs {
    /// A beam of `ef`, no early termination.
    pub fn ef(ef: usize) -> Knobs {
        Knobs { ef, patience: 0 }
    }

    /// The knobs `config` searches with.
    pub fn of(config: &HnswConfig) -> Knobs {
        Knobs {
            ef: config.ef_search as usize,
            patience: config.patience as usize,
        }
    }
}

/// Per-thread search scratch.
#[derive(Default)]
struct Scratch {
    beam: Beam,
    query: QueryCodes,
    lut: QueryLut,
    found: Vec<Cand>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

struct SearchTask<'a> {
    graph: &'a Graph,
    set: &'a VectorSet,
    query: &'a [f32],
    k: usize,
    ef: usize,
    patience: usize,
    s: &'a mut Scratch,
    evals: &'a mut u64,
}

impl Task for SearchTask<'_> {
    type Output = ();
    #[inline(always)]
    fn run<K: Kernel>(self, kernel: K) {
        match self.graph.metric {
            Metric::L2 => self.run_with::<K, true>(kernel),
            Metric::Cosine | Metric::Dot => self.run_with::<K, false>(kernel),
        }
    }
}

impl SearchTask<'_> {
    /// Leaves the `k` nearest as `(exact key, row)` in `s.found`, nearest first.
    #[inline(always)]
    fn run_with<K: Kernel, const L2: bool>(self, kernel: K) {
        let SearchTask {
            graph,
            set,
            query,
            k,
            ef,
            patience,
            s,
            evals,
        } = self;
        let layout = &graph.layout;
        let beam = (
            ef.max(k),
            Patience {
                k,
                expansions: patience,
            },
        );
        match &graph.reads {
            Reads::Blocks(blocks) => {
                walk_blocks::<K, L2>(kernel, layout, blocks, set, query, k, beam, s, evals);
            }
            Reads::Rows => {
                let bytes = set.dims() * 4;
                layout.search_layers(
                    beam,
                    &mut s.beam,
                    |x| key::<K, L2>(kernel, query, set.row(x as usize)),
                    |x| prefetch_lines(set.row(x as usize).as_ptr() as *const u8, bytes),
                    evals,
                );
                s.beam.results_into(&mut s.found);
            }
            Reads::Codes(codes) => {
                codes.prepare(query, &mut s.query);
                // the beam is what `ef_search` asks (at least k), no floor of 2·k, so ef
                // 10…20 trade recall for work as on f32 (with the floor they were one search,
                // .967 at 11.7 µs on pydocs, and a tuner could not ask for less). Re-ranking
                // the nearest candidates that fell out of a narrow beam (up to 2·k) was
                // measured: on 48-d L2 it lifts ef 10 from .946 to the f32 .981, on 384-d it
                // buys nothing and costs 25 % — where it helps, a larger ef does the same
                let q = &s.query;
                match codes.bits() {
                    Bits::Eight => walk_codes(layout, codes, q, beam, &mut s.beam, evals, |c, w| {
                        kernel.dot_u8i8(c, w)
                    }),
                    Bits::Four => walk_codes(layout, codes, q, beam, &mut s.beam, evals, |c, w| {
                        kernel.dot_u4i8(c, w)
                    }),
                }
                rerank::<K, L2>(kernel, set, query, s, evals);
            }
        }
        s.found.truncate(k);
    }
}

/// The search on RaBitQ blocks into `s.found` (the `k` nearest exact keys, nearest first):
/// the descent on the upper nodes' rows, then [`Rabitq::beam`].
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn walk_blocks<K: Kernel, const L2: bool>(
    kernel: K,
    layout: &FrozenGraph,
    blocks: &Rabitq,
    set: &VectorSet,
    query: &[f32],
    k: usize,
    beam: (usize, Patience),
    s: &mut Scratch,
    evals: &mut u64,
) {
    blocks.prepare(query, &mut s.lut);
    // the descent on the upper nodes' rows, kept together (every node it meets is one),
    // each node's neighbours prefetched at once: measured on 100k × 128 at ef 10, −1.5 µs
    // of ~13 (the descent was ~40 % of such a search, waiting on scattered rows)
    let row = |x: u32| blocks.upper_row(x).unwrap_or_else(|| set.row(x as usize));
    let mut exact = |x: u32| key::<K, L2>(kernel, query, row(x));
    let d_ep = exact(layout.entry);
    *evals += 1;
    let bytes = set.dims() * 4;
    let prefetch = |x: u32| prefetch_lines(row(x).as_ptr() as *const u8, bytes);
    let start = layout.descend(
        layout.entry,
        d_ep,
        layout.max_level,
        0,
        &mut exact,
        &prefetch,
        evals,
    );
    blocks.beam(
        kernel,
        &s.lut,
        start,
        (k, beam.0, beam.1),
        &mut s.beam,
        &mut s.found,
        &|row: &[f32]| key::<K, L2>(kernel, query, row),
        evals,
    );
    if s.found.len() > k {
        s.found.select_nth_unstable(k);
        s.found.truncate(k);
    }
    s.found.sort_unstable();
}

/// The beam on codes, `dot` being the kernel's integer product of a row's codes and the
/// query's weights (one per code width, inlined into the loop).
#[inline(always)]
fn walk_codes<D: Fn(&[u8], &[i8]) -> i32>(
    layout: &FrozenGraph,
    codes: &Sq,
    q: &QueryCodes,
    ef: (usize, Patience),
    beam: &mut Beam,
    evals: &mut u64,
    dot: D,
) {
    let stride = codes.stride();
    layout.search_layers(
        ef,
        beam,
        |x| codes.key(x as usize, dot(codes.codes(x as usize), &q.weights), q),
        |x| codes.prefetch(x as usize, stride),
        evals,
    );
}

/// Re-ranks the beam's candidates (`s.beam`'s pool) on the f32 rows into `s.found`, nearest
/// first, rows prefetched two ahead.
///
/// All of them: the codes' error model ([`Sq::error_model`]) would let it stop where an
/// estimate minus its bound passes the `k`-th exact key (pydocs sq8 ef 40: 11 rows of 40;
/// 8–13 % of a search at ef 40–64, A/B on pydocs sq4), but fewer exact distances per query
/// move the tuner's exact-work steering, and measured on pydocs (`scripts/tune_bench.sh
/// --trust`) its climb then walked to m 8 graphs whose held-out recall missed .99 by .006 in
/// 3 of 3 runs (0 of 3 with the whole beam re-ranked). It waits for a tuner whose steering
/// survives that.
#[inline(always)]
fn rerank<K: Kernel, const L2: bool>(
    kernel: K,
    set: &VectorSet,
    query: &[f32],
    s: &mut Scratch,
    evals: &mut u64,
) {
    let bytes = set.dims() * 4;
    let row = |c: &Cand| set.row(c.1 as usize);
    s.beam.results_into(&mut s.found);
    for c in s.found.iter().take(2) {
        prefetch_lines(row(c).as_ptr() as *const u8, bytes);
    }
    for i in 0..s.found.len() {
        if let Some(next) = s.found.get(i + 2) {
            prefetch_lines(row(next).as_ptr() as *const u8, bytes);
        }
        s.found[i].0 = key::<K, L2>(kernel, query, row(&s.found[i]));
    }
    *evals += s.found.len() as u64;
    s.found.sort_unstable();
}

impl Graph {
    /// A graph from a finished layout (a build, a stored graph, a twin's [`Graph::links`]):
    /// its SQ codes or RaBitQ blocks derived when the config asks (never stored).
    pub fn from_layout(
        layout: impl Into<std::sync::Arc<FrozenGraph>>,
        set: &VectorSet,
        config: HnswConfig,
        engine: Engine,
        build_time: Duration,
    ) -> Graph {
        let layout = layout.into();
        let reads = match config.quantization {
            Quantization::None => Reads::Rows,
            Quantization::Sq8 => Reads::Codes(Sq::encode(set, layout.len(), Bits::Eight)),
            Quantization::Sq4 => Reads::Codes(Sq::encode(set, layout.len(), Bits::Four)),
            Quantization::Rabitq => {
                Reads::Blocks(Rabitq::encode(set, &layout, config.seed, available_threads()))
            }
        };
        Graph {
            layout,
            reads,
            metric: set.metric(),
            dims: set.dims(),
            config,
            engine,
            build_time,
        }
    }

    /// This graph extended to the first `rows` rows of `set` by inserting the rows after it
    /// ([`native::extend`]: hnswlib's `add_items`, not a rebuild), its codes or blocks
    /// recomputed for the rows it then covers. `None` for the hnsw_rs reference engine,
    /// whose graphs only a build of that engine may produce.
    pub fn extended(&self, set: &VectorSet, rows: usize, opts: BuildOptions) -> Option<Graph> {
        let on = match self.engine {
            Engine::Native => BuildOn::Rows,
            Engine::NativeSq8 => BuildOn::Codes,
            Engine::HnswRs => return None,
        };
        let start = Instant::now();
        let layout = native::extend(
            set,
            &self.layout,
            rows,
            self.config.ef_construction as usize,
            self.config.seed,
            opts.threads,
            on,
        );
        let graph = Graph::from_layout(layout, set, self.config, self.engine, Duration::ZERO);
        Some(Graph {
            build_time: start.elapsed(),
            ..graph
        })
    }

    /// The links.
    pub fn frozen(&self) -> &FrozenGraph {
        &self.layout
    }
    /// The links, shared: a twin quantization is made of them without a copy.
    pub fn links(&self) -> std::sync::Arc<FrozenGraph> {
        self.layout.clone()
    }
    /// The SQ8 / SQ4 codes, if the config asks for them.
    pub fn codes(&self) -> Option<&Sq> {
        match &self.reads {
            Reads::Codes(c) => Some(c),
            _ => None,
        }
    }
    /// The config it was built with.
    pub fn config(&self) -> HnswConfig {
        self.config
    }
    /// The builder that made it.
    pub fn engine(&self) -> Engine {
        self.engine
    }
    /// The metric of its vectors.
    pub fn metric(&self) -> Metric {
        self.metric
    }
    /// Dimensions of its vectors.
    pub fn dims(&self) -> usize {
        self.dims
    }
    /// Number of vectors in it.
    pub fn len(&self) -> usize {
        self.layout.len()
    }
    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.layout.is_empty()
    }
    /// Wall time of the build (zero for a graph loaded from storage).
    pub fn build_time(&self) -> Duration {
        self.build_time
    }
    /// The graph, saying its build took `d` (a graph loaded from storage whose build time
    /// is known: a tuning run reloading its own full build reports what the build cost).
    pub fn with_build_time(mut self, d: Duration) -> Graph {
        self.build_time = d;
        self
    }
    /// Bytes of what serves beside the f32 rows: the links, and the codes with SQ8 / SQ4 or
    /// the blocks with RaBitQ.
    pub fn memory_bytes(&self) -> usize {
        self.layout.memory_bytes()
            + match &self.reads {
                Reads::Rows => 0,
                Reads::Codes(c) => c.memory_bytes(),
                Reads::Blocks(b) => b.memory_bytes(),
            }
    }

    /// The `k` nearest rows to a prepared query (right length, finite, normalised for
    /// cosine; see [`VectorSet::prepare_query`]), nearest first. The candidate list is
    /// `max(ef, k)` (on SQ codes, all of it re-ranked exactly; on RaBitQ blocks, the
    /// expanded nodes measured exactly). `set` must be the set the graph was built from.
    pub fn search(&self, set: &VectorSet, query: &[f32], k: usize, ef: usize) -> Vec<Hit> {
        self.search_counted(set, query, k, ef, None)
    }

    /// [`Graph::search`] that also adds the number of distance computations to `counter`
    /// (on SQ codes: code distances plus the exact re-rank; on RaBitQ blocks: each expanded
    /// node's neighbours scored, plus its exact distance).
    pub fn search_counted(
        &self,
        set: &VectorSet,
        query: &[f32],
        k: usize,
        ef: usize,
        counter: Option<&mut u64>,
    ) -> Vec<Hit> {
        self.search_with(set, query, k, Knobs::ef(ef), counter)
    }

    /// [`Graph::search_counted`] with every search-time knob of a config ([`Knobs`]).
    pub fn search_with(
        &self,
        set: &VectorSet,
        query: &[f32],
        k: usize,
        Knobs { ef, patience }: Knobs,
        counter: Option<&mut u64>,
    ) -> Vec<Hit> {
        if self.is_empty() || k == 0 || query.len() != set.dims() || set.len() < self.len() {
            return Vec::new();
        }
        let mut evals = 0u64;
        let hits = SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            kernels::run(SearchTask {
                graph: self,
                set,
                query,
                k,
                ef,
                patience,
                s: &mut s,
                evals: &mut evals,
            });
            s.found
                .iter()
                .map(|c| Hit {
                    row: c.1,
                    distance: self.metric.key_to_distance(c.0),
                })
                .collect()
        });
        if let Some(c) = counter {
            *c += evals;
        }
        hits
    }
}

#[cfg(test)]
mod tests;
