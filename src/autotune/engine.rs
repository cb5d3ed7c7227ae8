//! The tuning run: which configs to measure, which one wins, whether it is promoted.
//!
//! The loop is generic over a [`Backend`] (build and measure a config, measure several
//! interleaved, journal a trial, read and replace the incumbent), as the agent's loop is
//! over [`crate::agent::AgentBackend`]: the service drives it with real graphs, tests with
//! a fake whose latencies are a formula, on tokio's paused clock. A run is four steps,
//! each its own method:
//!
//! 1. **next config**: the grid's configs graph by graph, or the adaptive climb's asks,
//!    then (adaptive, `min_latency`) refinement between the climb's rungs
//!    ([`super::refine`]);
//! 2. **measure and record**: one trial each, journaled at once (or at the end when the
//!    run holds queries out, so the winner's trial can carry its validation);
//! 3. **pick and validate the winner**: the best eligible trial under the contract's rule
//!    (highest recall then lowest p50; with `min_latency`, the lowest p50 past the bar); in
//!    an adaptive run with held-out queries a winner that misses the bar on them is
//!    disqualified and the next one checked; trials within [`NEAR_TIE`] of the winner's
//!    p50 are re-measured interleaved against it and reported (`near_ties`), so the result
//!    says how far the pick is above the noise;
//! 4. **decide the promotion**: `always`, `never`, or `if_better`, where the winner and the
//!    incumbent are re-measured interleaved and [`Rules::decide`] promotes only beyond the
//!    noise (a config is never promoted over itself).

use tokio::time::Instant;
use uuid::Uuid;

use super::adaptive::{Adaptive, Observation};
use super::assure::{assurance_of, assure_all, lowest_rung, repick, Assurance, ALPHA};
pub use super::backend::{Backend, Recorded, Setup};
use super::refine::{RefineStats, Refiner};
use super::{graph_groups, Candidate, Gate, Ineligible, Objective, Promote, Rules, Spec, Strategy};
use crate::measure::ROUNDS;
use crate::params::HnswConfig;
use crate::stats::mean_lower_bound;
use crate::trials::Validation;

/// Trials whose p50 is within this fraction of the best's are re-measured interleaved
/// before the winner is named: single p50s that close are inside the noise.
pub const NEAR_TIE: f64 = 0.10;
/// Near-ties re-measured at most.
pub const MAX_NEAR_TIES: usize = 4;
/// Candidates checked on the held-out queries at most (a check is one measurement on
/// the held-out share, on a graph the run usually still holds: cheap beside a build).
pub const MAX_VALIDATIONS: usize = 64;

/// What a finished run found.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Trials measured (climb and refinement).
    pub trials_run: usize,
    /// Trials that could win.
    pub trials_eligible: usize,
    /// Graphs built.
    pub builds: usize,
    /// The winner, if any.
    pub winner: Option<Candidate>,
    /// Whether it was promoted.
    pub promoted: bool,
    /// Why (not).
    pub reason: Option<String>,
    /// Refinement's share, when it ran.
    pub refinement: Option<RefineStats>,
    /// Trials that passed the recall bar but broke a cap.
    pub ineligible: Vec<Ineligible>,
    /// Candidates measured on the held-out queries before one passed.
    pub validations: usize,
    /// Trials within [`NEAR_TIE`] of the winner's p50, re-measured interleaved against it.
    pub near_ties: Vec<NearTie>,
}

/// A trial near the winner, re-measured interleaved against it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NearTie {
    /// The trial.
    pub trial_id: Uuid,
    /// Its config.
    pub config: HnswConfig,
    /// Its latency against the winner's: "+4 % [+1 %, +7 %]".
    pub latency_vs_winner: String,
    /// The paired per-query ratio (its / the winner's), geometric mean.
    pub ratio: f64,
    /// Its 95 % interval, low end.
    pub low: f64,
    /// High end.
    pub high: f64,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum End {
    /// To the end.
    Finished(Box<Outcome>),
    /// Cancelled: nothing promoted.
    Cancelled {
        /// Trials finished (and journaled).
        trials_run: usize,
    },
}

enum Phase {
    Climb,
    Refine(Box<Refiner>),
    Done,
}

/// One run's state.
pub struct Run<'a, B: Backend> {
    b: &'a mut B,
    spec: &'a Spec,
    setup: Setup,
    candidates: Vec<Candidate>,
    /// Per-query recall of each candidate (same order): what the confident gate judges.
    per_query: Vec<Vec<f64>>,
    /// Trials from refinement (by id).
    refined: Vec<Uuid>,
    pending: Vec<Recorded>,
    adaptive: Adaptive,
    grid: std::vec::IntoIter<HnswConfig>,
    phase: Phase,
    started: Instant,
    /// Seconds per (m × ef_construction) unit seen so far: the budget's build forecast.
    secs_per_unit: f64,
    refine: RefineStats,
    builds_before_refine: usize,
    /// Candidates measured on the held-out queries.
    validated: usize,
    /// Trials the held-out check took out of the running, with why.
    disqualified: Vec<(Uuid, String)>,
}

