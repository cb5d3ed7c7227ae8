//! Metrics and the distance kernels every exact computation goes through.
//!
//! Ground truth, the `dot` graph distance and the reported search distances all use these
//! kernels, so "exact" means the same arithmetic everywhere. Cosine is served as a dot
//! product over vectors normalised once at load time (a normalised dot is ~2× cheaper than
//! a cosine that recomputes norms per pair). The kernels are [`crate::kernels`], chosen once
//! per process at run time.

use serde::{Deserialize, Serialize};

use crate::kernels;

/// The similarity an index is searched by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Cosine distance `1 - cos(a, b)`; vectors are normalised once, then compared by dot.
    Cosine,
    /// Euclidean distance `|a - b|`.
    L2,
    /// Negative inner product `-a·b` (maximum inner product search).
    Dot,
}

impl Metric {
    /// Parses the contract's spelling (`cosine`, `l2`, `dot`).
    pub fn parse(s: &str) -> Option<Metric> {
        match s {
            "cosine" => Some(Metric::Cosine),
            "l2" => Some(Metric::L2),
            "dot" => Some(Metric::Dot),
            _ => None,
        }
    }

    /// The contract's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Cosine => "cosine",
            Metric::L2 => "l2",
            Metric::Dot => "dot",
        }
    }

    /// The distance reported to users between two vectors as stored in memory (cosine
    /// vectors are already unit length). Smaller is nearer for every metric.
    #[inline]
    pub fn distance(self, a: &[f32], b: &[f32]) -> f32 {
        match self {
            Metric::Cosine => (1.0 - dot(a, b)).max(0.0),
            Metric::L2 => l2_squared(a, b).sqrt(),
            Metric::Dot => -dot(a, b),
        }
    }

    /// A cheaper key with the same order as [`Metric::distance`] (no square root), for
    /// brute-force ranking.
    #[inline]
    pub fn rank_key(self, a: &[f32], b: &[f32]) -> f32 {
        match self {
            Metric::Cosine | Metric::Dot => -dot(a, b),
            Metric::L2 => l2_squared(a, b),
        }
    }

    /// Converts a [`Metric::rank_key`] into the reported distance.
    #[inline]
    pub fn key_to_distance(self, key: f32) -> f32 {
        match self {
            Metric::Cosine => (1.0 + key).max(0.0),
            Metric::L2 => key.max(0.0).sqrt(),
            Metric::Dot => key,
        }
    }
}

/// Scales `v` to unit length in place. Returns `false` (leaving `v` untouched) for a zero
/// or non-finite norm, which cosine cannot handle.
pub fn normalize(v: &mut [f32]) -> bool {
    let n = dot(v, v).sqrt();
    if !(n.is_finite() && n > 0.0) {
        return false;
    }
    let inv = 1.0 / n;
    v.iter_mut().for_each(|x| *x *= inv);
    true
}

/// Inner product of two equal-length slices, with the process's kernel.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    kernels::dot(a, b)
}

/// Squared Euclidean distance of two equal-length slices, with the process's kernel.
#[inline]
pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    kernels::l2sq(a, b)
}

/// Portable dot product (the reference the SIMD kernels are tested against).
pub use crate::kernels::scalar_dot as dot_scalar;
/// Portable squared Euclidean distance.
pub use crate::kernels::scalar_l2sq as l2_squared_scalar;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn naive_dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
    }

    proptest! {
        #[test]
        fn simd_kernels_match_naive(v in proptest::collection::vec((-10f32..10f32, -10f32..10f32), 0..300)) {
            let a: Vec<f32> = v.iter().map(|p| p.0).collect();
            let b: Vec<f32> = v.iter().map(|p| p.1).collect();
            let want = naive_dot(&a, &b);
            let tol = 1e-3 * (1.0 + a.len() as f64 * 10.0);
            prop_assert!((dot(&a, &b) as f64 - want).abs() < tol);
            prop_assert!((dot_scalar(&a, &b) as f64 - want).abs() < tol);
            let l2: f64 = a.iter().zip(&b).map(|(x, y)| ((*x - *y) as f64).powi(2)).sum();
            prop_assert!((l2_squared(&a, &b) as f64 - l2).abs() < tol * 4.0);
            prop_assert!((l2_squared_scalar(&a, &b) as f64 - l2).abs() < tol * 4.0);
        }
    }

    #[test]
    fn normalize_refuses_zero() {
        let mut z = vec![0.0; 8];
        assert!(!normalize(&mut z));
        let mut v = vec![3.0, 4.0];
        assert!(normalize(&mut v));
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
    }

    #[test]
    fn rank_key_orders_like_distance() {
        let q = [1.0, 2.0, -1.0];
        let xs = [[0.5, 1.0, 0.0], [2.0, 2.0, 2.0], [-1.0, 0.0, 3.0]];
        for m in [Metric::L2, Metric::Dot] {
            let mut by_key: Vec<usize> = (0..3).collect();
            by_key.sort_by(|&i, &j| m.rank_key(&q, &xs[i]).total_cmp(&m.rank_key(&q, &xs[j])));
            let mut by_dist: Vec<usize> = (0..3).collect();
            by_dist.sort_by(|&i, &j| m.distance(&q, &xs[i]).total_cmp(&m.distance(&q, &xs[j])));
            assert_eq!(by_key, by_dist);
            for x in &xs {
                let d = m.key_to_distance(m.rank_key(&q, x));
                assert!((d - m.distance(&q, x)).abs() < 1e-5);
            }
        }
    }
}
