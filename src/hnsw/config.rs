//! The HNSW configuration: the four knobs vectune tunes, bounds enforced once at parse.

use serde::{Deserialize, Serialize};

/// Bounds of `ef_construction`.
pub const EF_CONSTRUCTION: (u32, u32) = (10, 400);
/// Bounds of `ef_search`.
pub const EF_SEARCH: (u32, u32) = (10, 200);
/// Bounds of `m`. hnsw_rs calls `process::exit` above 256, so the bound is also a guard.
pub const M: (u32, u32) = (4, 64);
/// `m` when none is given.
pub const DEFAULT_M: u32 = 16;
/// `seed` when none is given.
pub const DEFAULT_SEED: u64 = 42;

/// A config field out of bounds.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{field} must be in {min}..={max}, got {got}")]
pub struct ConfigError {
    /// Which field.
    pub field: &'static str,
    /// Lower bound.
    pub min: u32,
    /// Upper bound.
    pub max: u32,
    /// The value given.
    pub got: i64,
}

/// An HNSW configuration, known to be within bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HnswConfig {
    /// Candidate list size while inserting. Raising it builds a better-connected graph
    /// (higher recall at the same `ef_search`) at roughly linear extra build time; it costs
    /// nothing at search time.
    pub ef_construction: u32,
    /// Candidate list size while searching (at least `k` is used). Raising it buys recall
    /// with latency, roughly linearly; it does not change the graph, so sweeping it needs
    /// no rebuild.
    pub ef_search: u32,
    /// Links per node (layer 0 keeps up to 2·m). Raising it improves recall on hard,
    /// high-dimensional data and costs memory (≈ 8·m bytes a node) and build time.
    pub m: u32,
    /// Seed of the insertion order: same vectors + config + seed give the same graph.
    pub seed: u64,
}

/// The config as received, before its bounds are checked.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawHnswConfig {
    /// See [`HnswConfig::ef_construction`].
    pub ef_construction: i64,
    /// See [`HnswConfig::ef_search`].
    pub ef_search: i64,
    /// See [`HnswConfig::m`]; default 16.
    #[serde(default)]
    pub m: Option<i64>,
    /// See [`HnswConfig::seed`]; default 42.
    #[serde(default)]
    pub seed: Option<u64>,
}

fn bounded(field: &'static str, (min, max): (u32, u32), got: i64) -> Result<u32, ConfigError> {
    if (min as i64..=max as i64).contains(&got) {
        Ok(got as u32)
    } else {
        Err(ConfigError { field, min, max, got })
    }
}

impl HnswConfig {
    /// The config activation uses when nothing is promoted.
    pub const DEFAULT: HnswConfig = HnswConfig {
        ef_construction: 80,
        ef_search: 30,
        m: DEFAULT_M,
        seed: DEFAULT_SEED,
    };

    /// Checks every bound.
    pub fn new(ef_construction: i64, ef_search: i64, m: i64, seed: u64) -> Result<HnswConfig, ConfigError> {
        Ok(HnswConfig {
            ef_construction: bounded("ef_construction", EF_CONSTRUCTION, ef_construction)?,
            ef_search: bounded("ef_search", EF_SEARCH, ef_search)?,
            m: bounded("m", M, m)?,
            seed,
        })
    }

    /// Checks a raw config, filling the defaults.
    pub fn parse(raw: &RawHnswConfig) -> Result<HnswConfig, ConfigError> {
        HnswConfig::new(
            raw.ef_construction,
            raw.ef_search,
            raw.m.unwrap_or(DEFAULT_M as i64),
            raw.seed.unwrap_or(DEFAULT_SEED),
        )
    }

    /// The same graph searched with another `ef_search` (bounds checked).
    pub fn with_ef_search(self, ef_search: i64) -> Result<HnswConfig, ConfigError> {
        HnswConfig::new(self.ef_construction as i64, ef_search, self.m as i64, self.seed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn defaults_fill_in() {
        let raw: RawHnswConfig = serde_json::from_str(r#"{"ef_construction": 80, "ef_search": 30}"#).unwrap();
        assert_eq!(HnswConfig::parse(&raw).unwrap(), HnswConfig::DEFAULT);
        assert!(
            serde_json::from_str::<RawHnswConfig>(r#"{"ef_construction": 80, "ef_search": 30, "x": 1}"#)
                .is_err()
        );
    }

    #[test]
    fn bounds_are_inclusive() {
        assert!(HnswConfig::new(10, 10, 4, 0).is_ok());
        assert!(HnswConfig::new(400, 200, 64, 0).is_ok());
        assert_eq!(HnswConfig::new(9, 10, 4, 0).unwrap_err().field, "ef_construction");
        assert_eq!(HnswConfig::new(10, 201, 4, 0).unwrap_err().field, "ef_search");
        assert_eq!(HnswConfig::new(10, 10, 65, 0).unwrap_err().field, "m");
        assert_eq!(HnswConfig::new(5000, 30, 16, 0).unwrap_err().got, 5000);
    }

    proptest! {
        #[test]
        fn parse_accepts_exactly_the_bounds(ec in -10i64..500, es in -10i64..300, m in -10i64..100) {
            let ok = (10..=400).contains(&ec) && (10..=200).contains(&es) && (4..=64).contains(&m);
            prop_assert_eq!(HnswConfig::new(ec, es, m, 1).is_ok(), ok);
        }
    }
}
