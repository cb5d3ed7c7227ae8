//! The HNSW configuration: the knobs vectune tunes, bounds enforced once at parse (also
//! when a stored config is read back, so a damaged record is an error, not a build with
//! out-of-bounds parameters), and the one rule of which fields identify a graph.

use serde::{Deserialize, Serialize};

/// Bounds of `ef_construction`.
pub const EF_CONSTRUCTION: (u32, u32) = (10, 400);
/// Bounds of `ef_search`.
pub const EF_SEARCH: (u32, u32) = (10, 200);
/// Bounds of `patience` (0 = off).
pub const PATIENCE: (u32, u32) = (0, 500);
/// Bounds of `m`. hnsw_rs calls `process::exit` above 256, so the bound is also a guard.
pub const M: (u32, u32) = (4, 64);
/// The bounds requests are checked against: the seed's ([`Bounds::SEED`], the contract's
/// defaults) unless the server raises them (`[tuning]` settings) for indexes that need more
/// (a hard 1M-vector set reaches .95 only past `ef_search` 200). Lower bounds never move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Bounds {
    /// Largest `ef_construction`.
    pub max_ef_construction: u32,
    /// Largest `ef_search`.
    pub max_ef_search: u32,
    /// Largest `m`.
    pub max_m: u32,
}

impl Bounds {
    /// The contract's bounds: every default and every acceptance script assumes them.
    pub const SEED: Bounds = Bounds {
        max_ef_construction: EF_CONSTRUCTION.1,
        max_ef_search: EF_SEARCH.1,
        max_m: M.1,
    };
    /// What a server may raise them to: `m` 128 keeps layer 0 (2·m links) within hnsw_rs's
    /// 256 and the frozen graph's fixed neighbour buffers; an `ef` of 4,096 is far past
    /// any recall gain on the sets measured (1M × 128 reaches .99 near 400). Stored configs
    /// are read back against these, so lowering a setting never makes a record unreadable.
    pub const CEILING: Bounds = Bounds {
        max_ef_construction: 4096,
        max_ef_search: 4096,
        max_m: 128,
    };

    /// Bounds raised to the given maxima, each between the seed's and the ceiling's.
    pub fn raised(max_ef_construction: u32, max_ef_search: u32, max_m: u32) -> Result<Bounds, ConfigError> {
        let within =
            |field, seed: u32, ceiling: u32, got: u32| bounded(field, (seed, ceiling), i64::from(got));
        Ok(Bounds {
            max_ef_construction: within(
                "max_ef_construction",
                Self::SEED.max_ef_construction,
                Self::CEILING.max_ef_construction,
                max_ef_construction,
            )?,
            max_ef_search: within(
                "max_ef_search",
                Self::SEED.max_ef_search,
                Self::CEILING.max_ef_search,
                max_ef_search,
            )?,
            max_m: within("max_m", Self::SEED.max_m, Self::CEILING.max_m, max_m)?,
        })
    }

    /// The `ef_construction` range.
    pub fn ef_construction(&self) -> (u32, u32) {
        (EF_CONSTRUCTION.0, self.max_ef_construction)
    }

    /// The `ef_search` range.
    pub fn ef_search(&self) -> (u32, u32) {
        (EF_SEARCH.0, self.max_ef_search)
    }

    /// The `m` range.
    pub fn m(&self) -> (u32, u32) {
        (M.0, self.max_m)
    }

    /// Whether any bound is above the seed's.
    pub fn is_raised(&self) -> bool {
        *self != Self::SEED
    }

    /// The short form reasons quote: `ef_search ≤ 200, ef_construction ≤ 400, m ≤ 64`.
    pub fn describe(&self) -> String {
        format!(
            "ef_search <= {}, ef_construction <= {}, m <= {}",
            self.max_ef_search, self.max_ef_construction, self.max_m
        )
    }
}

impl Default for Bounds {
    fn default() -> Bounds {
        Bounds::SEED
    }
}

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

