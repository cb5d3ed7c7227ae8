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
    let Some(bytes) = storage.get(key).await? else {
        return Ok(None);
    };
    match blocking(move || store::decode(&bytes, &set, rows, config, engine)).await? {
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
    let rows = set.len();
    let (key, _) = key_of(index, &set, rows, config, engine);
    load_at(storage, &key, set, rows, config, engine).await
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
