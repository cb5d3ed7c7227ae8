//! The tuner's errors: each part's error it meets, and its own rules.

use crate::autotune::AutotuneError;
use crate::fleet::{ClaimError, LeaseLost};
use crate::harness::HarnessError;
use crate::promotion::PromotionError;
use crate::storage::StorageError;
use crate::trials::TrialsError;
use crate::vectors::{QueryError, VectorsError};

/// What can stop a trial or a run.
#[derive(Debug, thiserror::Error)]
pub enum TunerError {
    /// From the vectors module (an unknown index, unreadable vectors).
    #[error(transparent)]
    Vectors(#[from] VectorsError),
    /// From the harness module.
    #[error(transparent)]
    Harness(#[from] HarnessError),
    /// A harness query that cannot be searched (the index changed under it).
    #[error("harness query cannot be searched: {0}")]
    HarnessQuery(QueryError),
    /// From the trial journal.
    #[error(transparent)]
    Trials(#[from] TrialsError),
    /// From the promotion registry.
    #[error(transparent)]
    Promotion(#[from] PromotionError),
    /// A request that does not parse.
    #[error(transparent)]
    Autotune(#[from] AutotuneError),
    /// Another autotune holds the index.
    #[error(transparent)]
    Claim(#[from] ClaimError),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Keeping a full build for activation failed.
    #[error(transparent)]
    Serving(#[from] crate::serving::ServingError),
    /// The run's lease was taken over (or expired): it stopped before writing more.
    #[error(transparent)]
    LeaseLost(LeaseLost),
    /// A trial cancelled before it was measured (the process is stopping).
    #[error("cancelled")]
    Cancelled,
    /// A blocking task died.
    #[error("background task failed")]
    Task(#[source] tokio::task::JoinError),
    /// An invariant broke (a bug, not bad input).
    #[error("internal invariant broken: {0}")]
    Internal(&'static str),
}

impl crate::error::Classified for TunerError {
    fn classify(&self) -> crate::error::Class {
        use crate::error::{Class, ErrorKind as K};
        use TunerError as T;
        match self {
            T::Vectors(v) => v.classify(),
            T::Harness(h) => h.classify(),
            T::HarnessQuery(_) => Class::new(K::Unprocessable, "invalid_harness"),
            T::Trials(t) => t.classify(),
            T::Promotion(p) => p.classify(),
            T::Autotune(a) => a.classify(),
            T::Claim(c) => c.classify(),
            T::Storage(s) => s.classify(),
            T::Serving(s) => s.classify(),
            T::LeaseLost(_) => Class::new(K::Conflict, "lease_lost"),
            T::Cancelled => Class::new(K::Conflict, "cancelled"),
            T::Task(_) | T::Internal(_) => Class::INTERNAL,
        }
    }
}
