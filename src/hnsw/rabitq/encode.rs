//! Writing the blocks: every node's layer-0 neighbours as 1-bit codes of their rotated
//! offsets from the node, with their two factors ([`Rabitq::encode`]). A tuning run pays
//! this for each RaBitQ twin it measures, an activation after loading a graph's links.

use super::{Line, Offsets, Rabitq, Rotation, EPS0, NONE};
use crate::distance::Metric;
use crate::hnsw::frozen::{prefetch_lines, FrozenGraph};
use crate::kernels::SCAN_GROUP;
use crate::vectors::VectorSet;

impl Rabitq {
    /// Rotates the first `layout.len()` rows of `set` and writes every node's block from
    /// its layer-0 links. `threads` only splits the work: the result is the same for any.
    pub fn encode(set: &VectorSet, layout: &FrozenGraph, seed: u64, threads: usize) -> Rabitq {
        let n = layout.len().min(set.len());
        let rot = Rotation::new(set.dims(), seed);
        let p = rot.padded;
        let threads = threads.max(1);
        let per = n.div_ceil(threads).max(1);
        let mut rotated = vec![0f32; n * p];
        std::thread::scope(|scope| {
            for (t, chunk) in rotated.chunks_mut(per * p).enumerate() {
                let rot = &rot;
                scope.spawn(move || {
                    let mut out = Vec::new();
                    for (i, row) in chunk.chunks_exact_mut(p).enumerate() {
                        rot.apply(set.row(t * per + i), &mut out);
                        row.copy_from_slice(&out);
                    }
                });
            }
        });
        let nsub = p / 4;
        let groups = layout.m0.div_ceil(SCAN_GROUP).max(1);
        let dims = set.dims();
        let line = |bytes: usize| bytes.div_ceil(64) * 64;
        let codes = line(dims * 4);
        let factors = codes + line(groups * nsub * 16);
        let ids = factors + groups * 2 * SCAN_GROUP * 4;
        let at = Offsets {
            codes,
            factors,
            ids,
            lines: (ids + line(4 + groups * SCAN_GROUP * 4)) / 64,
        };
        // asked for 2 MB pages before the first touch: an expansion reads one block in a
        // random place of n × ~1.5 KB, so with 4 KB pages nearly every block is a TLB miss
        // once the blocks pass the TLB's reach (1M × 128: 1.6 GB)
        let len = n * at.lines;
        let mut blocks: Vec<Line> = Vec::with_capacity(len);
        advise_huge_pages(blocks.as_ptr() as *const u8, blocks.capacity() * 64);
        let l2 = set.metric() == Metric::L2;
        let spread = std::thread::scope(|scope| {
            let mut workers = Vec::new();
            // each worker zeroes its own share first: the first touch of ~2 GB at 1M rows
            // (page faults, costly in a VM) runs on every thread instead of one
            for (t, chunk) in blocks.spare_capacity_mut()[..len]
                .chunks_mut(per * at.lines)
                .enumerate()
            {
                let rotated = &rotated;
                workers.push(scope.spawn(move || {
                    chunk.fill(std::mem::MaybeUninit::new(Line([0; 64])));
                    // SAFETY: every element of `chunk` was initialized just above, and
                    // `MaybeUninit<Line>` has `Line`'s layout.
                    let chunk = unsafe { &mut *(chunk as *mut [std::mem::MaybeUninit<Line>] as *mut [Line]) };
                    let mut spread = 0f32;
                    for (i, block) in chunk.chunks_exact_mut(at.lines).enumerate() {
                        let u = t * per + i;
                        let block = lines_mut(block);
                        let ru = &rotated[u * p..(u + 1) * p];
                        put_f32s(&mut block[..dims * 4], set.row(u));
                        let nbs = layout.neighbours(u as u32, 0);
                        put_u32(&mut block[at.ids..], nbs.len() as u32);
                        // each neighbour's rotated row is a random read (1M × 128: 48M of
                        // them, 512 B each): asked for two neighbours ahead
                        let ahead = |slot: usize| {
                            let v = nbs.get(slot).map(|&v| v as usize);
                            if let Some(r) = v.and_then(|v| rotated.get(v * p..(v + 1) * p)) {
                                prefetch_lines(r.as_ptr() as *const u8, p * 4);
                            }
                        };
                        ahead(0);
                        ahead(1);
                        for (slot, &v) in nbs.iter().enumerate() {
                            ahead(slot + 2);
                            put_u32(&mut block[at.ids + 4 + 4 * slot..], v);
                            let Some(rv) = rotated.get(v as usize * p..(v as usize + 1) * p) else {
                                continue;
                            };
                            let (a, b, sine) = edge(ru, rv, l2, slot, &mut block[at.codes..at.factors], nsub);
                            spread = spread.max(sine);
                            let (g, j) = (slot / SCAN_GROUP, slot % SCAN_GROUP);
                            let f = at.factors + 4 * (g * 2 * SCAN_GROUP + j);
                            put_f32s(&mut block[f..f + 4], &[a]);
                            put_f32s(&mut block[f + 4 * SCAN_GROUP..f + 4 * SCAN_GROUP + 4], &[b]);
                        }
                    }
                    spread
                }));
            }
            workers
                .into_iter()
                .map(|w| w.join().unwrap_or(1.0))
                .fold(0f32, f32::max)
        });
        // SAFETY: the workers' chunks cover the first `len` elements, and each worker
        // initialized its chunk before anything else (`fill` cannot panic), so all `len`
        // are initialized whether or not a worker panicked later.
        unsafe { blocks.set_len(len) };
        let max_norm2 = (0..n)
            .map(|u| set.row(u).iter().map(|x| x * x).sum::<f32>())
            .fold(0f32, f32::max);
        let mut upper_of = vec![NONE; n];
        let mut upper_rows = Vec::new();
        for (node, slot) in upper_of.iter_mut().enumerate() {
            if layout.upper_start.get(node).is_some_and(|&s| s != NONE) {
                *slot = (upper_rows.len() / dims.max(1)) as u32;
                upper_rows.extend_from_slice(set.row(node));
            }
        }
        Rabitq {
            rot,
            dims,
            nsub,
            groups,
            at,
            blocks,
            upper_rows,
            upper_of,
            kappa: EPS0 * spread / ((p - 1) as f32).sqrt(),
            l2,
            max_norm2,
            skip_exact: true,
        }
    }
}

