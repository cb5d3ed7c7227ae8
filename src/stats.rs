//! Statistics of measurements: proportions with Wilson intervals, nearest-rank
//! percentiles, and ratios of paired samples with a bootstrap interval.
//!
//! A leaf: it knows numbers, not trials or graphs, so the monitor, the measurement room and
//! the tuning engine share one definition of an interval.
//!
//! Why the paired ratio. On a shared machine two runs of the same search differ by 10–40 %,
//! and whatever is measured second runs on warmer caches or a quieter neighbour. Timing A
//! and B back to back on each query puts both under the same conditions, and the per-query
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
}
