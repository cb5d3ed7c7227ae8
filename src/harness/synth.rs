//! A seeded Gaussian-mixture data set with exact ground truth: the scale bench's data
//! (1M × 128, 1M × 384) made inside the project, the same bytes for the same seed on any
//! machine, so a figure measured on it can be re-measured elsewhere without shipping GBs.
//!
//! Why this shape. i.i.d. Gaussian vectors have no structure (no graph index reaches .95
//! at usual degrees on them), while embeddings lie near low-dimensional pieces of their
//! space. So each of `components` mixture components is a centre plus a Gaussian on its own
//! `latent`-dimensional subspace (a random map into `dims`), plus a little isotropic noise:
//! many clusters, each locally low-dimensional. Queries are fresh draws from the same
//! mixture (never rows of the base). Ground truth is the exact L2 top-`k` of each query,
//! computed by [`ground_truth::exact`], best first.

use std::io::Write;

use crate::distance::Metric;
use crate::harness::ground_truth;
use crate::rng::SplitMix64;
use crate::vectors::QueryError;
use crate::vectors::VectorSet;

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynthSpec {
    /// Base vectors.
    pub n: usize,
    /// Query vectors (drawn apart from the base).
    pub queries: usize,
    /// Dimensions.
    pub dims: usize,
    /// Mixture components.
    pub components: usize,
    /// Dimensions of each component's subspace.
    pub latent: usize,
    /// Neighbours of each query in the ground truth.
    pub k: usize,
    /// Seed of everything.
    pub seed: u64,
}

impl SynthSpec {
    /// The scale bench's set: `n` × `dims`, 1,000 queries with their exact top 100, 100
    /// components on 12-d subspaces, seed 42.
    pub fn scale(n: usize, dims: usize) -> SynthSpec {
        SynthSpec {
            n,
            queries: 1000,
            dims,
            components: 100,
            latent: 12,
            k: 100,
            seed: 42,
        }
    }
}

/// A generated set.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthSet {
    /// Dimensions.
    pub dims: usize,
    /// Base rows, `n × dims`, row-major.
    pub base: Vec<f32>,
    /// Query rows, `queries × dims`.
    pub queries: Vec<f32>,
    /// Each query's exact L2 neighbours (base row numbers), best first.
    pub truth: Vec<Vec<u32>>,
}

