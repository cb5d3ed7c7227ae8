//! Autotune: measure a grid of configs through the trial journal, pick a winner that clears
//! the recall gate, promote it.
//!
//! This module holds the rules (which configs run, which trial wins, one run per index at a
//! time); the service runs the trials. Winner: the highest recall among trials with
//! `recall_at_k >= min_recall`, ties broken by the lower p50 latency, then by the earlier
//! trial, so the choice is a total order with no NaN anywhere.

pub mod adaptive;
pub mod decide;
pub mod engine;
pub mod refine;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::hnsw::{Engine, GraphId, HnswConfig, RawHnswConfig};
use crate::names::IndexName;
use crate::rng::SplitMix64;
use crate::trials::Validation;

/// The seed's default grid, `(ef_construction, ef_search)` at m=16, seed 42.
pub const DEFAULT_GRID: [(u32, u32); 5] = [(20, 30), (40, 30), (80, 30), (80, 60), (160, 30)];
/// `min_recall` when none is given.
pub const DEFAULT_MIN_RECALL: f64 = 0.9;

/// Errors of the autotune rules.
#[derive(Debug, thiserror::Error)]
pub enum AutotuneError {
    /// Every grid entry was out of bounds (or the grid was empty).
    #[error("no usable config in the grid: {}", if skipped.is_empty() { "the grid is empty".to_string() } else { skipped.join("; ") })]
    NoUsableConfig {
        /// Why each entry was skipped.
        skipped: Vec<String>,
    },
    /// Another autotune of the index is running.
    #[error("an autotune of index {0} is already running")]
    Running(IndexName),
    /// `min_recall` outside 0..=1.
    #[error("min_recall must be between 0 and 1, got {0}")]
    InvalidMinRecall(f64),
    /// Another request field is out of its domain.
    #[error("{field}: {reason}")]
    InvalidField {
        /// The field.
        field: &'static str,
        /// What it must be.
        reason: String,
    },
}

impl crate::error::Classified for AutotuneError {
    fn classify(&self) -> crate::error::Class {
        use crate::error::{Class, ErrorKind as K};
        match self {
            AutotuneError::NoUsableConfig { .. } => Class::new(K::Unprocessable, "no_usable_config"),
            AutotuneError::Running(_) => Class::new(K::Conflict, "autotune_running"),
            AutotuneError::InvalidMinRecall(_) => Class::invalid("invalid_min_recall"),
            AutotuneError::InvalidField { .. } => Class::invalid("invalid_autotune_request"),
        }
    }
}

/// What a run optimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Objective {
    /// Highest recall among trials past `min_recall`, then lowest p50 (the seed's rule).
    MaxRecall,
    /// Lowest p50 among trials whose recall (or its Wilson bound) reaches `target_recall`.
    MinLatency,
}

/// How `target_recall` is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// The measured recall.
    Point,
    /// The 95 % Wilson lower bound of the recall: a config that passed by luck on a small
    /// harness does not.
    Wilson,
}

/// Whether the winner is promoted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Promote {
    /// Only when it beats the incumbent, re-measured on the same harness.
    IfBetter,
    /// Always (the seed's behaviour).
    Always,
    /// Never: a dry run.
    Never,
}

/// The rules of one run, parsed from the request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rules {
    /// What to optimise.
    pub objective: Objective,
    /// Recall bar of `min_latency`.
    pub target_recall: f64,
    /// How that bar is checked.
    pub gate: Gate,
    /// Recall bar of `max_recall`.
    pub min_recall: f64,
    /// Promotion policy.
    pub promote: Promote,
    /// The least latency gain (a fraction) `if_better` promotes on, beyond the noise.
    pub min_improvement: f64,
    /// Trials whose memory passes this are ineligible.
    pub max_memory_bytes: Option<u64>,
    /// Trials whose build took longer are ineligible.
    pub max_build_secs: Option<f64>,
}

/// `min_improvement` when none is given: a 5 % latency gain.
pub const DEFAULT_MIN_IMPROVEMENT: f64 = 0.05;

fn unit(field: &'static str, v: Option<f64>, default: f64) -> Result<f64> {
    let v = v.unwrap_or(default);
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(AutotuneError::InvalidField {
            field,
            reason: format!("must be between 0 and 1, got {v}"),
        })
    }
}

