//! x86-64 kernels: AVX2+FMA, AVX-512 (F+BW) and AVX-512 VNNI.
//!
//! Each reads at most `min(a.len(), b.len())` elements: the AVX2 ones finish with a scalar
//! tail, the AVX-512 ones with masked loads (which never touch memory of masked-out lanes).

use std::arch::x86_64::*;

use super::{same_len, Kernel, Level, Proof, SCAN_GROUP};

/// AVX2 + FMA (a value only the dispatcher makes, after checking the CPU).
#[derive(Debug, Clone, Copy)]
pub struct Avx2(pub(super) Proof);
/// AVX-512 F + BW (likewise).
#[derive(Debug, Clone, Copy)]
pub struct Avx512(pub(super) Proof);
/// AVX-512 F + BW + VNNI (likewise).
#[derive(Debug, Clone, Copy)]
pub struct Avx512Vnni(pub(super) Proof);

#[inline]
#[target_feature(enable = "avx2,fma")]
fn hsum256(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)))
}

#[inline]
#[target_feature(enable = "avx2")]
fn hsum256_epi32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
    _mm_cvtsi128_si32(s)
}

/// # Safety
/// AVX2 and FMA are available.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    // SAFETY (loads): every load reads 8 floats at `i + 8j`, all below `n`.
    while i + 32 <= n {
        for (j, acc) in acc.iter_mut().enumerate() {
            let x = _mm256_loadu_ps(pa.add(i + 8 * j));
            let y = _mm256_loadu_ps(pb.add(i + 8 * j));
            *acc = _mm256_fmadd_ps(x, y, *acc);
        }
        i += 32;
    }
    while i + 8 <= n {
        acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc[0]);
        i += 8;
    }
    let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut s = hsum256(sum);
    while i < n {
        s += *pa.add(i) * *pb.add(i);
        i += 1;
    }
    s
}

/// # Safety
/// AVX2 and FMA are available.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn l2sq_avx2(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    // SAFETY (loads): as in `dot_avx2`.
    while i + 32 <= n {
        for (j, acc) in acc.iter_mut().enumerate() {
            let d = _mm256_sub_ps(
                _mm256_loadu_ps(pa.add(i + 8 * j)),
                _mm256_loadu_ps(pb.add(i + 8 * j)),
            );
            *acc = _mm256_fmadd_ps(d, d, *acc);
        }
        i += 32;
    }
    while i + 8 <= n {
        let d = _mm256_sub_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)));
        acc[0] = _mm256_fmadd_ps(d, d, acc[0]);
        i += 8;
    }
    let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut s = hsum256(sum);
    while i < n {
        let d = *pa.add(i) - *pb.add(i);
        s += d * d;
        i += 1;
    }
    s
}

/// # Safety
/// AVX2 is available.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn dot_u8i8_avx2(a: &[u8], b: &[i8]) -> i32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_si256(); 2];
    let mut i = 0;
    // SAFETY (loads): each reads 32 bytes at `i` (and `i + 32`), below `n`.
    while i + 64 <= n {
        for (j, acc) in acc.iter_mut().enumerate() {
            let x = _mm256_loadu_si256(pa.add(i + 32 * j) as *const __m256i);
            let y = _mm256_loadu_si256(pb.add(i + 32 * j) as *const __m256i);
            // u8·i8 pairs summed to i16: |2·255·63| < 2^15, no saturation
            let p = _mm256_maddubs_epi16(x, y);
            *acc = _mm256_add_epi32(*acc, _mm256_madd_epi16(p, ones));
        }
        i += 64;
    }
    while i + 32 <= n {
        let x = _mm256_loadu_si256(pa.add(i) as *const __m256i);
        let y = _mm256_loadu_si256(pb.add(i) as *const __m256i);
        acc[0] = _mm256_add_epi32(acc[0], _mm256_madd_epi16(_mm256_maddubs_epi16(x, y), ones));
        i += 32;
    }
    let mut s = hsum256_epi32(_mm256_add_epi32(acc[0], acc[1]));
    while i < n {
        s += *pa.add(i) as i32 * *pb.add(i) as i32;
        i += 1;
    }
    s
}

