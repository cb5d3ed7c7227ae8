//! The stored form of a frozen graph: versioned, checksummed, little-endian.
//!
//! Activation stores the graph it built, and a later activation (or a restart) of the same
//! vectors and config loads it instead of building again: loading is a read, a checksum and
//! a bounds check, a small fraction of a build. A graph that fails any check (magic,
//! version, checksum, sizes, a link out of range) or that does not match the vectors and
//! config asked for is never used.
//!
//! The build seconds are not part of it (they live in the activation record): the same
//! vectors, config and seed give the same bytes, whichever thread count built them. SQ8 / SQ4
//! codes are not stored either: they are a function of the vectors, recomputed on load.
//!
//! Layout (little-endian):
//! ```text
//! 0   magic b"VTGRAPH\x01"
//! 8   u32 format version (2)       12  u32 metric (0 cosine, 1 l2, 2 dot)
//! 16  u32 dims                     20  u32 m
//! 24  u64 n                        32  u32 max_level       36  u32 entry
//! 40  u32 ef_construction          44  u32 quantization (0 none, 1 sq8, 2 sq4, 3 rabitq)
//! 48  u64 seed
//! 56  u32 engine (0 native, 1 hnsw_rs)                     60  u32 0
//! 64  u64 len(layer0)   72  u64 len(upper_start)   80  u64 len(upper)
//! 88  u32 arrays: layer0, upper_start, upper
//! end u32 CRC32 of everything before it
//! ```
//! Version 1 (hnsw_rs graphs with their build seconds) is refused as `Format`: such a graph
//! is rebuilt once.

use std::time::Duration;

use bytes::Bytes;

use super::frozen::FrozenGraph;
use super::Graph;
use crate::distance::Metric;
use crate::params::{Engine, GraphId, HnswConfig, Quantization};
use crate::vectors::VectorSet;

const MAGIC: &[u8; 8] = b"VTGRAPH\x01";
const VERSION: u32 = 2;
const HEADER: usize = 88;

/// Why a stored graph is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GraphStoreError {
    /// Not a graph of a format this build reads.
    #[error("not a vectune graph (magic or version)")]
    Format,
    /// Damaged.
    #[error("graph checksum mismatch")]
    Checksum,
    /// Sizes or links out of range.
    #[error("graph structure is inconsistent: {0}")]
    Structure(&'static str),
    /// A sound graph, but for other vectors or another config.
    #[error("graph is for other vectors or another config")]
    Mismatch,
}

fn quantization_code(q: Quantization) -> u32 {
    match q {
        Quantization::None => 0,
        Quantization::Sq8 => 1,
        Quantization::Sq4 => 2,
        Quantization::Rabitq => 3,
    }
}

fn engine_code(e: Engine) -> u32 {
    match e {
        Engine::Native => 0,
        Engine::HnswRs => 1,
        Engine::NativeSq8 => 2,
    }
}

fn metric_code(m: Metric) -> u32 {
    match m {
        Metric::Cosine => 0,
        Metric::L2 => 1,
        Metric::Dot => 2,
    }
}

/// Encodes a graph (its vectors' dims are the codes' or the metric's business: the header
/// records them for the check on load).
pub fn encode(graph: &Graph) -> Bytes {
    let f = graph.frozen();
    let c = graph.config();
    let words = f.layer0.len() + f.upper_start.len() + f.upper.len();
    let mut out = Vec::with_capacity(HEADER + words * 4 + 4);
    out.extend_from_slice(MAGIC);
    for v in [
        VERSION,
        metric_code(graph.metric()),
        graph.dims() as u32,
        f.m as u32,
    ] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&(f.n as u64).to_le_bytes());
    for v in [
        f.max_level as u32,
        f.entry,
        c.ef_construction,
        quantization_code(c.quantization),
    ] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&c.seed.to_le_bytes());
    for v in [engine_code(graph.engine()), 0] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for len in [f.layer0.len(), f.upper_start.len(), f.upper.len()] {
        out.extend_from_slice(&(len as u64).to_le_bytes());
    }
    for arr in [&f.layer0, &f.upper_start, &f.upper] {
        for w in arr.iter() {
            out.extend_from_slice(&w.to_le_bytes());
        }
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Bytes::from(out)
}

/// Offset of the quantization code in the header.
const QUANTIZATION_AT: usize = 44;

