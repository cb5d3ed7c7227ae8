//! Autotune: the request (its rules are the core's one raw input, [`SpecFields`]) and
//! the result.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{ConfigOut, ValidationOut};
use crate::autotune::assure::Assurance;
use crate::autotune::{AutotuneResult, Candidate, SpecFields};

/// `POST /vectors/hnsw/autotune`: the index and harness, and the run's rules.
#[derive(Debug, Deserialize, ToSchema)]
pub struct AutotuneIn {
    /// The index.
    #[schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")]
    pub index_name: String,
    /// The harness.
    #[schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")]
    pub harness: String,
    /// The rules (every field optional).
    #[serde(flatten)]
    pub spec: SpecFields,
    /// Fields nobody asked for: refused, so a typo is not a silently ignored setting.
    #[serde(flatten)]
    #[schema(ignore)]
    pub unknown: BTreeMap<String, serde_json::Value>,
}

/// A run's winner.
#[derive(Debug, Serialize, ToSchema)]
pub struct CandidateOut {
    /// Its trial.
    pub trial_id: Uuid,
    /// Its config.
    pub config: ConfigOut,
    /// Recall on the tuning queries.
    pub recall_at_k: f64,
    /// Median latency, µs.
    pub search_latency_p50_us: f64,
    /// Build time of its graph.
    pub build_time_secs: f64,
    /// Lower end of its recall's 95 % interval.
    pub recall_ci_low: f64,
    /// Bytes of what would serve.
    pub memory_bytes: u64,
    /// Distance evaluations per query.
    pub distance_evals_per_query: f64,
    /// Its held-out measurement, when the run held queries out.
    pub validation: Option<ValidationOut>,
    /// How the gate judged its recall.
    pub assurance: Option<AssuranceOut>,
}

/// How the gate judged the winner's recall; fields a gate does not compute are null.
#[derive(Debug, Serialize, ToSchema)]
pub struct AssuranceOut {
    /// `confident`, `point` or `wilson`.
    pub gate: String,
    /// How the bound was computed.
    pub method: Option<String>,
    /// The recall estimate the gate used.
    pub recall_estimate: Option<f64>,
    /// The bound it compared with `target_recall` (the confident gate's: query-level,
    /// selection-corrected).
    pub recall_ci_low: Option<f64>,
    /// Queries the estimate is over.
    pub queries: Option<u64>,
    /// Eligible near-ties re-measured interleaved against the winner.
    pub near_ties_compared: Option<u64>,
    /// Graphs the selection correction counted.
    pub graphs_compared: Option<u64>,
}

impl From<&Assurance> for AssuranceOut {
    fn from(a: &Assurance) -> Self {
        AssuranceOut {
            gate: a.gate.clone(),
            method: a.method.clone(),
            recall_estimate: a.recall_estimate,
            recall_ci_low: a.recall_ci_low,
            queries: a.queries,
            near_ties_compared: a.near_ties_compared,
            graphs_compared: a.graphs_compared,
        }
    }
}

impl From<&Candidate> for CandidateOut {
    fn from(c: &Candidate) -> Self {
        CandidateOut {
            trial_id: c.trial_id,
            config: c.config.into(),
            recall_at_k: c.recall_at_k,
            search_latency_p50_us: c.search_latency_p50_us,
            build_time_secs: c.build_time_secs,
            recall_ci_low: c.recall_ci_low,
            memory_bytes: c.memory_bytes,
            distance_evals_per_query: c.distance_evals_per_query,
            validation: c.validation.as_ref().map(ValidationOut::from),
            assurance: c.assurance.as_ref().map(AssuranceOut::from),
        }
    }
}

/// What the refinement pass around the winner cost.
#[derive(Debug, Serialize, ToSchema)]
pub struct RefinementOut {
    /// Trials it ran.
    pub trials: usize,
    /// Graphs it built.
    pub builds: usize,
}

/// A trial that cleared the gate but broke a cap.
#[derive(Debug, Serialize, ToSchema)]
pub struct IneligibleOut {
    /// The trial.
    pub trial_id: Uuid,
    /// Which cap, with the figures.
    pub reason: String,
}

/// An eligible config within the noise of the winner.
#[derive(Debug, Serialize, ToSchema)]
pub struct NearTieOut {
    /// Its trial.
    pub trial_id: Uuid,
    /// Its config.
    pub config: ConfigOut,
    /// `faster`, `slower` or `tie` against the winner, from the interleaved comparison.
    pub latency_vs_winner: String,
    /// Its latency over the winner's.
    pub ratio: f64,
    /// Lower end of the ratio's bootstrap interval.
    pub low: f64,
    /// Upper end.
    pub high: f64,
}

/// An autotune's result (the sync answer, and an autotune job's `result`).
#[derive(Debug, Serialize, ToSchema)]
pub struct AutotuneOut {
    /// The index.
    pub index_name: String,
    /// Trials run (and journaled).
    pub trials_run: usize,
    /// Trials that cleared the gate and the caps.
    pub trials_eligible: usize,
    /// Graphs built (trials sharing m, ef_construction, seed and quantization share one).
    pub builds: usize,
    /// The pick, or null when nothing was eligible.
    pub winner: Option<CandidateOut>,
    /// Whether the winner was promoted.
    pub promoted: bool,
    /// Wall time of the run.
    pub duration_secs: f64,
    /// Grid configs refused, with why.
    pub skipped: Vec<String>,
    /// Why nothing was promoted, or what the promotion rule decided.
    pub reason: Option<String>,
    /// The job that ran it, if async.
    pub job_id: Option<Uuid>,
    /// The refinement pass, when one ran.
    pub refinement: Option<RefinementOut>,
    /// Trials over a memory or build-time cap.
    pub ineligible: Vec<IneligibleOut>,
    /// Held-out measurements made.
    pub validations: usize,
    /// Eligible configs the interleaved comparison could not tell from the winner.
    pub near_ties: Vec<NearTieOut>,
    /// The highest recall@k any trial reached (null when none was measured): with no
    /// winner, how far the run got.
    pub best_recall: Option<f64>,
    /// The bounds the run's configs were held to (the server's `[tuning]` settings).
    pub bounds: BoundsOut,
    /// What the run did on a uniform sample before the full index (null: it tuned the
    /// index whole). Only the full index's trials are journaled and can win.
    pub sample: Option<SampleOut>,
    /// Of `builds`, the graphs other live instances on the bucket built for this run and
    /// it loaded from the store (0 on an instance alone, or with `tuning.fleet_builds` off).
    pub builds_elsewhere: usize,
}

