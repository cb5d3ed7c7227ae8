//! An autotune request parsed and checked before anything runs (a bad field is a 400,
//! never a half-done run or a job), and the one fixed split of a harness into tuning and
//! held-out queries.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::plan::plan_of;
use super::rules::{unit, DEFAULT_MIN_IMPROVEMENT};
use super::{plan, AutotuneError, Plan, Result, Rules};
use crate::params::{Bounds, HnswConfig, RawHnswConfig};
use crate::rng::SplitMix64;

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
    /// The server's bounds: a grid's entries are checked against them, the adaptive
    /// search and its refinement move within them.
    pub bounds: Bounds,
    /// Whether an adaptive run explores graphs on a sample of the index first.
    pub sample: Sampling,
}

/// Whether an adaptive run explores graph parameters on a uniform sample of the index and
/// transfers the leading graphs to the full index ([`super::transfer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "by", content = "rows")]
pub enum Sampling {
    /// The run decides: indexes of [`super::transfer::SAMPLE_FROM`] rows or more are
    /// sampled, at the size [`super::transfer::sample_rows`] chooses.
    Auto,
    /// Never: every trial builds on the full index.
    Off,
    /// A sample of this many rows (the request's `sample_rows`); an index of no more rows
    /// is tuned whole.
    Rows(usize),
}

/// The least `sample_rows` a request may ask for: below it a graph's recall says little
/// about the full index's.
pub const MIN_SAMPLE_ROWS: usize = 1000;

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
    /// `point`, `wilson` or `confident` (the default of `min_latency`).
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
    /// Rows of the sample an adaptive run explores graphs on before it transfers the
    /// leading ones to the full index: absent, the run decides; 0, never; else at least
    /// [`MIN_SAMPLE_ROWS`].
    #[serde(default)]
    pub sample_rows: Option<i64>,
}