impl Rules {
    /// Parses the optional request fields (each unknown value is an error).
    pub fn parse(
        objective: Option<&str>,
        target_recall: Option<f64>,
        gate: Option<&str>,
        min_recall_v: Option<f64>,
        promote: Option<&str>,
    ) -> Result<Rules> {
        let bad = |field: &'static str, allowed: &str, got: &str| AutotuneError::InvalidField {
            field,
            reason: format!("must be one of {allowed}, got {got:?}"),
        };
        let objective = match objective.unwrap_or("max_recall") {
            "max_recall" => Objective::MaxRecall,
            "min_latency" => Objective::MinLatency,
            o => return Err(bad("objective", "max_recall, min_latency", o)),
        };
        let gate = match gate.unwrap_or("point") {
            "point" => Gate::Point,
            "wilson" => Gate::Wilson,
            g => return Err(bad("gate", "point, wilson", g)),
        };
        let promote = match promote.unwrap_or("if_better") {
            "if_better" => Promote::IfBetter,
            "always" => Promote::Always,
            "never" => Promote::Never,
            p => return Err(bad("promote", "if_better, always, never", p)),
        };
        Ok(Rules {
            objective,
            target_recall: unit("target_recall", target_recall, 0.95)?,
            gate,
            min_recall: min_recall(min_recall_v)?,
            promote,
            min_improvement: DEFAULT_MIN_IMPROVEMENT,
            max_memory_bytes: None,
            max_build_secs: None,
        })
    }

    /// Whether a trial's recall passes the run's bar.
    pub fn passes_recall(&self, c: &Candidate) -> bool {
        match self.objective {
            Objective::MaxRecall => c.recall_at_k >= self.min_recall,
            Objective::MinLatency => {
                let r = match self.gate {
                    Gate::Point => c.recall_at_k,
                    Gate::Wilson => c.recall_ci_low,
                };
                r >= self.target_recall
            }
        }
    }

    /// Why a trial breaks the run's memory or build-time cap, if it does.
    pub fn violation(&self, c: &Candidate) -> Option<String> {
        if let Some(cap) = self.max_memory_bytes.filter(|&cap| c.memory_bytes > cap) {
            return Some(format!("memory {} B over max_memory_bytes {cap}", c.memory_bytes));
        }
        if let Some(cap) = self.max_build_secs.filter(|&cap| c.build_time_secs > cap) {
            return Some(format!(
                "build {:.2} s over max_build_secs {cap}",
                c.build_time_secs
            ));
        }
        None
    }

    /// Why nothing won: how many trials missed the recall bar and how many broke a cap.
    pub fn nobody_wins(&self, trials: &[Candidate]) -> String {
        let bar = match self.objective {
            Objective::MaxRecall => format!("min_recall {}", self.min_recall),
            Objective::MinLatency => format!("target_recall {}", self.target_recall),
        };
        let missed = trials.iter().filter(|c| !self.passes_recall(c)).count();
        let memory = trials
            .iter()
            .filter(|c| self.violation(c).is_some_and(|v| v.starts_with("memory")))
            .count();
        let build = trials
            .iter()
            .filter(|c| self.violation(c).is_some_and(|v| v.starts_with("build")))
            .count();
        let mut parts = vec![format!("{missed} of {} missed {bar}", trials.len())];
        if let Some(cap) = self.max_memory_bytes {
            let least = trials.iter().map(|c| c.memory_bytes).min().unwrap_or(0);
            parts.push(format!(
                "{memory} over the memory cap max_memory_bytes {cap} (least memory {least} B)"
            ));
        }
        if let Some(cap) = self.max_build_secs {
            parts.push(format!("{build} over max_build_secs {cap}"));
        }
        format!("no trial is eligible: {}", parts.join("; "))
    }

    /// Whether `winner` (config `w` of `paired`) should replace the incumbent (config
    /// `i`), both re-measured interleaved on the same queries, and why. Recall is compared
    /// on the same slots with its Wilson bounds; latency on the paired per-query ratio,
    /// which must lie below `1 - min_improvement` over its whole 95 % interval.
    pub fn decide(
        &self,
        paired: &decide::Paired,
        i: usize,
        w: usize,
        incumbent: &Candidate,
        winner: &Candidate,
    ) -> (bool, String) {
        let (ri, ri_low, _) = paired.recall(i);
        let (rw, rw_low, rw_high) = paired.recall(w);
        let effect = paired.effect(i, w);
        let figures = format!(
            "latency {} (paired per-query ratio, 95 % bootstrap interval, {} queries x {} rounds interleaved); recall {rw:.4} vs incumbent {ri:.4}",
            effect.describe(),
            effect.queries,
            paired.rounds
        );
        if let Some(v) = self.violation(winner) {
            return (false, format!("kept: the winner breaks a cap ({v}); {figures}"));
        }
        if let Some(v) = self.violation(incumbent) {
            return (
                true,
                format!("promoted: the incumbent breaks a cap ({v}); {figures}"),
            );
        }
        let latency = |figures: String| {
            if effect.faster_by(self.min_improvement) {
                (true, format!("promoted: {figures}"))
            } else if effect.low < 1.0 && effect.high > 1.0 {
                (false, format!("kept: within noise: {figures}"))
            } else {
                (
                    false,
                    format!(
                        "kept: not faster by min_improvement {}: {figures}",
                        self.min_improvement
                    ),
                )
            }
        };
        match self.objective {
            Objective::MinLatency => {
                let gate = |r: f64, low: f64| match self.gate {
                    Gate::Point => r,
                    Gate::Wilson => low,
                } >= self.target_recall;
                if !gate(rw, rw_low) {
                    (
                        false,
                        format!("kept: the winner misses target_recall on re-measurement; {figures}"),
                    )
                } else if !gate(ri, ri_low) {
                    (
                        true,
                        format!(
                            "promoted: the incumbent misses target_recall {}; {figures}",
                            self.target_recall
                        ),
                    )
                } else {
                    latency(figures)
                }
            }
            Objective::MaxRecall => {
                if rw_low > ri {
                    (true, format!("promoted: more recall beyond the noise; {figures}"))
                } else if rw_high < ri {
                    (false, format!("kept: less recall beyond the noise; {figures}"))
                } else {
                    latency(figures)
                }
            }
        }
    }

    /// Whether a trial can win: its recall passes the run's bar and it breaks no cap.
    pub fn eligible(&self, c: &Candidate) -> bool {
        self.passes_recall(c) && self.violation(c).is_none()
    }

    /// The index of the winner among `trials` (in run order), if any is eligible.
    pub fn winner(&self, trials: &[Candidate]) -> Option<usize> {
        match self.objective {
            Objective::MaxRecall => trials
                .iter()
                .enumerate()
                .filter(|(_, t)| self.eligible(t))
                .min_by(|(ia, a), (ib, b)| {
                    b.recall_at_k
                        .total_cmp(&a.recall_at_k)
                        .then(a.search_latency_p50_us.total_cmp(&b.search_latency_p50_us))
                        .then(ia.cmp(ib))
                })
                .map(|(i, _)| i),
            Objective::MinLatency => trials
                .iter()
                .enumerate()
                .filter(|(_, t)| self.eligible(t))
                .min_by(|(ia, a), (ib, b)| {
                    a.search_latency_p50_us
                        .total_cmp(&b.search_latency_p50_us)
                        .then(b.recall_at_k.total_cmp(&a.recall_at_k))
                        .then(ia.cmp(ib))
                })
                .map(|(i, _)| i),
        }
    }
}

