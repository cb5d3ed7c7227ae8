//! Indexes and their vectors: the registry, append-only segments and the embedding cache.
//!
//! An index is a write-once definition plus a chain of immutable manifests, each listing
//! the segments that make up the index at that version. An append writes its segment
//! first and the next manifest after it with `PutMode::Create`: a crash in between leaves
//! only an unreferenced segment, never a half-visible batch, and two writers racing for
//! the same version cannot both win. The embedding cache keeps each index's vectors in
//! memory, contiguous (cosine ones normalised once), so ground truth, builds and searches
//! never re-read storage.

pub mod binary;
mod compact;
mod error;
mod rows;
pub mod segment;
mod set;
mod write;

pub use error::{Result, VectorsError};
pub use set::{QueryError, VectorSet};

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::distance::Metric;
use crate::names::IndexName;
use object_store::path::Path;

use crate::storage::{keys, Storage, StorageError};

/// Largest dimension accepted. Past this a single vector is over 16 KiB and HNSW is the
/// wrong tool anyway.
pub const MAX_DIMS: usize = 4096;
/// Longest vector id accepted, in bytes.
pub const MAX_ID_LEN: usize = 512;

/// A dimension count within 1..=[`MAX_DIMS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "usize")]
pub struct Dims(usize);

impl Dims {
    /// Parses a dimension count.
    pub fn parse(n: i64) -> Result<Dims> {
        if (1..=MAX_DIMS as i64).contains(&n) {
            Ok(Dims(n as usize))
        } else {
            Err(VectorsError::InvalidDims(n))
        }
    }
    /// The count.
    pub fn get(self) -> usize {
        self.0
    }
}

impl TryFrom<i64> for Dims {
    type Error = VectorsError;
    fn try_from(n: i64) -> Result<Dims> {
        Dims::parse(n)
    }
}

impl From<Dims> for usize {
    fn from(d: Dims) -> usize {
        d.0
    }
}

/// The stored definition of an index.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndexMeta {
    /// Its name.
    pub name: IndexName,
    /// Dimensions of every vector.
    pub dims: Dims,
    /// The metric it is searched by.
    pub metric: Metric,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SegmentRef {
    id: Uuid,
    count: u64,
}

/// One immutable version of an index's contents: the segments (rows, in order) and the
/// tombstones (rows deleted) written so far.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Manifest {
    version: u64,
    /// Rows ever appended (deleted ones included): the next row's number.
    total: u64,
    segments: Vec<SegmentRef>,
    #[serde(default)]
    updated_at: Option<DateTime<Utc>>,
    /// Tombstone objects, in the order they were written (`count`: rows each deletes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    tombstones: Vec<SegmentRef>,
    /// Rows deleted in all.
    #[serde(default)]
    deleted: u64,
}

impl Manifest {
    fn live(&self) -> u64 {
        self.total.saturating_sub(self.deleted)
    }
}

/// The stored form of one delete (or the delete half of an upsert): the row numbers it
/// removes. Rows, not ids: an id deleted may be appended again as a new row.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Tombstone {
    rows: Vec<u64>,
}

/// One vector of a batch, as received.
#[derive(Debug, Clone)]
pub struct NewVector {
    /// Caller's id, unique per index.
    pub id: String,
    /// Its values.
    pub vector: Vec<f32>,
}

/// A batch that passed every check that does not need the stored ids.
#[derive(Debug)]
pub struct Batch {
    ids: Vec<String>,
    data: Vec<f32>,
}

impl Batch {
    /// Checks a batch against an index definition, whole: any bad vector refuses it all.
    pub fn parse(meta: &IndexMeta, vectors: Vec<NewVector>) -> Result<Batch> {
        if vectors.is_empty() {
            return Err(VectorsError::EmptyBatch);
        }
        let dims = meta.dims.get();
        let mut seen = std::collections::HashSet::with_capacity(vectors.len());
        let mut ids = Vec::with_capacity(vectors.len());
        let mut data = Vec::with_capacity(vectors.len() * dims);
        for (position, v) in vectors.into_iter().enumerate() {
            check_id(&v.id)?;
            check_vector(meta, &v.id, position, &v.vector)?;
            if !seen.insert(v.id.clone()) {
                return Err(VectorsError::DuplicateInBatch(v.id));
            }
            data.extend_from_slice(&v.vector);
            ids.push(v.id);
        }
        Ok(Batch { ids, data })
    }

