//! The one bounded queue of heavy work (see the module doc of [`super`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::{JobsError, Result};

/// Heavy work admitted at once unless `limits.max_queued_jobs` says otherwise.
pub const DEFAULT_MAX_QUEUED_JOBS: usize = 16;

/// The one bounded queue of heavy work (see the module doc). Cheap to clone.
#[derive(Debug, Clone)]
pub struct WorkQueue {
    admitted: Arc<AtomicUsize>,
    limit: usize,
}

/// Admission of one piece of heavy work; its slot frees when this drops.
#[derive(Debug)]
pub struct Ticket {
    admitted: Arc<AtomicUsize>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.admitted.fetch_sub(1, Ordering::AcqRel);
    }
}

impl WorkQueue {
    /// A queue admitting at most `limit` pieces of work at once (at least one).
    pub fn new(limit: usize) -> WorkQueue {
        WorkQueue {
            admitted: Arc::default(),
            limit: limit.max(1),
        }
    }

    /// A ticket, or `Overloaded` when `limit` are out; never waits.
    pub fn try_admit(&self) -> Result<Ticket> {
        let got = self
            .admitted
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            });
        match got {
            Ok(_) => Ok(Ticket {
                admitted: self.admitted.clone(),
            }),
            Err(_) => Err(JobsError::Overloaded { limit: self.limit }),
        }
    }

    /// Tickets out now.
    pub fn admitted(&self) -> usize {
        self.admitted.load(Ordering::Acquire)
    }

    /// The limit.
    pub fn limit(&self) -> usize {
        self.limit
    }
}
