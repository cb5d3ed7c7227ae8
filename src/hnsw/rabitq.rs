//! RaBitQ blocks: each node's layer-0 neighbours as 1-bit RaBitQ codes of their offsets
//! from the node, stored in one block per node and scored 32 at a time by a table lookup
//! ([`Kernel::scan32`]).
//!
//! Why: on f32 or SQ rows an expansion reads each unvisited neighbour's row from wherever it
//! lies (one random read per neighbour); here it reads the node's block — the codes of all
//! its neighbours in one sequential run — and one SIMD pass scores them all. Only the node
//! being expanded is measured exactly (its f32 row, prefetched while the previous block is
//! scored) — unless RaBitQ's error bound shows it cannot enter the top k ([`Rabitq::beam`])
//! — and the results hold exact keys only, so nothing is re-ranked at the end. This
//! is SymphonyQG's layout (Gao et al., SIGMOD 2025) with RaBitQ's estimator (Gao & Long,
//! SIGMOD 2024).
//!
//! The code of neighbour `v` in node `u`'s block quantizes the offset `r = R(v - u)` after a
//! seeded rotation `R`: one bit a dimension, its sign. With `ō = sign(r)/√P` (P the padded
//! width) RaBitQ's estimate of `⟨y, r⟩` for any `y` is `F·⟨ō, Ry⟩` with
//! `F = |r| / ⟨ō, r/|r|⟩`, unbiased, with an error of `O(|r|·|y|/√P)`. The query's offset
//! from the node, `y = q - u`, is what makes the error small (neighbours are near the node
//! and the beam is near the query); and since `⟨ō, R(q - u)⟩ = ⟨ō, Rq⟩ - ⟨ō, Ru⟩`, the
//! second term is a constant of the edge, so one table per query ([`QueryLut`], from `Rq`)
//! serves every block: no per-expansion table. A neighbour's key then is
//! `key(u) + B - A·⟨ō, Rq⟩` with two floats per edge (`A`, `B`, below) and `key(u)` exact.
//!
//! The rotation ([`Rotation`]) is random signs and a fast Hadamard transform on chunks of a
//! power of two: orthogonal, so distances are unchanged, and O(P log P) a query.
//!
//! Block of a node, one 64-byte-aligned run: its f32 row; then `groups = ceil(m0 / 32)`
//! groups of codes — group `g`, nibble group `s` (dimensions `4s..4s+4`, bit `t` = dimension
//! `4s + t`) is 16 bytes at `16·(g·nsub + s)`, byte `j` = code of neighbour `32g + j` | code
//! of `32g + 16 + j` << 4; then `A[32]`, `B[32]` per group; then the neighbour count and ids.
//! Memory: about `4·dims + m0·(P/8 + 12)` bytes a node, each part rounded up to a line.
//!
//! Measured (BENCHMARKS.md): on 100k × 128 it serves 1.45–2× faster than SQ4 at every recall
//! (rows and SQ codes miss the cache there; a block is one sequential read); on pydocs
//! (10k × 384, everything cached) SQ4 is faster — 1-bit estimates at 384 dimensions need a
//! wider beam than 4-bit ones, and a block of 32 codes is read whether or not the
//! neighbours were visited.

use super::frozen::{prefetch_lines, Beam, Cand, Patience, Watch, NONE};
use crate::kernels::{Kernel, SCAN_GROUP};
use crate::rng::SplitMix64;

/// Widest Hadamard chunk.
const MAX_CHUNK: usize = 256;

/// A seeded orthogonal map of `dims` into `padded` dimensions (a multiple of 64): random
/// signs, then a normalised Hadamard transform on each chunk of a power of two.
///
/// Why this one: RaBitQ's error bound assumes a uniformly random rotation, so that no
/// dimension carries much more of an offset than another (a sign bit is a poor code of a
/// vector whose energy sits in a few dimensions). Signs and a Hadamard spread every
/// dimension over its whole chunk at O(P log P) a query — 0.3 µs at 384 dimensions where a
/// dense matrix costs ~20 µs, more than a search. Measured on pydocs (384-d) and the
/// synthetic 100k × 128 set: three rounds with permutations across chunks (closer to a
/// uniform rotation) find the same recall at every `ef_search` as one and cost ~3 µs a query
/// more at 384 dimensions, so one round it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Rotation {
    dims: usize,
    padded: usize,
    chunk: usize,
    /// `padded` values ±1/√chunk (the Hadamard's normalisation folded in).
    signs: Vec<f32>,
}

