//! Trials and tuning runs: builds, measurements and the journal, driven by the rules of
//! [`crate::autotune`].
//!
//! A run loads the vectors, the harness and its ground truth once, so every trial of the run
//! measures the same vectors on the same queries. Graphs are built on blocking threads
//! behind the build semaphore, and a build-and-measure step holds all of its permits, so a
//! latency is never measured beside a build of this process, whatever the build
//! concurrency. Built graphs stay in a per-run LRU cache
//! ([`autotune::GraphCache`]) while the run revisits them.
//!
//! Journaling: each trial is written as soon as it is measured, so a cancelled or crashed
//! run keeps what it finished. A run with held-out queries is the exception: its winner's
//! trial must carry the validation measured at the end, and journal objects are write-once,
//! so that run writes its trials when it ends (or is cancelled, then with `validation`
//! null).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use uuid::Uuid;

use super::{candidate, AutotuneRequest, Result, ServiceError, TrialRequest, Vectune};
use crate::autotune::adaptive::{Adaptive, Observation};
use crate::autotune::{
    self, AutotuneError, AutotuneResult, Candidate, GraphCache, Promote, RunGuard, Spec, Strategy,
};
use crate::harness as harness_mod;
use crate::hnsw::{self, HnswConfig};
use crate::names::{HarnessName, IndexName};
use crate::trials::{self, Source, Trial, TrialMetrics, Validation};
use crate::vectors::VectorSet;

/// Memory the graphs kept during one run may take (their link arrays; the vectors are
/// shared): enough for a handful of graphs of a few million links.
pub const RUN_GRAPH_CACHE_BYTES: usize = 512 << 20;

/// A checked autotune that holds its index's run claim: a second run of the index is
/// refused (409) from the moment this exists until it is dropped. An agent run holds no
/// claim: it only starts when no autotune of the index runs, and never makes a user's
/// autotune wait or fail.
#[derive(Debug)]
pub struct PreparedAutotune {
    /// The index.
    pub index: IndexName,
    /// The harness.
    pub harness: HarnessName,
    /// What to do.
    pub spec: Spec,
    /// Who runs it (autotune or agent).
    pub source: Source,
    _claim: Option<RunGuard>,
}

