//! Distance kernels chosen once per process at run time: AVX-512 (with or without VNNI),
//! AVX2+FMA, or portable scalar.
//!
//! One binary runs on every x86-64 machine (and elsewhere on the scalar path): the CPU is
//! probed once, `VECTUNE_SIMD=scalar|avx2|avx512` can only lower the choice (for tests and
//! benchmarks), and everything that computes a distance — graph builds, searches, the SQ8/SQ4
//! beam, exact ground truth — goes through the same choice, so "exact" means one arithmetic
//! everywhere in a process.
//!
//! Hot loops are written once, generic over [`Kernel`], and entered through [`run`]: it calls
//! the task inside a function compiled with the chosen level's target features, so the
//! kernel calls inline into the loop (a call per distance would cost more than the distance
//! on short vectors). A task's `run` must be `#[inline(always)]` for that to happen.
//!
//! The u8 × i8 kernel (SQ8 codes × quantised query weights) is exact integer arithmetic with
//! query weights in `-63..=63` (so `maddubs` cannot saturate), and so is the packed u4 × i8
//! one (SQ4 codes, weights in `-127..=127`): every level returns the same value, and a search
//! on codes visits the same nodes whichever kernel ran. The AVX-512 levels run the AVX2 u4
//! kernel (a 512-bit one would need a machine with AVX-512 to test it on).

use std::sync::OnceLock;

mod scalar;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use scalar::{dot as scalar_dot, l2sq as scalar_l2sq, Scalar};
#[cfg(target_arch = "x86_64")]
pub use x86::{Avx2, Avx512, Avx512Vnni};

/// Largest magnitude of a quantised query weight for [`Kernel::dot_u8i8`]: `2·255·63` fits
/// an i16, so the pairwise `maddubs` sums never saturate.
pub const MAX_QUERY_WEIGHT: i8 = 63;

/// A kernel path, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Portable code (the compiler may still vectorise it for the baseline target).
    Scalar,
    /// AVX2 + FMA (256-bit).
    Avx2,
    /// AVX-512 F + BW (512-bit floats; integer dot by `maddubs`).
    Avx512,
    /// AVX-512 F + BW + VNNI (integer dot by `vpdpbusd`).
    Avx512Vnni,
}

impl Level {
    /// The name used in logs, `VECTUNE_SIMD` and benchmark output.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Scalar => "scalar",
            Level::Avx2 => "avx2",
            Level::Avx512 => "avx512",
            Level::Avx512Vnni => "avx512vnni",
        }
    }

    /// Parses a `VECTUNE_SIMD` value.
    pub fn parse(s: &str) -> Option<Level> {
        match s.trim().to_ascii_lowercase().as_str() {
            "scalar" => Some(Level::Scalar),
            "avx2" => Some(Level::Avx2),
            "avx512" => Some(Level::Avx512),
            "avx512vnni" => Some(Level::Avx512Vnni),
            _ => None,
        }
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The best level this CPU supports.
pub fn detected() -> Level {
    static DETECTED: OnceLock<Level> = OnceLock::new();
    *DETECTED.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
            let avx512 = avx2 && is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw");
            if avx512 && is_x86_feature_detected!("avx512vnni") {
                return Level::Avx512Vnni;
            }
            if avx512 {
                return Level::Avx512;
            }
            if avx2 {
                return Level::Avx2;
            }
        }
        Level::Scalar
    })
}

/// Every level this CPU can run, lowest first (what the kernel tests compare).
pub fn supported() -> Vec<Level> {
    [Level::Scalar, Level::Avx2, Level::Avx512, Level::Avx512Vnni]
        .into_iter()
        .filter(|&l| l <= detected())
        .collect()
}

/// Why a `VECTUNE_SIMD` value is refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("VECTUNE_SIMD={0:?} is not one of scalar, avx2, avx512, avx512vnni")]
pub struct SimdError(pub String);

/// The cap `VECTUNE_SIMD` asks for, if set (checked by `main` before anything runs).
pub fn cap_from_env() -> Result<Option<Level>, SimdError> {
    match std::env::var("VECTUNE_SIMD") {
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => Level::parse(&v).map(Some).ok_or(SimdError(v)),
        Err(_) => Ok(None),
    }
}

/// The level this process uses: the detected one, lowered by `VECTUNE_SIMD` (an invalid
/// value is ignored here; `main` refuses it at start-up). Chosen once.
pub fn level() -> Level {
    static CHOSEN: OnceLock<Level> = OnceLock::new();
    *CHOSEN.get_or_init(|| match cap_from_env() {
        Ok(Some(cap)) => cap.min(detected()),
        _ => detected(),
    })
}