/// Asks the kernel for transparent huge pages over `[p, p + bytes)` (the whole 4 KB pages
/// within it); advisory — where THP is off, or on other systems, nothing changes.
fn advise_huge_pages(p: *const u8, bytes: usize) {
    #[cfg(target_os = "linux")]
    {
        const PAGE: usize = 4096;
        let start = (p as usize).next_multiple_of(PAGE);
        let end = (p as usize + bytes) / PAGE * PAGE;
        if end > start {
            // SAFETY: madvise only advises on how to back the range; the range is whole
            // pages inside one live allocation of `bytes` bytes at `p` (not yet touched), and
            // MADV_HUGEPAGE neither frees nor changes its contents.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (p, bytes);
}

/// The bytes of consecutive lines, to write.
fn lines_mut(l: &mut [Line]) -> &mut [u8] {
    // SAFETY: as for `lines`; the borrow is unique, and any byte written is a valid `Line`.
    unsafe { std::slice::from_raw_parts_mut(l.as_mut_ptr() as *mut u8, l.len() * 64) }
}

/// Writes `v` as native-endian f32 bytes at the start of `out`.
fn put_f32s(out: &mut [u8], v: &[f32]) {
    for (o, x) in out.chunks_exact_mut(4).zip(v) {
        o.copy_from_slice(&x.to_ne_bytes());
    }
}

/// Writes `v` as native-endian bytes at the start of `out`.
fn put_u32(out: &mut [u8], v: u32) {
    out[..4].copy_from_slice(&v.to_ne_bytes());
}

/// Writes the code of edge `ru → rv` (rotated rows) at `slot` of a node's code block and
/// returns its factors `(A, B)`: a neighbour's key is `key(u) + B - A·⟨ō, Rq⟩`.
///
/// With `r = rv - ru`, `F = |r|²·√P / Σ|r_i|` and `c = ⟨ō, ru⟩`:
/// l2: `|q - v|² = |q - u|² - 2⟨q - u, r⟩ + |r|²`, so `A = 2F`, `B = |r|² + 2F·c`;
/// inner product: `-⟨q, v⟩ = -⟨q, u⟩ - ⟨q - u, r⟩ - ⟨u, r⟩`, so `A = F`, `B = F·c - ⟨u, r⟩`.
/// A zero offset (a duplicate row) has `A = 0`: its key is the node's plus `B`.
///
/// The third value is `√(1 - ⟨ō, r̂⟩²)`, the edge's share of RaBitQ's error bound: the
/// estimate of `⟨r, y⟩` errs by at most `F·√(1 - ⟨ō, r̂⟩²)·ε₀/√(P - 1)·|y|` (so, in units
/// of `A`, by that bound over `F` times 2 for l2's key, 1 for inner products — `A`
/// carries the same factor).
fn edge(ru: &[f32], rv: &[f32], l2: bool, slot: usize, block: &mut [u8], nsub: usize) -> (f32, f32, f32) {
    let (g, j) = (slot / SCAN_GROUP, slot % SCAN_GROUP);
    // the four sums in 8 lanes each, so the compiler keeps them in vector registers (one
    // f32 accumulator is a chain it may not reorder), and the signs without a branch (the
    // sign of a rotated offset is a coin flip to the predictor): encoding 1M × 128 at m 24
    // scores 48M edges, and this loop was most of its time
    let mut acc = [[0f32; 8]; 4];
    for (s, (u8s, v8s)) in ru.chunks_exact(8).zip(rv.chunks_exact(8)).enumerate() {
        let mut bits = 0u8;
        for t in 0..8 {
            let (u, d) = (u8s[t], v8s[t] - u8s[t]);
            let up = d > 0.0;
            acc[0][t] += d * d;
            acc[1][t] += d.abs();
            acc[2][t] += u * d;
            acc[3][t] += if up { u } else { -u };
            bits |= u8::from(up) << t;
        }
        // two nibble groups: dimensions 8s..8s+4 and 8s+4..8s+8
        for (h, nibble) in [bits & 0x0f, bits >> 4].into_iter().enumerate() {
            let at = 16 * (g * nsub + 2 * s + h) + j % 16;
            block[at] |= if j < 16 { nibble } else { nibble << 4 };
        }
    }
    let [norm2, l1, ur, c] = acc.map(|a| a.iter().sum::<f32>());
    let root = (ru.len() as f32).sqrt();
    let f = if l1 > 0.0 { norm2 * root / l1 } else { 0.0 };
    let cos = if l1 > 0.0 { l1 / (root * norm2.sqrt()) } else { 1.0 };
    let sine = (1.0 - cos * cos).max(0.0).sqrt();
    let c = c / root;
    if l2 {
        (2.0 * f, norm2 + 2.0 * f * c, sine)
    } else {
        (f, f * c - ur, sine)
    }
}