/// Why a set cannot be generated.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// A size of zero, or `k` above `n`.
    #[error("invalid synth spec: {0}")]
    Spec(&'static str),
    /// Ground truth failed.
    #[error(transparent)]
    Truth(#[from] QueryError),
}

/// One standard normal draw (Box–Muller on two uniforms; one of the pair is dropped, so a
/// draw's value depends only on the stream's position).
fn gauss(r: &mut SplitMix64) -> f32 {
    let u = ((r.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64;
    let v = (r.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
}

/// The mixture: centres, and each component's map from its subspace.
struct Mixture {
    dims: usize,
    latent: usize,
    centres: Vec<f32>,
    maps: Vec<f32>,
}

impl Mixture {
    fn new(spec: &SynthSpec, r: &mut SplitMix64) -> Mixture {
        let (d, l, c) = (spec.dims, spec.latent, spec.components);
        // centres spread wider than a component (subspace variance ≈ 1 per dimension)
        let centres = (0..c * d).map(|_| 2.0 * gauss(r)).collect();
        let scale = 1.0 / (l as f32).sqrt();
        let maps = (0..c * l * d).map(|_| scale * gauss(r)).collect();
        Mixture {
            dims: d,
            latent: l,
            centres,
            maps,
        }
    }

    /// Appends `count` draws to `out`.
    fn draw(&self, count: usize, r: &mut SplitMix64, out: &mut Vec<f32>) {
        let (d, l) = (self.dims, self.latent);
        let components = self.centres.len() / d;
        let mut z = vec![0f32; l];
        out.reserve(count * d);
        for _ in 0..count {
            let j = r.below(components);
            for x in z.iter_mut() {
                *x = gauss(r);
            }
            let centre = &self.centres[j * d..(j + 1) * d];
            let map = &self.maps[j * l * d..(j + 1) * l * d];
            let start = out.len();
            out.extend_from_slice(centre);
            let row = &mut out[start..];
            for (zi, m) in z.iter().zip(map.chunks_exact(d)) {
                for (x, w) in row.iter_mut().zip(m) {
                    *x += zi * w;
                }
            }
            for x in row.iter_mut() {
                *x += 0.1 * gauss(r);
            }
        }
    }
}

/// Generates the set `spec` describes (the same bytes for the same spec).
pub fn generate(spec: &SynthSpec) -> Result<SynthSet, SynthError> {
    if spec.n == 0 || spec.queries == 0 || spec.dims == 0 || spec.components == 0 || spec.latent == 0 {
        return Err(SynthError::Spec(
            "n, queries, dims, components and latent must be positive",
        ));
    }
    if spec.k == 0 || spec.k > spec.n {
        return Err(SynthError::Spec("k must be in 1..=n"));
    }
    let mut r = SplitMix64::new(spec.seed);
    let mixture = Mixture::new(spec, &mut r);
    let mut base = Vec::new();
    mixture.draw(spec.n, &mut r, &mut base);
    let mut queries = Vec::new();
    mixture.draw(spec.queries, &mut r, &mut queries);
    let ids = (0..spec.n).map(|i| i.to_string()).collect();
    let set = VectorSet::from_rows(spec.dims, Metric::L2, ids, base);
    let qs: Vec<Vec<f32>> = queries.chunks_exact(spec.dims).map(<[f32]>::to_vec).collect();
    let truth = ground_truth::exact(&set, &qs, spec.k)?;
    Ok(SynthSet {
        dims: spec.dims,
        base: set.data().to_vec(),
        queries,
        truth,
    })
}

/// Writes rows of `dims` floats as fvecs (per row: little-endian i32 dims, then the floats).
pub fn write_fvecs(w: &mut impl Write, rows: &[f32], dims: usize) -> std::io::Result<()> {
    let head = (dims as i32).to_le_bytes();
    let mut line = Vec::with_capacity(4 + 4 * dims);
    for row in rows.chunks_exact(dims) {
        line.clear();
        line.extend_from_slice(&head);
        for x in row {
            line.extend_from_slice(&x.to_le_bytes());
        }
        w.write_all(&line)?;
    }
    Ok(())
}

/// Writes neighbour lists as ivecs (per row: little-endian i32 length, then the ids).
pub fn write_ivecs(w: &mut impl Write, rows: &[Vec<u32>]) -> std::io::Result<()> {
    for row in rows {
        w.write_all(&(row.len() as i32).to_le_bytes())?;
        for x in row {
            w.write_all(&x.to_le_bytes())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(seed: u64) -> SynthSpec {
        SynthSpec {
            n: 3000,
            queries: 40,
            dims: 24,
            components: 10,
            latent: 4,
            k: 10,
            seed,
        }
    }

    fn l2(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
    }

    /// The same spec gives the same bytes; another seed another set; shapes as asked.
    #[test]
    fn the_same_seed_gives_the_same_set() {
        let a = generate(&small(7)).unwrap();
        assert_eq!(a, generate(&small(7)).unwrap());
        assert_ne!(a.base, generate(&small(8)).unwrap().base);
        assert_eq!(
            (a.base.len(), a.queries.len(), a.truth.len()),
            (3000 * 24, 40 * 24, 40)
        );
        assert!(a.truth.iter().all(|t| t.len() == 10));
        assert!(a.base.iter().chain(&a.queries).all(|x| x.is_finite()));
    }

    /// The ground truth is the exact top k by a plain scalar scan, best first, and queries
    /// are not base rows.
    #[test]
    fn ground_truth_is_exact() {
        let s = generate(&small(3)).unwrap();
        for (q, truth) in s.queries.chunks_exact(24).zip(&s.truth) {
            let mut all: Vec<(f32, u32)> = s
                .base
                .chunks_exact(24)
                .enumerate()
                .map(|(i, row)| (l2(q, row), i as u32))
                .collect();
            all.sort_by(|a, b| a.0.total_cmp(&b.0));
            let kth = all[9].0;
            let got: Vec<f32> = truth
                .iter()
                .map(|&i| l2(q, &s.base[i as usize * 24..][..24]))
                .collect();
            assert!(
                got.windows(2).all(|w| w[0] <= w[1] * (1.0 + 1e-5)),
                "best first: {got:?}"
            );
            assert!(got[9] <= kth * (1.0 + 1e-5) + 1e-6, "{} vs {kth}", got[9]);
            assert!(all[0].0 > 0.0, "a query is never a base row");
        }
    }

    /// Clustered, and locally low-dimensional: a row's nearest neighbour is much nearer
    /// than a random row (i.i.d. noise would put them at about the same distance).
    #[test]
    fn the_set_has_structure() {
        let s = generate(&small(5)).unwrap();
        let mut r = SplitMix64::new(1);
        let (mut near, mut far) = (0f64, 0f64);
        for (q, truth) in s.queries.chunks_exact(24).zip(&s.truth) {
            near += l2(q, &s.base[truth[0] as usize * 24..][..24]) as f64;
            let j = r.below(3000);
            far += l2(q, &s.base[j * 24..][..24]) as f64;
        }
        assert!(near * 10.0 < far, "nearest {near} vs random {far}");
    }

    /// The files are what ingest and the bench read: fvecs parses back through the
    /// service's own binary parser to the same rows.
    #[test]
    fn files_round_trip_through_the_ingest_parser() {
        let s = generate(&small(2)).unwrap();
        let mut body = Vec::new();
        write_fvecs(&mut body, &s.base, 24).unwrap();
        let back =
            crate::vectors::binary::parse(crate::vectors::binary::BinaryFormat::Fvecs, &body, 24).unwrap();
        assert_eq!(back, s.base);
        let mut ivecs = Vec::new();
        write_ivecs(&mut ivecs, &s.truth).unwrap();
        assert_eq!(ivecs.len(), 40 * (4 + 4 * 10));
        assert_eq!(&ivecs[..4], &10i32.to_le_bytes());
    }

    #[test]
    fn a_bad_spec_is_refused() {
        for bad in [
            SynthSpec { n: 0, ..small(1) },
            SynthSpec { k: 0, ..small(1) },
            SynthSpec { k: 3001, ..small(1) },
            SynthSpec { dims: 0, ..small(1) },
            SynthSpec {
                components: 0,
                ..small(1)
            },
        ] {
            assert!(matches!(generate(&bad), Err(SynthError::Spec(_))), "{bad:?}");
        }
    }
}
