//! A held lease: its fencing checks (the clock before every write, the store before a
//! promotion), its renewal, and its release when dropped.

use tokio_util::sync::CancellationToken;

use super::*;

/// A lease this instance holds: renewed in the background, released when dropped.
pub struct Lease {
    pub(super) fleet: Arc<Fleet>,
    pub(super) kind: LeaseKind,
    pub(super) index: IndexName,
    pub(super) key: Path,
    pub(super) record: Mutex<LeaseRecord>,
    pub(super) lost: Arc<AtomicBool>,
    /// Cancelled with `lost`: the runs writing under the lease.
    pub(super) watchers: Mutex<Vec<CancellationToken>>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Lease({} {} epoch {})",
            self.kind.as_str(),
            self.index,
            self.epoch()
        )
    }
}

impl Lease {
    pub(super) fn record(&self) -> std::sync::MutexGuard<'_, LeaseRecord> {
        self.record.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The fencing token.
    pub fn epoch(&self) -> u64 {
        self.record().epoch
    }

    /// Whether the lease is lost.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }

    /// Takes this epoch off the fleet's list of held leases (a newer tenure of ours stays).
    fn unhold(&self) {
        let mut held = self.fleet.held_map();
        let at = (self.kind, self.index.clone());
        if held.get(&at) == Some(&self.epoch()) {
            held.remove(&at);
        }
    }

    /// Cancels `run` when the lease is lost (at once if it is already): the run stops at
    /// its next check, with no task polling for it.
    pub fn on_lost(&self, run: CancellationToken) {
        if self.is_lost() {
            run.cancel();
        }
        self.watchers.lock().unwrap_or_else(|p| p.into_inner()).push(run);
    }

    pub(super) fn mark_lost(&self) {
        if !self.lost.swap(true, Ordering::Relaxed) {
            for w in self.watchers.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                w.cancel();
            }
            self.fleet.stats.lost[kind_at(self.kind)].fetch_add(1, Ordering::Relaxed);
            self.unhold();
            tracing::warn!(index = %self.index, lease = self.kind.as_str(), epoch = self.epoch(), "lease lost");
        }
    }

    /// Checked before every write made under the lease (no I/O): `LeaseLost` once it was
    /// taken over, or when less than a tenth of the TTL is left of it by this clock.
    pub fn check(&self) -> Result<(), LeaseLost> {
        let margin = chrono::Duration::from_std(self.fleet.options.ttl / 10).unwrap_or_default();
        let expired = Utc::now() + margin >= self.record().expires_at;
        if expired {
            self.mark_lost();
        }
        if self.is_lost() {
            return Err(LeaseLost {
                kind: self.kind,
                epoch: self.epoch(),
            });
        }
        Ok(())
    }

    /// [`Lease::check`], then a look at the store for a newer epoch: the guard of the
    /// writes that matter most (a promotion).
    pub async fn verify(&self) -> Result<(), LeaseLostOr> {
        self.check()?;
        if self.newer_exists().await? {
            self.mark_lost();
            self.check()?;
        }
        Ok(())
    }

    async fn newer_exists(&self) -> Result<bool, StorageError> {
        let prefix = keys::leases(&self.index, self.kind.as_str());
        self.fleet.newer_epoch(&prefix, &self.key).await
    }

    /// Extends the lease by a TTL and sets its status; `false` when it was lost meanwhile
    /// (then it stays lost).
    pub async fn renew_with(&self, status: Option<String>) -> Result<bool, StorageError> {
        if self.is_lost() {
            return Ok(false);
        }
        let next = {
            let mut r = self.record().renewed(self.fleet.options.ttl);
            if status.is_some() {
                r.status = status;
            }
            r
        };
        // our own epoch's key: only we write it, so a plain overwrite is safe; a takeover
        // shows as a newer epoch, looked for right after
        self.fleet.storage.put_json_overwrite(&self.key, &next).await?;
        if self.newer_exists().await? {
            self.mark_lost();
            return Ok(false);
        }
        *self.record() = next;
        Ok(true)
    }

    /// [`Lease::renew_with`] keeping the status.
    pub async fn renew(&self) -> Result<bool, StorageError> {
        self.renew_with(None).await
    }

    async fn release(fleet: Arc<Fleet>, key: Path, mut record: LeaseRecord) {
        record.released = true;
        record.expires_at = Utc::now();
        if let Err(e) = fleet.storage.put_json_overwrite(&key, &record).await {
            tracing::warn!(key = %key, error = %e, "lease release failed; it expires by itself");
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.is_lost() {
            return;
        }
        self.unhold();
        let (fleet, key, record) = (self.fleet.clone(), self.key.clone(), self.record().clone());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(Lease::release(fleet, key, record));
        }
    }
}

/// A lost lease, or the store failing while checking it.
#[derive(Debug, thiserror::Error)]
pub enum LeaseLostOr {
    /// Lost.
    #[error(transparent)]
    Lost(#[from] LeaseLost),
    /// The store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}
