//! An agent's settings (parsed once, bounds checked) and the record stored for it: its
//! settings, state, recent decisions and runs.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Decision, DEFAULT_CANARY_QUERIES};
use crate::autotune::Rules;
use crate::names::{HarnessName, NameError};
use crate::params::HnswConfig;

fn default_canary() -> u64 {
    DEFAULT_CANARY_QUERIES
}

/// Errors of the agent module.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A setting out of its domain.
    #[error("{field}: {reason}")]
    InvalidField {
        /// The field.
        field: &'static str,
        /// What it must be.
        reason: String,
    },
    /// A harness name that does not parse.
    #[error(transparent)]
    Name(#[from] NameError),
}

impl crate::error::Classified for AgentError {
    fn classify(&self) -> crate::error::Class {
        match self {
            AgentError::InvalidField { .. } => crate::error::Class::invalid("invalid_agent_config"),
            AgentError::Name(n) => n.classify(),
        }
    }
}

/// The settings of an agent, parsed once: its harness is a harness name and its objective
/// and bar are the [`Rules`] its runs decide by (always `if_better`), so nothing downstream
/// re-parses them. Stored (and shown) in the form it was PUT in, see [`StoredAgentConfig`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "StoredAgentConfig", into = "StoredAgentConfig")]
pub struct AgentConfig {
    /// The harness its trials measure against.
    pub harness: HarnessName,
    /// What its runs optimise and how they decide (objective, target, `if_better`).
    pub rules: Rules,
    /// Whether it runs.
    pub enabled: bool,
    /// Pause after a run, seconds.
    pub cooldown_secs: f64,
    /// Trials per rolling hour at most.
    pub max_trials_per_hour: u64,
    /// Share of trials that explore the whole space.
    pub epsilon: f64,
    /// Growth (fraction of the vectors at the last run) that wakes it early.
    pub retune_on_growth: f64,
    /// Keep the serving generation on the promoted config (activate, then canary).
    pub activate: bool,
    /// Live samples of a new generation its canary judges.
    pub canary_queries: u64,
    /// Re-capture its (captured) harness after each run.
    pub refresh_harness: bool,
    /// The rules' fields as the PUT gave them (`None`: left to the default): the stored
    /// record and the API show what was set, not what was filled in.
    pub asked: AskedRules,
}

/// The rules' fields of an agent's PUT, as given.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AskedRules {
    /// `max_recall` or `min_latency`, if given.
    pub objective: Option<String>,
    /// Recall bar of `min_latency`, if given.
    pub target_recall: Option<f64>,
}

/// An agent's settings as stored in `indexes/{index}/agent.json` (the format of every
/// version so far): the raw harness name and rules' fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredAgentConfig {
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
    /// Growth (fraction of the vectors at the last run) that wakes it early.
    pub retune_on_growth: f64,
    /// `max_recall` or `min_latency` (default `max_recall`).
    #[serde(default)]
    pub objective: Option<String>,
    /// Recall bar of `min_latency`.
    #[serde(default)]
    pub target_recall: Option<f64>,
    /// Keep the serving generation on the promoted config (activate, then canary).
    #[serde(default)]
    pub activate: bool,
    /// Live samples of a new generation its canary judges.
    #[serde(default = "default_canary")]
    pub canary_queries: u64,
    /// Re-capture its (captured) harness after each run.
    #[serde(default)]
    pub refresh_harness: bool,
}

impl TryFrom<StoredAgentConfig> for AgentConfig {
    type Error = AgentError;
    fn try_from(s: StoredAgentConfig) -> Result<AgentConfig, AgentError> {
        let asked = AskedRules {
            objective: s.objective,
            target_recall: s.target_recall,
        };
        Ok(AgentConfig {
            harness: HarnessName::parse(s.harness)?,
            rules: rules_of(&asked)?,
            enabled: s.enabled,
            cooldown_secs: s.cooldown_secs,
            max_trials_per_hour: s.max_trials_per_hour,
            epsilon: s.epsilon,
            retune_on_growth: s.retune_on_growth,
            activate: s.activate,
            canary_queries: s.canary_queries,
            refresh_harness: s.refresh_harness,
            asked,
        })
    }
}

