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

use super::adaptive::{Adaptive, Ladders, Observation};
use super::assure::{assurance_of, assure_all};
pub use super::backend::{Backend, Recorded, Setup};
use super::forecast::BuildForecast;
use super::refine::{RefineStats, Refiner};
use super::transfer::{SampleReport, Transfer};
use super::{graph_groups, Candidate, Gate, Ineligible, Objective, Promote, Rules, Spec, Strategy};
use crate::measure::ROUNDS;
use crate::params::{HnswConfig, Quantization};

/// Trials whose p50 is within this fraction of the best's are re-measured interleaved
/// before the winner is named: single p50s that close are inside the noise.
pub const NEAR_TIE: f64 = 0.10;
/// Near-ties re-measured at most.
pub const MAX_NEAR_TIES: usize = 6;
/// Graphs of the climb offered to other instances at a time ([`Run::prefetch_climb`]).
pub const PREFETCH: usize = 2;
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
    /// The highest recall any trial reached: how far a run that found no winner got.
    pub best_recall: Option<f64>,
    /// What the sample's exploration did, when the run sampled ([`super::transfer`]).
    pub sample: Option<SampleReport>,
    /// Of `builds`, the graphs other instances built for the run ([`crate::fleet::work`]).
    pub builds_elsewhere: usize,
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
    /// The sample's leading graphs on the full index ([`staged`]).
    Transfer(Box<Transfer>),
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
    /// The builds seen so far at this run's size: the budget's build forecast.
    forecast: BuildForecast,
    refine: RefineStats,
    builds_before_refine: usize,
    /// Candidates measured on the held-out queries.
    validated: usize,
    /// The pick and its near-ties with their interleaved comparison (pick first).
    compared: Option<(Vec<Candidate>, crate::measure::Paired)>,
    /// The climb's quantization once a paired comparison chose it ([`climb`]).
    climb_quantization: Option<Quantization>,
    /// Trials the held-out check took out of the running, with why.
    disqualified: Vec<(Uuid, String)>,
    /// The sample's exploration, when the run sampled ([`staged`]).
    sampled: Option<staged::Sampled>,
    /// On a sample's run: how much longer a full build takes, and the seconds left for
    /// the full index's first build — a graph whose full build would not fit is not
    /// explored.
    full: Option<(f64, f64)>,
}

type Step<T, E> = Result<Option<T>, E>;

