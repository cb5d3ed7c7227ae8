//! The tuner: the engine's backend as a component of its own. It owns what a tuning run
//! touches — the vectors it measures, the harness and its ground truth, the build permits,
//! the journal, the registry and the run's claim — and nothing else, so a change to how a
//! run measures or decides lands here and in the engine, not in the service facade.
//!
//! A run loads the vectors, the harness and its ground truth once ([`context`]), so every
//! trial of the run measures the same vectors on the same queries. Graphs are built on
//! blocking threads behind the build semaphore, and a build-and-measure step holds all of
//! its permits, so a latency is never measured beside a build of this process, whatever the
//! build concurrency. Built graphs stay in a per-run LRU cache ([`super::GraphCache`]) while
//! the run revisits them.
//!
//! Journaling: each trial is written as soon as it is measured, so a cancelled or crashed
//! run keeps what it finished. A run with held-out queries is the exception: its winner's
//! trial must carry the validation measured at the end, and journal objects are write-once,
//! so that run writes its trials when it ends (or is cancelled, then with `validation`
//! null).

mod backend;
mod context;
mod error;
mod fleet;

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::engine::{End, Run, Setup};
use super::{AutotuneResult, Spec, SpecFields};
use crate::fleet::{AutotuneClaim, ClaimError, Claims, Lease};
use crate::harness::Harnesses;
use crate::hnsw::BuildOptions;
use crate::metrics::Metrics;
use crate::names::{HarnessName, IndexName};
use crate::params::HnswConfig;
use crate::promotion::Registry;
use crate::trials::{Journal, Source, Trial};
use crate::vectors::Indexes;
use backend::RunBackend;
pub use context::{PAIRED_MAX_QUERIES, RUN_GRAPH_CACHE_BYTES};
pub use error::TunerError;
pub use fleet::BuiltForFleet;

/// Result of the tuner.
pub type Result<T, E = TunerError> = std::result::Result<T, E>;

/// A trial to run.
#[derive(Debug, Clone)]
pub struct TrialRequest {
    /// The index.
    pub index: IndexName,
    /// The harness to measure against.
    pub harness: HarnessName,
    /// The config to build and search.
    pub config: HnswConfig,
    /// Free text for the journal.
    pub note: Option<String>,
    /// Who asks.
    pub source: Source,
}

/// An autotune to run.
#[derive(Debug, Clone)]
pub struct AutotuneRequest {
    /// The index.
    pub index: IndexName,
    /// The harness to measure against.
    pub harness: HarnessName,
    /// Everything else, as received (checked by [`Spec::parse`]).
    pub fields: SpecFields,
}

/// An autotune checked before anything runs (400 / 404 already answered).
#[derive(Debug)]
pub struct CheckedAutotune {
    index: IndexName,
    harness: HarnessName,
    spec: Spec,
}

/// What fences a prepared run's writes.
#[derive(Debug)]
enum Fence {
    /// A user's autotune: the index claimed here and its autotune lease.
    Autotune(AutotuneClaim),
    /// An agent run: the agent's lease (held by the agents, not by the run).
    Agent(Arc<Lease>),
}

/// A checked run that holds its index: a second autotune of the index is refused (409)
/// from the moment this exists until it is dropped. An agent run holds no claim: it only
/// starts when no autotune of the index runs, and never makes a user's autotune wait or
/// fail.
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
    fence: Fence,
    /// Cancelled by the caller or by the loss of the fencing lease.
    cancel: CancellationToken,
}

impl PreparedAutotune {
    fn lease(&self) -> &Arc<Lease> {
        match &self.fence {
            Fence::Autotune(c) => c.lease(),
            Fence::Agent(l) => l,
        }
    }
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

/// What the tuner is made of (the service's shared parts).
pub struct TunerParts {
    /// The indexes and their vectors.
    pub indexes: Arc<Indexes>,
    /// Harnesses and ground truth.
    pub harnesses: Arc<Harnesses>,
    /// The trial journal.
    pub journal: Arc<Journal>,
    /// The promotion registry.
    pub registry: Arc<Registry>,
    /// Who may tune an index now.
    pub claims: Arc<Claims>,
    /// Build permits, shared with serving: a measurement takes them all.
    pub builds: Arc<Semaphore>,
    /// How many permits `builds` has.
    pub build_slots: u32,
    /// Engine and threads of every build.
    pub build_options: BuildOptions,
    /// What `/metrics` counts.
    pub metrics: Arc<Metrics>,
    /// The bounds of every config it runs.
    pub bounds: crate::params::Bounds,
    /// Memory the graphs one run keeps may take ([`RUN_GRAPH_CACHE_BYTES`] by default).
    pub run_graph_bytes: usize,
    /// Where a sampled run's full builds are kept for activation to load.
    pub storage: crate::storage::Storage,
    /// Whether an autotune's full builds are offered to the other live instances, and
    /// this instance builds what theirs offer (`tuning.fleet_builds`).
    pub fleet_builds: bool,
}

/// The tuning component: trials and autotune runs over the service's data.
pub struct Tuner {
    parts: TunerParts,
}

impl Tuner {
    /// A tuner over `parts`.
    pub fn new(parts: TunerParts) -> Tuner {
        Tuner { parts }
    }