/// How the graph's beam reads the vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Quantization {
    /// The f32 rows themselves.
    #[default]
    None,
    /// Per-dimension affine u8 codes (a quarter of the bytes per visited node); the beam's
    /// final candidates are re-ranked on the f32 rows, so reported distances stay exact.
    /// Costs `dims` bytes a vector beside the f32 rows, and a little recall at equal
    /// `ef_search` on data whose dimensions have long tails.
    Sq8,
    /// Per-dimension affine 4-bit codes, two dimensions to a byte (an eighth of the bytes
    /// of an f32 row per visited node), re-ranked on the f32 rows like `sq8`. Costs
    /// `dims / 2` bytes a vector; its coarser estimates cost some recall at equal
    /// `ef_search`, which a larger `ef_search` buys back more cheaply on wide vectors.
    Sq4,
    /// RaBitQ blocks (`hnsw::rabitq`): each node's layer-0 block holds a 1-bit code of
    /// every neighbour's offset from the node (after a seeded rotation) and two factors,
    /// scored 32 neighbours at a time by one table lookup; a node's exact distance is taken
    /// from the copy of its f32 row in the block when it is expanded, so results are exact
    /// without a re-rank. Costs about `4·dims + 2m·(dims/8 + 12)` bytes a vector (codes per
    /// edge, not per row): the fastest mode on data whose rows miss the cache, the largest
    /// in memory, coarse on narrow vectors.
    Rabitq,
}

impl Quantization {
    /// Every value, in the contract's order.
    pub const ALL: [Quantization; 4] = [
        Quantization::None,
        Quantization::Sq8,
        Quantization::Sq4,
        Quantization::Rabitq,
    ];

    /// The contract's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Quantization::None => "none",
            Quantization::Sq8 => "sq8",
            Quantization::Sq4 => "sq4",
            Quantization::Rabitq => "rabitq",
        }
    }

    /// The other quantizations: a config's twins over the same links (the tuner compares
    /// and derives one from another, the agent steps between them).
    pub fn twins(self) -> impl Iterator<Item = Quantization> {
        Quantization::ALL.into_iter().filter(move |&q| q != self)
    }

    /// Bits of codes a dimension holds beside the f32 row (0 for none): what a tie between
    /// quantizations goes by — within the noise, the one that holds less. RaBitQ holds one
    /// bit per dimension per edge, 32 at the default `m` of 16 (and factors besides).
    pub fn code_bits(self) -> u32 {
        match self {
            Quantization::None => 0,
            Quantization::Sq8 => 8,
            Quantization::Sq4 => 4,
            Quantization::Rabitq => 32,
        }
    }

    /// Whether two configs' exact work (distance evaluations per query) counts the same
    /// thing, so the cheaper count is the cheaper search: the f32 and SQ beams count one
    /// evaluation per visited neighbour (plus the re-rank), RaBitQ blocks every neighbour of
    /// every expanded node (scored 32 at a time), so a block's count is not comparable with
    /// theirs.
    pub fn work_comparable(self, other: Quantization) -> bool {
        (self == Quantization::Rabitq) == (other == Quantization::Rabitq)
    }

    /// The next value in the contract's order, wrapping: the agent's one-knob step.
    pub fn next(self) -> Quantization {
        let i = Quantization::ALL.iter().position(|&q| q == self).unwrap_or(0);
        Quantization::ALL[(i + 1) % Quantization::ALL.len()]
    }
}

/// Which builder makes graphs (a server setting, not a tuned knob).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Engine {
    /// vectune's own builder: deterministic on any thread count.
    #[default]
    #[serde(rename = "native")]
    Native,
    /// The hnsw_rs crate, kept as the reference (serial: reproducible, ~3× slower).
    #[serde(rename = "hnsw_rs")]
    HnswRs,
    /// vectune's own builder measuring on SQ8 codes of the rows instead of the rows (as
    /// glass builds): a quarter of the bytes per distance, so faster where the rows miss
    /// the cache, at the codes' small cost in graph quality. Deterministic like `native`;
    /// a different graph from it (its own stored graphs and cache entries).
    #[serde(rename = "native_sq8")]
    NativeSq8,
}