type Step<T, E> = Result<Option<T>, E>;

impl<'a, B: Backend> Run<'a, B> {
    /// A run of `spec` on `b`.
    pub fn new(b: &'a mut B, spec: &'a Spec, setup: Setup) -> Self {
        let grid: Vec<HnswConfig> = match spec.strategy {
            Strategy::Grid => graph_groups(&spec.plan.configs, setup.engine)
                .into_iter()
                .flat_map(|(g, efs)| efs.into_iter().map(move |ef| HnswConfig { ef_search: ef, ..g }))
                .collect(),
            Strategy::Adaptive { .. } => Vec::new(),
        };
        Run {
            adaptive: Adaptive::new(setup.seed),
            b,
            spec,
            setup,
            candidates: Vec::new(),
            per_query: Vec::new(),
            refined: Vec::new(),
            pending: Vec::new(),
            grid: grid.into_iter(),
            phase: Phase::Climb,
            started: Instant::now(),
            secs_per_unit: 0.0,
            refine: RefineStats::default(),
            builds_before_refine: 0,
            validated: 0,
            disqualified: Vec::new(),
        }
    }

    fn rules(&self) -> &Rules {
        &self.spec.rules
    }

    /// Under the confident gate, judges every candidate again (the selection correction
    /// grows with the graphs compared near the target) and sets their assurance.
    fn rejudge(&mut self) {
        if self.rules().gate == Gate::Confident {
            let target = self.rules().target_recall;
            assure_all(&mut self.candidates, &self.per_query, self.setup.engine, target);
        }
    }

    fn built(&self, c: &HnswConfig) -> bool {
        let id = c.graph_id(self.setup.engine);
        self.candidates
            .iter()
            .any(|x| x.config.graph_id(self.setup.engine) == id)
    }

    fn affordable(&self, c: &HnswConfig, left: f64) -> bool {
        self.built(c) || self.secs_per_unit * f64::from(c.m) * f64::from(c.ef_construction) <= left
    }

    /// Step 1: the next config to measure, or `None` when the run has measured enough.
    pub fn next_config(&mut self) -> Option<HnswConfig> {
        let budget = match self.spec.strategy {
            Strategy::Grid => None,
            Strategy::Adaptive { budget, .. } => Some(budget.as_secs_f64()),
        };
        let left = budget.map_or(f64::INFINITY, |b| b - self.started.elapsed().as_secs_f64());
        loop {
            match &mut self.phase {
                Phase::Climb => {
                    let next = match self.spec.strategy {
                        Strategy::Grid => self.grid.next(),
                        Strategy::Adaptive { max_trials, .. } => {
                            // a share of max_trials is kept for refinement
                            let reserve = if self.refines() {
                                (max_trials / 4).min(super::refine::MAX_TRIALS)
                            } else {
                                0
                            };
                            if self.candidates.len() >= max_trials - reserve || left <= 0.0 {
                                None
                            } else {
                                let spu = self.secs_per_unit;
                                self.adaptive
                                    .next(&|m, ec| spu * f64::from(m) * f64::from(ec) <= left)
                            }
                        }
                    };
                    if next.is_some() {
                        return next;
                    }
                    self.phase = self.refiner().map_or(Phase::Done, |r| Phase::Refine(Box::new(r)));
                    self.builds_before_refine = self.b.builds();
                }
                Phase::Refine(r) => {
                    let cap = match self.spec.strategy {
                        Strategy::Adaptive { max_trials, .. } => max_trials,
                        Strategy::Grid => usize::MAX,
                    };
                    if left <= 0.0 || self.candidates.len() >= cap {
                        self.phase = Phase::Done;
                        continue;
                    }
                    let Some(c) = r.next_config() else {
                        self.phase = Phase::Done;
                        continue;
                    };
                    if self.affordable(&c, left) {
                        return Some(c);
                    }
                    // a build the budget cannot pay for: give that graph up
                    if let Phase::Refine(r) = &mut self.phase {
                        r.observe(c, false, f64::INFINITY);
                    }
                }
                Phase::Done => return None,
            }
        }
    }

    /// Refinement around the climb's winner: adaptive `min_latency` runs only (a grid is
    /// what the caller asked for; `max_recall` has no margin to trim).
    fn refiner(&self) -> Option<Refiner> {
        if !matches!(self.spec.strategy, Strategy::Adaptive { .. })
            || self.rules().objective != Objective::MinLatency
        {
            return None;
        }
        // confident: centred by exact cost, not a clock reading (the same centre every run)
        let w = match self.rules().gate {
            Gate::Confident => self
                .candidates
                .iter()
                .filter(|c| self.can_win(c))
                .min_by(|a, b| a.distance_evals_per_query.total_cmp(&b.distance_evals_per_query))?,
            _ => &self.candidates[self.rules().winner(&self.candidates)?],
        };
        let id = w.config.graph_id(self.setup.engine);
        let failing = self
            .candidates
            .iter()
            .filter(|c| c.config.graph_id(self.setup.engine) == id)
            .filter(|c| !self.rules().passes_recall(c) && c.config.ef_search < w.config.ef_search)
            .map(|c| c.config.ef_search)
            .max();
        Some(Refiner::new(
            w.config,
            w.distance_evals_per_query,
            failing,
            &|c| self.built(c),
        ))
    }

