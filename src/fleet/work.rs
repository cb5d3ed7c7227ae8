//! Build work items: the graphs one autotune run needs, offered to every live instance.
//!
//! Why. A run's time is mostly builds, and a build needs nothing of the run but the rows
//! and the config; with several instances on one bucket the others sit idle while one
//! builds. So a run **offers** the graphs it is about to need (a grid's graphs, the climb's
//! next ones, the transfer's leading ones) as items; any other live instance may **claim**
//! one, build it, store the graph where activation loads it, and mark the item **done**;
//! the run loads a done item's graph instead of building it (restart-fast: a decode).
//!
//! Layout (`storage/keys.rs`): `indexes/{i}/builds/{run}/{graph}/item.json` (write-once),
//! `claims/{epoch:020}.json` (one object per epoch, created with `PutMode::Create`, as the
//! index leases are: of two instances racing for an epoch exactly one wins), `done.json`
//! (write-once).
//!
//! Fencing, two ways:
//! - **the claim**: a builder renews its epoch every `ttl / 3`; a builder that dies stops
//!   renewing, its claim expires, and the next instance to look takes epoch + 1 (the item
//!   is re-leased). A builder checks the store for a newer epoch before it stores the
//!   graph and marks the item done, so a paused builder that lost its claim writes nothing.
//! - **the run**: an item carries the epoch of the run's autotune lease; a builder stores
//!   nothing once that lease is no longer held at that epoch (the run ended, died or was
//!   taken over), and such an item is deleted by whoever sees it.
//!
//! The run itself claims an item before building it (so nobody starts a graph the run is
//! building already) and, when a live claim of another instance holds the graph it needs,
//! waits for that build instead of starting a second one.

use tokio_util::sync::CancellationToken;

use super::*;
use crate::params::{Engine, HnswConfig};

/// A graph a run offers the fleet to build.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildItem {
    /// The run (one folder per run).
    pub run: Uuid,
    /// The instance running it: it never builds its own items as a helper.
    pub owner: Uuid,
    /// The epoch of the run's autotune lease: nothing is stored for a run that lost it.
    pub autotune_epoch: u64,
    /// Rows of the index the run measures (all of them: a build covers the first `rows`).
    pub rows: u64,
    /// Of them deleted when the run started (left out of the build).
    pub deleted: u64,
    /// The config (its graph identity is what is built; `ef_search` is not).
    pub config: HnswConfig,
    /// The builder: an instance whose engine differs cannot build this graph.
    pub engine: Engine,
    /// Its place in the run's offers, soonest needed first: a helper takes the open item
    /// needed **last** (the run builds from the front, so the two meet in the middle
    /// instead of the run waiting on the helper's build of its very next graph).
    pub seq: u32,
    /// When it was offered.
    pub created_at: DateTime<Utc>,
}

/// A finished item: its graph is stored at the activation key of its rows and config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildDone {
    /// Who built it.
    pub builder: Uuid,
    /// Under which claim epoch.
    pub claim_epoch: u64,
    /// Seconds the build took.
    pub build_secs: f64,
    /// When it was stored.
    pub finished_at: DateTime<Utc>,
}

/// Where an item stands.
#[derive(Debug, Clone, PartialEq)]
pub enum ItemState {
    /// Built: the graph is stored.
    Done(BuildDone),
    /// A live claim holds it (someone builds it now).
    Claimed(LeaseRecord),
    /// Offered, nobody builds it: the next instance to look may claim it.
    Open,
    /// Not offered (or the run cleared it).
    Gone,
}

/// A claim on an item this instance holds: renewed in the background, released when
/// dropped (unless lost).
pub struct Claim {
    fleet: Arc<Fleet>,
    folder: Path,
    key: Path,
    record: Mutex<LeaseRecord>,
    /// Cancelled when the claim is lost (or dropped): a build under it stops.
    lost: CancellationToken,
    /// What the build under the claim has done, `(rows inserted, of rows)`: each renewal
    /// carries it (the record's `status`), so a run waiting on the item sees a builder that
    /// renews without progress.
    progress: Mutex<Option<Progress>>,
}

/// Where a claim's renewals read its build's `(rows inserted, of rows)`; `None` before the
/// build started.
pub type Progress = Box<dyn Fn() -> Option<(usize, usize)> + Send + Sync>;

impl std::fmt::Debug for Claim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Claim({} epoch {})", self.folder, self.epoch())
    }
}

