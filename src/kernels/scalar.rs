//! The portable kernels: the reference every SIMD kernel is tested against.

use super::{same_len, Kernel, Level, Proof, SCAN_GROUP};

/// Portable code, any CPU (a value only the dispatcher makes, like every kernel).
#[derive(Debug, Clone, Copy)]
pub struct Scalar(pub(super) Proof);

/// Dot product with four accumulators (lets the compiler vectorise it).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 4];
    let chunks = n / 4;
    for i in 0..chunks {
        for j in 0..4 {
            acc[j] += a[i * 4 + j] * b[i * 4 + j];
        }
    }
    let mut s = acc[0] + acc[1] + acc[2] + acc[3];
    for i in chunks * 4..n {
        s += a[i] * b[i];
    }
    s
}

/// Squared Euclidean distance with four accumulators.
#[inline]
pub fn l2sq(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 4];
    let chunks = n / 4;
    for i in 0..chunks {
        for j in 0..4 {
            let d = a[i * 4 + j] - b[i * 4 + j];
            acc[j] += d * d;
        }
    }
    let mut s = acc[0] + acc[1] + acc[2] + acc[3];
    for i in chunks * 4..n {
        let d = a[i] - b[i];
        s += d * d;
    }
    s
}

/// Exact u8 × i8 dot product.
#[inline]
pub fn dot_u8i8(a: &[u8], b: &[i8]) -> i32 {
    a.iter().zip(b).map(|(&x, &y)| x as i32 * y as i32).sum()
}

/// The packed 4-bit × i8 reference (layout: [`Kernel::dot_u4i8`]).
#[inline]
pub fn dot_u4i8(codes: &[u8], weights: &[i8]) -> i32 {
    let mut s = 0i32;
    for (b, w) in codes.chunks_exact(32).zip(weights.chunks_exact(64)) {
        for j in 0..32 {
            s += (b[j] & 15) as i32 * w[j] as i32 + (b[j] >> 4) as i32 * w[32 + j] as i32;
        }
    }
    s
}

/// The fast-scan reference: one table lookup per code and nibble group.
#[inline]
pub fn scan32(codes: &[u8], lut: &[u8], out: &mut [u16; SCAN_GROUP]) {
    *out = [0; SCAN_GROUP];
    for (c, t) in codes.chunks_exact(16).zip(lut.chunks_exact(16)) {
        for j in 0..16 {
            out[j] = out[j].wrapping_add(t[(c[j] & 15) as usize] as u16);
            out[j + 16] = out[j + 16].wrapping_add(t[(c[j] >> 4) as usize] as u16);
        }
    }
}

impl super::sealed::Sealed for Scalar {}

impl Kernel for Scalar {
    const LEVEL: Level = Level::Scalar;
    #[inline(always)]
    fn enter<T: super::Task>(self, task: T) -> T::Output {
        task.run(self)
    }
    #[inline(always)]
    fn dot(self, a: &[f32], b: &[f32]) -> f32 {
        dot(a, b)
    }
    #[inline(always)]
    fn l2sq(self, a: &[f32], b: &[f32]) -> f32 {
        l2sq(a, b)
    }
    #[inline(always)]
    fn dot_u8i8(self, a: &[u8], b: &[i8]) -> i32 {
        dot_u8i8(a, b)
    }
    #[inline(always)]
    fn dot_u4i8(self, codes: &[u8], weights: &[i8]) -> i32 {
        dot_u4i8(codes, weights)
    }
    #[inline(always)]
    fn scan32(self, codes: &[u8], lut: &[u8], out: &mut [u16; SCAN_GROUP]) {
        scan32(codes, lut, out)
    }
    #[inline(always)]
    fn tile4x2(self, q: [&[f32]; 4], r: [&[f32]; 2], l2: bool) -> [[f32; 2]; 4] {
        let (q, r) = same_len(q, r);
        std::array::from_fn(|i| std::array::from_fn(|j| if l2 { l2sq(q[i], r[j]) } else { -dot(q[i], r[j]) }))
    }
}
