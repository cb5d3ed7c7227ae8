//! Fresh writes: upserts, deletes, and the refresh rule that re-activates an index by
//! itself once the writes since its serving generation pass a share of it.
//!
//! Searches see every write at once without this module ([`crate::serving::fresh`]); what
//! lives here is keeping the graph from drifting too far from the rows: past
//! `max_fresh_fraction`, one background activation with the promoted config, the old
//! generation serving until the swap, and whatever is written meanwhile searched beside the
//! new graph as it was beside the old.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use super::error::serving_error;
use super::*;
use crate::serving::fresh::{Fresh, RefreshSettings};
use crate::storage::keys;

/// Each index's refresh settings, and the indexes whose rule-driven re-activation runs.
#[derive(Default)]
pub(super) struct Refresh {
    settings: Mutex<HashMap<IndexName, RefreshSettings>>,
    running: Mutex<HashSet<IndexName>>,
}

impl Refresh {
    fn get(&self, index: &IndexName) -> RefreshSettings {
        let map = self.settings.lock().unwrap_or_else(|p| p.into_inner());
        map.get(index).copied().unwrap_or_default()
    }

    fn set(&self, index: &IndexName, s: RefreshSettings) {
        let mut map = self.settings.lock().unwrap_or_else(|p| p.into_inner());
        map.insert(index.clone(), s);
    }

    pub(super) fn forget(&self, index: &IndexName) {
        let mut map = self.settings.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(index);
    }

    /// Takes the index's one rule-driven re-activation slot; `false` if it is taken.
    fn start(&self, index: &IndexName) -> bool {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running.insert(index.clone())
    }

    fn end(&self, index: &IndexName) {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running.remove(index);
    }
}

impl Vectune {
    /// Appends a batch replacing the ids already stored (`?upsert=true`), whole or not at
    /// all. Returns `(appended, total)`.
    pub async fn upsert(&self, name: &IndexName, vectors: Vec<NewVector>) -> Result<(usize, u64)> {
        let index = self.inner.indexes.get(name)?;
        let batch = Batch::parse(index.meta(), vectors)?;
        let out = self.inner.indexes.upsert(&index, batch).await?;
        self.after_write(name);
        Ok(out)
    }

    /// Deletes the vectors of `ids`, all or none. Returns `(deleted, total)`.
    pub async fn delete_vectors(&self, name: &IndexName, ids: Vec<String>) -> Result<(usize, u64)> {
        let index = self.inner.indexes.get(name)?;
        let out = self.inner.indexes.delete_ids(&index, ids).await?;
        self.after_write(name);
        Ok(out)
    }

    /// Deletes one vector: `vector_not_found` if it is not stored.
    pub async fn delete_vector(&self, name: &IndexName, id: String) -> Result<()> {
        match self.delete_vectors(name, vec![id]).await {
            Err(ServiceError::Vectors(VectorsError::UnknownId(id))) => {
                Err(ServiceError::Vectors(VectorsError::VectorNotFound(id)))
            }
            other => other.map(|_| ()),
        }
    }

    /// The refresh settings of an index.
    pub fn refresh_settings(&self, name: &IndexName) -> Result<RefreshSettings> {
        self.inner.indexes.get(name)?;
        Ok(self.inner.refresh.get(name))
    }

    /// Sets the refresh rule of an index (a field left out keeps its value); stored, so it
    /// holds across restarts. A rule now due starts its re-activation.
    pub async fn set_refresh(
        &self,
        name: &IndexName,
        max_fresh_fraction: Option<f64>,
        fold_in_rows: Option<i64>,
    ) -> Result<RefreshSettings> {
        self.inner.indexes.get(name)?;
        let s = RefreshSettings::parse(self.inner.refresh.get(name), max_fresh_fraction, fold_in_rows)
            .map_err(ServiceError::Refresh)?;
        self.inner
            .storage
            .put_json_overwrite(&keys::refresh(name), &s)
            .await?;
        self.inner.refresh.set(name, s);
        self.after_write(name);
        Ok(s)
    }

    /// Loads stored refresh settings (start-up).
    pub(super) async fn load_refresh(&self) -> Result<()> {
        for index in self.inner.indexes.list() {
            self.follow_refresh(&index.meta().name).await?;
        }
        Ok(())
    }

    /// Adopts the stored refresh settings of `name` (another instance may have set them).
    pub(super) async fn follow_refresh(&self, name: &IndexName) -> Result<()> {
        if let Some(s) = self
            .inner
            .storage
            .get_json::<RefreshSettings>(&keys::refresh(name))
            .await?
        {
            self.inner.refresh.set(name, s);
        }
        Ok(())
    }

    /// After a write: re-activates `name` in the background, with its promoted config, if
    /// the writes since its generation passed the rule; else, once `fold_in_rows` rows were
    /// appended since it, folds them into its graph by insertion (one such job at a time
    /// per index; a failure is logged and the next write tries again).
    pub(super) fn after_write(&self, name: &IndexName) {
        let (Ok(index), Some(live)) = (self.inner.indexes.get(name), self.inner.serving.current(name)) else {
            return;
        };
        let fresh = Fresh::since(&live.record, index.rows(), index.total());
        let covered = live.record.vectors.saturating_sub(live.record.deleted);
        let rule = self.inner.refresh.get(name);
        let rebuild = rule.due(fresh, covered);
        if !(rebuild || rule.fold_due(fresh)) || !self.inner.refresh.start(name) {
            return;
        }
        let (me, name) = (self.clone(), name.clone());
        tokio::spawn(async move {
            if rebuild {
                tracing::info!(index = %name, inserted = fresh.inserted, deleted = fresh.deleted,
                    "refresh: the writes since the generation passed max_fresh_fraction; re-activating");
                let shutdown = me.inner.shutdown.clone();
                match me.activate_with(&name, Some(&shutdown), None).await {
                    Ok(a) => {
                        tracing::info!(index = %name, generation = a.record.generation, "refresh: serving")
                    }
                    Err(e) => tracing::warn!(index = %name, error = %e, "refresh: re-activation failed"),
                }
            } else if let Err(e) = me.fold_in(&name).await {
                tracing::warn!(index = %name, error = %e, "fold-in failed");
            }
            me.inner.refresh.end(&name);
        });
    }

    /// Inserts the rows appended since the serving generation into a copy of its graph and
    /// serves that as the next generation (see [`crate::serving::Serving::fold_in`]).
    pub async fn fold_in(&self, name: &IndexName) -> Result<Option<crate::serving::ActivationRecord>> {
        let index = self.inner.indexes.get(name)?;
        let set = self.inner.indexes.vectors(&index).await?;
        let record = (self.inner.serving)
            .fold_in(name, set, &|| self.inner.indexes.get(name).is_ok())
            .await
            .map_err(|e| serving_error(name, e))?;
        if let Some(r) = &record {
            (self.inner.metrics).build(crate::metrics::BuildPurpose::activation, r.build_time_secs);
        }
        Ok(record)
    }
}
