//! The vectors module's errors.

use crate::names::IndexName;
use crate::storage::StorageError;

use super::{binary, segment, MAX_DIMS, MAX_ID_LEN};

/// Errors of the vectors module.
#[derive(Debug, thiserror::Error)]
pub enum VectorsError {
    /// No such index.
    #[error("index {0} not found")]
    IndexNotFound(IndexName),
    /// An index of that name exists.
    #[error("index {0} already exists")]
    IndexExists(IndexName),
    /// `dims` outside 1..=4096.
    #[error("dims must be between 1 and {MAX_DIMS}, got {0}")]
    InvalidDims(i64),
    /// Unknown metric name.
    #[error("metric must be one of cosine, l2, dot; got {0:?}")]
    InvalidMetric(String),
    /// A batch with no vectors.
    #[error("the batch has no vectors")]
    EmptyBatch,
    /// A vector of the wrong length.
    #[error("vector {id:?} (position {position}) has {got} dimensions, the index has {expected}")]
    DimsMismatch {
        /// Its id.
        id: String,
        /// Its place in the batch.
        position: usize,
        /// The index's dims.
        expected: usize,
        /// What it has.
        got: usize,
    },
    /// NaN or infinity in a vector.
    #[error("vector {id:?} has a non-finite value at dimension {dim}")]
    NonFinite {
        /// Its id.
        id: String,
        /// The first offending dimension.
        dim: usize,
    },
    /// A zero vector in a cosine index.
    #[error("vector {id:?} is all zeros: a cosine index cannot normalise it")]
    ZeroVector {
        /// Its id.
        id: String,
    },
    /// An id that is empty, too long or has control characters.
    #[error("vector id {id:?} is invalid: ids are 1..={MAX_ID_LEN} bytes without control characters")]
    InvalidId {
        /// The id (truncated).
        id: String,
    },
    /// An id repeated within the batch.
    #[error("vector id {0:?} appears more than once in the batch")]
    DuplicateInBatch(String),
    /// An id already stored.
    #[error("vector id {0:?} is already stored in this index")]
    DuplicateStored(String),
    /// A delete names an id that is not stored (or deleted already).
    #[error("vector id {0:?} is not stored in this index")]
    UnknownId(String),
    /// The one vector a delete names is not stored (or deleted already).
    #[error("vector {0:?} not found")]
    VectorNotFound(String),
    /// `?format=` other than fvecs or npy.
    #[error("format must be fvecs or npy, got {0:?}")]
    InvalidFormat(String),
    /// A malformed binary body.
    #[error(transparent)]
    Binary(#[from] binary::BinaryError),
    /// Another process changed the index at the same moment.
    #[error("index {0} was changed concurrently; retry")]
    Conflict(IndexName),
    /// A stored segment is damaged.
    #[error("segment {key} is damaged")]
    CorruptSegment {
        /// Its key.
        key: String,
        /// Why.
        #[source]
        source: segment::SegmentError,
    },
    /// A manifest names a segment that is missing.
    #[error("segment {0} listed in the manifest is missing")]
    MissingSegment(String),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A blocking task died.
    #[error("background task failed")]
    Task(#[source] tokio::task::JoinError),
}

impl crate::error::Classified for VectorsError {
    fn classify(&self) -> crate::error::Class {
        use crate::error::{Class, ErrorKind as K};
        use VectorsError as V;
        match self {
            V::IndexNotFound(_) => Class::new(K::NotFound, "index_not_found"),
            V::IndexExists(_) => Class::new(K::Conflict, "index_exists"),
            V::Conflict(_) => Class::new(K::Conflict, "concurrent_write"),
            V::InvalidDims(_) => Class::invalid("invalid_dims"),
            V::InvalidMetric(_) => Class::invalid("invalid_metric"),
            V::InvalidFormat(_) => Class::invalid("invalid_format"),
            V::Binary(_) => Class::invalid("invalid_binary_body"),
            V::EmptyBatch => Class::invalid("empty_batch"),
            V::DimsMismatch { .. } => Class::invalid("dimension_mismatch"),
            V::NonFinite { .. } => Class::invalid("non_finite_value"),
            V::ZeroVector { .. } => Class::invalid("zero_vector"),
            V::InvalidId { .. } => Class::invalid("invalid_id"),
            V::DuplicateInBatch(_) | V::DuplicateStored(_) => Class::invalid("duplicate_id"),
            V::UnknownId(_) => Class::invalid("unknown_id"),
            V::VectorNotFound(_) => Class::new(K::NotFound, "vector_not_found"),
            V::Storage(s) => s.classify(),
            V::CorruptSegment { .. } | V::MissingSegment(_) | V::Task(_) => Class::INTERNAL,
        }
    }
}

/// Result of the vectors module.
pub type Result<T, E = VectorsError> = std::result::Result<T, E>;
