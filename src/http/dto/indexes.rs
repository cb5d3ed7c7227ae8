//! Indexes, vectors, activation, search and the live recall monitor.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ConfigOut, FreshOut};
use crate::monitor::{LiveStats, MonitorSettings};
use crate::service::{Activation, IndexView, SearchResult};
use crate::serving::fresh::Fresh;
use crate::serving::ActivationRecord;

/// `POST /vectors/indexes`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateIndex {
    /// Index name: `^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`.
    #[schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")]
    pub name: String,
    /// Dimensions (1..=4096).
    #[schema(minimum = 1, maximum = 4096)]
    pub dims: i64,
    /// `cosine`, `l2` or `dot`.
    pub metric: String,
}

/// One vector of an append.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VectorIn {
    /// Its id (unique in the index).
    pub id: String,
    /// Its values.
    pub vector: Vec<f32>,
}

/// `POST /vectors/indexes/{index}/vectors` (JSON).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Append {
    /// The batch.
    pub vectors: Vec<VectorIn>,
}

/// Answer of a JSON append.
#[derive(Debug, Serialize, ToSchema)]
pub struct Appended {
    /// Vectors added.
    pub appended: usize,
    /// Vectors now stored.
    pub total: u64,
}

/// `?format=` of an append.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AppendParams {
    /// `fvecs` or `npy` for a binary body (`application/octet-stream`); absent for JSON.
    #[serde(default)]
    pub format: Option<String>,
    /// `true`: ids already stored are replaced (the old vector deleted, the new one
    /// appended, in one batch). A binary body's ids are always new.
    #[serde(default)]
    pub upsert: Option<bool>,
}

/// Answer of a binary append.
#[derive(Debug, Serialize, ToSchema)]
pub struct AppendedBinary {
    /// Vectors added.
    pub appended: usize,
    /// Vectors now stored.
    pub total: u64,
    /// Id of the first row.
    pub first_id: String,
    /// Id of the last row.
    pub last_id: String,
}

/// Answer of either append.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum AppendOut {
    /// A binary batch.
    Binary(AppendedBinary),
    /// A JSON batch.
    Json(Appended),
}

/// What serves an index.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActiveOut {
    /// The config it was built with.
    pub config: ConfigOut,
    /// Its generation.
    pub generation: u64,
    /// When it went live.
    pub activated_at: DateTime<Utc>,
    /// Vectors it covers (its graph's rows less those deleted before it was built).
    pub vectors: u64,
    /// Writes since it was built, searched beside its graph until the next activation.
    pub fresh: FreshOut,
}

impl ActiveOut {
    fn of(r: &ActivationRecord, fresh: Option<Fresh>) -> Self {
        ActiveOut {
            config: r.config.into(),
            generation: r.generation,
            activated_at: r.activated_at,
            vectors: r.vectors.saturating_sub(r.deleted),
            fresh: fresh.unwrap_or_default().into(),
        }
    }
}

/// Live recall of the serving generation: sampled searches re-run exactly.
#[derive(Debug, Serialize, ToSchema)]
pub struct LiveOut {
    /// Sampled searches in the window.
    pub queries: usize,
    /// Mean recall@k of the window.
    pub recall_at_k: f64,
    /// Lower end of its 95 % interval.
    pub recall_ci_low: f64,
    /// Window size.
    pub window: usize,
    /// The generation the samples were answered by.
    pub generation: u64,
}

impl From<LiveStats> for LiveOut {
    fn from(l: LiveStats) -> Self {
        LiveOut {
            queries: l.queries,
            recall_at_k: l.recall_at_k,
            recall_ci_low: l.recall_ci_low,
            window: l.window,
            generation: l.generation,
        }
    }
}

