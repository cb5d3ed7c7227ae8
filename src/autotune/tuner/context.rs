//! What one run measures against, loaded once, and the two measurements a run makes: one
//! config on the tuning (or held-out) queries, and several configs interleaved.

use std::sync::Arc;

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{Result, Tuner, TunerError};
use crate::autotune::transfer::sample_engine;
use crate::autotune::{split_queries, GraphCache};
use crate::harness;
use crate::hnsw::{self, Graph, Knobs};
use crate::measure::{self, Paired};
use crate::metrics::BuildPurpose;
use crate::names::{HarnessName, IndexName};
use crate::params::{Engine, HnswConfig};
use crate::trials::{Source, Trial, TrialMetrics};
use crate::vectors::VectorSet;

/// Queries an interleaved comparison uses at most (evenly spaced over the tuning queries).
pub const PAIRED_MAX_QUERIES: usize = 1000;

/// Memory the graphs kept during one run may take by default (their link arrays; the
/// vectors are shared): enough for a handful of graphs of a few million links. The server
/// setting `tuning.max_memory_bytes` replaces it.
pub const RUN_GRAPH_CACHE_BYTES: usize = 512 << 20;

/// Prepared queries and their exact top-k rows.
type QuerySet = (Vec<Vec<f32>>, Vec<Vec<u32>>);

/// What a run measures against, loaded once.
pub(super) struct RunContext {
    pub(super) index: IndexName,
    pub(super) harness: HarnessName,
    /// The rows measured on: the index's, or a sample's while the run explores on one.
    set: Arc<VectorSet>,
    k: usize,
    /// Tuning queries and their exact top-k rows.
    tune: Arc<QuerySet>,
    /// Held-out queries, when the run holds some out.
    pub(super) held: Option<Arc<QuerySet>>,
    /// Brute-force µs per tuning query (once per run: it does not depend on the graph).
    brute_us: Option<f64>,
    cache: GraphCache<Graph>,
    /// The builder of this scope's graphs: the index's, or a sample's
    /// ([`crate::autotune::transfer::sample_engine`]).
    engine: Engine,
    pub(super) builds: usize,
    pub(super) cancel: CancellationToken,
    /// Rows the build under way has inserted (a job's `progress.build`).
    pub(super) build: Arc<crate::hnsw::native::BuildProgress>,
    /// The full index's rows and queries, set aside while the run measures on a sample.
    full: Option<Scope>,
    /// Whether full builds are stored for activation to load: on the full index after a
    /// sample, the few full builds are the winner's candidates, so its activation needs one.
    keep_full_builds: bool,
    /// The full builds stored, with what each cost: a reloaded graph reports its build's
    /// time, and the run drops the ones that did not win when it ends.
    pub(super) kept: Vec<(HnswConfig, std::time::Duration)>,
    /// The builds offered to the fleet, when other instances may take them.
    pub(super) offers: Option<super::fleet::Offers>,
}

/// Rows, queries and ground truth one size of the index is measured on.
struct Scope {
    set: Arc<VectorSet>,
    tune: Arc<QuerySet>,
    held: Option<Arc<QuerySet>>,
    brute_us: Option<f64>,
}

/// Seed of the uniform sample a run explores on: the same rows every run of an index
/// version, so the same request finds the same winner.
const SAMPLE_SEED: u64 = 0x7361_6d70_6c65;

fn pick<T: Clone>(all: &[T], at: &[usize]) -> Vec<T> {
    at.iter().map(|&i| all[i].clone()).collect()
}

/// Where a measured graph came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GraphFrom {
    /// The run's cache.
    Held,
    /// Another quantization's graph held by the run: its links, new codes (no build).
    Derived,
    /// A full build the run stored earlier and dropped from memory since (no build).
    Loaded,
    /// Built by another instance of the fleet for this run, loaded from the store.
    Fetched,
    /// A build.
    Built,
}

impl RunContext {
    /// The index's rows (the full set, also while the run measures a sample).
    pub(super) fn full_set(&self) -> &Arc<VectorSet> {
        self.full.as_ref().map_or(&self.set, |f| &f.set)
    }

    /// Whether the run measures the full index now (not a sample).
    pub(super) fn on_full(&self) -> bool {
        self.full.is_none()
    }

