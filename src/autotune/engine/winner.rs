//! Step 3 of a run: the winner under the rules, its check on the held-out queries, and
//! the near-ties re-measured against it.

use super::{Backend, NearTie, Run, Step, MAX_NEAR_TIES, MAX_VALIDATIONS, NEAR_TIE};
use crate::autotune::assure::{cheapness, holds_out, lowest_rung, repick};
use crate::autotune::{Candidate, Gate, Objective, Strategy};
use crate::measure::ROUNDS;
use crate::trials::Validation;

/// How far a graph's `ef_search` steps up after a held-out miss ([`Run::step_up`]): a
/// tenth, so the step lands near the least ef that holds there (×1.25 overshot it by up to a
/// fifth on the fake backend's known truth) at the price of a few more cheap measurements.
const STEP_UP: f64 = 1.1;

impl<B: Backend> Run<'_, B> {
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
            let passes = if self.rules().gate == Gate::Confident {
                // all its queries at the gate's corrected level, the held-out share not
                // contradicting them ([`holds_out`])
                let held: Vec<f64> = m.per_query_recall.iter().map(|&r| f64::from(r)).collect();
                let tuning = self
                    .candidates
                    .iter()
                    .position(|c| c.trial_id == w.trial_id)
                    .map_or(&[][..], |i| &self.per_query[i][..]);
                let compared = w.assurance.as_ref().and_then(|a| a.graphs_compared).unwrap_or(1);
                holds_out(tuning, &held, compared as usize, self.rules().target_recall)
            } else {
                self.rules()
                    .passes_recall(&crate::autotune::candidate_of(w.trial_id, w.config, &m))
            };
            if !walk || passes || self.validated >= MAX_VALIDATIONS {
                return Ok(Some(Some(w)));
            }
            self.disqualified.push((
                w.trial_id,
                format!(
                    "misses the recall bar on the held-out queries (recall {:.4} on {})",
                    m.recall_at_k, m.eval_queries
                ),
            ));
            if let Some(up) = self.step_up(&w) {
                let Some(c) = self.measure_and_record(up).await? else {
                    return Ok(None);
                };
                if let Some(t) = self.pending.iter_mut().find(|t| t.id == c.trial_id) {
                    t.note
                        .push_str("; held-out step: its graph's least passing ef_search missed there");
                }
            }
            match self.pick() {
                Some(next) => w = next,
                None => return Ok(Some(None)),
            }
        }
    }

    /// After `w` missed on the held-out queries: its graph one step up in `ef_search`
    /// (×[`STEP_UP`], within the bounds), when the run measured no rung of that graph above
    /// `w` that could still win. Why: a graph whose least passing ef misses there is most
    /// often still the fastest graph at a few more ef (recall is monotone in ef on one
    /// graph, and its rungs were chosen to sit just over the bar); without the step the walk
    /// could only fall back to other graphs' measured rungs — at 1M × 128 a RaBitQ graph
    /// serving at 44 µs lost to an SQ8 config at 93 µs that way. Measuring another ef of a
    /// held graph needs no build.
    fn step_up(&self, w: &Candidate) -> Option<crate::params::HnswConfig> {
        let engine = self.setup.engine;
        let id = w.config.graph_id(engine);
        let e = w.config.ef_search;
        let higher = self
            .candidates
            .iter()
            .any(|c| c.config.graph_id(engine) == id && c.config.ef_search > e && self.can_win(c));
        let up = ((f64::from(e) * STEP_UP).ceil() as u32)
            .max(e + 1)
            .min(self.spec.bounds.max_ef_search);
        let up = crate::params::HnswConfig {
            ef_search: up,
            ..w.config
        };
        let measured = self.candidates.iter().any(|c| c.config == up);
        (!higher && !measured && up.ef_search > e).then_some(up)
    }

    /// The trials within [`NEAR_TIE`] of the winner's p50 (under the confident gate, or of
    /// its exact search work) that could have won, re-measured interleaved against it,
    /// cheapest first: how far the pick is above the noise. Under `point` and
    /// `wilson` they are reported, not acted on (the literal rule picks); under the
    /// confident gate [`repick`] decides among them. `None` when cancelled.
    pub async fn near_ties(&mut self, w: &Candidate) -> Step<Vec<NearTie>, B::Error> {
        let mut ties: Vec<Candidate> = Vec::new();
        for c in self.candidates.iter().filter(|c| self.representative(c)) {
            let same_bar = match self.rules().objective {
                Objective::MinLatency => true,
                Objective::MaxRecall => c.recall_at_k == w.recall_at_k,
            };
            if same_bar
                && self.can_win(c)
                && c.config != w.config
                && (c.search_latency_p50_us <= w.search_latency_p50_us * (1.0 + NEAR_TIE)
                    || self.as_cheap(c, w))
                && !ties.iter().any(|t| t.config == c.config)
            {
                ties.push(c.clone());
            }
        }
        // the cheapest graphs first, so the ones a tie would go to are always compared
        ties.sort_by_key(cheapness);
        ties.truncate(MAX_NEAR_TIES - 1);
        if ties.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let mut configs = vec![w.config];
        configs.extend(ties.iter().map(|t| t.config));
        let Some(p) = self.b.paired(&configs, ROUNDS).await? else {
            return Ok(None);
        };
        let reported = ties
            .iter()
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
            .collect();
        let mut pool = vec![w.clone()];
        pool.extend(ties);
        self.compared = Some((pool, p));
        Ok(Some(reported))
    }

    /// Under the confident gate, the winner among the pick and its near-ties by their
    /// interleaved comparison ([`repick`]); the pick itself when none was compared.
    pub(super) fn repick(&self, w: Candidate) -> Candidate {
        match &self.compared {
            Some((pool, p)) if pool.first().is_some_and(|c| c.trial_id == w.trial_id) => {
                pool[repick(pool, |a, b| p.effect(a, b))].clone()
            }
            _ => w,
        }
    }

    /// Whether `c` searches with no more exact work than `w` (within [`NEAR_TIE`]) in the
    /// same quantization: compared whatever its p50 read, since one p50 on a drifting
    /// machine (the same config read 28 and 35 µs in two runs on pydocs) would let it in
    /// on one run and not the next. Only under the confident gate, which acts on the ties.
    fn as_cheap(&self, c: &Candidate, w: &Candidate) -> bool {
        self.rules().gate == Gate::Confident
            && c.config.quantization == w.config.quantization
            && c.distance_evals_per_query <= w.distance_evals_per_query * (1.0 + NEAR_TIE)
    }
}