/// Proof that the CPU supports a kernel's level. Private to this module: only
/// [`run_at`], after comparing the level with [`detected`], can make one, so only it can
/// make a kernel value.
#[derive(Debug, Clone, Copy)]
struct Proof(());

mod sealed {
    /// Kernels are this module's alone: an outside type implementing [`super::Kernel`]
    /// could claim a level it never checked.
    pub trait Sealed {}
}

/// The distance primitives, one implementation per [`Level`].
///
/// A kernel is a value, not only a type: each one holds a proof that the CPU supports its
/// level, made only by the dispatcher ([`run`], [`run_at`]) after it checked the CPU. So
/// the methods are safe — holding the value is the precondition — and no safe path reaches
/// AVX-512 code on a CPU without it. Every method reads at most the shorter slice.
pub trait Kernel: Copy + Send + Sync + 'static + sealed::Sealed {
    /// The level it implements.
    const LEVEL: Level;
    /// `a · b`.
    fn dot(self, a: &[f32], b: &[f32]) -> f32;
    /// `|a - b|²`.
    fn l2sq(self, a: &[f32], b: &[f32]) -> f32;
    /// `Σ a[i]·b[i]` of u8 codes and i8 weights in `-63..=63`, exactly.
    fn dot_u8i8(self, a: &[u8], b: &[i8]) -> i32;
    /// Rank keys of 4 queries × 2 rows, `-q·r` (`l2` false) or `|q - r|²`, in one
    /// register tile (eight accumulators: six loads feed eight FMAs): exact ground truth's
    /// inner loop. Slices of different lengths are compared on the shortest length.
    fn tile4x2(self, q: [&[f32]; 4], r: [&[f32]; 2], l2: bool) -> [[f32; 2]; 4];
    /// `Σ code·weight` of 4-bit codes packed two to a byte and i8 weights in
    /// `-127..=127`, exactly, over `min(codes / 32, weights / 64)` whole chunks. Chunk `c`
    /// is 32 bytes: byte `j`'s low nibble is dimension `64c + j`, its high nibble dimension
    /// `64c + 32 + j` (one mask and one shift unpack 64 codes into two registers).
    fn dot_u4i8(self, codes: &[u8], weights: &[i8]) -> i32;
    /// Fast-scan of one group of [`SCAN_GROUP`] 4-bit codes: `out[j] = Σ_s lut[16·s +
    /// code(j, s)]` (u16, wrapping) over the `min(codes, lut) / 16` nibble groups. Group `s`
    /// is 16 bytes at `16·s`: byte `j` holds code `j` in its low nibble and code `j + 16` in
    /// its high one. Exact integer arithmetic: every level returns the same.
    fn scan32(self, codes: &[u8], lut: &[u8], out: &mut [u16; SCAN_GROUP]);
    /// Runs `task` inside this level's entry function again: for a thread the task
    /// spawns, which starts outside it — its code would be compiled without the level's
    /// features and call every kernel out of line (measured: a 2-thread build's workers
    /// spent 12 % of their time in calls of the SQ8 product).
    fn enter<T: Task>(self, task: T) -> T::Output;
}

/// Codes scored together by [`Kernel::scan32`]: a node's neighbours are padded to a
/// multiple of it.
pub const SCAN_GROUP: usize = 32;

/// Largest magnitude of a query weight for [`Kernel::dot_u4i8`]: `2·15·127` fits an i16.
pub const MAX_U4_WEIGHT: i8 = 127;

/// The tile's slices cut to one length, so a SIMD tile may read `len` of each.
#[inline(always)]
fn same_len<'a>(q: [&'a [f32]; 4], r: [&'a [f32]; 2]) -> ([&'a [f32]; 4], [&'a [f32]; 2]) {
    let d = q.iter().chain(r.iter()).map(|x| x.len()).min().unwrap_or(0);
    (q.map(|x| &x[..d]), r.map(|x| &x[..d]))
}

