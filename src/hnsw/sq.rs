//! Scalar-quantised codes of an index's rows, searched with integer kernels: SQ8 (a byte a
//! dimension) and SQ4 (half a byte).
//!
//! Each dimension `d` maps `[min_d, max_d]` onto `0..=L` (`L` = 255 or 15; `x̂ = min_d +
//! scale_d·c`), so a row costs `dims` bytes (SQ8) or `dims / 2` (SQ4) instead of `4·dims`: a
//! beam that walks codes moves a quarter or an eighth of the memory of an f32 beam, and on
//! these latencies memory is the cost. A query is folded into the codes' space once per
//! search: `q·x̂ = Σ q_d·min_d + Σ (q_d·scale_d)·c_d`, and the weights `q_d·scale_d` are
//! quantised to i8 (`-63..=63` against u8 codes, `-127..=127` against u4 ones: one scale
//! per query), so the inner loop is an exact integer dot product (VNNI / AVX2 `maddubs`,
//! identical on every kernel).
//!
//! The key a code gives orders candidates: the beam walks by it and its final candidates
//! are re-ranked on the f32 rows, so what a search reports is exact. How far a key can be
//! from the exact one is modelled per query ([`Sq::error_model`], checked against the
//! measured error in the tests) — what a re-rank stopped by a bound would need; the search
//! does not use it yet (why: `super::rerank`), so it is computed only when asked, never in
//! a search's preparation.
//!
//! SQ8 rows are padded to a multiple of 64 bytes, SQ4 rows to a multiple of 64 dimensions
//! (32 bytes; zero codes and zero weights add nothing), so the kernels need no tail.

use crate::distance::Metric;
use crate::kernels::{MAX_QUERY_WEIGHT, MAX_U4_WEIGHT};
use crate::vectors::VectorSet;

/// Bits a dimension's code has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bits {
    /// One byte a dimension.
    Eight,
    /// Half a byte, two dimensions to a byte ([`crate::kernels::Kernel::dot_u4i8`]'s layout).
    Four,
}

impl Bits {
    fn levels(self) -> f32 {
        match self {
            Bits::Eight => 255.0,
            Bits::Four => 15.0,
        }
    }
    fn max_weight(self) -> f32 {
        match self {
            Bits::Eight => MAX_QUERY_WEIGHT as f32,
            Bits::Four => MAX_U4_WEIGHT as f32,
        }
    }
}

/// How many standard deviations of the modelled key error [`KeyError::margin_at`] spans:
/// past 4σ a normal tail holds 3·10⁻⁵ of the candidates (the test measures the miss rate
/// on random and clustered data).
const BOUND_SIGMAS: f32 = 4.0;

/// The codes of the first `n` rows of a vector set.
#[derive(Debug, Clone, PartialEq)]
pub struct Sq {
    bits: Bits,
    dims: usize,
    /// Bytes a row.
    stride: usize,
    /// Dimensions a row's weights cover (the padded width).
    width: usize,
    metric: Metric,
    min: Vec<f32>,
    scale: Vec<f32>,
    /// Mean and variance of each dimension's code over the rows (the error model).
    code_mean: Vec<f32>,
    code_var: Vec<f32>,
    codes: Vec<u8>,
    /// `|x̂|²` per row, of the decoded row (l2 only; empty otherwise).
    norms: Vec<f32>,
}

/// A query folded into the codes' space.
#[derive(Debug, Default, Clone)]
pub struct QueryCodes {
    /// Quantised weights, one per (padded) dimension.
    pub weights: Vec<i8>,
    /// Key = `bias[row] - gamma · dot(codes[row], weights)`.
    pub gamma: f32,
    /// The weights' scale: weight `w_d` stands for `q_d·scale_d / alpha`.
    alpha: f32,
}

/// The model of one query's key error ([`Sq::error_model`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KeyError {
    /// What turns a key into a centred estimate of the exact rank key: `Σ q·min`, the
    /// weights' mean rounding and (l2) the mean squared rounding of a row.
    offset: f32,
    l2: bool,
    /// `|q|²`.
    qq: f32,
    /// The squared bound is `fixed + spread · (estimated distance)`.
    fixed: f32,
    spread: f32,
}

