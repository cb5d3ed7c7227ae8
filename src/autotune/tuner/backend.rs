//! The engine's [`Backend`] over the tuner: the run's context, its journal and registry,
//! every write fenced by the run's lease.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use chrono::Utc;
use uuid::Uuid;

use super::context::RunContext;
use super::{Result, Tuner, TunerError};
use crate::autotune::engine::{Backend, Recorded};
use crate::autotune::{winner_note, Candidate};
use crate::fleet::{Lease, LeaseLostOr};
use crate::measure::Paired;
use crate::params::{Engine, HnswConfig};
use crate::trials::{Source, Trial, TrialMetrics};

/// One run's backend.
pub(super) struct RunBackend<'a> {
    pub(super) tuner: &'a Tuner,
    pub(super) ctx: RunContext,
    pub(super) source: Source,
    pub(super) done: Arc<AtomicUsize>,
    pub(super) lease: Arc<Lease>,
}

impl Backend for RunBackend<'_> {
    type Error = TunerError;

    async fn measure(&mut self, config: HnswConfig, held_out: bool) -> Result<Option<TrialMetrics>> {
        self.tuner.measure_in(&mut self.ctx, config, held_out).await
    }

    async fn paired(&mut self, configs: &[HnswConfig], rounds: usize) -> Result<Option<Paired>> {
        self.tuner.paired_in(&mut self.ctx, configs, rounds).await
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
            lease_epoch: Some(self.lease.epoch()),
        };
        // fenced: a run whose lease was taken over writes nothing more
        self.lease.check().map_err(TunerError::LeaseLost)?;
        self.tuner.journal(trial).await.map(|_| ())
    }

    async fn incumbent(&mut self) -> Result<Option<(Uuid, HnswConfig)>> {
        let state = self.tuner.parts.registry.get(&self.ctx.index).await?;
        Ok(state.current.map(|e| (e.trial_id, e.config)))
    }

    async fn promote(&mut self, winner: &Candidate) -> Result<()> {
        // the write that matters most: checked against the store, not only the clock
        self.lease.verify().await.map_err(|e| match e {
            LeaseLostOr::Lost(l) => TunerError::LeaseLost(l),
            LeaseLostOr::Storage(s) => TunerError::Storage(s),
        })?;
        let by = match self.source {
            Source::Agent => "agent",
            _ => "autotune",
        };
        self.tuner
            .parts
            .registry
            .promote_fenced(
                &self.ctx.index,
                winner.config,
                winner.trial_id,
                Some(by.into()),
                Some(winner_note(winner)),
                Some(self.lease.epoch()),
            )
            .await?;
        Ok(())
    }

    fn builds(&self) -> usize {
        self.ctx.builds
    }

    fn rows(&self) -> usize {
        self.ctx.full_set().live()
    }

    async fn scope(&mut self, sample: Option<usize>) -> Result<Option<Engine>> {
        self.tuner.scope_in(&mut self.ctx, sample).await
    }

    async fn prefetch(&mut self, configs: &[HnswConfig]) -> Result<()> {
        self.tuner.offer_in(&mut self.ctx, configs).await
    }

    fn builds_elsewhere(&self) -> usize {
        self.ctx.offers.as_ref().map_or(0, |o| o.elsewhere())
    }

    fn cancelled(&self) -> bool {
        self.ctx.cancel.is_cancelled()
    }

    fn progress(&mut self, trials: usize) {
        self.done.store(trials, Ordering::Relaxed);
    }
}
