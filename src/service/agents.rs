//! The background agents of the service: the [`AgentBackend`] over the real engine, and
//! the routes' operations (PUT / GET / DELETE an agent, start them all after a restart),
//! each forwarding to the [`crate::agent::Agents`] component for the loops, leases and
//! records.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::{Result, RunEnd, ServiceError, Vectune};
use crate::agent::canary::Decision;
use crate::agent::{
    AgentBackend, AgentConfig, AgentConfigIn, AgentRecord, AgentState, RunOutcome, RunReport,
};
use crate::autotune::{Spec, TunerError};
use crate::fleet::{ClaimError, LeaseKind};
use crate::monitor::LiveStats;
use crate::names::{HarnessName, IndexName};
use crate::params::HnswConfig;
use crate::trials::Source;

/// What `GET /vectors/hnsw/agent/{index}` answers.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AgentView {
    /// The index.
    pub index_name: IndexName,
    /// The settings last PUT; `None` if never set.
    pub config: Option<AgentConfig>,
    /// When its last run ended.
    pub last_run_at: Option<DateTime<Utc>>,
    /// Its journal trials created in the last hour.
    pub trials_last_hour: usize,
    /// Runs so far.
    pub runs: u64,
    /// What it is doing.
    pub state: AgentState,
    /// Its newest decision, if any.
    pub last_decision: Option<Decision>,
    /// Its recent decisions, newest first.
    pub decisions: Vec<Decision>,
    /// Configs its canary rolled back (it does not try them again).
    pub rejected: Vec<HnswConfig>,
    /// The instance its lease says it runs on now, if it is held.
    pub instance: Option<uuid::Uuid>,
}

const HOUR: Duration = Duration::from_secs(3600);

impl AgentBackend for Vectune {
    type Error = ServiceError;

    fn bounds(&self) -> crate::params::Bounds {
        Vectune::bounds(self)
    }

    fn decided(&self, action: crate::agent::Action) {
        self.inner.metrics.decision(action.as_str());
    }

    fn vectors(&self, index: &IndexName) -> Option<u64> {
        self.inner.indexes.get(index).ok().map(|i| i.total())
    }

    fn writes(&self, index: &IndexName) -> Option<u64> {
        // rows ever appended, plus rows deleted (rows - vectors stored)
        let i = self.inner.indexes.get(index).ok()?;
        Some(i.rows() + i.rows().saturating_sub(i.total()))
    }

    async fn incumbent(&self, index: &IndexName) -> Option<HnswConfig> {
        self.inner
            .registry
            .get(index)
            .await
            .ok()?
            .current
            .map(|e| e.config)
    }

    async fn recent_trial_ages(&self, index: &IndexName) -> Vec<Duration> {
        let now = Utc::now();
        match self.inner.journal.list(index, None).await {
            Ok(trials) => trials
                .iter()
                .filter(|t| t.source == Source::Agent)
                .filter_map(|t| (now - t.created_at).to_std().ok().or(Some(Duration::ZERO)))
                .filter(|a| *a < HOUR)
                .collect(),
            Err(e) => {
                // unknown history: count the whole cap as used, so it never overshoots
                tracing::warn!(index = %index, error = %e, "agent: journal unreadable");
                vec![Duration::ZERO; 1 << 16]
            }
        }
    }

    async fn run(
        &self,
        index: &IndexName,
        config: &AgentConfig,
        configs: Vec<HnswConfig>,
        stop: CancellationToken,
    ) -> Result<RunOutcome> {
        // an agent runs on one instance at a time: the one holding its lease
        let Some(lease) = self.inner.agents.hold_lease(index).await? else {
            return Ok(RunOutcome::Busy);
        };
        // one agent trial at a time in this process
        let _one = self.inner.agents.trial_slot().await?;
        let spec = Spec::grid(config.rules, &configs, self.bounds())?;
        let prepared = match (self.inner.tuner)
            .prepare_agent_run(index, config.harness.clone(), spec, lease, &stop)
            .await
        {
            Ok(p) => p,
            Err(TunerError::Claim(ClaimError::Running(_))) => return Ok(RunOutcome::Busy),
            Err(e) => return Err(e.into()),
        };
        match self
            .inner
            .tuner
            .run(prepared, Default::default(), Default::default(), None)
            .await?
        {
            RunEnd::Finished(r) => {
                tracing::info!(index = %index, promoted = r.promoted, reason = ?r.reason, "agent run");
                Ok(RunOutcome::Ran(RunReport {
                    trials: r.trials_run,
                    promoted: r.promoted,
                    reason: r.reason.unwrap_or_else(|| "promoted".into()),
                }))
            }
            RunEnd::Cancelled { trials_run } => Ok(RunOutcome::Ran(RunReport {
                trials: trials_run,
                promoted: false,
                reason: "the run was stopped".into(),
            })),
        }
    }