    /// Step 2: measures `config` and journals it (or keeps it for the end). `None` when
    /// the run was cancelled.
    pub async fn measure_and_record(&mut self, config: HnswConfig) -> Step<Candidate, B::Error> {
        let built_before = self.b.builds();
        let Some(metrics) = self.b.measure(config, false).await? else {
            return Ok(None);
        };
        if self.b.builds() > built_before {
            let units = f64::from(config.m) * f64::from(config.ef_construction);
            self.secs_per_unit = self.secs_per_unit.max(metrics.build_time_secs / units);
        }
        let id = Uuid::now_v7();
        self.candidates.push(super::candidate_of(id, config, &metrics));
        self.per_query
            .push(metrics.per_query_recall.iter().map(|&r| f64::from(r)).collect());
        self.rejudge();
        let c = self.candidates[self.candidates.len() - 1].clone();
        let passes = self.rules().eligible(&c);
        let mut note = self.setup.note.clone();
        let refining = matches!(self.phase, Phase::Refine(_));
        if refining {
            note.push_str("; refinement");
            self.refined.push(id);
        }
        if let Some(v) = self.rules().violation(&c) {
            note.push_str("; ineligible: ");
            note.push_str(&v);
        }
        match &mut self.phase {
            Phase::Refine(r) => r.observe(config, passes, metrics.distance_evals_per_query),
            _ => self.adaptive.observe(
                config,
                Observation {
                    passes,
                    recall: c.recall_at_k,
                    cost: metrics.distance_evals_per_query,
                },
            ),
        }
        let trial = Recorded {
            id,
            config,
            metrics,
            note,
            validation: None,
        };
        if self.setup.defer {
            self.pending.push(trial);
        } else {
            self.b.record(trial).await?;
        }
        self.b.progress(self.candidates.len());
        Ok(Some(c))
    }

    /// Whether a trial can win: the rules' eligibility, less the trials the held-out
    /// check disqualified.
    fn can_win(&self, c: &Candidate) -> bool {
        self.rules().eligible(c) && !self.disqualified.iter().any(|(id, _)| *id == c.trial_id)
    }

    /// Step 3a: the winner under the rules (the contract's: highest recall then lowest p50,
    /// or with `min_latency` the lowest p50 past the bar), among the trials that can win.
    /// `None` when nothing can.
    pub fn pick(&self) -> Option<Candidate> {
        let open: Vec<Candidate> = self
            .candidates
            .iter()
            .filter(|c| !self.disqualified.iter().any(|(id, _)| *id == c.trial_id))
            .filter(|c| self.representative(c))
            .cloned()
            .collect();
        self.rules().winner(&open).map(|i| open[i].clone())
    }

    /// Whether `c` may win: under the confident gate only its graph's lowest eligible
    /// `ef_search` ([`lowest_rung`]); under the other gates every config.
    fn representative(&self, c: &Candidate) -> bool {
        self.rules().gate != Gate::Confident
            || lowest_rung(&self.candidates, c, self.setup.engine, |o| self.can_win(o))
    }

    /// Step 3b: the winner on the held-out queries. In an adaptive run (which chooses its
    /// own configs, and whose refinement trims the margin to what the gate asks) a winner
    /// that misses the recall bar there is disqualified — its trial says so — and the next
    /// winner is checked, up to [`MAX_VALIDATIONS`]; a grid's winner is what the grid says
    /// and its validation is reported. `Ok(None)` is a cancel; `Ok(Some(None))` no winner.
    pub async fn validate(&mut self) -> Step<Option<Candidate>, B::Error> {
        let Some(mut w) = self.pick() else {
            return Ok(Some(None));
        };
        if !self.setup.defer {
            return Ok(Some(Some(w)));
        }
        let walk = matches!(self.spec.strategy, Strategy::Adaptive { .. });
        loop {
            let Some(m) = self.b.measure(w.config, true).await? else {
                return Ok(None);
            };
            self.validated += 1;
            w.validation = Some(Validation {
                recall_at_k: m.recall_at_k,
                search_latency_p50_us: m.search_latency_p50_us,
                eval_queries: m.eval_queries,
            });
            let mut held = super::candidate_of(w.trial_id, w.config, &m);
            if self.rules().gate == Gate::Confident {
                // one config on queries the choice never saw: no selection to correct
                let q: Vec<f64> = m.per_query_recall.iter().map(|&r| f64::from(r)).collect();
                held.assurance = Some(Assurance {
                    recall_ci_low: Some(mean_lower_bound(&q, ALPHA)),
                    ..w.assurance
                        .clone()
                        .unwrap_or_else(|| assurance_of(Gate::Confident, &w))
                });
            }
            if !walk || self.rules().passes_recall(&held) || self.validated >= MAX_VALIDATIONS {
                return Ok(Some(Some(w)));
            }
            self.disqualified.push((
                w.trial_id,
                format!(
                    "misses the recall bar on the held-out queries (recall {:.4} on {})",
                    m.recall_at_k, m.eval_queries
                ),
            ));
            match self.pick() {
                Some(next) => w = next,
                None => return Ok(Some(None)),
            }
        }
    }