    /// Builds a batch from contiguous rows with generated ids (binary ingest).
    pub fn from_rows(meta: &IndexMeta, ids: Vec<String>, data: Vec<f32>) -> Result<Batch> {
        let dims = meta.dims.get();
        if ids.is_empty() {
            return Err(VectorsError::EmptyBatch);
        }
        for (position, (id, row)) in ids.iter().zip(data.chunks_exact(dims)).enumerate() {
            check_vector(meta, id, position, row)?;
        }
        Ok(Batch { ids, data })
    }

    /// Number of vectors.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the batch is empty (never, once parsed).
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

fn check_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > MAX_ID_LEN || id.chars().any(char::is_control) {
        return Err(VectorsError::InvalidId {
            id: id.chars().take(64).collect(),
        });
    }
    Ok(())
}

/// Checks one vector against an index: dimensions, finite values, and (cosine) non-zero.
pub fn check_vector(meta: &IndexMeta, id: &str, position: usize, v: &[f32]) -> Result<()> {
    if v.len() != meta.dims.get() {
        return Err(VectorsError::DimsMismatch {
            id: id.to_string(),
            position,
            expected: meta.dims.get(),
            got: v.len(),
        });
    }
    if let Some(dim) = v.iter().position(|x| !x.is_finite()) {
        return Err(VectorsError::NonFinite {
            id: id.to_string(),
            dim,
        });
    }
    if meta.metric == Metric::Cosine && v.iter().all(|x| *x == 0.0) {
        return Err(VectorsError::ZeroVector { id: id.to_string() });
    }
    Ok(())
}

struct IndexState {
    manifest: Manifest,
    /// The vectors of the manifest last loaded. Its rows and deleted rows are where a newer
    /// manifest's rows and tombstones carry on (possibly merged into bigger objects: only the
    /// objects holding something new are read, and only that part used).
    cache: Option<Arc<VectorSet>>,
    /// Objects replaced by merges, with the manifest version that replaced them: deleted
    /// when that version's last predecessor is pruned ([`compact`]).
    replaced: std::collections::VecDeque<(u64, Vec<Path>)>,
}

/// One index: its definition, its current manifest and its cached vectors.
pub struct Index {
    meta: IndexMeta,
    state: tokio::sync::Mutex<IndexState>,
    /// Vectors stored now (rows not deleted).
    total: std::sync::atomic::AtomicU64,
    /// Rows ever appended.
    rows: std::sync::atomic::AtomicU64,
    /// The newest vectors loaded, for readers that cannot wait on the index's lock
    /// (searches: fresh rows and deletes since the serving generation).
    current: arc_swap::ArcSwapOption<VectorSet>,
    /// Appends waiting for the index's lock: its next holder commits them together.
    pending: std::sync::Mutex<Vec<write::Pending>>,
}

impl Index {
    /// The definition.
    pub fn meta(&self) -> &IndexMeta {
        &self.meta
    }
    /// Vectors stored now (deleted ones not counted).
    pub fn total(&self) -> u64 {
        self.total.load(std::sync::atomic::Ordering::Acquire)
    }
    /// Rows ever appended (deleted ones counted): the next binary id.
    pub fn rows(&self) -> u64 {
        self.rows.load(std::sync::atomic::Ordering::Acquire)
    }
    /// The newest vectors this process has loaded (appends and deletes of this process
    /// included at once; other instances' after the fleet's sync adopts them), without
    /// waiting: `None` until something loaded them.
    pub fn current(&self) -> Option<Arc<VectorSet>> {
        self.current.load_full()
    }
    fn adopt(&self, m: &Manifest) {
        self.rows.store(m.total, std::sync::atomic::Ordering::Release);
        self.total.store(m.live(), std::sync::atomic::Ordering::Release);
    }
}

/// Writes that lose the manifest race to another instance are retried this many times
/// in all before answering `409`.
const APPEND_ATTEMPTS: usize = 8;

