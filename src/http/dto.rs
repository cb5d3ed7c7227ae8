//! Request and response bodies: the wire shapes of `shared/API.md`, nothing more.
//!
//! Requests deny unknown fields (a typo is a `400`, not a silently ignored setting);
//! responses are built from domain values by the `From` impls below.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::autotune::SpecFields;
use crate::harness::HarnessView;
use crate::hnsw::serving::ActivationRecord;
use crate::hnsw::{HnswConfig, RawHnswConfig};
use crate::jobs::Job;
use crate::promotion::{Entry, PromotedState};
use crate::service::{Activation, IndexView, SearchResult};
use crate::trials::Trial;

/// `POST /vectors/indexes`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateIndex {
    /// Index name.
    pub name: String,
    /// Dimensions.
    pub dims: i64,
    /// `cosine`, `l2` or `dot`.
    pub metric: String,
}

/// One vector of an append.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VectorIn {
    /// Its id.
    pub id: String,
    /// Its values.
    pub vector: Vec<f32>,
}

/// `POST /vectors/indexes/{index}/vectors`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Append {
    /// The batch.
    pub vectors: Vec<VectorIn>,
}

/// Answer of an append.
#[derive(Debug, Serialize)]
pub struct Appended {
    /// Vectors added.
    pub appended: usize,
    /// Vectors now stored.
    pub total: u64,
}

/// `?format=` of an append.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppendParams {
    /// `fvecs` or `npy` for a binary body; absent for JSON.
    #[serde(default)]
    pub format: Option<String>,
}

/// Answer of a binary append.
#[derive(Debug, Serialize)]
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

/// What serves an index.
#[derive(Debug, Serialize)]
pub struct ActiveOut {
    /// The config it was built with.
    pub config: HnswConfig,
    /// Its generation.
    pub generation: u64,
    /// When it went live.
    pub activated_at: DateTime<Utc>,
    /// Vectors it covers.
    pub vectors: u64,
}

impl From<&ActivationRecord> for ActiveOut {
    fn from(r: &ActivationRecord) -> Self {
        ActiveOut {
            config: r.config,
            generation: r.generation,
            activated_at: r.activated_at,
            vectors: r.vectors,
        }
    }
}

/// The index object.
#[derive(Debug, Serialize)]
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
    pub live: Option<crate::monitor::LiveStats>,
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
            active: v.active.as_ref().map(ActiveOut::from),
            live: v.live,
            created_at: v.created_at,
        }
    }
}

/// `GET /vectors/indexes`.
#[derive(Debug, Serialize)]
pub struct IndexList {
    /// Every index.
    pub indexes: Vec<IndexOut>,
}

/// Answer of an activation.
#[derive(Debug, Serialize)]
pub struct ActivationOut {
    /// The index.
    pub index_name: String,
    /// The config built with.
    pub config: HnswConfig,
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

impl From<Activation> for ActivationOut {
    fn from(a: Activation) -> Self {
        ActivationOut {
            index_name: a.index_name.to_string(),
            config: a.record.config,
            generation: a.record.generation,
            build_time_secs: a.record.build_time_secs,
            vectors: a.record.vectors,
            activated_at: a.record.activated_at,
            loaded_from_store: a.record.loaded_from_store,
            memory_bytes: a.record.memory_bytes,
        }
    }
}

fn default_k() -> i64 {
    10
}

/// `POST /vectors/search/{index}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Search {
    /// Query vector.
    pub vector: Vec<f32>,
    /// Hits wanted (default 10).
    #[serde(default = "default_k")]
    pub k: i64,
    /// Per-request `ef_search` override.
    #[serde(default)]
    pub ef_search: Option<i64>,
}

/// One search hit.
#[derive(Debug, Serialize)]
pub struct HitOut {
    /// Vector id.
    pub id: String,
    /// Distance (smaller is nearer).
    pub distance: f32,
}

/// Answer of a search.
#[derive(Debug, Serialize)]
pub struct SearchOut {
    /// Hits, nearest first.
    pub hits: Vec<HitOut>,
    /// The serving config.
    pub config: HnswConfig,
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
            config: r.config,
            generation: r.generation,
            ef_search_used: r.ef_search_used,
        }
    }
}

/// A query of an explicit harness.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryIn {
    /// Optional id.
    #[serde(default)]
    pub id: Option<String>,
    /// The vector.
    pub vector: Vec<f32>,
}

/// `POST /vectors/harness`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateHarness {
    /// Harness name.
    pub name: String,
    /// Index it measures.
    pub index_name: String,
    /// Neighbours per query (default 10).
    #[serde(default = "default_k")]
    pub k: i64,
    /// The queries.
    pub queries: Vec<QueryIn>,
}

fn default_seed() -> u64 {
    42
}

/// `POST /vectors/harness/autogen`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutogenHarness {
    /// Harness name.
    pub name: String,
    /// Index to sample from.
    pub index_name: String,
    /// How many stored vectors to sample.
    pub queries: i64,
    /// Neighbours per query (default 10).
    #[serde(default = "default_k")]
    pub k: i64,
    /// Sampling seed (default 42).
    #[serde(default = "default_seed")]
    pub seed: u64,
}

