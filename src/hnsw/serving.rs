//! Serving generations: the graph each index answers searches from, swapped atomically.
//!
//! Each index has one slot holding an `Arc` of its serving generation. Activation builds the
//! next generation off to the side and swaps it in with one atomic store; a search loads the
//! `Arc` it finds and keeps it for its whole duration, so searches during a build are
//! answered by the previous generation and never wait. Every activation is recorded as an
//! immutable object (config, generation, vector count), so a restart can rebuild exactly
//! what served before.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Graph, HnswConfig};
use crate::names::IndexName;
use crate::storage::{keys, Storage, StorageError};
use crate::vectors::VectorSet;

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

/// Every index's serving slot and activation lock.
#[derive(Default)]
pub struct Serving {
    slots: Mutex<HashMap<IndexName, Slot>>,
    locks: Mutex<HashMap<IndexName, Arc<tokio::sync::Mutex<()>>>>,
}

impl Serving {
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

    /// Drops an index's slot (the index is deleted).
    pub fn remove(&self, index: &IndexName) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = slots.remove(index) {
            s.store(None);
        }
    }

    /// The per-index lock that serialises activations (and start-up rebuilds).
    pub fn activation_lock(&self, index: &IndexName) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(index.clone()).or_default().clone()
    }
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