/// Result of the autotune rules.
pub type Result<T, E = AutotuneError> = std::result::Result<T, E>;

/// `max_trials` of `adaptive` when none is given.
pub const DEFAULT_MAX_TRIALS: usize = 40;
/// `budget_secs` of `adaptive` when none is given.
pub const DEFAULT_BUDGET_SECS: f64 = 300.0;

/// How a run chooses the configs it measures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Strategy {
    /// The given grid (or the seed's default), every entry measured.
    Grid,
    /// [`adaptive::Adaptive`] under a trial and a wall-time budget.
    Adaptive {
        /// Trials at most.
        max_trials: usize,
        /// Wall time at most; no build starts that is expected to overrun it.
        budget: Duration,
    },
}

/// Everything a run is asked to do besides the index and harness, parsed and checked
/// before anything runs (so a bad field is a 400 and never a half-done run or a job).
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// Objective, gate, bars and promotion policy.
    pub rules: Rules,
    /// Grid or adaptive.
    pub strategy: Strategy,
    /// The grid's configs (empty for `adaptive`).
    pub plan: Plan,
    /// Share of the harness queries held out for the winner's validation, 0..0.5.
    pub validation_fraction: f64,
}

/// The raw request fields a [`Spec`] is parsed from: the one raw form of an autotune's
/// rules (the HTTP body flattens it beside `index_name` and `harness`; the agent and the
/// tests build it directly).
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SpecFields {
    /// Recall bar of `max_recall`.
    pub min_recall: Option<f64>,
    /// Configs to try.
    pub grid: Option<Vec<RawHnswConfig>>,
    /// `max_recall` or `min_latency`.
    pub objective: Option<String>,
    /// Recall bar of `min_latency`.
    pub target_recall: Option<f64>,
    /// `point` or `wilson`.
    pub gate: Option<String>,
    /// `if_better`, `always` or `never`.
    pub promote: Option<String>,
    /// `grid` or `adaptive`.
    pub strategy: Option<String>,
    /// Trial cap of `adaptive`.
    pub max_trials: Option<i64>,
    /// Wall-time cap of `adaptive`, seconds.
    pub budget_secs: Option<f64>,
    /// Held-out share of the harness queries.
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

impl Spec {
    /// Checks every field; the first bad one is the error.
    pub fn parse(f: &SpecFields) -> Result<Spec> {
        let mut rules = Rules::parse(
            f.objective.as_deref(),
            f.target_recall,
            f.gate.as_deref(),
            f.min_recall,
            f.promote.as_deref(),
        )?;
        let invalid = |field: &'static str, reason: String| AutotuneError::InvalidField { field, reason };
        rules.min_improvement = unit("min_improvement", f.min_improvement, DEFAULT_MIN_IMPROVEMENT)?;
        rules.max_memory_bytes = match f.max_memory_bytes {
            None => None,
            Some(b) if b >= 1 => Some(b as u64),
            Some(b) => {
                return Err(invalid(
                    "max_memory_bytes",
                    format!("must be a positive byte count, got {b}"),
                ))
            }
        };
        rules.max_build_secs = match f.max_build_secs {
            None => None,
            Some(s) if s > 0.0 && s.is_finite() => Some(s),
            Some(s) => {
                return Err(invalid(
                    "max_build_secs",
                    format!("must be a positive number of seconds, got {s}"),
                ))
            }
        };
        let max_trials = match f.max_trials {
            None => DEFAULT_MAX_TRIALS,
            Some(n) if n >= 1 => usize::try_from(n).unwrap_or(usize::MAX),
            Some(n) => return Err(invalid("max_trials", format!("must be at least 1, got {n}"))),
        };
        let budget_secs = f.budget_secs.unwrap_or(DEFAULT_BUDGET_SECS);
        if !(budget_secs > 0.0 && budget_secs.is_finite()) {
            return Err(invalid(
                "budget_secs",
                format!("must be a positive number of seconds, got {budget_secs}"),
            ));
        }
        let validation_fraction = f.validation_fraction.unwrap_or(0.0);
        if !(0.0..0.5).contains(&validation_fraction) {
            return Err(invalid(
                "validation_fraction",
                format!("must be in 0..0.5 (0 included, 0.5 not), got {validation_fraction}"),
            ));
        }
        let (strategy, plan) = match f.strategy.as_deref().unwrap_or("grid") {
            "grid" => (Strategy::Grid, plan(f.grid.as_deref())?),
            "adaptive" => {
                if f.grid.is_some() {
                    return Err(invalid(
                        "grid",
                        "the adaptive strategy chooses its own configs: leave out grid".into(),
                    ));
                }
                let budget = Duration::from_secs_f64(budget_secs.min(1e9));
                let plan = Plan {
                    configs: Vec::new(),
                    skipped: Vec::new(),
                };
                (Strategy::Adaptive { max_trials, budget }, plan)
            }
            s => {
                return Err(invalid(
                    "strategy",
                    format!("must be one of grid, adaptive, got {s:?}"),
                ))
            }
        };
        Ok(Spec {
            rules,
            strategy,
            plan,
            validation_fraction,
        })
    }

    /// Trials the run expects: the grid's configs, or `max_trials` (adaptive may end below).
    pub fn planned_trials(&self) -> usize {
        match self.strategy {
            Strategy::Grid => self.plan.configs.len(),
            Strategy::Adaptive { max_trials, .. } => max_trials,
        }
    }
}

/// Splits `n` harness queries into (tuning, held-out) positions: `round(fraction·n)` held
/// out, chosen by a fixed-seed shuffle so a harness always splits the same way and the held
/// queries are not just its last ones. At least one query is always kept for tuning.
pub fn split_queries(n: usize, fraction: f64) -> (Vec<usize>, Vec<usize>) {
    let held = ((fraction * n as f64).round() as usize).min(n.saturating_sub(1));
    if held == 0 {
        return ((0..n).collect(), Vec::new());
    }
    let perm = SplitMix64::new(0x7661_6c69_6461_7465).permutation(n);
    let mut out: Vec<usize> = perm[held..].to_vec();
    let mut hold: Vec<usize> = perm[..held].to_vec();
    out.sort_unstable();
    hold.sort_unstable();
    (out, hold)
}

/// Built graphs kept during one run, least recently used evicted first once their memory
/// passes the cap: a run that revisits a graph (ef probes, the winner's validation) does
/// not rebuild it, and a long run does not hold every graph it built.
#[derive(Debug)]
pub struct GraphCache<G> {
    cap_bytes: usize,
    used: usize,
    /// Most recently used last.
    entries: Vec<CacheEntry<G>>,
    engine: Engine,
}

/// A kept graph and its bytes.
type CacheEntry<G> = (GraphId, Arc<G>, usize);

impl<G> GraphCache<G> {
    /// An empty cache of graphs built by `engine`, holding at most `cap_bytes` (one graph
    /// is kept even if larger).
    pub fn new(cap_bytes: usize, engine: Engine) -> Self {
        GraphCache {
            cap_bytes,
            used: 0,
            entries: Vec::new(),
            engine,
        }
    }

    fn key(&self, c: &HnswConfig) -> GraphId {
        c.graph_id(self.engine)
    }

    /// The graph of `config`'s identity ([`HnswConfig::graph_id`]), if kept.
    pub fn get(&mut self, config: &HnswConfig) -> Option<Arc<G>> {
        let key = self.key(config);
        let i = self.entries.iter().position(|e| e.0 == key)?;
        let e = self.entries.remove(i);
        let g = e.1.clone();
        self.entries.push(e);
        Some(g)
    }

    /// Keeps `graph` of `bytes`, evicting the least recently used as needed.
    pub fn insert(&mut self, config: &HnswConfig, graph: Arc<G>, bytes: usize) {
        let key = self.key(config);
        if let Some(i) = self.entries.iter().position(|e| e.0 == key) {
            self.used -= self.entries.remove(i).2;
        }
        while !self.entries.is_empty() && self.used + bytes > self.cap_bytes {
            self.used -= self.entries.remove(0).2;
        }
        self.used += bytes;
        self.entries.push((key, graph, bytes));
    }

    /// Graphs kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The configs a run will measure, and the grid entries it skipped (with why).
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Usable configs, in grid order.
    pub configs: Vec<HnswConfig>,
    /// Human-readable reasons, one per skipped entry.
    pub skipped: Vec<String>,
}

/// Checks a requested grid (or takes the default): out-of-bounds entries and repeats are
/// skipped and reported; none left is an error.
pub fn plan(grid: Option<&[RawHnswConfig]>) -> Result<Plan> {
    let Some(grid) = grid else {
        return Ok(Plan {
            configs: DEFAULT_GRID
                .iter()
                .map(|&(ec, es)| HnswConfig {
                    ef_construction: ec,
                    ef_search: es,
                    ..HnswConfig::DEFAULT
                })
                .collect(),
            skipped: Vec::new(),
        });
    };
    let mut configs: Vec<HnswConfig> = Vec::new();
    let mut skipped = Vec::new();
    for (i, raw) in grid.iter().enumerate() {
        match HnswConfig::parse(raw) {
            Ok(c) => match configs.iter().position(|x| *x == c) {
                Some(_) => skipped.push(format!("grid[{i}]: repeats an earlier config")),
                None => configs.push(c),
            },
            Err(e) => skipped.push(format!("grid[{i}]: {e}")),
        }
    }
    if configs.is_empty() {
        return Err(AutotuneError::NoUsableConfig { skipped });
    }
    Ok(Plan { configs, skipped })
}

/// The plan's configs grouped by the graph they need under `engine`
/// ([`HnswConfig::graph_id`]), in order of first appearance: each group is one build,
/// measured at each of its `ef_search` values (in grid order).
pub fn graph_groups(configs: &[HnswConfig], engine: Engine) -> Vec<(HnswConfig, Vec<u32>)> {
    let mut groups: Vec<(HnswConfig, Vec<u32>)> = Vec::new();
    for c in configs {
        match groups
            .iter_mut()
            .find(|(g, _)| g.graph_id(engine) == c.graph_id(engine))
        {
            Some((_, efs)) => efs.push(c.ef_search),
            None => groups.push((*c, vec![c.ef_search])),
        }
    }
    groups
}

/// Checks `min_recall`.
pub fn min_recall(v: Option<f64>) -> Result<f64> {
    let v = v.unwrap_or(DEFAULT_MIN_RECALL);
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(AutotuneError::InvalidMinRecall(v))
    }
}

