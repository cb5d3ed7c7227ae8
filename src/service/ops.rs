//! Operations: admission of heavy work, readiness, metrics, shutdown, jobs and the fleet.

use super::*;

impl Vectune {
    /// Admits one piece of heavy work, or refuses it at once when the queue is full.
    pub fn admit(&self) -> Result<Ticket> {
        if self.is_shutting_down() {
            return Err(ServiceError::ShuttingDown);
        }
        self.inner.queue.try_admit().map_err(|e| {
            self.inner.metrics.refused();
            tracing::warn!(
                limit = self.inner.queue.limit(),
                "heavy work refused: the queue is full"
            );
            ServiceError::from(e)
        })
    }

    /// `Ok` once start-up re-activation has run and the store answers; `Unavailable`
    /// before, `ShuttingDown` once the process stops.
    pub async fn ready(&self) -> Result<()> {
        if self.is_shutting_down() {
            return Err(ServiceError::ShuttingDown);
        }
        if !self.inner.reactivated.load(Ordering::Acquire) {
            return Err(ServiceError::Starting(
                "re-activating what served before the restart",
            ));
        }
        self.inner.storage.ping().await?;
        Ok(())
    }

    /// The service's counters (bumped by the HTTP layer for requests).
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.inner.metrics
    }

    /// The Prometheus exposition, gauges read from the state now.
    pub fn metrics_text(&self) -> String {
        use crate::metrics::{IndexSnapshot, Snapshot};
        let indexes = self
            .inner
            .indexes
            .list()
            .iter()
            .map(|ix| {
                let name = &ix.meta().name;
                IndexSnapshot {
                    name: name.to_string(),
                    vectors: ix.total(),
                    generation: self.inner.serving.current(name).map(|g| g.record.generation),
                    live_recall: self.live(name).filter(|l| l.queries > 0).map(|l| l.recall_at_k),
                }
            })
            .collect();
        let fleet = self.inner.fleet.snapshot();
        let snapshot = Snapshot {
            fleet,
            indexes,
            jobs: self.inner.jobs.count_by_state(),
            queue_admitted: self.inner.queue.admitted() as u64,
            queue_capacity: self.inner.queue.limit() as u64,
        };
        self.inner.metrics.render(&snapshot)
    }

    /// The heavy-work queue (its occupancy is a metric).
    pub fn queue(&self) -> &WorkQueue {
        &self.inner.queue
    }

    /// Whether [`Vectune::stop_background`] ran.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutdown.is_cancelled()
    }

    /// Stops background work before the process exits: running jobs, agents and sync
    /// runs stop at their next query, so shutdown does not wait for a whole build sweep
    /// (a sync request cut short answers `shutting_down`).
    pub fn stop_background(&self) {
        self.inner.shutdown.cancel();
        self.inner.jobs.stop_all();
        self.inner.agents.stop_all();
    }

    pub(super) fn index_names(&self) -> Vec<IndexName> {
        self.inner
            .indexes
            .list()
            .iter()
            .map(|i| i.meta().name.clone())
            .collect()
    }

    /// Leaves the fleet on a clean stop: the liveness record is deleted, so the others
    /// count this instance dead at once.
    pub async fn leave_fleet(&self) {
        if let Err(e) = self.inner.fleet.leave().await {
            tracing::warn!(error = %e, "liveness record not deleted; it expires by itself");
        }
    }

    /// One job (another instance's as stored).
    pub async fn job(&self, id: &str) -> Result<Job> {
        Ok(self.inner.jobs.get(id, &self.index_names()).await?)
    }

    /// The jobs of an index, newest first.
    pub async fn jobs_of(&self, index: &IndexName) -> Result<Vec<Job>> {
        self.inner.indexes.get(index)?;
        Ok(self.inner.jobs.list(index).await?)
    }

    /// Asks a job to stop; answers it as it is now.
    pub async fn cancel_job(&self, id: &str) -> Result<Job> {
        Ok(self.inner.jobs.cancel(id, &self.index_names()).await?)
    }

    /// This instance's place in the fleet.
    pub fn fleet(&self) -> &Arc<crate::fleet::Fleet> {
        &self.inner.fleet
    }
}
