//! Trials, the Pareto frontier and the promotion registry.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{wire_enum, ConfigOut};
use crate::params::RawHnswConfig;
use crate::promotion::{Entry, PromotedState};
use crate::trials::{Trial, TrialMetrics, Validation};

/// `POST /vectors/hnsw/trial`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrialIn {
    /// The index.
    #[schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")]
    pub index_name: String,
    /// The harness.
    #[schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")]
    pub harness: String,
    /// The config to measure.
    pub config: RawHnswConfig,
    /// Free text for the journal.
    #[serde(default)]
    pub note: Option<String>,
}

wire_enum! {
    /// Who ran a trial.
    SourceOut from crate::trials::Source { Manual, Autotune, Agent }
}

/// What a trial measured.
#[derive(Debug, Serialize, ToSchema)]
pub struct MetricsOut {
    /// Graph build wall time (0 when the run reused a graph).
    pub build_time_secs: f64,
    /// Median search latency, µs.
    pub search_latency_p50_us: f64,
    /// 95th percentile, µs.
    pub search_latency_p95_us: f64,
    /// 99th percentile, µs.
    pub search_latency_p99_us: f64,
    /// Mean recall@k against exact ground truth.
    pub recall_at_k: f64,
    /// Bytes of what would serve.
    pub memory_bytes: u64,
    /// Vectors in the graph.
    pub vectors: u64,
    /// Harness queries measured.
    pub eval_queries: u64,
    /// Exact brute force per query, µs (the baseline).
    pub brute_force_latency_us: f64,
    /// Lower end of the recall's 95 % Wilson interval.
    pub recall_ci_low: f64,
    /// Distance evaluations per query (machine-independent cost).
    pub distance_evals_per_query: f64,
    /// Mean search latency, µs.
    pub search_latency_mean_us: f64,
    /// Queries per second on one thread.
    pub qps: f64,
    /// 10th percentile of per-query recall (nearest rank): the tail the mean hides.
    pub recall_p10: f64,
}

impl From<&TrialMetrics> for MetricsOut {
    fn from(m: &TrialMetrics) -> Self {
        MetricsOut {
            build_time_secs: m.build_time_secs,
            search_latency_p50_us: m.search_latency_p50_us,
            search_latency_p95_us: m.search_latency_p95_us,
            search_latency_p99_us: m.search_latency_p99_us,
            recall_at_k: m.recall_at_k,
            memory_bytes: m.memory_bytes,
            vectors: m.vectors,
            eval_queries: m.eval_queries,
            brute_force_latency_us: m.brute_force_latency_us,
            recall_ci_low: m.recall_ci_low,
            distance_evals_per_query: m.distance_evals_per_query,
            search_latency_mean_us: m.search_latency_mean_us,
            qps: m.qps,
            recall_p10: m.recall_p10,
        }
    }
}

/// A measurement on held-out queries.
#[derive(Debug, Serialize, ToSchema)]
pub struct ValidationOut {
    /// Recall on the held-out queries.
    pub recall_at_k: f64,
    /// Median latency on them, µs.
    pub search_latency_p50_us: f64,
    /// Held-out queries measured.
    pub eval_queries: u64,
}

impl From<&Validation> for ValidationOut {
    fn from(v: &Validation) -> Self {
        ValidationOut {
            recall_at_k: v.recall_at_k,
            search_latency_p50_us: v.search_latency_p50_us,
            eval_queries: v.eval_queries,
        }
    }
}

/// A journaled trial.
#[derive(Debug, Serialize, ToSchema)]
pub struct TrialOut {
    /// UUIDv7.
    pub id: Uuid,
    /// The index.
    pub index_name: String,
    /// The harness measured against.
    pub eval_set: String,
    /// The config.
    pub config: ConfigOut,
    /// When.
    pub created_at: DateTime<Utc>,
    /// Free text.
    pub note: Option<String>,
    /// Who ran it.
    pub source: SourceOut,
    /// What it measured.
    pub metrics: MetricsOut,
    /// Held-out measurement of an autotune winner, if any.
    pub validation: Option<ValidationOut>,
    /// Epoch of the autotune / agent lease its run held (the fencing token); null for a
    /// trial run on its own.
    pub lease_epoch: Option<u64>,
}