impl Claim {
    fn record(&self) -> std::sync::MutexGuard<'_, LeaseRecord> {
        self.record.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The claim's epoch.
    pub fn epoch(&self) -> u64 {
        self.record().epoch
    }

    /// The item's folder.
    pub fn folder(&self) -> &Path {
        &self.folder
    }

    /// Cancelled once the claim is lost: what a build under it watches.
    pub fn lost(&self) -> &CancellationToken {
        &self.lost
    }

    /// Where the build under this claim reports: its renewals from now on carry it.
    pub fn report(&self, progress: Progress) {
        *self.progress.lock().unwrap_or_else(|p| p.into_inner()) = Some(progress);
    }

    /// Whether the claim still holds: not lost, not past a tenth of the TTL before its
    /// expiry by this clock, and (a look at the store) no newer epoch.
    pub async fn verify(&self) -> Result<bool, StorageError> {
        let margin = chrono::Duration::from_std(self.fleet.options.ttl / 10).unwrap_or_default();
        if self.lost.is_cancelled() || Utc::now() + margin >= self.record().expires_at {
            self.lost.cancel();
            return Ok(false);
        }
        if self.newer_exists().await? {
            self.lost.cancel();
            return Ok(false);
        }
        Ok(true)
    }

    async fn newer_exists(&self) -> Result<bool, StorageError> {
        self.fleet
            .newer_epoch(&keys::build_claims(&self.folder), &self.key)
            .await
    }

    async fn renew(&self) -> Result<bool, StorageError> {
        if self.lost.is_cancelled() {
            return Ok(false);
        }
        let mut next = self.record().renewed(self.fleet.options.ttl);
        next.status = progress_status(&self.progress);
        // our own epoch's key: only we write it; a takeover shows as a newer epoch
        self.fleet.storage.put_json_overwrite(&self.key, &next).await?;
        if self.newer_exists().await? {
            self.lost.cancel();
            return Ok(false);
        }
        *self.record() = next;
        Ok(true)
    }

    /// Ends the claim without a release: the item is being deleted (the run built its graph
    /// itself), and a release written after the delete would leave a stray claim behind.
    pub fn retire(&self) {
        self.lost.cancel();
    }

    /// Stops renewing without releasing: what a builder that died leaves behind (tests).
    #[cfg(test)]
    pub(crate) fn abandon(self: Arc<Self>) {
        self.lost.cancel();
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if self.lost.is_cancelled() {
            return;
        }
        self.lost.cancel();
        let mut record = self.record().clone();
        record.released = true;
        record.expires_at = Utc::now();
        let (storage, key) = (self.fleet.storage.clone(), self.key.clone());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = storage.put_json_overwrite(&key, &record).await {
                    tracing::warn!(key = %key, error = %e, "build claim release failed; it expires by itself");
                }
            });
        }
    }
}

/// What a claim's renewal says of its build: rows inserted so far (a build moves it at
/// least every round, ~2 % of the rows), `None` before the build started.
fn progress_status(progress: &Mutex<Option<Progress>>) -> Option<String> {
    let progress = progress.lock().unwrap_or_else(|p| p.into_inner());
    let (done, total) = progress.as_ref()?()?;
    Some(format!("built {done} of {total} rows"))
}

impl Renewed for Claim {
    fn stopped(&self) -> bool {
        self.lost.is_cancelled()
    }
    fn renew_once(&self) -> impl std::future::Future<Output = Result<bool, StorageError>> + Send {
        self.renew()
    }
    fn describe(&self) -> String {
        format!("build claim {}", self.folder)
    }
}

impl Fleet {
    /// Whether another live instance was seen at the last heartbeat: only then is a build
    /// worth offering.
    pub fn others_alive(&self) -> bool {
        self.stats.instances.load(Ordering::Relaxed) > 1
    }

