//! Trials and autotune runs: the service admits the work, the [`Tuner`] does it.
//!
//! The order of refusals is the cheap one first: a bad request (400 / 404) before anything
//! else, then the in-memory admission to the work queue (503 when full), and only then the
//! claim, whose lease is a store write — so an overloaded server writes nothing for the
//! autotunes it refuses.

use super::{Result, ServiceError, Vectune};
use crate::autotune::{AutotuneRequest, AutotuneResult, RunEnd, TrialRequest, TunerError};
use crate::jobs::{Job, JobEnd, JobKind, JobResult, RunControl};
use crate::trials::Trial;

use std::sync::Arc;

impl Vectune {
    /// Builds `config` over the index's vectors, measures it against the harness and
    /// appends it to the journal.
    pub async fn run_trial(&self, req: TrialRequest) -> Result<Arc<Trial>> {
        self.inner.indexes.get(&req.index)?;
        let _ticket = self.admit()?;
        // only shutdown cancels a sync trial
        match self.inner.tuner.trial(req, &self.inner.shutdown).await {
            Err(TunerError::Cancelled) => Err(ServiceError::ShuttingDown),
            other => Ok(other?),
        }
    }

    /// Runs an autotune to the end, here and now.
    pub async fn autotune(&self, req: AutotuneRequest) -> Result<AutotuneResult> {
        let checked = self.inner.tuner.check(req).await?;
        let _ticket = self.admit()?;
        // only shutdown cancels a sync run
        let prepared = self.inner.tuner.claim(checked, &self.inner.shutdown).await?;
        self.reap_if_due().await;
        match self
            .inner
            .tuner
            .run(prepared, Default::default(), Default::default(), None)
            .await?
        {
            RunEnd::Finished(r) => Ok(*r),
            RunEnd::Cancelled { .. } => Err(ServiceError::ShuttingDown),
        }
    }

    /// Starts an autotune as a job and answers at once. Everything a sync autotune would
    /// refuse (400, 404, 409, 503) is refused here too, before a job exists.
    pub async fn autotune_async(&self, req: AutotuneRequest) -> Result<Job> {
        let checked = self.inner.tuner.check(req).await?;
        let ticket = self.admit()?;
        let control = RunControl::default();
        let prepared = self.inner.tuner.claim(checked, &control.cancel).await?;
        self.reap_if_due().await;
        // a sampled run counts the sample's trials and the full index's
        let rows = self.inner.indexes.get(&prepared.index)?.total();
        let planned = prepared
            .spec
            .planned_trials_over(usize::try_from(rows).unwrap_or(usize::MAX));
        let job = self
            .inner
            .jobs
            .create(&prepared.index, JobKind::Autotune, planned, control.clone())
            .await?;
        let (me, id) = (self.clone(), job.id);
        self.inner.jobs.spawn(id, ticket, async move {
            let end = me
                .inner
                .tuner
                .run(prepared, control.done.clone(), control.build.clone(), Some(id))
                .await;
            Ok::<_, ServiceError>(match end? {
                RunEnd::Finished(r) => JobEnd::Succeeded {
                    done: r.trials_run + r.sample.as_ref().map_or(0, |s| s.trials),
                    result: JobResult::Autotune(r),
                },
                RunEnd::Cancelled { trials_run } => JobEnd::Cancelled {
                    done: trials_run,
                    build: crate::jobs::BuildStep::of(&control.build),
                },
            })
        });
        Ok(job)
    }

    /// Reaps now when this claim took a lease over from a provably dead instance: its
    /// running jobs show `interrupted` at once, not at the next reaping tick.
    async fn reap_if_due(&self) {
        if self.inner.fleet.take_reap_due() {
            match self.reap_jobs().await {
                Ok(n) => self.inner.fleet.reaped(n),
                Err(e) => {
                    tracing::warn!(error = %e, "reaping a dead holder's jobs failed; the clock retries")
                }
            }
        }
    }
}

/// Builds what other instances' autotunes offer ([`crate::fleet::work`]), one graph at a
/// time, until the service is dropped or stops: looks every fleet sync interval, and again
/// at once after a build (runs offer several graphs at a time).
pub(super) async fn fleet_builder(weak: std::sync::Weak<super::Inner>) {
    let every = match weak.upgrade() {
        Some(inner) => inner.fleet.options().sync_interval,
        None => return,
    }
    .max(std::time::Duration::from_millis(50));
    loop {
        let built = {
            let Some(inner) = weak.upgrade() else { return };
            if inner.shutdown.is_cancelled() {
                return;
            }
            let me = Vectune { inner };
            me.build_offered().await
        };
        match built {
            Ok(Some(_)) => continue,
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "building an offered graph failed; retrying"),
        }
        tokio::time::sleep(every).await;
    }
}

impl Vectune {
    /// Builds one graph another instance's autotune offered, if there is one this instance
    /// can build (see [`crate::autotune::Tuner::build_offered`]). Public so tests can step
    /// two services over one store without the clock.
    pub async fn build_offered(&self) -> Result<Option<crate::autotune::BuiltForFleet>> {
        // alone on the bucket, nobody offers anything: not even a listing
        if self.inner.fleet.others_alive() {
            Ok(self.inner.tuner.build_offered(&self.inner.shutdown).await?)
        } else {
            Ok(None)
        }
    }
}
