//! Graphs kept in storage for activations to load: where a build leaves its graph, and the
//! stored graphs that can never serve again.

use std::sync::Arc;

use super::{blocking, ServingError};
use crate::hnsw::{store, Graph};
use crate::names::IndexName;
use crate::params::{Engine, HnswConfig};
use crate::storage::{keys, Storage};
use crate::vectors::VectorSet;

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
    let deleted = set.deleted_below(rows) as u64;
    let key = keys::graph(index, rows as u64, deleted, config.graph_id(engine));
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
    let deleted = set.deleted_below(rows) as u64;
    let key = keys::graph(index, rows as u64, deleted, config.graph_id(engine));
    let Some(bytes) = storage.get(&key).await? else {
        return Ok(None);
    };
    let decoded = blocking(move || store::decode(&bytes, &set, rows, config, engine)).await?;
    Ok(decoded.ok())
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
    let rows = set.len();
    let deleted = set.deleted_below(rows) as u64;
    let key = keys::graph(index, rows as u64, deleted, config.graph_id(engine));
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
    kept: &object_store::path::Path,
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
