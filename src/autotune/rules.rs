//! The rules of one run: what it optimises, which trial is eligible, which wins, and whether
//! the winner replaces the incumbent. Winner of `max_recall`: the highest recall among
//! eligible trials, ties broken by the lower p50, then by the earlier trial; of
//! `min_latency`: the lowest p50 among trials whose recall (or its Wilson bound) reaches
//! the target. Either is a total order with no NaN anywhere.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::assure::Assurance;
use super::{AutotuneError, Result};
use crate::params::HnswConfig;
use crate::trials::{TrialMetrics, Validation};

/// `target_recall` when none is given.
pub const DEFAULT_TARGET_RECALL: f64 = 0.95;
/// `min_recall` when none is given.
pub const DEFAULT_MIN_RECALL: f64 = 0.9;
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
    /// A query-level 95 % lower bound of the recall, corrected for the configs compared
    /// near the target and monotone along `ef_search` ([`super::assure`]): the default of
    /// `min_latency`.
    Confident,
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

pub(super) fn unit(field: &'static str, v: Option<f64>, default: f64) -> Result<f64> {
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
        let gate = match gate {
            // the default: a query-level bound for a latency objective, the seed's rule else
            None if objective == Objective::MinLatency => Gate::Confident,
            None => Gate::Point,
            Some("point") => Gate::Point,
            Some("wilson") => Gate::Wilson,
            Some("confident") => Gate::Confident,
            Some(g) => return Err(bad("gate", "point, wilson, confident", g)),
        };
        let promote = match promote.unwrap_or("if_better") {
            "if_better" => Promote::IfBetter,
            "always" => Promote::Always,
            "never" => Promote::Never,
            p => return Err(bad("promote", "if_better, always, never", p)),
        };
        Ok(Rules {
            objective,
            target_recall: unit("target_recall", target_recall, DEFAULT_TARGET_RECALL)?,
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
        self.recall_margin(c) >= 0.0
    }

    /// How far the figure the bar judges (recall, or the gate's lower bound) lies above
    /// the bar; negative below it.
    pub fn recall_margin(&self, c: &Candidate) -> f64 {
        match self.objective {
            Objective::MaxRecall => c.recall_at_k - self.min_recall,
            Objective::MinLatency => {
                let r = match self.gate {
                    Gate::Point => c.recall_at_k,
                    Gate::Wilson => c.recall_ci_low,
                    // judged over the run's configs (`super::assure`); none yet: not passed
                    Gate::Confident => c.assurance.as_ref().and_then(|a| a.recall_ci_low).unwrap_or(0.0),
                };
                r - self.target_recall
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
    ///
    /// When trials missed the bar it names the best recall seen (and its config) and the
    /// bounds the run moved within, so a run that cannot reach the target says how far it
    /// got and what would let it go further.
    pub fn nobody_wins(&self, trials: &[Candidate], bounds: &crate::params::Bounds) -> String {
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
        if missed > 0 {
            if let Some(best) = trials
                .iter()
                .max_by(|a, b| a.recall_at_k.total_cmp(&b.recall_at_k))
            {
                parts.push(format!(
                    "best recall seen {:.4} ({}) within the bounds {}{}",
                    best.recall_at_k,
                    best.config.describe(),
                    bounds.describe(),
                    if bounds.max_ef_search < crate::params::Bounds::CEILING.max_ef_search {
                        " (a server raises them with tuning.max_ef_search, max_ef_construction, max_m)"
                    } else {
                        ""
                    }
                ));
            }
        }
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
        paired: &crate::measure::Paired,
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
                let gate = |at: usize, r: f64, low: f64| match self.gate {
                    Gate::Point => r,
                    Gate::Wilson => low,
                    // two configs re-measured on the same queries: no selection to correct
                    Gate::Confident => paired.query_recall_low(at, crate::autotune::assure::ALPHA),
                } >= self.target_recall;
                if !gate(w, rw, rw_low) {
                    (
                        false,
                        format!("kept: the winner misses target_recall on re-measurement; {figures}"),
                    )
                } else if !gate(i, ri, ri_low) {
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
    /// How the gate judged its recall (the confident gate's bound; the winner's always set).
    #[serde(default)]
    pub assurance: Option<Assurance>,
}

/// What winner selection looks at in a measured trial.
pub fn candidate_of(trial_id: Uuid, config: HnswConfig, m: &TrialMetrics) -> Candidate {
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
        assurance: None,
    }
}

/// The note a promoted autotune winner carries.
pub fn winner_note(c: &Candidate) -> String {
    format!(
        "autotune winner: recall={:.4} p50={:.1}us",
        c.recall_at_k, c.search_latency_p50_us
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A candidate of the default config (the gate's tests use it too).
    pub(crate) fn cand(n: u128, recall: f64, p50: f64) -> Candidate {
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
            assurance: None,
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
        // min_latency judges by the confident gate unless a gate is named
        let fast = |gate| {
            Rules::parse(Some("min_latency"), None, gate, None, None)
                .unwrap()
                .gate
        };
        assert_eq!(fast(None), Gate::Confident);
        assert_eq!(fast(Some("point")), Gate::Point);
        assert_eq!(fast(Some("wilson")), Gate::Wilson);
        assert_eq!(fast(Some("confident")), Gate::Confident);
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

    fn paired(lat: [f64; 2], found: [u32; 2]) -> crate::measure::Paired {
        // 100 queries, the same per-query latency in each config, found out of 10 slots
        crate::measure::Paired {
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
        let mut r = Rules::parse(Some("min_latency"), Some(0.9), Some("point"), None, None).unwrap();
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
        let why = r.nobody_wins(&[big.clone(), slow], &crate::params::Bounds::SEED);
        assert!(
            why.contains("memory") && why.contains("1 over max_build_secs"),
            "{why}"
        );
        assert!(!why.contains("best recall"), "none missed the bar: {why}");
        let low = [cand(0, 0.80, 10.0), cand(1, 0.85, 20.0)];
        let why = r.nobody_wins(&low, &crate::params::Bounds::SEED);
        assert!(
            why.contains("2 of 2 missed")
                && why.contains("best recall seen 0.8500")
                && why.contains("ef_search <= 200")
                && why.contains("tuning.max_ef_search"),
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
        let max_recall = |min_recall: f64| Rules {
            min_recall,
            ..Rules::parse(None, None, None, None, None).unwrap()
        };
        assert_eq!(max_recall(0.9).winner(&t), Some(2));
        assert_eq!(max_recall(0.995).winner(&t), None, "nothing eligible");
        assert_eq!(max_recall(0.0).winner(&[]), None);
        // the gate is inclusive
        assert_eq!(max_recall(0.9).winner(&[cand(0, 0.9, 1.0)]), Some(0));
        // below the gate never wins, however fast
        assert_eq!(
            max_recall(0.9).winner(&[cand(0, 0.5, 1.0), cand(1, 0.91, 99.0)]),
            Some(1)
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
    fn note_format() {
        assert_eq!(
            winner_note(&cand(0, 0.98, 12.34)),
            "autotune winner: recall=0.9800 p50=12.3us"
        );
    }
}
