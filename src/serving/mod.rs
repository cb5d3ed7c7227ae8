//! Serving generations: the graph each index answers searches from, swapped atomically,
//! and everything that produces one — activation, re-activation after a restart, loading a
//! stored graph or building and storing a new one, and clearing graphs that can never
//! serve again.
//!
//! Each index has one slot holding an `Arc` of its serving generation. Activation builds the
//! next generation off to the side and swaps it in with one atomic store; a search loads the
//! `Arc` it finds and keeps it for its whole duration, so searches during a build are
//! answered by the previous generation and never wait. Every activation is recorded as an
//! immutable object (config, generation, vector count), so a restart can rebuild exactly
//! what served before; and the graph it served is stored, so the restart loads it instead
//! (the native builder would rebuild the very same graph, only slower).

pub mod fresh;
mod restart;
mod stored;

pub use stored::{drop_kept, keep_as_twin, keep_graph, load_kept, load_kept_as};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwapOption;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::hnsw::native::BuildProgress;
use crate::hnsw::{store, BuildOptions, Graph};
use crate::names::IndexName;
use crate::params::{Engine, HnswConfig};
use crate::storage::{keys, Storage, StorageError};
use crate::vectors::VectorSet;

/// What an activation's build reports to and obeys: the rows it inserted, and the token
/// whose cancel stops it at its round's end.
pub type Watch = (Arc<BuildProgress>, CancellationToken);

/// Why a generation could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum ServingError {
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A blocking build or decode task died.
    #[error("background task failed")]
    Task(#[source] tokio::task::JoinError),
    /// The build semaphore was closed (never, while the service lives).
    #[error("the build semaphore is closed")]
    Closed,
    /// A concurrent activation (another process on the same store) wrote this generation.
    #[error("activated concurrently; retry")]
    Conflict,
    /// The caller's cancel flag was raised before the swap.
    #[error("cancelled")]
    Cancelled,
    /// The index was deleted while its graph was produced: nothing was written for it.
    #[error("the index was deleted meanwhile")]
    IndexGone,
}

impl crate::error::Classified for ServingError {
    fn classify(&self) -> crate::error::Class {
        use crate::error::{Class, ErrorKind as K};
        match self {
            ServingError::Storage(s) => s.classify(),
            ServingError::Task(_) | ServingError::Closed => Class::INTERNAL,
            ServingError::Conflict => Class::new(K::Conflict, "concurrent_write"),
            ServingError::Cancelled => Class::new(K::Conflict, "cancelled"),
            ServingError::IndexGone => Class::new(K::NotFound, "index_not_found"),
        }
    }
}

/// Whether the index still exists (checked before anything is written under its prefix).
pub type StillThere<'a> = &'a (dyn Fn() -> bool + Send + Sync);

/// What an activation did, as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ActivationRecord {
    /// Generation number, one more than the previous activation's.
    pub generation: u64,
    /// The config the graph was built with.
    pub config: HnswConfig,
    /// When it went live.
    pub activated_at: DateTime<Utc>,
    /// How many vectors (rows from the start of the index) the graph covers.
    pub vectors: u64,
    /// Wall time to produce the graph: the build, or the load when `loaded_from_store`.
    pub build_time_secs: f64,
    /// Whether the graph was loaded from storage instead of built.
    #[serde(default)]
    pub loaded_from_store: bool,
    /// Bytes of what serves: the f32 rows covered plus the frozen graph's links.
    #[serde(default)]
    pub memory_bytes: u64,
    /// How many of `vectors` rows were deleted when the graph was built (left out of it).
    #[serde(default)]
    pub deleted: u64,
    /// Set when this generation's graph is the previous one's extended by insertion (the
    /// rows appended since folded in, no rebuild): the rows that graph covered. Its stored
    /// graph is keyed apart from a build's ([`keys::graph_folded`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folded_from: Option<u64>,
    /// For a fold-in: the generation whose build it extends (a chain of fold-ins keeps the
    /// first). The live recall monitor judges a build, not each fold of rows into it: its
    /// window carries on across fold-ins, so a canary or a drift check is not restarted by
    /// every thousand appended rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lineage: Option<u64>,
}