/// Whether a build of `(m, ef_construction)` fits the `left` seconds as `forecast` sees it
/// and, on a sample's run (`full`: how much longer a full build takes, and the
/// seconds kept for it), whether its full build would fit too.
fn build_fits(forecast: &BuildForecast, full: Option<(f64, f64)>, (m, ec): (u32, u32), left: f64) -> bool {
    let secs = forecast.secs(m, ec);
    secs <= left && full.is_none_or(|(scale, kept)| secs * scale <= kept)
}

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
            adaptive: Adaptive::new(setup.seed, Ladders::within(&spec.bounds)),
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
            forecast: BuildForecast::default(),
            refine: RefineStats::default(),
            builds_before_refine: 0,
            validated: 0,
            climb_quantization: None,
            compared: None,
            disqualified: Vec::new(),
            sampled: None,
            full: None,
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
        // links already built in any quantization cost no build: only codes are derived
        let links = c.links_id(self.setup.engine);
        self.candidates
            .iter()
            .any(|x| x.config.links_id(self.setup.engine) == links)
            || build_fits(&self.forecast, self.full, (c.m, c.ef_construction), left)
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
                                let (forecast, full) = (&self.forecast, self.full);
                                self.adaptive
                                    .next(&|m, ec| build_fits(forecast, full, (m, ec), left))
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
                Phase::Transfer(_) => {
                    if let Some(c) = self.next_transfer(left) {
                        return Some(c);
                    }
                    self.phase = Phase::Done;
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
                .filter(|c| self.climb_quantization.is_none_or(|q| c.config.quantization == q))
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
            // the quantizations the climb compared by a paired comparison are not probed
            // again; the others (sq4) are
            &w.config
                .quantization
                .twins()
                .filter(|q| self.climb_quantization.is_none() || !climb::CLIMBED.contains(q))
                .collect::<Vec<_>>(),
            &Ladders::within(&self.spec.bounds),
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
            self.forecast
                .observe(config.m, config.ef_construction, metrics.build_time_secs);
        }
        let id = Uuid::now_v7();
        self.candidates.push(super::candidate_of(id, config, &metrics));
        self.per_query
            .push(metrics.per_query_recall.iter().map(|&r| f64::from(r)).collect());
        self.rejudge();
        let c = self.candidates[self.candidates.len() - 1].clone();
        let passes = self.rules().eligible(&c);
        let mut note = self.setup.note.clone();
        if let Some(why) = self.choose_quantization(config).await? {
            note.push_str(&why);
        }
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
            Phase::Transfer(t) => t.observe(config, passes),
            // a held-out miss's step up ([`Run::validate`]): nothing left to steer
            Phase::Done => {}
            Phase::Climb => self.adaptive.observe(
                config,
                Observation {
                    passes,
                    recall: c.recall_at_k,
                    cost: metrics.distance_evals_per_query,
                    // a config a cap rules out counts as below the bar
                    margin: match self.rules().recall_margin(&c) {
                        m if passes => m.max(0.0),
                        m => m.min(0.0),
                    },
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
        self.b.progress(self.progress_base() + self.candidates.len());
        Ok(Some(c))
    }

    /// Whether a trial can win: the rules' eligibility, less the trials the held-out
    /// check disqualified.
    fn can_win(&self, c: &Candidate) -> bool {
        self.rules().eligible(c) && !self.disqualified.iter().any(|(id, _)| *id == c.trial_id)
    }

    /// Step 4: promotes the winner as the policy says; `(promoted, reason)`, `None` when
    /// cancelled.
    pub async fn decide(&mut self, winner: Option<&Candidate>) -> Step<(bool, Option<String>), B::Error> {
        let rules = *self.rules();
        let Some(w) = winner else {
            return Ok(Some((
                false,
                Some(rules.nobody_wins(&self.candidates, &self.spec.bounds)),
            )));
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

    /// Steps 1 and 2 until the run has measured enough; whether it was cancelled.
    async fn explore(&mut self) -> Result<bool, B::Error> {
        let mut cancelled = false;
        while let Some(config) = self.next_config() {
            self.prefetch_climb().await?;
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
        Ok(cancelled)
    }

    /// Graphs the climb would build next, offered to be built elsewhere meanwhile
    /// ([`Backend::prefetch`]): adaptive climbs only (a grid offers all its graphs at the
    /// start, refinement's builds are few and chosen one at a time).
    async fn prefetch_climb(&mut self) -> Result<(), B::Error> {
        if !matches!(self.spec.strategy, Strategy::Adaptive { .. }) || !matches!(self.phase, Phase::Climb) {
            return Ok(());
        }
        let left = match self.spec.strategy {
            Strategy::Adaptive { budget, .. } => budget.as_secs_f64() - self.started.elapsed().as_secs_f64(),
            Strategy::Grid => f64::INFINITY,
        };
        let (forecast, full) = (&self.forecast, self.full);
        let next = self
            .adaptive
            .upcoming(PREFETCH, &|m, ec| build_fits(forecast, full, (m, ec), left));
        self.b.prefetch(&next).await
    }

    /// Runs the steps to the end (a large index: on a sample first, [`staged`]).
    pub async fn run(mut self) -> Result<End, B::Error> {
        if self.spec.strategy == Strategy::Grid {
            let all: Vec<HnswConfig> = self.grid.as_slice().to_vec();
            self.b.prefetch(&all).await?;
        }
        let mut cancelled = match self.explore_sample().await? {
            None => true,
            Some(()) => self.explore().await?,
        };
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
            winner = Some(self.repick(w));
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
            refinement: self.refinement(),
            ineligible,
            validations: self.validated,
            near_ties,
            best_recall: self
                .candidates
                .iter()
                .map(|c| c.recall_at_k)
                .max_by(f64::total_cmp),
            sample: self.sample_report(),
            builds_elsewhere: self.b.builds_elsewhere(),
        })))
    }

    /// Whether this run refines after its climb: adaptive `min_latency` runs only.
    fn refines(&self) -> bool {
        matches!(self.spec.strategy, Strategy::Adaptive { .. })
            && self.rules().objective == Objective::MinLatency
    }
}

mod climb;
mod staged;
#[cfg(test)]
mod tests;
mod winner;
