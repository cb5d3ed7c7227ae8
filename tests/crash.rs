//! Crash safety the way storage engines test it: a scripted scenario runs over a store that
//! "crashes" at its N-th write (put or delete), for every N the scenario makes; then a fresh
//! service reopens what the store holds and the invariants are checked — every acknowledged
//! write is there, nothing is half-visible, every manifest's segments load, the promotion
//! history is linear, no job stays `running`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

#[path = "api/helpers.rs"]
mod helpers;

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, ObjectStoreExt,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

use helpers::vec_of;
use vectune::distance::Metric;
use vectune::fleet::FleetOptions;
use vectune::hnsw::BuildOptions;
use vectune::names::{HarnessName, IndexName};
use vectune::params::HnswConfig;
use vectune::service::{AutotuneRequest, ServiceOptions, TrialRequest, Vectune};
use vectune::storage::Storage;
use vectune::trials::Source;
use vectune::vectors::{Dims, NewVector};

/// An in-memory store that dies at its `crash_at`-th write: that write and everything
/// after it (reads too) fail, as if the process had been killed there. What was written
/// before stays in `inner` for the next "process" to open.
#[derive(Debug)]
struct Fuse {
    inner: Arc<InMemory>,
    writes: AtomicUsize,
    crash_at: usize,
    dead: AtomicBool,
}

#[derive(Debug, Clone)]
struct Crashing(Arc<Fuse>);

impl std::fmt::Display for Crashing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Crashing(at write {})", self.0.crash_at)
    }
}

/// Keys written on a timer rather than by the scenario's steps.
fn on_a_clock(location: &Path) -> bool {
    let key = location.as_ref();
    key.starts_with("fleet/") || key.contains("/leases/")
}

fn crashed() -> object_store::Error {
    object_store::Error::Generic {
        store: "Crashing",
        source: "injected crash: the process is gone".into(),
    }
}

impl Fuse {
    /// Counts one write; `Err` from the crash on. Liveness and lease renewals run on a
    /// clock, so they are not counted (the count must be the same in every run), but they
    /// die with the rest.
    fn write(&self, location: &Path) -> object_store::Result<()> {
        if self.dead.load(Ordering::SeqCst) {
            return Err(crashed());
        }
        if on_a_clock(location) {
            return Ok(());
        }
        if self.writes.fetch_add(1, Ordering::SeqCst) + 1 >= self.crash_at {
            self.dead.store(true, Ordering::SeqCst);
            return Err(crashed());
        }
        Ok(())
    }

