//! Trials and tuning runs on this service: the [`crate::autotune::engine`] run loop's
//! backend (builds, measurements, interleaved re-measurements, the journal and the
//! registry), and single trials.
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

use chrono::Utc;
use uuid::Uuid;

use super::{AutotuneRequest, Result, RunControl, ServiceError, TrialRequest, Vectune};
use crate::autotune::engine::{Backend, End, Recorded, Run, Setup};
use crate::autotune::{self, AutotuneError, AutotuneResult, Candidate, GraphCache, RunGuard, Spec};
use crate::fleet::{Lease, LeaseKind};
use crate::harness as harness_mod;
use crate::hnsw;
use crate::measure::{self, Paired};
use crate::names::{HarnessName, IndexName};
use crate::params::HnswConfig;
use crate::trials::{Source, Trial, TrialMetrics};
use crate::vectors::VectorSet;

/// Queries an interleaved comparison uses at most (evenly spaced over the tuning queries).
pub const PAIRED_MAX_QUERIES: usize = 1000;

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
    /// The store lease that fences the run's writes: the index's autotune lease for an
    /// autotune, the agent's lease for an agent run.
    lease: Option<Arc<Lease>>,
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

    /// Every build permit: with build concurrency above 1, no other build of this process
    /// runs while a step measures latency.
    async fn measuring(&self) -> Result<tokio::sync::SemaphorePermit<'_>> {
        self.inner
            .builds
            .acquire_many(self.inner.build_slots)
            .await
            .map_err(|_| ServiceError::Internal("the build semaphore is closed"))
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
        let permit = self.measuring().await?;
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
            let brute = brute.unwrap_or_else(|| measure::brute_force_latency_us(&set, &tune.0, k));
            let (q, truth) = (&queries.0, &queries.1);
            let m = measure::measure(
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
        .map_err(ServiceError::Task)?;
        drop(permit);
        let Some((graph, built, brute, metrics)) = out else {
            return Ok(None);
        };
        if built {
            if let Some(m) = &metrics {
                (self.inner.metrics).build(crate::metrics::BuildPurpose::trial, m.build_time_secs);
            }
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
            lease_epoch: None,
        }
    }

    async fn journal(&self, trial: Trial) -> Result<Arc<Trial>> {
        // the index may have been deleted meanwhile: never write into a deleted prefix
        self.inner.indexes.get(&trial.index_name)?;
        tracing::info!(index = %trial.index_name, trial = %trial.id, config = ?trial.config, source = ?trial.source,
            recall = trial.metrics.recall_at_k, p50_us = trial.metrics.search_latency_p50_us, "trial recorded");
        let stored = self.inner.journal.append(trial).await?;
        self.inner.metrics.trial();
        Ok(stored)
    }

    /// Builds `config` over the index's vectors, measures it against the harness and
    /// appends it to the journal.
    pub async fn run_trial(&self, req: TrialRequest) -> Result<Arc<Trial>> {
        self.inner.indexes.get(&req.index)?;
        let _ticket = self.admit()?;
        let mut ctx = self
            .context(&req.index, &req.harness, 0.0, self.shutdown_flag())
            .await?;
        // only shutdown raises the flag of a sync trial
        let metrics = self
            .measure_in(&mut ctx, req.config, false)
            .await?
            .ok_or(ServiceError::ShuttingDown)?;
        self.journal(Self::trial(&ctx, req.config, metrics, req.note, req.source))
            .await
    }

    /// Checks an autotune request (400/404 before anything runs) and claims its index (409
    /// while another run of it is under way).
    pub async fn prepare_autotune(&self, req: AutotuneRequest, source: Source) -> Result<PreparedAutotune> {
        self.inner.indexes.get(&req.index)?;
        self.inner.harnesses.check_index(&req.harness, &req.index).await?;
        let spec = Spec::parse(&req.fields)?;
        let fleet = &self.inner.fleet;
        let (claim, lease) = match source {
            Source::Agent => {
                // an agent never makes a user's autotune wait or fail: it only runs while
                // none runs, here or on another instance, and under its own agent lease
                if self.inner.autotunes.is_claimed(&req.index)
                    || fleet
                        .held_elsewhere(LeaseKind::Autotune, &req.index)
                        .await?
                        .is_some()
                {
                    return Err(AutotuneError::Running(req.index).into());
                }
                (None, self.agent_lease(&req.index))
            }
            _ => {
                let claim = self.inner.autotunes.claim(&req.index)?;
                match fleet.acquire(LeaseKind::Autotune, &req.index).await? {
                    Ok(lease) => (Some(claim), Some(lease)),
                    Err(taken) => {
                        tracing::info!(index = %req.index, holder = %taken.0.holder.instance,
                            epoch = taken.0.epoch, "autotune refused: another instance holds the lease");
                        return Err(AutotuneError::Running(req.index).into());
                    }
                }
            }
        };
        Ok(PreparedAutotune {
            index: req.index,
            harness: req.harness,
            spec,
            source,
            _claim: claim,
            lease,
        })
    }

    /// Runs an autotune to the end, here and now.
    pub async fn autotune(&self, req: AutotuneRequest) -> Result<AutotuneResult> {
        let prepared = self.prepare_autotune(req, Source::Autotune).await?;
        let _ticket = self.admit()?;
        let ctl = RunControl {
            cancel: self.shutdown_flag(),
            ..RunControl::default()
        };
        // only shutdown cancels a sync run
        match self.run_prepared(prepared, &ctl, None).await? {
            RunEnd::Finished(r) => Ok(*r),
            RunEnd::Cancelled { .. } => Err(ServiceError::ShuttingDown),
        }
    }

    /// Runs a prepared autotune through [`crate::autotune::engine`] on this service's
    /// graphs, journal and registry.
    pub async fn run_prepared(
        &self,
        p: PreparedAutotune,
        ctl: &RunControl,
        job_id: Option<Uuid>,
    ) -> Result<RunEnd> {
        let end = self.run_prepared_inner(p, ctl, job_id).await;
        let outcome = match &end {
            Ok(RunEnd::Finished(r)) if r.promoted => "promoted",
            Ok(RunEnd::Finished(r)) if r.winner.is_some() => "kept",
            Ok(RunEnd::Finished(_)) => "no_winner",
            Ok(RunEnd::Cancelled { .. }) => "cancelled",
            Err(_) => "failed",
        };
        self.inner.metrics.autotune(outcome);
        end
    }

    async fn run_prepared_inner(
        &self,
        p: PreparedAutotune,
        ctl: &RunControl,
        job_id: Option<Uuid>,
    ) -> Result<RunEnd> {
        let started = std::time::Instant::now();
        let spec = &p.spec;
        // the run stops on the caller's cancel, or when its lease is lost; only the
        // caller's flag is theirs to raise (a sync run's is the process's shutdown flag)
        let run_cancel = Arc::new(AtomicBool::new(false));
        if let Some(l) = &p.lease {
            l.on_lost(run_cancel.clone());
        }
        let forward = tokio::spawn({
            let (from, to) = (ctl.cancel.clone(), run_cancel.clone());
            async move {
                while !from.load(Ordering::Relaxed) {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                to.store(true, Ordering::Relaxed);
            }
        });
        let _stop_forwarding = AbortOnDrop(forward);
        let lost = |l: &Option<Arc<Lease>>| l.as_ref().and_then(|l| l.check().err());
        let ctx = self
            .context(&p.index, &p.harness, spec.validation_fraction, run_cancel.clone())
            .await?;
        let setup = Setup {
            defer: ctx.held.is_some(),
            note: match p.source {
                Source::Agent => "agent".to_string(),
                _ => "autotune".to_string(),
            },
            engine: self.inner.build_options.engine,
            seed: HnswConfig::DEFAULT.seed,
        };
        let mut backend = RunBackend {
            svc: self,
            ctx,
            source: p.source,
            done: ctl.done.clone(),
            lease: p.lease.clone(),
        };
        let end = Run::new(&mut backend, spec, setup).run().await;
        if let Some(e) = lost(&p.lease) {
            return Err(ServiceError::LeaseLost(e));
        }
        let o = match end? {
            End::Cancelled { trials_run } => {
                tracing::info!(index = %p.index, trials = trials_run, "autotune cancelled");
                return Ok(RunEnd::Cancelled { trials_run });
            }
            End::Finished(o) => o,
        };
        tracing::info!(index = %p.index, trials = o.trials_run, builds = o.builds, eligible = o.trials_eligible,
            promoted = o.promoted, reason = ?o.reason, winner = ?o.winner.as_ref().map(|w| w.config), "autotune done");
        Ok(RunEnd::Finished(Box::new(AutotuneResult {
            index_name: p.index.clone(),
            trials_run: o.trials_run,
            trials_eligible: o.trials_eligible,
            builds: o.builds,
            winner: o.winner,
            promoted: o.promoted,
            duration_secs: started.elapsed().as_secs_f64(),
            skipped: spec.plan.skipped.clone(),
            reason: o.reason,
            job_id,
            refinement: o.refinement,
            ineligible: o.ineligible,
            validations: o.validations,
            near_ties: o.near_ties,
        })))
    }

    /// Measures `configs` interleaved on the run's tuning queries (building any graph the
    /// run does not hold, as a plain measurement first).
    async fn paired_in(
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
                Some(g) => graphs.push((g, c.ef_search as usize)),
                None => {
                    return Err(ServiceError::Internal(
                        "a graph left the run cache while it was compared",
                    ))
                }
            }
        }
        let (set, k, cancel, tune) = (ctx.set.clone(), ctx.k, ctx.cancel.clone(), ctx.tune.clone());
        let permit = self.measuring().await?;
        let out = tokio::task::spawn_blocking(move || {
            let g: Vec<(&hnsw::Graph, usize)> = graphs.iter().map(|(g, ef)| (&**g, *ef)).collect();
            // a large harness is compared on an evenly spaced share of its queries: the
            // interval is tight long before, and the comparison stays seconds, not minutes
            let step = tune.0.len().div_ceil(PAIRED_MAX_QUERIES).max(1);
            let queries: Vec<Vec<f32>> = tune.0.iter().step_by(step).cloned().collect();
            let truth: Vec<Vec<u32>> = tune.1.iter().step_by(step).cloned().collect();
            measure::measure_paired(&set, &g, &queries, &truth, k, rounds, &cancel)
        })
        .await
        .map_err(ServiceError::Task)?;
        drop(permit);
        Ok(out)
    }

    /// Promotes a run's winner with the note that says why it won.
    async fn promote_winner(
        &self,
        index: &IndexName,
        w: &Candidate,
        source: Source,
        lease_epoch: Option<u64>,
    ) -> Result<()> {
        let by = match source {
            Source::Agent => "agent",
            _ => "autotune",
        };
        self.inner
            .registry
            .promote_fenced(
                index,
                w.config,
                w.trial_id,
                Some(by.into()),
                Some(autotune::winner_note(w)),
                lease_epoch,
            )
            .await?;
        Ok(())
    }
}

