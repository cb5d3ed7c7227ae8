//! The service's error: each domain's error, plus the service's own rules, classified
//! once for every transport.

use super::MAX_SEARCH_K;
use crate::autotune::AutotuneError;
use crate::harness::HarnessError;
use crate::jobs::JobsError;
use crate::names::IndexName;
use crate::params::ConfigError;
use crate::promotion::PromotionError;
use crate::serving::ServingError;
use crate::storage::StorageError;
use crate::trials::TrialsError;
use crate::vectors::{QueryError, VectorsError};

/// Errors of the core service (each domain's error, plus the service's own rules).
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// From the vectors module.
    #[error(transparent)]
    Vectors(#[from] VectorsError),
    /// From the harness module.
    #[error(transparent)]
    Harness(#[from] HarnessError),
    /// A config out of bounds.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// From the trial journal.
    #[error(transparent)]
    Trials(#[from] TrialsError),
    /// From the promotion registry.
    #[error(transparent)]
    Promotion(#[from] PromotionError),
    /// From the autotune rules.
    #[error(transparent)]
    Autotune(#[from] AutotuneError),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A search before any activation (or before the start-up rebuild finished).
    #[error("index {0} is not active: activate it first (POST /vectors/indexes/{0}/activate)")]
    NotActive(IndexName),
    /// Activation of an index with no vectors.
    #[error("index {0} has no vectors to build a graph from")]
    EmptyIndex(IndexName),
    /// A query vector that cannot be searched.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// `k` of a search out of range.
    #[error("k must be between 1 and {MAX_SEARCH_K}, got {0}")]
    InvalidK(i64),
    /// A concurrent activation of the same generation won.
    #[error("index {0} was activated concurrently; retry")]
    ActivationConflict(IndexName),
    /// A blocking task died.
    #[error("background task failed")]
    Task(#[source] tokio::task::JoinError),
    /// From the jobs module.
    #[error(transparent)]
    Jobs(#[from] JobsError),
    /// From the tuner (trials and autotune runs).
    #[error(transparent)]
    Tuner(#[from] crate::autotune::TunerError),
    /// From the agents component (their records and leases).
    #[error(transparent)]
    Agents(#[from] crate::agent::AgentsError),
    /// From the agent module.
    #[error(transparent)]
    Agent(#[from] crate::agent::AgentError),
    /// A name that does not parse.
    #[error(transparent)]
    Name(#[from] crate::names::NameError),
    /// An invariant of the service broke (a bug, not bad input).
    #[error("internal invariant broken: {0}")]
    Internal(&'static str),
    /// Not ready yet (start-up is under way).
    #[error("not ready: {0}")]
    Starting(&'static str),
    /// Work cut short because the process is stopping.
    #[error("the server is shutting down; retry against another instance or after restart")]
    ShuttingDown,
    /// A job was cancelled before it changed anything.
    #[error("cancelled")]
    Cancelled,
    /// From the live recall monitor.
    #[error(transparent)]
    Monitor(#[from] crate::monitor::MonitorError),
    /// A refresh setting out of bounds.
    #[error(transparent)]
    Refresh(crate::serving::fresh::RefreshError),
}

impl crate::error::Classified for ServiceError {
    fn classify(&self) -> crate::error::Class {
        use crate::error::{Class, ErrorKind as K};
        use ServiceError as S;
        match self {
            S::Vectors(v) => v.classify(),
            S::Harness(h) => h.classify(),
            S::Storage(s) => s.classify(),
            S::Config(_) => Class::invalid("invalid_config"),
            S::Trials(t) => t.classify(),
            S::Promotion(p) => p.classify(),
            S::Autotune(a) => a.classify(),
            S::NotActive(_) => Class::new(K::Conflict, "not_active"),
            S::EmptyIndex(_) => Class::new(K::Conflict, "index_empty"),
            S::Query(_) => Class::invalid("invalid_query"),
            S::InvalidK(_) => Class::invalid("invalid_k"),
            S::ActivationConflict(_) => Class::new(K::Conflict, "concurrent_write"),
            S::Task(_) | S::Internal(_) => Class::INTERNAL,
            S::Jobs(j) => j.classify(),
            S::Agent(a) => a.classify(),
            S::Agents(a) => a.classify(),
            S::Tuner(t) => t.classify(),
            S::Name(n) => n.classify(),
            S::Cancelled => Class::new(K::Conflict, "cancelled"),
            S::ShuttingDown => Class::new(K::ShuttingDown, "shutting_down"),
            S::Starting(_) => Class::new(K::Unavailable, "not_ready"),
            S::Monitor(m) => m.classify(),
            S::Refresh(r) => r.classify(),
        }
    }
}

/// Result of the service.
pub type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// Serving's errors in the service's terms (which index they are about).
pub(super) fn serving_error(index: &IndexName, e: ServingError) -> ServiceError {
    match e {
        ServingError::Storage(e) => ServiceError::Storage(e),
        ServingError::Task(t) => ServiceError::Task(t),
        ServingError::Closed => ServiceError::Internal("the build semaphore is closed"),
        ServingError::Conflict => ServiceError::ActivationConflict(index.clone()),
        ServingError::Cancelled => ServiceError::Cancelled,
        ServingError::IndexGone => ServiceError::Vectors(VectorsError::IndexNotFound(index.clone())),
    }
}
