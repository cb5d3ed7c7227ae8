//! Eval harnesses: query sets with exact ground truth, the yardstick of every trial.
//!
//! A harness is a write-once definition (its queries and `k`). Its ground truth is exact
//! brute force over all stored vectors, computed at creation, stored as its own immutable
//! object keyed by the index's manifest version, and recomputed when the index has grown
//! since: a recall figure is always against the vectors the graph was built from.

pub mod capture;
mod error;
pub mod ground_truth;
mod live;
pub mod synth;

pub use error::{HarnessError, Result};

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::monitor::SampleRate;
use crate::names::{HarnessName, IndexName};
use crate::rng::SplitMix64;
use crate::storage::{keys, Storage, StorageError};
use crate::vectors::{Index, Indexes, QueryError, VectorSet, MAX_ID_LEN};
use capture::{Capture, CaptureState, Offered};

/// Most queries one harness may hold.
pub const MAX_QUERIES: usize = 100_000;
/// Largest `k` of a harness.
pub const MAX_K: usize = 1000;

/// One query of a harness.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Query {
    /// Its id (given, the sampled vector's id for autogen, or `q{n}`).
    pub id: String,
    /// The query vector as given (for autogen, the stored vector as held in memory).
    pub vector: Vec<f32>,
}

/// The stored definition of a harness.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Harness {
    /// Its name.
    pub name: HarnessName,
    /// The index it measures.
    pub index_name: IndexName,
    /// Neighbours per query that recall is measured over.
    pub k: usize,
    /// The queries.
    pub queries: Vec<Query>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// The autogen seed, `None` for explicit queries.
    #[serde(default)]
    pub autogen_seed: Option<u64>,
    /// For a harness captured from live searches: where its capture is.
    #[serde(default)]
    pub capture: Option<Capture>,
}

impl Harness {
    /// Completed captures (0 for a harness that was not captured): ground truth is of one
    /// revision of the queries.
    pub fn revision(&self) -> u64 {
        self.capture.as_ref().map_or(0, |c| c.revision)
    }
}

/// Exact top-k for one manifest version of the index.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroundTruth {
    /// Manifest version of the vectors it was computed over.
    pub manifest_version: u64,
    /// How many vectors that was.
    pub vectors: u64,
    /// Rows (positions in the vector set), per query, nearest first.
    pub rows: Vec<Vec<u32>>,
    /// The same as ids.
    pub ids: Vec<Vec<String>>,
    /// When it was computed.
    pub computed_at: DateTime<Utc>,
    /// How long the brute force took.
    pub compute_secs: f64,
    /// The harness revision it is for ([`Harness::revision`]).
    #[serde(default)]
    pub revision: u64,
}

/// A harness with its ground truth, if current.
#[derive(Debug, Clone)]
pub struct HarnessView {
    /// The definition.
    pub harness: Arc<Harness>,
    /// Ground truth for the index's current vectors, if computed.
    pub ground_truth: Option<Arc<GroundTruth>>,
    /// A capture's progress (live, not only as last stored).
    pub capture: Option<CaptureView>,
}

/// Where a capture is, as shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureView {
    /// Capturing or complete.
    pub state: CaptureState,
    /// Distinct queries collected (all of them once complete).
    pub have: usize,
    /// Queries wanted.
    pub want: usize,
}

/// A capture under way: its state and the bit patterns it holds (for de-duplication).
struct Live {
    harness: Arc<Harness>,
    capture: Capture,
    seen: HashSet<Vec<u32>>,
    /// `pending.len()` when it was last stored.
    stored_at: usize,
}

/// A harness and its newest ground truth, as cached.
type Cached = (Arc<Harness>, Option<Arc<GroundTruth>>);

/// The harness registry (definitions in storage, ground truth cached in memory).
pub struct Harnesses {
    storage: Storage,
    cache: Mutex<HashMap<HarnessName, Cached>>,
    gt_lock: tokio::sync::Mutex<()>,
    live: Mutex<HashMap<HarnessName, Live>>,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(HarnessError::Task)
}

/// A query as received for an explicit harness.
#[derive(Debug, Clone)]
pub struct NewQuery {
    /// Optional id.
    pub id: Option<String>,
    /// The vector.
    pub vector: Vec<f32>,
}

/// Parses `k` against the index size.
fn check_k(k: i64, index: &Index) -> Result<usize> {
    if !(1..=MAX_K as i64).contains(&k) {
        return Err(HarnessError::InvalidK(k));
    }
    let vectors = index.total();
    if k as u64 > vectors {
        return Err(HarnessError::KTooLarge {
            k: k as usize,
            vectors,
            index: index.meta().name.clone(),
        });
    }
    Ok(k as usize)
}

impl Harnesses {
    /// A registry over `storage`.
    pub fn new(storage: Storage) -> Harnesses {
        Harnesses {
            storage,
            cache: Mutex::new(HashMap::new()),
            gt_lock: tokio::sync::Mutex::new(()),
            live: Mutex::new(HashMap::new()),
        }
    }