/// The engine's backend over this service: the run's context, its journal and registry.
struct RunBackend<'a> {
    svc: &'a Vectune,
    ctx: RunContext,
    source: Source,
    done: Arc<AtomicUsize>,
    lease: Option<Arc<Lease>>,
}

/// Aborts a helper task when the run it serves ends, however it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Backend for RunBackend<'_> {
    type Error = ServiceError;

    async fn measure(&mut self, config: HnswConfig, held_out: bool) -> Result<Option<TrialMetrics>> {
        self.svc.measure_in(&mut self.ctx, config, held_out).await
    }

    async fn paired(&mut self, configs: &[HnswConfig], rounds: usize) -> Result<Option<Paired>> {
        self.svc.paired_in(&mut self.ctx, configs, rounds).await
    }

    async fn record(&mut self, t: Recorded) -> Result<()> {
        let trial = Trial {
            id: t.id,
            index_name: self.ctx.index.clone(),
            eval_set: self.ctx.harness.clone(),
            config: t.config,
            created_at: Utc::now(),
            note: Some(t.note),
            source: self.source,
            metrics: t.metrics,
            validation: t.validation,
            lease_epoch: self.lease.as_ref().map(|l| l.epoch()),
        };
        // fenced: a run whose lease was taken over writes nothing more
        if let Some(l) = &self.lease {
            l.check().map_err(ServiceError::LeaseLost)?;
        }
        self.svc.journal(trial).await.map(|_| ())
    }

    async fn incumbent(&mut self) -> Result<Option<(Uuid, HnswConfig)>> {
        let state = self.svc.inner.registry.get(&self.ctx.index).await?;
        Ok(state.current.map(|e| (e.trial_id, e.config)))
    }

    async fn promote(&mut self, winner: &Candidate) -> Result<()> {
        // the write that matters most: checked against the store, not only the clock
        if let Some(l) = &self.lease {
            l.verify().await.map_err(|e| match e {
                crate::fleet::LeaseLostOr::Lost(l) => ServiceError::LeaseLost(l),
                crate::fleet::LeaseLostOr::Storage(s) => ServiceError::Storage(s),
            })?;
        }
        self.svc
            .promote_winner(
                &self.ctx.index,
                winner,
                self.source,
                self.lease.as_ref().map(|l| l.epoch()),
            )
            .await
    }

    fn builds(&self) -> usize {
        self.ctx.builds
    }

    fn cancelled(&self) -> bool {
        self.ctx.cancel.load(Ordering::Relaxed)
    }

    fn progress(&mut self, trials: usize) {
        self.done.store(trials, Ordering::Relaxed);
    }
}