impl Engine {
    /// Every value.
    pub const ALL: [Engine; 3] = [Engine::Native, Engine::HnswRs, Engine::NativeSq8];

    /// The setting's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Native => "native",
            Engine::HnswRs => "hnsw_rs",
            Engine::NativeSq8 => "native_sq8",
        }
    }

    /// Parses `native` / `hnsw_rs` / `native_sq8`.
    pub fn parse(s: &str) -> Option<Engine> {
        match s.trim() {
            "native" => Some(Engine::Native),
            "hnsw_rs" => Some(Engine::HnswRs),
            "native_sq8" => Some(Engine::NativeSq8),
            _ => None,
        }
    }
}

/// What makes two configs the same graph: everything but `ef_search` and `patience`, plus
/// the engine.
/// Stored-graph keys, the stored-graph header check, a run's graph cache and autotune's
/// build grouping all compare this, so the rule lives here once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GraphId {
    /// Links per node.
    pub m: u32,
    /// Build beam width.
    pub ef_construction: u32,
    /// Seed of insertion order and levels.
    pub seed: u64,
    /// Codes beside the links.
    pub quantization: Quantization,
    /// The builder.
    pub engine: Engine,
}

/// An HNSW configuration, known to be within bounds (also when read back from storage).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawHnswConfig")]
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
    /// See [`Quantization`]; `none` unless asked for.
    pub quantization: Quantization,
    /// Early termination of a query's beam on layer 0: it stops once the `k`-th best key
    /// held has not improved for `patience` expansions in a row (0, the default: off, the
    /// beam runs until no candidate is left, as HNSW does). A search-time knob like
    /// `ef_search` (the same graph); with it a wide beam stops early on easy queries and
    /// runs on where the top k still changes. Left out of a config's JSON when off.
    #[serde(skip_serializing_if = "is_off")]
    pub patience: u32,
}

fn is_off(patience: &u32) -> bool {
    *patience == 0
}

/// The config as received, before its bounds are checked: the one raw form requests carry
/// (a trial's `config`, an autotune's `grid`), described as such in the OpenAPI spec.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RawHnswConfig {
    /// See [`HnswConfig::ef_construction`] (10..=400; a server's `tuning.max_ef_construction`
    /// may raise the upper bound).
    #[schema(minimum = 10, maximum = 400)]
    pub ef_construction: i64,
    /// See [`HnswConfig::ef_search`] (10..=200; `tuning.max_ef_search` may raise it).
    #[schema(minimum = 10, maximum = 200)]
    pub ef_search: i64,
    /// See [`HnswConfig::m`] (4..=64; `tuning.max_m` may raise it); default 16.
    #[serde(default)]
    #[schema(minimum = 4, maximum = 64)]
    pub m: Option<i64>,
    /// See [`HnswConfig::seed`]; default 42.
    #[serde(default)]
    pub seed: Option<u64>,
    /// See [`HnswConfig::quantization`]; default `none` (also for `null`).
    #[serde(default)]
    pub quantization: Option<Quantization>,
    /// See [`HnswConfig::patience`] (0..=500); default 0, off (also for `null`).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 500)]
    pub patience: Option<i64>,
}