    /// The trials within [`NEAR_TIE`] of the winner's p50 that could have won, re-measured
    /// interleaved against it: how far the pick is above the noise. Under `point` and
    /// `wilson` they are reported, not acted on (the literal rule picks); under the
    /// confident gate [`super::assure::repick`] decides among them. `None` when cancelled.
    pub async fn near_ties(&mut self, w: &Candidate) -> Step<Vec<NearTie>, B::Error> {
        let mut ties: Vec<Candidate> = Vec::new();
        for c in self.candidates.iter().filter(|c| self.representative(c)) {
            let same_bar = match self.rules().objective {
                Objective::MinLatency => true,
                Objective::MaxRecall => c.recall_at_k == w.recall_at_k,
            };
            if ties.len() + 1 < MAX_NEAR_TIES
                && same_bar
                && self.can_win(c)
                && c.config != w.config
                && c.search_latency_p50_us <= w.search_latency_p50_us * (1.0 + NEAR_TIE)
                && !ties.iter().any(|t| t.config == c.config)
            {
                ties.push(c.clone());
            }
        }
        if ties.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let mut configs = vec![w.config];
        configs.extend(ties.iter().map(|t| t.config));
        let Some(p) = self.b.paired(&configs, ROUNDS).await? else {
            return Ok(None);
        };
        Ok(Some(
            ties.iter()
                .enumerate()
                .map(|(j, t)| {
                    let e = p.effect(0, j + 1);
                    NearTie {
                        trial_id: t.trial_id,
                        config: t.config,
                        latency_vs_winner: e.describe(),
                        ratio: e.ratio,
                        low: e.low,
                        high: e.high,
                    }
                })
                .collect(),
        ))
    }

    /// Step 4: promotes the winner as the policy says; `(promoted, reason)`, `None` when
    /// cancelled.
    pub async fn decide(&mut self, winner: Option<&Candidate>) -> Step<(bool, Option<String>), B::Error> {
        let rules = *self.rules();
        let Some(w) = winner else {
            return Ok(Some((false, Some(rules.nobody_wins(&self.candidates)))));
        };
        match rules.promote {
            Promote::Never => Ok(Some((false, Some("promote is never: nothing promoted".into())))),
            Promote::Always => {
                self.b.promote(w).await?;
                Ok(Some((true, None)))
            }
            Promote::IfBetter => {
                let Some((inc_id, inc)) = self.b.incumbent().await? else {
                    self.b.promote(w).await?;
                    return Ok(Some((true, Some("promoted: nothing was promoted yet".into()))));
                };
                if inc == w.config {
                    return Ok(Some((
                        false,
                        Some("kept: the winner is the promoted config itself".into()),
                    )));
                }
                let Some(m) = self.b.measure(inc, false).await? else {
                    return Ok(None);
                };
                let incumbent = super::candidate_of(inc_id, inc, &m);
                let Some(p) = self.b.paired(&[inc, w.config], ROUNDS).await? else {
                    return Ok(None);
                };
                let (better, why) = rules.decide(&p, 0, 1, &incumbent, w);
                if better {
                    self.b.promote(w).await?;
                }
                Ok(Some((better, Some(why))))
            }
        }
    }

    /// Runs the steps to the end.
    pub async fn run(mut self) -> Result<End, B::Error> {
        let mut cancelled = false;
        while let Some(config) = self.next_config() {
            if self.b.cancelled() || self.measure_and_record(config).await?.is_none() {
                cancelled = true;
                break;
            }
        }
        if matches!(self.phase, Phase::Refine(_) | Phase::Done) && self.refines() {
            self.refine = RefineStats {
                trials: self.refined.len(),
                builds: self.b.builds().saturating_sub(self.builds_before_refine),
            };
        }
        let mut winner = None;
        if !cancelled {
            match self.validate().await? {
                None => cancelled = true,
                Some(w) => winner = w,
            }
        }
        let mut near_ties = Vec::new();
        if let (Some(w), false) = (winner.clone(), cancelled) {
            match self.near_ties(&w).await? {
                None => cancelled = true,
                Some(t) => near_ties = t,
            }
        }
        // confident: near-ties decide (`repick`); a run holding queries out keeps its winner
        let confident = self.rules().gate == Gate::Confident && !self.setup.defer;
        if let (Some(w), false, true) = (winner.clone(), cancelled, confident) {
            winner = Some(repick(&self.candidates, w, &near_ties));
        }
        if let Some(w) = winner.as_mut() {
            let mut a = w
                .assurance
                .clone()
                .unwrap_or_else(|| assurance_of(self.rules().gate, w));
            a.near_ties_compared = Some(near_ties.len() as u64);
            w.assurance = Some(a);
        }
        // deferred trials: journaled now, the winner's with its validation
        for mut t in std::mem::take(&mut self.pending) {
            if let Some(w) = winner.as_ref().filter(|w| w.trial_id == t.id && !cancelled) {
                t.validation = w.validation.clone();
            }
            if let Some((_, why)) = self.disqualified.iter().find(|(id, _)| *id == t.id) {
                t.note.push_str("; ineligible: ");
                t.note.push_str(why);
            }
            self.b.record(t).await?;
        }
        if cancelled {
            return Ok(End::Cancelled {
                trials_run: self.candidates.len(),
            });
        }
        let Some((promoted, reason)) = self.decide(winner.as_ref()).await? else {
            return Ok(End::Cancelled {
                trials_run: self.candidates.len(),
            });
        };
        let rules = *self.rules();
        let mut ineligible: Vec<Ineligible> = self
            .candidates
            .iter()
            .filter(|c| rules.passes_recall(c))
            .filter_map(|c| {
                rules.violation(c).map(|reason| Ineligible {
                    trial_id: c.trial_id,
                    reason,
                })
            })
            .collect();
        ineligible.extend(self.disqualified.iter().map(|(id, why)| Ineligible {
            trial_id: *id,
            reason: why.clone(),
        }));
        Ok(End::Finished(Box::new(Outcome {
            trials_run: self.candidates.len(),
            trials_eligible: self.candidates.iter().filter(|c| self.can_win(c)).count(),
            builds: self.b.builds(),
            winner,
            promoted,
            reason,
            refinement: self.refines().then_some(self.refine),
            ineligible,
            validations: self.validated,
            near_ties,
        })))
    }

