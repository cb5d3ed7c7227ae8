//! Graphs kept in storage for activations to load: where a build leaves its graph, and the
//! stored graphs that can never serve again.

use std::sync::Arc;

use object_store::path::Path;

use super::{blocking, ServingError};
use crate::hnsw::{store, Graph};
use crate::names::IndexName;
use crate::params::{Engine, HnswConfig};
use crate::storage::{keys, Storage};
use crate::vectors::VectorSet;

/// Where the graph of the first `rows` rows of `set` under `config` is stored (the rows
/// deleted below `rows` now are the ones a build leaves out), with that deleted count.
pub(super) fn key_of(
    index: &IndexName,
    set: &VectorSet,
    rows: usize,
    config: HnswConfig,
    engine: Engine,
) -> (Path, u64) {
    let deleted = set.deleted_below(rows) as u64;
    (
        keys::graph(index, rows as u64, deleted, config.graph_id(engine)),
        deleted,
    )
}

/// The graph stored at `key` for the first `rows` rows of `set` under `config`, if it is
/// there and sound; one that does not decode or match is logged and left (`None`: the
/// caller builds).
pub(super) async fn load_at(
    storage: &Storage,
    key: &Path,
    set: Arc<VectorSet>,
    rows: usize,
    config: HnswConfig,
    engine: Engine,
) -> Result<Option<Graph>, ServingError> {
    load_as(storage, key, set, rows, config, config, engine).await
}

/// [`load_at`] of a graph stored under `stored_as`, served as its twin `config`
/// ([`store::decode_as`]).
pub(super) async fn load_as(
    storage: &Storage,
    key: &Path,
    set: Arc<VectorSet>,
    rows: usize,
    stored_as: HnswConfig,
    config: HnswConfig,
    engine: Engine,
) -> Result<Option<Graph>, ServingError> {
    let Some(bytes) = storage.get(key).await? else {
        return Ok(None);
    };
    match blocking(move || store::decode_as(&bytes, &set, rows, stored_as, config, engine)).await? {
        Ok(graph) => Ok(Some(graph)),
        Err(e) => {
            tracing::warn!(key = %key, error = %e, "stored graph refused; rebuilding");
            Ok(None)
        }
    }
}

/// Stores `graph`, built by `engine` over all rows of `set` under `config`, at the key an
/// activation of that config over those rows loads ([`super::Serving::graph`]): a tuning
/// run's full build is the graph its winner's activation needs, so activation loads it
/// instead of building it again. Stale graphs are dropped as after an activation's build.
pub async fn keep_graph(
    storage: &Storage,
    index: &IndexName,
    set: &VectorSet,
    config: HnswConfig,
    engine: Engine,
    graph: Arc<Graph>,
) -> Result<(), ServingError> {
    let rows = set.len();
    let (key, deleted) = key_of(index, set, rows, config, engine);
    let bytes = blocking(move || store::encode(&graph)).await?;
    storage.put_overwrite(&key, bytes).await?;
    drop_stale(storage, index, rows as u64, deleted, &key).await
}

/// The graph [`keep_graph`] stored for `config` over all rows of `set`, if it is there and
/// sound (a tuning run reloads its full builds instead of building one it dropped from
/// memory again); `None` otherwise.
pub async fn load_kept(
    storage: &Storage,
    index: &IndexName,
    set: Arc<VectorSet>,
    config: HnswConfig,
    engine: Engine,
) -> Result<Option<Graph>, ServingError> {
    load_kept_as(storage, index, set, config, config, engine).await
}

/// [`load_kept`] of the graph kept for `stored_as`, served as its twin quantization
/// `config`: a run that dropped every copy of a graph's links from memory loads them in
/// any quantization, where a build at 1M rows takes minutes.
pub async fn load_kept_as(
    storage: &Storage,
    index: &IndexName,
    set: Arc<VectorSet>,
    stored_as: HnswConfig,
    config: HnswConfig,
    engine: Engine,
) -> Result<Option<Graph>, ServingError> {
    let rows = set.len();
    let (key, _) = key_of(index, &set, rows, stored_as, engine);
    load_as(storage, &key, set, rows, stored_as, config, engine).await
}

/// Moves the graph [`keep_graph`] stored for `stored_as` to the key of its twin `config`
/// (same links, another quantization: [`store::retag`]), where the winner's activation
/// looks: a tuning run whose winner is a twin of its full build keeps that build instead of
/// leaving the activation a build of its own (minutes at 1M rows). The old key is deleted
/// unless the index's newest activation serves it. Whether it moved (`false`: nothing
/// sound was stored there).
pub async fn keep_as_twin(
    storage: &Storage,
    index: &IndexName,
    set: &VectorSet,
    stored_as: HnswConfig,
    config: HnswConfig,
    engine: Engine,
) -> Result<bool, ServingError> {
    let (from, _) = key_of(index, set, set.len(), stored_as, engine);
    let (to, _) = key_of(index, set, set.len(), config, engine);
    let Some(bytes) = storage.get(&from).await? else {
        return Ok(false);
    };
    let q = config.quantization;
    match blocking(move || store::retag(&bytes, q)).await? {
        Ok(retagged) => storage.put_overwrite(&to, retagged).await?,
        Err(e) => {
            tracing::warn!(key = %from, error = %e, "stored graph refused; not kept for its twin");
            return Ok(false);
        }
    }
    drop_kept(storage, index, set, stored_as, engine).await?;
    Ok(true)
}

/// Deletes the graph [`keep_graph`] stored for `config` over all rows of `set`, unless the
/// index's newest activation serves it: a tuning run's full build of a config that did not
/// win would otherwise stay in storage until the index changes. Whether it was deleted.
pub async fn drop_kept(
    storage: &Storage,
    index: &IndexName,
    set: &VectorSet,
    config: HnswConfig,
    engine: Engine,
) -> Result<bool, ServingError> {
    let (key, _) = key_of(index, set, set.len(), config, engine);
    if let Some(r) = super::latest_record(storage, index).await? {
        if r.graph_key(index, engine) == key {
            return Ok(false);
        }
    }
    storage.delete(&key).await?;
    Ok(true)
}

/// Deletes the stored graphs that can never serve again once a graph of `rows` rows,
/// `deleted` left out, is stored at `kept`: those of fewer rows, or as many with fewer
/// deletes.
pub(super) async fn drop_stale(
    storage: &Storage,
    index: &IndexName,
    rows: u64,
    deleted: u64,
    kept: &Path,
) -> Result<(), ServingError> {
    for old in storage.list(&keys::graphs(index)).await? {
        let stale = keys::graph_vectors_of(&old)
            .is_some_and(|n| n < rows || (n == rows && keys::graph_deleted_of(&old) < deleted));
        if stale && &old != kept {
            storage.delete(&old).await?;
        }
    }
    Ok(())
}
