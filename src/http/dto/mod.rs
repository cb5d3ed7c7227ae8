//! The wire layer: every request and response body of `shared/API.md`, one file per area,
//! and what `/openapi.json` describes.
//!
//! Responses are built from domain values by `From` impls and never serialise a stored
//! type, so `Trial`, `Job` or a promotion entry can change under their `schema_version`
//! without changing what a client sees. Requests deny unknown fields (a typo is a `400`,
//! not a silently ignored setting); the raw inputs the core parses itself
//! ([`crate::autotune::SpecFields`], [`crate::params::RawHnswConfig`],
//! [`crate::agent::AgentConfigIn`]) are described here through their `ToSchema`.

pub mod agents;
pub mod autotune;
pub mod harnesses;
pub mod indexes;
pub mod jobs;
pub mod trials;
pub mod writes;

pub use agents::*;
pub use autotune::*;
pub use harnesses::*;
pub use indexes::*;
pub use jobs::*;
pub use trials::*;
pub use writes::*;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::params::HnswConfig;

/// A wire enum mirroring a domain enum variant for variant (snake_case on the wire).
macro_rules! wire_enum {
    ($(#[$m:meta])* $name:ident from $dom:path { $($(#[$vm:meta])* $v:ident),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        #[allow(missing_docs)] // each variant is its domain twin's, documented there
        pub enum $name {
            $($(#[$vm])* $v),+
        }

        impl From<$dom> for $name {
            fn from(v: $dom) -> Self {
                use $dom as D;
                match v {
                    $(D::$v => $name::$v),+
                }
            }
        }
    };
}
pub(crate) use wire_enum;

wire_enum! {
    /// How a graph stores its vectors for the beam: `none` (f32), `sq8` (u8 codes) or
    /// `sq4` (4-bit codes), codes re-ranked on f32, or `rabitq` (1-bit codes of each node's
    /// neighbours in its block, exact distances of the expanded nodes).
    QuantizationOut from crate::params::Quantization { None, Sq8, Sq4, Rabitq }
}

/// An HNSW config as every response carries it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct ConfigOut {
    /// Candidate list size while building.
    pub ef_construction: u32,
    /// Candidate list size while searching.
    pub ef_search: u32,
    /// Links per node.
    pub m: u32,
    /// Build seed.
    pub seed: u64,
    /// Vector storage of the beam.
    pub quantization: QuantizationOut,
    /// Early termination of the beam: expansions without a better k-th result before it
    /// stops. Absent when off (the default).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 500)]
    pub patience: Option<u32>,
}

impl From<HnswConfig> for ConfigOut {
    fn from(c: HnswConfig) -> Self {
        ConfigOut {
            ef_construction: c.ef_construction,
            ef_search: c.ef_search,
            m: c.m,
            seed: c.seed,
            quantization: c.quantization.into(),
            patience: (c.patience > 0).then_some(c.patience),
        }
    }
}

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable snake_case code (`index_not_found`, `unauthorized`, `overloaded`, ...).
    pub code: String,
    /// For humans.
    pub message: String,
}

/// `GET /health`, `GET /ready`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    /// `ok` or `ready`.
    pub status: &'static str,
}

/// `?async=` of an autotune or an activation.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AsyncParams {
    /// Run as a job and answer 202 at once.
    #[serde(default, rename = "async")]
    #[param(rename = "async")]
    pub run_async: Option<bool>,
}
