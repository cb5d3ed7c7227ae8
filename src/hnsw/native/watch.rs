//! What a running build reports and obeys: rows inserted at each round's end, and a stop
//! checked there (a job's `progress.build`, a cancel that stops a 1M build within ~2 %).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Rows a build under way has inserted, of how many: shared with whoever shows progress
/// (a job), counted at the end of each round (a round is at most [`super::MAX_ROUND_FRACTION`] of
/// the rows, so the count moves at least every 2 %).
#[derive(Debug, Default)]
pub struct BuildProgress {
    inserted: AtomicUsize,
    total: AtomicUsize,
}

impl BuildProgress {
    /// `(inserted, total)` of the build under way (or the one stopped last), `None` when
    /// none is.
    pub fn get(&self) -> Option<(usize, usize)> {
        let total = self.total.load(Ordering::Acquire);
        (total > 0).then(|| (self.inserted.load(Ordering::Relaxed).min(total), total))
    }

    /// No build under way.
    pub fn clear(&self) {
        self.total.store(0, Ordering::Release);
    }

    pub(super) fn start(&self, total: usize) {
        self.inserted.store(0, Ordering::Relaxed);
        self.total.store(total.max(1), Ordering::Release);
    }
}

/// What a running build reports to and obeys: its [`BuildProgress`], and a stop checked at
/// each round's end — a build told to stop ends within one round, its graph incomplete (the
/// caller drops it).
pub struct BuildWatch {
    progress: Arc<BuildProgress>,
    stop: Box<dyn Fn() -> bool + Send + Sync>,
}

impl std::fmt::Debug for BuildWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuildWatch")
            .field("progress", &self.progress)
            .finish()
    }
}

impl BuildWatch {
    /// A watch reporting to `progress`, whose build stops once `stop` says so.
    pub fn new(progress: Arc<BuildProgress>, stop: impl Fn() -> bool + Send + Sync + 'static) -> BuildWatch {
        BuildWatch {
            progress,
            stop: Box::new(stop),
        }
    }

    /// Whether the build was told to stop (asked again now: a build that ended after the
    /// stop was raised is treated as stopped, its graph dropped by the caller).
    pub fn stopped(&self) -> bool {
        (self.stop)()
    }

    /// See [`BuildProgress::get`].
    pub fn progress(&self) -> Option<(usize, usize)> {
        self.progress.get()
    }

    pub(super) fn start(&self, total: usize) {
        self.progress.start(total);
    }

    /// Counts `rows` inserted; whether the build should stop.
    pub(super) fn advance(&self, rows: usize) -> bool {
        self.progress.inserted.fetch_add(rows, Ordering::Relaxed);
        (self.stop)()
    }
}