/// A piece of hot code written once for every kernel. Implement `run` with
/// `#[inline(always)]`, so it is compiled inside the level's entry function.
pub trait Task {
    /// What it returns.
    type Output;
    /// Runs with `kernel`, the proof of the level it was entered at.
    fn run<K: Kernel>(self, kernel: K) -> Self::Output;
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn enter_avx2<T: Task>(t: T) -> T::Output {
    t.run(Avx2(Proof(())))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx2,fma")]
pub(super) unsafe fn enter_avx512<T: Task>(t: T) -> T::Output {
    t.run(Avx512(Proof(())))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
pub(super) unsafe fn enter_avx512vnni<T: Task>(t: T) -> T::Output {
    t.run(Avx512Vnni(Proof(())))
}

/// Runs `task` with the process's kernel ([`level`]).
#[inline]
pub fn run<T: Task>(task: T) -> T::Output {
    run_at(level(), task)
}

/// Runs `task` with kernel `level`, or the best supported one below it (tests, benches).
/// The only place a kernel value is made.
pub fn run_at<T: Task>(level: Level, task: T) -> T::Output {
    let level = level.min(detected());
    match level {
        Level::Scalar => task.run(Scalar(Proof(()))),
        // SAFETY: `level` is at most `detected()`, so the CPU has every feature enabled by
        // the entry function of that level (which makes the level's proof inside it).
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => unsafe { enter_avx2(task) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { enter_avx512(task) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Level::Avx512Vnni => unsafe { enter_avx512vnni(task) },
        #[cfg(not(target_arch = "x86_64"))]
        _ => task.run(Scalar(Proof(()))),
    }
}

struct Dot<'a>(&'a [f32], &'a [f32]);
impl Task for Dot<'_> {
    type Output = f32;
    #[inline(always)]
    fn run<K: Kernel>(self, k: K) -> f32 {
        k.dot(self.0, self.1)
    }
}

struct L2sq<'a>(&'a [f32], &'a [f32]);
impl Task for L2sq<'_> {
    type Output = f32;
    #[inline(always)]
    fn run<K: Kernel>(self, k: K) -> f32 {
        k.l2sq(self.0, self.1)
    }
}

struct DotU8I8<'a>(&'a [u8], &'a [i8]);
impl Task for DotU8I8<'_> {
    type Output = i32;
    #[inline(always)]
    fn run<K: Kernel>(self, k: K) -> i32 {
        k.dot_u8i8(self.0, self.1)
    }
}

struct Tile<'a>([&'a [f32]; 4], [&'a [f32]; 2], bool);
impl Task for Tile<'_> {
    type Output = [[f32; 2]; 4];
    #[inline(always)]
    fn run<K: Kernel>(self, k: K) -> [[f32; 2]; 4] {
        k.tile4x2(self.0, self.1, self.2)
    }
}

/// `a · b` with the process's kernel (one dispatch per call: for loops, write a [`Task`]).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    run(Dot(a, b))
}

/// `|a - b|²` with the process's kernel.
pub fn l2sq(a: &[f32], b: &[f32]) -> f32 {
    run(L2sq(a, b))
}

/// `a · b` with kernel `level` (tests, benches).
pub fn dot_at(level: Level, a: &[f32], b: &[f32]) -> f32 {
    run_at(level, Dot(a, b))
}

/// `|a - b|²` with kernel `level` (tests, benches).
pub fn l2sq_at(level: Level, a: &[f32], b: &[f32]) -> f32 {
    run_at(level, L2sq(a, b))
}

/// The exact u8 × i8 dot product with kernel `level` (tests, benches).
pub fn dot_u8i8_at(level: Level, a: &[u8], b: &[i8]) -> i32 {
    run_at(level, DotU8I8(a, b))
}

struct DotU4I8<'a>(&'a [u8], &'a [i8]);
impl Task for DotU4I8<'_> {
    type Output = i32;
    #[inline(always)]
    fn run<K: Kernel>(self, k: K) -> i32 {
        k.dot_u4i8(self.0, self.1)
    }
}

/// The exact packed-u4 × i8 dot product with kernel `level` (tests, benches).
pub fn dot_u4i8_at(level: Level, codes: &[u8], weights: &[i8]) -> i32 {
    run_at(level, DotU4I8(codes, weights))
}

struct Scan<'a>(&'a [u8], &'a [u8]);
impl Task for Scan<'_> {
    type Output = [u16; SCAN_GROUP];
    #[inline(always)]
    fn run<K: Kernel>(self, k: K) -> [u16; SCAN_GROUP] {
        let mut out = [0u16; SCAN_GROUP];
        k.scan32(self.0, self.1, &mut out);
        out
    }
}

/// The fast-scan of one group with kernel `level` (tests, benches).
pub fn scan32_at(level: Level, codes: &[u8], lut: &[u8]) -> [u16; SCAN_GROUP] {
    run_at(level, Scan(codes, lut))
}