    /// The bounds of every config it runs.
    pub fn bounds(&self) -> crate::params::Bounds {
        self.parts.bounds
    }

    /// Checks an autotune request: the index exists, the harness is its, every field
    /// parses (400 / 404 before anything runs or is claimed).
    pub async fn check(&self, req: AutotuneRequest) -> Result<CheckedAutotune> {
        self.parts.indexes.get(&req.index)?;
        self.parts.harnesses.check_index(&req.harness, &req.index).await?;
        let spec = Spec::parse(&req.fields, self.parts.bounds)?;
        Ok(CheckedAutotune {
            index: req.index,
            harness: req.harness,
            spec,
        })
    }

    /// Claims a checked autotune's index (409 while another run of it is under way, here
    /// or on another instance); `caller` cancels the run.
    pub async fn claim(&self, c: CheckedAutotune, caller: &CancellationToken) -> Result<PreparedAutotune> {
        let claim = self.parts.claims.autotune(&c.index, caller).await?;
        Ok(PreparedAutotune {
            index: c.index,
            harness: c.harness,
            spec: c.spec,
            source: Source::Autotune,
            cancel: claim.cancel().clone(),
            fence: Fence::Autotune(claim),
        })
    }

    /// An agent's run of `configs` by `rules` under its `lease`: refused (busy) while an
    /// autotune of the index runs anywhere; `stop` cancels it.
    pub async fn prepare_agent_run(
        &self,
        index: &IndexName,
        harness: HarnessName,
        spec: Spec,
        lease: Arc<Lease>,
        stop: &CancellationToken,
    ) -> Result<PreparedAutotune> {
        self.parts.indexes.get(index)?;
        self.parts.harnesses.check_index(&harness, index).await?;
        if self.parts.claims.autotune_anywhere(index).await? {
            return Err(ClaimError::Running(index.clone()).into());
        }
        Ok(PreparedAutotune {
            index: index.clone(),
            harness,
            spec,
            source: Source::Agent,
            cancel: lease.fence(stop),
            fence: Fence::Agent(lease),
        })
    }

    /// Builds `config` over the index's vectors, measures it against the harness and
    /// appends it to the journal; `cancel` stops it (then `Cancelled`).
    pub async fn trial(&self, req: TrialRequest, cancel: &CancellationToken) -> Result<Arc<Trial>> {
        self.parts.indexes.get(&req.index)?;
        let mut ctx = self
            .context(&req.index, &req.harness, 0.0, cancel.clone())
            .await?;
        let metrics = self
            .measure_in(&mut ctx, req.config, false)
            .await?
            .ok_or(TunerError::Cancelled)?;
        let trial = ctx.trial(req.config, metrics, req.note, req.source);
        self.journal(trial).await
    }

    /// Runs a prepared autotune through [`crate::autotune::engine`] to its end; `done`
    /// counts the trials finished and `build` the rows of the build under way (a job's
    /// progress).
    pub async fn run(
        &self,
        p: PreparedAutotune,
        done: Arc<AtomicUsize>,
        build: Arc<crate::hnsw::native::BuildProgress>,
        job_id: Option<Uuid>,
    ) -> Result<RunEnd> {
        let end = self.run_inner(p, done, build, job_id).await;
        let outcome = match &end {
            Ok(RunEnd::Finished(r)) if r.promoted => "promoted",
            Ok(RunEnd::Finished(r)) if r.winner.is_some() => "kept",
            Ok(RunEnd::Finished(_)) => "no_winner",
            Ok(RunEnd::Cancelled { .. }) => "cancelled",
            Err(_) => "failed",
        };
        self.parts.metrics.autotune(outcome);
        end
    }

