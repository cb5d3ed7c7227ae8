//! SQ8: per-dimension affine u8 codes of an index's rows, searched with integer kernels.
//!
//! Each dimension `d` maps `[min_d, max_d]` onto `0..=255` (`x̂ = min_d + scale_d·c`), so a
//! row costs `dims` bytes instead of `4·dims`: a beam that walks codes moves a quarter of
//! the memory of an f32 beam, and on these latencies memory is the cost. A query is folded
//! into the codes' space once per search: `q·x̂ = Σ q_d·min_d + Σ (q_d·scale_d)·c_d`, and
//! the weights `q_d·scale_d` are quantised to i8 in `-63..=63` (one scale per query), so the
//! inner loop is an exact u8 × i8 dot product (VNNI / AVX2 `maddubs`, identical on every
//! kernel). The keys it gives only order candidates: the beam's final candidates are
//! re-ranked with exact f32 distances, so what a search reports is exact.
//!
//! Rows are padded to a multiple of 64 bytes (zero codes, zero weights: they add nothing),
//! so every row starts a cache line apart and the kernels need no tail on common widths.

use crate::distance::Metric;
use crate::kernels::MAX_QUERY_WEIGHT;
use crate::vectors::VectorSet;

/// Row stride of the codes.
const ALIGN: usize = 64;

/// The codes of the first `n` rows of a vector set.
#[derive(Debug, Clone, PartialEq)]
pub struct Sq8 {
    dims: usize,
    stride: usize,
    metric: Metric,
    min: Vec<f32>,
    scale: Vec<f32>,
    codes: Vec<u8>,
    /// `|x̂|²` per row (l2 only; empty otherwise).
    norms: Vec<f32>,
}

/// A query folded into the codes' space.
#[derive(Debug, Default, Clone)]
pub struct QueryCodes {
    /// Quantised weights, `stride` long.
    pub weights: Vec<i8>,
    /// Key = `bias[row] - gamma · dot(codes[row], weights)`.
    pub gamma: f32,
}

impl Sq8 {
    /// Encodes the first `n` rows of `set`.
    pub fn encode(set: &VectorSet, n: usize) -> Sq8 {
        let dims = set.dims();
        let n = n.min(set.len());
        let stride = dims.div_ceil(ALIGN).max(1) * ALIGN;
        let mut min = vec![f32::INFINITY; dims];
        let mut max = vec![f32::NEG_INFINITY; dims];
        for r in 0..n {
            for (d, &x) in set.row(r).iter().enumerate() {
                min[d] = min[d].min(x);
                max[d] = max[d].max(x);
            }
        }
        if n == 0 {
            min.iter_mut().for_each(|x| *x = 0.0);
            max.iter_mut().for_each(|x| *x = 0.0);
        }
        let scale: Vec<f32> = min.iter().zip(&max).map(|(lo, hi)| (hi - lo) / 255.0).collect();
        let mut codes = vec![0u8; n * stride];
        for r in 0..n {
            let out = &mut codes[r * stride..r * stride + dims];
            for (d, &x) in set.row(r).iter().enumerate() {
                out[d] = if scale[d] > 0.0 {
                    ((x - min[d]) / scale[d]).round().clamp(0.0, 255.0) as u8
                } else {
                    0
                };
            }
        }
        let mut s = Sq8 {
            dims,
            stride,
            metric: set.metric(),
            min,
            scale,
            codes,
            norms: Vec::new(),
        };
        if s.metric == Metric::L2 {
            s.norms = (0..n).map(|r| s.decode(r).iter().map(|x| x * x).sum()).collect();
        }
        s
    }

    /// Rows encoded.
    pub fn len(&self) -> usize {
        self.codes.len() / self.stride
    }

