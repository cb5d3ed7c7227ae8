//! The rotation, the codes' estimates against exact keys, the block's layout.

use super::*;
use crate::distance::Metric;
use crate::hnsw::tests::random_set;
use crate::hnsw::{build, BuildOptions};
use crate::kernels::{run_at, supported, Task};
use crate::params::{HnswConfig, Quantization};
use crate::vectors::VectorSet;

/// `H x` by its definition (`H[i][j] = (-1)^popcount(i & j)`), O(n²).
fn hadamard_naive(x: &[f32]) -> Vec<f32> {
    (0..x.len())
        .map(|i| {
            x.iter()
                .enumerate()
                .map(|(j, &v)| if (i & j).count_ones() % 2 == 0 { v } else { -v })
                .sum()
        })
        .collect()
}

#[test]
fn the_fast_hadamard_is_the_hadamard() {
    let mut r = SplitMix64::new(3);
    for n in [1usize, 2, 4, 8, 64, 128, 256] {
        let x: Vec<f32> = (0..n).map(|_| r.below(2001) as f32 / 1000.0 - 1.0).collect();
        let mut fast = x.clone();
        hadamard(&mut fast);
        for (a, b) in fast.iter().zip(hadamard_naive(&x)) {
            assert!((a - b).abs() < 1e-4, "n {n}: {a} vs {b}");
        }
    }
}

/// Orthogonal: norms and inner products survive (so exact keys and the estimator's identity
/// `⟨ō, R(q - u)⟩ = ⟨ō, Rq⟩ - ⟨ō, Ru⟩` hold), zero-padded to a multiple of 64; one seed,
/// one rotation.
#[test]
fn the_rotation_is_orthogonal_padded_and_seeded() {
    let mut r = SplitMix64::new(5);
    for dims in [1usize, 7, 48, 64, 100, 128, 384, 769] {
        let rot = Rotation::new(dims, 9);
        assert_eq!(rot.padded() % 64, 0);
        assert!(rot.padded() >= dims && rot.padded() < dims + 64);
        let a: Vec<f32> = (0..dims).map(|_| r.below(2001) as f32 / 1000.0 - 1.0).collect();
        let b: Vec<f32> = (0..dims).map(|_| r.below(2001) as f32 / 1000.0 - 1.0).collect();
        let (mut ra, mut rb) = (Vec::new(), Vec::new());
        rot.apply(&a, &mut ra);
        rot.apply(&b, &mut rb);
        assert_eq!(ra.len(), rot.padded());
        let dot = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(p, q)| (p * q) as f64).sum::<f64>();
        let tol = 1e-4 * dims as f64;
        assert!((dot(&a, &b) - dot(&ra, &rb)).abs() < tol, "dims {dims}");
        assert!((dot(&a, &a) - dot(&ra, &ra)).abs() < tol, "dims {dims}");
        assert_eq!(rot, Rotation::new(dims, 9));
        assert_ne!(rot.signs, Rotation::new(dims, 10).signs, "dims {dims}");
    }
}

/// The default config's graph of `set` with RaBitQ blocks.
fn rabitq_graph(set: &VectorSet) -> crate::hnsw::Graph {
    let cfg = HnswConfig {
        quantization: Quantization::Rabitq,
        ..HnswConfig::DEFAULT
    };
    build(set, set.len(), cfg, BuildOptions::all_cores())
}

/// Its blocks.
fn blocks(g: &crate::hnsw::Graph) -> &Rabitq {
    match &g.reads {
        crate::hnsw::Reads::Blocks(rq) => rq,
        _ => panic!("rabitq blocks"),
    }
}

/// Scores one node's block with kernel `level`.
struct Score<'a> {
    rq: &'a Rabitq,
    lut: &'a QueryLut,
    node: u32,
    du: f32,
}
impl Task for Score<'_> {
    type Output = Vec<(f32, f32)>;
    fn run<K: Kernel>(self, k: K) -> Vec<(f32, f32)> {
        let mut out = Vec::new();
        self.rq.score(k, self.lut, self.node, self.du, |_, key, err| {
            out.push((key, err))
        });
        out
    }
}