/// The 4 × 2 rank-key tile with kernel `level` (tests, benches).
pub fn tile4x2_at(level: Level, q: [&[f32]; 4], r: [&[f32]; 2], l2: bool) -> [[f32; 2]; 4] {
    run_at(level, Tile(q, r, l2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    fn f32s(r: &mut SplitMix64, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| (r.next_u64() >> 40) as f32 / (1u64 << 24) as f32 * 4.0 - 2.0)
            .collect()
    }

    /// Every kernel this machine supports against the scalar one, on random inputs of odd
    /// and even lengths (tails of every width), and on slices that start unaligned.
    #[test]
    fn every_supported_kernel_matches_scalar() {
        let levels = supported();
        eprintln!(
            "kernels compared with scalar on this CPU: {:?} (detected {}, chosen {})",
            levels.iter().map(|l| l.as_str()).collect::<Vec<_>>(),
            detected(),
            level()
        );
        let mut r = SplitMix64::new(7);
        for len in (0..=130).chain([255, 256, 383, 384, 385, 768, 1000, 1537]) {
            let a = f32s(&mut r, len + 1);
            let b = f32s(&mut r, len + 1);
            // offset by one element: unaligned starts
            let (a, b) = (&a[1..], &b[1..]);
            let codes: Vec<u8> = (0..len).map(|_| r.below(256) as u8).collect();
            let weights: Vec<i8> = (0..len)
                .map(|_| (r.below(2 * MAX_QUERY_WEIGHT as usize + 1) as i32 - MAX_QUERY_WEIGHT as i32) as i8)
                .collect();
            let (d0, l0, i0) = (
                dot_at(Level::Scalar, a, b),
                l2sq_at(Level::Scalar, a, b),
                dot_u8i8_at(Level::Scalar, &codes, &weights),
            );
            let exact: i64 = codes
                .iter()
                .zip(&weights)
                .map(|(&c, &w)| c as i64 * w as i64)
                .sum();
            assert_eq!(i0 as i64, exact, "scalar u8i8 len {len}");
            let tol = 1e-4 * (1.0 + len as f32);
            for &lv in &levels {
                let (d, l, i) = (
                    dot_at(lv, a, b),
                    l2sq_at(lv, a, b),
                    dot_u8i8_at(lv, &codes, &weights),
                );
                assert!((d - d0).abs() <= tol, "{lv} dot len {len}: {d} vs {d0}");
                assert!((l - l0).abs() <= tol * 4.0, "{lv} l2sq len {len}: {l} vs {l0}");
                assert_eq!(i, i0, "{lv} u8i8 len {len}");
            }
            // the ground-truth tile: four queries (one is `a`) against two rows
            let more: Vec<Vec<f32>> = (0..4).map(|_| f32s(&mut r, len)).collect();
            let q = [a, more[0].as_slice(), more[1].as_slice(), more[2].as_slice()];
            let rows = [b, more[3].as_slice()];
            for l2 in [false, true] {
                let t0 = tile4x2_at(Level::Scalar, q, rows, l2);
                for (qi, qq) in q.iter().enumerate() {
                    for (ri, rr) in rows.iter().enumerate() {
                        let want = if l2 {
                            scalar_l2sq(qq, rr)
                        } else {
                            -scalar_dot(qq, rr)
                        };
                        assert_eq!(t0[qi][ri], want, "scalar tile len {len}");
                    }
                }
                for &lv in &levels {
                    let t = tile4x2_at(lv, q, rows, l2);
                    for qi in 0..4 {
                        for ri in 0..2 {
                            let (x, y) = (t[qi][ri], t0[qi][ri]);
                            assert!(
                                (x - y).abs() <= tol * 4.0,
                                "{lv} tile l2={l2} len {len}: {x} vs {y}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// The packed 4-bit kernel on every level against scalar, and scalar against the
    /// layout written out by hand: chunk counts 0..9 and 12, unequal slices (the shorter
    /// decides), the extreme codes and weights.
    #[test]
    fn u4_kernel_matches_scalar_on_every_level() {
        let mut r = SplitMix64::new(13);
        for chunks in (0..10).chain([12]) {
            let codes: Vec<u8> = (0..chunks * 32).map(|_| r.below(256) as u8).collect();
            let w: Vec<i8> = (0..chunks * 64)
                .map(|_| (r.below(2 * MAX_U4_WEIGHT as usize + 1) as i32 - MAX_U4_WEIGHT as i32) as i8)
                .collect();
            let mut want = 0i64;
            for c in 0..chunks {
                for j in 0..32 {
                    let b = codes[32 * c + j];
                    want += (b & 15) as i64 * w[64 * c + j] as i64;
                    want += (b >> 4) as i64 * w[64 * c + 32 + j] as i64;
                }
            }
            for lv in supported() {
                assert_eq!(dot_u4i8_at(lv, &codes, &w) as i64, want, "{lv} chunks {chunks}");
                if chunks > 0 {
                    // one chunk fewer of weights (or of codes): that chunk is not read
                    let a = dot_u4i8_at(lv, &codes, &w[..(chunks - 1) * 64 + 63]);
                    let b = dot_u4i8_at(lv, &codes[..(chunks - 1) * 32 + 31], &w);
                    let c = dot_u4i8_at(
                        Level::Scalar,
                        &codes[..(chunks - 1) * 32],
                        &w[..(chunks - 1) * 64],
                    );
                    assert_eq!((a, b), (c, c), "{lv} chunks {chunks} ragged");
                }
            }
        }
        let codes = vec![0xffu8; 32 * 16];
        for w in [MAX_U4_WEIGHT, -MAX_U4_WEIGHT] {
            let weights = vec![w; 64 * 16];
            for lv in supported() {
                assert_eq!(dot_u4i8_at(lv, &codes, &weights), 15 * w as i32 * 1024, "{lv}");
            }
        }
    }

    /// The fast-scan on every level against scalar, and scalar against a plain lookup:
    /// odd and even group counts (the SIMD path pairs groups and finishes an odd one
    /// alone), unequal slices, the largest entries.
    #[test]
    fn fast_scan_matches_scalar_on_every_level() {
        let mut r = SplitMix64::new(11);
        for nsub in [0usize, 1, 2, 3, 7, 8, 31, 32, 33, 96, 97, 255] {
            let codes: Vec<u8> = (0..nsub * 16).map(|_| r.below(256) as u8).collect();
            let top = if nsub > 200 { 255 } else { 1 + r.below(255) };
            let lut: Vec<u8> = (0..nsub * 16).map(|_| r.below(top + 1) as u8).collect();
            let mut want = [0u16; SCAN_GROUP];
            for s in 0..nsub {
                for j in 0..16 {
                    let c = codes[s * 16 + j];
                    want[j] += lut[s * 16 + (c & 15) as usize] as u16;
                    want[j + 16] += lut[s * 16 + (c >> 4) as usize] as u16;
                }
            }
            for lv in supported() {
                assert_eq!(scan32_at(lv, &codes, &lut), want, "{lv} nsub {nsub}");
                // a longer lut than codes (and the reverse) reads the common groups
                if nsub > 0 {
                    let short = &codes[..(nsub - 1) * 16];
                    assert_eq!(
                        scan32_at(lv, short, &lut),
                        scan32_at(Level::Scalar, short, &lut[..(nsub - 1) * 16]),
                        "{lv} nsub {nsub} ragged"
                    );
                }
            }
        }
        let full = vec![0xffu8; 96 * 16];
        for lv in supported() {
            assert_eq!(scan32_at(lv, &full, &full), [96 * 255; SCAN_GROUP], "{lv}");
        }
    }

    #[test]
    fn extreme_codes_do_not_saturate() {
        let codes = vec![255u8; 1024];
        for w in [MAX_QUERY_WEIGHT, -MAX_QUERY_WEIGHT] {
            let weights = vec![w; 1024];
            for lv in supported() {
                assert_eq!(dot_u8i8_at(lv, &codes, &weights), 255 * w as i32 * 1024, "{lv}");
            }
        }
    }

    #[test]
    fn levels_parse_and_order() {
        assert_eq!(Level::parse("AVX2"), Some(Level::Avx2));
        assert_eq!(Level::parse("scalar"), Some(Level::Scalar));
        assert_eq!(Level::parse("sse"), None);
        assert!(Level::Scalar < Level::Avx2 && Level::Avx2 < Level::Avx512);
        assert!(level() <= detected());
        // asking for more than the CPU has runs the best it has
        assert_eq!(dot_at(Level::Avx512Vnni, &[1.0, 2.0], &[3.0, 4.0]), 11.0);
    }

    /// A tile over slices of different lengths reads the common length only (a SIMD tile
    /// trusting the first row's length would read past the shorter slices).
    #[test]
    fn a_tile_of_ragged_slices_reads_the_shortest() {
        let long = vec![1.0f32; 40];
        let short = vec![1.0f32; 9];
        for lv in supported() {
            let t = tile4x2_at(lv, [&long, &short, &long, &long], [&long, &long], false);
            assert_eq!(t[0][0], -9.0, "{lv}");
            let twos = vec![2.0f32; 40];
            let t = tile4x2_at(lv, [&long; 4], [&twos, &short], true);
            assert_eq!(t[0][0], 9.0, "{lv}");
        }
    }
}