/// Mask of the first `r` lanes (`r < 16`).
#[inline]
fn mask16(r: usize) -> __mmask16 {
    ((1u32 << r) - 1) as __mmask16
}

/// # Safety
/// AVX-512 F is available.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm512_setzero_ps(); 4];
    let mut i = 0;
    // SAFETY (loads): full loads read 16 floats below `n`; the masked tail load reads only
    // the `n - i` lanes left and suppresses faults on the others.
    while i + 64 <= n {
        for (j, acc) in acc.iter_mut().enumerate() {
            let x = _mm512_loadu_ps(pa.add(i + 16 * j));
            let y = _mm512_loadu_ps(pb.add(i + 16 * j));
            *acc = _mm512_fmadd_ps(x, y, *acc);
        }
        i += 64;
    }
    while i + 16 <= n {
        acc[0] = _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)), acc[0]);
        i += 16;
    }
    if i < n {
        let k = mask16(n - i);
        let x = _mm512_maskz_loadu_ps(k, pa.add(i));
        let y = _mm512_maskz_loadu_ps(k, pb.add(i));
        acc[1] = _mm512_fmadd_ps(x, y, acc[1]);
    }
    _mm512_reduce_add_ps(_mm512_add_ps(
        _mm512_add_ps(acc[0], acc[1]),
        _mm512_add_ps(acc[2], acc[3]),
    ))
}

/// # Safety
/// AVX-512 F is available.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn l2sq_avx512(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm512_setzero_ps(); 4];
    let mut i = 0;
    // SAFETY (loads): as in `dot_avx512`.
    while i + 64 <= n {
        for (j, acc) in acc.iter_mut().enumerate() {
            let d = _mm512_sub_ps(
                _mm512_loadu_ps(pa.add(i + 16 * j)),
                _mm512_loadu_ps(pb.add(i + 16 * j)),
            );
            *acc = _mm512_fmadd_ps(d, d, *acc);
        }
        i += 64;
    }
    while i + 16 <= n {
        let d = _mm512_sub_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)));
        acc[0] = _mm512_fmadd_ps(d, d, acc[0]);
        i += 16;
    }
    if i < n {
        let k = mask16(n - i);
        let d = _mm512_sub_ps(
            _mm512_maskz_loadu_ps(k, pa.add(i)),
            _mm512_maskz_loadu_ps(k, pb.add(i)),
        );
        acc[1] = _mm512_fmadd_ps(d, d, acc[1]);
    }
    _mm512_reduce_add_ps(_mm512_add_ps(
        _mm512_add_ps(acc[0], acc[1]),
        _mm512_add_ps(acc[2], acc[3]),
    ))
}

/// Mask of the first `r` bytes (`r < 64`).
#[inline]
fn mask64(r: usize) -> __mmask64 {
    (1u64 << r) - 1
}

/// # Safety
/// AVX-512 F and BW are available.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn dot_u8i8_avx512(a: &[u8], b: &[i8]) -> i32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr() as *const i8, b.as_ptr());
    let ones = _mm512_set1_epi16(1);
    let mut acc = _mm512_setzero_si512();
    let mut i = 0;
    // SAFETY (loads): full loads read 64 bytes below `n`; the masked tail reads only the
    // bytes left.
    while i < n {
        let k = if i + 64 <= n { u64::MAX } else { mask64(n - i) };
        let x = _mm512_maskz_loadu_epi8(k, pa.add(i));
        let y = _mm512_maskz_loadu_epi8(k, pb.add(i));
        acc = _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(x, y), ones));
        i += 64;
    }
    _mm512_reduce_add_epi32(acc)
}

/// # Safety
/// AVX-512 F, BW and VNNI are available.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn dot_u8i8_vnni(a: &[u8], b: &[i8]) -> i32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr() as *const i8, b.as_ptr());
    let mut acc = [_mm512_setzero_si512(); 2];
    let mut i = 0;
    // SAFETY (loads): as in `dot_u8i8_avx512`.
    while i + 128 <= n {
        for (j, acc) in acc.iter_mut().enumerate() {
            let x = _mm512_loadu_si512(pa.add(i + 64 * j) as *const _);
            let y = _mm512_loadu_si512(pb.add(i + 64 * j) as *const _);
            *acc = _mm512_dpbusd_epi32(*acc, x, y);
        }
        i += 128;
    }
    while i < n {
        let k = if i + 64 <= n { u64::MAX } else { mask64(n - i) };
        let x = _mm512_maskz_loadu_epi8(k, pa.add(i));
        let y = _mm512_maskz_loadu_epi8(k, pb.add(i));
        acc[0] = _mm512_dpbusd_epi32(acc[0], x, y);
        i += 64;
    }
    _mm512_reduce_add_epi32(_mm512_add_epi32(acc[0], acc[1]))
}