// the OpenAPI bounds above are these, written out (a test keeps them equal)
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
        quantization: Quantization::None,
        patience: 0,
    };

    /// Checks every bound (the seed's).
    pub fn new(ef_construction: i64, ef_search: i64, m: i64, seed: u64) -> Result<HnswConfig, ConfigError> {
        HnswConfig::within(&Bounds::SEED, ef_construction, ef_search, m, seed)
    }

    /// Checks every bound against `bounds`.
    pub fn within(
        bounds: &Bounds,
        ef_construction: i64,
        ef_search: i64,
        m: i64,
        seed: u64,
    ) -> Result<HnswConfig, ConfigError> {
        Ok(HnswConfig {
            ef_construction: bounded("ef_construction", bounds.ef_construction(), ef_construction)?,
            ef_search: bounded("ef_search", bounds.ef_search(), ef_search)?,
            m: bounded("m", bounds.m(), m)?,
            seed,
            quantization: Quantization::None,
            patience: 0,
        })
    }

    /// Checks a raw config against the seed's bounds, filling the defaults.
    pub fn parse(raw: &RawHnswConfig) -> Result<HnswConfig, ConfigError> {
        HnswConfig::parse_within(raw, &Bounds::SEED)
    }

    /// Checks a raw config against `bounds` (the server's), filling the defaults.
    pub fn parse_within(raw: &RawHnswConfig, bounds: &Bounds) -> Result<HnswConfig, ConfigError> {
        HnswConfig::within(
            bounds,
            raw.ef_construction,
            raw.ef_search,
            raw.m.unwrap_or(DEFAULT_M as i64),
            raw.seed.unwrap_or(DEFAULT_SEED),
        )
        .map(|c| c.with_quantization(raw.quantization.unwrap_or_default()))
        .and_then(|c| c.with_patience(raw.patience.unwrap_or(0)))
    }

    /// The same graph searched with another `patience` (bounds checked).
    pub fn with_patience(self, patience: i64) -> Result<HnswConfig, ConfigError> {
        Ok(HnswConfig {
            patience: bounded("patience", PATIENCE, patience)?,
            ..self
        })
    }

    /// The same graph searched with another `ef_search` (the seed's bounds checked).
    pub fn with_ef_search(self, ef_search: i64) -> Result<HnswConfig, ConfigError> {
        self.with_ef_search_within(ef_search, &Bounds::SEED)
    }

    /// The same graph searched with another `ef_search`, checked against `bounds`.
    pub fn with_ef_search_within(self, ef_search: i64, bounds: &Bounds) -> Result<HnswConfig, ConfigError> {
        Ok(HnswConfig {
            ef_search: bounded("ef_search", bounds.ef_search(), ef_search)?,
            ..self
        })
    }

    /// A short human form for reasons and logs: `m16/efC80/ef30/s42/none`, and `/p20`
    /// after it when `patience` is on.
    pub fn describe(&self) -> String {
        let patience = match self.patience {
            0 => String::new(),
            p => format!("/p{p}"),
        };
        format!(
            "m{}/efC{}/ef{}/s{}/{}{patience}",
            self.m,
            self.ef_construction,
            self.ef_search,
            self.seed,
            self.quantization.as_str()
        )
    }

    /// The same knobs with another quantization.
    pub fn with_quantization(self, quantization: Quantization) -> HnswConfig {
        HnswConfig { quantization, ..self }
    }

    /// The links this config's graph has, whatever its quantization: graphs that share them
    /// differ only by codes, which are derived from the vectors without a build.
    pub fn links_id(&self, engine: Engine) -> GraphId {
        GraphId {
            quantization: Quantization::None,
            ..self.graph_id(engine)
        }
    }

    /// The graph this config needs when built by `engine` (everything but the search-time
    /// knobs, `ef_search` and `patience`).
    pub fn graph_id(&self, engine: Engine) -> GraphId {
        GraphId {
            m: self.m,
            ef_construction: self.ef_construction,
            seed: self.seed,
            quantization: self.quantization,
            engine,
        }
    }
}