impl KeyError {
    /// The estimate of the exact rank key a search's `key` stands for.
    pub fn centre(&self, key: f32) -> f32 {
        key + self.offset
    }

    /// The estimate of the exact key `|q - x|²` (l2) or `-q·x` (dot, cosine) a search's
    /// `key` stands for: [`KeyError::centre`] plus `|q|²` on l2. What makes keys of two
    /// different queries comparable (the builder's neighbour heuristic compares a
    /// candidate's distance to the new node with its distance to a kept neighbour).
    pub fn exact(&self, key: f32) -> f32 {
        self.centre(key) + if self.l2 { self.qq } else { 0.0 }
    }

    /// Bound on `|estimate - exact key|` ([`BOUND_SIGMAS`] σ of the modelled error) for a
    /// candidate whose estimate is `estimate`.
    pub fn margin_at(&self, estimate: f32) -> f32 {
        if self.l2 {
            (self.fixed + self.spread * (estimate + self.qq).max(0.0)).sqrt()
        } else {
            self.fixed.sqrt()
        }
    }
}

/// Where dimension `d`'s 4-bit code sits in a row: its byte, and whether it is the high
/// nibble (the layout of [`crate::kernels::Kernel::dot_u4i8`]).
#[inline]
fn nibble(d: usize) -> (usize, bool) {
    let (chunk, j) = (d / 64, d % 64);
    (32 * chunk + j % 32, j >= 32)
}

impl Sq {
    /// Encodes the first `n` rows of `set` with `bits` a dimension.
    pub fn encode(set: &VectorSet, n: usize, bits: Bits) -> Sq {
        let dims = set.dims();
        let n = n.min(set.len());
        let width = dims.div_ceil(64).max(1) * 64;
        let stride = match bits {
            Bits::Eight => width,
            Bits::Four => width / 2,
        };
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
        let levels = bits.levels();
        let scale: Vec<f32> = min.iter().zip(&max).map(|(lo, hi)| (hi - lo) / levels).collect();
        let mut codes = vec![0u8; n * stride];
        let mut sum = vec![0f64; dims];
        let mut sumsq = vec![0f64; dims];
        let l2 = set.metric() == Metric::L2;
        let mut norms = Vec::with_capacity(if l2 { n } else { 0 });
        for r in 0..n {
            let out = &mut codes[r * stride..(r + 1) * stride];
            // |x̂|² of the decoded row, summed as the codes are made (l2's key needs it)
            let mut norm = 0f32;
            for (d, &x) in set.row(r).iter().enumerate() {
                let c = if scale[d] > 0.0 {
                    ((x - min[d]) / scale[d]).round().clamp(0.0, levels) as u8
                } else {
                    0
                };
                sum[d] += c as f64;
                sumsq[d] += (c as f64) * (c as f64);
                let decoded = min[d] + scale[d] * c as f32;
                norm += decoded * decoded;
                match bits {
                    Bits::Eight => out[d] = c,
                    Bits::Four => {
                        let (at, high) = nibble(d);
                        out[at] |= if high { c << 4 } else { c };
                    }
                }
            }
            if l2 {
                norms.push(norm);
            }
        }
        let rows = n.max(1) as f64;
        let code_mean: Vec<f32> = sum.iter().map(|s| (s / rows) as f32).collect();
        let code_var: Vec<f32> = sumsq
            .iter()
            .zip(&sum)
            .map(|(q, s)| (q / rows - (s / rows) * (s / rows)).max(0.0) as f32)
            .collect();
        Sq {
            bits,
            dims,
            stride,
            width,
            metric: set.metric(),
            min,
            scale,
            code_mean,
            code_var,
            codes,
            norms,
        }
    }

    /// Bits a dimension.
    pub fn bits(&self) -> Bits {
        self.bits
    }