    /// Whether no rows are encoded.
    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }

    /// Bytes held: codes, per-row norms and the per-dimension affine maps.
    pub fn memory_bytes(&self) -> usize {
        self.codes.len()
            + (self.norms.len() + self.min.len() + self.scale.len()) * 4
            + std::mem::size_of::<Self>()
    }

    /// Codes of row `r` (padded to the stride).
    #[inline(always)]
    pub fn codes(&self, r: usize) -> &[u8] {
        &self.codes[r * self.stride..(r + 1) * self.stride]
    }

    /// Bytes of a row of codes.
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// The approximate vector a row's codes stand for.
    pub fn decode(&self, r: usize) -> Vec<f32> {
        self.codes(r)[..self.dims]
            .iter()
            .enumerate()
            .map(|(d, &c)| self.min[d] + self.scale[d] * c as f32)
            .collect()
    }

    /// Largest error of a decoded value in dimension `d`: half a step.
    pub fn max_error(&self, d: usize) -> f32 {
        self.scale[d] * 0.5
    }

    /// Folds a prepared query into the codes' space, in `out`'s reused buffer (two passes
    /// over `q·scale`, no allocation per search).
    pub fn prepare(&self, q: &[f32], out: &mut QueryCodes) {
        out.weights.clear();
        out.weights.resize(self.stride, 0);
        let top = q
            .iter()
            .zip(&self.scale)
            .fold(0f32, |a, (x, s)| a.max((x * s).abs()));
        let alpha = if top > 0.0 {
            top / MAX_QUERY_WEIGHT as f32
        } else {
            1.0
        };
        let limit = MAX_QUERY_WEIGHT as f32;
        for ((o, x), s) in out.weights.iter_mut().zip(q).zip(&self.scale) {
            *o = (x * s / alpha).round().clamp(-limit, limit) as i8;
        }
        // l2: |q - x̂|² = |q|² - 2·q·x̂ + |x̂|², ranked by |x̂|² - 2α·dot; dot/cosine: -α·dot
        out.gamma = if self.metric == Metric::L2 {
            2.0 * alpha
        } else {
            alpha
        };
    }

    /// Prefetches the codes of row `r` (prefetching its l2 norm as well measured no better).
    #[inline(always)]
    pub fn prefetch(&self, r: usize, stride: usize) {
        crate::hnsw::frozen::prefetch_lines(self.codes(r).as_ptr(), stride);
    }

    /// The ranking key of row `r` given the integer dot product of its codes and the
    /// query's weights.
    #[inline(always)]
    pub fn key(&self, r: usize, dot: i32, gamma: f32) -> f32 {
        let bias = self.norms.get(r).copied().unwrap_or(0.0);
        bias - gamma * dot as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    fn set(n: usize, dims: usize, metric: Metric) -> VectorSet {
        let mut r = SplitMix64::new(5);
        let data: Vec<f32> = (0..n * dims)
            .map(|i| ((r.next_u64() >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * (1 + i % 5) as f32)
            .collect();
        VectorSet::from_rows(dims, metric, (0..n).map(|i| i.to_string()).collect(), data)
    }

    #[test]
    fn decoded_values_are_within_half_a_step() {
        for dims in [1, 7, 24, 64, 65, 384] {
            let s = set(300, dims, Metric::L2);
            let q = Sq8::encode(&s, s.len());
            assert_eq!(q.stride() % 64, 0);
            assert!(q.stride() >= dims);
            for r in 0..s.len() {
                let back = q.decode(r);
                for (d, (&b, &x)) in back.iter().zip(s.row(r)).enumerate() {
                    let err = (b - x).abs();
                    assert!(
                        err <= q.max_error(d) * 1.0001 + 1e-6,
                        "dims {dims} r {r} d {d}: {err}"
                    );
                }
                assert!(q.codes(r)[dims..].iter().all(|&c| c == 0), "padding is zero");
            }
        }
    }

    #[test]
    fn constant_dimensions_and_empty_sets() {
        let s = VectorSet::from_rows(
            3,
            Metric::L2,
            vec!["a".into(), "b".into()],
            vec![1.0, 2.0, 5.0, 1.0, 3.0, 5.0],
        );
        let q = Sq8::encode(&s, 2);
        assert_eq!(q.decode(0), vec![1.0, 2.0, 5.0]);
        assert_eq!(q.decode(1), vec![1.0, 3.0, 5.0]);
        let e = Sq8::encode(&s, 0);
        assert!(e.is_empty());
    }

    #[test]
    fn query_weights_stay_in_range_and_keys_order_like_exact() {
        for metric in [Metric::L2, Metric::Dot, Metric::Cosine] {
            let s = set(500, 32, metric);
            let q8 = Sq8::encode(&s, s.len());
            let mut qc = QueryCodes::default();
            let query = s.row(3).to_vec();
            q8.prepare(&query, &mut qc);
            assert!(qc.weights.iter().all(|w| w.abs() <= MAX_QUERY_WEIGHT));
            // the code key of the query's own row is among the very best
            let mut keys: Vec<(f32, usize)> = (0..s.len())
                .map(|r| {
                    let dot =
                        crate::kernels::dot_u8i8_at(crate::kernels::Level::Scalar, q8.codes(r), &qc.weights);
                    (q8.key(r, dot, qc.gamma), r)
                })
                .collect();
            keys.sort_by(|a, b| a.0.total_cmp(&b.0));
            if metric != Metric::Dot {
                assert!(
                    keys.iter().take(5).any(|k| k.1 == 3),
                    "{metric:?}: {:?}",
                    &keys[..5]
                );
            }
        }
    }
}