/// The registry of indexes, loaded from storage at start-up and kept in step with writes.
pub struct Indexes {
    storage: Storage,
    map: RwLock<BTreeMap<IndexName, Arc<Index>>>,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(VectorsError::Task)
}

impl Indexes {
    /// Loads every index definition and its newest manifest (vectors load lazily).
    pub async fn load(storage: Storage) -> Result<Indexes> {
        let mut map = BTreeMap::new();
        for name in storage.list_children(&keys::indexes_root()).await? {
            let Ok(name) = IndexName::parse(name) else {
                continue;
            };
            let Some(meta) = storage.get_json::<IndexMeta>(&keys::index_meta(&name)).await? else {
                // leftovers of an interrupted delete; create() cleans them up
                continue;
            };
            let manifest = match storage.latest_version(&keys::manifests(&name)).await? {
                Some((_, key)) => storage.get_json::<Manifest>(&key).await?.unwrap_or_default(),
                None => Manifest::default(),
            };
            map.insert(name, Arc::new(new_index(meta, manifest)));
        }
        Ok(Indexes {
            storage,
            map: RwLock::new(map),
        })
    }

    /// Brings this registry in step with the store, for writes of other instances: new
    /// indexes are added, deleted ones dropped, and each index's newest manifest adopted
    /// (its vectors then reload on their next use). Returns the indexes added and removed.
    pub async fn refresh(&self) -> Result<(Vec<IndexName>, Vec<IndexName>)> {
        let stored: std::collections::BTreeSet<String> = self
            .storage
            .list_children(&keys::indexes_root())
            .await?
            .into_iter()
            .collect();
        let (mut added, mut removed) = (Vec::new(), Vec::new());
        let known: Vec<IndexName> = self.read_map().keys().cloned().collect();
        for name in &known {
            let gone =
                !stored.contains(name.as_str()) || self.storage.get(&keys::index_meta(name)).await?.is_none();
            if gone {
                self.write_map().remove(name);
                removed.push(name.clone());
            }
        }
        for raw in &stored {
            let Ok(name) = IndexName::parse(raw.clone()) else {
                continue;
            };
            if self.read_map().contains_key(&name) {
                continue;
            }
            let Some(meta) = self
                .storage
                .get_json::<IndexMeta>(&keys::index_meta(&name))
                .await?
            else {
                continue; // being created or deleted
            };
            let index = Arc::new(new_index(meta, Manifest::default()));
            let created = {
                let mut map = self.write_map();
                match map.get(&name) {
                    Some(_) => false, // created here meanwhile
                    None => {
                        map.insert(name.clone(), index);
                        true
                    }
                }
            };
            if created {
                added.push(name);
            }
        }
        for index in self.list() {
            self.adopt_newest_manifest(&index).await?;
        }
        Ok((added, removed))
    }

    /// Adopts the index's newest stored manifest if it is newer than the one held.
    async fn adopt_newest_manifest(&self, index: &Index) -> Result<bool> {
        let name = &index.meta.name;
        let held = index.state.lock().await.manifest.version;
        let newer = self
            .storage
            .list_after(&keys::manifests(name), &keys::manifest(name, held))
            .await?;
        let Some(key) = newer.iter().rev().find(|k| keys::version_of(k).is_some()) else {
            return Ok(false);
        };
        let Some(m) = self.storage.get_json::<Manifest>(key).await? else {
            return Ok(false); // deleted between list and get
        };
        let mut state = index.state.lock().await;
        if m.version <= state.manifest.version {
            return Ok(false);
        }
        index.adopt(&m);
        state.manifest = m;
        // searches read the newest vectors without the lock: load what changed now
        if state.cache.is_some() {
            self.ensure_cache(index, &mut state).await?;
        }
        Ok(true)
    }

    /// The index of that name.
    pub fn get(&self, name: &IndexName) -> Result<Arc<Index>> {
        self.read_map()
            .get(name)
            .cloned()
            .ok_or_else(|| VectorsError::IndexNotFound(name.clone()))
    }

    /// Every index, by name.
    pub fn list(&self) -> Vec<Arc<Index>> {
        self.read_map().values().cloned().collect()
    }