    /// Rows encoded.
    pub fn len(&self) -> usize {
        self.codes.len() / self.stride
    }

    /// Whether no rows are encoded.
    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }

    /// Bytes held: codes, per-row norms and the per-dimension maps and statistics.
    pub fn memory_bytes(&self) -> usize {
        self.codes.len() + (self.norms.len() + 4 * self.min.len()) * 4 + std::mem::size_of::<Self>()
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

    /// The code of row `r` in dimension `d`.
    fn code(&self, r: usize, d: usize) -> u8 {
        let row = self.codes(r);
        match self.bits {
            Bits::Eight => row[d],
            Bits::Four => {
                let (at, high) = nibble(d);
                if high {
                    row[at] >> 4
                } else {
                    row[at] & 15
                }
            }
        }
    }

    /// The approximate vector a row's codes stand for.
    pub fn decode(&self, r: usize) -> Vec<f32> {
        (0..self.dims)
            .map(|d| self.min[d] + self.scale[d] * self.code(r, d) as f32)
            .collect()
    }

    /// Largest error of a decoded value in dimension `d`: half a step.
    pub fn max_error(&self, d: usize) -> f32 {
        self.scale[d] * 0.5
    }

    /// Folds a prepared query into the codes' space, in `out`'s reused buffer (no
    /// allocation per search): one pass over zipped slices (no index, no bounds check) the
    /// compiler vectorises; the rounding is half away from zero by a truncating cast
    /// (`f32::round` is a libm call here, a tenth of a search's time at ef 40 when it ran
    /// once a dimension). L2 ranks by `|x̂|² - 2q·x̂ = |q - x̂|² - |q|²`, a true distance to
    /// the decoded row, whose error shrinks with the distance (`|x|² - 2q·x̂`'s does not: it
    /// cost .06 recall at ef 10 on 48-d clusters).
    #[inline(always)]
    pub fn prepare(&self, q: &[f32], out: &mut QueryCodes) {
        out.weights.clear();
        out.weights.resize(self.width, 0);
        let top = q
            .iter()
            .zip(&self.scale)
            .fold(0f32, |a, (x, s)| a.max((x * s).abs()));
        let limit = self.bits.max_weight();
        let alpha = if top > 0.0 { top / limit } else { 1.0 };
        let inv = 1.0 / alpha;
        for ((&x, &s), w) in q.iter().zip(&self.scale).zip(out.weights.iter_mut()) {
            let v = (x * s * inv).clamp(-limit, limit);
            *w = (v + 0.5f32.copysign(v)) as i32 as i8;
        }
        // l2: |q - x̂|² = |q|² - 2·q·x̂ + |x̂|², ranked by |x̂|² - 2α·dot; dot/cosine: -α·dot
        out.gamma = if self.metric == Metric::L2 {
            2.0 * alpha
        } else {
            alpha
        };
        out.alpha = alpha;
    }

    /// The model of `q`'s key error, `codes` being `q` prepared ([`Sq::prepare`]).
    ///
    /// Dot and cosine rank by `-q·x̂`: its error for a row is `-Σ q_d·δ_d + Σ e_d·c_d`,
    /// with `δ_d = x̂_d - x_d` (uniform in half a step, variance `scale_d²/12`) and
    /// `e_d = α·w_d - q_d·scale_d` the weights' rounding; the second term is split into its
    /// mean over the rows (`Σ e_d·mean(c_d)`, in the offset, so the estimate is centred) and
    /// its spread (`Σ e_d²·var(c_d)`). L2's error `2δ·(x - q) + |δ|²` shrinks with the
    /// distance, so its bound depends on the candidate's own estimated distance.
    #[inline(always)]
    pub fn error_model(&self, q: &[f32], codes: &QueryCodes) -> KeyError {
        let alpha = codes.alpha;
        let (mut qmin, mut bias, mut var_x, mut var_w, mut step2, mut qq) =
            (0f32, 0f32, 0f32, 0f32, 0f32, 0f32);
        let per_dim = q
            .iter()
            .zip(&self.scale)
            .zip(&self.min)
            .zip(self.code_mean.iter().zip(&self.code_var))
            .zip(&codes.weights);
        for ((((&x, &s), &lo), (&mean, &cvar)), &w) in per_dim {
            let e = alpha * f32::from(w) - x * s;
            qmin += x * lo;
            bias += e * mean;
            var_x += x * x * s * s;
            var_w += e * e * cvar;
            step2 += s * s;
            qq += x * x;
        }
        let (var_x, step2) = (var_x / 12.0, step2 / 12.0);
        let l2 = self.metric == Metric::L2;
        let k = if l2 { 2.0 } else { 1.0 };
        let z2 = BOUND_SIGMAS * BOUND_SIGMAS;
        KeyError {
            offset: -k * (qmin - bias) - if l2 { step2 } else { 0.0 },
            l2,
            qq,
            // Var(2δ·(x - q)) ≈ 4·|x - q|²·mean(scale²)/12, the difference spread evenly
            spread: if l2 {
                z2 * 4.0 * step2 / self.dims.max(1) as f32
            } else {
                0.0
            },
            fixed: if l2 {
                z2 * 4.0 * var_w
            } else {
                z2 * (var_x + var_w)
            },
        }
    }

    /// Prefetches the codes of row `r`.
    #[inline(always)]
    pub fn prefetch(&self, r: usize, stride: usize) {
        crate::hnsw::frozen::prefetch_lines(self.codes(r).as_ptr(), stride);
    }

    /// The rank key of row `r` on its codes, given the integer dot product of its codes and
    /// the query's weights (up to a constant per query: [`KeyError::centre`]).
    #[inline(always)]
    pub fn key(&self, r: usize, dot: i32, q: &QueryCodes) -> f32 {
        let bias = self.norms.get(r).copied().unwrap_or(0.0);
        bias - q.gamma * dot as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{dot_u4i8_at, dot_u8i8_at, Level};
    use crate::rng::SplitMix64;

    fn set(n: usize, dims: usize, metric: Metric) -> VectorSet {
        let mut r = SplitMix64::new(5);
        let data: Vec<f32> = (0..n * dims)
            .map(|i| ((r.next_u64() >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * (1 + i % 5) as f32)
            .collect();
        let mut s = VectorSet::from_rows(dims, metric, (0..n).map(|i| i.to_string()).collect(), data);
        if metric == Metric::Cosine {
            s = VectorSet::from_rows(
                dims,
                metric,
                (0..n).map(|i| i.to_string()).collect(),
                (0..n)
                    .flat_map(|i| {
                        let mut v = s.row(i).to_vec();
                        crate::distance::normalize(&mut v);
                        v
                    })
                    .collect(),
            );
        }
        s
    }

    fn dot(q: &Sq, r: usize, w: &[i8]) -> i32 {
        match q.bits() {
            Bits::Eight => dot_u8i8_at(Level::Scalar, q.codes(r), w),
            Bits::Four => dot_u4i8_at(Level::Scalar, q.codes(r), w),
        }
    }

    #[test]
    fn decoded_values_are_within_half_a_step() {
        for bits in [Bits::Eight, Bits::Four] {
            for dims in [1, 7, 24, 64, 65, 384] {
                let s = set(300, dims, Metric::L2);
                let q = Sq::encode(&s, s.len(), bits);
                assert_eq!(q.stride() % 32, 0);
                for r in 0..s.len() {
                    let back = q.decode(r);
                    for (d, (&b, &x)) in back.iter().zip(s.row(r)).enumerate() {
                        let err = (b - x).abs();
                        assert!(
                            err <= q.max_error(d) * 1.0001 + 1e-6,
                            "{bits:?} dims {dims} r {r} d {d}: {err}"
                        );
                    }
                    assert!((dims..q.width).all(|d| q.code(r, d) == 0), "padding is zero");
                }
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
        for bits in [Bits::Eight, Bits::Four] {
            let q = Sq::encode(&s, 2, bits);
            assert_eq!(q.decode(0), vec![1.0, 2.0, 5.0]);
            assert_eq!(q.decode(1), vec![1.0, 3.0, 5.0]);
            assert!(Sq::encode(&s, 0, bits).is_empty());
        }
    }

    #[test]
    fn query_weights_stay_in_range_and_keys_order_like_exact() {
        for bits in [Bits::Eight, Bits::Four] {
            for metric in [Metric::L2, Metric::Dot, Metric::Cosine] {
                let s = set(500, 32, metric);
                let q8 = Sq::encode(&s, s.len(), bits);
                let mut qc = QueryCodes::default();
                let query = s.row(3).to_vec();
                q8.prepare(&query, &mut qc);
                assert!(qc.weights.iter().all(|w| w.abs() as f32 <= bits.max_weight()));
                // the code key of the query's own row is among the very best
                let mut keys: Vec<(f32, usize)> = (0..s.len())
                    .map(|r| (q8.key(r, dot(&q8, r, &qc.weights), &qc), r))
                    .collect();
                keys.sort_by(|a, b| a.0.total_cmp(&b.0));
                if metric != Metric::Dot {
                    assert!(
                        keys.iter().take(5).any(|k| k.1 == 3),
                        "{bits:?} {metric:?}: {:?}",
                        &keys[..5]
                    );
                }
            }
        }
    }

    /// The estimate is centred and its bound holds: over every (query, row) pair of random
    /// sets of several widths, the estimated key misses the exact one by more than the
    /// margin in under 0.1 % of pairs, and the mean error is a small part of the margin.
    #[test]
    fn estimated_keys_stay_within_the_margin() {
        let mut r = SplitMix64::new(17);
        for bits in [Bits::Eight, Bits::Four] {
            for metric in [Metric::L2, Metric::Dot, Metric::Cosine] {
                for dims in [16, 96, 384] {
                    let s = set(400, dims, metric);
                    let q = Sq::encode(&s, s.len(), bits);
                    let mut qc = QueryCodes::default();
                    let (mut misses, mut pairs, mut err_sum, mut margin_sum) = (0usize, 0usize, 0f64, 0f64);
                    let mut sq_sum = 0f64;
                    for _ in 0..20 {
                        let mut query = s.row(r.below(s.len())).to_vec();
                        query.iter_mut().for_each(|x| {
                            *x += ((r.next_u64() >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.3
                        });
                        if metric == Metric::Cosine {
                            crate::distance::normalize(&mut query);
                        }
                        q.prepare(&query, &mut qc);
                        let model = q.error_model(&query, &qc);
                        for row in 0..s.len() {
                            let exact = if metric == Metric::L2 {
                                s.row(row).iter().map(|x| x * x).sum::<f32>()
                                    - 2.0 * crate::kernels::scalar_dot(&query, s.row(row))
                            } else {
                                -crate::kernels::scalar_dot(&query, s.row(row))
                            };
                            let est = model.centre(q.key(row, dot(&q, row, &qc.weights), &qc));
                            let err = est - exact;
                            misses += (err.abs() > model.margin_at(est)) as usize;
                            pairs += 1;
                            err_sum += err as f64;
                            sq_sum += (err as f64) * (err as f64);
                            margin_sum += model.margin_at(est) as f64;
                        }
                    }
                    let rate = misses as f64 / pairs as f64;
                    eprintln!(
                        "{bits:?} {metric:?} dims {dims}: rms error {:.4} vs modelled sigma {:.4}, misses {rate}",
                        (sq_sum / pairs as f64).sqrt(),
                        margin_sum / pairs as f64 / BOUND_SIGMAS as f64
                    );
                    let bias = (err_sum / pairs as f64).abs() / (margin_sum / pairs as f64);
                    assert!(
                        rate < 1e-3,
                        "{bits:?} {metric:?} dims {dims}: {misses} of {pairs} outside"
                    );
                    assert!(
                        bias < 0.25,
                        "{bits:?} {metric:?} dims {dims}: mean error {bias} of the margin"
                    );
                }
            }
        }
    }
}