/// The index object.
#[derive(Debug, Serialize, ToSchema)]
pub struct IndexOut {
    /// Name.
    pub name: String,
    /// Dimensions.
    pub dims: usize,
    /// Metric.
    pub metric: &'static str,
    /// Vectors stored.
    pub vectors: u64,
    /// What serves, or null.
    pub active: Option<ActiveOut>,
    /// Live recall of the serving generation (the monitor), or null before its first sample.
    pub live: Option<LiveOut>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

impl From<IndexView> for IndexOut {
    fn from(v: IndexView) -> Self {
        IndexOut {
            name: v.name.to_string(),
            dims: v.dims,
            metric: v.metric.as_str(),
            vectors: v.vectors,
            active: v.active.as_ref().map(|r| ActiveOut::of(r, v.fresh)),
            live: v.live.map(LiveOut::from),
            created_at: v.created_at,
        }
    }
}

/// `GET /vectors/indexes`.
#[derive(Debug, Serialize, ToSchema)]
pub struct IndexList {
    /// Every index, by name.
    pub indexes: Vec<IndexOut>,
}

/// Answer of an activation (and the result of an activation job).
#[derive(Debug, Serialize, ToSchema)]
pub struct ActivationOut {
    /// The index.
    pub index_name: String,
    /// The config built with.
    pub config: ConfigOut,
    /// The new generation.
    pub generation: u64,
    /// Build wall time.
    pub build_time_secs: f64,
    /// Vectors covered.
    pub vectors: u64,
    /// When it went live.
    pub activated_at: DateTime<Utc>,
    /// Whether the graph came from storage instead of a build.
    pub loaded_from_store: bool,
    /// Bytes of what serves: the f32 rows plus the frozen graph's links.
    pub memory_bytes: u64,
}

impl ActivationOut {
    /// From an index name and its activation record.
    pub fn of(index_name: &str, r: &ActivationRecord) -> ActivationOut {
        ActivationOut {
            index_name: index_name.to_string(),
            config: r.config.into(),
            generation: r.generation,
            build_time_secs: r.build_time_secs,
            vectors: r.vectors,
            activated_at: r.activated_at,
            loaded_from_store: r.loaded_from_store,
            memory_bytes: r.memory_bytes,
        }
    }
}

impl From<Activation> for ActivationOut {
    fn from(a: Activation) -> Self {
        ActivationOut::of(a.index_name.as_str(), &a.record)
    }
}

fn default_k() -> i64 {
    10
}

/// `POST /vectors/search/{index}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Search {
    /// Query vector.
    pub vector: Vec<f32>,
    /// Hits wanted (1..=1000, default 10).
    #[serde(default = "default_k")]
    #[schema(default = 10, minimum = 1, maximum = 1000)]
    pub k: i64,
    /// Per-request `ef_search` override.
    #[serde(default)]
    pub ef_search: Option<i64>,
}

/// One search hit.
#[derive(Debug, Serialize, ToSchema)]
pub struct HitOut {
    /// Vector id.
    pub id: String,
    /// Distance (smaller is nearer), exact also under `sq8`.
    pub distance: f32,
}

/// Answer of a search.
#[derive(Debug, Serialize, ToSchema)]
pub struct SearchOut {
    /// Hits, nearest first.
    pub hits: Vec<HitOut>,
    /// The serving config.
    pub config: ConfigOut,
    /// The serving generation.
    pub generation: u64,
    /// `max(ef_search, k)` as used.
    pub ef_search_used: u32,
}

impl From<SearchResult> for SearchOut {
    fn from(r: SearchResult) -> Self {
        SearchOut {
            hits: r
                .hits
                .into_iter()
                .map(|(id, distance)| HitOut { id, distance })
                .collect(),
            config: r.config.into(),
            generation: r.generation,
            ef_search_used: r.ef_search_used,
        }
    }
}

/// `PUT /vectors/indexes/{index}/monitor`: a field left out keeps its value.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MonitorIn {
    /// Share of searches re-run exactly, 0..=1.
    #[serde(default)]
    pub sample_rate: Option<f64>,
    /// Samples in the rolling window, 1..=1000000.
    #[serde(default)]
    pub window: Option<i64>,
}

/// The monitor settings of an index.
#[derive(Debug, Serialize, ToSchema)]
pub struct MonitorOut {
    /// Share of searches re-run exactly.
    pub sample_rate: f64,
    /// Samples in the rolling window.
    pub window: usize,
}

impl From<MonitorSettings> for MonitorOut {
    fn from(s: MonitorSettings) -> Self {
        MonitorOut {
            sample_rate: s.sample_rate.get(),
            window: s.window,
        }
    }
}
