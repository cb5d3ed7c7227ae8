//! Every object key vectune reads or writes, built in one place.
//!
//! Keys are made only from parsed names ([`IndexName`], [`HarnessName`]), UUIDs and
//! zero-padded numbers, so no request can reach outside its own prefix, and the layout of
//! the bucket can be read off this file:
//!
//! ```text
//! indexes/{index}/index.json                      index definition (write-once)
//! indexes/{index}/manifests/{version:020}.json    segment list, one immutable object per change
//! indexes/{index}/segments/{uuid}.seg             immutable binary vector segments
//! indexes/{index}/activations/{generation:020}.json  what serves, one object per activation
//! indexes/{index}/graphs/{vectors:020}-m{m}-ec{ec}-s{seed}-{quantization}-{engine}.graph  graphs of activations
//! indexes/{index}/trials/{uuidv7}.json            trial journal, one object per trial
//! indexes/{index}/promotion/{version:020}.json    promotion registry states
//! indexes/{index}/jobs/{uuidv7}.json              job records (state: overwritten as it moves)
//! indexes/{index}/jobs/{uuidv7}.cancel            another instance asks the job's owner to cancel it
//! indexes/{index}/agent.json                      background agent settings and run stats
//! indexes/{index}/monitor.json                    live recall monitor settings
//! harnesses/{harness}/harness.json                eval harness definition (write-once, except
//!                                                 a captured one: rewritten as its capture moves)
//! harnesses/{harness}/ground_truth/{manifest:020}.json  exact top-k for one manifest version
//! indexes/{index}/leases/{kind}/{epoch:020}.json  autotune / agent leases, one object per epoch
//! indexes/{index}/builds/{run}/{graph}/item.json   a graph an autotune run offers the fleet to build
//! indexes/{index}/builds/{run}/{graph}/claims/{epoch:020}.json  who builds it, one object per epoch
//! indexes/{index}/builds/{run}/{graph}/done.json   built: the graph is stored, who built it, how long
//! fleet/instances/{uuid}.json                     liveness lease of each running instance
//! ```
//!
//! Zero-padded numbers make lexical order equal numeric order, so "the newest version" is
//! the last key of a listing on every backend.

use object_store::path::Path;
use uuid::Uuid;

use crate::names::{HarnessName, IndexName};
use crate::params::GraphId;

/// Width of the zero-padded version numbers in keys (`u64::MAX` has 20 digits).
const VERSION_WIDTH: usize = 20;

fn versioned(prefix: Path, version: u64) -> Path {
    prefix.join(format!("{version:0VERSION_WIDTH$}.json"))
}