// The exact ground truth's 4 × 2 tile (queries × rows), in 256- and 512-bit registers.

#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn hsum_tile(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)))
}

/// The same tile in 512-bit registers, the tail in masked loads.
///
/// # Safety
/// The CPU must support AVX-512 F; all slices have the same length.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn tile512(q: [&[f32]; 4], r: [&[f32]; 2], l2: bool) -> [[f32; 2]; 4] {
    let d = r[0].len();
    let mut acc = [[_mm512_setzero_ps(); 2]; 4];
    let mut i = 0;
    while i < d {
        // SAFETY (loads): lanes at or past `d` are masked out, and masked lanes are never read
        let k: __mmask16 = if i + 16 <= d {
            0xffff
        } else {
            ((1u32 << (d - i)) - 1) as __mmask16
        };
        let r0 = _mm512_maskz_loadu_ps(k, r[0].as_ptr().add(i));
        let r1 = _mm512_maskz_loadu_ps(k, r[1].as_ptr().add(i));
        for (a, qq) in acc.iter_mut().zip(q.iter()) {
            let x = _mm512_maskz_loadu_ps(k, qq.as_ptr().add(i));
            if l2 {
                let d0 = _mm512_sub_ps(x, r0);
                let d1 = _mm512_sub_ps(x, r1);
                a[0] = _mm512_fmadd_ps(d0, d0, a[0]);
                a[1] = _mm512_fmadd_ps(d1, d1, a[1]);
            } else {
                a[0] = _mm512_fmadd_ps(x, r0, a[0]);
                a[1] = _mm512_fmadd_ps(x, r1, a[1]);
            }
        }
        i += 16;
    }
    let mut out = [[0f32; 2]; 4];
    for (qi, a) in acc.iter().enumerate() {
        for rj in 0..2 {
            let s = _mm512_reduce_add_ps(a[rj]);
            out[qi][rj] = if l2 { s } else { -s };
        }
    }
    out
}

/// # Safety
/// The CPU must support AVX2 and FMA; all slices have the same length.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2(q: [&[f32]; 4], r: [&[f32]; 2], l2: bool) -> [[f32; 2]; 4] {
    let d = r[0].len();
    let mut acc = [[_mm256_setzero_ps(); 2]; 4];
    let mut i = 0;
    if l2 {
        while i + 8 <= d {
            let r0 = _mm256_loadu_ps(r[0].as_ptr().add(i));
            let r1 = _mm256_loadu_ps(r[1].as_ptr().add(i));
            for (a, qq) in acc.iter_mut().zip(q.iter()) {
                let x = _mm256_loadu_ps(qq.as_ptr().add(i));
                let d0 = _mm256_sub_ps(x, r0);
                let d1 = _mm256_sub_ps(x, r1);
                a[0] = _mm256_fmadd_ps(d0, d0, a[0]);
                a[1] = _mm256_fmadd_ps(d1, d1, a[1]);
            }
            i += 8;
        }
    } else {
        while i + 8 <= d {
            let r0 = _mm256_loadu_ps(r[0].as_ptr().add(i));
            let r1 = _mm256_loadu_ps(r[1].as_ptr().add(i));
            for (a, qq) in acc.iter_mut().zip(q.iter()) {
                let x = _mm256_loadu_ps(qq.as_ptr().add(i));
                a[0] = _mm256_fmadd_ps(x, r0, a[0]);
                a[1] = _mm256_fmadd_ps(x, r1, a[1]);
            }
            i += 8;
        }
    }
    let mut out = [[0f32; 2]; 4];
    for (qi, a) in acc.iter().enumerate() {
        for rj in 0..2 {
            let mut s = hsum_tile(a[rj]);
            for t in i..d {
                let (x, y) = (*q[qi].get_unchecked(t), *r[rj].get_unchecked(t));
                s += if l2 { (x - y) * (x - y) } else { x * y };
            }
            out[qi][rj] = if l2 { s } else { -s };
        }
    }
    out
}