impl From<AgentConfig> for StoredAgentConfig {
    fn from(c: AgentConfig) -> StoredAgentConfig {
        StoredAgentConfig {
            harness: c.harness.to_string(),
            enabled: c.enabled,
            cooldown_secs: c.cooldown_secs,
            max_trials_per_hour: c.max_trials_per_hour,
            epsilon: c.epsilon,
            retune_on_growth: c.retune_on_growth,
            objective: c.asked.objective,
            target_recall: c.asked.target_recall,
            activate: c.activate,
            canary_queries: c.canary_queries,
            refresh_harness: c.refresh_harness,
        }
    }
}

/// The rules an agent's runs use: its objective and bar, always `if_better`.
fn rules_of(asked: &AskedRules) -> Result<Rules, AgentError> {
    Rules::parse(
        asked.objective.as_deref(),
        asked.target_recall,
        None,
        None,
        Some("if_better"),
    )
    .map_err(|e| AgentError::InvalidField {
        field: "objective",
        reason: e.to_string(),
    })
}

/// A PUT body before its checks (the one raw form; the OpenAPI spec describes it).
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentConfigIn {
    /// Required.
    pub harness: String,
    /// Default true.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Default 600.
    #[serde(default)]
    pub cooldown_secs: Option<f64>,
    /// Default 20.
    #[serde(default)]
    pub max_trials_per_hour: Option<i64>,
    /// Default 0.25.
    #[serde(default)]
    pub epsilon: Option<f64>,
    /// Default 0.1.
    #[serde(default)]
    pub retune_on_growth: Option<f64>,
    /// Default `max_recall`.
    #[serde(default)]
    pub objective: Option<String>,
    /// Default 0.95.
    #[serde(default)]
    pub target_recall: Option<f64>,
    /// Default false.
    #[serde(default)]
    pub activate: Option<bool>,
    /// Default 500.
    #[serde(default)]
    pub canary_queries: Option<i64>,
    /// Default false.
    #[serde(default)]
    pub refresh_harness: Option<bool>,
}

fn non_negative(field: &'static str, v: f64) -> Result<f64, AgentError> {
    if v >= 0.0 && v.is_finite() {
        Ok(v)
    } else {
        Err(AgentError::InvalidField {
            field,
            reason: format!("must be a non-negative number, got {v}"),
        })
    }
}

impl AgentConfig {
    /// Checks a PUT body.
    pub fn parse(i: AgentConfigIn) -> Result<AgentConfig, AgentError> {
        let epsilon = i.epsilon.unwrap_or(0.25);
        if !(0.0..=1.0).contains(&epsilon) {
            return Err(AgentError::InvalidField {
                field: "epsilon",
                reason: format!("must be between 0 and 1, got {epsilon}"),
            });
        }
        let cap = i.max_trials_per_hour.unwrap_or(20);
        if cap < 0 {
            return Err(AgentError::InvalidField {
                field: "max_trials_per_hour",
                reason: format!("must be non-negative, got {cap}"),
            });
        }
        let canary = i.canary_queries.unwrap_or(DEFAULT_CANARY_QUERIES as i64);
        if canary < 1 {
            return Err(AgentError::InvalidField {
                field: "canary_queries",
                reason: format!("must be at least 1, got {canary}"),
            });
        }
        let asked = AskedRules {
            objective: i.objective,
            target_recall: i.target_recall,
        };
        let cooldown_secs = non_negative("cooldown_secs", i.cooldown_secs.unwrap_or(600.0))?;
        let retune_on_growth = non_negative("retune_on_growth", i.retune_on_growth.unwrap_or(0.1))?;
        let rules = rules_of(&asked)?;
        // the name last: a bad setting is reported before a bad harness name, as it was
        let harness = HarnessName::parse(i.harness)?;
        Ok(AgentConfig {
            activate: i.activate.unwrap_or(false),
            canary_queries: canary as u64,
            refresh_harness: i.refresh_harness.unwrap_or(false),
            harness,
            enabled: i.enabled.unwrap_or(true),
            cooldown_secs,
            max_trials_per_hour: cap as u64,
            epsilon,
            retune_on_growth,
            rules,
            asked,
        })
    }

