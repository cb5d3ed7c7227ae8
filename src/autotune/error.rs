//! The tuning engine's own errors: a request that cannot run (an index already tuning is
//! [`crate::fleet::ClaimError`]'s).

/// Errors of the autotune rules.
#[derive(Debug, thiserror::Error)]
pub enum AutotuneError {
    /// Every grid entry was out of bounds (or the grid was empty).
    #[error("no usable config in the grid: {}", if skipped.is_empty() { "the grid is empty".to_string() } else { skipped.join("; ") })]
    NoUsableConfig {
        /// Why each entry was skipped.
        skipped: Vec<String>,
    },
    /// `min_recall` outside 0..=1.
    #[error("min_recall must be between 0 and 1, got {0}")]
    InvalidMinRecall(f64),
    /// Another request field is out of its domain.
    #[error("{field}: {reason}")]
    InvalidField {
        /// The field.
        field: &'static str,
        /// What it must be.
        reason: String,
    },
}

impl crate::error::Classified for AutotuneError {
    fn classify(&self) -> crate::error::Class {
        use crate::error::{Class, ErrorKind as K};
        match self {
            AutotuneError::NoUsableConfig { .. } => Class::new(K::Unprocessable, "no_usable_config"),
            AutotuneError::InvalidMinRecall(_) => Class::invalid("invalid_min_recall"),
            AutotuneError::InvalidField { .. } => Class::invalid("invalid_autotune_request"),
        }
    }
}

/// Result of the autotune rules.
pub type Result<T, E = AutotuneError> = std::result::Result<T, E>;
