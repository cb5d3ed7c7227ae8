//! The agent's view of live traffic: the canary after an activation, and drift.
//!
//! A harness can be easier than the traffic an index serves (stored vectors as queries
//! sit on the data; live queries may not). So once the agent has activated a promoted
//! config it watches the live recall monitor on the new generation until `canary_queries`
//! samples are in (or the monitor's whole window, if smaller) and judges the Wilson
//! lower bound of the live recall against the target: below it, the promotion is rolled
//! back and the previous config re-activated. Between runs, a live recall whose *upper*
//! bound is below the target (drift beyond the noise) wakes the agent like growth does.

use serde::{Deserialize, Serialize};

use chrono::{DateTime, Utc};

use crate::monitor::LiveStats;

/// What the agent last decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Its run promoted a config.
    Promoted,
    /// Its run kept the incumbent.
    Kept,
    /// It activated the promoted config (and, once judged, its canary passed).
    Activated,
    /// The canary failed: the promotion was rolled back and the previous config activated.
    RolledBack,
}

impl Action {
    /// The action's wire name (a metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Promoted => "promoted",
            Action::Kept => "kept",
            Action::Activated => "activated",
            Action::RolledBack => "rolled_back",
        }
    }
}

/// One decision, as shown and stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// When.
    pub at: DateTime<Utc>,
    /// What.
    pub action: Action,
    /// Why, with the figures.
    pub reason: String,
}

impl Decision {
    /// A decision taken now.
    pub fn now(action: Action, reason: impl Into<String>) -> Decision {
        Decision {
            at: Utc::now(),
            action,
            reason: reason.into(),
        }
    }
}

/// Where a canary is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// Not enough live samples of the new generation yet.
    Waiting {
        /// Samples so far.
        have: usize,
        /// Samples needed.
        need: usize,
    },
    /// The lower bound of the live recall reaches the target.
    Passed(LiveStats),
    /// It does not.
    Failed(LiveStats),
}

/// Judges the canary of `generation`: `canary_queries` samples (at most the monitor's
/// window) of it, then its live recall's Wilson lower bound against `target`.
pub fn judge(live: Option<LiveStats>, generation: u64, canary_queries: usize, target: f64) -> Verdict {
    let Some(l) = live.filter(|l| l.generation == generation) else {
        return Verdict::Waiting {
            have: 0,
            need: canary_queries,
        };
    };
    let need = canary_queries.min(l.window).max(1);
    if l.queries < need {
        Verdict::Waiting {
            have: l.queries,
            need,
        }
    } else if l.recall_ci_low >= target {
        Verdict::Passed(l)
    } else {
        Verdict::Failed(l)
    }
}

/// Whether live recall has drifted below `target` beyond the noise: enough samples, and
/// even the upper bound misses.
pub fn drifted(live: Option<LiveStats>, canary_queries: usize, target: f64) -> bool {
    live.is_some_and(|l| l.queries >= canary_queries.min(l.window).max(1) && l.recall_ci_high < target)
}

/// "recall 0.9312 (95 % lower bound 0.9120) over 500 live queries of generation 4".
pub fn describe(l: &LiveStats) -> String {
    format!(
        "live recall {:.4} (95 % bounds {:.4}..{:.4}) over {} sampled queries of generation {}",
        l.recall_at_k, l.recall_ci_low, l.recall_ci_high, l.queries, l.generation
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(queries: usize, recall: f64, low: f64, high: f64, generation: u64) -> LiveStats {
        LiveStats {
            queries,
            recall_at_k: recall,
            recall_ci_low: low,
            recall_ci_high: high,
            window: 1000,
            generation,
        }
    }

    #[test]
    fn the_canary_waits_for_its_samples_of_its_generation() {
        assert_eq!(judge(None, 3, 500, 0.95), Verdict::Waiting { have: 0, need: 500 });
        // samples of the previous generation do not count
        assert!(matches!(
            judge(Some(live(900, 0.99, 0.98, 1.0, 2)), 3, 500, 0.95),
            Verdict::Waiting { have: 0, .. }
        ));
        assert_eq!(
            judge(Some(live(499, 0.5, 0.4, 0.6, 3)), 3, 500, 0.95),
            Verdict::Waiting { have: 499, need: 500 }
        );
        // a window smaller than canary_queries: the whole window is enough
        let small = LiveStats {
            window: 100,
            ..live(100, 0.99, 0.98, 1.0, 3)
        };
        assert!(matches!(judge(Some(small), 3, 500, 0.95), Verdict::Passed(_)));
    }

    #[test]
    fn the_canary_judges_the_lower_bound() {
        assert!(matches!(
            judge(Some(live(500, 0.97, 0.96, 0.98, 3)), 3, 500, 0.95),
            Verdict::Passed(_)
        ));
        // a point estimate above the target whose bound is below fails: not proven good
        assert!(matches!(
            judge(Some(live(500, 0.955, 0.94, 0.97, 3)), 3, 500, 0.95),
            Verdict::Failed(_)
        ));
    }

    #[test]
    fn drift_needs_the_upper_bound_below_the_target() {
        assert!(!drifted(None, 500, 0.95));
        assert!(
            !drifted(Some(live(100, 0.5, 0.4, 0.6, 1)), 500, 0.95),
            "too few samples"
        );
        assert!(
            !drifted(Some(live(600, 0.94, 0.93, 0.955, 1)), 500, 0.95),
            "within noise"
        );
        assert!(drifted(Some(live(600, 0.90, 0.88, 0.92, 1)), 500, 0.95));
    }

    #[test]
    fn decisions_serialise_as_the_contract_spells_them() {
        let d = Decision::now(Action::RolledBack, "why");
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(v["action"], "rolled_back");
        assert!(v["at"].as_str().unwrap().contains('T'));
    }
}