    /// Whether this run refines after its climb: adaptive `min_latency` runs only.
    fn refines(&self) -> bool {
        matches!(self.spec.strategy, Strategy::Adaptive { .. })
            && self.rules().objective == Objective::MinLatency
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autotune::refine::tests::{cost, recall};
    use crate::autotune::SpecFields;
    use crate::measure::Paired;
    use crate::params::Engine;
    use crate::params::RawHnswConfig;
    use crate::rng::SplitMix64;
    use crate::trials::TrialMetrics;
    use std::collections::HashSet;
    use std::time::Duration;

    /// A backend whose recall and cost are formulas of the config, whose builds take
    /// `build_secs` of (paused) tokio time per m×efC unit, and whose interleaved latencies
    /// are the cost times seeded noise.
    struct Fake {
        built: HashSet<crate::params::GraphId>,
        journal: Vec<Recorded>,
        incumbent: Option<(Uuid, HnswConfig)>,
        promoted: Vec<HnswConfig>,
        rng: SplitMix64,
        noise: f64,
        cancel_after: Option<usize>,
        measured: usize,
        build_secs: f64,
        /// Held-out queries are harder by this much recall.
        held_out_penalty: f64,
    }

    impl Fake {
        fn new(seed: u64) -> Fake {
            Fake {
                built: HashSet::new(),
                journal: Vec::new(),
                incumbent: None,
                promoted: Vec::new(),
                rng: SplitMix64::new(seed),
                noise: 0.3,
                cancel_after: None,
                measured: 0,
                build_secs: 1e-4,
                held_out_penalty: 0.0,
            }
        }
    }

    fn metrics(c: &HnswConfig, recall: f64, build: f64) -> TrialMetrics {
        let found = (recall * 1000.0).round() as usize;
        TrialMetrics {
            build_time_secs: build,
            search_latency_p50_us: cost(c) * 0.1,
            search_latency_p95_us: cost(c) * 0.2,
            search_latency_p99_us: cost(c) * 0.3,
            recall_at_k: recall,
            memory_bytes: 1000 * c.m as u64,
            vectors: 1000,
            eval_queries: 100,
            brute_force_latency_us: 100.0,
            recall_ci_low: crate::stats::wilson_lower(found, 1000),
            distance_evals_per_query: cost(c),
            search_latency_mean_us: cost(c) * 0.1,
            qps: 1.0,
            // 400 queries around the recall, a little spread: the confident gate's input
            per_query_recall: (0..400)
                .map(|q| {
                    let d = 0.02f64.min(1.0 - recall).min(recall);
                    (if q % 2 == 0 { recall + d } else { recall - d }) as f32
                })
                .collect(),
        }
    }

    impl Backend for Fake {
        type Error = String;
        async fn measure(&mut self, c: HnswConfig, held_out: bool) -> Result<Option<TrialMetrics>, String> {
            if self.cancel_after.is_some_and(|n| self.measured >= n) {
                return Ok(None);
            }
            self.measured += 1;
            let build = self.build_secs * f64::from(c.m) * f64::from(c.ef_construction);
            if self.built.insert(c.graph_id(Engine::Native)) {
                tokio::time::sleep(Duration::from_secs_f64(build)).await;
            }
            let r = recall(&c) - if held_out { self.held_out_penalty } else { 0.0 };
            Ok(Some(metrics(&c, r.max(0.0), build)))
        }
        async fn paired(&mut self, configs: &[HnswConfig], rounds: usize) -> Result<Option<Paired>, String> {
            let n = 100;
            let mut latency_us = Vec::new();
            let mut found = Vec::new();
            for c in configs {
                let base = cost(c) * 0.1;
                let mut l = Vec::new();
                for q in 0..n {
                    let z: f64 = (0..12)
                        .map(|_| (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
                        .sum::<f64>()
                        - 6.0;
                    l.push(base * (1.0 + (q % 5) as f64 * 0.1) * (z * self.noise).exp());
                }
                latency_us.push(l);
                found.push(vec![(recall(c) * 1000.0).round() as u32; n]);
            }
            Ok(Some(Paired {
                latency_us,
                found,
                slots: vec![1000; n],
                rounds,
            }))
        }
        async fn record(&mut self, t: Recorded) -> Result<(), String> {
            self.journal.push(t);
            Ok(())
        }
        async fn incumbent(&mut self) -> Result<Option<(Uuid, HnswConfig)>, String> {
            Ok(self.incumbent)
        }
        async fn promote(&mut self, w: &Candidate) -> Result<(), String> {
            self.promoted.push(w.config);
            self.incumbent = Some((w.trial_id, w.config));
            Ok(())
        }
        fn builds(&self) -> usize {
            self.built.len()
        }
        fn cancelled(&self) -> bool {
            false
        }
        fn progress(&mut self, _: usize) {}
    }

    fn raw(c: HnswConfig) -> RawHnswConfig {
        RawHnswConfig {
            ef_construction: c.ef_construction.into(),
            ef_search: c.ef_search.into(),
            m: Some(c.m.into()),
            seed: Some(c.seed),
            quantization: Some(c.quantization),
        }
    }

    fn cfg(m: u32, ec: u32, ef: u32) -> HnswConfig {
        HnswConfig {
            m,
            ef_construction: ec,
            ef_search: ef,
            ..HnswConfig::DEFAULT
        }
    }

    fn setup(defer: bool) -> Setup {
        Setup {
            defer,
            note: "autotune".into(),
            engine: Engine::Native,
            seed: 42,
        }
    }

    async fn run(b: &mut Fake, f: SpecFields, defer: bool) -> End {
        let spec = Spec::parse(&f).unwrap();
        Run::new(b, &spec, setup(defer)).run().await.unwrap()
    }

    fn finished(e: End) -> Outcome {
        match e {
            End::Finished(o) => *o,
            End::Cancelled { .. } => panic!("cancelled"),
        }
    }

    fn grid(configs: &[HnswConfig], promote: &str) -> SpecFields {
        SpecFields {
            grid: Some(configs.iter().map(|&c| raw(c)).collect()),
            objective: Some("min_latency".into()),
            target_recall: Some(0.95),
            promote: Some(promote.into()),
            ..Default::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_grid_journals_every_trial_and_promotes_the_fastest_passing() {
        let mut b = Fake::new(1);
        let configs = [cfg(16, 80, 10), cfg(16, 80, 30), cfg(16, 80, 60)];
        let o = finished(run(&mut b, grid(&configs, "always"), false).await);
        assert_eq!((o.trials_run, o.builds, b.journal.len()), (3, 1, 3));
        // the winner is the cheapest config the formula passes
        let best = configs
            .iter()
            .filter(|c| recall(c) >= 0.95)
            .min_by(|a, b| cost(a).total_cmp(&cost(b)))
            .copied();
        assert_eq!(o.winner.map(|w| w.config), best);
        assert!(o.promoted && o.refinement.is_none());
        assert_eq!(b.promoted, vec![best.unwrap()]);
    }

    #[tokio::test(start_paused = true)]
    async fn if_better_never_promotes_a_config_over_itself_or_its_twin() {
        let c = cfg(16, 80, 40);
        // a twin: another seed, the same cost: equal within noise, never "better"
        let twin = HnswConfig { seed: 7, ..c };
        for run_no in 0..20 {
            let mut b = Fake::new(run_no);
            b.incumbent = Some((Uuid::nil(), c));
            let o = finished(run(&mut b, grid(&[c], "if_better"), false).await);
            assert!(!o.promoted, "run {run_no}: {:?}", o.reason);
            assert!(o.reason.unwrap().contains("itself"));
            let o = finished(run(&mut b, grid(&[twin], "if_better"), false).await);
            assert!(!o.promoted, "run {run_no}: {:?}", o.reason);
            assert!(o.reason.as_deref().unwrap().starts_with("kept"), "{:?}", o.reason);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn if_better_promotes_half_the_distance_evaluations() {
        let slow = cfg(32, 80, 60);
        let fast = cfg(16, 80, 60);
        for run_no in 0..5 {
            let mut b = Fake::new(100 + run_no);
            b.incumbent = Some((Uuid::nil(), slow));
            let o = finished(run(&mut b, grid(&[fast], "if_better"), false).await);
            let why = o.reason.unwrap();
            assert!(
                o.promoted && why.starts_with("promoted: latency \u{2212}"),
                "{why}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn adaptive_refines_below_the_climb_rungs_within_max_trials() {
        let mut b = Fake::new(3);
        // the literal rule by name: this test checks recall against the journal's figures
        let f = SpecFields {
            strategy: Some("adaptive".into()),
            objective: Some("min_latency".into()),
            target_recall: Some(0.975),
            gate: Some("point".into()),
            promote: Some("never".into()),
            ..Default::default()
        };
        let o = finished(run(&mut b, f, false).await);
        let r = o.refinement.unwrap();
        assert!(r.trials > 0 && o.trials_run <= 40, "{o:?}");
        assert_eq!(
            b.journal.iter().filter(|t| t.note.contains("refinement")).count(),
            r.trials
        );
        let w = o.winner.unwrap();
        assert!(recall(&w.config) >= 0.975);
        // the winner's ef is off the ladder or its graph between rungs: refinement paid
        let climb_best = b
            .journal
            .iter()
            .filter(|t| !t.note.contains("refinement") && t.metrics.recall_at_k >= 0.975)
            .map(|t| cost(&t.config))
            .fold(f64::INFINITY, f64::min);
        assert!(cost(&w.config) < climb_best, "{:?} vs {climb_best}", w.config);
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_stops_the_climb_on_the_paused_clock() {
        let mut b = Fake::new(4);
        b.build_secs = 0.01; // m16 efC80: 12.8 s per build
        let f = SpecFields {
            strategy: Some("adaptive".into()),
            objective: Some("min_latency".into()),
            budget_secs: Some(30.0),
            promote: Some("never".into()),
            ..Default::default()
        };
        let started = Instant::now();
        let o = finished(run(&mut b, f, false).await);
        // the build forecast is exact here, so no build starts that would overrun
        assert!(
            started.elapsed() <= Duration::from_secs(30),
            "{:?}",
            started.elapsed()
        );
        assert!(o.trials_run < 40 && o.builds >= 1, "{o:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_memory_cap_leaves_nothing_eligible_and_says_memory() {
        let mut b = Fake::new(5);
        let mut f = grid(&[cfg(16, 80, 30), cfg(8, 80, 30)], "always");
        f.max_memory_bytes = Some(1000);
        let o = finished(run(&mut b, f, false).await);
        assert_eq!((o.trials_eligible, o.promoted), (0, false));
        assert!(o.winner.is_none() && o.reason.unwrap().contains("memory"));
        assert_eq!(o.ineligible.len(), 2);
        assert!(b.journal.iter().all(|t| t.note.contains("ineligible: memory")));
    }

    #[tokio::test(start_paused = true)]
    async fn held_out_queries_defer_the_journal_and_validate_the_winner() {
        let mut b = Fake::new(6);
        b.held_out_penalty = 0.001;
        let o = finished(run(&mut b, grid(&[cfg(16, 80, 30), cfg(16, 80, 60)], "never"), true).await);
        let w = o.winner.unwrap();
        let v = w.validation.clone().unwrap();
        assert!((v.recall_at_k - (recall(&w.config) - 0.001)).abs() < 1e-9);
        let journaled: Vec<_> = b.journal.iter().filter(|t| t.validation.is_some()).collect();
        assert_eq!(journaled.len(), 1);
        assert_eq!(journaled[0].id, w.trial_id);
    }

    #[tokio::test(start_paused = true)]
    async fn a_grid_winner_is_the_grid_rule_s_and_its_validation_is_reported() {
        let mut b = Fake::new(8);
        // ef 20 passes .95 on the tuning queries by .015, ef 40 by .03; held out is .02 harder
        b.held_out_penalty = 0.02;
        let (lo, hi) = (cfg(4, 20, 20), cfg(4, 20, 40));
        assert!(recall(&lo) >= 0.95 && recall(&lo) - 0.02 < 0.95 && recall(&hi) - 0.02 >= 0.95);
        let o = finished(run(&mut b, grid(&[lo, hi], "never"), true).await);
        assert_eq!(o.winner.as_ref().map(|w| w.config), Some(lo));
        assert_eq!((o.validations, o.trials_eligible), (1, 2));
        assert!(o.winner.unwrap().validation.unwrap().recall_at_k < 0.95);
    }

    #[tokio::test(start_paused = true)]
    async fn an_adaptive_winner_must_also_pass_on_the_held_out_queries() {
        let mut b = Fake::new(9);
        b.held_out_penalty = 0.01;
        let f = SpecFields {
            strategy: Some("adaptive".into()),
            objective: Some("min_latency".into()),
            target_recall: Some(0.975),
            gate: Some("point".into()),
            validation_fraction: Some(0.2),
            promote: Some("never".into()),
            ..Default::default()
        };
        let o = finished(run(&mut b, f, true).await);
        let w = o.winner.clone().unwrap();
        assert!(w.validation.as_ref().unwrap().recall_at_k >= 0.975, "{w:?}");
        assert!(
            o.validations >= 2,
            "the thin-margin winners were checked first: {o:?}"
        );
        let out: Vec<_> = o
            .ineligible
            .iter()
            .filter(|i| i.reason.contains("held-out"))
            .collect();
        assert_eq!(out.len(), o.validations - 1);
        // every disqualified trial says so in the journal; the winner is the fastest of the rest
        for i in &out {
            let t = b.journal.iter().find(|t| t.id == i.trial_id).unwrap();
            assert!(
                t.note
                    .contains("ineligible: misses the recall bar on the held-out"),
                "{}",
                t.note
            );
        }
        let best_left = b
            .journal
            .iter()
            .filter(|t| t.metrics.recall_at_k >= 0.975 && !out.iter().any(|i| i.trial_id == t.id))
            .map(|t| t.metrics.search_latency_p50_us)
            .fold(f64::INFINITY, f64::min);
        assert_eq!(w.search_latency_p50_us, best_left);
        assert_eq!(
            o.trials_eligible,
            b.journal
                .iter()
                .filter(|t| t.metrics.recall_at_k >= 0.975)
                .count()
                - out.len()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn near_ties_are_reported_against_the_winner_not_acted_on() {
        let mut b = Fake::new(10);
        // the same cost in three graphs: within noise of each other
        let configs = [
            cfg(16, 80, 40),
            HnswConfig {
                seed: 7,
                ..cfg(16, 80, 40)
            },
            cfg(32, 80, 20),
        ];
        let o = finished(run(&mut b, grid(&configs, "never"), false).await);
        let w = o.winner.unwrap();
        assert_eq!(
            w.config, configs[0],
            "ties broken by the earlier trial, as the rule says"
        );
        assert_eq!(o.near_ties.len(), 2, "{:?}", o.near_ties);
        for t in &o.near_ties {
            assert!(t.low < 1.0 && t.high > 1.0, "{t:?}");
            assert!(t.latency_vs_winner.contains('['));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancel_keeps_what_was_measured_and_promotes_nothing() {
        let mut b = Fake::new(7);
        b.cancel_after = Some(2);
        let configs = [cfg(16, 80, 10), cfg(16, 80, 30), cfg(16, 80, 60)];
        let e = run(&mut b, grid(&configs, "always"), false).await;
        assert_eq!(e, End::Cancelled { trials_run: 2 });
        assert_eq!(b.journal.len(), 2);
        assert!(b.promoted.is_empty());
    }

    /// An adaptive `min_latency` dry run at `target`, under `gate` (`None`: the default).
    fn adaptive(target: f64, gate: Option<&str>) -> SpecFields {
        SpecFields {
            strategy: Some("adaptive".into()),
            objective: Some("min_latency".into()),
            target_recall: Some(target),
            gate: gate.map(str::to_string),
            promote: Some("never".into()),
            ..Default::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_confident_gate_is_the_default_of_min_latency_and_says_how_it_judged() {
        let mut b = Fake::new(5);
        let o = finished(run(&mut b, adaptive(0.95, None), false).await);
        let w = o.winner.unwrap();
        let a = w.assurance.clone().expect("the winner says how it was judged");
        assert_eq!(a.gate, "confident");
        assert_eq!(a.method.as_deref(), Some(crate::autotune::assure::METHOD));
        assert!(a.recall_ci_low.unwrap() >= 0.95, "{a:?}");
        assert!(a.recall_estimate.unwrap() >= a.recall_ci_low.unwrap(), "{a:?}");
        assert_eq!(a.queries, Some(400));
        assert!(a.graphs_compared.unwrap() >= 1);
        assert_eq!(a.near_ties_compared, Some(o.near_ties.len() as u64));
        // the bound is below the point estimate: the winner clears the target by a margin
        assert!(recall(&w.config) > 0.95, "{:?}", w.config);
        // point and wilson by name keep their rules, and say so
        for gate in ["point", "wilson"] {
            let mut b = Fake::new(5);
            let w = finished(run(&mut b, adaptive(0.95, Some(gate)), false).await)
                .winner
                .unwrap();
            let a = w.assurance.unwrap();
            assert_eq!(a.gate, gate);
            assert_eq!(a.method, None);
            assert_eq!(a.recall_estimate, Some(w.recall_at_k));
            assert_eq!(a.recall_ci_low, (gate == "wilson").then_some(w.recall_ci_low));
        }
    }

    /// The same request on the same data gives the same winner whatever the noise of the
    /// interleaved comparisons (three seeds): eligibility, steering and the rung rule are
    /// noise-free, and near-ties are decided above the noise or by the cheaper graph.
    #[tokio::test(start_paused = true)]
    async fn the_confident_pick_is_the_same_run_after_run() {
        let mut winners = Vec::new();
        for seed in [1, 2, 3] {
            let mut b = Fake::new(seed);
            let w = finished(run(&mut b, adaptive(0.95, None), false).await)
                .winner
                .unwrap();
            // the lowest passing rung of its graph: no higher ef of the same graph won
            assert!(b.journal.iter().all(|t| t.config.graph_id(Engine::Native)
                != w.config.graph_id(Engine::Native)
                || t.config.ef_search >= w.config.ef_search
                || recall(&t.config) < 0.95));
            winners.push(w.config);
        }
        assert!(winners.iter().all(|w| *w == winners[0]), "{winners:?}");
    }
}