impl From<&Trial> for TrialOut {
    fn from(t: &Trial) -> Self {
        TrialOut {
            id: t.id,
            index_name: t.index_name.to_string(),
            eval_set: t.eval_set.to_string(),
            config: t.config.into(),
            created_at: t.created_at,
            note: t.note.clone(),
            source: t.source.into(),
            metrics: (&t.metrics).into(),
            validation: t.validation.as_ref().map(ValidationOut::from),
            lease_epoch: t.lease_epoch,
        }
    }
}

/// `GET /vectors/hnsw/trials/{index}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TrialList {
    /// Oldest first.
    pub trials: Vec<TrialOut>,
}

/// `?harness=` of the trial listing.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TrialFilter {
    /// Only trials of this harness.
    #[serde(default)]
    pub harness: Option<String>,
}

/// `?harness=&axes=` of the Pareto frontier.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ParetoParams {
    /// Only trials of this harness.
    #[serde(default)]
    pub harness: Option<String>,
    /// Comma-separated objectives: `recall`, `p50`, `memory` (default `recall,p50`).
    #[serde(default)]
    pub axes: Option<String>,
}

/// One point of the Pareto frontier.
#[derive(Debug, Serialize, ToSchema)]
pub struct ParetoPoint {
    /// The trial.
    pub trial_id: Uuid,
    /// Its config.
    pub config: ConfigOut,
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

impl From<&Trial> for ParetoPoint {
    fn from(t: &Trial) -> Self {
        ParetoPoint {
            trial_id: t.id,
            config: t.config.into(),
            recall_at_k: t.metrics.recall_at_k,
            search_latency_p50_us: t.metrics.search_latency_p50_us,
            distance_evals_per_query: t.metrics.distance_evals_per_query,
            build_time_secs: t.metrics.build_time_secs,
            memory_bytes: t.metrics.memory_bytes,
        }
    }
}

/// `GET /vectors/hnsw/pareto/{index}`.
#[derive(Debug, Serialize, ToSchema)]
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

/// `?promoted_by=&note=` of a promotion.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PromoteParams {
    /// Who promotes (default `api`).
    #[serde(default)]
    pub promoted_by: Option<String>,
    /// Why.
    #[serde(default)]
    pub note: Option<String>,
}

/// One promotion of the registry.
#[derive(Debug, Serialize, ToSchema)]
pub struct EntryOut {
    /// The promoted config.
    pub config: ConfigOut,
    /// The trial it came from.
    pub trial_id: Uuid,
    /// When.
    pub promoted_at: DateTime<Utc>,
    /// Who (`api`, `autotune`, `agent`, or a caller's name).
    pub promoted_by: String,
    /// Why.
    pub note: Option<String>,
    /// Epoch of the lease the promoting run held; null for a promotion by hand.
    pub lease_epoch: Option<u64>,
}

impl From<Entry> for EntryOut {
    fn from(e: Entry) -> Self {
        EntryOut {
            config: e.config.into(),
            trial_id: e.trial_id,
            promoted_at: e.promoted_at,
            promoted_by: e.promoted_by,
            note: e.note,
            lease_epoch: e.lease_epoch,
        }
    }
}

/// The promoted state of an index.
#[derive(Debug, Serialize, ToSchema)]
pub struct PromotedOut {
    /// The index.
    pub index_name: String,
    /// What the next activation builds with.
    pub current: Option<EntryOut>,
    /// Earlier currents, newest first.
    pub history: Vec<EntryOut>,
}

impl PromotedOut {
    /// From the registry state.
    pub fn new(index_name: &str, s: PromotedState) -> PromotedOut {
        PromotedOut {
            index_name: index_name.to_string(),
            current: s.current.map(EntryOut::from),
            history: s.history.into_iter().map(EntryOut::from).collect(),
        }
    }
}
