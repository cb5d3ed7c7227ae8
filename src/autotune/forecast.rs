//! How long a build will take, from the builds a run has measured: what the budget checks
//! before a build starts (a build is never stopped for the budget, so a forecast that runs
//! short overruns it, and one that runs long refuses builds that would have fitted).
//!
//! Why a fitted law and not seconds per `m × ef_construction`: build time grows slower than
//! either. Measured on this project's 1M × 128 grid (20 builds, 2 threads, Zen 4) it goes as
//! `m^0.26 · ef_construction^0.78` (every build within 13 % of that law), so the seconds per
//! unit of the run's cheapest build — usually its first, `m` 8 — over-forecast a sample's
//! m 24 / efC 160 by 1.6–2.3× at 1M (286–368 s for 159–162 s builds): with a 600 s budget
//! (270 s kept for the first full build) the sample's climb could not have explored the very
//! graph that won at 900 s. So the
//! exponents are fitted to the run's own builds by least squares on logs, clamped to what
//! an insertion's work allows ([`M_EXPONENT`], [`EC_EXPONENT`]), and the law is scaled to
//! the **slowest** build relative to it: every build seen would have been forecast at
//! least at its own time. Until the builds vary in both `m` and `ef_construction` (three at
//! least), the exponents stay 1: the old per-unit rule, which over-forecasts upward.

use crate::params::Engine;

/// Range of the fitted `m` exponent: an insertion evaluates at most `2m` links per node
/// expanded (linear), and a noisy fit on a few small builds must not make larger graphs
/// look nearly free.
pub const M_EXPONENT: (f64, f64) = (0.25, 1.0);
/// Range of the fitted `ef_construction` exponent: the beam's work is at most linear in it.
pub const EC_EXPONENT: (f64, f64) = (0.5, 1.0);

/// How much longer a build on `full` rows takes than the same build on `sample` rows:
/// `(full / sample)^1.3`. Each insertion searches a graph whose depth grows with `log n`
/// (`n log n` would say 12× from 100k to 1M), and the larger graph no longer sits in the
/// cache: measured here from the 100,000-row sample to the 1M index, the default config's
/// build took 17.5× as long and m 24 / efC 160's 17.7–21×. The exponent sits at the high end
/// (10^1.3 ≈ 20), so the first full build is rarely forecast short.
pub fn size_scale(sample: usize, full: usize) -> f64 {
    (full.max(1) as f64 / sample.max(1) as f64).powf(1.3)
}

/// How much longer the same build takes by `to` than by `from`: 1.75 from the native
/// builder on SQ8 codes (a sample's, [`crate::autotune::transfer::sample_engine`]) to the
/// native one on the rows, else 1. Measured at 100k × 128: 1.6–1.95× on Zen 4 with VNNI
/// (m 8–24, efC 40–160), 1.26× on an AVX2-only Zen 3. Without it the first 1M full build's
/// forecast ran 28 % short; with 2 it ran 42–58 % long (the law's envelope already leans
/// long), with 1.75 about a quarter. The two factors split differently by machine and
/// only their product (here 10^1.3 × 1.75 ≈ 35) reaches the forecast: on an AVX2-only Zen 3
/// the codes were 1.15–1.25× at 100k (m 24 / efC 160) and the size step 10^1.43 (7.5 s →
/// 201 s), a product of ~39, and the envelope still forecast that build at 225 s (12 % long).
pub fn builder_scale(from: Engine, to: Engine) -> f64 {
    match (from, to) {
        (Engine::NativeSq8, Engine::Native) => 1.75,
        _ => 1.0,
    }
}

/// The builds seen at one size and the law fitted to them.
#[derive(Debug, Clone, Default)]
pub struct BuildForecast {
    /// `(ln m, ln ef_construction, ln secs)` of each build.
    seen: Vec<[f64; 3]>,
}

impl BuildForecast {
    /// Records a build of `(m, ef_construction)` that took `secs` (ignored unless positive).
    pub fn observe(&mut self, m: u32, ef_construction: u32, secs: f64) {
        if secs > 0.0 && secs.is_finite() && m > 0 && ef_construction > 0 {
            let (m, ec) = (f64::from(m).ln(), f64::from(ef_construction).ln());
            self.seen.push([m, ec, secs.ln()]);
        }
    }