/// Shared with whoever watches a run: a cancel flag read between trials and between
/// queries, and the count of trials finished (and journaled).
#[derive(Debug, Clone, Default)]
pub struct RunControl {
    /// Set to stop the run at its next trial or query boundary.
    pub cancel: Arc<AtomicBool>,
    /// Trials finished.
    pub done: Arc<AtomicUsize>,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub enum RunEnd {
    /// It ran to the end (with or without a winner).
    Finished(Box<AutotuneResult>),
    /// It was cancelled; nothing was promoted.
    Cancelled {
        /// Trials finished (and journaled) before it stopped.
        trials_run: usize,
    },
}

/// Prepared queries and their exact top-k rows.
type QuerySet = (Vec<Vec<f32>>, Vec<Vec<u32>>);

/// What a run measures against, loaded once.
struct RunContext {
    index: IndexName,
    harness: HarnessName,
    set: Arc<VectorSet>,
    k: usize,
    /// Tuning queries and their exact top-k rows.
    tune: Arc<QuerySet>,
    /// Held-out queries, when the run holds some out.
    held: Option<Arc<QuerySet>>,
    /// Brute-force µs per tuning query (once per run: it does not depend on the graph).
    brute_us: Option<f64>,
    cache: GraphCache<hnsw::Graph>,
    builds: usize,
    cancel: Arc<AtomicBool>,
}

fn pick<T: Clone>(all: &[T], at: &[usize]) -> Vec<T> {
    at.iter().map(|&i| all[i].clone()).collect()
}

impl Vectune {
    async fn context(
        &self,
        index: &IndexName,
        harness: &HarnessName,
        validation_fraction: f64,
        cancel: Arc<AtomicBool>,
    ) -> Result<RunContext> {
        let ix = self.inner.indexes.get(index)?;
        let set = self.inner.indexes.vectors(&ix).await?;
        let (h, truth) = self
            .inner
            .harnesses
            .with_ground_truth(harness, index, set.clone())
            .await?;
        let queries = harness_mod::prepared_queries(&h, &set).map_err(ServiceError::HarnessQuery)?;
        let (tune_at, held_at) = autotune::split_queries(queries.len(), validation_fraction);
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
            cache: GraphCache::new(RUN_GRAPH_CACHE_BYTES, self.inner.build_options.engine),
            builds: 0,
            cancel,
        })
    }

    /// Measures `config` on the run's tuning (or held-out) queries, building its graph
    /// unless the run still holds it. `None` when the run was cancelled meanwhile.
    async fn measure_in(
        &self,
        ctx: &mut RunContext,
        config: HnswConfig,
        held_out: bool,
    ) -> Result<Option<TrialMetrics>> {
        if ctx.cancel.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let queries = match (&ctx.held, held_out) {
            (Some(h), true) => h.clone(),
            _ => ctx.tune.clone(),
        };
        let cached = ctx.cache.get(&config);
        let options = self.inner.build_options;
        let (set, k, cancel, brute) = (ctx.set.clone(), ctx.k, ctx.cancel.clone(), ctx.brute_us);
        let tune = ctx.tune.clone();
        // every build permit: with build concurrency above 1, no other build of this
        // process runs while this step measures latency
        let permit = self
            .inner
            .builds
            .acquire_many(self.inner.build_slots)
            .await
            .map_err(|e| ServiceError::Task(e.to_string()))?;
        let out = tokio::task::spawn_blocking(move || {
            let built = cached.is_none();
            let graph = match cached {
                Some(g) => g,
                None => {
                    if cancel.load(Ordering::Relaxed) {
                        return None;
                    }
                    Arc::new(hnsw::build(&set, set.len(), config, options))
                }
            };
            let brute = brute.unwrap_or_else(|| trials::brute_force_latency_us(&set, &tune.0, k));
            let (q, truth) = (&queries.0, &queries.1);
            let m = trials::measure(
                &set,
                &graph,
                config.ef_search as usize,
                q,
                truth,
                k,
                brute,
                &cancel,
            );
            Some((graph, built, brute, m))
        })
        .await
        .map_err(|e| ServiceError::Task(e.to_string()))?;
        drop(permit);
        let Some((graph, built, brute, metrics)) = out else {
            return Ok(None);
        };
        if built {
            ctx.builds += 1;
            let bytes = graph.memory_bytes();
            ctx.cache.insert(&config, graph, bytes);
        }
        ctx.brute_us = Some(brute);
        Ok(metrics)
    }

    fn trial(
        ctx: &RunContext,
        config: HnswConfig,
        metrics: TrialMetrics,
        note: Option<String>,
        source: Source,
    ) -> Trial {
        Trial {
            id: Uuid::now_v7(),
            index_name: ctx.index.clone(),
            eval_set: ctx.harness.clone(),
            config,
            created_at: Utc::now(),
            note,
            source,
            metrics,
            validation: None,
        }
    }

    async fn journal(&self, trial: Trial) -> Result<Arc<Trial>> {
        // the index may have been deleted meanwhile: never write into a deleted prefix
        self.inner.indexes.get(&trial.index_name)?;
        tracing::info!(index = %trial.index_name, trial = %trial.id, config = ?trial.config, source = ?trial.source,
            recall = trial.metrics.recall_at_k, p50_us = trial.metrics.search_latency_p50_us, "trial recorded");
        Ok(self.inner.journal.append(trial).await?)
    }

    /// Builds `config` over the index's vectors, measures it against the harness and
    /// appends it to the journal.
    pub async fn run_trial(&self, req: TrialRequest) -> Result<Arc<Trial>> {
        let never = Arc::new(AtomicBool::new(false));
        let mut ctx = self.context(&req.index, &req.harness, 0.0, never).await?;
        let metrics = self
            .measure_in(&mut ctx, req.config, false)
            .await?
            .ok_or_else(|| ServiceError::Task("trial cancelled".into()))?;
        self.journal(Self::trial(&ctx, req.config, metrics, req.note, req.source))
            .await
    }

    /// Checks an autotune request (400/404 before anything runs) and claims its index (409
    /// while another run of it is under way).
    pub async fn prepare_autotune(&self, req: AutotuneRequest, source: Source) -> Result<PreparedAutotune> {
        self.inner.indexes.get(&req.index)?;
        self.inner.harnesses.check_index(&req.harness, &req.index).await?;
        let spec = Spec::parse(&req.fields)?;
        let claim = match source {
            Source::Agent if self.inner.autotunes.is_claimed(&req.index) => {
                return Err(AutotuneError::Running(req.index).into())
            }
            Source::Agent => None,
            _ => Some(self.inner.autotunes.claim(&req.index)?),
        };
        Ok(PreparedAutotune {
            index: req.index,
            harness: req.harness,
            spec,
            source,
            _claim: claim,
        })
    }

    /// Runs an autotune to the end, here and now.
    pub async fn autotune(&self, req: AutotuneRequest) -> Result<AutotuneResult> {
        let prepared = self.prepare_autotune(req, Source::Autotune).await?;
        match self.run_prepared(prepared, &RunControl::default(), None).await? {
            RunEnd::Finished(r) => Ok(*r),
            RunEnd::Cancelled { .. } => Err(ServiceError::Task("autotune cancelled".into())),
        }
    }

    /// Measures the run's configs (the grid, or what the adaptive search asks for), picks
    /// the winner under the rules, validates it on held-out queries and promotes it as the
    /// policy says.
    pub async fn run_prepared(
        &self,
        p: PreparedAutotune,
        ctl: &RunControl,
        job_id: Option<Uuid>,
    ) -> Result<RunEnd> {
        let started = Instant::now();
        let spec = &p.spec;
        let mut ctx = self
            .context(&p.index, &p.harness, spec.validation_fraction, ctl.cancel.clone())
            .await?;
        let defer = ctx.held.is_some();
        let note = Some(match p.source {
            Source::Agent => "agent".to_string(),
            _ => "autotune".to_string(),
        });
        let mut candidates: Vec<Candidate> = Vec::new();
        let mut pending: Vec<Trial> = Vec::new();
        let mut cancelled = false;

        // the grid's configs, graph by graph (each graph's ef values in a row, so the LRU keeps
        // at most one graph of a grid run busy); adaptive asks its search step by step
        let configs: Vec<HnswConfig> = match spec.strategy {
            Strategy::Grid => autotune::graph_groups(&spec.plan.configs, self.inner.build_options.engine)
                .into_iter()
                .flat_map(|(g, efs)| efs.into_iter().map(move |ef| HnswConfig { ef_search: ef, ..g }))
                .collect(),
            Strategy::Adaptive { .. } => Vec::new(),
        };
        let mut adaptive = Adaptive::new(HnswConfig::DEFAULT.seed);
        let mut grid = configs.into_iter();
        // seconds per (m × ef_construction) unit seen so far: the adaptive budget's forecast
        let mut secs_per_unit: f64 = 0.0;
        loop {
            let config = match spec.strategy {
                Strategy::Grid => grid.next(),
                Strategy::Adaptive { max_trials, budget } => {
                    if candidates.len() >= max_trials || started.elapsed() >= budget {
                        None
                    } else {
                        let left = budget.as_secs_f64() - started.elapsed().as_secs_f64();
                        let spu = secs_per_unit;
                        adaptive.next(&|m, ec| spu * f64::from(m) * f64::from(ec) <= left)
                    }
                }
            };
            let Some(config) = config else { break };
            let Some(metrics) = self.measure_in(&mut ctx, config, false).await? else {
                cancelled = true;
                break;
            };
            let units = f64::from(config.m) * f64::from(config.ef_construction);
            secs_per_unit = secs_per_unit.max(metrics.build_time_secs / units);
            let trial = Self::trial(&ctx, config, metrics, note.clone(), p.source);
            let c = candidate(trial.id, config, &trial.metrics);
            adaptive.observe(
                config,
                Observation {
                    passes: spec.rules.eligible(&c),
                    recall: c.recall_at_k,
                    cost: trial.metrics.distance_evals_per_query,
                },
            );
            if defer {
                pending.push(trial);
            } else {
                self.journal(trial).await?;
            }
            candidates.push(c);
            ctl.done.fetch_add(1, Ordering::Relaxed);
            if ctl.cancel.load(Ordering::Relaxed) {
                cancelled = true;
                break;
            }
        }

        let rules = &spec.rules;
        let mut winner = if cancelled {
            None
        } else {
            rules.winner(&candidates).map(|i| candidates[i].clone())
        };
        // the winner on the held-out queries
        if let (Some(w), true) = (winner.as_mut(), defer && !cancelled) {
            match self.measure_in(&mut ctx, w.config, true).await? {
                Some(m) => {
                    w.validation = Some(Validation {
                        recall_at_k: m.recall_at_k,
                        search_latency_p50_us: m.search_latency_p50_us,
                        eval_queries: m.eval_queries,
                    })
                }
                None => cancelled = true,
            }
        }
        if defer {
            for mut t in pending {
                if let Some(w) = winner.as_ref().filter(|w| w.trial_id == t.id && !cancelled) {
                    t.validation = w.validation.clone();
                }
                self.journal(t).await?;
            }
        }
        if cancelled {
            tracing::info!(index = %p.index, trials = candidates.len(), "autotune cancelled");
            return Ok(RunEnd::Cancelled {
                trials_run: candidates.len(),
            });
        }

        let eligible = candidates.iter().filter(|c| rules.eligible(c)).count();
        let (promoted, reason) = match (&winner, rules.promote) {
            (None, _) => (false, Some("no trial passed the run's recall bar".to_string())),
            (Some(_), Promote::Never) => (false, Some("promote is never: nothing promoted".to_string())),
            (Some(w), Promote::Always) => {
                self.promote_winner(&p.index, w, p.source).await?;
                (true, None)
            }
            (Some(w), Promote::IfBetter) => match self.inner.registry.get(&p.index).await?.current {
                None => {
                    self.promote_winner(&p.index, w, p.source).await?;
                    (true, Some("nothing was promoted yet".to_string()))
                }
                Some(current) => {
                    // the incumbent, re-measured now on the same queries (not journaled)
                    let Some(m) = self.measure_in(&mut ctx, current.config, false).await? else {
                        return Ok(RunEnd::Cancelled {
                            trials_run: candidates.len(),
                        });
                    };
                    let (better, why) = rules.beats(w, &candidate(current.trial_id, current.config, &m));
                    if better {
                        self.promote_winner(&p.index, w, p.source).await?;
                    }
                    (better, Some(why))
                }
            },
        };
        tracing::info!(index = %p.index, trials = candidates.len(), builds = ctx.builds, eligible, promoted,
            reason = ?reason, winner = ?winner.as_ref().map(|w| w.config), "autotune done");
        Ok(RunEnd::Finished(Box::new(AutotuneResult {
            index_name: p.index.clone(),
            trials_run: candidates.len(),
            trials_eligible: eligible,
            builds: ctx.builds,
            winner,
            promoted,
            duration_secs: started.elapsed().as_secs_f64(),
            skipped: spec.plan.skipped.clone(),
            reason,
            job_id,
        })))
    }

    /// Promotes a run's winner with the note that says why it won.
    async fn promote_winner(&self, index: &IndexName, w: &Candidate, source: Source) -> Result<()> {
        let by = match source {
            Source::Agent => "agent",
            _ => "autotune",
        };
        self.inner
            .registry
            .promote(
                index,
                w.config,
                w.trial_id,
                Some(by.into()),
                Some(autotune::winner_note(w)),
            )
            .await?;
        Ok(())
    }
}
