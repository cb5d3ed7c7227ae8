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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwapOption;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::hnsw::{store, BuildOptions, Graph};
use crate::names::IndexName;
use crate::params::HnswConfig;
use crate::storage::{keys, Storage, StorageError};
use crate::vectors::VectorSet;

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
    /// took.
    pub async fn graph(
        &self,
        index: &IndexName,
        set: Arc<VectorSet>,
        (rows, deleted): (usize, u64),
        config: HnswConfig,
        still_there: StillThere<'_>,
    ) -> Result<(Graph, u64, bool, f64), ServingError> {
        let started = Instant::now();
        let options = self.options;
        let key = keys::graph(index, rows as u64, deleted, config.graph_id(options.engine));
        if let Some(bytes) = self.storage.get(&key).await? {
            let set = set.clone();
            let decoded = blocking(move || store::decode(&bytes, &set, rows, config, options.engine)).await?;
            match decoded {
                Ok(graph) => return Ok((graph, deleted, true, started.elapsed().as_secs_f64())),
                Err(e) => {
                    tracing::warn!(index = %index, key = %key, error = %e, "stored graph refused; rebuilding")
                }
            }
        }
        let permit = self.builds.acquire().await.map_err(|_| ServingError::Closed)?;
        let deleted = set.deleted_below(rows) as u64;
        let key = keys::graph(index, rows as u64, deleted, config.graph_id(options.engine));
        let (graph, bytes) = blocking(move || {
            let graph = crate::hnsw::build(&set, rows, config, options);
            let bytes = store::encode(&graph);
            (graph, bytes)
        })
        .await?;
        drop(permit);
        // the index may have been deleted while we built: never write into a deleted prefix
        if !still_there() {
            return Err(ServingError::IndexGone);
        }
        self.storage.put_overwrite(&key, bytes).await?;
        for old in self.storage.list(&keys::graphs(index)).await? {
            let stale = keys::graph_vectors_of(&old).is_some_and(|n| {
                n < rows as u64 || (n == rows as u64 && keys::graph_deleted_of(&old) < deleted)
            });
            if stale {
                self.storage.delete(&old).await?;
            }
        }
        Ok((graph, deleted, false, started.elapsed().as_secs_f64()))
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
                (set.len(), set.deleted() as u64),
                config,
                still_there,
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
        };
        match write_record(&self.storage, index, &record).await {
            Ok(()) => {}
            Err(StorageError::AlreadyExists { .. }) => return Err(ServingError::Conflict),
            Err(e) => return Err(e.into()),
        }
        self.swap(
            index,
            ServingGraph {
                graph,
                vectors: set,
                record: record.clone(),
            },
        );
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
        let (graph, _, loaded, secs) = self
            .graph(
                index,
                set.clone(),
                (record.vectors as usize, record.deleted),
                record.config,
                still_there,
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
        let key = keys::graph(index, record.vectors, record.deleted, config.graph_id(engine));
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
