//! Autotune, the tuning engine: measure candidate configs through the trial journal, pick
//! a winner that clears the recall bar, decide whether it replaces the incumbent.
//!
//! One room, split by concept: [`rules`] (eligibility, the winner, the promotion decision),
//! [`spec`] (a request parsed before anything runs), [`plan`] (a grid and its builds),
//! [`adaptive`] and [`refine`] (choosing configs by themselves), [`forecast`] (how long a
//! build will take), [`cache`] (graphs a run keeps), [`engine`] (the run loop, generic over its [`backend`]), [`result`] (what a run
//! reports) and [`tuner`] (the component that runs the engine over the service's vectors,
//! harnesses, journal and registry, under the run's claim). Measurement itself lives below,
//! in [`crate::measure`]; who may tune an index now is [`crate::fleet::Claims`]'s rule.

pub mod adaptive;
pub mod assure;
pub mod backend;
pub mod cache;
pub mod engine;
mod error;
pub mod forecast;
pub mod plan;
pub mod refine;
pub mod result;
pub mod rules;
pub mod spec;
pub mod transfer;
pub mod tuner;

pub use cache::GraphCache;
pub use error::{AutotuneError, Result};
pub use plan::{graph_groups, plan, Plan, DEFAULT_GRID};
pub use result::{AutotuneResult, Ineligible};
pub use rules::{
    candidate_of, min_recall, winner_note, Candidate, Gate, Objective, Promote, Rules,
    DEFAULT_MIN_IMPROVEMENT, DEFAULT_MIN_RECALL, DEFAULT_TARGET_RECALL,
};
pub use spec::{
    split_queries, Sampling, Spec, SpecFields, Strategy, DEFAULT_BUDGET_SECS, DEFAULT_MAX_TRIALS,
};
pub use tuner::{
    AutotuneRequest, BuiltForFleet, CheckedAutotune, PreparedAutotune, RunEnd, TrialRequest, Tuner,
    TunerError, TunerParts,
};