    async fn run_inner(
        &self,
        p: PreparedAutotune,
        done: Arc<AtomicUsize>,
        build: Arc<crate::hnsw::native::BuildProgress>,
        job_id: Option<Uuid>,
    ) -> Result<RunEnd> {
        let started = std::time::Instant::now();
        let spec = &p.spec;
        let mut ctx = self
            .context(&p.index, &p.harness, spec.validation_fraction, p.cancel.clone())
            .await?;
        ctx.build = build;
        if let (Fence::Autotune(c), true) = (&p.fence, self.parts.fleet_builds) {
            let fleet = self.parts.claims.fleet().clone();
            ctx.offers = Some(fleet::Offers::new(fleet, c.lease().epoch(), ctx.full_set()));
        }
        let setup = Setup {
            defer: ctx.held.is_some(),
            note: match p.source {
                Source::Agent => "agent".to_string(),
                _ => "autotune".to_string(),
            },
            engine: self.parts.build_options.engine,
            seed: HnswConfig::DEFAULT.seed,
        };
        let lease = p.lease().clone();
        let mut backend = RunBackend {
            tuner: self,
            ctx,
            source: p.source,
            done,
            lease: lease.clone(),
        };
        let end = Run::new(&mut backend, spec, setup).run().await;
        let winner = match &end {
            Ok(End::Finished(o)) => o.winner.as_ref().map(|w| w.config),
            _ => None,
        };
        let built_elsewhere = self.clear_offers(&backend.ctx).await;
        self.drop_losers(&backend.ctx, &built_elsewhere, winner).await;
        if let Err(e) = lease.check() {
            return Err(TunerError::LeaseLost(e));
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
            best_recall: o.best_recall,
            bounds: Some(spec.bounds),
            sample: o.sample,
            builds_elsewhere: o.builds_elsewhere,
        })))
    }

    /// Deletes the full builds the run stored (a sampled run's, and those other instances
    /// built for it) whose graph did not win (the winner's stays for its activation to
    /// load). A failure is logged, not the run's: the graphs
    /// are only storage, and the next build of more rows drops them as stale.
    async fn drop_losers(
        &self,
        ctx: &context::RunContext,
        elsewhere: &[HnswConfig],
        winner: Option<HnswConfig>,
    ) {
        let engine = self.parts.build_options.engine;
        let won = winner.map(|w| w.graph_id(engine));
        let stored = || ctx.kept.iter().map(|(c, _)| c).chain(elsewhere);
        // a winner whose own graph is not stored, with a build of its links that is
        let twin_of = winner.filter(|_| !stored().any(|c| Some(c.graph_id(engine)) == won));
        let mut dropped_ids = Vec::new();
        for config in stored() {
            let id = config.graph_id(engine);
            if Some(id) == won || dropped_ids.contains(&id) {
                continue;
            }
            dropped_ids.push(id);
            // the winner is a twin quantization of this build: moved to the winner's key
            // (nothing stored there: nothing to drop either)
            if let Some(w) = twin_of.filter(|w| w.links_id(engine) == config.links_id(engine)) {
                let store = &self.parts.storage;
                let moved =
                    crate::serving::keep_as_twin(store, &ctx.index, ctx.full_set(), *config, w, engine);
                if let Err(e) = moved.await {
                    tracing::warn!(index = %ctx.index, ?config, error = %e, "a tuning run's stored graph was not kept for its twin");
                }
                continue;
            }
            let dropped =
                crate::serving::drop_kept(&self.parts.storage, &ctx.index, ctx.full_set(), *config, engine)
                    .await;
            if let Err(e) = dropped {
                tracing::warn!(index = %ctx.index, ?config, error = %e, "a tuning run's stored graph was not deleted");
            }
        }
    }

    async fn journal(&self, trial: Trial) -> Result<Arc<Trial>> {
        // the index may have been deleted meanwhile: never write into a deleted prefix
        self.parts.indexes.get(&trial.index_name)?;
        tracing::info!(index = %trial.index_name, trial = %trial.id, config = ?trial.config, source = ?trial.source,
            recall = trial.metrics.recall_at_k, p50_us = trial.metrics.search_latency_p50_us, "trial recorded");
        let stored = self.parts.journal.append(trial).await?;
        self.parts.metrics.trial();
        Ok(stored)
    }
}