    fn active(&self, index: &IndexName) -> Option<(HnswConfig, u64)> {
        self.inner
            .serving
            .current(index)
            .map(|g| (g.record.config, g.record.generation))
    }

    async fn activate(&self, index: &IndexName) -> Result<(HnswConfig, u64)> {
        let a = Vectune::activate(self, index).await?;
        Ok((a.record.config, a.record.generation))
    }

    fn live(&self, index: &IndexName) -> Option<LiveStats> {
        Vectune::live(self, index)
    }

    async fn roll_back(&self, index: &IndexName, config: HnswConfig, why: &str) -> Result<()> {
        self.inner.registry.roll_back_if(index, config, why).await?;
        Ok(())
    }

    async fn refresh_harness(&self, harness: &HarnessName) -> Result<()> {
        Vectune::refresh_harness(self, harness).await.map(|_| ())
    }

    async fn persist(&self, index: &IndexName, record: &AgentRecord) {
        if self.inner.indexes.get(index).is_err() {
            return; // deleted: never write into a deleted prefix
        }
        if let Err(e) = self.inner.agents.store(index, record).await {
            tracing::error!(index = %index, error = %e, "agent record could not be stored");
        }
    }
}

impl Vectune {
    /// Replaces the index's agent loop with one for `record` (none when disabled).
    pub(crate) fn restart_agent(&self, index: &IndexName, record: AgentRecord) {
        self.inner.agents.restart(self.clone(), index, record);
    }

    /// Sets (and starts, or stops) the agent of an index.
    pub async fn put_agent(&self, index: &IndexName, body: AgentConfigIn) -> Result<AgentView> {
        self.inner.indexes.get(index)?;
        let config = AgentConfig::parse(body)?;
        self.inner.harnesses.check_index(&config.harness, index).await?;
        // new settings, the history of runs and decisions kept
        let record = match self.inner.agents.stored(index).await? {
            Some(r) => AgentRecord { config, ..r },
            None => AgentRecord::new(config),
        };
        self.inner.agents.store(index, &record).await?;
        self.restart_agent(index, record);
        self.get_agent(index).await
    }

    /// The agent of an index (`config: None`, `disabled` if never set).
    pub async fn get_agent(&self, index: &IndexName) -> Result<AgentView> {
        self.inner.indexes.get(index)?;
        let holder = self
            .inner
            .fleet
            .latest(LeaseKind::Agent, index)
            .await?
            .filter(|r| self.inner.fleet.is_live(r))
            .map(|r| r.holder.instance);
        let here = holder == Some(self.inner.fleet.id());
        let agents = &self.inner.agents;
        let (record, state) = match agents.shared(index) {
            Some(s) if here || holder.is_none() => (Some(s.record()), s.state()),
            // it runs on another instance: its history as that one stored it
            Some(s) => (agents.stored(index).await?, s.state()),
            None => (agents.stored(index).await?, AgentState::Disabled),
        };
        let trials_last_hour = match &record {
            Some(_) => self.recent_trial_ages(index).await.len(),
            None => 0,
        };
        Ok(AgentView {
            index_name: index.clone(),
            last_run_at: record.as_ref().and_then(|r| r.last_run_at),
            runs: record.as_ref().map_or(0, |r| r.runs),
            last_decision: record.as_ref().and_then(|r| r.last_decision().cloned()),
            decisions: record.as_ref().map_or(Vec::new(), |r| r.decisions.clone()),
            rejected: record.as_ref().map_or(Vec::new(), |r| r.rejected.clone()),
            config: record.map(|r| r.config),
            trials_last_hour,
            state,
            instance: holder,
        })
    }

    /// Disables the agent of an index (its settings stay, with `enabled: false`).
    pub async fn delete_agent(&self, index: &IndexName) -> Result<()> {
        self.inner.indexes.get(index)?;
        let record = match self.inner.agents.shared(index) {
            Some(s) => Some(s.record()),
            None => self.inner.agents.stored(index).await?,
        };
        if let Some(mut record) = record {
            record.config.enabled = false;
            self.inner.agents.store(index, &record).await?;
            self.restart_agent(index, record);
        }
        Ok(())
    }

    /// Starts the agents enabled before a restart.
    pub async fn start_agents(&self) -> Result<usize> {
        let mut n = 0;
        for index in self.inner.indexes.list() {
            let name = index.meta().name.clone();
            if let Some(record) = self.inner.agents.stored(&name).await? {
                if record.config.enabled {
                    n += 1;
                }
                self.restart_agent(&name, record);
            }
        }
        Ok(n)
    }
}