/// Every edge's estimated key against its exact key, from a query near the data: unbiased
/// (the mean error is a small fraction of its spread), within RaBitQ's bound (error of the
/// inner product ≤ ε₀·|r|·|q - u|·√((1 - ⟨ō,r̂⟩²)/⟨ō,r̂⟩²)/√(P - 1), ε₀ = 3.0: all but a
/// handful of thousands), and the same on every kernel level. The bound the beam carries
/// with each estimate (ε₀ = 1.9, the largest edge factor, the table's rounding at the same
/// confidence) holds for all but a few in a thousand: it is what lets the beam skip the
/// exact key of a node that cannot enter the top k.
#[test]
fn estimates_are_unbiased_and_within_the_bound_on_every_level() {
    for metric in [Metric::L2, Metric::Cosine, Metric::Dot] {
        for dims in [48usize, 128] {
            let set = random_set(600, dims, metric, 21);
            let g = rabitq_graph(&set);
            let rq = blocks(&g);
            let l2 = metric == Metric::L2;
            let key = |a: &[f32], b: &[f32]| {
                if l2 {
                    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f32>()
                } else {
                    -a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>()
                }
            };
            let mut r = SplitMix64::new(dims as u64);
            let (mut errs, mut outside, mut edges) = (Vec::new(), 0, 0);
            let mut beyond = 0;
            for _ in 0..20 {
                let q = set.prepare_query(set.row(r.below(set.len()))).expect("query");
                let mut lut = QueryLut::default();
                rq.prepare(&q, &mut lut);
                for node in (0..set.len() as u32).step_by(7) {
                    let du = key(&q, set.row(node as usize));
                    let want: Vec<Vec<(f32, f32)>> = supported()
                        .into_iter()
                        .map(|lv| {
                            run_at(
                                lv,
                                Score {
                                    rq,
                                    lut: &lut,
                                    node,
                                    du,
                                },
                            )
                        })
                        .collect();
                    assert!(
                        want.windows(2).all(|w| w[0] == w[1]),
                        "{metric:?} {dims}: levels differ"
                    );
                    let nbs = g.frozen().neighbours(node, 0);
                    assert_eq!(want[0].len(), nbs.len());
                    let u = set.row(node as usize);
                    let qu: f32 = q
                        .iter()
                        .zip(u)
                        .map(|(a, b)| (a - b) * (a - b))
                        .sum::<f32>()
                        .sqrt();
                    for (&nb, &(est, carried)) in nbs.iter().zip(&want[0]) {
                        let v = set.row(nb as usize);
                        let exact = key(&q, v);
                        let (mut ru, mut rv) = (Vec::new(), Vec::new());
                        rq.rot.apply(u, &mut ru);
                        rq.rot.apply(v, &mut rv);
                        let d: Vec<f32> = rv.iter().zip(&ru).map(|(a, b)| a - b).collect();
                        let norm = d.iter().map(|x| x * x).sum::<f32>().sqrt();
                        let rho = d.iter().map(|x| x.abs()).sum::<f32>() / (norm * (d.len() as f32).sqrt());
                        let p = rq.rot.padded() as f32;
                        let alpha = if l2 { 2.0 } else { 1.0 };
                        let bound = alpha * 3.0 * norm * qu * ((1.0 - rho * rho) / (rho * rho)).sqrt()
                            / (p - 1.0).sqrt();
                        // the table's rounding: half a step per nibble group
                        let rounding = alpha * norm / rho * (p / 4.0) * 0.5 * lut.s1 / 2.0;
                        let err = est - exact;
                        errs.push(err as f64 / (norm * qu).max(1e-6) as f64);
                        if err.abs() > bound + rounding + 1e-3 {
                            outside += 1;
                        }
                        if err.abs() > carried + 1e-4 {
                            beyond += 1;
                        }
                        edges += 1;
                    }
                }
            }
            let n = errs.len() as f64;
            let mean = errs.iter().sum::<f64>() / n;
            let sd = (errs.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / n).sqrt();
            assert!(
                mean.abs() < 0.25 * sd + 0.01,
                "{metric:?} {dims}: mean {mean} sd {sd}"
            );
            assert!(
                outside * 500 <= edges,
                "{metric:?} {dims}: {outside} of {edges} outside the bound"
            );
            eprintln!("{metric:?} {dims}: {beyond} of {edges} beyond the carried bound");
            assert!(
                beyond * 50 <= edges,
                "{metric:?} {dims}: {beyond} of {edges} beyond the carried bound"
            );
        }
    }
}

