//! Eval harnesses: explicit, sampled (autogen) and captured from live traffic.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::wire_enum;
use crate::harness::HarnessView;

fn default_k() -> i64 {
    10
}

fn default_seed() -> u64 {
    42
}

/// A query of an explicit harness.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryIn {
    /// Optional id (default `q<position>`).
    #[serde(default)]
    pub id: Option<String>,
    /// The vector.
    pub vector: Vec<f32>,
}

/// `POST /vectors/harness`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateHarness {
    /// Harness name.
    #[schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")]
    pub name: String,
    /// Index it measures.
    #[schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")]
    pub index_name: String,
    /// Neighbours per query (default 10).
    #[serde(default = "default_k")]
    #[schema(default = 10, minimum = 1, maximum = 1000)]
    pub k: i64,
    /// The queries.
    pub queries: Vec<QueryIn>,
}

/// `POST /vectors/harness/autogen`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AutogenHarness {
    /// Harness name.
    #[schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")]
    pub name: String,
    /// Index to sample from.
    #[schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")]
    pub index_name: String,
    /// How many stored vectors to sample.
    pub queries: i64,
    /// Neighbours per query (default 10).
    #[serde(default = "default_k")]
    #[schema(default = 10, minimum = 1, maximum = 1000)]
    pub k: i64,
    /// Sampling seed (default 42).
    #[serde(default = "default_seed")]
    #[schema(default = 42)]
    pub seed: u64,
}

/// `POST /vectors/harness/capture`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CaptureHarness {
    /// Harness name.
    #[schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")]
    pub name: String,
    /// The index whose searches are captured.
    #[schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")]
    pub index_name: String,
    /// Distinct queries wanted.
    pub queries: i64,
    /// Neighbours per query.
    pub k: i64,
    /// Share of searches sampled (default 1).
    #[serde(default)]
    pub sample_rate: Option<f64>,
}

/// A harness query with its ground truth.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueryOut {
    /// Id.
    pub id: String,
    /// Vector.
    pub vector: Vec<f32>,
    /// Exact top-k ids, or null when not computed for the current vectors.
    pub ground_truth: Option<Vec<String>>,
}

wire_enum! {
    /// `capturing` while searches are collected, then `complete`.
    CaptureStateOut from crate::harness::capture::CaptureState { Capturing, Complete }
}

/// Where a capture is.
#[derive(Debug, Serialize, ToSchema)]
pub struct CaptureOut {
    /// `capturing` or `complete`.
    pub state: CaptureStateOut,
    /// Distinct queries collected.
    pub have: usize,
    /// Queries wanted.
    pub want: usize,
}

/// The harness object.
#[derive(Debug, Serialize, ToSchema)]
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
                state: c.state.into(),
                have: c.have,
                want: c.want,
            }),
            created_at: h.created_at,
        }
    }
}
