//! The promotion registry: which config each index should serve, with history and rollback.
//!
//! The state machine ([`PromotedState`]) is pure: promote pushes the current entry onto the
//! history (newest first, capped at [`HISTORY_CAP`]); rollback pops the newest history
//! entry back into current, or clears current when the history is empty. Persistence
//! writes every new state as the next immutable version object (`PutMode::Create`, the
//! highest version wins), never a read-modify-write of one object, so several processes
//! can share a bucket: a writer that loses the race re-reads and re-applies its change.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::names::IndexName;
use crate::params::HnswConfig;
use crate::storage::{keys, Storage, StorageError};

/// Most history entries kept.
pub const HISTORY_CAP: usize = 50;
/// Longest `promoted_by` / `note` accepted, in characters.
pub const MAX_TEXT: usize = 1024;
/// How often a write re-applies its change after losing a race with another writer.
const RETRIES: usize = 8;

/// Errors of the promotion module.
#[derive(Debug, thiserror::Error)]
pub enum PromotionError {
    /// Rollback with neither a current entry nor history.
    #[error("index {0} has nothing to roll back")]
    NothingToRollBack(IndexName),
    /// `promoted_by` or `note` too long.
    #[error("{field} is longer than {MAX_TEXT} characters")]
    TextTooLong {
        /// Which.
        field: &'static str,
    },
    /// Other writers kept winning.
    #[error("index {0}: the promotion registry kept changing underneath; retry")]
    Contended(IndexName),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl crate::error::Classified for PromotionError {
    fn classify(&self) -> crate::error::Class {
        use crate::error::{Class, ErrorKind as K};
        match self {
            PromotionError::NothingToRollBack(_) => Class::new(K::Conflict, "nothing_to_roll_back"),
            PromotionError::TextTooLong { .. } => Class::invalid("invalid_text"),
            PromotionError::Contended(_) => Class::new(K::Conflict, "concurrent_write"),
            PromotionError::Storage(s) => s.classify(),
        }
    }
}

/// Result of the promotion module.
pub type Result<T, E = PromotionError> = std::result::Result<T, E>;

/// One promotion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The promoted config.
    pub config: HnswConfig,
    /// The trial it was measured in.
    pub trial_id: Uuid,
    /// When.
    pub promoted_at: DateTime<Utc>,
    /// Who (`api`, `autotune`, a CI name, ...).
    pub promoted_by: String,
    /// Why.
    pub note: Option<String>,
    /// The epoch of the lease the promoting run held (its fencing token), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_epoch: Option<u64>,
}

/// The registry of one index.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PromotedState {
    /// What the next activation builds with.
    pub current: Option<Entry>,
    /// Earlier currents, newest first.
    pub history: Vec<Entry>,
}

impl PromotedState {
    /// Promotes `entry`: the previous current (if any) goes onto the history.
    pub fn promote(mut self, entry: Entry) -> PromotedState {
        if let Some(prev) = self.current.take() {
            self.history.insert(0, prev);
            self.history.truncate(HISTORY_CAP);
        }
        self.current = Some(entry);
        self
    }

