//! The agents of this process, as one component: each index's loop, the agent leases that
//! let those loops run here (and nowhere else), the one slot their trials share, and the
//! stored record of each agent.
//!
//! An agent runs on one instance at a time: the one holding its lease. Taking the lease
//! over adopts the history the previous holder stored, so a takeover continues the agent's
//! runs, decisions and rejected configs rather than starting them again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Semaphore, SemaphorePermit};

use super::{run_loop, AgentBackend, AgentRecord, Shared};
use crate::fleet::{Fleet, Lease, LeaseKind};
use crate::names::IndexName;
use crate::storage::{keys, Storage, StorageError};

/// What can go wrong with the agents' own state.
#[derive(Debug, thiserror::Error)]
pub enum AgentsError {
    /// The store did not answer (an agent record, a lease).
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The process is stopping (the trial slot is closed).
    #[error("the agents are stopping")]
    Stopping,
}

impl crate::error::Classified for AgentsError {
    fn classify(&self) -> crate::error::Class {
        use crate::error::{Class, ErrorKind as K};
        match self {
            AgentsError::Storage(s) => s.classify(),
            AgentsError::Stopping => Class::new(K::ShuttingDown, "shutting_down"),
        }
    }
}

/// The agents component.
pub struct Agents {
    fleet: Arc<Fleet>,
    storage: Storage,
    live: Mutex<HashMap<IndexName, Arc<Shared>>>,
    /// The agent leases this instance holds: its agents run here, and nowhere else.
    leases: Mutex<HashMap<IndexName, Arc<Lease>>>,
    /// One agent trial at a time in the process, so agents never take more than one core
    /// from serving or user trials.
    slot: Semaphore,
}

impl Agents {
    /// No agent yet, on `fleet` over `storage`.
    pub fn new(fleet: Arc<Fleet>, storage: Storage) -> Agents {
        Agents {
            fleet,
            storage,
            live: Mutex::default(),
            leases: Mutex::default(),
            slot: Semaphore::new(1),
        }
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<IndexName, Arc<Shared>>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn leases(&self) -> std::sync::MutexGuard<'_, HashMap<IndexName, Arc<Lease>>> {
        self.leases.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The stored record of the agent of `index`, if it was ever set.
    pub async fn stored(&self, index: &IndexName) -> Result<Option<AgentRecord>, AgentsError> {
        Ok(self.storage.get_json(&keys::agent(index)).await?)
    }

    /// Stores the record of the agent of `index`.
    pub async fn store(&self, index: &IndexName, record: &AgentRecord) -> Result<(), AgentsError> {
        Ok(self
            .storage
            .put_json_overwrite(&keys::agent(index), record)
            .await?)
    }

    /// The live side of the agent of `index` in this process, if it has one.
    pub fn shared(&self, index: &IndexName) -> Option<Arc<Shared>> {
        self.live().get(index).cloned()
    }

    /// The agent lease of `index` if this instance holds it (and has not lost it).
    pub fn lease(&self, index: &IndexName) -> Option<Arc<Lease>> {
        let mut leases = self.leases();
        match leases.get(index) {
            Some(l) if l.is_lost() => {
                leases.remove(index);
                None
            }
            other => other.cloned(),
        }
    }

    /// The agent lease of `index`, taken when free (then the history the previous holder
    /// stored is adopted); `None` while another instance holds it.
    pub async fn hold_lease(&self, index: &IndexName) -> Result<Option<Arc<Lease>>, AgentsError> {
        if let Some(l) = self.lease(index) {
            return Ok(Some(l));
        }
        match self.fleet.acquire(LeaseKind::Agent, index).await? {
            Ok(lease) => {
                tracing::info!(index = %index, epoch = lease.epoch(), "agent lease taken: the agent runs here");
                if let (Some(shared), Some(stored)) = (self.shared(index), self.stored(index).await?) {
                    shared.adopt(stored);
                }
                self.leases().insert(index.clone(), lease.clone());
                Ok(Some(lease))
            }
            Err(_) => Ok(None),
        }
    }

    /// The slot one agent trial holds while it runs.
    pub async fn trial_slot(&self) -> Result<SemaphorePermit<'_>, AgentsError> {
        self.slot.acquire().await.map_err(|_| AgentsError::Stopping)
    }

    /// Replaces the loop of the agent of `index` with one for `record` (none when
    /// disabled: then its lease is given back, so another instance may take it).
    pub fn restart<B: AgentBackend>(&self, backend: B, index: &IndexName, record: AgentRecord) {
        let shared = Shared::new(record.clone());
        if let Some(old) = self.live().insert(index.clone(), shared.clone()) {
            old.stop();
        }
        if record.config.enabled {
            tokio::spawn(run_loop(backend, index.clone(), shared));
        } else {
            self.leases().remove(index);
        }
    }

    /// Stops the agent of a deleted index and gives back its lease.
    pub fn forget(&self, index: &IndexName) {
        if let Some(old) = self.live().remove(index) {
            old.stop();
        }
        self.leases().remove(index);
    }

    /// Stops every agent loop of the process (it is shutting down) and gives back their
    /// leases, so another instance takes them over at once.
    pub fn stop_all(&self) {
        for a in self.live().values() {
            a.stop();
        }
        self.leases().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::FleetOptions;

    #[tokio::test]
    async fn an_agent_lease_is_held_by_one_instance_and_given_back_when_forgotten() {
        let store = Storage::in_memory();
        let a = Agents::new(Fleet::new(store.clone(), FleetOptions::default()), store.clone());
        let b = Agents::new(Fleet::new(store.clone(), FleetOptions::default()), store);
        let idx = IndexName::parse("idx").unwrap();
        let held = a.hold_lease(&idx).await.unwrap().expect("free: taken");
        assert_eq!(
            a.lease(&idx).map(|l| l.epoch()),
            Some(held.epoch()),
            "kept, not taken again"
        );
        assert!(
            b.hold_lease(&idx).await.unwrap().is_none(),
            "held by a live instance"
        );
        drop(held);
        a.forget(&idx);
        assert!(a.lease(&idx).is_none());
        // the release is written in the background: b gets it within moments
        let mut taken = None;
        for _ in 0..100 {
            taken = b.hold_lease(&idx).await.unwrap();
            if taken.is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(
            taken.map(|l| l.epoch()),
            Some(2),
            "the next epoch, on the other instance"
        );
    }

    #[tokio::test]
    async fn records_are_stored_and_read_back() {
        let store = Storage::in_memory();
        let agents = Agents::new(Fleet::new(store.clone(), FleetOptions::default()), store);
        let idx = IndexName::parse("idx").unwrap();
        assert!(agents.stored(&idx).await.unwrap().is_none());
        let config = super::super::AgentConfig::parse(super::super::AgentConfigIn {
            harness: "h".into(),
            ..Default::default()
        })
        .unwrap();
        let record = AgentRecord::new(config);
        agents.store(&idx, &record).await.unwrap();
        assert_eq!(agents.stored(&idx).await.unwrap(), Some(record));
    }
}