    /// Whether a build was seen.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Seconds a build of `(m, ef_construction)` is forecast to take; 0 before any build
    /// was seen (the first build is always started).
    pub fn secs(&self, m: u32, ef_construction: u32) -> f64 {
        let Some((a, b, c)) = self.law() else {
            return 0.0;
        };
        (c + a * f64::from(m.max(1)).ln() + b * f64::from(ef_construction.max(1)).ln()).exp()
    }

    /// The law `ln secs = c + a·ln m + b·ln ef_construction`: the exponents fitted (or 1),
    /// `c` the envelope over every build seen.
    fn law(&self) -> Option<(f64, f64, f64)> {
        if self.seen.is_empty() {
            return None;
        }
        let (a, b) = self.exponents().unwrap_or((1.0, 1.0));
        let c = self
            .seen
            .iter()
            .map(|[m, ec, t]| t - a * m - b * ec)
            .fold(f64::NEG_INFINITY, f64::max);
        Some((a, b, c))
    }

    /// Least-squares exponents over the builds seen, clamped; `None` while the builds do
    /// not vary in both dimensions independently (fewer than three, or on one line).
    fn exponents(&self) -> Option<(f64, f64)> {
        let n = self.seen.len();
        if n < 3 {
            return None;
        }
        let mean = |i: usize| self.seen.iter().map(|s| s[i]).sum::<f64>() / n as f64;
        let (mm, me, mt) = (mean(0), mean(1), mean(2));
        let (mut sxx, mut syy, mut sxy, mut sxt, mut syt) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for [m, ec, t] in &self.seen {
            let (x, y, z) = (m - mm, ec - me, t - mt);
            sxx += x * x;
            syy += y * y;
            sxy += x * y;
            sxt += x * z;
            syt += y * z;
        }
        let det = sxx * syy - sxy * sxy;
        // collinear or constant in one dimension: the exponents are not identified
        if det <= 1e-9 * (sxx * syy).max(1e-12) {
            return None;
        }
        let a = (syy * sxt - sxy * syt) / det;
        let b = (sxx * syt - sxy * sxt) / det;
        Some((
            a.clamp(M_EXPONENT.0, M_EXPONENT.1),
            b.clamp(EC_EXPONENT.0, EC_EXPONENT.1),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn law(builds: &[(u32, u32)], f: impl Fn(f64, f64) -> f64) -> BuildForecast {
        let mut fc = BuildForecast::default();
        for &(m, ec) in builds {
            fc.observe(m, ec, f(f64::from(m), f64::from(ec)));
        }
        fc
    }

    /// The sample builds of a real 1M run's climb (its lattice points).
    const CLIMB: [(u32, u32); 8] = [
        (8, 80),
        (16, 80),
        (32, 80),
        (32, 40),
        (24, 80),
        (24, 40),
        (24, 160),
        (16, 160),
    ];

    #[test]
    fn nothing_seen_forecasts_nothing_and_bad_readings_are_ignored() {
        let mut fc = BuildForecast::default();
        assert!(fc.is_empty());
        assert_eq!(fc.secs(16, 80), 0.0);
        fc.observe(16, 80, 0.0);
        fc.observe(16, 80, f64::NAN);
        fc.observe(0, 80, 3.0);
        assert!(fc.is_empty());
    }

    #[test]
    fn a_law_inside_the_clamps_is_recovered_from_the_climbs_builds() {
        let truth = |m: f64, ec: f64| 0.05 * m.powf(0.4) * ec.powf(0.75);
        let fc = law(&CLIMB, truth);
        for (m, ec) in [(32, 160), (24, 320), (48, 320), (8, 40)] {
            let (f, t) = (fc.secs(m, ec), truth(f64::from(m), f64::from(ec)));
            assert!((f / t - 1.0).abs() < 1e-9, "{m}/{ec}: {f} vs {t}");
        }
    }

    /// Noise on the builds: every build seen is forecast at least at its own time (the
    /// envelope), and a larger graph no more than the noise above its truth — where the
    /// per-unit rule over-forecasts it ~3×.
    #[test]
    fn the_envelope_never_forecasts_a_seen_build_short() {
        let noise = [1.08, 0.95, 1.02, 0.9, 1.1, 0.97, 1.05, 0.93];
        let truth = |m: f64, ec: f64| 0.05 * m.powf(0.4) * ec.powf(0.75);
        let mut fc = BuildForecast::default();
        let mut per_unit = 0f64;
        for (&(m, ec), n) in CLIMB.iter().zip(noise) {
            let t = truth(f64::from(m), f64::from(ec)) * n;
            fc.observe(m, ec, t);
            per_unit = per_unit.max(t / (f64::from(m) * f64::from(ec)));
            assert!(fc.secs(m, ec) >= t * (1.0 - 1e-9), "{m}/{ec}");
        }
        let (f, t) = (fc.secs(32, 160), truth(32.0, 160.0));
        assert!(f >= t && f <= t * 1.35, "{f} vs {t}");
        assert!(
            per_unit * 32.0 * 160.0 > t * 2.5,
            "the old rule: {}",
            per_unit * 32.0 * 160.0
        );
    }

    /// Out of the clamps: a law steeper than linear is forecast with exponent 1 and the
    /// envelope (it can only under-forecast beyond what was seen, so the budget check is
    /// the old per-unit one); a flat one with the least exponents allowed.
    #[test]
    fn exponents_are_clamped_to_what_an_insertion_allows() {
        let steep = law(&CLIMB, |m, ec| 1e-4 * m.powf(1.5) * ec.powf(1.2));
        let per_unit = CLIMB
            .iter()
            .map(|&(m, ec)| 1e-4 * f64::from(m).powf(0.5) * f64::from(ec).powf(0.2))
            .fold(0f64, f64::max);
        assert!((steep.secs(32, 160) / (per_unit * 32.0 * 160.0) - 1.0).abs() < 1e-9);
        let flat = law(&CLIMB, |_, _| 5.0);
        let f = flat.secs(64, 640);
        let want = 5.0 * (64f64 / 8.0).powf(M_EXPONENT.0) * (640f64 / 40.0).powf(EC_EXPONENT.0);
        assert!(f <= want * (1.0 + 1e-9) && f > 5.0, "{f} vs {want}");
    }

    /// Builds along one line (or fewer than three) do not identify two exponents: the
    /// per-unit rule, from the dearest build per unit.
    #[test]
    fn unidentified_exponents_fall_back_to_the_per_unit_rule() {
        let truth = |m: f64, ec: f64| 0.05 * m.powf(0.4) * ec.powf(0.75);
        for builds in [
            &[(16, 80)][..],
            &[(8, 80), (16, 80)],
            &[(8, 40), (16, 80), (32, 160)],
        ] {
            let fc = law(builds, truth);
            let per_unit = builds
                .iter()
                .map(|&(m, ec)| truth(f64::from(m), f64::from(ec)) / (f64::from(m) * f64::from(ec)))
                .fold(0f64, f64::max);
            let f = fc.secs(24, 160);
            assert!(
                (f / (per_unit * 24.0 * 160.0) - 1.0).abs() < 1e-9,
                "{builds:?}: {f}"
            );
        }
    }

    #[test]
    fn only_a_build_on_codes_forecasts_a_build_on_rows_longer() {
        assert_eq!(builder_scale(Engine::NativeSq8, Engine::Native), 1.75);
        for (a, b) in [
            (Engine::Native, Engine::Native),
            (Engine::NativeSq8, Engine::NativeSq8),
            (Engine::HnswRs, Engine::HnswRs),
        ] {
            assert_eq!(builder_scale(a, b), 1.0);
        }
    }

    #[test]
    fn a_full_build_scales_a_little_past_n_log_n() {
        assert!((size_scale(1000, 1000) - 1.0).abs() < 1e-12);
        let s = size_scale(100_000, 1_000_000);
        // n log n says 12; measured 17.5-21
        assert!((s - 10f64.powf(1.3)).abs() < 1e-9 && s > 12.0, "{s}");
    }
}
