//! The fleet's clock: keeping one instance in step with the others on the bucket.
//!
//! One background task per service, on four clocks:
//! - every `ttl / 3`: renew this instance's liveness record (with the generation it serves
//!   of each index);
//! - every `sync_secs` (default 2 s): the host adopts what other instances wrote — indexes
//!   created or deleted, newer manifests, newer activations (from the stored graph, no
//!   rebuild), changed agent settings, harness definitions — and acts on cancel requests
//!   for jobs running here;
//! - every `ttl / 2`: the host marks `interrupted` the unfinished jobs of dead instances;
//! - every ten minutes: old liveness records are swept.
//!
//! The clock is the fleet's; what "adopt" means is the host's ([`SyncHost`], the service
//! in production, a counting fake in the tests on a paused clock).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::Fleet;
use crate::error::Classified;

/// How often old liveness records are swept.
pub const SWEEP_EVERY: Duration = Duration::from_secs(600);

/// What the fleet's clock drives.
pub trait SyncHost: Send + Sync {
    /// What can go wrong (logged with its code; the clock retries on its next tick).
    type Error: Classified + Send;
    /// This instance's place in the fleet.
    fn fleet(&self) -> &Arc<Fleet>;
    /// Whether the process is stopping (the clock ends).
    fn stopping(&self) -> bool;
    /// The generation this instance serves, by index (written into its liveness record).
    fn serving_generations(&self) -> BTreeMap<String, u64>;
    /// Adopts once what the other instances wrote.
    fn sync_once(&self) -> impl Future<Output = Result<(), Self::Error>> + Send;
    /// Marks `interrupted` the unfinished jobs of dead instances; returns how many.
    fn reap_jobs(&self) -> impl Future<Output = Result<usize, Self::Error>> + Send;
}

/// Runs the clock until `host` returns `None` (the service was dropped) or the host stops.
pub async fn run<H: SyncHost>(host: impl Fn() -> Option<H> + Send) {
    let options = match host() {
        Some(h) => h.fleet().options(),
        None => return,
    };
    let beat_every = (options.ttl / 3).max(Duration::from_millis(100));
    let reap_every = (options.ttl / 2).max(Duration::from_millis(100));
    let sync_every = options.sync_interval;
    let tick = sync_every.min(beat_every).max(Duration::from_millis(50));
    let start = Instant::now();
    let (mut last_beat, mut last_sync, mut last_reap, mut last_sweep) = (start, start, start, start);
    loop {
        tokio::time::sleep(tick).await;
        let Some(h) = host() else {
            return;
        };
        if h.stopping() {
            return;
        }
        let now = Instant::now();
        if now >= last_beat + beat_every {
            last_beat = now;
            if let Err(e) = h.fleet().heartbeat(h.serving_generations()).await {
                tracing::warn!(error = %e, "liveness renewal failed; retrying");
            }
        }
        if now >= last_sync + sync_every {
            last_sync = now;
            if let Err(e) = h.sync_once().await {
                tracing::warn!(error = %e, code = e.classify().code, "fleet sync failed; retrying");
            }
        }
        if now >= last_reap + reap_every || h.fleet().take_reap_due() {
            last_reap = now;
            match h.reap_jobs().await {
                Ok(n) => h.fleet().reaped(n),
                Err(e) => tracing::warn!(error = %e, code = e.classify().code,
                    "reaping dead instances' jobs failed; retrying"),
            }
        }
        if now >= last_sweep + SWEEP_EVERY {
            last_sweep = now;
            if let Err(e) = h.fleet().sweep_instances().await {
                tracing::warn!(error = %e, "sweeping old instance records failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::FleetOptions;
    use crate::storage::{Storage, StorageError};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    #[derive(Default)]
    struct Counts {
        syncs: AtomicUsize,
        reaps: AtomicUsize,
        stop: AtomicBool,
    }

    #[derive(Clone)]
    struct Fake {
        fleet: Arc<Fleet>,
        counts: Arc<Counts>,
    }

    impl SyncHost for Fake {
        type Error = StorageError;
        fn fleet(&self) -> &Arc<Fleet> {
            &self.fleet
        }
        fn stopping(&self) -> bool {
            self.counts.stop.load(Ordering::Relaxed)
        }
        fn serving_generations(&self) -> BTreeMap<String, u64> {
            BTreeMap::from([("idx".to_string(), 3)])
        }
        async fn sync_once(&self) -> Result<(), StorageError> {
            self.counts.syncs.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        async fn reap_jobs(&self) -> Result<usize, StorageError> {
            self.counts.reaps.fetch_add(1, Ordering::Relaxed);
            Ok(2)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn each_clock_ticks_at_its_own_pace_and_stops_with_the_host() {
        let options = FleetOptions {
            ttl: Duration::from_secs(30),
            sync_interval: Duration::from_secs(2),
            ..FleetOptions::default()
        };
        let fake = Fake {
            fleet: Fleet::new(Storage::in_memory(), options),
            counts: Arc::default(),
        };
        let task = tokio::spawn(run({
            let fake = fake.clone();
            move || Some(fake.clone())
        }));
        tokio::time::sleep(Duration::from_secs(61)).await;
        let (syncs, reaps) = (
            fake.counts.syncs.load(Ordering::Relaxed),
            fake.counts.reaps.load(Ordering::Relaxed),
        );
        // sync every 2 s, reap every ttl/2 = 15 s, over 61 s
        assert!((29..=30).contains(&syncs), "syncs {syncs}");
        assert!((3..=4).contains(&reaps), "reaps {reaps}");
        let snap = fake.fleet.snapshot();
        assert_eq!(snap.reaped, 2 * reaps as u64, "what the host reaped is counted");
        let view = fake.fleet.fleet_view();
        assert_eq!(
            view.len(),
            1,
            "the heartbeat wrote this instance's liveness record"
        );
        assert_eq!(view[0].1.get("idx"), Some(&3), "with the generation it serves");
        fake.counts.stop.store(true, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(task.is_finished(), "a stopping host ends the clock");
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_host_ends_the_clock() {
        let task = tokio::spawn(run(|| None::<Fake>));
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(task.is_finished());
    }
}