    /// The graph of `config` the run holds, else its links held in another quantization
    /// (only the codes differ, so it is this config's graph without a build).
    fn held(&mut self, config: &HnswConfig) -> (Option<Arc<Graph>>, Option<Arc<Graph>>) {
        if let Some(g) = self.cache.get(config) {
            return (Some(g), None);
        }
        let twin = config
            .quantization
            .twins()
            .find_map(|q| self.cache.get(&config.with_quantization(q)));
        (None, twin)
    }

    /// Whether the run holds the graph of `config` (or its links in another quantization).
    pub(super) fn holds(&mut self, config: &HnswConfig) -> bool {
        let (g, twin) = self.held(config);
        g.is_some() || twin.is_some()
    }

    /// A journal trial of this run's index and harness.
    pub(super) fn trial(
        &self,
        config: HnswConfig,
        metrics: TrialMetrics,
        note: Option<String>,
        source: Source,
    ) -> Trial {
        Trial {
            id: Uuid::now_v7(),
            index_name: self.index.clone(),
            eval_set: self.harness.clone(),
            config,
            created_at: Utc::now(),
            note,
            source,
            metrics,
            validation: None,
            lease_epoch: None,
        }
    }
}

impl Tuner {
    pub(super) async fn context(
        &self,
        index: &IndexName,
        harness: &HarnessName,
        validation_fraction: f64,
        cancel: CancellationToken,
    ) -> Result<RunContext> {
        let ix = self.parts.indexes.get(index)?;
        let set = self.parts.indexes.vectors(&ix).await?;
        let (h, truth) = self
            .parts
            .harnesses
            .with_ground_truth(harness, index, set.clone())
            .await?;
        let queries = harness::prepared_queries(&h, &set).map_err(TunerError::HarnessQuery)?;
        let (tune_at, held_at) = split_queries(queries.len(), validation_fraction);
        let tune = Arc::new((pick(&queries, &tune_at), pick(&truth.rows, &tune_at)));
        let held =
            (!held_at.is_empty()).then(|| Arc::new((pick(&queries, &held_at), pick(&truth.rows, &held_at))));
        Ok(RunContext {
            index: index.clone(),
            harness: harness.clone(),
            set,
            k: h.k,
            tune,
            held,
            brute_us: None,
            cache: GraphCache::new(self.parts.run_graph_bytes, self.parts.build_options.engine),
            engine: self.parts.build_options.engine,
            builds: 0,
            cancel,
            build: Arc::default(),
            full: None,
            keep_full_builds: false,
            kept: Vec::new(),
            offers: None,
        })
    }

    /// Measures on a uniform sample of `sample` live rows from now on (with the sample's
    /// exact ground truth for the tuning queries), or on the full index again with `None`;
    /// the graphs the run held are dropped either way. Returns the builder of the scope's
    /// graphs: the index's on the full index, [`sample_engine`]'s choice on a sample (the
    /// one place that rule is asked). `None` when cancelled.
    pub(super) async fn scope_in(
        &self,
        ctx: &mut RunContext,
        sample: Option<usize>,
    ) -> Result<Option<Engine>> {
        if ctx.cancel.is_cancelled() {
            return Ok(None);
        }
        let engine = self.parts.build_options.engine;
        ctx.engine = match sample {
            Some(_) => sample_engine(engine),
            None => engine,
        };
        ctx.cache = GraphCache::new(self.parts.run_graph_bytes, ctx.engine);
        ctx.keep_full_builds = sample.is_none() && ctx.full.is_some();
        let Some(rows) = sample else {
            if let Some(f) = ctx.full.take() {
                (ctx.set, ctx.tune, ctx.held, ctx.brute_us) = (f.set, f.tune, f.held, f.brute_us);
            }
            return Ok(Some(ctx.engine));
        };
        let full = match ctx.full.take() {
            Some(f) => f,
            None => Scope {
                set: ctx.set.clone(),
                tune: ctx.tune.clone(),
                held: ctx.held.clone(),
                brute_us: ctx.brute_us,
            },
        };
        let (set, queries, k) = (full.set.clone(), full.tune.0.clone(), ctx.k);
        let (sample, queries, truth) = tokio::task::spawn_blocking(move || {
            let live: Vec<usize> = set.live_rows().collect();
            let mut at: Vec<usize> = crate::rng::SplitMix64::new(SAMPLE_SEED)
                .sample(live.len(), rows)
                .into_iter()
                .map(|i| live[i])
                .collect();
            // in row order: the sample's rows keep the index's locality
            at.sort_unstable();
            let ids: Vec<String> = at.iter().map(|&r| set.id(r).to_string()).collect();
            let mut data = Vec::with_capacity(at.len() * set.dims());
            for &r in &at {
                data.extend_from_slice(set.row(r));
            }
            let sample = VectorSet::from_rows(set.dims(), set.metric(), ids, data);
            let truth = harness::ground_truth::exact(&sample, &queries, k);
            (sample, queries, truth)
        })
        .await
        .map_err(TunerError::Task)?;
        let truth = truth.map_err(TunerError::HarnessQuery)?;
        ctx.set = Arc::new(sample);
        ctx.tune = Arc::new((queries, truth));
        ctx.held = None;
        ctx.brute_us = None;
        ctx.full = Some(full);
        Ok(Some(ctx.engine))
    }