/// A harness query with its ground truth.
#[derive(Debug, Serialize)]
pub struct QueryOut {
    /// Id.
    pub id: String,
    /// Vector.
    pub vector: Vec<f32>,
    /// Exact top-k ids, or null when not computed for the current vectors.
    pub ground_truth: Option<Vec<String>>,
}

/// The harness object.
#[derive(Debug, Serialize)]
pub struct HarnessOut {
    /// Name.
    pub name: String,
    /// Its index.
    pub index_name: String,
    /// k.
    pub k: usize,
    /// Queries.
    pub queries: Vec<QueryOut>,
    /// Whether ground truth is computed for the index's current vectors.
    pub ground_truth_built: bool,
    /// How many vectors the shown ground truth covers.
    pub ground_truth_vectors: Option<u64>,
    /// How long its exact brute force took.
    pub ground_truth_compute_secs: Option<f64>,
    /// Seed of an autogen harness.
    pub autogen_seed: Option<u64>,
    /// A captured harness's capture, else null.
    pub capture: Option<CaptureOut>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// Where a capture is.
#[derive(Debug, Serialize)]
pub struct CaptureOut {
    /// `capturing` or `complete`.
    pub state: crate::harness::capture::CaptureState,
    /// Distinct queries collected.
    pub have: usize,
    /// Queries wanted.
    pub want: usize,
}

impl From<HarnessView> for HarnessOut {
    fn from(v: HarnessView) -> Self {
        let h = &v.harness;
        let gt = v.ground_truth.as_ref();
        HarnessOut {
            name: h.name.to_string(),
            index_name: h.index_name.to_string(),
            k: h.k,
            queries: h
                .queries
                .iter()
                .enumerate()
                .map(|(i, q)| QueryOut {
                    id: q.id.clone(),
                    vector: q.vector.clone(),
                    ground_truth: gt.and_then(|g| g.ids.get(i).cloned()),
                })
                .collect(),
            ground_truth_built: gt.is_some(),
            ground_truth_vectors: gt.map(|g| g.vectors),
            ground_truth_compute_secs: gt.map(|g| g.compute_secs),
            autogen_seed: h.autogen_seed,
            capture: v.capture.map(|c| CaptureOut {
                state: c.state,
                have: c.have,
                want: c.want,
            }),
            created_at: h.created_at,
        }
    }
}

/// `POST /vectors/harness/capture`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureHarness {
    /// Harness name.
    pub name: String,
    /// The index whose searches are captured.
    pub index_name: String,
    /// Distinct queries wanted.
    pub queries: i64,
    /// Neighbours per query.
    pub k: i64,
    /// Share of searches sampled (default 1).
    #[serde(default)]
    pub sample_rate: Option<f64>,
}

/// `PUT /vectors/indexes/{index}/monitor`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorIn {
    /// Share of searches re-run exactly.
    #[serde(default)]
    pub sample_rate: Option<f64>,
    /// Samples in the rolling window.
    #[serde(default)]
    pub window: Option<i64>,
}

/// The monitor settings of an index.
#[derive(Debug, Serialize)]
pub struct MonitorOut {
    /// Share of searches re-run exactly.
    pub sample_rate: f64,
    /// Samples in the rolling window.
    pub window: usize,
}

impl From<crate::monitor::MonitorSettings> for MonitorOut {
    fn from(s: crate::monitor::MonitorSettings) -> Self {
        MonitorOut {
            sample_rate: s.sample_rate.get(),
            window: s.window,
        }
    }
}

/// `POST /vectors/hnsw/trial`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrialIn {
    /// The index.
    pub index_name: String,
    /// The harness.
    pub harness: String,
    /// The config to measure.
    pub config: RawHnswConfig,
    /// Free text for the journal.
    #[serde(default)]
    pub note: Option<String>,
}

/// `GET /vectors/hnsw/trials/{index}`.
#[derive(Debug, Serialize)]
pub struct TrialList {
    /// Oldest first.
    pub trials: Vec<std::sync::Arc<Trial>>,
}

/// `?harness=` of the trial listing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrialFilter {
    /// Only trials of this harness.
    #[serde(default)]
    pub harness: Option<String>,
}

/// `?harness=&axes=` of the Pareto frontier.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParetoParams {
    /// Only trials of this harness.
    #[serde(default)]
    pub harness: Option<String>,
    /// Comma-separated objectives: `recall`, `p50`, `memory` (default `recall,p50`).
    #[serde(default)]
    pub axes: Option<String>,
}

/// `?promoted_by=&note=` of a promotion.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromoteParams {
    /// Who promotes (default `api`).
    #[serde(default)]
    pub promoted_by: Option<String>,
    /// Why.
    #[serde(default)]
    pub note: Option<String>,
}

/// The promoted state of an index.
#[derive(Debug, Serialize)]
pub struct PromotedOut {
    /// The index.
    pub index_name: String,
    /// What the next activation builds with.
    pub current: Option<Entry>,
    /// Earlier currents, newest first.
    pub history: Vec<Entry>,
}