    /// Offers `item` at `folder`; `false` when it was offered already.
    pub async fn offer(&self, folder: &Path, item: &BuildItem) -> Result<bool, StorageError> {
        match self.storage.put_json_new(&keys::build_offer(folder), item).await {
            Ok(()) => Ok(true),
            Err(StorageError::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The items offered for `index` (any run), each run's needed last first, with their
    /// folders.
    pub async fn offered(&self, index: &IndexName) -> Result<Vec<(Path, BuildItem)>, StorageError> {
        let mut out = Vec::new();
        for key in self.storage.list(&keys::builds(index)).await? {
            if key.filename() != Some("item.json") {
                continue;
            }
            let folder = keys::build_item_of(&key);
            match self.storage.get_json::<BuildItem>(&key).await {
                Ok(Some(item)) => out.push((folder, item)),
                Ok(None) | Err(StorageError::Corrupt { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by_key(|(_, i)| (i.run, std::cmp::Reverse(i.seq)));
        Ok(out)
    }

    /// Where the item at `folder` stands.
    pub async fn item_state(&self, folder: &Path) -> Result<ItemState, StorageError> {
        if let Some(done) = self
            .storage
            .get_json::<BuildDone>(&keys::build_done(folder))
            .await?
        {
            return Ok(ItemState::Done(done));
        }
        if self.storage.get(&keys::build_offer(folder)).await?.is_none() {
            return Ok(ItemState::Gone);
        }
        match self.latest_claim(folder).await? {
            Some(r) if self.is_live(&r) => Ok(ItemState::Claimed(r)),
            _ => Ok(ItemState::Open),
        }
    }

    async fn latest_claim(&self, folder: &Path) -> Result<Option<LeaseRecord>, StorageError> {
        match self.storage.latest_version(&keys::build_claims(folder)).await? {
            Some((_, key)) => self.storage.get_json::<LeaseRecord>(&key).await,
            None => Ok(None),
        }
    }

    /// Claims the item at `folder` for this instance (epoch + 1 of an expired, released or
    /// dead holder's: a **re-lease**), or `None` while a live claim holds it or another
    /// instance won the race. The claim renews itself until dropped.
    pub async fn claim(self: &Arc<Self>, folder: &Path) -> Result<Option<Arc<Claim>>, StorageError> {
        let latest = self.latest_claim(folder).await?;
        if latest.as_ref().is_some_and(|r| self.is_live(r)) {
            return Ok(None);
        }
        let record = self.next_epoch(latest.as_ref());
        let epoch = record.epoch;
        let key = keys::build_claim(folder, epoch);
        match self.storage.put_json_new(&key, &record).await {
            Ok(()) => {}
            Err(StorageError::AlreadyExists { .. }) => return Ok(None),
            Err(e) => return Err(e),
        }
        if let Some(prev) = latest.filter(|r| !r.released) {
            tracing::warn!(item = %folder, epoch, from = %prev.holder.instance,
                "build item re-leased from an expired or dead builder");
        }
        let claim = Arc::new(Claim {
            fleet: self.clone(),
            folder: folder.clone(),
            key,
            record: Mutex::new(record),
            lost: CancellationToken::new(),
            progress: Mutex::new(None),
        });
        tokio::spawn(renew_loop(Arc::downgrade(&claim), self.options.ttl / 3));
        Ok(Some(claim))
    }

    /// Marks the item done under `claim`, fenced: `false` (nothing written) when the claim
    /// was lost. Call after the graph is stored.
    pub async fn finish(&self, claim: &Claim, build_secs: f64) -> Result<bool, StorageError> {
        if !claim.verify().await? {
            return Ok(false);
        }
        let done = BuildDone {
            builder: self.me.instance,
            claim_epoch: claim.epoch(),
            build_secs,
            finished_at: Utc::now(),
        };
        match self
            .storage
            .put_json_new(&keys::build_done(claim.folder()), &done)
            .await
        {
            Ok(()) | Err(StorageError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
        // done: the claim needs no renewal and no release (a late release could land after
        // the run cleared its folder)
        claim.lost.cancel();
        Ok(true)
    }

    /// Whether the run of `item` still holds its index's autotune lease at its epoch.
    pub async fn run_alive(&self, index: &IndexName, item: &BuildItem) -> Result<bool, StorageError> {
        Ok(self
            .latest(LeaseKind::Autotune, index)
            .await?
            .is_some_and(|r| r.epoch == item.autotune_epoch && self.is_live(&r)))
    }

    /// Deletes the item at `folder` (a run that ended or died: nothing will load it).
    pub async fn drop_item(&self, folder: &Path) -> Result<(), StorageError> {
        self.storage.delete_prefix(folder).await
    }

    /// Deletes every item of run `run`, returning the configs whose graphs were built and
    /// stored (the caller deletes those it does not keep).
    pub async fn clear_run(&self, index: &IndexName, run: Uuid) -> Result<Vec<HnswConfig>, StorageError> {
        // one listing of the run's folder says which items are done and what to delete
        let all = self.storage.list(&keys::build_run(index, run)).await?;
        let mut built = Vec::new();
        for done in all.iter().filter(|k| k.filename() == Some("done.json")) {
            let folder = keys::build_item_of(done);
            if let Some(item) = self
                .storage
                .get_json::<BuildItem>(&keys::build_offer(&folder))
                .await?
            {
                built.push(item.config);
            }
        }
        for key in &all {
            self.storage.delete(key).await?;
        }
        Ok(built)
    }
}

#[cfg(test)]
mod tests {
    //! Claims, re-leases and fencing on the in-memory store (its conditional create is
    //! atomic, as S3's `If-None-Match` is).

    use super::super::tests::opts;
    use super::*;

    fn ix() -> IndexName {
        IndexName::parse("work").unwrap()
    }

    /// Item `seq` of `run` (a graph of m 8 + seq) under `lease`, and its folder.
    fn item_of(owner: &Fleet, lease: &Lease, run: Uuid, seq: u32) -> (Path, BuildItem) {
        let config = HnswConfig {
            m: 8 + seq,
            ..HnswConfig::DEFAULT
        };
        let item = BuildItem {
            run,
            owner: owner.id(),
            autotune_epoch: lease.epoch(),
            rows: 100,
            deleted: 0,
            config,
            engine: Engine::Native,
            seq,
            created_at: Utc::now(),
        };
        (
            keys::build_item(&ix(), run, config.graph_id(Engine::Native)),
            item,
        )
    }

    /// A run on `owner` holding the index's autotune lease, and one item it offers.
    async fn offered(owner: &Arc<Fleet>, seq: u32) -> (Arc<Lease>, Path, BuildItem) {
        let lease = owner.acquire(LeaseKind::Autotune, &ix()).await.unwrap().unwrap();
        let (folder, item) = item_of(owner, &lease, Uuid::now_v7(), seq);
        assert!(owner.offer(&folder, &item).await.unwrap());
        assert!(!owner.offer(&folder, &item).await.unwrap(), "offered once");
        (lease, folder, item)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn of_simultaneous_claimants_exactly_one_builds_an_item() {
        let storage = Storage::in_memory();
        let owner = Fleet::new(storage.clone(), opts(30_000));
        let (_lease, folder, _) = offered(&owner, 0).await;
        let helpers: Vec<Arc<Fleet>> = (0..6)
            .map(|_| Fleet::new(storage.clone(), opts(30_000)))
            .collect();
        let barrier = Arc::new(tokio::sync::Barrier::new(helpers.len()));
        let mut tasks = Vec::new();
        for f in &helpers {
            let (f, b, folder) = (f.clone(), barrier.clone(), folder.clone());
            tasks.push(tokio::spawn(async move {
                b.wait().await;
                f.claim(&folder).await.unwrap()
            }));
        }
        let mut won = Vec::new();
        for t in tasks {
            won.extend(t.await.unwrap());
        }
        assert_eq!(won.len(), 1, "exactly one builder");
        assert_eq!(won[0].epoch(), 1);
        match owner.item_state(&folder).await.unwrap() {
            ItemState::Claimed(r) => assert_eq!(r.epoch, 1),
            other => panic!("{other:?}"),
        }
        // given back when dropped: open again, the next claim is epoch 2
        drop(won);
        let again = loop {
            if let Some(c) = helpers[0].claim(&folder).await.unwrap() {
                break c;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        assert_eq!(again.epoch(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_claims_renewals_carry_its_builds_progress() {
        let storage = Storage::in_memory();
        let builder = Fleet::new(storage.clone(), opts(300));
        let (_lease, folder, _) = offered(&builder, 0).await;
        let claim = builder.claim(&folder).await.unwrap().unwrap();
        let status = || async {
            match builder.item_state(&folder).await.unwrap() {
                ItemState::Claimed(r) => r.status,
                other => panic!("{other:?}"),
            }
        };
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(status().await, None, "renewed, nothing reported");
        let rows = Arc::new(AtomicU64::new(0));
        let seen = rows.clone();
        claim.report(Box::new(move || {
            Some((seen.load(Ordering::Relaxed) as usize, 60))
        }));
        for done in [0, 24] {
            rows.store(done, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(250)).await;
            assert_eq!(
                status().await.as_deref(),
                Some(format!("built {done} of 60 rows").as_str()),
                "each renewal carries the build's progress"
            );
        }
    }

    #[tokio::test]
    async fn a_dead_builders_item_is_re_leased_and_its_late_writes_are_fenced() {
        let storage = Storage::in_memory();
        let owner = Fleet::new(storage.clone(), opts(30_000));
        let (_lease, folder, _) = offered(&owner, 0).await;
        let (dead, next) = (
            Fleet::new(storage.clone(), opts(300)),
            Fleet::new(storage.clone(), opts(30_000)),
        );
        let claim = dead.claim(&folder).await.unwrap().unwrap();
        // the builder dies mid-item: no renewal, no release
        let stale = claim.clone();
        claim.abandon();
        assert!(
            next.claim(&folder).await.unwrap().is_none(),
            "held until it expires"
        );
        assert!(matches!(
            owner.item_state(&folder).await.unwrap(),
            ItemState::Claimed(_)
        ));
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert_eq!(
            owner.item_state(&folder).await.unwrap(),
            ItemState::Open,
            "expired: open"
        );
        let relet = next.claim(&folder).await.unwrap().expect("re-leased");
        assert_eq!(relet.epoch(), 2);
        // the dead one's late finish writes nothing; the new builder's does
        assert!(!dead.finish(&stale, 1.0).await.unwrap(), "fenced");
        assert!(matches!(
            owner.item_state(&folder).await.unwrap(),
            ItemState::Claimed(_)
        ));
        assert!(next.finish(&relet, 2.5).await.unwrap());
        match owner.item_state(&folder).await.unwrap() {
            ItemState::Done(d) => {
                assert_eq!((d.builder, d.claim_epoch, d.build_secs), (next.id(), 2, 2.5));
            }
            other => panic!("{other:?}"),
        }
        // a paused builder whose claim was taken over (not expired by its own clock) is
        // fenced by the newer epoch in the store
        let (_l2, folder2, _) = {
            drop(_lease);
            tokio::time::sleep(Duration::from_millis(20)).await;
            offered(&owner, 1).await
        };
        let paused = next.claim(&folder2).await.unwrap().unwrap();
        let newer = LeaseRecord {
            epoch: 2,
            holder: owner.me().clone(),
            acquired_at: Utc::now(),
            renewed_at: Utc::now(),
            expires_at: Utc::now() + chrono::Duration::seconds(30),
            released: false,
            status: None,
        };
        storage
            .put_json_new(&keys::build_claim(&folder2, 2), &newer)
            .await
            .unwrap();
        assert!(!paused.verify().await.unwrap());
        assert!(!next.finish(&paused, 1.0).await.unwrap());
        assert!(paused.lost().is_cancelled(), "its build stops");
    }

    #[tokio::test]
    async fn an_item_is_fenced_by_its_runs_autotune_lease() {
        let storage = Storage::in_memory();
        let owner = Fleet::new(storage.clone(), opts(30_000));
        let helper = Fleet::new(storage.clone(), opts(30_000));
        let (lease, folder, item) = offered(&owner, 0).await;
        assert!(helper.run_alive(&ix(), &item).await.unwrap());
        drop(lease);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!helper.run_alive(&ix(), &item).await.unwrap(), "the run ended");
        // a newer run's lease does not revive the old run's items
        let _newer = owner.acquire(LeaseKind::Autotune, &ix()).await.unwrap().unwrap();
        assert!(!helper.run_alive(&ix(), &item).await.unwrap());
        helper.drop_item(&folder).await.unwrap();
        assert_eq!(helper.item_state(&folder).await.unwrap(), ItemState::Gone);
    }

    #[tokio::test]
    async fn items_list_needed_last_first_and_a_run_clears_its_own() {
        let storage = Storage::in_memory();
        let owner = Fleet::new(storage.clone(), opts(30_000));
        let lease = owner.acquire(LeaseKind::Autotune, &ix()).await.unwrap().unwrap();
        let run = Uuid::now_v7();
        let mut folders = Vec::new();
        for seq in 0..3u32 {
            let (folder, item) = item_of(&owner, &lease, run, seq);
            owner.offer(&folder, &item).await.unwrap();
            folders.push(folder);
        }
        let seqs: Vec<u32> = owner
            .offered(&ix())
            .await
            .unwrap()
            .iter()
            .map(|(_, i)| i.seq)
            .collect();
        assert_eq!(seqs, vec![2, 1, 0]);
        let helper = Fleet::new(storage.clone(), opts(30_000));
        let c = helper.claim(&folders[1]).await.unwrap().unwrap();
        assert!(helper.finish(&c, 1.0).await.unwrap());
        let built = owner.clear_run(&ix(), run).await.unwrap();
        assert_eq!(built.iter().map(|c| c.m).collect::<Vec<_>>(), vec![9]);
        assert!(owner.offered(&ix()).await.unwrap().is_empty());
        assert!(storage
            .list(&keys::build_run(&ix(), run))
            .await
            .unwrap()
            .is_empty());
    }
}
