//! The background tuning agent of an index.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::{wire_enum, ConfigOut};
use crate::agent::{AgentConfig, Decision};
use crate::service::AgentView;

wire_enum! {
    /// What the agent is doing.
    AgentStateOut from crate::agent::AgentState { Idle, Running, CoolingDown, Canary, Disabled }
}

wire_enum! {
    /// What a decision did.
    ActionOut from crate::agent::canary::Action { Promoted, Kept, Activated, RolledBack }
}

/// An agent's settings, defaults filled in.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentConfigOut {
    /// The harness its trials measure against.
    pub harness: String,
    /// Whether it runs.
    pub enabled: bool,
    /// Pause after a run, seconds.
    pub cooldown_secs: f64,
    /// Trials per rolling hour at most.
    pub max_trials_per_hour: u64,
    /// Share of trials that explore the whole space.
    pub epsilon: f64,
    /// Growth (share of the vectors at its last run) that wakes it early.
    pub retune_on_growth: f64,
    /// `max_recall` or `min_latency`, if set.
    pub objective: Option<String>,
    /// Recall bar of `min_latency`, if set.
    pub target_recall: Option<f64>,
    /// Whether it activates what it promotes (behind a canary).
    pub activate: bool,
    /// Live searches the canary judges over.
    pub canary_queries: u64,
    /// Whether it re-captures a captured harness before a run.
    pub refresh_harness: bool,
}

impl From<&AgentConfig> for AgentConfigOut {
    fn from(c: &AgentConfig) -> Self {
        AgentConfigOut {
            harness: c.harness.to_string(),
            enabled: c.enabled,
            cooldown_secs: c.cooldown_secs,
            max_trials_per_hour: c.max_trials_per_hour,
            epsilon: c.epsilon,
            retune_on_growth: c.retune_on_growth,
            objective: c.asked.objective.clone(),
            target_recall: c.asked.target_recall,
            activate: c.activate,
            canary_queries: c.canary_queries,
            refresh_harness: c.refresh_harness,
        }
    }
}

/// One decision of the agent.
#[derive(Debug, Serialize, ToSchema)]
pub struct DecisionOut {
    /// When.
    pub at: DateTime<Utc>,
    /// What.
    pub action: ActionOut,
    /// Why, with the figures.
    pub reason: String,
}

impl From<&Decision> for DecisionOut {
    fn from(d: &Decision) -> Self {
        DecisionOut {
            at: d.at,
            action: d.action.into(),
            reason: d.reason.clone(),
        }
    }
}

/// `GET`/`PUT /vectors/hnsw/agent/{index}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentOut {
    /// The index.
    pub index_name: String,
    /// Its settings, or null when none is set.
    pub config: Option<AgentConfigOut>,
    /// When it last ran.
    pub last_run_at: Option<DateTime<Utc>>,
    /// Trials in the last hour.
    pub trials_last_hour: usize,
    /// Runs since start.
    pub runs: u64,
    /// What it is doing.
    pub state: AgentStateOut,
    /// Its newest decision.
    pub last_decision: Option<DecisionOut>,
    /// Recent decisions, newest first.
    pub decisions: Vec<DecisionOut>,
    /// Configs a failed canary rolled back (never promoted again by it).
    pub rejected: Vec<ConfigOut>,
    /// The instance that holds the agent's lease (where it runs), or null when no
    /// instance holds it now. `state` is this instance's view of its own loop.
    pub instance: Option<String>,
}

impl From<&AgentView> for AgentOut {
    fn from(v: &AgentView) -> Self {
        AgentOut {
            index_name: v.index_name.to_string(),
            config: v.config.as_ref().map(AgentConfigOut::from),
            last_run_at: v.last_run_at,
            trials_last_hour: v.trials_last_hour,
            runs: v.runs,
            state: v.state.into(),
            last_decision: v.last_decision.as_ref().map(DecisionOut::from),
            decisions: v.decisions.iter().map(DecisionOut::from).collect(),
            rejected: v.rejected.iter().map(|c| ConfigOut::from(*c)).collect(),
            instance: v.instance.map(|i| i.to_string()),
        }
    }
}
