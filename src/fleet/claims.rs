//! Who may tune an index now: one autotune per index across the whole fleet, and agent runs
//! only while no autotune of the index runs anywhere.
//!
//! An autotune takes two things, in this order: the in-process claim (no I/O, so a second
//! run of the index here is refused before anything is written), then the index's autotune
//! lease in the store (so a run on another instance is refused too). Both come back as one
//! guard, [`AutotuneClaim`], with the run's [`CancellationToken`]: cancelled by the caller
//! (a job's cancel, the process's shutdown) or by the loss of the lease, whichever comes
//! first, so a run whose lease was taken over stops at its next check without any task
//! polling for it. Dropping the guard frees the index here and releases the lease.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use super::{Fleet, Lease, LeaseKind};
use crate::names::IndexName;
use crate::storage::StorageError;

/// Why a claim was refused.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// Another autotune of the index runs, here or on another instance.
    #[error("an autotune of index {0} is already running")]
    Running(IndexName),
    /// The store did not answer the lease look-up or write.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl crate::error::Classified for ClaimError {
    fn classify(&self) -> crate::error::Class {
        use crate::error::{Class, ErrorKind as K};
        match self {
            ClaimError::Running(_) => Class::new(K::Conflict, "autotune_running"),
            ClaimError::Storage(s) => s.classify(),
        }
    }
}

/// The claims of this instance.
#[derive(Debug)]
pub struct Claims {
    fleet: Arc<Fleet>,
    /// Indexes with an autotune running in this process.
    local: Arc<Mutex<HashSet<IndexName>>>,
}

/// Held for a whole autotune: the index claimed here, its autotune lease, and the run's
/// cancel. Dropping it frees both.
#[derive(Debug)]
pub struct AutotuneClaim {
    _local: LocalClaim,
    lease: Arc<Lease>,
    cancel: CancellationToken,
}

#[derive(Debug)]
struct LocalClaim {
    set: Arc<Mutex<HashSet<IndexName>>>,
    index: IndexName,
}

impl Drop for LocalClaim {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.index);
    }
}

impl Claims {
    /// The claims of the instance `fleet` is.
    pub fn new(fleet: Arc<Fleet>) -> Claims {
        Claims {
            fleet,
            local: Arc::default(),
        }
    }

    /// This instance's place in the fleet.
    pub fn fleet(&self) -> &Arc<Fleet> {
        &self.fleet
    }

    fn local(&self) -> std::sync::MutexGuard<'_, HashSet<IndexName>> {
        self.local.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Claims `index` for an autotune whose caller may cancel it through `caller`.
    pub async fn autotune(
        &self,
        index: &IndexName,
        caller: &CancellationToken,
    ) -> Result<AutotuneClaim, ClaimError> {
        if !self.local().insert(index.clone()) {
            return Err(ClaimError::Running(index.clone()));
        }
        let local = LocalClaim {
            set: self.local.clone(),
            index: index.clone(),
        };
        match self.fleet.acquire(LeaseKind::Autotune, index).await? {
            Ok(lease) => Ok(AutotuneClaim {
                _local: local,
                cancel: lease.fence(caller),
                lease,
            }),
            Err(taken) => {
                tracing::info!(index = %index, holder = %taken.0.holder.instance,
                    epoch = taken.0.epoch, "autotune refused: another instance holds the lease");
                Err(ClaimError::Running(index.clone()))
            }
        }
    }

    /// Whether an autotune of `index` runs anywhere (here, or under a live lease
    /// elsewhere): an agent run starts only when none does, so it never makes a user's
    /// autotune wait or fail.
    pub async fn autotune_anywhere(&self, index: &IndexName) -> Result<bool, StorageError> {
        if self.local().contains(index) {
            return Ok(true);
        }
        Ok(self
            .fleet
            .held_elsewhere(LeaseKind::Autotune, index)
            .await?
            .is_some())
    }
}

impl AutotuneClaim {
    /// The lease the run's writes are fenced by.
    pub fn lease(&self) -> &Arc<Lease> {
        &self.lease
    }

    /// The run's cancel: the caller's, or the lease's loss.
    pub fn cancel(&self) -> &CancellationToken {
        &self.cancel
    }
}

impl Lease {
    /// A cancel for a run under this lease: cancelled when `caller` is, or when the lease
    /// is lost, whichever comes first (the caller's token is not touched by the loss).
    pub fn fence(&self, caller: &CancellationToken) -> CancellationToken {
        let run = caller.child_token();
        self.on_lost(run.clone());
        run
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::FleetOptions;
    use crate::storage::Storage;

    fn index() -> IndexName {
        IndexName::parse("idx").unwrap()
    }

    #[tokio::test]
    async fn one_autotune_per_index_here_and_across_instances() {
        let store = Storage::in_memory();
        let (a, b) = (
            Claims::new(Fleet::new(store.clone(), FleetOptions::default())),
            Claims::new(Fleet::new(store, FleetOptions::default())),
        );
        let caller = CancellationToken::new();
        let held = a.autotune(&index(), &caller).await.unwrap();
        assert!(
            matches!(a.autotune(&index(), &caller).await, Err(ClaimError::Running(_))),
            "here"
        );
        assert!(
            matches!(b.autotune(&index(), &caller).await, Err(ClaimError::Running(_))),
            "elsewhere"
        );
        assert!(a.autotune_anywhere(&index()).await.unwrap());
        assert!(b.autotune_anywhere(&index()).await.unwrap());
        let other = IndexName::parse("other").unwrap();
        assert!(b.autotune(&other, &caller).await.is_ok(), "another index is free");
        drop(held);
        assert!(
            !a.autotune_anywhere(&index()).await.unwrap(),
            "freed here at once"
        );
    }

    #[tokio::test]
    async fn the_run_stops_on_its_caller_or_on_a_lost_lease_and_the_caller_is_untouched() {
        let fleet = Fleet::new(Storage::in_memory(), FleetOptions::default());
        let claims = Claims::new(fleet);
        let caller = CancellationToken::new();
        let claim = claims.autotune(&index(), &caller).await.unwrap();
        assert!(!claim.cancel().is_cancelled());
        claim.lease().mark_lost();
        assert!(claim.cancel().is_cancelled(), "a lost lease stops the run");
        assert!(
            !caller.is_cancelled(),
            "but not the caller (a shutdown token, a job's cancel)"
        );
        drop(claim);
        let claim = claims.autotune(&index(), &caller).await.unwrap();
        caller.cancel();
        assert!(
            claim.cancel().is_cancelled(),
            "the caller's cancel reaches the run"
        );
    }

    #[tokio::test]
    async fn a_refused_lease_frees_the_local_claim() {
        let store = Storage::in_memory();
        let (a, b) = (
            Claims::new(Fleet::new(store.clone(), FleetOptions::default())),
            Claims::new(Fleet::new(store, FleetOptions::default())),
        );
        let caller = CancellationToken::new();
        let _held = a.autotune(&index(), &caller).await.unwrap();
        assert!(b.autotune(&index(), &caller).await.is_err());
        assert!(!b.local().contains(&index()), "no claim left behind here");
    }
}
