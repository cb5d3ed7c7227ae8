//! Several instances on one bucket: who is alive, and who holds what.
//!
//! Object storage with conditional writes is the only coordination substrate (no lock
//! server, no consensus): the same approach lance, delta-rs and SlateDB take to commits.
//!
//! - **Liveness.** Each instance writes `fleet/instances/{id}.json` at start-up and renews it
//!   every `ttl / 3`; an instance is alive while its record is not past `expires_at` (and
//!   not provably dead, see [`Holder::provably_dead`]). A clean shutdown deletes the record.
//! - **Leases** ([`Lease`]): one object per epoch under `indexes/{i}/leases/{kind}/`, created
//!   with `PutMode::Create`, so of two instances racing for epoch `e` exactly one wins — on
//!   S3 through `If-None-Match: *`, on local disk through an exclusive create. The newest
//!   epoch is the lease. It is held while not released and not expired; a newer epoch can
//!   only be created once it is neither (a **takeover** when it was not released). The
//!   holder renews by rewriting its own epoch object (only it ever writes that key) and then
//!   looks for a newer epoch: one existing means it was taken over, and it stops before its
//!   next write. What it writes carries its epoch (the fencing token).
//!
//! Expiry compares the writer's `expires_at` with the reader's clock, so the fleet assumes
//! clocks agree to well under the TTL (NTP does); a holder stops writing a tenth of the
//! TTL before its own expiry to leave room for that.

mod claims;
mod holder;
mod lease;
pub mod sync;
mod work;

pub use claims::{AutotuneClaim, ClaimError, Claims};
pub use holder::Holder;
pub use lease::{Lease, LeaseLostOr};
pub use work::{BuildDone, BuildItem, Claim, ItemState};

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use object_store::path::Path;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::names::IndexName;
use crate::storage::{keys, Storage, StorageError};

/// Default lease TTL (`leases.ttl_secs`).
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);

/// Epochs kept below the newest (older ones are deleted by the instance that takes a new one).
const KEEP_EPOCHS: u64 = 1;

/// What a lease is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LeaseKind {
    /// An index's autotune claim (`409 autotune_running` while another instance holds it).
    Autotune,
    /// An index's background agent (runs where this is held).
    Agent,
}

impl LeaseKind {
    /// Both kinds.
    pub const ALL: [LeaseKind; 2] = [LeaseKind::Autotune, LeaseKind::Agent];

    /// The name in keys and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseKind::Autotune => "autotune",
            LeaseKind::Agent => "agent",
        }
    }
}

/// One epoch of a lease, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// The fencing token: one more than the epoch it replaced.
    pub epoch: u64,
    /// Who holds it.
    pub holder: Holder,
    /// When this epoch was taken.
    pub acquired_at: DateTime<Utc>,
    /// Last renewal.
    pub renewed_at: DateTime<Utc>,
    /// Held until then unless renewed.
    pub expires_at: DateTime<Utc>,
    /// Given back by its holder (free at once).
    #[serde(default)]
    pub released: bool,
    /// What the holder is doing, for other instances' answers (an agent's state).
    #[serde(default)]
    pub status: Option<String>,
}

impl LeaseRecord {
    /// This record renewed now for another `ttl`.
    fn renewed(&self, ttl: Duration) -> LeaseRecord {
        LeaseRecord {
            renewed_at: Utc::now(),
            expires_at: after(ttl),
            ..self.clone()
        }
    }
}

/// The liveness record of an instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceRecord {
    /// Who.
    pub holder: Holder,
    /// Since when.
    pub started_at: DateTime<Utc>,
    /// Last renewal.
    pub renewed_at: DateTime<Utc>,
    /// Alive until then unless renewed.
    pub expires_at: DateTime<Utc>,
    /// The generation it serves, by index.
    #[serde(default)]
    pub serving: BTreeMap<String, u64>,
    /// The vectune version it runs.
    #[serde(default)]
    pub version: String,
}