    /// Rolls back: the newest history entry becomes current, or current is cleared when
    /// the history is empty. `None` when there is nothing at all.
    pub fn rollback(mut self) -> Option<PromotedState> {
        if self.current.is_none() && self.history.is_empty() {
            return None;
        }
        self.current = if self.history.is_empty() {
            None
        } else {
            Some(self.history.remove(0))
        };
        Some(self)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Version {
    version: u64,
    changed_at: DateTime<Utc>,
    action: String,
    state: PromotedState,
}

/// The registries of all indexes.
pub struct Registry {
    storage: Storage,
    locks: Mutex<HashMap<IndexName, Arc<tokio::sync::Mutex<()>>>>,
}

fn check_text(field: &'static str, s: &Option<String>) -> Result<()> {
    match s {
        Some(t) if t.chars().count() > MAX_TEXT => Err(PromotionError::TextTooLong { field }),
        _ => Ok(()),
    }
}

impl Registry {
    /// A registry over `storage`.
    pub fn new(storage: Storage) -> Registry {
        Registry {
            storage,
            locks: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self, index: &IndexName) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(index.clone()).or_default().clone()
    }

    async fn latest(&self, index: &IndexName) -> Result<(u64, PromotedState)> {
        match self.storage.latest_version(&keys::promotions(index)).await? {
            Some((v, key)) => {
                let stored: Option<Version> = self.storage.get_json(&key).await?;
                Ok((v, stored.map(|s| s.state).unwrap_or_default()))
            }
            None => Ok((0, PromotedState::default())),
        }
    }

    /// The index's current state, read from storage (so other instances' writes show).
    pub async fn get(&self, index: &IndexName) -> Result<PromotedState> {
        Ok(self.latest(index).await?.1)
    }

    /// Applies `change` to the newest state and writes the result as the next version.
    async fn apply(
        &self,
        index: &IndexName,
        action: &str,
        change: impl Fn(PromotedState) -> Result<PromotedState>,
    ) -> Result<PromotedState> {
        let lock = self.lock(index);
        let _in_process = lock.lock().await;
        for _ in 0..RETRIES {
            let (v, state) = self.latest(index).await?;
            let next = change(state)?;
            let record = Version {
                version: v + 1,
                changed_at: Utc::now(),
                action: action.to_string(),
                state: next.clone(),
            };
            match self
                .storage
                .put_json_new(&keys::promotion(index, v + 1), &record)
                .await
            {
                Ok(()) => return Ok(next),
                Err(StorageError::AlreadyExists { .. }) => continue, // another process won
                Err(e) => return Err(e.into()),
            }
        }
        Err(PromotionError::Contended(index.clone()))
    }

    /// Promotes a measured config.
    pub async fn promote(
        &self,
        index: &IndexName,
        config: HnswConfig,
        trial_id: Uuid,
        promoted_by: Option<String>,
        note: Option<String>,
    ) -> Result<PromotedState> {
        self.promote_fenced(index, config, trial_id, promoted_by, note, None)
            .await
    }

    /// [`Registry::promote`] by a run holding lease epoch `lease_epoch`, recorded on the entry.
    pub async fn promote_fenced(
        &self,
        index: &IndexName,
        config: HnswConfig,
        trial_id: Uuid,
        promoted_by: Option<String>,
        note: Option<String>,
        lease_epoch: Option<u64>,
    ) -> Result<PromotedState> {
        check_text("promoted_by", &promoted_by)?;
        check_text("note", &note)?;
        let entry = Entry {
            config,
            trial_id,
            promoted_at: Utc::now(),
            promoted_by: promoted_by.unwrap_or_else(|| "api".into()),
            note,
            lease_epoch,
        };
        self.apply(index, "promote", |s| Ok(s.promote(entry.clone())))
            .await
    }

    /// Rolls back one step if `config` is still the promoted one (someone may have
    /// promoted meanwhile: their promotion is not rolled back), recording `why` in the
    /// registry's version and on the entry that becomes current.
    pub async fn roll_back_if(
        &self,
        index: &IndexName,
        config: HnswConfig,
        why: &str,
    ) -> Result<PromotedState> {
        let why: String = why.chars().take(MAX_TEXT / 2).collect();
        let now = self.get(index).await?;
        if now.current.as_ref().map(|e| e.config) != Some(config) {
            return Ok(now);
        }
        self.apply(index, &format!("rollback: {why}"), |s| {
            if s.current.as_ref().map(|e| e.config) != Some(config) {
                return Ok(s);
            }
            let mut next = s
                .rollback()
                .ok_or_else(|| PromotionError::NothingToRollBack(index.clone()))?;
            if let Some(e) = next.current.as_mut() {
                let note = format!(
                    "{} | restored: {} was rolled back ({why})",
                    e.note.as_deref().unwrap_or(""),
                    config.describe()
                );
                e.note = Some(note.chars().take(MAX_TEXT).collect());
            }
            Ok(next)
        })
        .await
    }

    /// Rolls back one step.
    pub async fn rollback(&self, index: &IndexName) -> Result<PromotedState> {
        self.apply(index, "rollback", |s| {
            s.rollback()
                .ok_or_else(|| PromotionError::NothingToRollBack(index.clone()))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(n: u128) -> Entry {
        Entry {
            config: HnswConfig::DEFAULT,
            trial_id: Uuid::from_u128(n),
            promoted_at: DateTime::<Utc>::from_timestamp(0, 0).unwrap(),
            promoted_by: "t".into(),
            note: None,
            lease_epoch: None,
        }
    }

    proptest! {
        /// Against the simplest model: a stack whose top is current and whose rest, top
        /// down, is the history; promote pushes (dropping the bottom past the cap),
        /// rollback pops, and an empty stack refuses rollback.
        #[test]
        fn state_machine_matches_a_stack(ops in proptest::collection::vec(any::<bool>(), 0..200)) {
            let mut s = PromotedState::default();
            let mut stack: Vec<u128> = Vec::new();
            for (n, promote) in ops.into_iter().enumerate() {
                if promote {
                    s = s.promote(entry(n as u128));
                    stack.push(n as u128);
                    if stack.len() > HISTORY_CAP + 1 {
                        stack.remove(0);
                    }
                } else {
                    match s.clone().rollback() {
                        None => prop_assert!(stack.is_empty()),
                        Some(next) => {
                            prop_assert!(stack.pop().is_some());
                            s = next;
                        }
                    }
                }
                prop_assert_eq!(s.current.as_ref().map(|e| e.trial_id.as_u128()), stack.last().copied());
                let history: Vec<u128> = stack.iter().rev().skip(1).copied().collect();
                prop_assert_eq!(s.history.iter().map(|e| e.trial_id.as_u128()).collect::<Vec<_>>(), history);
                prop_assert!(s.history.len() <= HISTORY_CAP);
            }
        }
    }

    #[test]
    fn seed_story() {
        let s = PromotedState::default().promote(entry(1)).promote(entry(2));
        assert_eq!(s.current.as_ref().unwrap().trial_id.as_u128(), 2);
        let s = s.rollback().unwrap();
        assert_eq!(
            (s.current.as_ref().unwrap().trial_id.as_u128(), s.history.len()),
            (1, 0)
        );
        let s = s.rollback().unwrap();
        assert!(s.current.is_none() && s.history.is_empty());
        assert!(s.rollback().is_none());
    }

    /// A stored config is checked as it is read: a damaged record is a clear error, never
    /// a config with out-of-bounds parameters handed to a build.
    #[tokio::test]
    async fn a_damaged_stored_config_is_refused_when_read() {
        let storage = Storage::in_memory();
        let reg = Registry::new(storage.clone());
        let idx = IndexName::parse("i").unwrap();
        reg.promote(&idx, HnswConfig::DEFAULT, Uuid::from_u128(1), None, None)
            .await
            .unwrap();
        let mut stored: serde_json::Value = storage
            .get_json(&keys::promotion(&idx, 1))
            .await
            .unwrap()
            .unwrap();
        stored["state"]["current"]["config"]["m"] = serde_json::json!(100_000);
        stored["version"] = serde_json::json!(2);
        // put_json_new writes the envelope's schema_version itself
        stored.as_object_mut().unwrap().remove("schema_version");
        storage
            .put_json_new(&keys::promotion(&idx, 2), &stored)
            .await
            .unwrap();
        let e = reg.get(&idx).await.unwrap_err();
        let mut chain = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            chain.push_str(&format!(": {s}"));
            source = s.source();
        }
        assert!(chain.contains("m must be in 4..=128"), "{chain}");
    }

    #[tokio::test]
    async fn persisted_versions_and_concurrent_writers() {
        let storage = Storage::in_memory();
        let (a, b) = (Registry::new(storage.clone()), Registry::new(storage.clone()));
        let idx = IndexName::parse("i").unwrap();
        // two registries = two processes sharing one store
        let ta = (0..20).map(|n| a.promote(&idx, HnswConfig::DEFAULT, Uuid::from_u128(n), None, None));
        let tb = (100..120).map(|n| {
            b.promote(
                &idx,
                HnswConfig::DEFAULT,
                Uuid::from_u128(n),
                Some("b".into()),
                None,
            )
        });
        let (ra, rb) = tokio::join!(futures::future::join_all(ta), futures::future::join_all(tb));
        assert!(ra.iter().chain(rb.iter()).all(|r| r.is_ok()));
        let s = Registry::new(storage).get(&idx).await.unwrap();
        // every one of the 40 promotions is in current + history (cap 50 not reached)
        assert_eq!(s.history.len(), 39);
        assert!(matches!(
            Registry::new(Storage::in_memory()).rollback(&idx).await,
            Err(PromotionError::NothingToRollBack(_))
        ));
        assert!(matches!(
            a.promote(
                &idx,
                HnswConfig::DEFAULT,
                Uuid::nil(),
                None,
                Some("x".repeat(2000))
            )
            .await,
            Err(PromotionError::TextTooLong { field: "note" })
        ));
    }
}
