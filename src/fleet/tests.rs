//! Races and takeovers on the in-memory store, whose conditional create is atomic (as
//! S3's `If-None-Match` is; moto's is not, so true races are tested here).

use super::*;

pub(super) fn opts(ttl_ms: u64) -> FleetOptions {
    FleetOptions {
        ttl: Duration::from_millis(ttl_ms),
        sync_interval: Duration::from_secs(1),
        detect_local_dead: true,
    }
}

fn ix() -> IndexName {
    IndexName::parse("races").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_many_simultaneous_acquirers_exactly_one_holds_each_round() {
    let storage = Storage::in_memory();
    let fleets: Vec<Arc<Fleet>> = (0..8)
        .map(|_| Fleet::new(storage.clone(), opts(30_000)))
        .collect();
    for round in 1..=5u64 {
        let barrier = Arc::new(tokio::sync::Barrier::new(fleets.len()));
        let mut tasks = Vec::new();
        for f in &fleets {
            let (f, b) = (f.clone(), barrier.clone());
            tasks.push(tokio::spawn(async move {
                b.wait().await;
                f.acquire(LeaseKind::Autotune, &ix()).await.unwrap()
            }));
        }
        let mut held = Vec::new();
        for t in tasks {
            if let Ok(l) = t.await.unwrap() {
                held.push(l);
            }
        }
        assert_eq!(held.len(), 1, "round {round}: exactly one winner");
        assert_eq!(held[0].epoch(), round, "epochs rise by one per tenure");
        // the winner gives it back; the next round starts from a released lease
        drop(held);
        let free = loop {
            let r = fleets[0]
                .latest(LeaseKind::Autotune, &ix())
                .await
                .unwrap()
                .unwrap();
            if r.released {
                break r;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        assert_eq!(free.epoch, round);
    }
    let takeovers: u64 = fleets
        .iter()
        .map(|f| f.stats.takeovers[0].load(Ordering::Relaxed))
        .sum();
    assert_eq!(takeovers, 0, "a released lease is taken, not taken over");
}

#[tokio::test]
async fn a_held_lease_is_refused_then_taken_over_after_expiry_and_the_old_holder_is_fenced() {
    let storage = Storage::in_memory();
    let mut o = opts(400);
    o.detect_local_dead = false; // both "instances" are this process: only expiry may count
    let (a, b) = (Fleet::new(storage.clone(), o), Fleet::new(storage.clone(), o));
    let held = a.acquire(LeaseKind::Agent, &ix()).await.unwrap().unwrap();
    let taken = b.acquire(LeaseKind::Agent, &ix()).await.unwrap().unwrap_err();
    assert_eq!(taken.0.holder.instance, a.id());
    assert!(b.held_elsewhere(LeaseKind::Agent, &ix()).await.unwrap().is_some());
    // renewals keep it held well past one TTL
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(
        b.acquire(LeaseKind::Agent, &ix()).await.unwrap().is_err(),
        "renewed, still held"
    );
    held.check().unwrap();
    // a holder that stops renewing (a paused or dead process) loses it after the TTL
    let frozen = Lease {
        fleet: held.fleet.clone(),
        kind: held.kind,
        index: held.index.clone(),
        key: held.key.clone(),
        record: Mutex::new(held.record().clone()),
        lost: Arc::new(AtomicBool::new(false)),
        watchers: Mutex::default(),
    };
    let watched = tokio_util::sync::CancellationToken::new();
    frozen.on_lost(watched.clone());
    // no renewals, no release: as if the process froze (the flag ends its renew loop)
    held.lost.store(true, Ordering::Relaxed);
    std::mem::forget(held);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(frozen.check().is_err(), "past its own expiry it refuses to write");
    assert!(watched.is_cancelled(), "and the runs under it are told to stop");
    let new = b.acquire(LeaseKind::Agent, &ix()).await.unwrap().unwrap();
    assert_eq!(new.epoch(), 2);
    assert_eq!(b.stats.takeovers[1].load(Ordering::Relaxed), 1);
    // the old holder wakes up: its renewal finds the newer epoch and it stays fenced
    assert!(!frozen.renew().await.unwrap());
    assert!(matches!(frozen.verify().await, Err(LeaseLostOr::Lost(_))));
    assert_eq!(a.stats.lost[1].load(Ordering::Relaxed), 1);
    let latest = b.latest(LeaseKind::Agent, &ix()).await.unwrap().unwrap();
    assert_eq!(
        (latest.epoch, latest.holder.instance),
        (2, b.id()),
        "its renewal did not touch epoch 2"
    );
    new.verify().await.unwrap();
    std::mem::forget(frozen);
}

#[tokio::test]
async fn a_dead_local_holder_is_taken_over_at_once_and_liveness_follows_the_record() {
    let storage = Storage::in_memory();
    let a = Fleet::new(storage.clone(), opts(30_000));
    let b = Fleet::new(storage.clone(), opts(30_000));
    // a lease and a liveness record left by a process of this machine that is gone
    let dead = Holder {
        instance: Uuid::now_v7(),
        pid: 999_999_999,
        ..a.me().clone()
    };
    let record = LeaseRecord {
        epoch: 7,
        holder: dead.clone(),
        acquired_at: Utc::now(),
        renewed_at: Utc::now(),
        expires_at: after(Duration::from_secs(30)),
        released: false,
        status: None,
    };
    storage
        .put_json_new(&keys::lease(&ix(), "autotune", 7), &record)
        .await
        .unwrap();
    assert!(!a.take_reap_due());
    let l = a.acquire(LeaseKind::Autotune, &ix()).await.unwrap().unwrap();
    assert_eq!(l.epoch(), 8);
    assert_eq!(a.stats.takeovers[0].load(Ordering::Relaxed), 1);
    assert!(a.take_reap_due(), "the dead holder's jobs are to be reaped now");
    assert!(!a.take_reap_due(), "once");

    a.heartbeat(BTreeMap::new()).await.unwrap();
    b.heartbeat(BTreeMap::from([("races".to_string(), 3)]))
        .await
        .unwrap();
    assert!(b.instance_alive(a.id()).await.unwrap());
    assert_eq!(b.stats.instances.load(Ordering::Relaxed), 2);
    assert!(!b.instance_alive(dead.instance).await.unwrap(), "no record: dead");
    let stale = InstanceRecord {
        holder: Holder {
            pid: std::process::id(),
            instance: Uuid::now_v7(),
            ..dead
        },
        started_at: Utc::now(),
        renewed_at: Utc::now(),
        expires_at: Utc::now() - chrono::Duration::seconds(1),
        serving: BTreeMap::new(),
        version: String::new(),
    };
    storage
        .put_json_overwrite(&keys::instance(stale.holder.instance), &stale)
        .await
        .unwrap();
    assert!(
        !b.instance_alive(stale.holder.instance).await.unwrap(),
        "expired: dead"
    );
    a.leave().await.unwrap();
    assert!(
        !b.instance_alive(a.id()).await.unwrap(),
        "a clean stop leaves no record"
    );
}