    /// Every build permit: with build concurrency above 1, no other build of this process
    /// runs while a step measures latency.
    async fn measuring(&self) -> Result<tokio::sync::SemaphorePermit<'_>> {
        self.parts
            .builds
            .acquire_many(self.parts.build_slots)
            .await
            .map_err(|_| TunerError::Internal("the build semaphore is closed"))
    }

    /// Measures `config` on the run's tuning (or held-out) queries, building its graph
    /// unless the run still holds it. `None` when the run was cancelled meanwhile.
    pub(super) async fn measure_in(
        &self,
        ctx: &mut RunContext,
        config: HnswConfig,
        held_out: bool,
    ) -> Result<Option<TrialMetrics>> {
        if ctx.cancel.is_cancelled() {
            return Ok(None);
        }
        let queries = match (&ctx.held, held_out) {
            (Some(h), true) => h.clone(),
            _ => ctx.tune.clone(),
        };
        let (cached, twin) = ctx.held(&config);
        let options = crate::hnsw::BuildOptions {
            engine: ctx.engine,
            ..self.parts.build_options
        };
        // a full build stored by this run and dropped from its memory since: loaded, not
        // built again, in any quantization of its links (the codes derived) — only this
        // run's own full builds: a graph another instance stored at the same key is an
        // offered build, counted as one (below), not a reload
        let id = config.links_id(options.engine);
        let built = ctx
            .kept
            .iter()
            .find(|(c, _)| c.links_id(options.engine) == id)
            .copied();
        let kept = match built {
            Some((stored_as, secs)) if cached.is_none() && twin.is_none() && ctx.keep_full_builds => {
                crate::serving::load_kept_as(
                    &self.parts.storage,
                    &ctx.index,
                    ctx.set.clone(),
                    stored_as,
                    config,
                    options.engine,
                )
                .await?
                .map(|g| g.with_build_time(secs))
            }
            _ => None,
        };
        // a graph offered to the fleet: built elsewhere (loaded), being built elsewhere
        // (waited for), or claimed and built here
        let (fetched, claim, first_fetch) = match (&cached, &twin, &kept) {
            (None, None, None) => match self.fetch_in(ctx, config).await? {
                super::fleet::Fetched::Graph(g, first) => (Some(*g), None, first),
                super::fleet::Fetched::Here(claim) => (None, claim, false),
                super::fleet::Fetched::Cancelled => return Ok(None),
            },
            _ => (None, None, false),
        };
        let (set, k, cancel, brute) = (ctx.set.clone(), ctx.k, ctx.cancel.clone(), ctx.brute_us);
        let progress = ctx.build.clone();
        let tune = ctx.tune.clone();
        let asked = std::time::Instant::now();
        let permit = self.measuring().await?;
        let waited = asked.elapsed().as_secs_f64();
        let out = tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let (graph, source) = match (cached, twin, kept) {
                (Some(g), _, _) => (g, GraphFrom::Held),
                (None, None, Some(g)) => (Arc::new(g), GraphFrom::Loaded),
                (None, None, None) if fetched.is_some() => match fetched {
                    Some(g) => (Arc::new(g), GraphFrom::Fetched),
                    None => return None,
                },
                (None, Some(t), _) => {
                    let layout = t.links();
                    let g = Graph::from_layout(layout, &set, config, t.engine(), t.build_time());
                    (Arc::new(g), GraphFrom::Derived)
                }
                (None, None, None) => {
                    // progress shown at each round's end, a cancel obeyed there: a big
                    // build stops within ~2 % of its rows, its incomplete graph dropped
                    let stop = cancel.clone();
                    let g = hnsw::build_stoppable(&set, set.len(), config, options, progress, move || {
                        stop.is_cancelled()
                    })?;
                    (Arc::new(g), GraphFrom::Built)
                }
            };
            let ready = started.elapsed().as_secs_f64();
            let brute = brute.unwrap_or_else(|| measure::brute_force_latency_us(&set, &tune.0, k));
            let (q, truth) = (&queries.0, &queries.1);
            let m = measure::measure(&set, &graph, Knobs::of(&config), q, truth, k, brute, &cancel);
            let measured = started.elapsed().as_secs_f64() - ready;
            Some((graph, source, brute, m, [ready, measured]))
        })
        .await
        .map_err(TunerError::Task)?;
        drop(permit);
        if let Some(c) = claim {
            self.built_here(ctx, config, c).await?;
        }
        let Some((graph, source, brute, metrics, [ready, measured])) = out else {
            return Ok(None);
        };
        let stored = std::time::Instant::now();
        if source == GraphFrom::Fetched && first_fetch {
            // built for this run, elsewhere: counted as its build, and deleted at the end
            // unless it wins
            ctx.builds += 1;
            ctx.kept.push((config, graph.build_time()));
        }
        if source == GraphFrom::Built {
            if let Some(m) = &metrics {
                self.parts.metrics.build(BuildPurpose::trial, m.build_time_secs);
            }
            ctx.builds += 1;
            if ctx.keep_full_builds {
                let engine = self.parts.build_options.engine;
                crate::serving::keep_graph(
                    &self.parts.storage,
                    &ctx.index,
                    &ctx.set,
                    config,
                    engine,
                    graph.clone(),
                )
                .await?;
                ctx.kept.push((config, graph.build_time()));
            }
        }
        // where a run's time goes, measurement by measurement (a 1M run's profile)
        tracing::debug!(index = %ctx.index, ?config, ?source, held_out,
            waited_secs = waited, graph_secs = ready,
            measure_secs = measured, kept_secs = stored.elapsed().as_secs_f64(), "autotune: measured");
        if source != GraphFrom::Held {
            let bytes = graph.memory_bytes();
            ctx.cache.insert(&config, graph, bytes);
        }
        ctx.brute_us = Some(brute);
        Ok(metrics)
    }

    /// Measures `configs` interleaved on the run's tuning queries (building any graph the
    /// run does not hold, as a plain measurement first).
    pub(super) async fn paired_in(
        &self,
        ctx: &mut RunContext,
        configs: &[HnswConfig],
        rounds: usize,
    ) -> Result<Option<Paired>> {
        let mut graphs = Vec::with_capacity(configs.len());
        for c in configs {
            if ctx.cache.get(c).is_none() && self.measure_in(ctx, *c, false).await?.is_none() {
                return Ok(None);
            }
            match ctx.cache.get(c) {
                Some(g) => graphs.push((g, Knobs::of(c))),
                None => {
                    return Err(TunerError::Internal(
                        "a graph left the run cache while it was compared",
                    ))
                }
            }
        }
        let (set, k, cancel, tune) = (ctx.set.clone(), ctx.k, ctx.cancel.clone(), ctx.tune.clone());
        let permit = self.measuring().await?;
        let out = tokio::task::spawn_blocking(move || {
            let g: Vec<(&Graph, Knobs)> = graphs.iter().map(|(g, knobs)| (&**g, *knobs)).collect();
            // a large harness is compared on an evenly spaced share of its queries: the
            // interval is tight long before, and the comparison stays seconds, not minutes
            let step = tune.0.len().div_ceil(PAIRED_MAX_QUERIES).max(1);
            let queries: Vec<Vec<f32>> = tune.0.iter().step_by(step).cloned().collect();
            let truth: Vec<Vec<u32>> = tune.1.iter().step_by(step).cloned().collect();
            measure::measure_paired(&set, &g, &queries, &truth, k, rounds, &cancel)
        })
        .await
        .map_err(TunerError::Task)?;
        drop(permit);
        Ok(out)
    }
}