/// A block holds the node's row, then its neighbours' codes, factors and ids; the ids are
/// the layer-0 links, in order; the nodes above layer 0 have their rows together too.
#[test]
fn a_block_holds_the_row_and_the_links() {
    let set = random_set(300, 40, Metric::L2, 4);
    let g = rabitq_graph(&set);
    let rq = blocks(&g);
    assert_eq!(rq.block_bytes() % 64, 0);
    for node in 0..set.len() as u32 {
        let b = rq.block(node);
        assert_eq!(b.as_ptr() as usize % 64, 0);
        assert_eq!(f32s(&b[..40 * 4]), set.row(node as usize));
        let nbs = g.frozen().neighbours(node, 0);
        let at = rq.at.ids;
        assert_eq!(u32s(&b[at..at + 4])[0] as usize, nbs.len());
        assert_eq!(u32s(&b[at + 4..at + 4 + 4 * nbs.len()]), nbs);
    }
    assert!(rq.block(set.len() as u32).is_empty());
    let upper: Vec<u32> = (0..set.len() as u32)
        .filter(|&x| g.frozen().upper_start[x as usize] != crate::hnsw::frozen::NONE)
        .collect();
    assert!(!upper.is_empty());
    for x in 0..set.len() as u32 {
        assert_eq!(rq.upper_row(x), upper.contains(&x).then(|| set.row(x as usize)));
    }
    assert_eq!(
        rq.memory_bytes(),
        set.len() * rq.block_bytes() + (upper.len() * 40 + set.len() + rq.rot.padded()) * 4
    );
}

/// One layer-0 beam from the graph's entry, with a kernel level; its `found`.
struct Walk<'a> {
    rq: &'a Rabitq,
    lut: &'a QueryLut,
    query: &'a [f32],
    entry: u32,
    l2: bool,
    ef: usize,
}
impl Task for Walk<'_> {
    type Output = Vec<Cand>;
    fn run<K: Kernel>(self, kernel: K) -> Vec<Cand> {
        let key = |row: &[f32]| {
            if self.l2 {
                kernel.l2sq(self.query, row)
            } else {
                -kernel.dot(self.query, row)
            }
        };
        let start = (
            self.entry,
            key(f32s(&self.rq.block(self.entry)[..self.rq.dims * 4])),
        );
        let (mut beam, mut found, mut evals) = (Beam::default(), Vec::new(), 0);
        self.rq.beam(
            kernel,
            self.lut,
            start,
            (10, self.ef, Patience::OFF),
            &mut beam,
            &mut found,
            &key,
            &mut evals,
        );
        found
    }
}

/// The error bound's use: a node whose estimate minus its bound exceeds the k-th best exact
/// key met is expanded without its exact key. Against the same beam measuring every node:
/// every key returned is still exact, fewer nodes are measured (at `ef` 200, k 10: about
/// 3 in 10 skipped here), and the 10 nearest found are the same but for a few queries in a
/// hundred.
#[test]
fn skipping_exact_keys_that_cannot_enter_the_top_k_keeps_the_results() {
    use crate::hnsw::tests::clustered_set;
    for metric in [Metric::L2, Metric::Cosine, Metric::Dot] {
        let set = clustered_set(3000, 64, metric, 8);
        let g = rabitq_graph(&set);
        let rq = blocks(&g);
        assert!(rq.skip_exact, "the default");
        let mut measuring = rq.clone();
        measuring.skip_exact = false;
        let l2 = metric == Metric::L2;
        let mut r = SplitMix64::new(77);
        let (mut measured, mut all, mut differ) = (0usize, 0usize, 0usize);
        let queries = 100;
        for _ in 0..queries {
            let row = set.row(r.below(set.len()));
            let noisy: Vec<f32> = row
                .iter()
                .map(|x| x + (r.below(1001) as f32 / 1000.0 - 0.5) * 0.2)
                .collect();
            let q = set.prepare_query(&noisy).expect("query");
            let mut lut = QueryLut::default();
            rq.prepare(&q, &mut lut);
            let walk = |rq| Walk {
                rq,
                lut: &lut,
                query: &q,
                entry: g.frozen().entry,
                l2,
                ef: 200,
            };
            let lv = *supported().last().expect("a level");
            let mut skipping = run_at(lv, walk(rq));
            let mut full = run_at(lv, walk(&measuring));
            for c in &skipping {
                let row = set.row(c.1 as usize);
                let want = if l2 {
                    row.iter().zip(&q).map(|(a, b)| (a - b) * (a - b)).sum::<f32>()
                } else {
                    -row.iter().zip(&q).map(|(a, b)| a * b).sum::<f32>()
                };
                assert!(
                    (c.0 - want).abs() <= 1e-3 * want.abs().max(1.0),
                    "{metric:?}: a key not exact"
                );
            }
            measured += skipping.len();
            all += full.len();
            skipping.sort_unstable();
            full.sort_unstable();
            let top = |v: &[Cand]| v.iter().take(10).map(|c| c.1).collect::<Vec<_>>();
            if top(&skipping) != top(&full) {
                differ += 1;
            }
        }
        assert!(
            measured * 10 < all * 9,
            "{metric:?}: {measured} of {all} measured"
        );
        assert!(
            differ * 100 <= queries * 5,
            "{metric:?}: {differ} of {queries} differ"
        );
    }
}