/// A lease another instance holds.
#[derive(Debug, Clone, thiserror::Error)]
#[error("held by instance {} (epoch {}) until {}", .0.holder.instance, .0.epoch, .0.expires_at)]
pub struct Taken(pub Box<LeaseRecord>);

/// A lease lost to a takeover or to its own expiry.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("lease {kind:?} epoch {epoch} was lost (taken over or expired): stopped before writing")]
pub struct LeaseLost {
    /// Which lease.
    pub kind: LeaseKind,
    /// The epoch that was lost.
    pub epoch: u64,
}

/// How the fleet behaves (`[leases]` settings).
#[derive(Debug, Clone, Copy)]
pub struct FleetOptions {
    /// Lease and liveness TTL.
    pub ttl: Duration,
    /// How often an instance looks at what others wrote (indexes, activations, agents).
    pub sync_interval: Duration,
    /// Whether a holder on this machine whose process is gone counts as dead at once
    /// ([`Holder::provably_dead`]); off, only expiry counts.
    pub detect_local_dead: bool,
}

impl Default for FleetOptions {
    fn default() -> FleetOptions {
        FleetOptions {
            ttl: DEFAULT_TTL,
            sync_interval: Duration::from_secs(2),
            detect_local_dead: true,
        }
    }
}

/// Counters of what the fleet did; read through [`Fleet::snapshot`], bumped only here.
#[derive(Debug, Default)]
struct FleetStats {
    /// Leases taken over from an expired or dead holder, by kind.
    takeovers: [AtomicU64; 2],
    /// Leases this instance lost.
    lost: [AtomicU64; 2],
    /// Activations of other instances picked up (stored graph loaded).
    pickups: AtomicU64,
    /// Jobs of dead instances marked interrupted by this one.
    reaped: AtomicU64,
    /// Live instances seen at the last heartbeat (this one included).
    instances: AtomicU64,
}

fn kind_at(kind: LeaseKind) -> usize {
    match kind {
        LeaseKind::Autotune => 0,
        LeaseKind::Agent => 1,
    }
}

/// This instance's place in the fleet.
pub struct Fleet {
    storage: Storage,
    me: Holder,
    options: FleetOptions,
    started_at: DateTime<Utc>,
    /// The leases held now: `(kind, index) → epoch`.
    held: Mutex<BTreeMap<(LeaseKind, IndexName), u64>>,
    /// The live instances' serving generations, read at the last heartbeat.
    fleet_view: Mutex<Vec<(Uuid, BTreeMap<String, u64>)>>,
    /// Counters.
    stats: FleetStats,
    /// Raised when a lease was taken over from a provably dead holder: its jobs are to be
    /// reaped now, not at the next reaping tick.
    reap_due: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fleet({})", self.me.instance)
    }
}