/// What winner selection looks at in a trial.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// The trial.
    pub trial_id: Uuid,
    /// Its config.
    pub config: HnswConfig,
    /// Its recall.
    pub recall_at_k: f64,
    /// Its p50 latency.
    pub search_latency_p50_us: f64,
    /// Its build time.
    pub build_time_secs: f64,
    /// Its recall's 95 % Wilson lower bound.
    pub recall_ci_low: f64,
    /// Bytes of what would serve.
    #[serde(default)]
    pub memory_bytes: u64,
    /// Distance evaluations per query (the noise-free cost).
    #[serde(default)]
    pub distance_evals_per_query: f64,
    /// The winner re-measured on held-out queries, when the run held some out.
    pub validation: Option<Validation>,
}

/// What winner selection looks at in a measured trial.
pub fn candidate_of(trial_id: Uuid, config: HnswConfig, m: &crate::trials::TrialMetrics) -> Candidate {
    Candidate {
        trial_id,
        config,
        recall_at_k: m.recall_at_k,
        search_latency_p50_us: m.search_latency_p50_us,
        build_time_secs: m.build_time_secs,
        recall_ci_low: m.recall_ci_low,
        memory_bytes: m.memory_bytes,
        distance_evals_per_query: m.distance_evals_per_query,
        validation: None,
    }
}