impl Rotation {
    /// The rotation of `seed` for vectors of `dims`.
    pub fn new(dims: usize, seed: u64) -> Rotation {
        let padded = dims.div_ceil(64).max(1) * 64;
        let mut chunk = 64;
        while chunk * 2 <= MAX_CHUNK && padded.is_multiple_of(chunk * 2) {
            chunk *= 2;
        }
        let mut rng = SplitMix64::new(seed ^ 0x5241_4249_5451_0001);
        let scale = 1.0 / (chunk as f32).sqrt();
        let signs = (0..padded)
            .map(|_| if rng.next_u64() & 1 == 0 { scale } else { -scale })
            .collect();
        Rotation {
            dims,
            padded,
            chunk,
            signs,
        }
    }

    /// Width of a rotated vector.
    pub fn padded(&self) -> usize {
        self.padded
    }

    /// `R x` into `out` (resized to `padded`).
    pub fn apply(&self, x: &[f32], out: &mut Vec<f32>) {
        out.clear();
        out.extend(x.iter().take(self.dims).zip(&self.signs).map(|(v, s)| v * s));
        out.resize(self.padded, 0.0);
        for c in out.chunks_exact_mut(self.chunk) {
            hadamard(c);
        }
    }
}

/// The unnormalised fast Walsh–Hadamard transform of a power-of-two slice, in place.
#[inline]
fn hadamard(x: &mut [f32]) {
    let n = x.len();
    let mut h = 1;
    while h < n {
        for pair in x.chunks_exact_mut(2 * h) {
            let (a, b) = pair.split_at_mut(h);
            for (u, v) in a.iter_mut().zip(b.iter_mut()) {
                let (s, d) = (*u + *v, *u - *v);
                *u = s;
                *v = d;
            }
        }
        h *= 2;
    }
}

/// One cache line of a block: the blocks' storage, so every block starts 64-byte aligned.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C, align(64))]
struct Line([u8; 64]);

/// Where the parts of a node's block lie, in bytes from its start (each a multiple of 64).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Offsets {
    /// The codes, after the f32 row.
    codes: usize,
    /// `A[32]`, `B[32]` per group, after the codes.
    factors: usize,
    /// The neighbour count, then the neighbour ids, after the factors.
    ids: usize,
    /// Lines a block.
    lines: usize,
}

/// The rotation and every node's layer-0 block: its f32 row, the codes and factors of its
/// neighbours and their ids, one contiguous run (SymphonyQG's row), so an expansion is one
/// sequential read the hardware prefetcher follows.
#[derive(Debug, Clone, PartialEq)]
pub struct Rabitq {
    rot: Rotation,
    dims: usize,
    /// Nibble groups a code: `padded / 4`.
    nsub: usize,
    /// Groups of [`SCAN_GROUP`] neighbours a block.
    groups: usize,
    at: Offsets,
    blocks: Vec<Line>,
    /// The f32 rows of the nodes above layer 0, together (a descent reads only those: at
    /// m 16 one node in 16, 3 MB of the 51 MB of 100k × 128, so they stay cached where the
    /// rows scattered over the whole set did not).
    upper_rows: Vec<f32>,
    /// Each node's row in `upper_rows`, [`NONE`] for a node on layer 0 only.
    upper_of: Vec<u32>,
    /// The estimator's error bound a unit of `A·|q - u|` ([`Rabitq::beam`]):
    /// `ε₀ · max √(1 - ⟨ō, r̂⟩²) / √(P - 1)` over every edge.
    kappa: f32,
    /// Keys are squared l2 distances (else negated inner products).
    l2: bool,
    /// The largest `|u|²` (1 for cosine's unit rows): `|q - u|² ≤ |q|² + max|u|² + 2d` for
    /// an inner-product key `d = -⟨q, u⟩`.
    max_norm2: f32,
    /// Whether the beam skips the exact key of a node that cannot enter the top k (always,
    /// but for tests comparing it with measuring every node).
    skip_exact: bool,
}

/// RaBitQ's confidence parameter ε₀ (Gao & Long 2024 use 1.9: the estimate of `⟨ō, ŷ⟩` lies
/// within `ε₀/√(P - 1)` of its mean but for a probability that falls like `exp(-ε₀²·c)`).
const EPS0: f32 = 1.9;

