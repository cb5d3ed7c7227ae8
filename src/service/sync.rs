//! This service as the host of the fleet's clock ([`crate::fleet::sync`]): what adopting
//! the other instances' writes means here — indexes created or deleted, newer manifests
//! (appends), newer activations (served from the stored graph, no rebuild), changed agent
//! settings, harness definitions (their cache is dropped and re-read on use) — and cancel
//! requests for jobs running here.
//!
//! What is read straight from the store on every request needs none of this: promotions
//! (`GET promoted`), the trial journal's listing, other instances' jobs, agent records.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Result, ServiceError, Vectune};
use crate::fleet::sync::SyncHost;
use crate::fleet::Fleet;
use crate::names::IndexName;

impl SyncHost for Vectune {
    type Error = ServiceError;

    fn fleet(&self) -> &Arc<Fleet> {
        &self.inner.fleet
    }

    fn stopping(&self) -> bool {
        self.is_shutting_down()
    }

    fn serving_generations(&self) -> BTreeMap<String, u64> {
        Vectune::serving_generations(self)
    }

    async fn sync_once(&self) -> Result<()> {
        Vectune::sync_once(self).await
    }

    async fn reap_jobs(&self) -> Result<usize> {
        Vectune::reap_jobs(self).await
    }
}

impl Vectune {
    /// The generation this instance serves, by index.
    pub(crate) fn serving_generations(&self) -> BTreeMap<String, u64> {
        self.inner
            .indexes
            .list()
            .iter()
            .filter_map(|ix| {
                let name = &ix.meta().name;
                (self.inner.serving.current(name)).map(|g| (name.to_string(), g.record.generation))
            })
            .collect()
    }

    /// Marks `interrupted` the unfinished jobs whose instance died; returns how many.
    pub async fn reap_jobs(&self) -> Result<usize> {
        Ok(self
            .inner
            .jobs
            .reap(&self.index_names(), &self.inner.fleet)
            .await?)
    }

    /// Adopts once what the other instances wrote (see the module's list). Public so tests
    /// can step two services over one store without waiting for the clock.
    pub async fn sync_once(&self) -> Result<()> {
        let (added, removed) = self.inner.indexes.refresh().await?;
        for name in &removed {
            tracing::info!(index = %name, "index deleted by another instance");
            self.forget_index_here(name);
        }
        for name in &added {
            tracing::info!(index = %name, "index created by another instance");
        }
        self.inner.harnesses.drop_cache();
        for index in self.inner.indexes.list() {
            let name = index.meta().name.clone();
            self.follow_activation(&name).await?;
            self.follow_agent(&name).await?;
            self.follow_refresh(&name).await?;
        }
        self.inner.jobs.take_cancel_markers().await?;
        Ok(())
    }

    /// Drops what this instance holds of an index another one deleted.
    fn forget_index_here(&self, name: &IndexName) {
        self.inner.agents.forget(name);
        self.inner.jobs.forget(name);
        self.inner.serving.remove(name);
        self.inner.journal.forget(name);
        self.inner.monitor.forget(name);
        self.inner.refresh.forget(name);
        self.inner.harnesses.drop_cache();
    }

    /// Serves a newer activation another instance made, from its stored graph.
    async fn follow_activation(&self, name: &IndexName) -> Result<()> {
        let Ok(index) = self.inner.indexes.get(name) else {
            return Ok(());
        };
        let serving = self
            .inner
            .serving
            .current(name)
            .map_or(0, |g| g.record.generation);
        let Some(record) = self.inner.serving.newer_record(name, serving).await? else {
            return Ok(());
        };
        if index.rows() < record.vectors {
            return Ok(()); // its manifest shows up first; the next look follows
        }
        let set = self.inner.indexes.vectors(&index).await?;
        let generation = record.generation;
        if (self.inner.serving)
            .follow(name, set, record)
            .await
            .map_err(|e| super::serving_error(name, e))?
        {
            self.inner.fleet.picked_up();
            tracing::info!(index = %name, generation, "now serving another instance's activation");
        }
        Ok(())
    }

    /// Restarts this instance's loop of an agent whose settings another instance changed.
    async fn follow_agent(&self, name: &IndexName) -> Result<()> {
        let Some(stored) = self.inner.agents.stored(name).await? else {
            return Ok(());
        };
        let here = self.inner.agents.shared(name).map(|s| s.record().config);
        if here.as_ref() != Some(&stored.config) {
            tracing::info!(index = %name, enabled = stored.config.enabled, "agent settings changed by another instance");
            self.restart_agent(name, stored);
        }
        Ok(())
    }
}