    fn alive(&self) -> object_store::Result<()> {
        if self.dead.load(Ordering::SeqCst) {
            Err(crashed())
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl ObjectStore for Crashing {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.0.write(location)?;
        self.0.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        _location: &Path,
        _opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        // vectune writes whole objects: a multipart upload would be a write path this test
        // does not cover, so it must not happen unnoticed
        Err(object_store::Error::NotImplemented {
            operation: "put_multipart in the crash test".into(),
            implementer: "Crashing".into(),
        })
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        self.0.alive()?;
        self.0.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        // one write per deleted object, counted as the stream is driven
        let fuse = self.0.clone();
        locations
            .then(move |p| {
                let fuse = fuse.clone();
                async move {
                    let p = p?;
                    fuse.write(&p)?;
                    fuse.inner.delete(&p).await.map(|_| p)
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        if self.0.alive().is_err() {
            return futures::stream::once(async { Err(crashed()) }).boxed();
        }
        self.0.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.0.alive()?;
        self.0.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> object_store::Result<()> {
        self.0.write(to)?;
        self.0.inner.copy_opts(from, to, options).await
    }
}

fn name(s: &str) -> IndexName {
    IndexName::parse(s.to_string()).unwrap()
}

fn cfg(ec: i64, ef: i64, m: i64) -> HnswConfig {
    HnswConfig::new(ec, ef, m, 42).unwrap()
}

fn batch(from: usize, n: usize) -> Vec<NewVector> {
    (from..from + n)
        .map(|i| NewVector {
            id: format!("v{i}"),
            vector: vec_of(i),
        })
        .collect()
}

/// What the scenario got acknowledged before the crash, and what was in flight.
#[derive(Debug, Default)]
struct Acked {
    index: bool,
    /// Vectors stored after the acknowledged writes, and the change the one in flight makes
    /// (an append adds, a delete takes away, an upsert both).
    vectors: usize,
    in_flight_batch: Option<i64>,
    /// Ids whose delete was acknowledged: never to come back.
    deleted: Vec<String>,
    harness: bool,
    trials: Vec<uuid::Uuid>,
    /// The promoted trial after each acknowledged registry step, and after the one in flight.
    current: Option<uuid::Uuid>,
    in_flight_current: Option<Option<uuid::Uuid>>,
    activated: Option<u64>,
    job: Option<uuid::Uuid>,
    second_created: bool,
    second_deleted: bool,
    finished: bool,
}

const STEPS_VECTORS: [(usize, usize); 2] = [(0, 120), (120, 60)];

/// The scripted scenario; stops at the first failure (the crash), recording what was acked.
async fn scenario(v: &Vectune, fuse: &Fuse) -> Acked {
    let mut a = Acked::default();
    let ix = name("crash");
    let h = HarnessName::parse("h".to_string()).unwrap();
    macro_rules! step {
        ($e:expr) => {
            match $e {
                Ok(x) => x,
                Err(_) => return a,
            }
        };
    }
    step!(
        v.create_index(ix.clone(), Dims::parse(8).unwrap(), Metric::L2)
            .await
    );
    a.index = true;
    for (from, n) in STEPS_VECTORS {
        a.in_flight_batch = Some(n as i64);
        step!(v.append(&ix, batch(from, n)).await);
        a.in_flight_batch = None;
        a.vectors += n;
    }
    // deletes (a tombstone, then a manifest) and an upsert (segment, tombstone, manifest)
    a.in_flight_batch = Some(-2);
    step!(v.delete_vectors(&ix, vec!["v3".into(), "v4".into()]).await);
    a.in_flight_batch = None;
    a.vectors -= 2;
    a.deleted.extend(["v3".to_string(), "v4".to_string()]);
    a.in_flight_batch = Some(-1);
    step!(v.delete_vector(&ix, "v7".into()).await);
    a.in_flight_batch = None;
    a.vectors -= 1;
    a.deleted.push("v7".to_string());
    a.in_flight_batch = Some(1);
    let mut up = batch(5, 1);
    up[0].vector = vec_of(9005);
    up.extend(batch(500, 1));
    step!(v.upsert(&ix, up).await);
    a.in_flight_batch = None;
    a.vectors += 1;
    // a stream of single-row appends and deletes: past 8 small segments / tombstones of a
    // tier the write that tips them stores them merged, and manifests 8 versions behind are
    // pruned with the objects merges replaced — every one of those writes is a crash point
    for i in 600..609 {
        a.in_flight_batch = Some(1);
        step!(v.append(&ix, batch(i, 1)).await);
        a.in_flight_batch = None;
        a.vectors += 1;
    }
    for i in 10..16 {
        let id = format!("v{i}");
        a.in_flight_batch = Some(-1);
        step!(v.delete_vector(&ix, id.clone()).await);
        a.in_flight_batch = None;
        a.vectors -= 1;
        a.deleted.push(id);
    }
    step!(v.autogen_harness(h.clone(), &ix, 20, 5, 42).await);
    a.harness = true;
    let mut ids = Vec::new();
    for c in [cfg(40, 40, 16), cfg(60, 50, 8)] {
        let t = step!(
            v.run_trial(TrialRequest {
                index: ix.clone(),
                harness: h.clone(),
                config: c,
                note: None,
                source: Source::Manual,
            })
            .await
        );
        a.trials.push(t.id);
        ids.push(t.id);
    }
    // promote T1, promote T2, roll back to T1
    for (op, after) in [(0, Some(ids[0])), (1, Some(ids[1])), (2, Some(ids[0]))] {
        a.in_flight_current = Some(after);
        if op < 2 {
            step!(v.promote(&ix, &ids[op].to_string(), None, None).await);
        } else {
            step!(v.rollback(&ix).await);
        }
        a.in_flight_current = None;
        a.current = after;
    }
    let act = step!(v.activate(&ix).await);
    a.activated = Some(act.record.generation);
    let fields = vectune::autotune::SpecFields {
        grid: Some(vec![vectune::params::RawHnswConfig {
            ef_construction: 40,
            ef_search: 30,
            m: Some(16),
            seed: None,
            quantization: None,
            patience: None,
        }]),
        promote: Some("never".into()),
        ..Default::default()
    };
    let job = step!(
        v.autotune_async(AutotuneRequest {
            index: ix.clone(),
            harness: h.clone(),
            fields,
        })
        .await
    );
    a.job = Some(job.id);
    // the job ends, or the store dies under it
    for _ in 0..2000 {
        let j = v.job(&job.id.to_string()).await.unwrap();
        if j.state.is_terminal() || fuse.dead.load(Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    if fuse.dead.load(Ordering::SeqCst) {
        return a;
    }
    let second = name("second");
    step!(
        v.create_index(second.clone(), Dims::parse(8).unwrap(), Metric::L2)
            .await
    );
    a.second_created = true;
    step!(v.append(&second, batch(0, 10)).await);
    step!(v.delete_index(&second).await);
    a.second_deleted = true;
    a.finished = true;
    a
}

/// The liveness TTL of a crashing service: its liveness record stops being renewed at the
/// crash, and after this its jobs count as interrupted.
const CRASHED_TTL: std::time::Duration = std::time::Duration::from_millis(300);

/// Reopens what `inner` holds with a fresh service and checks every invariant.
async fn check_after_crash(inner: Arc<InMemory>, a: &Acked, at: usize) {
    // the crashed instance is dead to the others once its liveness lease ran out
    tokio::time::sleep(CRASHED_TTL + CRASHED_TTL / 3).await;
    let storage = Storage::from_store(inner, "memory (after the crash)");
    let v = Vectune::open(storage, 1, BuildOptions::all_cores())
        .await
        .unwrap_or_else(|e| panic!("crash at write {at}: the store does not reopen: {e}"));
    v.reactivate_all().await.unwrap();
    let ix = name("crash");
    let got = v.get_index(&ix);
    if !a.index {
        return;
    }
    let view = got.unwrap_or_else(|e| panic!("crash at write {at}: acknowledged index lost: {e}"));
    let n = view.vectors as usize;
    let ok = n == a.vectors
        || a.in_flight_batch
            .is_some_and(|b| n as i64 == a.vectors as i64 + b);
    assert!(
        ok,
        "crash at write {at}: {n} vectors, acknowledged {} (+{:?} in flight)",
        a.vectors, a.in_flight_batch
    );
    if n > 0 {
        // every manifest's segments load: a fresh activation reads them all
        v.activate(&ix)
            .await
            .unwrap_or_else(|e| panic!("crash at write {at}: stored vectors do not load: {e}"));
        // an acknowledged delete is never undone: its vector finds other rows
        for id in &a.deleted {
            let i: usize = id[1..].parse().unwrap();
            let found = v.search(&ix, &vec_of(i), 5, None).unwrap();
            assert!(
                found.hits.iter().all(|(hit, _)| hit != id),
                "crash at write {at}: deleted {id} came back"
            );
        }
    }
    if a.harness {
        let h = HarnessName::parse("h".to_string()).unwrap();
        v.get_harness(&h)
            .await
            .unwrap_or_else(|e| panic!("crash at write {at}: acknowledged harness lost: {e}"));
    }
    let trials: Vec<uuid::Uuid> = v
        .list_trials(&ix, None)
        .await
        .unwrap()
        .iter()
        .map(|t| t.id)
        .collect();
    for t in &a.trials {
        assert!(
            trials.contains(t),
            "crash at write {at}: acknowledged trial {t} lost ({trials:?})"
        );
    }
    let promoted = v.promoted(&ix).await.unwrap();
    let current = promoted.current.as_ref().map(|e| e.trial_id);
    assert!(
        current == a.current || a.in_flight_current == Some(current),
        "crash at write {at}: promoted {current:?}, acknowledged {:?} (in flight {:?})",
        a.current,
        a.in_flight_current
    );
    // the history is linear: every entry names a journaled trial, newest first
    for e in promoted.history.iter().chain(promoted.current.iter()) {
        assert!(
            trials.contains(&e.trial_id),
            "crash at write {at}: history names an unknown trial"
        );
    }
    assert!(
        promoted
            .history
            .windows(2)
            .all(|w| w[0].promoted_at >= w[1].promoted_at),
        "crash at write {at}: history out of order"
    );
    if let Some(generation) = a.activated {
        let active = v.get_index(&ix).unwrap().active;
        assert!(
            active.as_ref().is_some_and(|r| r.generation >= generation),
            "crash at write {at}: acknowledged activation {generation} not serving after restart: {active:?}"
        );
    }
    for j in v.jobs_of(&ix).await.unwrap() {
        assert!(
            j.state.is_terminal(),
            "crash at write {at}: job {} left {:?}",
            j.id,
            j.state
        );
    }
    if let Some(id) = a.job {
        v.job(&id.to_string())
            .await
            .unwrap_or_else(|e| panic!("crash at write {at}: acknowledged job {id} lost: {e}"));
    }
    match v.get_index(&name("second")) {
        Ok(_) if a.second_deleted => panic!("crash at write {at}: a deleted index came back"),
        // half-way through its deletion or not: what is still listed must load whole
        Ok(view) if view.vectors > 0 => {
            v.activate(&name("second"))
                .await
                .unwrap_or_else(|e| panic!("crash at write {at}: a half-deleted index is half-visible: {e}"));
        }
        _ => {}
    }
}

/// A service over a fresh store that crashes at its `crash_at`-th write, with the fuse.
async fn crashing_service(crash_at: usize) -> (Arc<Fuse>, Vectune) {
    let fuse = Arc::new(Fuse {
        inner: Arc::new(InMemory::new()),
        writes: AtomicUsize::new(0),
        crash_at,
        dead: AtomicBool::new(false),
    });
    let storage = Storage::from_store(Arc::new(Crashing(fuse.clone())), "crashing");
    let options = ServiceOptions {
        fleet: FleetOptions {
            ttl: CRASHED_TTL,
            sync_interval: CRASHED_TTL / 3,
            // the "crashed" instance is this very process: only its expiry can tell
            detect_local_dead: false,
        },
        ..ServiceOptions::default()
    };
    let v = Vectune::open_with(storage, options).await.unwrap();
    (fuse, v)
}

#[tokio::test]
async fn every_write_of_the_scenario_survives_a_crash_at_it() {
    // how many writes the whole scenario makes
    let (fuse, v) = crashing_service(usize::MAX).await;
    let full = scenario(&v, &fuse).await;
    assert!(
        full.finished,
        "the scenario must run through without a crash: {full:?}"
    );
    let total = fuse.writes.load(Ordering::SeqCst);
    assert!(total > 20, "{total} writes");
    // the stream of small writes merged segments and tombstones and pruned manifests, so
    // those writes are among the crash points: the newest manifest names fewer objects
    // than the writes made, and old versions are gone
    let prefix = Path::from("indexes/crash/manifests");
    let manifests: Vec<Path> = {
        use futures::TryStreamExt;
        let all: Vec<_> = fuse.inner.list(Some(&prefix)).try_collect().await.unwrap();
        all.into_iter().map(|m| m.location).collect()
    };
    let newest = manifests
        .iter()
        .max_by_key(|p| p.to_string())
        .expect("a manifest")
        .clone();
    let bytes = fuse.inner.get(&newest).await.unwrap().bytes().await.unwrap();
    let m: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let count = |f: &str| m[f].as_array().map_or(0, |a| a.len());
    assert!(count("segments") < 12, "segments not merged: {m}");
    assert!(count("tombstones") < 9, "tombstones not merged: {m}");
    assert!(manifests.len() <= 9, "manifests not pruned: {}", manifests.len());
    for at in 1..=total {
        let (fuse, v) = crashing_service(at).await;
        let acked = scenario(&v, &fuse).await;
        assert!(!acked.finished, "crash at write {at} of {total} was not hit");
        v.stop_background();
        drop(v);
        check_after_crash(fuse.inner.clone(), &acked, at).await;
    }
    eprintln!("crash test: {total} write points, a crash at each, every invariant held");
}
