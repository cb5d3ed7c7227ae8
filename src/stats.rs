//! Statistics of measurements: proportions with Wilson intervals, nearest-rank
//! percentiles, and ratios of paired samples with a bootstrap interval.
//!
//! A leaf: it knows numbers, not trials or graphs, so the monitor, the measurement room and
//! the tuning engine share one definition of an interval.
//!
//! Why the paired ratio. On a shared machine two runs of the same search differ by 10–40 %,
//! and whatever is measured second runs on warmer caches or a quieter neighbour. Timing A
//! and B on each query within milliseconds of each other puts both under the same conditions, and the per-query
//! ratio cancels what makes one query dearer than another. The effect is the geometric mean
//! of the per-query ratios (`b / a`), its 95 % interval a percentile bootstrap over queries;
//! a latency win counts only when the whole interval lies below `1 - min_improvement`.

use crate::rng::SplitMix64;

/// Bootstrap resamples of a ratio interval.
pub const RESAMPLES: usize = 2000;

/// Nearest-rank percentile of sorted values (`p` in 0..=100).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// 95 % Wilson score lower bound (z = 1.96) of a proportion `hits / n`.
pub fn wilson_lower(hits: usize, n: usize) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let (z, n, p) = (1.96f64, n as f64, hits as f64 / n as f64);
    let z2 = z * z;
    let centre = p + z2 / (2.0 * n);
    let margin = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((centre - margin) / (1.0 + z2 / n)).max(0.0)
}

/// 95 % Wilson score upper bound (z = 1.96) of a proportion `hits / n` (1 when `n` is 0).
pub fn wilson_upper(hits: usize, n: usize) -> f64 {
    if n == 0 {
        return 1.0;
    }
    1.0 - wilson_lower(n - hits.min(n), n)
}

/// A latency ratio `b / a` with its 95 % interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Effect {
    /// Geometric mean of the per-query ratios.
    pub ratio: f64,
    /// 2.5th percentile of its bootstrap distribution.
    pub low: f64,
    /// 97.5th percentile.
    pub high: f64,
    /// Queries it is over.
    pub queries: usize,
}

impl Effect {
    /// Whether `b` is faster than `a` by more than `min_improvement`, beyond the noise.
    pub fn faster_by(&self, min_improvement: f64) -> bool {
        self.high < 1.0 - min_improvement
    }

    /// "−12 % [−15 %, −9 %]".
    pub fn describe(&self) -> String {
        let pct = |r: f64| {
            let p = (r - 1.0) * 100.0;
            let s = if p < 0.0 { '\u{2212}' } else { '+' };
            format!("{s}{:.0} %", p.abs())
        };
        format!("{} [{}, {}]", pct(self.ratio), pct(self.low), pct(self.high))
    }
}