/// Stored configs are read back against [`Bounds::CEILING`]: a server that raised its bounds
/// wrote them, and one that lowered them since must still read them (requests are checked
/// against the server's bounds with [`HnswConfig::parse_within`]).
impl TryFrom<RawHnswConfig> for HnswConfig {
    type Error = ConfigError;
    fn try_from(raw: RawHnswConfig) -> Result<HnswConfig, ConfigError> {
        HnswConfig::parse_within(&raw, &Bounds::CEILING)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `patience` is optional (0, off), bounded, left out of a config's JSON when off (so
    /// every stored config reads back the same), a search-time knob (the same graph), and
    /// named in the short form when on.
    #[test]
    fn patience_is_an_optional_search_time_knob() {
        let raw: RawHnswConfig =
            serde_json::from_str(r#"{"ef_construction": 80, "ef_search": 30, "patience": 20}"#).unwrap();
        let c = HnswConfig::parse(&raw).unwrap();
        assert_eq!(c.patience, 20);
        assert_eq!(
            c.graph_id(Engine::Native),
            HnswConfig::DEFAULT.graph_id(Engine::Native)
        );
        assert_eq!(c.describe(), "m16/efC80/ef30/s42/none/p20");
        assert_eq!(HnswConfig::DEFAULT.describe(), "m16/efC80/ef30/s42/none");
        let json = serde_json::to_value(c).unwrap();
        assert_eq!(json["patience"], 20);
        assert_eq!(serde_json::from_value::<HnswConfig>(json).unwrap(), c);
        let off = serde_json::to_value(HnswConfig::DEFAULT).unwrap();
        assert!(off.get("patience").is_none(), "{off}");
        for bad in [-1, 501] {
            let e = HnswConfig::DEFAULT.with_patience(bad).unwrap_err();
            assert_eq!((e.field, e.got), ("patience", bad));
        }
        assert_eq!(HnswConfig::DEFAULT.with_patience(500).unwrap().patience, 500);
        let null: RawHnswConfig =
            serde_json::from_str(r#"{"ef_construction": 80, "ef_search": 30, "patience": null}"#).unwrap();
        assert_eq!(HnswConfig::parse(&null).unwrap(), HnswConfig::DEFAULT);
    }

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

    #[test]
    fn quantization_parses_and_defaults() {
        let c: HnswConfig =
            serde_json::from_str(r#"{"ef_construction": 80, "ef_search": 30, "m": 16, "seed": 42}"#).unwrap();
        assert_eq!(c, HnswConfig::DEFAULT);
        let c: HnswConfig =
            serde_json::from_str(r#"{"ef_construction": 80, "ef_search": 30, "quantization": "sq8"}"#)
                .unwrap();
        assert_eq!(c.quantization, Quantization::Sq8);
        let c: HnswConfig =
            serde_json::from_str(r#"{"ef_construction": 80, "ef_search": 30, "quantization": null}"#)
                .unwrap();
        assert_eq!(c.quantization, Quantization::None);
        for bad in [r#""pq4""#, r#""""#, "8", r#""SQ8""#] {
            let text = format!(r#"{{"ef_construction": 80, "ef_search": 30, "quantization": {bad}}}"#);
            assert!(serde_json::from_str::<HnswConfig>(&text).is_err(), "{bad}");
        }
        let json = serde_json::to_value(HnswConfig::DEFAULT.with_quantization(Quantization::Sq8)).unwrap();
        assert_eq!(json["quantization"], "sq8");
        assert_eq!(json["m"], 16);
    }

    /// A stored config is checked as it is read: a damaged record is an error.
    #[test]
    fn stored_configs_are_validated_when_read() {
        let back: HnswConfig =
            serde_json::from_value(serde_json::to_value(HnswConfig::DEFAULT).unwrap()).unwrap();
        assert_eq!(back, HnswConfig::DEFAULT);
        let damaged =
            r#"{"ef_construction": 80, "ef_search": 30, "m": 100000, "seed": 42, "quantization": "none"}"#;
        let e = serde_json::from_str::<HnswConfig>(damaged)
            .unwrap_err()
            .to_string();
        assert!(e.contains("m must be in 4..=128"), "{e}");
        // a config a raised server stored reads back anywhere
        let raised = r#"{"ef_construction": 800, "ef_search": 600, "m": 96}"#;
        let c = serde_json::from_str::<HnswConfig>(raised).unwrap();
        assert_eq!((c.ef_construction, c.ef_search, c.m), (800, 600, 96));
        assert!(serde_json::from_str::<HnswConfig>(r#"{"ef_construction": 0, "ef_search": 30}"#).is_err());
    }

    #[test]
    fn only_blocks_count_their_work_apart() {
        use Quantization as Q;
        for a in Q::ALL {
            for b in Q::ALL {
                let apart = (a == Q::Rabitq) != (b == Q::Rabitq);
                assert_eq!(a.work_comparable(b), !apart, "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn the_links_identity_ignores_the_quantization_too() {
        let a = HnswConfig::DEFAULT;
        for q in Quantization::ALL {
            assert_eq!(
                a.with_quantization(q).links_id(Engine::Native),
                a.links_id(Engine::Native)
            );
        }
        assert_ne!(
            HnswConfig { m: 8, ..a }.links_id(Engine::Native),
            a.links_id(Engine::Native)
        );
        assert_ne!(a.links_id(Engine::HnswRs), a.links_id(Engine::Native));
    }

    #[test]
    fn graph_identity_ignores_only_ef_search() {
        let a = HnswConfig::DEFAULT;
        let id = a.graph_id(Engine::Native);
        assert_eq!(HnswConfig { ef_search: 99, ..a }.graph_id(Engine::Native), id);
        assert_ne!(HnswConfig { m: 8, ..a }.graph_id(Engine::Native), id);
        assert_ne!(
            HnswConfig {
                ef_construction: 81,
                ..a
            }
            .graph_id(Engine::Native),
            id
        );
        assert_ne!(HnswConfig { seed: 1, ..a }.graph_id(Engine::Native), id);
        assert_ne!(
            a.with_quantization(Quantization::Sq8).graph_id(Engine::Native),
            id
        );
        assert_ne!(a.graph_id(Engine::HnswRs), id);
    }

    /// Requests are checked against the server's bounds; the seed's are the default, a
    /// setting may raise each between the seed's and the ceiling, never lower.
    #[test]
    fn bounds_are_the_servers_between_the_seed_and_the_ceiling() {
        let raw = |ec: i64, es: i64, m: i64| RawHnswConfig {
            ef_construction: ec,
            ef_search: es,
            m: Some(m),
            seed: None,
            quantization: None,
            patience: None,
        };
        let wide = Bounds::raised(1000, 800, 96).unwrap();
        assert!(wide.is_raised() && !Bounds::SEED.is_raised());
        assert_eq!(Bounds::default(), Bounds::SEED);
        let big = raw(1000, 800, 96);
        assert_eq!(HnswConfig::parse(&big).unwrap_err().field, "ef_construction");
        let c = HnswConfig::parse_within(&big, &wide).unwrap();
        assert_eq!((c.ef_construction, c.ef_search, c.m), (1000, 800, 96));
        let e = HnswConfig::parse_within(&raw(80, 801, 16), &wide).unwrap_err();
        assert_eq!((e.field, e.min, e.max, e.got), ("ef_search", 10, 800, 801));
        assert_eq!(
            HnswConfig::parse_within(&raw(80, 30, 97), &wide)
                .unwrap_err()
                .field,
            "m"
        );
        assert_eq!(
            HnswConfig::parse_within(&raw(9, 30, 16), &wide)
                .unwrap_err()
                .field,
            "ef_construction"
        );
        assert_eq!(HnswConfig::DEFAULT.with_ef_search(201).unwrap_err().max, 200);
        assert_eq!(
            HnswConfig::DEFAULT
                .with_ef_search_within(800, &wide)
                .unwrap()
                .ef_search,
            800
        );
        // the seed's and the ceiling's bounds are accepted; below the seed or past the ceiling not
        assert_eq!(Bounds::raised(400, 200, 64).unwrap(), Bounds::SEED);
        assert_eq!(Bounds::raised(4096, 4096, 128).unwrap(), Bounds::CEILING);
        assert_eq!(
            Bounds::raised(399, 200, 64).unwrap_err().field,
            "max_ef_construction"
        );
        assert_eq!(Bounds::raised(400, 4097, 64).unwrap_err().field, "max_ef_search");
        assert_eq!(Bounds::raised(400, 200, 129).unwrap_err().field, "max_m");
        assert_eq!(
            wide.describe(),
            "ef_search <= 800, ef_construction <= 1000, m <= 96"
        );
    }

    proptest! {
        #[test]
        fn parse_accepts_exactly_the_bounds(ec in -10i64..500, es in -10i64..300, m in -10i64..100) {
            let ok = (10..=400).contains(&ec) && (10..=200).contains(&es) && (4..=64).contains(&m);
            prop_assert_eq!(HnswConfig::new(ec, es, m, 1).is_ok(), ok);
        }
    }
}