/// The index of the winner among `trials` (in run order), if any clears `min_recall`.
pub fn select_winner(trials: &[Candidate], min_recall: f64) -> Option<usize> {
    trials
        .iter()
        .enumerate()
        .filter(|(_, t)| t.recall_at_k >= min_recall)
        .min_by(|(ia, a), (ib, b)| {
            b.recall_at_k
                .total_cmp(&a.recall_at_k)
                .then(a.search_latency_p50_us.total_cmp(&b.search_latency_p50_us))
                .then(ia.cmp(ib))
        })
        .map(|(i, _)| i)
}

/// The note a promoted autotune winner carries.
pub fn winner_note(c: &Candidate) -> String {
    format!(
        "autotune winner: recall={:.4} p50={:.1}us",
        c.recall_at_k, c.search_latency_p50_us
    )
}

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
}

/// A trial kept from winning by a cap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ineligible {
    /// The trial.
    pub trial_id: Uuid,
    /// Which cap, by how much.
    pub reason: String,
}

/// The indexes with an autotune running in this process.
#[derive(Debug, Default)]
pub struct Running {
    set: Mutex<HashSet<IndexName>>,
}

/// Held while an autotune runs; dropping it frees the index.
#[derive(Debug)]
pub struct RunGuard {
    running: Arc<Running>,
    index: IndexName,
}