impl ActivationRecord {
    /// The generation whose build this one serves: its own, or for a fold-in the one it
    /// extends.
    pub fn lineage(&self) -> u64 {
        self.lineage.unwrap_or(self.generation)
    }

    /// Where the graph of this record is stored for `engine`.
    pub fn graph_key(&self, index: &IndexName, engine: Engine) -> object_store::path::Path {
        let id = self.config.graph_id(engine);
        match self.folded_from {
            Some(base) => keys::graph_folded(index, self.vectors, self.deleted, id, base),
            None => keys::graph(index, self.vectors, self.deleted, id),
        }
    }
}

/// A live generation: the graph, the vectors it was built from, and its record.
pub struct ServingGraph {
    /// The searchable graph.
    pub graph: Graph,
    /// The vectors the graph's rows refer to.
    pub vectors: Arc<VectorSet>,
    /// Its activation record.
    pub record: ActivationRecord,
}

type Slot = Arc<ArcSwapOption<ServingGraph>>;

/// Every index's serving slot and activation lock, and how graphs are built.
pub struct Serving {
    slots: Mutex<HashMap<IndexName, Slot>>,
    locks: Mutex<HashMap<IndexName, Arc<tokio::sync::Mutex<()>>>>,
    storage: Storage,
    builds: Arc<Semaphore>,
    options: BuildOptions,
    /// Indexes a restart serves on exact reads until their RaBitQ blocks are derived
    /// ([`Serving::complete_stand_ins`]).
    stand_ins: Mutex<Vec<IndexName>>,
}

impl Serving {
    /// Serving over `storage`, building behind `builds` (shared with trials) with `options`.
    pub fn new(storage: Storage, builds: Arc<Semaphore>, options: BuildOptions) -> Serving {
        Serving {
            slots: Mutex::default(),
            locks: Mutex::default(),
            storage,
            builds,
            options,
            stand_ins: Mutex::default(),
        }
    }