/// The geometric mean of `b[i] / a[i]` with a percentile-bootstrap 95 % interval over
/// queries (fixed seed: the same samples give the same interval). Non-positive latencies
/// (a clock that did not tick) are clamped to a nanosecond.
pub fn ratio_interval(a: &[f64], b: &[f64]) -> Effect {
    let logs: Vec<f64> = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (y.max(1e-3) / x.max(1e-3)).ln())
        .collect();
    let n = logs.len();
    if n == 0 {
        return Effect {
            ratio: 1.0,
            low: 0.0,
            high: f64::INFINITY,
            queries: 0,
        };
    }
    let mean = logs.iter().sum::<f64>() / n as f64;
    let mut rng = SplitMix64::new(0x626f_6f74_7374_7270);
    let mut means: Vec<f64> = (0..RESAMPLES)
        .map(|_| (0..n).map(|_| logs[rng.below(n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    let at = |p: f64| means[((p * RESAMPLES as f64) as usize).min(RESAMPLES - 1)];
    Effect {
        ratio: mean.exp(),
        low: at(0.025).exp(),
        high: at(0.975).exp(),
        queries: n,
    }
}

/// The standard normal quantile (Acklam's rational approximation, relative error below
/// 1.2e-9 over the open unit interval; 0 and 1 answer ∓∞).
pub fn normal_quantile(p: f64) -> f64 {
    if p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// Student's t quantile with `df` degrees of freedom (Cornish–Fisher expansion around the
/// normal quantile; within 1e-3 of the exact value from 10 degrees of freedom on, and the
/// harnesses it serves have hundreds of queries).
pub fn t_quantile(p: f64, df: f64) -> f64 {
    let z = normal_quantile(p);
    if !z.is_finite() || df <= 0.0 {
        return z;
    }
    let (z3, z5, z7) = (z.powi(3), z.powi(5), z.powi(7));
    z + (z3 + z) / (4.0 * df)
        + (5.0 * z5 + 16.0 * z3 + 3.0 * z) / (96.0 * df * df)
        + (3.0 * z7 + 19.0 * z5 + 17.0 * z3 - 15.0 * z) / (384.0 * df.powi(3))
}

/// A one-sided lower confidence bound, at level `1 - alpha`, of the mean of per-query values
/// in `0..=1` (per-query recall): the mean less a Student-t margin on the spread over queries.
///
/// The unit of evidence is the query: the k hits of one query are not k independent draws,
/// so the spread that matters is how recall varies from query to query. A sample without
/// spread (every query alike) gets the rule of three's margin, `3/n`, instead of none.
pub fn mean_lower_bound(values: &[f64], alpha: f64) -> f64 {
    let n = values.len();
    if n == 0 {
        return 0.0;
    }
    let m = mean(values);
    let ss: f64 = values.iter().map(|v| (v - m).powi(2)).sum();
    if ss <= 0.0 || n < 2 {
        return (m - 3.0 / n as f64).clamp(0.0, 1.0);
    }
    let sd = (ss / (n - 1) as f64).sqrt();
    let t = t_quantile(1.0 - alpha, (n - 1) as f64);
    (m - t * sd / (n as f64).sqrt()).clamp(0.0, 1.0)
}

/// The mean of `values` (0 for none).
pub fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

/// The non-decreasing least-squares fit of `y` (pool adjacent violators), equal weights: the
/// estimate of a curve known to be monotone (recall along the `ef_search` ladder of one
/// graph) from noisy points, each point borrowing strength from its neighbours.
pub fn isotonic(y: &[f64]) -> Vec<f64> {
    // blocks of (sum, count), merged while a block's mean falls below its predecessor's
    let mut blocks: Vec<(f64, usize)> = Vec::with_capacity(y.len());
    for &v in y {
        blocks.push((v, 1));
        while blocks.len() > 1 {
            let (s1, c1) = blocks[blocks.len() - 1];
            let (s0, c0) = blocks[blocks.len() - 2];
            if s0 / c0 as f64 <= s1 / c1 as f64 {
                break;
            }
            blocks.pop();
            let last = blocks.len() - 1;
            blocks[last] = (s0 + s1, c0 + c1);
        }
    }
    blocks
        .into_iter()
        .flat_map(|(s, c)| std::iter::repeat_n(s / c as f64, c))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_known_values() {
        // reference values of the 95 % Wilson score interval's lower end
        assert!((wilson_lower(81, 263) - 0.2553).abs() < 1e-3);
        assert!((wilson_lower(10, 10) - 0.7225).abs() < 1e-3);
        assert!((wilson_lower(95, 100) - 0.8882).abs() < 1e-3);
        assert_eq!(wilson_lower(0, 10), 0.0);
        assert_eq!(wilson_lower(0, 0), 0.0);
        // more evidence, tighter bound
        assert!(wilson_lower(950, 1000) > wilson_lower(95, 100));
    }

    #[test]
    fn percentiles_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 95.0), 95.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 0.0), 1.0);
    }

    /// Log-normal-ish noise around `base`, per query.
    fn noisy(rng: &mut SplitMix64, base: &[f64], sd: f64) -> Vec<f64> {
        base.iter()
            .map(|&b| {
                // sum of uniforms: close enough to normal for a noise model
                let z: f64 = (0..12)
                    .map(|_| (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
                    .sum::<f64>()
                    - 6.0;
                b * (z * sd).exp()
            })
            .collect()
    }

    #[test]
    fn identical_samples_have_a_unit_ratio_and_a_tight_interval() {
        let a = vec![10.0, 20.0, 15.0, 12.0];
        let e = ratio_interval(&a, &a);
        assert!((e.ratio - 1.0).abs() < 1e-12 && (e.low - 1.0).abs() < 1e-12 && (e.high - 1.0).abs() < 1e-12);
        assert!(!e.faster_by(0.0));
        assert_eq!(e.describe(), "+0 % [+0 %, +0 %]");
    }

    #[test]
    fn a_config_against_itself_under_noise_is_never_faster() {
        let mut rng = SplitMix64::new(7);
        let base: Vec<f64> = (0..200).map(|i| 50.0 + (i % 17) as f64 * 3.0).collect();
        for _ in 0..20 {
            let (a, b) = (noisy(&mut rng, &base, 0.3), noisy(&mut rng, &base, 0.3));
            let e = ratio_interval(&a, &b);
            assert!(e.low < 1.0 && e.high > 1.0 - 0.05, "{e:?}");
            assert!(!e.faster_by(0.05), "{e:?}");
        }
    }

    #[test]
    fn half_the_work_is_faster_beyond_the_noise() {
        let mut rng = SplitMix64::new(9);
        let base: Vec<f64> = (0..100).map(|i| 40.0 + (i % 11) as f64).collect();
        let half: Vec<f64> = base.iter().map(|b| b * 0.5).collect();
        let e = ratio_interval(&noisy(&mut rng, &base, 0.3), &noisy(&mut rng, &half, 0.3));
        assert!(e.faster_by(0.05), "{e:?}");
        assert!(e.low < 0.5 && e.high > 0.5 && e.high < 0.7, "{e:?}");
        assert!(e.describe().starts_with('\u{2212}'), "{}", e.describe());
    }

    #[test]
    fn a_small_real_effect_inside_the_margin_is_not_enough() {
        // 3 % faster, measured precisely: real, but below min_improvement 0.05
        let base: Vec<f64> = (0..400).map(|i| 30.0 + (i % 13) as f64).collect();
        let b: Vec<f64> = base.iter().map(|x| x * 0.97).collect();
        let e = ratio_interval(&base, &b);
        assert!(e.faster_by(0.0) && !e.faster_by(0.05), "{e:?}");
    }

    #[test]
    fn quantiles_match_tables() {
        assert!((normal_quantile(0.975) - 1.959_964).abs() < 1e-6);
        assert!((normal_quantile(0.95) - 1.644_854).abs() < 1e-6);
        assert!((normal_quantile(0.999) - 3.090_232).abs() < 1e-6);
        assert!((normal_quantile(0.001) + 3.090_232).abs() < 1e-6);
        assert_eq!(normal_quantile(0.5), 0.0);
        // t tables: t(0.95, 10) = 1.8125, t(0.975, 30) = 2.0423, t(0.99, 100) = 2.3642
        assert!((t_quantile(0.95, 10.0) - 1.8125).abs() < 1e-3);
        assert!((t_quantile(0.975, 30.0) - 2.0423).abs() < 1e-3);
        assert!((t_quantile(0.99, 100.0) - 2.3642).abs() < 1e-3);
    }

    #[test]
    fn the_query_level_bound_is_wider_than_the_slot_level_one() {
        // 100 queries, k = 10: 90 perfect, 10 at 0.5 — recall .95 over 1,000 slots
        let mut v = vec![1.0; 90];
        v.extend(std::iter::repeat_n(0.5, 10));
        let q = mean_lower_bound(&v, 0.05);
        let slots = wilson_lower(950, 1000);
        assert!(q < 0.95 && q < slots, "query-level {q} vs slot-level {slots}");
        assert!(q > 0.90, "{q}");
        // more queries, tighter; a smaller alpha, wider
        let big: Vec<f64> = v.iter().cycle().take(1000).copied().collect();
        assert!(mean_lower_bound(&big, 0.05) > q);
        assert!(mean_lower_bound(&v, 0.005) < q);
        // no spread still leaves a margin
        let all = mean_lower_bound(&[1.0; 50], 0.05);
        assert!(all < 1.0 && all > 0.9, "{all}");
    }

    #[test]
    fn isotonic_pools_violators_and_keeps_monotone_input() {
        let close = |a: Vec<f64>, b: &[f64]| {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-12)
        };
        assert!(close(isotonic(&[0.1, 0.3, 0.2, 0.4]), &[0.1, 0.25, 0.25, 0.4]));
        assert!(close(isotonic(&[0.5, 0.4, 0.3]), &[0.4, 0.4, 0.4]));
        assert!(close(isotonic(&[0.1, 0.2, 0.3]), &[0.1, 0.2, 0.3]));
        assert!(isotonic(&[]).is_empty());
    }
}
