//! Live traffic: the recall monitor's settings and worker, and harness capture.
//!
//! A search decides in one draw whether it is sampled (for the monitor, for each capture
//! of its index) and queues what the worker needs; the worker re-runs monitored queries
//! exactly on one thread over the generation's own vectors and hands captured vectors to
//! their harness. Nothing here runs on the request path beyond the draw and a `try_send`.

use std::sync::{Arc, Weak};

use super::{Inner, Result, ServiceError, Vectune};
use crate::harness::capture::Offered;
use crate::harness::{ground_truth, HarnessView};
use crate::monitor::{self, LiveStats, MonitorSettings, Sample};
use crate::names::{HarnessName, IndexName};
use crate::serving::ServingGraph;
use crate::storage::keys;
use crate::vectors::VectorSet;

impl Vectune {
    /// The monitor settings of an index.
    pub fn monitor_settings(&self, index: &IndexName) -> Result<MonitorSettings> {
        self.inner.indexes.get(index)?;
        Ok(self.inner.monitor.settings(index))
    }

    /// Sets the monitor of an index (fields left out keep their value); stored, so they
    /// hold across restarts.
    pub async fn set_monitor(
        &self,
        index: &IndexName,
        sample_rate: Option<f64>,
        window: Option<i64>,
    ) -> Result<MonitorSettings> {
        self.inner.indexes.get(index)?;
        let s = MonitorSettings::parse(self.inner.monitor.settings(index), sample_rate, window)?;
        self.inner
            .storage
            .put_json_overwrite(&keys::monitor(index), &s)
            .await?;
        self.inner.monitor.set(index, s);
        Ok(s)
    }

    /// The live recall of the serving generation, if it has samples.
    pub fn live(&self, index: &IndexName) -> Option<LiveStats> {
        // a fold-in carries its build's window on: the lineage, not the generation
        let generation = self.inner.serving.current(index).map(|g| g.record.lineage());
        self.inner.monitor.live(index, generation)
    }

    /// Starts capturing search vectors of `index` into a new harness.
    pub async fn capture_harness(
        &self,
        name: HarnessName,
        index: &IndexName,
        queries: i64,
        k: i64,
        sample_rate: Option<f64>,
    ) -> Result<HarnessView> {
        let ix = self.inner.indexes.get(index)?;
        let view = self
            .inner
            .harnesses
            .start_capture(name.clone(), &ix, queries, k, sample_rate)
            .await?;
        let rate = view
            .harness
            .capture
            .as_ref()
            .map(|c| c.sample_rate)
            .ok_or_else(|| ServiceError::Internal("a capture lost its settings"))?;
        self.inner.monitor.tap(index, &name, rate);
        Ok(view)
    }

    /// Re-captures a complete captured harness (the agent's rolling window of traffic).
    pub async fn refresh_harness(&self, name: &HarnessName) -> Result<()> {
        let (index, rate) = self.inner.harnesses.refresh_capture(name).await?;
        self.inner.monitor.tap(&index, name, rate);
        Ok(())
    }

    /// Loads stored monitor settings and resumes captures (start-up).
    pub(crate) async fn load_live(&self) -> Result<()> {
        for index in self.inner.indexes.list() {
            let name = index.meta().name.clone();
            if let Some(s) = self
                .inner
                .storage
                .get_json::<MonitorSettings>(&keys::monitor(&name))
                .await?
            {
                self.inner.monitor.set(&name, s);
            }
        }
        for (harness, index, rate) in self.inner.harnesses.resume_captures().await? {
            if self.inner.indexes.get(&index).is_ok() {
                self.inner.monitor.tap(&index, &harness, rate);
            }
        }
        Ok(())
    }

    /// Queues a served search for the monitor and the captures that sampled it.
    pub(crate) fn sample_search(
        &self,
        index: &IndexName,
        (serving, vectors): (&Arc<ServingGraph>, &Arc<VectorSet>),
        prepared: &[f32],
        raw: &[f32],
        served: impl FnOnce() -> Vec<u32>,
        k: usize,
    ) {
        let (monitored, captures) = self.inner.monitor.draw(index);
        if !monitored && captures.is_empty() {
            return;
        }
        self.inner.monitor.offer(Sample {
            index: index.clone(),
            serving: serving.clone(),
            vectors: vectors.clone(),
            monitored: monitored.then(|| prepared.to_vec()),
            served: if monitored { served() } else { Vec::new() },
            k,
            captured: (!captures.is_empty()).then(|| (raw.to_vec(), captures)),
        });
    }

    async fn handle(&self, s: Sample) {
        if let Some(q) = s.monitored {
            let (vectors, k) = (s.vectors.clone(), s.k);
            let exact = tokio::task::spawn_blocking(move || {
                ground_truth::exact_with_threads(&vectors, std::slice::from_ref(&q), k, 1)
            })
            .await;
            match exact {
                Ok(Ok(rows)) => {
                    let exact = rows.first().map(Vec::as_slice).unwrap_or(&[]);
                    let found = monitor::found(&s.served, exact);
                    let slots = exact.len().min(s.k) as u32;
                    let generation = s.serving.record.lineage();
                    self.inner.monitor.record(&s.index, generation, found, slots);
                }
                Ok(Err(e)) => tracing::warn!(index = %s.index, error = %e, "monitor: sample refused"),
                Err(e) => tracing::warn!(index = %s.index, error = %e, "monitor: exact search failed"),
            }
        }
        if let Some((raw, captures)) = s.captured {
            for name in captures {
                match self.inner.harnesses.offer(&name, &raw).await {
                    Ok(Offered::Completed) => {
                        self.inner.monitor.untap(&name);
                        self.spawn_ground_truth(name, s.index.clone());
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(harness = %name, error = %e, "capture: sample not stored"),
                }
            }
        }
    }

    /// Computes a completed capture's ground truth in the background.
    fn spawn_ground_truth(&self, name: HarnessName, index: IndexName) {
        let me = self.clone();
        tokio::spawn(async move {
            let done = async {
                let ix = me.inner.indexes.get(&index)?;
                let set = me.inner.indexes.vectors(&ix).await?;
                me.inner.harnesses.with_ground_truth(&name, &index, set).await?;
                Ok::<_, ServiceError>(())
            };
            if let Err(e) = done.await {
                tracing::warn!(harness = %name, error = %e, "captured harness: ground truth not computed yet");
            }
        });
    }
}

/// The monitor's worker: one sample at a time, until the service is dropped.
pub(crate) async fn worker(inner: Weak<Inner>, mut rx: tokio::sync::mpsc::Receiver<Sample>) {
    while let Some(sample) = rx.recv().await {
        let Some(inner) = inner.upgrade() else {
            return;
        };
        Vectune { inner }.handle(sample).await;
    }
}
