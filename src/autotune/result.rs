//! What a finished run reports: its winner, why it was (not) promoted, and what it measured
//! on the way (the wire form lives in `http::dto::autotune`).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{engine, refine, Candidate};
use crate::names::IndexName;

/// The outcome of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutotuneResult {
    /// The index.
    pub index_name: IndexName,
    /// Trials measured.
    pub trials_run: usize,
    /// Trials that cleared `min_recall`.
    pub trials_eligible: usize,
    /// Graphs built: trials that share `(m, ef_construction, seed)` share one build.
    pub builds: usize,
    /// The winner, if any.
    pub winner: Option<Candidate>,
    /// Whether it was promoted.
    pub promoted: bool,
    /// Wall time of the run.
    pub duration_secs: f64,
    /// Grid entries not run, with why.
    pub skipped: Vec<String>,
    /// Why the winner was (not) promoted; never empty when `promoted` is false.
    pub reason: Option<String>,
    /// The job that ran it, when it ran as one.
    pub job_id: Option<Uuid>,
    /// What refinement around the climb's winner measured (adaptive runs).
    #[serde(default)]
    pub refinement: Option<refine::RefineStats>,
    /// Trials that passed the recall bar but broke a cap, with why.
    #[serde(default)]
    pub ineligible: Vec<Ineligible>,
    /// Candidates measured on the held-out queries before one passed the bar there.
    #[serde(default)]
    pub validations: usize,
    /// Trials within 10 % of the winner's p50, re-measured interleaved against it.
    #[serde(default)]
    pub near_ties: Vec<engine::NearTie>,
    /// The highest recall any trial reached (none measured: `None`).
    #[serde(default)]
    pub best_recall: Option<f64>,
    /// The bounds the run's configs were held to (results stored before bounds were
    /// settings: `None`, which were the seed's).
    #[serde(default)]
    pub bounds: Option<crate::params::Bounds>,
    /// What the run did on a sample of the index before the full index, when it sampled.
    #[serde(default)]
    pub sample: Option<super::transfer::SampleReport>,
    /// Of `builds`, the graphs other instances of the fleet built for the run.
    #[serde(default)]
    pub builds_elsewhere: usize,
}

/// A trial kept from winning by a cap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ineligible {
    /// The trial.
    pub trial_id: Uuid,
    /// Which cap, by how much.
    pub reason: String,
}