impl Spec {
    /// Checks every field (grid entries against `bounds`); the first bad one is the error.
    pub fn parse(f: &SpecFields, bounds: Bounds) -> Result<Spec> {
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
        let sample = match f.sample_rows {
            None => Sampling::Auto,
            Some(0) => Sampling::Off,
            Some(n) if n >= MIN_SAMPLE_ROWS as i64 => {
                Sampling::Rows(usize::try_from(n).unwrap_or(usize::MAX))
            }
            Some(n) => {
                return Err(invalid(
                    "sample_rows",
                    format!("must be 0 (never sample) or at least {MIN_SAMPLE_ROWS} rows, got {n}"),
                ))
            }
        };
        let (strategy, plan) = match f.strategy.as_deref().unwrap_or("grid") {
            "grid" if f.sample_rows.is_some_and(|n| n > 0) => {
                return Err(invalid(
                    "sample_rows",
                    "a grid is measured on the full index: sample_rows needs the adaptive strategy".into(),
                ))
            }
            "grid" => (Strategy::Grid, plan(f.grid.as_deref(), &bounds)?),
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
            bounds,
            sample,
        })
    }

    /// A grid run of `configs` (already parsed, within `bounds`) by `rules`, every query
    /// tuned on: what an agent asks for, with no raw fields to re-parse.
    pub fn grid(rules: Rules, configs: &[HnswConfig], bounds: Bounds) -> Result<Spec> {
        Ok(Spec {
            rules,
            strategy: Strategy::Grid,
            plan: plan_of(configs)?,
            validation_fraction: 0.0,
            bounds,
            sample: Sampling::Off,
        })
    }

    /// Trials the run expects: the grid's configs, or `max_trials` (adaptive may end below).
    pub fn planned_trials(&self) -> usize {
        match self.strategy {
            Strategy::Grid => self.plan.configs.len(),
            Strategy::Adaptive { max_trials, .. } => max_trials,
        }
    }

    /// Trials the run expects over an index of `rows` live rows: a sampled run may measure
    /// `max_trials` on the sample and as many on the full index (a job's progress counts both).
    pub fn planned_trials_over(&self, rows: usize) -> usize {
        match self.samples(rows) {
            Some(_) => 2 * self.planned_trials(),
            None => self.planned_trials(),
        }
    }

    /// Rows of the sample a run over `rows` live rows explores on first, `None` when it tunes
    /// the index whole: only adaptive `min_latency` runs sample (the transfer decides the least
    /// `ef_search` that passes), and only with trials enough for two sizes.
    pub fn samples(&self, rows: usize) -> Option<usize> {
        match self.strategy {
            Strategy::Adaptive { max_trials, .. }
                if max_trials >= super::transfer::MIN_SAMPLED_TRIALS
                    && self.rules.objective == super::Objective::MinLatency =>
            {
                super::transfer::sample_rows(rows, self.sample)
            }
            _ => None,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_parses_and_refuses_each_field() {
        let ok = Spec::parse(&SpecFields::default(), Bounds::SEED).unwrap();
        assert_eq!(
            (ok.strategy, ok.validation_fraction, ok.plan.configs.len()),
            (Strategy::Grid, 0.0, 5)
        );
        let a = Spec::parse(
            &SpecFields {
                strategy: Some("adaptive".into()),
                ..Default::default()
            },
            Bounds::SEED,
        )
        .unwrap();
        assert_eq!(
            a.strategy,
            Strategy::Adaptive {
                max_trials: 40,
                budget: Duration::from_secs(300)
            }
        );
        assert_eq!(a.planned_trials(), 40);
        assert_eq!(a.sample, Sampling::Auto);
        let sampled = |n| {
            Spec::parse(
                &SpecFields {
                    strategy: Some("adaptive".into()),
                    sample_rows: Some(n),
                    ..Default::default()
                },
                Bounds::SEED,
            )
            .map(|s| s.sample)
        };
        assert_eq!(sampled(0).ok(), Some(Sampling::Off));
        // who samples: adaptive min_latency runs with trials for two sizes, over a large index
        let min_latency = |trials: i64, objective: &str| {
            Spec::parse(
                &SpecFields {
                    strategy: Some("adaptive".into()),
                    objective: Some(objective.into()),
                    max_trials: Some(trials),
                    ..Default::default()
                },
                Bounds::SEED,
            )
            .unwrap()
        };
        let s = min_latency(40, "min_latency");
        assert_eq!(
            (s.samples(1_000_000), s.planned_trials_over(1_000_000)),
            (Some(100_000), 80)
        );
        assert_eq!((s.samples(10_000), s.planned_trials_over(10_000)), (None, 40));
        assert_eq!(min_latency(3, "min_latency").samples(1_000_000), None);
        assert_eq!(min_latency(40, "max_recall").samples(1_000_000), None);
        assert_eq!(ok.samples(1_000_000), None, "a grid is measured whole");
        assert_eq!(sampled(1000).ok(), Some(Sampling::Rows(1000)));
        assert_eq!(
            (
                ok.rules.min_improvement,
                ok.rules.max_memory_bytes,
                ok.rules.max_build_secs
            ),
            (0.05, None, None)
        );
        let capped = Spec::parse(
            &SpecFields {
                min_improvement: Some(0.1),
                max_memory_bytes: Some(1 << 20),
                max_build_secs: Some(2.5),
                ..Default::default()
            },
            Bounds::SEED,
        )
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
            SpecFields {
                strategy: Some("adaptive".into()),
                sample_rows: Some(999),
                ..Default::default()
            },
            SpecFields {
                strategy: Some("adaptive".into()),
                sample_rows: Some(-1),
                ..Default::default()
            },
            SpecFields {
                sample_rows: Some(5000),
                ..Default::default()
            },
        ];
        for f in bad {
            assert!(Spec::parse(&f, Bounds::SEED).is_err(), "{f:?}");
        }
        assert!(Spec::parse(
            &SpecFields {
                validation_fraction: Some(0.49),
                ..Default::default()
            },
            Bounds::SEED
        )
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
}