    /// The recall its canary and drift check hold live traffic to (its rules' target).
    pub fn target(&self) -> f64 {
        self.rules.target_recall
    }
}

/// What is stored for an agent: its settings and what it has done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRecord {
    /// The settings last PUT.
    pub config: AgentConfig,
    /// When its last run ended.
    pub last_run_at: Option<DateTime<Utc>>,
    /// Runs so far.
    pub runs: u64,
    /// Vectors of the index at its last run (growth is measured from there).
    pub vectors_at_last_run: Option<u64>,
    /// Writes (rows appended plus deleted) the index had taken at its last run.
    #[serde(default)]
    pub writes_at_last_run: Option<u64>,
    /// Its decisions, newest first (the last [`DECISIONS_KEPT`]).
    #[serde(default)]
    pub decisions: Vec<Decision>,
    /// Configs its canary rolled back: it does not try them again.
    #[serde(default)]
    pub rejected: Vec<HnswConfig>,
}

impl AgentRecord {
    /// A record of `config` with no history.
    pub fn new(config: AgentConfig) -> AgentRecord {
        AgentRecord {
            config,
            last_run_at: None,
            runs: 0,
            vectors_at_last_run: None,
            writes_at_last_run: None,
            decisions: Vec::new(),
            rejected: Vec::new(),
        }
    }

    /// The newest decision.
    pub fn last_decision(&self) -> Option<&Decision> {
        self.decisions.first()
    }
}

/// What the agent is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    /// Enabled, waiting for its first run.
    Idle,
    /// Measuring.
    Running,
    /// Waiting out its cooldown or hourly cap.
    CoolingDown,
    /// Watching the live recall of a generation it activated.
    Canary,
    /// Not enabled (or never set).
    Disabled,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stored form is the one every version wrote: what was left unset stays unset
    /// (null), and a record reads back into the same typed settings.
    #[test]
    fn the_stored_form_round_trips_unchanged() {
        let stored = serde_json::json!({
            "harness": "h", "enabled": true, "cooldown_secs": 600.0, "max_trials_per_hour": 20,
            "epsilon": 0.25, "retune_on_growth": 0.1, "objective": null, "target_recall": null,
            "activate": false, "canary_queries": 500, "refresh_harness": false
        });
        let config: AgentConfig = serde_json::from_value(stored.clone()).unwrap();
        assert_eq!(config.harness.as_str(), "h");
        assert_eq!(
            config.rules,
            Rules::parse(None, None, None, None, Some("if_better")).unwrap()
        );
        assert_eq!(config.target(), crate::autotune::DEFAULT_TARGET_RECALL);
        assert_eq!(serde_json::to_value(&config).unwrap(), stored);
        let min_latency = serde_json::json!({
            "harness": "h", "enabled": false, "cooldown_secs": 1.0, "max_trials_per_hour": 2,
            "epsilon": 0.0, "retune_on_growth": 0.0, "objective": "min_latency", "target_recall": 0.9,
            "activate": true, "canary_queries": 50, "refresh_harness": true
        });
        let config: AgentConfig = serde_json::from_value(min_latency.clone()).unwrap();
        assert_eq!(config.rules.objective, crate::autotune::Objective::MinLatency);
        assert_eq!(config.target(), 0.9);
        assert_eq!(serde_json::to_value(&config).unwrap(), min_latency);
        // a damaged record is an error, not an agent with settings nobody set
        let bad = serde_json::json!({
            "harness": "h", "enabled": true, "cooldown_secs": 1.0, "max_trials_per_hour": 2,
            "epsilon": 0.0, "retune_on_growth": 0.0, "objective": "fastest"
        });
        assert!(serde_json::from_value::<AgentConfig>(bad).is_err());
    }
}
