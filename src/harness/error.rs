//! The harness module's errors.

use crate::names::{HarnessName, IndexName};
use crate::storage::StorageError;
use crate::vectors::{QueryError, VectorsError};

use super::MAX_K;
use crate::vectors::MAX_ID_LEN;

/// Errors of the harness module.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// No such harness.
    #[error("harness {0} not found")]
    NotFound(HarnessName),
    /// A harness of that name exists.
    #[error("harness {0} already exists")]
    Exists(HarnessName),
    /// `k` below 1 or above the limit.
    #[error("k must be between 1 and {MAX_K}, got {0}")]
    InvalidK(i64),
    /// `k` above the number of stored vectors.
    #[error("k = {k} exceeds the {vectors} vectors stored in index {index}")]
    KTooLarge {
        /// Requested k.
        k: usize,
        /// Vectors stored.
        vectors: u64,
        /// The index.
        index: IndexName,
    },
    /// No queries, or a non-positive autogen count.
    #[error("a harness needs at least one query")]
    NoQueries,
    /// More queries than allowed or than vectors to sample from.
    #[error("{requested} queries requested, but at most {available} are available")]
    TooManyQueries {
        /// Asked for.
        requested: i64,
        /// The limit.
        available: u64,
    },
    /// A query vector is unusable.
    #[error("query {position}: {source}")]
    Query {
        /// Its place in the list.
        position: usize,
        /// Why.
        #[source]
        source: QueryError,
    },
    /// A query id is repeated or malformed.
    #[error("query id {0:?} is repeated or invalid (1..={MAX_ID_LEN} bytes, unique)")]
    QueryId(String),
    /// The harness belongs to another index than the one named.
    #[error("harness {harness} belongs to index {actual}, not {requested}")]
    WrongIndex {
        /// The harness.
        harness: HarnessName,
        /// Its index.
        actual: IndexName,
        /// The index named in the request.
        requested: IndexName,
    },
    /// From the vectors module (unknown index, ...).
    #[error(transparent)]
    Vectors(#[from] VectorsError),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A blocking task died.
    #[error("background task failed")]
    Task(#[source] tokio::task::JoinError),
    /// A captured harness that has no complete set of queries yet.
    #[error("harness {0} is still capturing: it has no queries to measure yet")]
    Capturing(HarnessName),
    /// A refresh of a harness that was not captured, or is capturing already.
    #[error("harness {0} {1}")]
    NotRefreshable(HarnessName, &'static str),
    /// A capture sample rate out of range.
    #[error("sample_rate must be between 0 and 1 (and above 0 to capture anything), got {0}")]
    InvalidSampleRate(f64),
}

impl crate::error::Classified for HarnessError {
    fn classify(&self) -> crate::error::Class {
        use crate::error::{Class, ErrorKind as K};
        use HarnessError as H;
        match self {
            H::NotFound(_) => Class::new(K::NotFound, "harness_not_found"),
            H::Exists(_) => Class::new(K::Conflict, "harness_exists"),
            H::InvalidK(_) => Class::invalid("invalid_k"),
            H::KTooLarge { .. } => Class::new(K::Unprocessable, "k_too_large"),
            H::NoQueries => Class::invalid("no_queries"),
            H::TooManyQueries { .. } => Class::new(K::Unprocessable, "too_many_queries"),
            H::Query { .. } => Class::invalid("invalid_query"),
            H::QueryId(_) => Class::invalid("invalid_query_id"),
            H::WrongIndex { .. } => Class::invalid("harness_index_mismatch"),
            H::Vectors(v) => v.classify(),
            H::Storage(s) => s.classify(),
            H::Task(_) => Class::INTERNAL,
            H::Capturing(_) => Class::new(K::Conflict, "harness_capturing"),
            H::NotRefreshable(..) => Class::new(K::Conflict, "harness_not_refreshable"),
            H::InvalidSampleRate(_) => Class::invalid("invalid_sample_rate"),
        }
    }
}

/// Result of the harness module.
pub type Result<T, E = HarnessError> = std::result::Result<T, E>;