impl PromotedOut {
    /// From the registry state.
    pub fn new(index_name: &str, s: PromotedState) -> PromotedOut {
        PromotedOut {
            index_name: index_name.to_string(),
            current: s.current,
            history: s.history,
        }
    }
}

/// `POST /vectors/hnsw/autotune`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutotuneIn {
    /// The index.
    pub index_name: String,
    /// The harness.
    pub harness: String,
    /// Recall gate (default 0.9).
    #[serde(default)]
    pub min_recall: Option<f64>,
    /// Configs to try (default: the seed grid).
    #[serde(default)]
    pub grid: Option<Vec<RawHnswConfig>>,
    /// `max_recall` (default) or `min_latency`.
    #[serde(default)]
    pub objective: Option<String>,
    /// Recall bar of `min_latency` (default 0.95).
    #[serde(default)]
    pub target_recall: Option<f64>,
    /// `point` (default) or `wilson`.
    #[serde(default)]
    pub gate: Option<String>,
    /// `if_better` (default), `always` or `never`.
    #[serde(default)]
    pub promote: Option<String>,
    /// `grid` (default) or `adaptive`.
    #[serde(default)]
    pub strategy: Option<String>,
    /// Trial cap of `adaptive` (default 40).
    #[serde(default)]
    pub max_trials: Option<i64>,
    /// Wall-time cap of `adaptive`, seconds (default 300).
    #[serde(default)]
    pub budget_secs: Option<f64>,
    /// Held-out share of the harness queries, 0..0.5 (default 0).
    #[serde(default)]
    pub validation_fraction: Option<f64>,
    /// Least latency gain `if_better` promotes on, 0..1 (default 0.05).
    #[serde(default)]
    pub min_improvement: Option<f64>,
    /// Memory cap of an eligible trial, bytes.
    #[serde(default)]
    pub max_memory_bytes: Option<i64>,
    /// Build-time cap of an eligible trial, seconds.
    #[serde(default)]
    pub max_build_secs: Option<f64>,
}

impl AutotuneIn {
    /// The fields the autotune rules parse.
    pub fn fields(self) -> (String, String, SpecFields) {
        (
            self.index_name,
            self.harness,
            SpecFields {
                min_recall: self.min_recall,
                grid: self.grid,
                objective: self.objective,
                target_recall: self.target_recall,
                gate: self.gate,
                promote: self.promote,
                strategy: self.strategy,
                max_trials: self.max_trials,
                budget_secs: self.budget_secs,
                validation_fraction: self.validation_fraction,
                min_improvement: self.min_improvement,
                max_memory_bytes: self.max_memory_bytes,
                max_build_secs: self.max_build_secs,
            },
        )
    }
}

/// `?async=` of an autotune or an activation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AsyncParams {
    /// Run as a job and answer 202 at once.
    #[serde(default, rename = "async")]
    pub run_async: Option<bool>,
}

/// `202` answer of an async autotune.
#[derive(Debug, Serialize)]
pub struct JobAccepted {
    /// The job.
    pub job_id: uuid::Uuid,
    /// Where to poll it: `/vectors/jobs/{job_id}`.
    pub status_url: String,
}

impl JobAccepted {
    /// The 202 body of `job`.
    pub fn of(job: &Job) -> JobAccepted {
        JobAccepted {
            job_id: job.id,
            status_url: format!("/vectors/jobs/{}", job.id),
        }
    }
}

/// `?index=` of the job listing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobsParams {
    /// The index whose jobs to list.
    pub index: String,
}

/// `GET /vectors/jobs?index=`.
#[derive(Debug, Serialize)]
pub struct JobList {
    /// Newest first.
    pub jobs: Vec<Job>,
}

/// One point of the Pareto frontier.
#[derive(Debug, Serialize)]
pub struct ParetoPoint {
    /// The trial.
    pub trial_id: uuid::Uuid,
    /// Its config.
    pub config: HnswConfig,
    /// Its recall.
    pub recall_at_k: f64,
    /// Its p50 latency.
    pub search_latency_p50_us: f64,
    /// Its machine-independent cost.
    pub distance_evals_per_query: f64,
    /// The build time of its graph.
    pub build_time_secs: f64,
    /// Bytes of what would serve.
    pub memory_bytes: u64,
}

/// `GET /vectors/hnsw/pareto/{index}`.
#[derive(Debug, Serialize)]
pub struct ParetoOut {
    /// The index.
    pub index_name: String,
    /// The harness filter, if any.
    pub harness: Option<String>,
    /// The objectives the frontier is over.
    pub axes: Vec<&'static str>,
    /// The frontier, recall ascending.
    pub points: Vec<ParetoPoint>,
}

impl From<&Trial> for ParetoPoint {
    fn from(t: &Trial) -> Self {
        ParetoPoint {
            trial_id: t.id,
            config: t.config,
            recall_at_k: t.metrics.recall_at_k,
            search_latency_p50_us: t.metrics.search_latency_p50_us,
            distance_evals_per_query: t.metrics.distance_evals_per_query,
            build_time_secs: t.metrics.build_time_secs,
            memory_bytes: t.metrics.memory_bytes,
        }
    }
}