    /// Forgets every cached definition and ground truth: the next use reads the store,
    /// where other instances may have changed or deleted them.
    pub fn drop_cache(&self) {
        self.cache().clear();
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<HarnessName, Cached>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates a harness from explicit queries and computes its ground truth.
    pub async fn create_explicit(
        &self,
        indexes: &Indexes,
        name: HarnessName,
        index: &Index,
        k: i64,
        queries: Vec<NewQuery>,
    ) -> Result<HarnessView> {
        let k = check_k(k, index)?;
        if queries.is_empty() {
            return Err(HarnessError::NoQueries);
        }
        if queries.len() > MAX_QUERIES {
            return Err(HarnessError::TooManyQueries {
                requested: queries.len() as i64,
                available: MAX_QUERIES as u64,
            });
        }
        let set = indexes.vectors(index).await?;
        let mut seen = HashSet::new();
        let mut qs = Vec::with_capacity(queries.len());
        for (position, q) in queries.into_iter().enumerate() {
            set.prepare_query(&q.vector)
                .map_err(|source| HarnessError::Query { position, source })?;
            let id = q.id.unwrap_or_else(|| format!("q{position}"));
            if id.is_empty() || id.len() > MAX_ID_LEN || !seen.insert(id.clone()) {
                return Err(HarnessError::QueryId(id));
            }
            qs.push(Query { id, vector: q.vector });
        }
        self.store_new(name, index, k, qs, None, set).await
    }

    /// Creates a harness of `count` stored vectors sampled reproducibly from `seed`.
    pub async fn create_autogen(
        &self,
        indexes: &Indexes,
        name: HarnessName,
        index: &Index,
        count: i64,
        k: i64,
        seed: u64,
    ) -> Result<HarnessView> {
        let k = check_k(k, index)?;
        if count < 1 {
            return Err(HarnessError::NoQueries);
        }
        let set = indexes.vectors(index).await?;
        let available = (set.live() as u64).min(MAX_QUERIES as u64);
        if count as u64 > available {
            return Err(HarnessError::TooManyQueries {
                requested: count,
                available,
            });
        }
        // sampled among the vectors stored (with no deletes: the rows, as always)
        let live: Vec<usize> = if set.deleted() == 0 {
            Vec::new()
        } else {
            set.live_rows().collect()
        };
        let pick = |i: usize| if live.is_empty() { i } else { live[i] };
        let qs = SplitMix64::new(seed)
            .sample(set.live(), count as usize)
            .into_iter()
            .map(pick)
            .map(|row| Query {
                id: set.id(row).to_string(),
                vector: set.row(row).to_vec(),
            })
            .collect();
        self.store_new(name, index, k, qs, Some(seed), set).await
    }

    async fn store_new(
        &self,
        name: HarnessName,
        index: &Index,
        k: usize,
        queries: Vec<Query>,
        autogen_seed: Option<u64>,
        set: Arc<VectorSet>,
    ) -> Result<HarnessView> {
        if self.load(&name).await?.is_some() {
            return Err(HarnessError::Exists(name));
        }
        let harness = Arc::new(Harness {
            name: name.clone(),
            index_name: index.meta().name.clone(),
            k,
            queries,
            created_at: Utc::now(),
            autogen_seed,
            capture: None,
        });
        // ground truth first: if it fails, nothing is stored
        let gt = compute(harness.clone(), set).await?;
        match self.storage.put_json_new(&keys::harness(&name), &*harness).await {
            Ok(()) => {}
            Err(StorageError::AlreadyExists { .. }) => return Err(HarnessError::Exists(name)),
            Err(e) => return Err(e.into()),
        }
        self.persist_gt(&name, &gt).await?;
        let gt = Arc::new(gt);
        self.cache().insert(name, (harness.clone(), Some(gt.clone())));
        Ok(HarnessView {
            harness,
            ground_truth: Some(gt),
            capture: None,
        })
    }

    async fn persist_gt(&self, name: &HarnessName, gt: &GroundTruth) -> Result<()> {
        let key = keys::ground_truth(name, gt.manifest_version);
        match self.storage.put_json_new(&key, gt).await {
            // the same version computed by someone else is the same answer
            Ok(()) => Ok(()),
            Err(StorageError::AlreadyExists { .. }) if gt.revision == 0 => Ok(()),
            // a captured harness's queries change with its revision: the newer one wins
            Err(StorageError::AlreadyExists { .. }) => Ok(self.storage.put_json_overwrite(&key, gt).await?),
            Err(e) => Err(e.into()),
        }
    }

    /// The definition and its newest stored ground truth, from cache or storage.
    async fn load(&self, name: &HarnessName) -> Result<Option<Cached>> {
        if let Some(hit) = self.cache().get(name).cloned() {
            return Ok(Some(hit));
        }
        let Some(h) = self.storage.get_json::<Harness>(&keys::harness(name)).await? else {
            return Ok(None);
        };
        let gt = match self.storage.latest_version(&keys::ground_truths(name)).await? {
            Some((_, key)) => self.storage.get_json::<GroundTruth>(&key).await?.map(Arc::new),
            None => None,
        };
        let entry = (Arc::new(h), gt);
        self.cache().insert(name.clone(), entry.clone());
        Ok(Some(entry))
    }

    /// A harness as stored; its ground truth is shown only if it is for the index's
    /// current vectors (`vectors_now`).
    pub async fn get(
        &self,
        name: &HarnessName,
        vectors_now: impl Fn(&IndexName) -> Option<u64>,
    ) -> Result<HarnessView> {
        let (harness, gt) = self
            .load(name)
            .await?
            .ok_or_else(|| HarnessError::NotFound(name.clone()))?;
        let current = vectors_now(&harness.index_name);
        let ground_truth = gt.filter(|g| Some(g.vectors) == current && g.revision == harness.revision());
        let live = self.live_view(name);
        let capture = live.or_else(|| {
            harness.capture.as_ref().map(|c| CaptureView {
                state: c.state,
                have: c.have(harness.queries.len()),
                want: c.want,
            })
        });
        Ok(HarnessView {
            harness,
            ground_truth,
            capture,
        })
    }

    /// The harness and ground truth for the given vectors, computing and storing it if
    /// the index has changed since. The harness must belong to `index`.
    pub async fn with_ground_truth(
        &self,
        name: &HarnessName,
        index: &IndexName,
        set: Arc<VectorSet>,
    ) -> Result<(Arc<Harness>, Arc<GroundTruth>)> {
        let (harness, gt) = self.load_for_index(name, index).await?;
        let current =
            |g: &GroundTruth| g.manifest_version == set.version() && g.revision == harness.revision();
        if let Some(gt) = gt.filter(|g| current(g)) {
            return Ok((harness, gt));
        }
        let _one_at_a_time = self.gt_lock.lock().await;
        if let Some((h, Some(gt))) = self.cache().get(name).cloned() {
            if current(&gt) && h.revision() == harness.revision() {
                return Ok((harness, gt));
            }
        }
        let gt = compute(harness.clone(), set).await?;
        self.persist_gt(name, &gt).await?;
        let gt = Arc::new(gt);
        self.cache()
            .insert(name.clone(), (harness.clone(), Some(gt.clone())));
        Ok((harness, gt))
    }

    /// Checks that the harness exists and belongs to `index`, without touching ground truth.
    pub async fn check_index(&self, name: &HarnessName, index: &IndexName) -> Result<()> {
        self.load_for_index(name, index).await.map(|_| ())
    }

    /// The harness (and its newest ground truth), refused unless it belongs to `index` and
    /// has queries to measure.
    async fn load_for_index(&self, name: &HarnessName, index: &IndexName) -> Result<Cached> {
        let (harness, gt) = self
            .load(name)
            .await?
            .ok_or_else(|| HarnessError::NotFound(name.clone()))?;
        if harness.index_name != *index {
            return Err(HarnessError::WrongIndex {
                harness: name.clone(),
                actual: harness.index_name.clone(),
                requested: index.clone(),
            });
        }
        if harness.queries.is_empty() {
            return Err(HarnessError::Capturing(name.clone()));
        }
        Ok((harness, gt))
    }

    /// Deletes every harness of an index (the index is being deleted).
    pub async fn delete_for_index(&self, index: &IndexName) -> Result<()> {
        for name in self.storage.list_children(&keys::harnesses_root()).await? {
            let Ok(name) = HarnessName::parse(name) else {
                continue;
            };
            let belongs = match self.load(&name).await {
                Ok(Some((h, _))) => h.index_name == *index,
                Ok(None) => false,
                Err(e) => return Err(e),
            };
            if belongs {
                self.live().remove(&name);
                self.cache().remove(&name);
                // definition last would leave a ground truth without a harness; definition
                // first leaves nothing that a listing could show
                self.storage.delete(&keys::harness(&name)).await?;
                self.storage.delete_prefix(&keys::harness_prefix(&name)).await?;
            }
        }
        Ok(())
    }
}

/// Prepared query vectors of a harness, in order.
pub fn prepared_queries(
    harness: &Harness,
    set: &VectorSet,
) -> std::result::Result<Vec<Vec<f32>>, QueryError> {
    harness
        .queries
        .iter()
        .map(|q| set.prepare_query(&q.vector))
        .collect()
}

async fn compute(harness: Arc<Harness>, set: Arc<VectorSet>) -> Result<GroundTruth> {
    let queries =
        prepared_queries(&harness, &set).map_err(|source| HarnessError::Query { position: 0, source })?;
    blocking(move || {
        let start = Instant::now();
        // prepared queries have the set's dims, so this cannot be refused
        let rows = ground_truth::exact(&set, &queries, harness.k)
            .map_err(|source| HarnessError::Query { position: 0, source })?;
        let compute_secs = start.elapsed().as_secs_f64();
        let ids = rows
            .iter()
            .map(|r| r.iter().map(|&i| set.id(i as usize).to_string()).collect())
            .collect();
        tracing::info!(harness = %harness.name, queries = queries.len(), vectors = set.len(), compute_secs, "ground truth computed");
        Ok(GroundTruth {
            manifest_version: set.version(),
            vectors: set.len() as u64,
            rows,
            ids,
            computed_at: Utc::now(),
            compute_secs,
            revision: harness.revision(),
        })
    })
    .await?
}
