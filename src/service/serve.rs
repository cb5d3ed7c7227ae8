//! Activation (build or load, then swap), re-activation after a restart, and search of
//! the serving generation.

use tokio_util::sync::CancellationToken;

use super::*;
use crate::hnsw::Knobs;

impl Vectune {
    /// Starts an activation as a job and answers at once (an unknown or empty index is
    /// refused first, with no job). A cancel before the new graph is swapped in leaves the
    /// previous generation serving (a graph already built stays stored for the next
    /// activation); once swapped, the activation has happened.
    pub async fn activate_async(&self, name: &IndexName) -> Result<Job> {
        if self.inner.indexes.get(name)?.total() == 0 {
            return Err(ServiceError::EmptyIndex(name.clone()));
        }
        let ticket = self.admit()?;
        let control = RunControl::default();
        let job = self
            .inner
            .jobs
            .create(name, JobKind::Activate, 1, control.clone())
            .await?;
        let (me, name) = (self.clone(), name.clone());
        self.inner.jobs.spawn(job.id, ticket, async move {
            match me
                .activate_with(&name, Some(&control.cancel), Some(control.build.clone()))
                .await
            {
                Ok(a) => Ok(JobEnd::Succeeded {
                    done: 1,
                    result: JobResult::Activate {
                        index_name: a.index_name,
                        record: a.record,
                    },
                }),
                Err(ServiceError::Cancelled) => Ok(JobEnd::Cancelled {
                    done: 0,
                    build: crate::jobs::BuildStep::of(&control.build),
                }),
                Err(e) => Err(e),
            }
        });
        Ok(job)
    }

    /// The config the next activation of `index` builds with: the promoted one, else the
    /// default.
    async fn activation_config(&self, index: &IndexName) -> Result<HnswConfig> {
        let state = self.inner.registry.get(index).await?;
        Ok(state.current.map_or(HnswConfig::DEFAULT, |e| e.config))
    }

    /// Builds the next generation of `name` with the promoted config (or the default) and
    /// swaps it in; searches keep being answered by the previous generation meanwhile.
    pub async fn activate(&self, name: &IndexName) -> Result<Activation> {
        self.inner.indexes.get(name)?;
        let _ticket = self.admit()?;
        match self.activate_with(name, Some(&self.inner.shutdown), None).await {
            Err(ServiceError::Cancelled) => Err(ServiceError::ShuttingDown),
            other => other,
        }
    }

    /// [`Vectune::activate`], stopping with `Cancelled` if `cancel` is raised before the
    /// new generation is swapped in (a build under way stops at its round's end, nothing
    /// stored); `progress` shows the build's rows (an activation job's `progress.build`).
    pub(super) async fn activate_with(
        &self,
        name: &IndexName,
        cancel: Option<&CancellationToken>,
        progress: Option<Arc<crate::hnsw::native::BuildProgress>>,
    ) -> Result<Activation> {
        let index = self.inner.indexes.get(name)?;
        let config = self.activation_config(name).await?;
        let set = self.inner.indexes.vectors(&index).await?;
        if set.live() == 0 {
            return Err(ServiceError::EmptyIndex(name.clone()));
        }
        let record = (self.inner.serving)
            .activate(name, set, config, &|| self.index_exists(name), cancel, progress)
            .await
            .map_err(|e| serving_error(name, e))?;
        if !record.loaded_from_store {
            (self.inner.metrics).build(crate::metrics::BuildPurpose::activation, record.build_time_secs);
        }
        Ok(Activation {
            index_name: name.clone(),
            record,
        })
    }

    fn index_exists(&self, name: &IndexName) -> bool {
        self.inner.indexes.get(name).is_ok()
    }

    /// Rebuilds (or loads) what served before a restart: each index with an activation
    /// record, with the config and vector count of its last activation.
    pub async fn reactivate(&self, name: &IndexName) -> Result<bool> {
        let index = self.inner.indexes.get(name)?;
        let Some(record) = self.inner.serving.latest_record(name).await? else {
            return Ok(false);
        };
        let set = self.inner.indexes.vectors(&index).await?;
        (self.inner.serving)
            .reactivate(name, set, record, &|| self.index_exists(name))
            .await
            .map_err(|e| serving_error(name, e))
    }

    /// Starts re-activation of every previously active index in the background.
    pub fn reactivate_all(&self) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            for index in me.inner.indexes.list() {
                let name = index.meta().name.clone();
                if let Err(e) = me.reactivate(&name).await {
                    tracing::error!(index = %name, error = %e, "re-activation after restart failed");
                }
            }
            // ready even if one index failed to come back: the others serve, and the
            // failed one answers `not_active` until it is activated again (the log says why)
            me.inner.reactivated.store(true, Ordering::Release);
            // RaBitQ generations came back on exact reads: their blocks follow
            if let Err(e) = me.inner.serving.complete_stand_ins().await {
                tracing::error!(error = %e, "deriving re-activated RaBitQ blocks failed; exact reads serve");
            }
        })
    }

    /// Searches the serving generation of `name`, with the writes made since it was built:
    /// rows appended since are searched exactly beside its graph, rows deleted since are
    /// never returned ([`crate::serving::fresh`]).
    pub fn search(
        &self,
        name: &IndexName,
        vector: &[f32],
        k: i64,
        ef_search: Option<i64>,
    ) -> Result<SearchResult> {
        let index = self.inner.indexes.get(name)?;
        if !(1..=MAX_SEARCH_K).contains(&k) {
            return Err(ServiceError::InvalidK(k));
        }
        let live = self
            .inner
            .serving
            .current(name)
            .ok_or_else(|| ServiceError::NotActive(name.clone()))?;
        let config = live.record.config;
        let ef = match ef_search {
            Some(ef) => config.with_ef_search_within(ef, &self.bounds())?.ef_search,
            None => config.ef_search,
        };
        // the newest vectors this process holds: a superset of the generation's rows
        let view = index
            .current()
            .filter(|v| v.len() >= live.vectors.len())
            .unwrap_or_else(|| live.vectors.clone());
        let q = view.prepare_query(vector)?;
        let ef_used = ef.max(k as u32);
        let knobs = Knobs {
            ef: ef_used as usize,
            ..Knobs::of(&config)
        };
        let covered = (live.record.vectors as usize, live.record.deleted as usize);
        let found = crate::serving::fresh::search(&live.graph, covered, &view, &q, k as usize, knobs);
        self.sample_search(
            name,
            (&live, &view),
            &q,
            vector,
            || found.iter().map(|h| h.row).collect(),
            k as usize,
        );
        let hits = found
            .into_iter()
            .map(|h| (view.id(h.row as usize).to_string(), h.distance))
            .collect();
        Ok(SearchResult {
            hits,
            config,
            ef_search_used: ef_used,
            generation: live.record.generation,
        })
    }
}