/// Parses the version number out of a key made by a `versioned` helper.
pub fn version_of(key: &Path) -> Option<u64> {
    let file = key.filename()?;
    let digits = file.strip_suffix(".json")?;
    if digits.len() != VERSION_WIDTH || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A key `/ready` reads to see that the store answers; nothing ever writes it.
pub fn ready_probe() -> Path {
    Path::from("ops/ready-probe")
}

/// Folder of every instance's liveness record.
pub fn instances() -> Path {
    Path::from("fleet").join("instances")
}

/// The liveness record of one instance.
pub fn instance(id: Uuid) -> Path {
    instances().join(format!("{id}.json"))
}

/// The id in an instance record's key.
pub fn instance_id_of(key: &Path) -> Option<Uuid> {
    uuid_file(key)
}

/// Folder of one kind of lease of an index (`autotune`, `agent`).
pub fn leases(index: &IndexName, kind: &str) -> Path {
    index_prefix(index).join("leases").join(kind)
}

/// One epoch of a lease: written once with a conditional create, so two instances can
/// never both hold the same epoch.
pub fn lease(index: &IndexName, kind: &str, epoch: u64) -> Path {
    versioned(leases(index, kind), epoch)
}

/// Folder of an index's job records.
pub fn jobs(index: &IndexName) -> Path {
    index_prefix(index).join("jobs")
}

/// One job record.
pub fn job(index: &IndexName, id: Uuid) -> Path {
    jobs(index).join(format!("{id}.json"))
}

/// A request, left by another instance, that the owner of a job cancel it.
pub fn job_cancel(index: &IndexName, id: Uuid) -> Path {
    jobs(index).join(format!("{id}.cancel"))
}

/// The id in a job record's key.
pub fn job_id_of(key: &Path) -> Option<Uuid> {
    uuid_file(key)
}

/// The UUID of a `{uuid}.json` key.
fn uuid_file(key: &Path) -> Option<Uuid> {
    Uuid::parse_str(key.filename()?.strip_suffix(".json")?).ok()
}

/// The background agent of an index.
pub fn agent(index: &IndexName) -> Path {
    index_prefix(index).join("agent.json")
}

/// The live recall monitor's settings of an index.
pub fn monitor(index: &IndexName) -> Path {
    index_prefix(index).join("monitor.json")
}

/// An index's refresh settings.
pub fn refresh(index: &IndexName) -> Path {
    index_prefix(index).join("refresh.json")
}

/// Root of all indexes (its children are the index names).
pub fn indexes_root() -> Path {
    Path::from("indexes")
}

/// Everything stored for one index.
pub fn index_prefix(index: &IndexName) -> Path {
    indexes_root().join(index.as_str())
}

/// The index definition.
pub fn index_meta(index: &IndexName) -> Path {
    index_prefix(index).join("index.json")
}

/// Folder of the index's manifest versions.
pub fn manifests(index: &IndexName) -> Path {
    index_prefix(index).join("manifests")
}

/// One manifest version.
pub fn manifest(index: &IndexName, version: u64) -> Path {
    versioned(manifests(index), version)
}

/// One vector segment.
pub fn segment(index: &IndexName, id: Uuid) -> Path {
    index_prefix(index)
        .join("segments")
        .join(format!("{}.seg", id.simple()))
}

/// One tombstone object: rows of an index deleted by one write.
pub fn tombstone(index: &IndexName, id: Uuid) -> Path {
    index_prefix(index)
        .join("tombstones")
        .join(format!("{}.json", id.simple()))
}

/// Folder of the index's activation records.
pub fn activations(index: &IndexName) -> Path {
    index_prefix(index).join("activations")
}

/// The record of one activation generation.
pub fn activation(index: &IndexName, generation: u64) -> Path {
    versioned(activations(index), generation)
}

/// Folder of the index's stored frozen graphs.
pub fn graphs(index: &IndexName) -> Path {
    index_prefix(index).join("graphs")
}

/// The stored graph of the first `vectors` rows of an index, `deleted` of them deleted
/// when it was built (left out of it), with one graph identity
/// ([`crate::params::HnswConfig::graph_id`]: `ef_search` does not change a graph). Rows are
/// only ever deleted, never undeleted, so the count names the set. Without deletes the
/// key is what it was before deletes existed.
pub fn graph(index: &IndexName, vectors: u64, deleted: u64, id: GraphId) -> Path {
    let dead = if deleted > 0 {
        format!("-x{deleted}")
    } else {
        String::new()
    };
    graphs(index).join(format!(
        "{vectors:0VERSION_WIDTH$}{dead}-m{}-ec{}-s{}-{}-{}.graph",
        id.m,
        id.ef_construction,
        id.seed,
        id.quantization.as_str(),
        id.engine.as_str()
    ))
}

/// The stored graph of a generation that extended the graph of its first `base` rows to
/// `vectors` rows by insertion ([`graph`]'s key with `-f{base}`): not the bytes a build of
/// those rows gives, so never mistaken for one.
pub fn graph_folded(index: &IndexName, vectors: u64, deleted: u64, id: GraphId, base: u64) -> Path {
    let built = graph(index, vectors, deleted, id);
    let file = built
        .filename()
        .unwrap_or_default()
        .trim_end_matches(".graph")
        .to_string();
    graphs(index).join(format!("{file}-f{base}.graph"))
}

/// The vector count a stored graph's key was made for.
pub fn graph_vectors_of(key: &Path) -> Option<u64> {
    let file = key.filename()?.strip_suffix(".graph")?;
    let (count, _) = file.split_once('-')?;
    if count.len() != VERSION_WIDTH {
        return None;
    }
    count.parse().ok()
}

/// The deleted rows a stored graph's key says it leaves out (0 in keys without them).
pub fn graph_deleted_of(key: &Path) -> u64 {
    key.filename()
        .and_then(|f| f.split('-').nth(1))
        .and_then(|part| part.strip_prefix('x'))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Folder of the build work items of every autotune run of an index.
pub fn builds(index: &IndexName) -> Path {
    index_prefix(index).join("builds")
}

/// Folder of one run's build work items.
pub fn build_run(index: &IndexName, run: Uuid) -> Path {
    builds(index).join(run.to_string())
}

/// Folder of one build work item: the graph `id` run `run` needs.
pub fn build_item(index: &IndexName, run: Uuid, id: GraphId) -> Path {
    build_run(index, run).join(format!(
        "m{}-ec{}-s{}-{}-{}",
        id.m,
        id.ef_construction,
        id.seed,
        id.quantization.as_str(),
        id.engine.as_str()
    ))
}

/// The folder of the item a key inside it belongs to ([`build_offer`], [`build_done`]).
pub fn build_item_of(key: &Path) -> Path {
    key.parts().take(key.parts().count().saturating_sub(1)).collect()
}

/// The item a run offers, in its folder ([`build_item`]).
pub fn build_offer(item: &Path) -> Path {
    item.clone().join("item.json")
}

/// Folder of an item's claims.
pub fn build_claims(item: &Path) -> Path {
    item.clone().join("claims")
}

/// One epoch of a claim on an item: written once with a conditional create.
pub fn build_claim(item: &Path, epoch: u64) -> Path {
    versioned(build_claims(item), epoch)
}

/// The mark of a finished item.
pub fn build_done(item: &Path) -> Path {
    item.clone().join("done.json")
}

/// Folder of the index's trial journal.
pub fn trials(index: &IndexName) -> Path {
    index_prefix(index).join("trials")
}

/// One trial of the journal.
pub fn trial(index: &IndexName, id: Uuid) -> Path {
    trials(index).join(format!("{}.json", id.hyphenated()))
}

/// Parses the trial id out of a trial key.
pub fn trial_id_of(key: &Path) -> Option<Uuid> {
    uuid_file(key)
}

/// Folder of the index's promotion registry states.
pub fn promotions(index: &IndexName) -> Path {
    index_prefix(index).join("promotion")
}

/// One promotion registry state.
pub fn promotion(index: &IndexName, version: u64) -> Path {
    versioned(promotions(index), version)
}

/// Root of all harnesses.
pub fn harnesses_root() -> Path {
    Path::from("harnesses")
}

/// Everything stored for one harness.
pub fn harness_prefix(harness: &HarnessName) -> Path {
    harnesses_root().join(harness.as_str())
}

/// The harness definition (queries, k, index).
pub fn harness(harness: &HarnessName) -> Path {
    harness_prefix(harness).join("harness.json")
}

/// Folder of the harness's ground-truth versions.
pub fn ground_truths(harness: &HarnessName) -> Path {
    harness_prefix(harness).join("ground_truth")
}

/// Ground truth computed over one manifest version of the harness's index.
pub fn ground_truth(harness: &HarnessName, manifest_version: u64) -> Path {
    versioned(ground_truths(harness), manifest_version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn layout_is_stable() {
        let i = IndexName::parse("idx.v1").unwrap();
        let h = HarnessName::parse("smoke").unwrap();
        assert_eq!(index_meta(&i).as_ref(), "indexes/idx.v1/index.json");
        assert_eq!(
            manifest(&i, 7).as_ref(),
            "indexes/idx.v1/manifests/00000000000000000007.json"
        );
        assert_eq!(
            ground_truth(&h, 3).as_ref(),
            "harnesses/smoke/ground_truth/00000000000000000003.json"
        );
        let id = Uuid::now_v7();
        assert_eq!(trial_id_of(&trial(&i, id)), Some(id));
        use crate::params::{Engine, HnswConfig, Quantization};
        let g = graph(&i, 10_000, 0, HnswConfig::DEFAULT.graph_id(Engine::Native));
        assert_eq!(
            g.as_ref(),
            "indexes/idx.v1/graphs/00000000000000010000-m16-ec80-s42-none-native.graph"
        );
        assert_eq!(graph_vectors_of(&g), Some(10_000));
        let sq = HnswConfig::DEFAULT
            .with_quantization(Quantization::Sq8)
            .graph_id(Engine::HnswRs);
        assert_eq!(
            graph(&i, 5, 0, sq).as_ref(),
            "indexes/idx.v1/graphs/00000000000000000005-m16-ec80-s42-sq8-hnsw_rs.graph"
        );
        let dead = graph(&i, 5, 2, sq);
        assert_eq!(
            dead.as_ref(),
            "indexes/idx.v1/graphs/00000000000000000005-x2-m16-ec80-s42-sq8-hnsw_rs.graph"
        );
        assert_eq!(graph_vectors_of(&dead), Some(5));
        assert_eq!((graph_deleted_of(&dead), graph_deleted_of(&g)), (2, 0));
        assert_eq!(
            tombstone(&i, id).as_ref(),
            format!("indexes/idx.v1/tombstones/{}.json", id.simple())
        );
    }

    proptest! {
        #[test]
        fn versions_round_trip_and_sort(a in any::<u64>(), b in any::<u64>(), name in "[A-Za-z0-9][A-Za-z0-9_.-]{0,40}") {
            let i = IndexName::parse(name).unwrap();
            let (ka, kb) = (manifest(&i, a), manifest(&i, b));
            prop_assert_eq!(version_of(&ka), Some(a));
            prop_assert_eq!(ka.as_ref().cmp(kb.as_ref()), a.cmp(&b));
            // every key stays under the index's own prefix
            let prefix = format!("{}/", index_prefix(&i).as_ref());
            prop_assert!(ka.as_ref().starts_with(&prefix));
        }
    }
}