/// A stored graph relabelled as its twin in quantization `q`: the same links under the
/// identity a config of `q` loads ([`decode`] checks the quantization; codes are never
/// stored), checksummed again. Why: a tuning run that stored a full build in one
/// quantization and found its twin faster keeps that graph for the winner's activation
/// without decoding the links or deriving codes just to write them back.
pub fn retag(b: &[u8], q: Quantization) -> Result<Bytes, GraphStoreError> {
    if b.len() < HEADER + 4 || &b[..8] != MAGIC || u32_at(b, 8) != VERSION {
        return Err(GraphStoreError::Format);
    }
    let body = b.len() - 4;
    if crc32fast::hash(&b[..body]) != u32_at(b, body) {
        return Err(GraphStoreError::Checksum);
    }
    let mut out = b[..body].to_vec();
    out[QUANTIZATION_AT..QUANTIZATION_AT + 4].copy_from_slice(&quantization_code(q).to_le_bytes());
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(Bytes::from(out))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn words(b: &[u8], from: usize, len: usize) -> Vec<u32> {
    b[from..from + len * 4]
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Decodes a stored graph and checks that it is sound and that it is the graph of the
/// first `n` rows of `set` (its dims and metric) with `config`'s graph identity under
/// `engine` ([`HnswConfig::graph_id`]: `ef_search` does not change a graph; the returned
/// graph carries `config`'s).
pub fn decode(
    b: &[u8],
    set: &VectorSet,
    n: usize,
    config: HnswConfig,
    engine: Engine,
) -> Result<Graph, GraphStoreError> {
    decode_as(b, set, n, config, config, engine)
}

/// [`decode`] of the graph stored under `stored`'s identity, served under `config`: a twin
/// quantization of it (the same links — `config` may differ from `stored` only in its
/// quantization and search knobs — with `config`'s codes derived), so a tuning run that
/// stored one quantization of a graph loads any other without a build.
pub fn decode_as(
    b: &[u8],
    set: &VectorSet,
    n: usize,
    stored_as: HnswConfig,
    config: HnswConfig,
    engine: Engine,
) -> Result<Graph, GraphStoreError> {
    if stored_as.links_id(engine) != config.links_id(engine) {
        return Err(GraphStoreError::Mismatch);
    }
    if b.len() < HEADER + 4 || &b[..8] != MAGIC || u32_at(b, 8) != VERSION {
        return Err(GraphStoreError::Format);
    }
    let body = b.len() - 4;
    if crc32fast::hash(&b[..body]) != u32_at(b, body) {
        return Err(GraphStoreError::Checksum);
    }
    let m = u32_at(b, 20) as usize;
    let quantization = match u32_at(b, QUANTIZATION_AT) {
        0 => Quantization::None,
        1 => Quantization::Sq8,
        2 => Quantization::Sq4,
        3 => Quantization::Rabitq,
        _ => return Err(GraphStoreError::Structure("unknown quantization")),
    };
    let stored_engine = match u32_at(b, 56) {
        0 => Engine::Native,
        1 => Engine::HnswRs,
        2 => Engine::NativeSq8,
        _ => return Err(GraphStoreError::Structure("unknown engine")),
    };
    let stored = GraphId {
        m: m as u32,
        ef_construction: u32_at(b, 40),
        seed: u64_at(b, 48),
        quantization,
        engine: stored_engine,
    };
    if u32_at(b, 12) != metric_code(set.metric())
        || u32_at(b, 16) as usize != set.dims()
        || u64_at(b, 24) != n as u64
        || n > set.len()
        || stored != stored_as.graph_id(engine)
    {
        return Err(GraphStoreError::Mismatch);
    }
    let max_level = u32_at(b, 32) as usize;
    let entry = u32_at(b, 36);
    let (l0, us, up) = (
        u64_at(b, 64) as usize,
        u64_at(b, 72) as usize,
        u64_at(b, 80) as usize,
    );
    let m0 = 2 * m;
    let total = l0
        .checked_add(us)
        .and_then(|x| x.checked_add(up))
        .and_then(|x| x.checked_mul(4));
    if total != Some(body - HEADER) {
        return Err(GraphStoreError::Structure("array lengths do not add up"));
    }
    if l0 != n * (1 + m0) || us != n || (n > 0 && entry as usize >= n) || max_level > 255 {
        return Err(GraphStoreError::Structure("sizes do not match the node count"));
    }
    let layer0 = words(b, HEADER, l0);
    let upper_start = words(b, HEADER + l0 * 4, us);
    let upper = words(b, HEADER + (l0 + us) * 4, up);
    for row in layer0.chunks_exact(1 + m0) {
        let count = row[0] as usize;
        if count > m0 || row[1..1 + count].iter().any(|&x| x as usize >= n) {
            return Err(GraphStoreError::Structure("a layer-0 link is out of range"));
        }
    }
    // upper blocks are whole level records of 1 + m words: a count, then m slots
    if up % (1 + m) != 0 {
        return Err(GraphStoreError::Structure("upper levels are not whole records"));
    }
    for rec in upper.chunks_exact(1 + m) {
        let count = rec[0] as usize;
        if count > m || rec[1..1 + count].iter().any(|&x| x as usize >= n) {
            return Err(GraphStoreError::Structure("an upper-layer link is out of range"));
        }
    }
    if upper_start
        .iter()
        .any(|&s| s != u32::MAX && (!(s as usize).is_multiple_of(1 + m) || s as usize >= up))
    {
        return Err(GraphStoreError::Structure("an upper block starts out of range"));
    }
    if n > 0 && max_level > 0 && upper_start[entry as usize] == u32::MAX {
        return Err(GraphStoreError::Structure("the entry point has no upper levels"));
    }
    let frozen = FrozenGraph {
        n,
        m,
        m0,
        max_level,
        entry,
        layer0,
        upper_start,
        upper,
    };
    Ok(Graph::from_layout(frozen, set, config, engine, Duration::ZERO))
}