    fn slot(&self, index: &IndexName) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.entry(index.clone()).or_default().clone()
    }

    /// The generation serving `index` now, if any.
    pub fn current(&self, index: &IndexName) -> Option<Arc<ServingGraph>> {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.get(index).and_then(|s| s.load_full())
    }

    /// Swaps in a new generation; searches in flight finish on the old one.
    pub fn swap(&self, index: &IndexName, generation: ServingGraph) {
        self.slot(index).store(Some(Arc::new(generation)));
    }

    fn serve(&self, index: &IndexName, graph: Graph, vectors: Arc<VectorSet>, record: ActivationRecord) {
        self.swap(
            index,
            ServingGraph {
                graph,
                vectors,
                record,
            },
        );
    }

    /// Stores `record` (write-once: of two racing activations of one generation the second
    /// gets `Conflict`) and swaps its generation in.
    async fn publish(
        &self,
        index: &IndexName,
        graph: Graph,
        vectors: Arc<VectorSet>,
        record: &ActivationRecord,
    ) -> Result<(), ServingError> {
        match write_record(&self.storage, index, record).await {
            Ok(()) => {}
            Err(StorageError::AlreadyExists { .. }) => return Err(ServingError::Conflict),
            Err(e) => return Err(e.into()),
        }
        self.serve(index, graph, vectors, record.clone());
        Ok(())
    }

    /// Drops an index's slot (the index is deleted).
    pub fn remove(&self, index: &IndexName) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = slots.remove(index) {
            s.store(None);
        }
    }

    /// The per-index lock that serialises activations (and start-up rebuilds).
    fn activation_lock(&self, index: &IndexName) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(index.clone()).or_default().clone()
    }

    /// The graph of the first `rows` rows of `set` under `config`: loaded from storage when
    /// a sound graph of exactly those rows, `deleted` of them left out, and that graph
    /// identity is stored, else built over the rows of the prefix not deleted now (behind
    /// the build semaphore) and stored before it is returned; graphs of fewer rows, or of
    /// as many with fewer deletes, are then deleted (they can never serve again). Returns
    /// the graph, the deleted rows it leaves out, whether it was loaded, and the seconds it
    /// took. A build under `watch` shows its rows on the progress and stops at the end of
    /// the round in which the token is cancelled (`Cancelled`, nothing stored).
    pub async fn graph(
        &self,
        index: &IndexName,
        set: Arc<VectorSet>,
        (rows, deleted, folded_from): (usize, u64, Option<u64>),
        config: HnswConfig,
        still_there: StillThere<'_>,
        watch: Option<Watch>,
    ) -> Result<(Graph, u64, bool, f64), ServingError> {
        let started = Instant::now();
        let options = self.options;
        let id = config.graph_id(options.engine);
        let key = match folded_from {
            Some(base) => keys::graph_folded(index, rows as u64, deleted, id, base),
            None => keys::graph(index, rows as u64, deleted, id),
        };
        let stored = stored::load_at(&self.storage, &key, set.clone(), rows, config, options.engine).await?;
        if let Some(graph) = stored {
            return Ok((graph, deleted, true, started.elapsed().as_secs_f64()));
        }
        let permit = self.builds.acquire().await.map_err(|_| ServingError::Closed)?;
        let (key, deleted) = stored::key_of(index, &set, rows, config, options.engine);
        let built = blocking(move || {
            // a stopped build is incomplete: never stored, never served
            let graph = match watch {
                Some((progress, stop)) => {
                    crate::hnsw::build_stoppable(&set, rows, config, options, progress, move || {
                        stop.is_cancelled()
                    })?
                }
                None => crate::hnsw::build(&set, rows, config, options),
            };
            let bytes = store::encode(&graph);
            Some((graph, bytes))
        })
        .await?;
        drop(permit);
        let Some((graph, bytes)) = built else {
            return Err(ServingError::Cancelled);
        };
        // the index may have been deleted while we built: never write into a deleted prefix
        if !still_there() {
            return Err(ServingError::IndexGone);
        }
        self.storage.put_overwrite(&key, bytes).await?;
        stored::drop_stale(&self.storage, index, rows as u64, deleted, &key).await?;
        Ok((graph, deleted, false, started.elapsed().as_secs_f64()))
    }

    /// Folds the rows appended since the serving generation into its graph by insertion
    /// ([`Graph::extended`]) and swaps the result in as the next generation, same config:
    /// the cost is the new rows' insertion plus re-encoding codes, not a rebuild. `None`
    /// when there is nothing to fold (no generation, no new rows) or the engine cannot
    /// (hnsw_rs: its graphs come only from its own builds). Stored before the swap, under a
    /// key of its own, so other instances follow it and a restart loads it.
    pub async fn fold_in(
        &self,
        index: &IndexName,
        set: Arc<VectorSet>,
        still_there: StillThere<'_>,
    ) -> Result<Option<ActivationRecord>, ServingError> {
        let lock = self.activation_lock(index);
        let _one_at_a_time = lock.lock().await;
        let Some(live) = self.current(index) else {
            return Ok(None);
        };
        let (base, rows) = (live.record.vectors, set.len());
        if rows as u64 <= base || live.graph.engine() == Engine::HnswRs || live.graph.is_empty() {
            return Ok(None);
        }
        let started = Instant::now();
        let permit = self.builds.acquire().await.map_err(|_| ServingError::Closed)?;
        // one thread: a fold-in is upkeep beside live traffic, the other core keeps
        // answering searches (measured at 1,000 appends/s on 100k x 128: search median
        // 1.56x idle with 2-thread folds every 2 s, 1.32-1.39x with 1-thread ones)
        let options = BuildOptions {
            threads: 1,
            ..self.options
        };
        let (graph, bytes) = {
            let (live, set) = (live.clone(), set.clone());
            blocking(move || {
                let graph = live.graph.extended(&set, rows, options);
                let bytes = graph.as_ref().map(store::encode);
                (graph, bytes)
            })
            .await?
        };
        drop(permit);
        let (Some(graph), Some(bytes)) = (graph, bytes) else {
            return Ok(None);
        };
        if !still_there() {
            return Err(ServingError::IndexGone);
        }
        // the new rows deleted before the fold are left out, as a build leaves them out
        let skipped = set.deleted_below(rows) - set.deleted_below(base as usize);
        let previous = latest_record(&self.storage, index).await?;
        let record = ActivationRecord {
            generation: previous.map_or(1, |r| r.generation + 1),
            config: live.record.config,
            activated_at: Utc::now(),
            vectors: rows as u64,
            build_time_secs: started.elapsed().as_secs_f64(),
            loaded_from_store: false,
            memory_bytes: (graph.memory_bytes() + rows * set.dims() * 4) as u64,
            deleted: live.record.deleted + skipped as u64,
            folded_from: Some(base),
            lineage: Some(live.record.lineage()),
        };
        let key = record.graph_key(index, options.engine);
        self.storage.put_overwrite(&key, bytes).await?;
        self.publish(index, graph, set, &record).await?;
        tracing::info!(index = %index, generation = record.generation, folded = rows as u64 - base,
            secs = record.build_time_secs, "fold-in: appended rows inserted into the graph; serving");
        stored::drop_stale(&self.storage, index, record.vectors, record.deleted, &key).await?;
        Ok(Some(record))
    }

    /// Produces the next generation of `index` over all of `set` with `config` and swaps it
    /// in; searches keep being answered by the previous generation meanwhile. Stops with
    /// `Cancelled` if `cancel` is raised before the swap. Activations of one index run one
    /// at a time.
    pub async fn activate(
        &self,
        index: &IndexName,
        set: Arc<VectorSet>,
        config: HnswConfig,
        still_there: StillThere<'_>,
        cancel: Option<&CancellationToken>,
        progress: Option<Arc<BuildProgress>>,
    ) -> Result<ActivationRecord, ServingError> {
        let cancelled = || cancel.is_some_and(|c| c.is_cancelled());
        let lock = self.activation_lock(index);
        let _one_at_a_time = lock.lock().await;
        tracing::info!(index = %index, ?config, vectors = set.len(), "activation: building");
        if cancelled() {
            return Err(ServingError::Cancelled);
        }
        let (graph, deleted, loaded, secs) = self
            .graph(
                index,
                set.clone(),
                (set.len(), set.deleted() as u64, None),
                config,
                still_there,
                cancel.map(|c| (progress.unwrap_or_default(), c.clone())),
            )
            .await?;
        if cancelled() {
            return Err(ServingError::Cancelled);
        }
        // the index may have been deleted meanwhile: never write into a deleted prefix
        if !still_there() {
            return Err(ServingError::IndexGone);
        }
        let previous = latest_record(&self.storage, index).await?;
        let record = ActivationRecord {
            generation: previous.map_or(1, |r| r.generation + 1),
            config,
            activated_at: Utc::now(),
            vectors: set.len() as u64,
            build_time_secs: secs,
            loaded_from_store: loaded,
            memory_bytes: (graph.memory_bytes() + set.len() * set.dims() * 4) as u64,
            deleted,
            folded_from: None,
            lineage: None,
        };
        self.publish(index, graph, set, &record).await?;
        tracing::info!(index = %index, generation = record.generation, ?config, loaded_from_store = loaded,
            secs, "activation: serving");
        Ok(record)
    }

    /// Brings back what served `index` before a restart: the graph of `record` (its config
    /// and vector count, not a newer promotion), loaded from storage when it is there.
    /// `false` when an explicit activation got there first.
    pub async fn reactivate(
        &self,
        index: &IndexName,
        set: Arc<VectorSet>,
        record: ActivationRecord,
        still_there: StillThere<'_>,
    ) -> Result<bool, ServingError> {
        let lock = self.activation_lock(index);
        let _one_at_a_time = lock.lock().await;
        if self.current(index).is_some() {
            return Ok(false);
        }
        if let Some(graph) = self.stand_in(index, set.clone(), &record).await? {
            if !still_there() {
                return Err(ServingError::IndexGone);
            }
            tracing::info!(index = %index, generation = record.generation, config = ?record.config,
                "re-activated after restart on exact reads; its RaBitQ blocks follow");
            self.serve(index, graph, set, record);
            self.stand_ins
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(index.clone());
            return Ok(true);
        }
        let (graph, _, loaded, secs) = self
            .graph(
                index,
                set.clone(),
                (record.vectors as usize, record.deleted, record.folded_from),
                record.config,
                still_there,
                None,
            )
            .await?;
        if !still_there() {
            return Err(ServingError::IndexGone);
        }
        tracing::info!(index = %index, generation = record.generation, config = ?record.config,
            loaded_from_store = loaded, secs, "re-activated after restart");
        self.serve(index, graph, set, record);
        Ok(true)
    }

    /// Serves `record`, an activation another instance made, from the graph it stored:
    /// never a rebuild. `Ok(false)` when nothing changed — this instance already serves
    /// that generation or a newer one, `set` does not hold the rows yet, or no sound graph of
    /// this engine is stored for it (then the next look tries again).
    pub async fn follow(
        &self,
        index: &IndexName,
        set: Arc<VectorSet>,
        record: ActivationRecord,
    ) -> Result<bool, ServingError> {
        let lock = self.activation_lock(index);
        let _one_at_a_time = lock.lock().await;
        if self
            .current(index)
            .is_some_and(|g| g.record.generation >= record.generation)
        {
            return Ok(false);
        }
        let rows = record.vectors as usize;
        if set.len() < rows {
            return Ok(false);
        }
        let (config, engine) = (record.config, self.options.engine);
        let key = record.graph_key(index, engine);
        let Some(bytes) = self.storage.get(&key).await? else {
            tracing::warn!(index = %index, generation = record.generation, key = %key,
                "activation of another instance has no stored graph of this engine; not followed");
            return Ok(false);
        };
        let started = Instant::now();
        let decoded = {
            let set = set.clone();
            blocking(move || store::decode(&bytes, &set, rows, config, engine)).await?
        };
        let graph = match decoded {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(index = %index, key = %key, error = %e, "stored graph refused; not followed");
                return Ok(false);
            }
        };
        tracing::info!(index = %index, generation = record.generation, ?config,
            secs = started.elapsed().as_secs_f64(), "serving another instance's activation (stored graph loaded)");
        self.serve(index, graph, set, record);
        Ok(true)
    }

    /// The activation records of `index` newer than `generation`, newest last.
    pub async fn newer_record(
        &self,
        index: &IndexName,
        generation: u64,
    ) -> Result<Option<ActivationRecord>, StorageError> {
        let newer = self
            .storage
            .list_after(&keys::activations(index), &keys::activation(index, generation))
            .await?;
        match newer.iter().rev().find(|k| keys::version_of(k).is_some()) {
            Some(key) => self.storage.get_json(key).await,
            None => Ok(None),
        }
    }

    /// The newest activation record of `index`.
    pub async fn latest_record(&self, index: &IndexName) -> Result<Option<ActivationRecord>, StorageError> {
        latest_record(&self.storage, index).await
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, ServingError> {
    tokio::task::spawn_blocking(f).await.map_err(ServingError::Task)
}

/// The newest activation record of an index.
pub async fn latest_record(
    storage: &Storage,
    index: &IndexName,
) -> Result<Option<ActivationRecord>, StorageError> {
    match storage.latest_version(&keys::activations(index)).await? {
        Some((_, key)) => storage.get_json(&key).await,
        None => Ok(None),
    }
}

/// Stores a new activation record (write-once: a racing activation of the same
/// generation loses with `AlreadyExists`).
pub async fn write_record(
    storage: &Storage,
    index: &IndexName,
    record: &ActivationRecord,
) -> Result<(), StorageError> {
    storage
        .put_json_new(&keys::activation(index, record.generation), record)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distance::Metric;
    use crate::params::Quantization;

    fn rows(n: usize, dims: usize) -> (Vec<String>, Vec<f32>) {
        let mut r = crate::rng::SplitMix64::new(4);
        let data = (0..n * dims)
            .map(|_| (r.next_u64() >> 40) as f32 / (1u64 << 24) as f32)
            .collect();
        ((0..n).map(|i| format!("r{i}")).collect(), data)
    }

    #[tokio::test]
    async fn a_folded_generation_is_stored_followed_and_reloaded() {
        let storage = Storage::in_memory();
        let index = IndexName::parse("i").unwrap();
        let options = BuildOptions {
            engine: Engine::NativeSq8,
            threads: 2,
        };
        let serving = || Serving::new(storage.clone(), Arc::new(Semaphore::new(1)), options);
        let (ids, data) = rows(700, 8);
        let first = Arc::new(VectorSet::from_rows(
            8,
            Metric::L2,
            ids[..500].to_vec(),
            data[..500 * 8].to_vec(),
        ));
        let mut all = VectorSet::from_rows(8, Metric::L2, ids.clone(), data.clone());
        all.delete_row(650); // appended, then deleted before the fold: left out
        let all = Arc::new(all);
        let a = serving();
        let config = HnswConfig::DEFAULT.with_quantization(Quantization::Rabitq);
        let there = || true;
        assert_eq!(
            a.fold_in(&index, all.clone(), &there).await.unwrap(),
            None,
            "nothing serves"
        );
        let g1 = a
            .activate(&index, first, config, &there, None, None)
            .await
            .unwrap();
        let record = a
            .fold_in(&index, all.clone(), &there)
            .await
            .unwrap()
            .expect("folded");
        assert_eq!((record.generation, record.vectors), (g1.generation + 1, 700));
        assert_eq!(
            (record.folded_from, record.deleted, record.config),
            (Some(500), 1, config)
        );
        // nothing new: nothing to fold
        assert_eq!(a.fold_in(&index, all.clone(), &there).await.unwrap(), None);
        let served = a.current(&index).unwrap();
        let found = (500..700)
            .filter(|&r| r != 650)
            .filter(|&r| served.graph.search(&all, all.row(r), 1, 40)[0].row as usize == r)
            .count();
        assert!(found >= 195, "{found} of 199 new rows found by their own vector");
        // another instance follows it from the stored graph; a restart loads it
        let b = serving();
        assert!(b.follow(&index, all.clone(), record.clone()).await.unwrap());
        assert_eq!(b.current(&index).unwrap().graph.frozen(), served.graph.frozen());
        let c = serving();
        assert!(c
            .reactivate(&index, all.clone(), record.clone(), &there)
            .await
            .unwrap());
        assert_eq!(c.current(&index).unwrap().graph.frozen(), served.graph.frozen());
        assert!(storage
            .get(&record.graph_key(&index, options.engine))
            .await
            .unwrap()
            .is_some());
        // the graph of generation 1 can never serve again: dropped
        let g1_key = g1.graph_key(&index, options.engine);
        assert!(storage.get(&g1_key).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_restarted_rabitq_generation_serves_on_exact_reads_until_its_blocks_are_swapped_in() {
        let storage = Storage::in_memory();
        let index = IndexName::parse("i").unwrap();
        let options = BuildOptions {
            engine: Engine::Native,
            threads: 2,
        };
        let (ids, data) = rows(800, 16);
        let set = Arc::new(VectorSet::from_rows(16, Metric::L2, ids, data));
        let config = HnswConfig::DEFAULT.with_quantization(Quantization::Rabitq);
        let there = || true;
        let first = Serving::new(storage.clone(), Arc::new(Semaphore::new(1)), options);
        let record = first
            .activate(&index, set.clone(), config, &there, None, None)
            .await
            .unwrap();
        let served = first.current(&index).unwrap();
        // a restart: serving at once, on the same links with exact reads
        let again = Serving::new(storage.clone(), Arc::new(Semaphore::new(1)), options);
        assert!(again
            .reactivate(&index, set.clone(), record.clone(), &there)
            .await
            .unwrap());
        let stand_in = again.current(&index).unwrap();
        assert_eq!(stand_in.record, record);
        assert_eq!(stand_in.graph.config().quantization, Quantization::None);
        assert_eq!(stand_in.graph.frozen(), served.graph.frozen());
        for r in [0, 399, 799] {
            assert_eq!(stand_in.graph.search(&set, set.row(r), 1, 40)[0].row as usize, r);
        }
        // the blocks follow: the same generation, as the activation served it
        assert_eq!(again.complete_stand_ins().await.unwrap(), 1);
        let full = again.current(&index).unwrap();
        assert_eq!(
            (full.record.generation, full.graph.config()),
            (record.generation, config)
        );
        for r in (0..800).step_by(37) {
            let q = set.row(r);
            assert_eq!(
                full.graph.search(&set, q, 10, 40),
                served.graph.search(&set, q, 10, 40)
            );
        }
        assert_eq!(again.complete_stand_ins().await.unwrap(), 0, "nothing left");
        // an f32 generation restarts as before: no stand-in
        let f32_config = HnswConfig::DEFAULT;
        let record = first
            .activate(&index, set.clone(), f32_config, &there, None, None)
            .await
            .unwrap();
        let third = Serving::new(storage.clone(), Arc::new(Semaphore::new(1)), options);
        assert!(third
            .reactivate(&index, set.clone(), record, &there)
            .await
            .unwrap());
        assert_eq!(third.complete_stand_ins().await.unwrap(), 0);
        assert_eq!(third.current(&index).unwrap().graph.config(), f32_config);
    }

    #[tokio::test]
    async fn a_kept_build_serves_its_twin_quantization_and_moves_to_the_twin_s_key() {
        let storage = Storage::in_memory();
        let index = IndexName::parse("i").unwrap();
        let engine = Engine::Native;
        let (ids, data) = rows(600, 8);
        let set = Arc::new(VectorSet::from_rows(8, Metric::L2, ids, data));
        let sq8 = HnswConfig::DEFAULT.with_quantization(Quantization::Sq8);
        let rabitq = sq8.with_quantization(Quantization::Rabitq);
        let options = BuildOptions { engine, threads: 2 };
        let built = Arc::new(crate::hnsw::build(&set, set.len(), sq8, options));
        keep_graph(&storage, &index, &set, sq8, engine, built.clone())
            .await
            .unwrap();
        // a run that dropped it from memory loads it in the twin quantization
        let twin = load_kept_as(&storage, &index, set.clone(), sq8, rabitq, engine)
            .await
            .unwrap()
            .expect("kept");
        assert_eq!((twin.frozen(), twin.config()), (built.frozen(), rabitq));
        assert!(load_kept(&storage, &index, set.clone(), rabitq, engine)
            .await
            .unwrap()
            .is_none());
        // the twin won: the build moves to its key, and its activation loads it
        assert!(keep_as_twin(&storage, &index, &set, sq8, rabitq, engine)
            .await
            .unwrap());
        assert!(load_kept(&storage, &index, set.clone(), sq8, engine)
            .await
            .unwrap()
            .is_none());
        let serving = Serving::new(storage.clone(), Arc::new(Semaphore::new(1)), options);
        let there = || true;
        let record = serving
            .activate(&index, set.clone(), rabitq, &there, None, None)
            .await
            .unwrap();
        assert!(record.loaded_from_store, "{record:?}");
        assert_eq!(serving.current(&index).unwrap().graph.frozen(), built.frozen());
        // nothing stored for it: nothing moved
        assert!(!keep_as_twin(&storage, &index, &set, sq8, rabitq, engine)
            .await
            .unwrap());
    }
}