fn after(d: Duration) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl Fleet {
    /// This process as a new instance of the fleet over `storage` (nothing written yet:
    /// [`Fleet::heartbeat`] writes the liveness record).
    pub fn new(storage: Storage, options: FleetOptions) -> Arc<Fleet> {
        Arc::new(Fleet {
            storage,
            me: Holder::current(Uuid::now_v7()),
            options,
            started_at: Utc::now(),
            held: Mutex::default(),
            fleet_view: Mutex::default(),
            stats: FleetStats::default(),
            reap_due: Default::default(),
        })
    }

    /// What `/metrics` shows of the fleet, read now.
    pub fn snapshot(&self) -> crate::metrics::FleetSnapshot {
        let kinds = |counts: &[AtomicU64; 2]| {
            LeaseKind::ALL
                .iter()
                .zip(counts)
                .map(|(k, n)| (k.as_str().to_string(), n.load(Ordering::Relaxed)))
                .collect()
        };
        crate::metrics::FleetSnapshot {
            instance: self.id().to_string(),
            host: self.me.host.clone(),
            instances: self.stats.instances.load(Ordering::Relaxed),
            leases: self
                .held()
                .into_iter()
                .map(|(k, i, e)| (k.as_str().to_string(), i.to_string(), e))
                .collect(),
            takeovers: kinds(&self.stats.takeovers),
            lost: kinds(&self.stats.lost),
            pickups: self.stats.pickups.load(Ordering::Relaxed),
            reaped: self.stats.reaped.load(Ordering::Relaxed),
            serving: self
                .fleet_view()
                .into_iter()
                .flat_map(|(id, serving)| serving.into_iter().map(move |(ix, g)| (id.to_string(), ix, g)))
                .collect(),
        }
    }

    /// Whether a lease was taken over from a provably dead holder since the last call:
    /// its jobs are to be reaped now.
    pub fn take_reap_due(&self) -> bool {
        self.reap_due.swap(false, Ordering::Relaxed)
    }

    /// Counts an activation of another instance picked up here.
    pub fn picked_up(&self) {
        self.stats.pickups.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts jobs of dead instances this one marked interrupted.
    pub fn reaped(&self, jobs: usize) {
        self.stats.reaped.fetch_add(jobs as u64, Ordering::Relaxed);
    }

    /// This instance's id.
    pub fn id(&self) -> Uuid {
        self.me.instance
    }

    /// This instance.
    pub fn me(&self) -> &Holder {
        &self.me
    }

    /// Its settings.
    pub fn options(&self) -> FleetOptions {
        self.options
    }

    fn held_map(&self) -> std::sync::MutexGuard<'_, BTreeMap<(LeaseKind, IndexName), u64>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The leases held now, `(kind, index, epoch)`.
    pub fn held(&self) -> Vec<(LeaseKind, IndexName, u64)> {
        self.held_map()
            .iter()
            .map(|((k, i), e)| (*k, i.clone(), *e))
            .collect()
    }

    /// Whether `holder` is certainly gone (judged here, only when allowed).
    fn dead(&self, holder: &Holder) -> bool {
        self.options.detect_local_dead && holder.provably_dead(&self.me)
    }

    /// Whether a lease epoch is held now.
    pub fn is_live(&self, r: &LeaseRecord) -> bool {
        !r.released && Utc::now() < r.expires_at && !self.dead(&r.holder)
    }

    /// Writes (or renews) this instance's liveness record, with the generations it serves,
    /// and counts the live instances.
    pub async fn heartbeat(&self, serving: BTreeMap<String, u64>) -> Result<(), StorageError> {
        let now = Utc::now();
        let record = InstanceRecord {
            holder: self.me.clone(),
            started_at: self.started_at,
            renewed_at: now,
            expires_at: after(self.options.ttl),
            serving,
            version: env!("CARGO_PKG_VERSION").to_string(),
        };
        self.storage
            .put_json_overwrite(&keys::instance(self.me.instance), &record)
            .await?;
        let live: Vec<InstanceRecord> = self
            .instances()
            .await?
            .into_iter()
            .filter(|r| self.instance_live(r))
            .collect();
        self.stats.instances.store(live.len() as u64, Ordering::Relaxed);
        *self.fleet_view.lock().unwrap_or_else(|p| p.into_inner()) =
            live.into_iter().map(|r| (r.holder.instance, r.serving)).collect();
        Ok(())
    }

    /// What each live instance said it serves at its last renewal, as of this instance's
    /// last heartbeat: `(instance, index → generation)`. A fleet has converged when every
    /// instance names the same generation.
    pub fn fleet_view(&self) -> Vec<(Uuid, BTreeMap<String, u64>)> {
        self.fleet_view.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Deletes this instance's liveness record (a clean stop: its jobs are ended already).
    pub async fn leave(&self) -> Result<(), StorageError> {
        self.storage.delete(&keys::instance(self.me.instance)).await
    }

    /// Every instance record in the bucket, live or not.
    pub async fn instances(&self) -> Result<Vec<InstanceRecord>, StorageError> {
        let mut out = Vec::new();
        for key in self.storage.list(&keys::instances()).await? {
            if keys::instance_id_of(&key).is_none() {
                continue;
            }
            match self.storage.get_json::<InstanceRecord>(&key).await {
                Ok(Some(r)) => out.push(r),
                Ok(None) => {}
                Err(StorageError::Corrupt { .. }) => {} // a torn record says nothing
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    fn instance_live(&self, r: &InstanceRecord) -> bool {
        r.holder.instance == self.me.instance || (Utc::now() < r.expires_at && !self.dead(&r.holder))
    }

    /// Whether instance `id` is alive: this one, or one whose liveness record is there,
    /// unexpired and not provably dead. No record means dead (a clean stop deletes it, and
    /// it is written before the instance owns anything).
    pub async fn instance_alive(&self, id: Uuid) -> Result<bool, StorageError> {
        if id == self.me.instance {
            return Ok(true);
        }
        match self.storage.get_json::<InstanceRecord>(&keys::instance(id)).await {
            Ok(Some(r)) => Ok(self.instance_live(&r)),
            Ok(None) | Err(StorageError::Corrupt { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes the records of instances dead for longer than ten TTLs (their jobs are
    /// reaped by then), so the folder does not grow with every restart.
    pub async fn sweep_instances(&self) -> Result<(), StorageError> {
        let horizon = chrono::Duration::from_std(self.options.ttl * 10).unwrap_or(chrono::Duration::MAX);
        for r in self.instances().await? {
            if r.holder.instance != self.me.instance && Utc::now() > r.expires_at + horizon {
                self.storage.delete(&keys::instance(r.holder.instance)).await?;
            }
        }
        Ok(())
    }

    /// The newest epoch of a lease, held or not.
    pub async fn latest(
        &self,
        kind: LeaseKind,
        index: &IndexName,
    ) -> Result<Option<LeaseRecord>, StorageError> {
        match self
            .storage
            .latest_version(&keys::leases(index, kind.as_str()))
            .await?
        {
            // written whole or not at all: an unreadable epoch is an error, never "free"
            Some((_, key)) => self.storage.get_json::<LeaseRecord>(&key).await,
            None => Ok(None),
        }
    }

    /// The lease's holder if it is held now by another instance.
    pub async fn held_elsewhere(
        &self,
        kind: LeaseKind,
        index: &IndexName,
    ) -> Result<Option<LeaseRecord>, StorageError> {
        Ok(self
            .latest(kind, index)
            .await?
            .filter(|r| r.holder.instance != self.me.instance && self.is_live(r)))
    }

    /// Whether an epoch newer than the one at `key` exists below `prefix`: how a holder of
    /// a lease or a build claim learns it was taken over.
    async fn newer_epoch(&self, prefix: &Path, key: &Path) -> Result<bool, StorageError> {
        Ok(self
            .storage
            .list_after(prefix, key)
            .await?
            .iter()
            .any(|k| keys::version_of(k).is_some()))
    }

    /// The record of the epoch after `latest` (the first without one), held by this
    /// instance for a TTL from now: what a lease or a build claim writes to take over.
    fn next_epoch(&self, latest: Option<&LeaseRecord>) -> LeaseRecord {
        let now = Utc::now();
        LeaseRecord {
            epoch: latest.map_or(1, |r| r.epoch + 1),
            holder: self.me.clone(),
            acquired_at: now,
            renewed_at: now,
            expires_at: after(self.options.ttl),
            released: false,
            status: None,
        }
    }

    /// Takes the lease of `kind` on `index`, or says who holds it. The returned lease
    /// renews itself until it is dropped (then it is released).
    pub async fn acquire(
        self: &Arc<Self>,
        kind: LeaseKind,
        index: &IndexName,
    ) -> Result<Result<Arc<Lease>, Taken>, StorageError> {
        for _ in 0..4 {
            let latest = self.latest(kind, index).await?;
            if let Some(r) = &latest {
                // an epoch of ours we no longer hold is being released by its drop: free
                let ours_dropped = r.holder.instance == self.me.instance
                    && self.held_map().get(&(kind, index.clone())) != Some(&r.epoch);
                if !ours_dropped && self.is_live(r) {
                    return Ok(Err(Taken(Box::new(r.clone()))));
                }
            }
            let record = self.next_epoch(latest.as_ref());
            let epoch = record.epoch;
            let key = keys::lease(index, kind.as_str(), epoch);
            match self.storage.put_json_new(&key, &record).await {
                Ok(()) => {}
                Err(StorageError::AlreadyExists { .. }) => continue, // raced: read the winner
                Err(e) => return Err(e),
            }
            if let Some(prev) = latest.filter(|r| !r.released && r.holder.instance != self.me.instance) {
                if self.dead(&prev.holder) {
                    // its jobs are as dead as it is: shown interrupted at once, not after the TTL
                    self.reap_due.store(true, Ordering::Relaxed);
                }
                self.stats.takeovers[kind_at(kind)].fetch_add(1, Ordering::Relaxed);
                tracing::warn!(index = %index, lease = kind.as_str(), epoch,
                    from = %prev.holder.instance, expired_at = %prev.expires_at,
                    "lease taken over from an expired or dead holder");
            }
            // older epochs are history nobody reads
            if epoch > KEEP_EPOCHS + 1 {
                for old in self.storage.list(&keys::leases(index, kind.as_str())).await? {
                    if keys::version_of(&old).is_some_and(|v| v + KEEP_EPOCHS < epoch) {
                        self.storage.delete(&old).await?;
                    }
                }
            }
            self.held_map().insert((kind, index.clone()), epoch);
            let lease = Arc::new(Lease {
                fleet: self.clone(),
                kind,
                index: index.clone(),
                key,
                record: Mutex::new(record),
                lost: Arc::new(AtomicBool::new(false)),
                watchers: Mutex::default(),
            });
            tokio::spawn(renew_loop(Arc::downgrade(&lease), self.options.ttl / 3));
            return Ok(Ok(lease));
        }
        // four lost races in a row: someone holds it now
        match self.latest(kind, index).await? {
            Some(r) => Ok(Err(Taken(Box::new(r)))),
            None => Err(StorageError::AlreadyExists {
                key: keys::leases(index, kind.as_str()).to_string(),
            }),
        }
    }
}

/// What is held by renewing its own epoch object (a lease, a build claim): the one renewal
/// loop drives both.
trait Renewed: Send + Sync + 'static {
    /// Lost or given up: renewal ends.
    fn stopped(&self) -> bool;
    /// Renews once; `false` when it turned out lost.
    fn renew_once(&self) -> impl std::future::Future<Output = Result<bool, StorageError>> + Send;
    /// What it is, for the log.
    fn describe(&self) -> String;
}

impl Renewed for Lease {
    fn stopped(&self) -> bool {
        self.is_lost()
    }
    fn renew_once(&self) -> impl std::future::Future<Output = Result<bool, StorageError>> + Send {
        self.renew()
    }
    fn describe(&self) -> String {
        format!("lease {} of {}", self.kind.as_str(), self.index)
    }
}

/// Renews `held` every `every` until it is dropped, lost or stopped.
async fn renew_loop<T: Renewed>(held: Weak<T>, every: Duration) {
    let every = every.max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(every).await;
        let Some(held) = held.upgrade() else {
            return;
        };
        if held.stopped() {
            return;
        }
        match held.renew_once().await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => tracing::warn!(held = %held.describe(), error = %e, "renewal failed; retrying"),
        }
    }
}

#[cfg(test)]
mod tests;
