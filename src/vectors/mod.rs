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
mod error;
pub mod segment;
mod set;

pub use error::{Result, VectorsError};
pub use set::{QueryError, VectorSet};

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::distance::Metric;
use crate::names::IndexName;
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

/// One immutable version of an index's contents.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Manifest {
    version: u64,
    total: u64,
    segments: Vec<SegmentRef>,
    #[serde(default)]
    updated_at: Option<DateTime<Utc>>,
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
    cache: Option<Arc<VectorSet>>,
}

/// One index: its definition, its current manifest and its cached vectors.
pub struct Index {
    meta: IndexMeta,
    state: tokio::sync::Mutex<IndexState>,
    total: std::sync::atomic::AtomicU64,
}

impl Index {
    /// The definition.
    pub fn meta(&self) -> &IndexMeta {
        &self.meta
    }
    /// Vectors stored now.
    pub fn total(&self) -> u64 {
        self.total.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// Appends that lose the manifest race to another instance are retried this many times
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
        index.total.store(m.total, std::sync::atomic::Ordering::Release);
        state.manifest = m;
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
        if let Some(c) = &state.cache {
            if c.manifest_version == state.manifest.version {
                return Ok(c.clone());
            }
        }
        let mut raw = Vec::with_capacity(state.manifest.segments.len());
        for s in &state.manifest.segments {
            let key = keys::segment(&index.meta.name, s.id);
            let bytes = self
                .storage
                .get(&key)
                .await?
                .ok_or_else(|| VectorsError::MissingSegment(key.to_string()))?;
            raw.push((key.to_string(), bytes));
        }
        let meta = index.meta.clone();
        let version = state.manifest.version;
        let set = blocking(move || -> Result<VectorSet> {
            let mut set = VectorSet::empty(&meta);
            for (key, bytes) in raw {
                let seg = segment::decode(&bytes).map_err(|source| VectorsError::CorruptSegment {
                    key: key.clone(),
                    source,
                })?;
                if seg.dims != set.dims {
                    return Err(VectorsError::CorruptSegment {
                        key,
                        source: segment::SegmentError::Magic,
                    });
                }
                set.push_rows(&seg.ids, &seg.data);
            }
            set.manifest_version = version;
            Ok(set)
        })
        .await??;
        let set = Arc::new(set);
        state.cache = Some(set.clone());
        Ok(set)
    }

    /// Appends a parsed batch: refused whole if any id is stored already; otherwise the
    /// segment is written, then the next manifest, then the cache is updated.
    pub async fn append(&self, index: &Index, batch: Batch) -> Result<(usize, u64)> {
        let mut state = index.state.lock().await;
        let batch = Arc::new(batch);
        // another instance may append between our read and our write: its manifest wins
        // the version, we adopt it and go again (ids are checked against its vectors too)
        for _ in 1..APPEND_ATTEMPTS {
            match self.append_locked(index, &mut state, batch.clone()).await {
                Err(VectorsError::Conflict(_)) => continue,
                other => return other,
            }
        }
        self.append_locked(index, &mut state, batch).await
    }

    /// Appends contiguous rows with ids assigned as decimal row numbers continuing from the
    /// index's total (decided under the index's lock, so concurrent appends cannot hand out
    /// the same id). Returns `(appended, total, first_id, last_id)`.
    pub async fn append_rows(&self, index: &Index, data: Vec<f32>) -> Result<(usize, u64, String, String)> {
        let dims = index.meta.dims.get();
        let n = data.len() / dims;
        let mut state = index.state.lock().await;
        let ids_from =
            |start: u64| -> Vec<String> { (start..start + n as u64).map(|i| i.to_string()).collect() };
        let mut batch = Arc::new(Batch::from_rows(
            &index.meta,
            ids_from(state.manifest.total),
            data,
        )?);
        let mut attempt = 0;
        loop {
            attempt += 1;
            // ids continue from the total of the manifest we write after
            if let Some(b) = Arc::get_mut(&mut batch) {
                b.ids = ids_from(state.manifest.total);
            }
            let (first, last) = (
                batch.ids.first().cloned().unwrap_or_default(),
                batch.ids.last().cloned().unwrap_or_default(),
            );
            match self.append_locked(index, &mut state, batch.clone()).await {
                Err(VectorsError::Conflict(_)) if attempt < APPEND_ATTEMPTS => continue,
                Err(e) => return Err(e),
                Ok((appended, total)) => return Ok((appended, total, first, last)),
            }
        }
    }

    async fn append_locked(
        &self,
        index: &Index,
        state: &mut IndexState,
        batch: Arc<Batch>,
    ) -> Result<(usize, u64)> {
        let mut set = self.ensure_cache(index, state).await?;
        if let Some(dup) = batch.ids.iter().find(|id| set.position(id).is_some()) {
            return Err(VectorsError::DuplicateStored(dup.clone()));
        }
        let dims = index.meta.dims.get();
        let seg_id = Uuid::now_v7();
        let bytes = {
            let batch = batch.clone();
            blocking(move || segment::encode(dims, &batch.ids, &batch.data)).await?
        };
        let (ids, data) = (&batch.ids, &batch.data);
        self.storage
            .put_new(&keys::segment(&index.meta.name, seg_id), bytes)
            .await?;
        let mut next = state.manifest.clone();
        next.version += 1;
        next.total += ids.len() as u64;
        next.segments.push(SegmentRef {
            id: seg_id,
            count: ids.len() as u64,
        });
        next.updated_at = Some(Utc::now());
        match self
            .storage
            .put_json_new(&keys::manifest(&index.meta.name, next.version), &next)
            .await
        {
            Ok(()) => {}
            Err(StorageError::AlreadyExists { .. }) => {
                // Another process appended first. Our segment stays unreferenced (harmless);
                // drop our view so the next call re-reads the winner's manifest.
                self.storage
                    .delete(&keys::segment(&index.meta.name, seg_id))
                    .await
                    .ok();
                if let Some((_, key)) = self
                    .storage
                    .latest_version(&keys::manifests(&index.meta.name))
                    .await?
                {
                    if let Some(m) = self.storage.get_json::<Manifest>(&key).await? {
                        index.total.store(m.total, std::sync::atomic::Ordering::Release);
                        state.manifest = m;
                    }
                }
                return Err(VectorsError::Conflict(index.meta.name.clone()));
            }
            Err(e) => return Err(e.into()),
        }
        let appended = ids.len();
        {
            let set = Arc::make_mut(&mut set);
            set.push_rows(ids, data);
            set.manifest_version = next.version;
        }
        state.cache = Some(set);
        index
            .total
            .store(next.total, std::sync::atomic::Ordering::Release);
        let total = next.total;
        state.manifest = next;
        Ok((appended, total))
    }
}

fn new_index(meta: IndexMeta, manifest: Manifest) -> Index {
    Index {
        total: std::sync::atomic::AtomicU64::new(manifest.total),
        meta,
        state: tokio::sync::Mutex::new(IndexState {
            manifest,
            cache: None,
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

    #[test]
    fn dims_bounds() {
        assert!(Dims::parse(0).is_err());
        assert!(Dims::parse(4097).is_err());
        assert!(Dims::parse(-1).is_err());
        assert_eq!(Dims::parse(4096).unwrap().get(), 4096);
    }
}
