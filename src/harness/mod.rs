//! Eval harnesses: query sets with exact ground truth, the yardstick of every trial.
//!
//! A harness is a write-once definition (its queries and `k`). Its ground truth is exact
//! brute force over all stored vectors, computed at creation, stored as its own immutable
//! object keyed by the index's manifest version, and recomputed when the index has grown
//! since: a recall figure is always against the vectors the graph was built from.

pub mod capture;
pub mod ground_truth;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::monitor::SampleRate;
use crate::names::{HarnessName, IndexName};
use crate::rng::SplitMix64;
use crate::storage::{keys, Storage, StorageError};
use crate::vectors::{Index, Indexes, QueryError, VectorSet, VectorsError, MAX_ID_LEN};
use capture::{Capture, CaptureState, Offered};

/// Most queries one harness may hold.
pub const MAX_QUERIES: usize = 100_000;
/// Largest `k` of a harness.
pub const MAX_K: usize = 1000;

/// Errors of the harness module.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// No such harness.
    #[error("harness {0} not found")]
    NotFound(HarnessName),
    /// A harness of that name exists.
    #[error("harness {0} already exists")]
    Exists(HarnessName),
    /// `k` below 1 or above the limit.
    #[error("k must be between 1 and {MAX_K}, got {0}")]
    InvalidK(i64),
    /// `k` above the number of stored vectors.
    #[error("k = {k} exceeds the {vectors} vectors stored in index {index}")]
    KTooLarge {
        /// Requested k.
        k: usize,
        /// Vectors stored.
        vectors: u64,
        /// The index.
        index: IndexName,
    },
    /// No queries, or a non-positive autogen count.
    #[error("a harness needs at least one query")]
    NoQueries,
    /// More queries than allowed or than vectors to sample from.
    #[error("{requested} queries requested, but at most {available} are available")]
    TooManyQueries {
        /// Asked for.
        requested: i64,
        /// The limit.
        available: u64,
    },
    /// A query vector is unusable.
    #[error("query {position}: {source}")]
    Query {
        /// Its place in the list.
        position: usize,
        /// Why.
        #[source]
        source: QueryError,
    },
    /// A query id is repeated or malformed.
    #[error("query id {0:?} is repeated or invalid (1..={MAX_ID_LEN} bytes, unique)")]
    QueryId(String),
    /// The harness belongs to another index than the one named.
    #[error("harness {harness} belongs to index {actual}, not {requested}")]
    WrongIndex {
        /// The harness.
        harness: HarnessName,
        /// Its index.
        actual: IndexName,
        /// The index named in the request.
        requested: IndexName,
    },
    /// From the vectors module (unknown index, ...).
    #[error(transparent)]
    Vectors(#[from] VectorsError),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A blocking task died.
    #[error("background task failed")]
    Task(#[source] tokio::task::JoinError),
    /// A captured harness that has no complete set of queries yet.
    #[error("harness {0} is still capturing: it has no queries to measure yet")]
    Capturing(HarnessName),
    /// A refresh of a harness that was not captured, or is capturing already.
    #[error("harness {0} {1}")]
    NotRefreshable(HarnessName, &'static str),
    /// A capture sample rate out of range.
    #[error("sample_rate must be between 0 and 1 (and above 0 to capture anything), got {0}")]
    InvalidSampleRate(f64),
}

impl crate::error::Classified for HarnessError {
    fn classify(&self) -> crate::error::Class {
        use crate::error::{Class, ErrorKind as K};
        use HarnessError as H;
        match self {
            H::NotFound(_) => Class::new(K::NotFound, "harness_not_found"),
            H::Exists(_) => Class::new(K::Conflict, "harness_exists"),
            H::InvalidK(_) => Class::invalid("invalid_k"),
            H::KTooLarge { .. } => Class::new(K::Unprocessable, "k_too_large"),
            H::NoQueries => Class::invalid("no_queries"),
            H::TooManyQueries { .. } => Class::new(K::Unprocessable, "too_many_queries"),
            H::Query { .. } => Class::invalid("invalid_query"),
            H::QueryId(_) => Class::invalid("invalid_query_id"),
            H::WrongIndex { .. } => Class::invalid("harness_index_mismatch"),
            H::Vectors(v) => v.classify(),
            H::Storage(s) => s.classify(),
            H::Task(_) => Class::INTERNAL,
            H::Capturing(_) => Class::new(K::Conflict, "harness_capturing"),
            H::NotRefreshable(..) => Class::new(K::Conflict, "harness_not_refreshable"),
            H::InvalidSampleRate(_) => Class::invalid("invalid_sample_rate"),
        }
    }
}

/// Result of the harness module.
pub type Result<T, E = HarnessError> = std::result::Result<T, E>;

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
        let available = (set.len() as u64).min(MAX_QUERIES as u64);
        if count as u64 > available {
            return Err(HarnessError::TooManyQueries {
                requested: count,
                available,
            });
        }
        let qs = SplitMix64::new(seed)
            .sample(set.len(), count as usize)
            .into_iter()
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

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<HarnessName, Live>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn live_view(&self, name: &HarnessName) -> Option<CaptureView> {
        self.live().get(name).map(|l| CaptureView {
            state: l.capture.state,
            have: l.capture.have(l.harness.queries.len()),
            want: l.capture.want,
        })
    }

    /// Starts capturing `want` distinct search vectors of `index` into a new harness
    /// `name` (refused like any new harness: a taken name is 409). The caller taps the
    /// index's searches into [`Harnesses::offer`].
    pub async fn start_capture(
        &self,
        name: HarnessName,
        index: &Index,
        want: i64,
        k: i64,
        sample_rate: Option<f64>,
    ) -> Result<HarnessView> {
        let k = check_k(k, index)?;
        if want < 1 {
            return Err(HarnessError::NoQueries);
        }
        if want > MAX_QUERIES as i64 {
            return Err(HarnessError::TooManyQueries {
                requested: want,
                available: MAX_QUERIES as u64,
            });
        }
        let rate = sample_rate.unwrap_or(1.0);
        let rate = SampleRate::parse("sample_rate", rate)
            .ok()
            .filter(|r| r.get() > 0.0)
            .ok_or(HarnessError::InvalidSampleRate(rate))?;
        let capture = Capture::new(want as usize, rate);
        let harness = Harness {
            name: name.clone(),
            index_name: index.meta().name.clone(),
            k,
            queries: Vec::new(),
            created_at: Utc::now(),
            autogen_seed: None,
            capture: Some(capture.clone()),
        };
        if self.load(&name).await?.is_some() {
            return Err(HarnessError::Exists(name));
        }
        match self.storage.put_json_new(&keys::harness(&name), &harness).await {
            Ok(()) => {}
            Err(StorageError::AlreadyExists { .. }) => return Err(HarnessError::Exists(name)),
            Err(e) => return Err(e.into()),
        }
        let harness = Arc::new(harness);
        self.cache().insert(name.clone(), (harness.clone(), None));
        self.track(harness.clone(), capture);
        let capture = self.live_view(&name);
        Ok(HarnessView {
            harness,
            ground_truth: None,
            capture,
        })
    }

    fn track(&self, harness: Arc<Harness>, capture: Capture) {
        let seen = capture.seen();
        let stored_at = capture.pending.len();
        self.live().insert(
            harness.name.clone(),
            Live {
                harness,
                capture,
                seen,
                stored_at,
            },
        );
    }

    /// Captures under way after a restart, as stored: `(harness, index, sample rate)`, now
    /// tracked again so their searches can be tapped.
    pub async fn resume_captures(&self) -> Result<Vec<(HarnessName, IndexName, SampleRate)>> {
        let mut out = Vec::new();
        for name in self.storage.list_children(&keys::harnesses_root()).await? {
            let Ok(name) = HarnessName::parse(name) else {
                continue;
            };
            let Some((h, _)) = self.load(&name).await? else {
                continue;
            };
            if let Some(c) = h.capture.clone().filter(|c| c.state == CaptureState::Capturing) {
                out.push((name, h.index_name.clone(), c.sample_rate));
                self.track(h, c);
            }
        }
        Ok(out)
    }

    /// Starts a new capture of a complete captured harness (the agent's
    /// `refresh_harness`); its queries stay until the new capture completes. Returns the
    /// index and sample rate to tap.
    pub async fn refresh_capture(&self, name: &HarnessName) -> Result<(IndexName, SampleRate)> {
        let (h, _) = self
            .load(name)
            .await?
            .ok_or_else(|| HarnessError::NotFound(name.clone()))?;
        let mut c = h.capture.clone().ok_or(HarnessError::NotRefreshable(
            name.clone(),
            "was not captured from live searches",
        ))?;
        if c.state == CaptureState::Capturing || self.live().contains_key(name) {
            return Err(HarnessError::NotRefreshable(name.clone(), "is capturing already"));
        }
        c.restart();
        let stored = Harness {
            capture: Some(c.clone()),
            ..(*h).clone()
        };
        self.storage
            .put_json_overwrite(&keys::harness(name), &stored)
            .await?;
        let stored = Arc::new(stored);
        let gt = self.cache().get(name).and_then(|e| e.1.clone());
        self.cache().insert(name.clone(), (stored.clone(), gt));
        let (index, rate) = (stored.index_name.clone(), c.sample_rate);
        self.track(stored, c);
        Ok((index, rate))
    }

    /// Offers a sampled search vector to capture `name`. Progress is stored every tenth
    /// of the way; on the last query wanted the queries become the harness's (stored in one
    /// overwrite), its old ground truth is dropped, and `Completed` tells the caller to
    /// untap it and compute the new one.
    pub async fn offer(&self, name: &HarnessName, vector: &[f32]) -> Result<Offered> {
        let (offered, store) = {
            let mut live = self.live();
            let Some(l) = live.get_mut(name) else {
                return Ok(Offered::Ignored);
            };
            let offered = l.capture.offer(&mut l.seen, vector);
            let step = (l.capture.want / 10).max(1);
            let store = match offered {
                Offered::Added(n) if n >= l.stored_at + step => {
                    l.stored_at = n;
                    Some(Harness {
                        capture: Some(l.capture.clone()),
                        ..(*l.harness).clone()
                    })
                }
                Offered::Completed => {
                    let mut c = l.capture.clone();
                    let queries = c.complete();
                    let done = Harness {
                        queries,
                        capture: Some(c),
                        ..(*l.harness).clone()
                    };
                    live.remove(name);
                    Some(done)
                }
                _ => None,
            };
            (offered, store)
        };
        if let Some(h) = store {
            let key = keys::harness(name);
            if offered == Offered::Completed {
                // the old revision's ground truth can never be current again
                let _one_at_a_time = self.gt_lock.lock().await;
                self.storage.delete_prefix(&keys::ground_truths(name)).await?;
                self.storage.put_json_overwrite(&key, &h).await?;
                self.cache().insert(name.clone(), (Arc::new(h), None));
                tracing::info!(harness = %name, "capture complete");
            } else {
                self.storage.put_json_overwrite(&key, &h).await?;
            }
        }
        Ok(offered)
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