/// A query's table, reused across searches.
#[derive(Debug, Default, Clone)]
pub struct QueryLut {
    lut: Vec<u8>,
    rotated: Vec<f32>,
    sums: Vec<f32>,
    /// `⟨ō, Rq⟩ ≈ s0 + s1 · scan`.
    s0: f32,
    s1: f32,
    /// `|q|²`.
    norm2: f32,
    /// The table's rounding error in `⟨ō, Rq⟩` at the estimator's confidence:
    /// `ε₀ · s1 · √(nsub / 12)` (each of `nsub` entries rounded, uniform within ±½).
    rho: f32,
}

impl Rabitq {
    /// Node `node`'s f32 row if it lies above layer 0 (the descent's rows).
    #[inline(always)]
    pub(crate) fn upper_row(&self, node: u32) -> Option<&[f32]> {
        let r = *self.upper_of.get(node as usize)? as usize;
        self.upper_rows.get(r * self.dims..(r + 1) * self.dims)
    }

    /// Node `node`'s block (empty past the end).
    #[inline(always)]
    fn block(&self, node: u32) -> &[u8] {
        let at = node as usize * self.at.lines;
        lines(self.blocks.get(at..at + self.at.lines).unwrap_or(&[]))
    }

    /// Bytes of one block.
    pub fn block_bytes(&self) -> usize {
        self.at.lines * 64
    }

    /// Bytes held: the blocks (each with a copy of its f32 row), the upper nodes' rows and
    /// the rotation.
    pub fn memory_bytes(&self) -> usize {
        self.blocks.len() * 64 + (self.upper_rows.len() + self.upper_of.len() + self.rot.signs.len()) * 4
    }

    /// The query's table: `Rq` cut into nibble groups, each group's 16 subset sums shifted
    /// to start at 0 and quantised with one scale so the sum over every group fits the
    /// kernel's u16.
    pub fn prepare(&self, q: &[f32], out: &mut QueryLut) {
        let QueryLut {
            lut,
            rotated,
            sums,
            s0,
            s1,
            norm2,
            rho,
        } = out;
        self.rot.apply(q, rotated);
        let nsub = self.nsub;
        sums.clear();
        sums.resize(nsub * 16, 0.0);
        let (mut bias, mut span, mut sum) = (0f32, 0f32, 0f32);
        for (y, t) in rotated.chunks_exact(4).zip(sums.chunks_exact_mut(16)) {
            for b in 1..16 {
                let low = b & (b - 1);
                t[b] = t[low] + y[(b ^ low).trailing_zeros() as usize];
            }
            let lo: f32 = y.iter().map(|v| v.min(0.0)).sum();
            let hi: f32 = y.iter().map(|v| v.max(0.0)).sum();
            t.iter_mut().for_each(|v| *v -= lo);
            bias += lo;
            span = span.max(hi - lo);
            sum += y.iter().sum::<f32>();
        }
        let top = (u16::MAX as usize / nsub.max(1)).min(255) as f32;
        let delta = if span > 0.0 { span / top } else { 1.0 };
        let inv = 1.0 / delta;
        lut.clear();
        lut.extend(sums.iter().map(|v| (v * inv + 0.5).min(top) as u8));
        let root = (self.rot.padded as f32).sqrt();
        *s0 = (2.0 * bias - sum) / root;
        *s1 = 2.0 * delta / root;
        *norm2 = rotated.iter().map(|v| v * v).sum();
        *rho = EPS0 * *s1 * (nsub as f32 / 12.0).sqrt();
    }

