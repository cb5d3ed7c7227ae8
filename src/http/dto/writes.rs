//! Fresh writes: deletes, and the refresh rule of an index.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::serving::fresh::{Fresh, RefreshSettings};

/// `POST /vectors/indexes/{index}/vectors/delete`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteIds {
    /// Ids to delete, all or none: an empty list, a repeated id or one not stored
    /// refuses the request.
    pub ids: Vec<String>,
}

/// Answer of a delete.
#[derive(Debug, Serialize, ToSchema)]
pub struct Deleted {
    /// Vectors deleted.
    pub deleted: usize,
    /// Vectors now stored.
    pub total: u64,
}

/// `PUT /vectors/indexes/{index}/refresh`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshIn {
    /// 0..=1: past this share of writes since the serving generation — (inserted +
    /// deleted) / its vectors — the index is re-activated in the background.
    #[serde(default)]
    pub max_fresh_fraction: Option<f64>,
    /// 0..=10,000,000: once this many rows were appended since the serving generation,
    /// they are inserted into a copy of its graph swapped in as the next generation (no
    /// rebuild; 0 never folds). Default 1,000.
    #[serde(default)]
    pub fold_in_rows: Option<i64>,
}

/// The refresh rule of an index.
#[derive(Debug, Serialize, ToSchema)]
pub struct RefreshOut {
    /// The share of writes that triggers a background re-activation.
    pub max_fresh_fraction: f64,
    /// Appended rows that trigger a fold-in by insertion (0: never).
    pub fold_in_rows: u64,
}

impl From<RefreshSettings> for RefreshOut {
    fn from(s: RefreshSettings) -> Self {
        RefreshOut {
            max_fresh_fraction: s.max_fresh_fraction,
            fold_in_rows: s.fold_in_rows,
        }
    }
}

/// Writes since the serving generation was built (searched beside its graph).
#[derive(Debug, Serialize, ToSchema)]
pub struct FreshOut {
    /// Rows appended since.
    pub inserted: u64,
    /// Rows deleted since.
    pub deleted: u64,
}

impl From<Fresh> for FreshOut {
    fn from(f: Fresh) -> Self {
        FreshOut {
            inserted: f.inserted,
            deleted: f.deleted,
        }
    }
}