/// A sampled run's two sizes.
#[derive(Debug, Serialize, ToSchema)]
pub struct SampleOut {
    /// Rows of the sample.
    pub rows: usize,
    /// Rows of the index.
    pub of_rows: usize,
    /// `auto` (the run chose the size) or `request` (`sample_rows`).
    pub chosen_by: String,
    /// Trials measured on the sample (not journaled).
    pub trials: usize,
    /// Graphs built on the sample.
    pub builds: usize,
    /// Their builder: `native_sq8` (on codes: they only rank configs) unless the index's
    /// builder is the reference `hnsw_rs`; the full index's graphs are the index's builder's.
    pub engine: String,
    /// Graphs built on the full index (stored: the winner's activation loads its graph).
    pub full_builds: usize,
    /// The graphs built on the full index, in order, each at the `ef_search` it started
    /// from there (the one it passed with on the sample; a graph made stronger after one
    /// failed, at the failed one's).
    pub leading: Vec<ConfigOut>,
    /// The first transferred config's recall on the sample and on the full index.
    pub transfer: Option<TransferOut>,
    /// Seconds the sample's part took.
    pub secs: f64,
    /// The first full build's seconds as forecast from the sample's builds (a law fitted to
    /// them, scaled to the full size).
    pub full_build_forecast_secs: Option<f64>,
    /// The first full build's seconds as measured.
    pub full_build_secs: Option<f64>,
}

/// How far a config's recall moved from the sample to the full index.
#[derive(Debug, Serialize, ToSchema)]
pub struct TransferOut {
    /// The config.
    pub config: ConfigOut,
    /// Recall@k on the sample, against its exact ground truth.
    pub sample_recall: f64,
    /// Recall@k on the full index, against the full ground truth.
    pub full_recall: f64,
    /// `sample_recall - full_recall`: positive when the full index is harder.
    pub error: f64,
}

impl From<&crate::autotune::transfer::SampleReport> for SampleOut {
    fn from(s: &crate::autotune::transfer::SampleReport) -> Self {
        SampleOut {
            rows: s.rows,
            of_rows: s.of_rows,
            chosen_by: s.chosen_by.clone(),
            trials: s.trials,
            builds: s.builds,
            engine: s.engine.as_str().to_string(),
            full_builds: s.full_builds,
            leading: s.leading.iter().map(|&c| c.into()).collect(),
            transfer: s.transfer.as_ref().map(|t| TransferOut {
                config: t.config.into(),
                sample_recall: t.sample_recall,
                full_recall: t.full_recall,
                error: t.error(),
            }),
            secs: s.secs,
            full_build_forecast_secs: s.full_build_forecast_secs,
            full_build_secs: s.full_build_secs,
        }
    }
}

/// The bounds of configs (lower bounds are fixed: `ef_construction`, `ef_search` ≥ 10, `m` ≥ 4).
#[derive(Debug, Serialize, ToSchema)]
pub struct BoundsOut {
    /// Largest `ef_search`.
    pub max_ef_search: u32,
    /// Largest `ef_construction`.
    pub max_ef_construction: u32,
    /// Largest `m`.
    pub max_m: u32,
}

impl From<crate::params::Bounds> for BoundsOut {
    fn from(b: crate::params::Bounds) -> Self {
        BoundsOut {
            max_ef_search: b.max_ef_search,
            max_ef_construction: b.max_ef_construction,
            max_m: b.max_m,
        }
    }
}

impl From<&AutotuneResult> for AutotuneOut {
    fn from(r: &AutotuneResult) -> Self {
        AutotuneOut {
            index_name: r.index_name.to_string(),
            trials_run: r.trials_run,
            trials_eligible: r.trials_eligible,
            builds: r.builds,
            winner: r.winner.as_ref().map(CandidateOut::from),
            promoted: r.promoted,
            duration_secs: r.duration_secs,
            skipped: r.skipped.clone(),
            reason: r.reason.clone(),
            job_id: r.job_id,
            refinement: r.refinement.as_ref().map(|s| RefinementOut {
                trials: s.trials,
                builds: s.builds,
            }),
            ineligible: r
                .ineligible
                .iter()
                .map(|i| IneligibleOut {
                    trial_id: i.trial_id,
                    reason: i.reason.clone(),
                })
                .collect(),
            validations: r.validations,
            near_ties: r
                .near_ties
                .iter()
                .map(|t| NearTieOut {
                    trial_id: t.trial_id,
                    config: t.config.into(),
                    latency_vs_winner: t.latency_vs_winner.clone(),
                    ratio: t.ratio,
                    low: t.low,
                    high: t.high,
                })
                .collect(),
            best_recall: r.best_recall,
            bounds: r.bounds.unwrap_or(crate::params::Bounds::SEED).into(),
            sample: r.sample.as_ref().map(SampleOut::from),
            builds_elsewhere: r.builds_elsewhere,
        }
    }
}
