//! Keeping this instance in step with the others on the bucket.
//!
//! One background task per service, on three clocks:
//! - every `ttl / 3`: renew this instance's liveness record (with the generation it serves
//!   of each index);
//! - every `sync_secs` (default 2 s): adopt what other instances wrote — indexes created or
//!   deleted, newer manifests (appends), newer activations (served from the stored graph,
//!   no rebuild), changed agent settings, harness definitions (their cache is dropped and
//!   re-read on use) — and act on cancel requests for jobs running here;
//! - every `ttl / 2`: mark `interrupted` the unfinished jobs of instances that died.
//!
//! What is read straight from the store on every request needs none of this: promotions
//! (`GET promoted`), the trial journal's listing, other instances' jobs, agent records.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::{Duration, Instant};

use super::{Inner, Result, Vectune};
use crate::agent::AgentRecord;
use crate::names::IndexName;
use crate::storage::keys;

/// Runs until the service is dropped or shuts down.
pub(crate) async fn worker(inner: Weak<Inner>) {
    let (ttl, sync_every) = match inner.upgrade() {
        Some(i) => (i.fleet.options().ttl, i.fleet.options().sync_interval),
        None => return,
    };
    let beat_every = (ttl / 3).max(Duration::from_millis(100));
    let reap_every = (ttl / 2).max(Duration::from_millis(100));
    let tick = sync_every.min(beat_every).max(Duration::from_millis(50));
    let (mut last_beat, mut last_sync, mut last_reap) = (Instant::now(), Instant::now(), Instant::now());
    let mut last_sweep = Instant::now();
    loop {
        tokio::time::sleep(tick).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let v = Vectune { inner };
        if v.is_shutting_down() {
            return;
        }
        let now = Instant::now();
        if now >= last_beat + beat_every {
            last_beat = now;
            if let Err(e) = v.inner.fleet.heartbeat(v.serving_generations()).await {
                tracing::warn!(error = %e, "liveness renewal failed; retrying");
            }
        }
        if now >= last_sync + sync_every {
            last_sync = now;
            if let Err(e) = v.sync_once().await {
                tracing::warn!(error = %e, "fleet sync failed; retrying");
            }
        }
        if now >= last_reap + reap_every {
            last_reap = now;
            if let Err(e) = v.reap_jobs().await {
                tracing::warn!(error = %e, "reaping dead instances' jobs failed; retrying");
            }
        }
        if now >= last_sweep + Duration::from_secs(600) {
            last_sweep = now;
            if let Err(e) = v.inner.fleet.sweep_instances().await {
                tracing::warn!(error = %e, "sweeping old instance records failed");
            }
        }
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
        let n = self
            .inner
            .jobs
            .reap(&self.index_names(), &self.inner.fleet)
            .await?;
        self.inner
            .fleet
            .stats
            .reaped
            .fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
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
        }
        self.inner.jobs.take_cancel_markers().await?;
        Ok(())
    }

    /// Drops what this instance holds of an index another one deleted.
    fn forget_index_here(&self, name: &IndexName) {
        self.forget_agent(name);
        self.inner.jobs.forget(name);
        self.inner.serving.remove(name);
        self.inner.journal.forget(name);
        self.inner.monitor.forget(name);
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
        if index.total() < record.vectors {
            return Ok(()); // its manifest shows up first; the next look follows
        }
        let set = self.inner.indexes.vectors(&index).await?;
        let generation = record.generation;
        if (self.inner.serving)
            .follow(name, set, record)
            .await
            .map_err(|e| super::serving_error(name, e))?
        {
            self.inner.fleet.stats.pickups.fetch_add(1, Ordering::Relaxed);
            tracing::info!(index = %name, generation, "now serving another instance's activation");
        }
        Ok(())
    }

    /// Restarts this instance's loop of an agent whose settings another instance changed.
    async fn follow_agent(&self, name: &IndexName) -> Result<()> {
        let Some(stored) = self
            .inner
            .storage
            .get_json::<AgentRecord>(&keys::agent(name))
            .await?
        else {
            return Ok(());
        };
        let here = self.agent_shared(name).map(|s| s.record().config);
        if here.as_ref() != Some(&stored.config) {
            tracing::info!(index = %name, enabled = stored.config.enabled, "agent settings changed by another instance");
            self.restart_agent(name, stored);
        }
        Ok(())
    }
}