    /// The estimated keys of group `g` of a block's neighbours into `keys`, from the key
    /// `du` of the block's node: `du + B - A·⟨ō, Rq⟩` with `⟨ō, Rq⟩` from the query's
    /// table (one fast-scan of the group's codes); and each key's error bound into `errs`:
    /// `du_err + A·unit` (`du_err` that of `du`, 0 when exact; `unit` the bound a unit of
    /// `A`, [`Rabitq::beam`]).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn score_group<K: Kernel>(
        &self,
        kernel: K,
        lut: &QueryLut,
        block: &[u8],
        g: usize,
        (du, du_err, unit): (f32, f32, f32),
        est: &mut [u16; SCAN_GROUP],
        keys: &mut [f32; SCAN_GROUP],
        errs: &mut [f32; SCAN_GROUP],
    ) {
        let c = self.at.codes + g * self.nsub * 16;
        kernel.scan32(&block[c..c + self.nsub * 16], &lut.lut, est);
        let f = self.at.factors + g * 2 * SCAN_GROUP * 4;
        let ab = f32s(&block[f..f + 2 * SCAN_GROUP * 4]);
        let (a, b) = ab.split_at(SCAN_GROUP);
        for j in 0..SCAN_GROUP {
            keys[j] = du + b[j] - a[j] * (lut.s0 + lut.s1 * est[j] as f32);
            errs[j] = du_err + a[j] * unit;
        }
    }

    /// The bound a unit of `A` on a neighbour's key error, around a node of key
    /// `du ± du_err`: `κ·|q - u| + ρ`, with `|q - u|` at its largest within the bound.
    #[inline(always)]
    fn unit_error(&self, lut: &QueryLut, du: f32, du_err: f32) -> f32 {
        let d = du + du_err;
        let y2 = if self.l2 {
            d
        } else {
            lut.norm2 + self.max_norm2 + 2.0 * d
        };
        self.kappa * y2.max(0.0).sqrt() + lut.rho
    }

    /// The estimated keys of node `node`'s neighbours and their error bounds, in link
    /// order, to `each` (tests).
    #[cfg(test)]
    pub(crate) fn score<K: Kernel>(
        &self,
        kernel: K,
        lut: &QueryLut,
        node: u32,
        du: f32,
        mut each: impl FnMut(u32, f32, f32),
    ) {
        let block = self.block(node);
        let at = self.at.ids;
        let count = u32s(&block[at..at + 4])[0] as usize;
        let ids = u32s(&block[at + 4..at + 4 + 4 * count]);
        let (mut est, mut keys, mut errs) = ([0u16; SCAN_GROUP], [0f32; SCAN_GROUP], [0f32; SCAN_GROUP]);
        let unit = self.unit_error(lut, du, 0.0);
        for (g, group) in ids.chunks(SCAN_GROUP).enumerate() {
            self.score_group(
                kernel,
                lut,
                block,
                g,
                (du, 0.0, unit),
                &mut est,
                &mut keys,
                &mut errs,
            );
            for ((&nb, &key), &err) in group.iter().zip(&keys).zip(&errs) {
                each(nb, key, err);
            }
        }
    }

    /// The beam on layer 0 from `(ep, d_ep)` (an exact key), run on estimated keys: a
    /// neighbour enters the pool on its estimate, and a node popped is measured exactly
    /// (`exact` of the f32 row in its block) before its neighbours are scored from that
    /// exact key. `found` gets the exact keys of the expanded nodes that may be among the
    /// `k` nearest (unsorted).
    ///
    /// The error bound: every estimate carries a bound on its error (RaBitQ's, at
    /// confidence [`EPS0`], plus the table's rounding). A node popped whose estimate minus
    /// its bound already exceeds the k-th best exact key met cannot enter the top k, so its
    /// exact key is skipped — its row is not read, nor prefetched — and its neighbours are
    /// scored from its estimate, their bounds widened by its own. Late in a search most
    /// expansions are such nodes (the beam holds `ef` ≥ `k`).
    ///
    /// Measured (BENCHMARKS.md, "Engine III, fifth step"): 1-bit estimates are wide, so the
    /// bound lets through a fraction of the nodes an exact oracle would skip (1–30 % of the
    /// expansions at ef 20–80 against 26–63 % with est > k-th); search time is level on
    /// 100k and 1M × 128 and up to 4 % lower on pydocs (384-d, where a row is 24 lines of a
    /// block), recall@10 within −.0009. Kept because a row not read is the one saving that
    /// grows with the width of the embeddings.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub(crate) fn beam<K: Kernel, E: Fn(&[f32]) -> f32>(
        &self,
        kernel: K,
        lut: &QueryLut,
        (ep, d_ep): (u32, f32),
        (k, ef, patience): (usize, usize, Patience),
        s: &mut Beam,
        found: &mut Vec<Cand>,
        exact: &E,
        evals: &mut u64,
    ) {
        let n = self.blocks.len() / self.at.lines.max(1);
        s.begin(n, ef);
        let k = k.max(1);
        let mut best = std::mem::take(&mut s.exact_best);
        let mut watch = Watch::new(patience);
        found.clear();
        s.mark(ep);
        s.bounded.insert_with(Cand(d_ep, ep), 0.0);
        let at = self.at;
        let bytes = at.lines * 64;
        let mut est = [0u16; SCAN_GROUP];
        let mut keys = [0f32; SCAN_GROUP];
        let mut errs = [0f32; SCAN_GROUP];
        let mut first = Some(d_ep);
        let mut fetched = u32::MAX;
        let skip = self.skip_exact;
        // the k-th best exact key met, +∞ until k are met
        let kth = |best: &Vec<f32>| best.get(k - 1).copied().unwrap_or(f32::INFINITY);
        let fetch_next = |s: &Beam, fetched: &mut u32, kth: f32| {
            if let Some((Cand(key, next), err)) = s.bounded.peek_with() {
                if next != *fetched {
                    *fetched = next;
                    let b = self.block(next);
                    // a node whose exact key will be skipped needs its codes, not its row
                    let from = if skip && key - err > kth { at.codes } else { 0 }.min(b.len());
                    prefetch_lines(b[from..].as_ptr(), b.len().min(bytes) - from);
                }
            }
        };
        while let Some((Cand(key, node), err)) = s.bounded.pop_with() {
            // the entry's exact key is known; every later node's is measured here
            let known = first.take();
            let block = self.block(node);
            if block.is_empty() {
                continue;
            }
            let bar = kth(&best);
            let (du, du_err) = match known {
                None if skip && key - err > bar => (key, err),
                _ => {
                    let du = known.unwrap_or_else(|| {
                        *evals += 1;
                        exact(f32s(&block[..self.dims * 4]))
                    });
                    if du < bar || best.len() < k {
                        let at = best.partition_point(|&b| b < du);
                        best.insert(at, du);
                        best.truncate(k);
                    }
                    found.push(Cand(du, node));
                    (du, 0.0)
                }
            };
            // the block of the best candidate left, before this node's neighbours are scored:
            // most often it is the next expansion, and its read overlaps this one's work
            fetch_next(s, &mut fetched, kth(&best));
            let count = (u32s(&block[at.ids..at.ids + 4])[0] as usize).min(self.groups * SCAN_GROUP);
            let ids = u32s(&block[at.ids + 4..at.ids + 4 + 4 * count]);
            *evals += count as u64;
            let unit = self.unit_error(lut, du, du_err);
            for (g, group) in ids.chunks(SCAN_GROUP).enumerate() {
                self.score_group(
                    kernel,
                    lut,
                    block,
                    g,
                    (du, du_err, unit),
                    &mut est,
                    &mut keys,
                    &mut errs,
                );
                for ((&nb, &key), &err) in group.iter().zip(&keys).zip(&errs) {
                    if s.bounded.is_full() && key >= s.bounded.worst() {
                        continue;
                    }
                    if s.mark(nb) {
                        s.bounded.insert_with(Cand(key, nb), err);
                    }
                }
                // and the new best's, if a neighbour displaced it
                fetch_next(s, &mut fetched, kth(&best));
            }
            if watch.stop(&s.bounded) {
                break;
            }
        }
        s.exact_best = best;
    }
}