/// # Safety
/// AVX2 is available.
///
/// A chunk of 32 bytes is 64 codes: the mask gives the first 32, a 16-bit shift and the
/// mask the other 32, each against its 32 weights in one `maddubs` (u4·i8 pairs: at most
/// 2·15·127, no saturation).
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn dot_u4i8_avx2(codes: &[u8], weights: &[i8]) -> i32 {
    let chunks = (codes.len() / 32).min(weights.len() / 64);
    let (pc, pw) = (codes.as_ptr(), weights.as_ptr());
    let nib = _mm256_set1_epi8(0x0f);
    let ones = _mm256_set1_epi16(1);
    let mut acc = _mm256_setzero_si256();
    let mut c = 0;
    // i16 sums of up to 8 chunks per lane (8 · 2·15·127 = 30480 < 2¹⁵), widened to i32
    // once per 8: one `madd` per 8 chunks instead of two per chunk
    while c < chunks {
        let end = (c + 8).min(chunks);
        let mut lo16 = _mm256_setzero_si256();
        let mut hi16 = _mm256_setzero_si256();
        // SAFETY (loads): 32 bytes of codes at `32c` and 64 of weights at `64c`, `c < chunks`.
        while c < end {
            let v = _mm256_loadu_si256(pc.add(32 * c) as *const __m256i);
            let w0 = _mm256_loadu_si256(pw.add(64 * c) as *const __m256i);
            let w1 = _mm256_loadu_si256(pw.add(64 * c + 32) as *const __m256i);
            let lo = _mm256_and_si256(v, nib);
            let hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), nib);
            lo16 = _mm256_add_epi16(lo16, _mm256_maddubs_epi16(lo, w0));
            hi16 = _mm256_add_epi16(hi16, _mm256_maddubs_epi16(hi, w1));
            c += 1;
        }
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(lo16, ones));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(hi16, ones));
    }
    hsum256_epi32(acc)
}

/// # Safety
/// AVX2 is available.
///
/// Two nibble groups per 256-bit step: lane 0 holds group `2p`'s 16 code bytes and its
/// table, lane 1 group `2p + 1`'s, so one `pshufb` looks up 16 codes of each; the low
/// nibbles are codes 0..16, the high ones 16..32. The u8 lookups are widened into u16
/// accumulators by even and odd byte (mask, shift) and the two lanes summed at the end.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn scan32_avx2(codes: &[u8], lut: &[u8], out: &mut [u16; SCAN_GROUP]) {
    let nsub = codes.len().min(lut.len()) / 16;
    let (pc, pt) = (codes.as_ptr(), lut.as_ptr());
    let nib = _mm256_set1_epi8(0x0f);
    let even = _mm256_set1_epi16(0x00ff);
    let mut acc = [_mm256_setzero_si256(); 4];
    let mut p = 0;
    // SAFETY (loads): 32 bytes at `16p`, `p + 2 <= nsub`, within `16·nsub` of both slices.
    while p + 2 <= nsub {
        let v = _mm256_loadu_si256(pc.add(16 * p) as *const __m256i);
        let t = _mm256_loadu_si256(pt.add(16 * p) as *const __m256i);
        let lo = _mm256_shuffle_epi8(t, _mm256_and_si256(v, nib));
        let hi = _mm256_shuffle_epi8(t, _mm256_and_si256(_mm256_srli_epi16(v, 4), nib));
        acc[0] = _mm256_add_epi16(acc[0], _mm256_and_si256(lo, even));
        acc[1] = _mm256_add_epi16(acc[1], _mm256_srli_epi16(lo, 8));
        acc[2] = _mm256_add_epi16(acc[2], _mm256_and_si256(hi, even));
        acc[3] = _mm256_add_epi16(acc[3], _mm256_srli_epi16(hi, 8));
        p += 2;
    }
    // lanes summed, then even and odd codes interleaved back into order
    let fold = |a: __m256i| _mm_add_epi16(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
    let (e0, o0, e1, o1) = (fold(acc[0]), fold(acc[1]), fold(acc[2]), fold(acc[3]));
    let po = out.as_mut_ptr() as *mut __m128i;
    // SAFETY (stores): `out` is 32 u16 = four 16-byte stores.
    _mm_storeu_si128(po, _mm_unpacklo_epi16(e0, o0));
    _mm_storeu_si128(po.add(1), _mm_unpackhi_epi16(e0, o0));
    _mm_storeu_si128(po.add(2), _mm_unpacklo_epi16(e1, o1));
    _mm_storeu_si128(po.add(3), _mm_unpackhi_epi16(e1, o1));
    if p < nsub {
        let (c, t) = (&codes[16 * p..16 * p + 16], &lut[16 * p..16 * p + 16]);
        for j in 0..16 {
            out[j] = out[j].wrapping_add(t[(c[j] & 15) as usize] as u16);
            out[j + 16] = out[j + 16].wrapping_add(t[(c[j] >> 4) as usize] as u16);
        }
    }
}