impl Running {
    /// Whether an autotune of `index` is under way.
    pub fn is_claimed(&self, index: &IndexName) -> bool {
        self.set.lock().unwrap_or_else(|p| p.into_inner()).contains(index)
    }

    /// Claims `index`, or `Running` if an autotune of it is under way.
    pub fn claim(self: &Arc<Self>, index: &IndexName) -> Result<RunGuard> {
        let mut set = self.set.lock().unwrap_or_else(|p| p.into_inner());
        if !set.insert(index.clone()) {
            return Err(AutotuneError::Running(index.clone()));
        }
        Ok(RunGuard {
            running: self.clone(),
            index: index.clone(),
        })
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        let mut set = self.running.set.lock().unwrap_or_else(|p| p.into_inner());
        set.remove(&self.index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(n: u128, recall: f64, p50: f64) -> Candidate {
        Candidate {
            trial_id: Uuid::from_u128(n),
            config: HnswConfig::DEFAULT,
            recall_at_k: recall,
            search_latency_p50_us: p50,
            build_time_secs: 0.0,
            recall_ci_low: recall - 0.05,
            memory_bytes: 0,
            distance_evals_per_query: 0.0,
            validation: None,
        }
    }

    #[test]
    fn rules_parse_and_refuse() {
        let r = Rules::parse(None, None, None, None, None).unwrap();
        assert_eq!(
            (r.objective, r.gate, r.promote, r.target_recall, r.min_recall),
            (Objective::MaxRecall, Gate::Point, Promote::IfBetter, 0.95, 0.9)
        );
        assert!(Rules::parse(Some("fastest"), None, None, None, None).is_err());
        assert!(Rules::parse(None, Some(1.1), None, None, None).is_err());
        assert!(Rules::parse(None, None, Some("bayes"), None, None).is_err());
        assert!(Rules::parse(None, None, None, None, Some("sometimes")).is_err());
    }

    #[test]
    fn min_latency_with_gates() {
        let rules = |gate| Rules::parse(Some("min_latency"), Some(0.9), Some(gate), None, None).unwrap();
        // ci_low is recall - 0.05 in cand()
        let t = [
            cand(0, 0.99, 50.0),
            cand(1, 0.92, 20.0),
            cand(2, 0.96, 30.0),
            cand(3, 0.80, 5.0),
        ];
        assert_eq!(rules("point").winner(&t), Some(1));
        assert_eq!(
            rules("wilson").winner(&t),
            Some(2),
            "0.92's lower bound misses 0.9"
        );
        assert_eq!(rules("point").winner(&t[3..]), None);
    }

    fn paired(lat: [f64; 2], found: [u32; 2]) -> decide::Paired {
        // 100 queries, the same per-query latency in each config, found out of 10 slots
        decide::Paired {
            latency_us: lat
                .iter()
                .map(|&l| (0..100).map(|i| l + (i % 7) as f64 * 0.01 * l).collect())
                .collect(),
            found: found.iter().map(|&f| vec![f; 100]).collect(),
            slots: vec![10; 100],
            rounds: 5,
        }
    }

    #[test]
    fn if_better_decisions_need_an_effect_beyond_the_noise() {
        let max = Rules::parse(None, None, None, None, None).unwrap();
        let (inc, win) = (cand(0, 0.9, 50.0), cand(1, 0.9, 50.0));
        // recall: 10/10 against 8/10 on the same slots
        let (b, why) = max.decide(&paired([50.0, 90.0], [8, 10]), 0, 1, &inc, &win);
        assert!(b && why.contains("more recall"), "{why}");
        let (b, why) = max.decide(&paired([90.0, 50.0], [10, 8]), 0, 1, &inc, &win);
        assert!(!b && why.contains("less recall"), "{why}");
        // same recall: half the latency promotes; 3 % does not (min_improvement 5 %)
        let (b, why) = max.decide(&paired([50.0, 25.0], [9, 9]), 0, 1, &inc, &win);
        assert!(
            b && why.starts_with("promoted") && why.contains("\u{2212}50 %"),
            "{why}"
        );
        let (b, why) = max.decide(&paired([50.0, 48.5], [9, 9]), 0, 1, &inc, &win);
        assert!(!b && why.contains("min_improvement"), "{why}");
        let (b, why) = max.decide(&paired([50.0, 50.0], [9, 9]), 0, 1, &inc, &win);
        assert!(!b && why.starts_with("kept"), "{why}");
        let mut lax = max;
        lax.min_improvement = 0.0;
        assert!(lax.decide(&paired([50.0, 48.5], [9, 9]), 0, 1, &inc, &win).0);

        let lat = Rules::parse(Some("min_latency"), Some(0.9), None, None, None).unwrap();
        let (b, why) = lat.decide(&paired([50.0, 60.0], [8, 9]), 0, 1, &inc, &win);
        assert!(
            b && why.contains("incumbent misses"),
            "an incumbent below target loses: {why}"
        );
        let (b, _) = lat.decide(&paired([50.0, 60.0], [9, 9]), 0, 1, &inc, &win);
        assert!(!b, "slower loses");
        let (b, why) = lat.decide(&paired([50.0, 20.0], [9, 8]), 0, 1, &inc, &win);
        assert!(!b && why.contains("winner misses"), "{why}");
    }

    #[test]
    fn caps_make_trials_ineligible_and_say_so() {
        let mut r = Rules::parse(Some("min_latency"), Some(0.9), None, None, None).unwrap();
        r.max_memory_bytes = Some(1000);
        r.max_build_secs = Some(2.0);
        let mut big = cand(0, 0.99, 10.0);
        big.memory_bytes = 5000;
        let mut slow = cand(1, 0.99, 10.0);
        slow.memory_bytes = 500;
        slow.build_time_secs = 3.0;
        let mut ok = cand(2, 0.99, 30.0);
        ok.memory_bytes = 900;
        assert!(r.violation(&big).unwrap().contains("max_memory_bytes 1000"));
        assert!(r.violation(&slow).unwrap().contains("max_build_secs 2"));
        assert_eq!(r.winner(&[big.clone(), slow.clone(), ok]), Some(2));
        let why = r.nobody_wins(&[big.clone(), slow]);
        assert!(
            why.contains("memory") && why.contains("1 over max_build_secs"),
            "{why}"
        );
        // an incumbent over a cap loses to a winner within it, whatever the latency
        let (b, why) = r.decide(&paired([10.0, 30.0], [10, 10]), 0, 1, &big, &cand(3, 0.99, 30.0));
        assert!(b && why.contains("incumbent breaks a cap"), "{why}");
    }

    #[test]
    fn highest_recall_then_lowest_p50_then_earliest() {
        let t = [
            cand(0, 0.95, 10.0),
            cand(1, 0.99, 30.0),
            cand(2, 0.99, 20.0),
            cand(3, 0.99, 20.0),
        ];
        assert_eq!(select_winner(&t, 0.9), Some(2));
        assert_eq!(select_winner(&t, 0.995), None, "nothing eligible");
        assert_eq!(select_winner(&[], 0.0), None);
        // the gate is inclusive
        assert_eq!(select_winner(&[cand(0, 0.9, 1.0)], 0.9), Some(0));
        // below the gate never wins, however fast
        assert_eq!(
            select_winner(&[cand(0, 0.5, 1.0), cand(1, 0.91, 99.0)], 0.9),
            Some(1)
        );
    }

    #[test]
    fn plans() {
        let p = plan(None).unwrap();
        assert_eq!(p.configs.len(), 5);
        assert!(p.configs.iter().all(|c| c.m == 16 && c.seed == 42));
        let raw = |ec: i64, es: i64| RawHnswConfig {
            ef_construction: ec,
            ef_search: es,
            m: None,
            seed: None,
            quantization: None,
        };
        let p = plan(Some(&[raw(1, 30), raw(40, 30), raw(40, 30), raw(40, 500)])).unwrap();
        assert_eq!(p.configs.len(), 1);
        assert_eq!(p.skipped.len(), 3);
        assert!(p.skipped[0].starts_with("grid[0]: ef_construction"));
        assert!(matches!(
            plan(Some(&[raw(1, 30)])),
            Err(AutotuneError::NoUsableConfig { .. })
        ));
        assert!(matches!(
            plan(Some(&[])),
            Err(AutotuneError::NoUsableConfig { .. })
        ));
    }

    #[test]
    fn the_default_grid_needs_four_builds() {
        let groups = graph_groups(&plan(None).unwrap().configs, Engine::Native);
        assert_eq!(groups.len(), 4);
        let ec80 = groups.iter().find(|(c, _)| c.ef_construction == 80).unwrap();
        assert_eq!(ec80.1, vec![30, 60]);
        let other_seed = HnswConfig {
            seed: 7,
            ..HnswConfig::DEFAULT
        };
        assert_eq!(
            graph_groups(&[HnswConfig::DEFAULT, other_seed], Engine::Native).len(),
            2
        );
    }

    #[test]
    fn min_recall_bounds() {
        assert_eq!(min_recall(None).unwrap(), 0.9);
        assert!(min_recall(Some(1.5)).is_err());
        assert!(min_recall(Some(-0.1)).is_err());
        assert!(min_recall(Some(f64::NAN)).is_err());
    }

    #[test]
    fn one_run_per_index() {
        let r = Arc::new(Running::default());
        let a = IndexName::parse("a").unwrap();
        let g = r.claim(&a).unwrap();
        assert!(matches!(r.claim(&a), Err(AutotuneError::Running(_))));
        assert!(r.claim(&IndexName::parse("b").unwrap()).is_ok());
        drop(g);
        assert!(r.claim(&a).is_ok());
    }

    #[test]
    fn note_format() {
        assert_eq!(
            winner_note(&cand(0, 0.98, 12.34)),
            "autotune winner: recall=0.9800 p50=12.3us"
        );
    }

    #[test]
    fn spec_parses_and_refuses_each_field() {
        let ok = Spec::parse(&SpecFields::default()).unwrap();
        assert_eq!(
            (ok.strategy, ok.validation_fraction, ok.plan.configs.len()),
            (Strategy::Grid, 0.0, 5)
        );
        let a = Spec::parse(&SpecFields {
            strategy: Some("adaptive".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            a.strategy,
            Strategy::Adaptive {
                max_trials: 40,
                budget: Duration::from_secs(300)
            }
        );
        assert_eq!(a.planned_trials(), 40);
        assert_eq!(
            (
                ok.rules.min_improvement,
                ok.rules.max_memory_bytes,
                ok.rules.max_build_secs
            ),
            (0.05, None, None)
        );
        let capped = Spec::parse(&SpecFields {
            min_improvement: Some(0.1),
            max_memory_bytes: Some(1 << 20),
            max_build_secs: Some(2.5),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            (
                capped.rules.min_improvement,
                capped.rules.max_memory_bytes,
                capped.rules.max_build_secs
            ),
            (0.1, Some(1 << 20), Some(2.5))
        );
        let bad = [
            SpecFields {
                min_improvement: Some(-0.1),
                ..Default::default()
            },
            SpecFields {
                min_improvement: Some(1.5),
                ..Default::default()
            },
            SpecFields {
                max_memory_bytes: Some(0),
                ..Default::default()
            },
            SpecFields {
                max_memory_bytes: Some(-5),
                ..Default::default()
            },
            SpecFields {
                max_build_secs: Some(0.0),
                ..Default::default()
            },
            SpecFields {
                max_build_secs: Some(f64::INFINITY),
                ..Default::default()
            },
            SpecFields {
                strategy: Some("random".into()),
                ..Default::default()
            },
            SpecFields {
                max_trials: Some(0),
                ..Default::default()
            },
            SpecFields {
                budget_secs: Some(0.0),
                ..Default::default()
            },
            SpecFields {
                budget_secs: Some(-5.0),
                ..Default::default()
            },
            SpecFields {
                budget_secs: Some(f64::NAN),
                ..Default::default()
            },
            SpecFields {
                validation_fraction: Some(0.5),
                ..Default::default()
            },
            SpecFields {
                validation_fraction: Some(-0.1),
                ..Default::default()
            },
            SpecFields {
                strategy: Some("adaptive".into()),
                grid: Some(vec![]),
                ..Default::default()
            },
        ];
        for f in bad {
            assert!(Spec::parse(&f).is_err(), "{f:?}");
        }
        assert!(Spec::parse(&SpecFields {
            validation_fraction: Some(0.49),
            ..Default::default()
        })
        .is_ok());
    }

    #[test]
    fn split_holds_out_round_fraction_and_covers_every_query_once() {
        let (t, h) = split_queries(80, 0.25);
        assert_eq!((t.len(), h.len()), (60, 20));
        let mut all: Vec<usize> = t.iter().chain(&h).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..80).collect::<Vec<_>>());
        assert_eq!(split_queries(80, 0.25), (t, h), "deterministic");
        assert_eq!(split_queries(10, 0.0).1.len(), 0);
        assert_eq!(split_queries(10, 0.04).1.len(), 0, "round(0.4) = 0");
        assert_eq!(
            split_queries(1, 0.49),
            (vec![0], vec![]),
            "one query is kept for tuning"
        );
        // not simply the tail
        assert_ne!(split_queries(100, 0.2).1, (80..100).collect::<Vec<_>>());
    }

    #[test]
    fn graph_cache_evicts_least_recently_used_by_memory() {
        let c = |m| HnswConfig {
            m,
            ..HnswConfig::DEFAULT
        };
        let mut cache = GraphCache::new(100, Engine::Native);
        cache.insert(&c(4), Arc::new(4), 40);
        cache.insert(&c(8), Arc::new(8), 40);
        assert_eq!(cache.get(&c(4)).as_deref(), Some(&4)); // 4 is now the most recent
        cache.insert(&c(16), Arc::new(16), 40); // evicts 8
        assert!(cache.get(&c(8)).is_none());
        assert_eq!(cache.len(), 2);
        // ef_search does not matter: same graph
        assert!(cache
            .get(&HnswConfig {
                ef_search: 200,
                ..c(16)
            })
            .is_some());
        // one graph larger than the cap is still kept, alone
        cache.insert(&c(32), Arc::new(32), 500);
        assert_eq!(cache.len(), 1);
        assert!(cache.get(&c(32)).is_some());
    }
}