    fn read_map(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<IndexName, Arc<Index>>> {
        self.map.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_map(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<IndexName, Arc<Index>>> {
        self.map.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates an index; `IndexExists` if the name is taken (also by another process).
    pub async fn create(&self, name: IndexName, dims: Dims, metric: Metric) -> Result<Arc<Index>> {
        if self.read_map().contains_key(&name) {
            return Err(VectorsError::IndexExists(name));
        }
        let key = keys::index_meta(&name);
        if self.storage.get(&key).await?.is_none() {
            // an interrupted delete may have left objects behind: never let them leak into
            // the new index
            self.storage.delete_prefix(&keys::index_prefix(&name)).await?;
        }
        let meta = IndexMeta {
            name: name.clone(),
            dims,
            metric,
            created_at: Utc::now(),
        };
        match self.storage.put_json_new(&key, &meta).await {
            Ok(()) => {}
            Err(StorageError::AlreadyExists { .. }) => return Err(VectorsError::IndexExists(name)),
            Err(e) => return Err(e.into()),
        }
        let index = Arc::new(new_index(meta, Manifest::default()));
        self.write_map().insert(name, index.clone());
        Ok(index)
    }

    /// Deletes an index's objects and its cache entry. Manifests go first (the index then
    /// reads as empty), the definition last, so an interrupted delete never exposes a
    /// manifest whose segments are gone.
    pub async fn delete(&self, name: &IndexName) -> Result<()> {
        let index = self.get(name)?;
        let _state = index.state.lock().await;
        self.write_map().remove(name);
        self.storage.delete_prefix(&keys::manifests(name)).await?;
        for key in self.storage.list(&keys::index_prefix(name)).await? {
            if key != keys::index_meta(name) {
                self.storage.delete(&key).await?;
            }
        }
        self.storage.delete(&keys::index_meta(name)).await?;
        Ok(())
    }

    /// The index's vectors, from the cache or loaded from its segments once.
    pub async fn vectors(&self, index: &Index) -> Result<Arc<VectorSet>> {
        let mut state = index.state.lock().await;
        self.ensure_cache(index, &mut state).await
    }

    async fn ensure_cache(&self, index: &Index, state: &mut IndexState) -> Result<Arc<VectorSet>> {
        let m = &state.manifest;
        if let Some(c) = &state.cache {
            if c.manifest_version == m.version {
                return Ok(c.clone());
            }
        }
        // a newer manifest extends the rows and tombstones of the one cached (merged objects
        // may hold some of both): read only the objects holding something new
        let (from_row, from_dead) = match &state.cache {
            Some(c) if c.len() as u64 <= m.total && c.deleted() as u64 <= m.deleted => {
                (c.len(), c.deleted() as u64)
            }
            _ => (0, 0),
        };
        let mut raw = Vec::new();
        let mut start = 0usize;
        for s in &m.segments {
            let end = start + s.count as usize;
            if end > from_row {
                let key = keys::segment(&index.meta.name, s.id);
                let bytes = self
                    .storage
                    .get(&key)
                    .await?
                    .ok_or_else(|| VectorsError::MissingSegment(key.to_string()))?;
                // rows of this object the cache holds already
                raw.push((key.to_string(), bytes, from_row.saturating_sub(start)));
            }
            start = end;
        }
        let mut dead = Vec::new();
        let mut start = 0u64;
        for t in &m.tombstones {
            let end = start + t.count;
            if end > from_dead {
                let key = keys::tombstone(&index.meta.name, t.id);
                let tomb = self
                    .storage
                    .get_json::<Tombstone>(&key)
                    .await?
                    .ok_or_else(|| VectorsError::MissingSegment(key.to_string()))?;
                let skip = from_dead.saturating_sub(start) as usize;
                dead.extend(tomb.rows.into_iter().skip(skip));
            }
            start = end;
        }
        let meta = index.meta.clone();
        let version = m.version;
        let added = (m.total as usize).saturating_sub(from_row);
        let base = if from_row == 0 && from_dead == 0 {
            None
        } else {
            state.cache.clone()
        };
        let set = blocking(move || -> Result<VectorSet> {
            let mut set = match base {
                Some(b) => Arc::unwrap_or_clone(b),
                None => VectorSet::empty(&meta),
            };
            set.reserve(added);
            for (key, bytes, skip) in raw {
                let seg = decode_segment(key.clone(), &bytes, set.dims)?;
                if skip > seg.ids.len() {
                    return Err(VectorsError::CorruptSegment {
                        key,
                        source: segment::SegmentError::Magic,
                    });
                }
                set.push_rows(&seg.ids[skip..], &seg.data[skip * seg.dims..]);
            }
            for row in dead {
                set.delete_row(row as usize);
            }
            set.manifest_version = version;
            Ok(set)
        })
        .await??;
        let set = Arc::new(set);
        state.cache = Some(set.clone());
        index.current.store(Some(set.clone()));
        Ok(set)
    }
}

/// A stored segment of `dims`-dimensional rows, decoded; `CorruptSegment` naming `key`
/// when its bytes or its dimension do not hold.
fn decode_segment(key: String, bytes: &[u8], dims: usize) -> Result<segment::Segment> {
    let seg = segment::decode(bytes).map_err(|source| VectorsError::CorruptSegment {
        key: key.clone(),
        source,
    })?;
    if seg.dims != dims {
        return Err(VectorsError::CorruptSegment {
            key,
            source: segment::SegmentError::Magic,
        });
    }
    Ok(seg)
}

fn new_index(meta: IndexMeta, manifest: Manifest) -> Index {
    Index {
        total: std::sync::atomic::AtomicU64::new(manifest.live()),
        rows: std::sync::atomic::AtomicU64::new(manifest.total),
        current: arc_swap::ArcSwapOption::empty(),
        pending: std::sync::Mutex::new(Vec::new()),
        meta,
        state: tokio::sync::Mutex::new(IndexState {
            manifest,
            cache: None,
            replaced: std::collections::VecDeque::new(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(id: &str, x: &[f32]) -> NewVector {
        NewVector {
            id: id.into(),
            vector: x.to_vec(),
        }
    }

    async fn setup(metric: Metric) -> (Storage, Indexes, Arc<Index>) {
        let s = Storage::in_memory();
        let ix = Indexes::load(s.clone()).await.unwrap();
        let i = ix
            .create(IndexName::parse("i").unwrap(), Dims::parse(2).unwrap(), metric)
            .await
            .unwrap();
        (s, ix, i)
    }

    #[tokio::test]
    async fn refused_batches_store_nothing() {
        let (s, ix, i) = setup(Metric::Cosine).await;
        let before = s.list(&keys::indexes_root()).await.unwrap();
        let bad: Vec<Vec<NewVector>> = vec![
            vec![],
            vec![v("a", &[1.0, 0.0]), v("b", &[1.0])],
            vec![v("a", &[1.0, f32::NAN])],
            vec![v("a", &[0.0, 0.0])],
            vec![v("a", &[1.0, 0.0]), v("a", &[0.0, 1.0])],
            vec![v("", &[1.0, 0.0])],
        ];
        for b in bad {
            assert!(Batch::parse(i.meta(), b).is_err());
        }
        ix.append(&i, Batch::parse(i.meta(), vec![v("a", &[3.0, 4.0])]).unwrap())
            .await
            .unwrap();
        let after_one = s.list(&keys::indexes_root()).await.unwrap();
        assert!(after_one.len() > before.len());
        let err = ix
            .append(
                &i,
                Batch::parse(i.meta(), vec![v("b", &[1.0, 0.0]), v("a", &[0.0, 1.0])]).unwrap(),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, VectorsError::DuplicateStored(ref id) if id == "a"));
        assert_eq!(s.list(&keys::indexes_root()).await.unwrap(), after_one);
        assert_eq!(i.total(), 1);
    }

    #[tokio::test]
    async fn vectors_survive_reload_and_cosine_is_normalised() {
        let (s, ix, i) = setup(Metric::Cosine).await;
        ix.append(&i, Batch::parse(i.meta(), vec![v("a", &[3.0, 4.0])]).unwrap())
            .await
            .unwrap();
        ix.append(
            &i,
            Batch::parse(i.meta(), vec![v("b", &[0.0, 2.0]), v("c", &[1.0, 1.0])]).unwrap(),
        )
        .await
        .unwrap();
        let again = Indexes::load(s).await.unwrap();
        let i2 = again.get(&IndexName::parse("i").unwrap()).unwrap();
        assert_eq!(i2.total(), 3);
        let set = again.vectors(&i2).await.unwrap();
        assert_eq!(set.len(), 3);
        assert_eq!(set.version(), 2);
        assert_eq!(set.id(1), "b");
        assert_eq!(set.position("c"), Some(2));
        assert!((set.row(0)[0] - 0.6).abs() < 1e-6);
    }

    #[tokio::test]
    async fn delete_removes_everything_and_name_is_reusable() {
        let (s, ix, i) = setup(Metric::L2).await;
        ix.append(&i, Batch::parse(i.meta(), vec![v("a", &[3.0, 4.0])]).unwrap())
            .await
            .unwrap();
        let name = IndexName::parse("i").unwrap();
        ix.delete(&name).await.unwrap();
        assert!(s.list(&keys::index_prefix(&name)).await.unwrap().is_empty());
        assert!(matches!(ix.get(&name), Err(VectorsError::IndexNotFound(_))));
        let i = ix
            .create(name, Dims::parse(2).unwrap(), Metric::L2)
            .await
            .unwrap();
        assert_eq!(ix.vectors(&i).await.unwrap().len(), 0);
    }

    /// Deletes are all or none, durable (a reload sees them), never found again by id, and
    /// the id may come back as a new row; upserts replace in one manifest; the counts hold
    /// rows ever appended apart from vectors stored.
    #[tokio::test]
    async fn deletes_and_upserts_survive_reload_and_refusals_change_nothing() {
        let (s, ix, i) = setup(Metric::L2).await;
        let three = vec![v("a", &[1.0, 0.0]), v("b", &[2.0, 0.0]), v("c", &[3.0, 0.0])];
        ix.append(&i, Batch::parse(i.meta(), three).unwrap())
            .await
            .unwrap();
        let objects = s.list(&keys::indexes_root()).await.unwrap();
        for bad in [
            vec![],
            vec!["a".to_string(), "a".to_string()],
            vec!["a".to_string(), "zz".to_string()],
        ] {
            assert!(ix.delete_ids(&i, bad).await.is_err());
        }
        assert_eq!(
            s.list(&keys::indexes_root()).await.unwrap(),
            objects,
            "a refusal wrote something"
        );
        assert_eq!((i.total(), i.rows()), (3, 3));
        assert_eq!(ix.delete_ids(&i, vec!["b".into()]).await.unwrap(), (1, 2));
        assert!(matches!(
            ix.delete_ids(&i, vec!["b".into()]).await,
            Err(VectorsError::UnknownId(ref id)) if id == "b"
        ));
        // b comes back as a new row; a is replaced by an upsert, c untouched
        ix.append(&i, Batch::parse(i.meta(), vec![v("b", &[5.0, 0.0])]).unwrap())
            .await
            .unwrap();
        assert_eq!(
            ix.upsert(
                &i,
                Batch::parse(i.meta(), vec![v("a", &[7.0, 0.0]), v("d", &[8.0, 0.0])]).unwrap()
            )
            .await
            .unwrap(),
            (2, 4)
        );
        assert_eq!((i.total(), i.rows()), (4, 6));
        let check = |set: &VectorSet| {
            assert_eq!((set.len(), set.live(), set.deleted()), (6, 4, 2));
            assert!(set.is_deleted(0) && set.is_deleted(1) && !set.is_deleted(2));
            assert_eq!(set.position("a"), Some(4));
            assert_eq!(set.position("b"), Some(3));
            assert_eq!(set.row(4), &[7.0, 0.0]);
            assert_eq!(set.live_rows().collect::<Vec<_>>(), vec![2, 3, 4, 5]);
        };
        check(&ix.vectors(&i).await.unwrap());
        check(&i.current().expect("loaded"));
        let again = Indexes::load(s.clone()).await.unwrap();
        let i2 = again.get(&IndexName::parse("i").unwrap()).unwrap();
        assert_eq!((i2.total(), i2.rows()), (4, 6));
        check(&again.vectors(&i2).await.unwrap());
        // binary ids continue from the rows ever appended: a deleted row's number is never reused
        let (_, total, first, last) = again.append_rows(&i2, vec![1.0, 1.0]).await.unwrap();
        assert_eq!((total, first.as_str(), last.as_str()), (5, "6", "6"));
    }

    /// Another registry over the same store adopts the writes by reading only the new
    /// segments and tombstones into the vectors it holds.
    #[tokio::test]
    async fn a_second_registry_adopts_writes_incrementally() {
        let (s, ix, i) = setup(Metric::L2).await;
        ix.append(
            &i,
            Batch::parse(i.meta(), vec![v("a", &[1.0, 0.0]), v("b", &[2.0, 0.0])]).unwrap(),
        )
        .await
        .unwrap();
        let other = Indexes::load(s.clone()).await.unwrap();
        let o = other.get(&IndexName::parse("i").unwrap()).unwrap();
        assert_eq!(other.vectors(&o).await.unwrap().len(), 2);
        ix.delete_ids(&i, vec!["a".into()]).await.unwrap();
        ix.append(&i, Batch::parse(i.meta(), vec![v("c", &[3.0, 0.0])]).unwrap())
            .await
            .unwrap();
        other.refresh().await.unwrap();
        let seen = o.current().expect("reloaded on adoption");
        assert_eq!((seen.len(), seen.live()), (3, 2));
        assert_eq!(seen.position("a"), None);
        assert_eq!(seen.position("c"), Some(2));
        assert_eq!(o.total(), 2);
    }

    /// Concurrent appends are committed in groups, each batch still all-or-nothing on its
    /// own: of two batches naming one id exactly one lands (the other's second row with
    /// it), every other batch lands, and the answers' totals are never below their own
    /// batch's rows.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_appends_are_grouped_and_each_stays_whole() {
        let (s, ix, i) = setup(Metric::L2).await;
        let ix = Arc::new(ix);
        let mut tasks = Vec::new();
        for t in 0..40usize {
            let (ix, i) = (ix.clone(), i.clone());
            tasks.push(tokio::spawn(async move {
                // batch 39 names t0 too: it clashes with batch 0
                let first = if t == 39 {
                    "t0".to_string()
                } else {
                    format!("t{t}")
                };
                let b = Batch::parse(
                    i.meta(),
                    vec![v(&first, &[t as f32, 1.0]), v(&format!("u{t}"), &[t as f32, 2.0])],
                )
                .unwrap();
                ix.append(&i, b).await
            }));
        }
        let mut refused = Vec::new();
        for (t, task) in tasks.into_iter().enumerate() {
            match task.await.unwrap() {
                Ok((n, total)) => assert!(n == 2 && total >= 2),
                Err(VectorsError::DuplicateStored(id)) => {
                    assert_eq!(id, "t0");
                    refused.push(t);
                }
                Err(e) => panic!("batch {t}: {e}"),
            }
        }
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert!(refused[0] == 0 || refused[0] == 39);
        assert_eq!(i.total(), 78);
        let set = ix.vectors(&i).await.unwrap();
        let lost = format!("u{}", refused[0]);
        assert_eq!(set.position(&lost), None, "a refused batch half stored");
        for t in (0..40).filter(|&t| t != refused[0]) {
            assert!(set.position(&format!("u{t}")).is_some());
        }
        let manifests = s
            .list(&keys::manifests(&IndexName::parse("i").unwrap()))
            .await
            .unwrap();
        assert!(manifests.len() <= 39, "{} manifests", manifests.len());
        // a reload reads the same
        let again = Indexes::load(s.clone()).await.unwrap();
        let i2 = again.get(&IndexName::parse("i").unwrap()).unwrap();
        assert_eq!(again.vectors(&i2).await.unwrap().live(), 78);
    }

    #[test]
    fn dims_bounds() {
        assert!(Dims::parse(0).is_err());
        assert!(Dims::parse(4097).is_err());
        assert!(Dims::parse(-1).is_err());
        assert_eq!(Dims::parse(4096).unwrap().get(), 4096);
    }
}