/// One `Kernel` impl per level: safe methods, because the value is the proof of the
/// level; each calls the level's `#[target_feature]` function, which inlines into the
/// level's entry function (it has the same features) and from there into the task's loop.
macro_rules! kernel {
    ($ty:ty, $level:expr, $enter:ident, $dot:ident, $l2sq:ident, $u8i8:ident, $tile:ident, $u4:ident, $scan:ident) => {
        impl super::sealed::Sealed for $ty {}

        impl Kernel for $ty {
            const LEVEL: Level = $level;
            #[inline(always)]
            fn dot(self, a: &[f32], b: &[f32]) -> f32 {
                // SAFETY: a value of this type exists only inside the dispatcher's entry
                // function of this level, entered after it checked the CPU supports it.
                unsafe { $dot(a, b) }
            }
            #[inline(always)]
            fn l2sq(self, a: &[f32], b: &[f32]) -> f32 {
                // SAFETY: as for `dot`.
                unsafe { $l2sq(a, b) }
            }
            #[inline(always)]
            fn dot_u8i8(self, a: &[u8], b: &[i8]) -> i32 {
                // SAFETY: as for `dot`.
                unsafe { $u8i8(a, b) }
            }
            #[inline(always)]
            fn dot_u4i8(self, codes: &[u8], weights: &[i8]) -> i32 {
                // SAFETY: as for `dot`.
                unsafe { $u4(codes, weights) }
            }
            #[inline(always)]
            fn scan32(self, codes: &[u8], lut: &[u8], out: &mut [u16; SCAN_GROUP]) {
                // SAFETY: as for `dot`.
                unsafe { $scan(codes, lut, out) }
            }
            #[inline(always)]
            fn enter<T: super::Task>(self, task: T) -> T::Output {
                // SAFETY: as for `dot`: the value proves the CPU has this level's features.
                unsafe { super::$enter(task) }
            }
            #[inline(always)]
            fn tile4x2(self, q: [&[f32]; 4], r: [&[f32]; 2], l2: bool) -> [[f32; 2]; 4] {
                let (q, r) = same_len(q, r);
                // SAFETY: as for `dot`; every slice now has the same length.
                unsafe { $tile(q, r, l2) }
            }
        }
    };
}

kernel!(
    Avx2,
    Level::Avx2,
    enter_avx2,
    dot_avx2,
    l2sq_avx2,
    dot_u8i8_avx2,
    tile_avx2,
    dot_u4i8_avx2,
    scan32_avx2
);
kernel!(
    Avx512,
    Level::Avx512,
    enter_avx512,
    dot_avx512,
    l2sq_avx512,
    dot_u8i8_avx512,
    tile512,
    dot_u4i8_avx2,
    scan32_avx2
);
kernel!(
    Avx512Vnni,
    Level::Avx512Vnni,
    enter_avx512vnni,
    dot_avx512,
    l2sq_avx512,
    dot_u8i8_vnni,
    tile512,
    dot_u4i8_avx2,
    scan32_avx2
);