/// The bytes of consecutive lines.
#[inline(always)]
fn lines(l: &[Line]) -> &[u8] {
    // SAFETY: `Line` is `repr(C)` over `[u8; 64]` with no padding (size 64 = align 64), so
    // `l.len()` lines are `64·l.len()` initialised bytes at the same address, borrowed as long.
    unsafe { std::slice::from_raw_parts(l.as_ptr() as *const u8, l.len() * 64) }
}

/// A block's bytes at a multiple of 4 from its start, as f32.
#[inline(always)]
fn f32s(b: &[u8]) -> &[f32] {
    debug_assert_eq!(b.as_ptr() as usize % 4, 0);
    // SAFETY: blocks start 64-byte aligned and every part of one starts at a multiple of 4
    // (the offsets are multiples of 64, the slots 4 bytes), so the pointer is aligned for
    // f32; `len / 4` f32 lie within the bytes; every bit pattern is a valid f32.
    unsafe { std::slice::from_raw_parts(b.as_ptr() as *const f32, b.len() / 4) }
}

/// A block's bytes at a multiple of 4 from its start, as u32.
#[inline(always)]
fn u32s(b: &[u8]) -> &[u32] {
    debug_assert_eq!(b.as_ptr() as usize % 4, 0);
    // SAFETY: as for `f32s`; every bit pattern is a valid u32.
    unsafe { std::slice::from_raw_parts(b.as_ptr() as *const u32, b.len() / 4) }
}

mod encode;
#[cfg(test)]
mod tests;
