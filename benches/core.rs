//! Criterion benches for the hot pieces: distance kernels, segment decode, exact ground
//! truth, graph build and search. Fixed seeds; compare figures as ratios within one run.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use vectune::distance::{dot, dot_scalar, l2_squared, Metric};
use vectune::harness::ground_truth;
use vectune::hnsw::{build, store, BuildOptions};
use vectune::kernels;
use vectune::params::{Engine, HnswConfig, Quantization};
use vectune::rng::SplitMix64;
use vectune::vectors::binary::{self, BinaryFormat};
use vectune::vectors::{segment, VectorSet};

fn rows(n: usize, dims: usize, seed: u64) -> Vec<f32> {
    let mut r = SplitMix64::new(seed);
    (0..n * dims)
        .map(|_| (r.next_u64() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0)
        .collect()
}

fn set(n: usize, dims: usize, metric: Metric) -> VectorSet {
    VectorSet::from_rows(
        dims,
        metric,
        (0..n).map(|i| i.to_string()).collect(),
        rows(n, dims, 7),
    )
}

/// Every kernel this CPU supports (the bench names say which ran).
fn distance_kernels(c: &mut Criterion) {
    let a = rows(1, 384, 1);
    let b = rows(1, 384, 2);
    let codes: Vec<u8> = a.iter().map(|x| ((x + 1.0) * 127.0) as u8).collect();
    let weights: Vec<i8> = b.iter().map(|x| (x * 63.0) as i8).collect();
    for level in kernels::supported() {
        c.bench_function(&format!("dot_384_{level}"), |x| {
            x.iter(|| kernels::dot_at(level, black_box(&a), black_box(&b)))
        });
        c.bench_function(&format!("l2sq_384_{level}"), |x| {
            x.iter(|| kernels::l2sq_at(level, black_box(&a), black_box(&b)))
        });
        c.bench_function(&format!("dot_u8i8_384_{level}"), |x| {
            x.iter(|| kernels::dot_u8i8_at(level, black_box(&codes), black_box(&weights)))
        });
    }
    // the process's own dispatch, as every caller sees it
    c.bench_function("dot_384_dispatched", |x| {
        x.iter(|| dot(black_box(&a), black_box(&b)))
    });
    c.bench_function("l2sq_384_dispatched", |x| {
        x.iter(|| l2_squared(black_box(&a), black_box(&b)))
    });
    c.bench_function("dot_384_scalar_fn", |x| {
        x.iter(|| dot_scalar(black_box(&a), black_box(&b)))
    });
}

fn segments(c: &mut Criterion) {
    let (n, dims) = (10_000, 384);
    let ids: Vec<String> = (0..n).map(|i| format!("doc-{i}")).collect();
    let bytes = segment::encode(dims, &ids, &rows(n, dims, 3));
    c.bench_function("segment_decode_10k_x_384", |x| {
        x.iter(|| segment::decode(black_box(&bytes)).unwrap())
    });
}

fn binary_ingest(c: &mut Criterion) {
    let (n, dims) = (10_000, 384);
    let data = rows(n, dims, 5);
    let mut body = Vec::with_capacity(n * (4 + dims * 4));
    for r in data.chunks_exact(dims) {
        body.extend_from_slice(&(dims as i32).to_le_bytes());
        r.iter().for_each(|x| body.extend_from_slice(&x.to_le_bytes()));
    }
    c.bench_function("fvecs_parse_10k_x_384", |x| {
        x.iter(|| binary::parse(BinaryFormat::Fvecs, black_box(&body), dims).unwrap())
    });
}

fn exact(c: &mut Criterion) {
    let s = set(10_000, 384, Metric::Cosine);
    let queries: Vec<Vec<f32>> = (0..64).map(|i| s.row(i * 37).to_vec()).collect();
    let mut g = c.benchmark_group("ground_truth_10k_x_384_64q_k10");
    g.sample_size(10);
    g.bench_function("1_thread", |x| {
        x.iter(|| ground_truth::exact_with_threads(&s, &queries, 10, 1))
    });
    g.bench_function("all_threads", |x| {
        x.iter(|| ground_truth::exact(&s, &queries, 10))
    });
    g.finish();
}

fn graphs(c: &mut Criterion) {
    let s = set(5_000, 64, Metric::Cosine);
    let cfg = HnswConfig::new(80, 30, 16, 42).unwrap();
    let mut g = c.benchmark_group("hnsw_5k_x_64");
    g.sample_size(10);
    for (name, opts) in [
        (
            "native_1_thread",
            BuildOptions {
                engine: Engine::Native,
                threads: 1,
            },
        ),
        ("native_all_cores", BuildOptions::all_cores()),
        (
            "hnsw_rs_serial",
            BuildOptions {
                engine: Engine::HnswRs,
                threads: 1,
            },
        ),
    ] {
        g.bench_function(format!("build_m16_ec80_{name}"), |x| {
            x.iter(|| build(&s, 5_000, cfg, opts))
        });
    }
    let graph = build(&s, 5_000, cfg, BuildOptions::all_cores());
    let bytes = store::encode(&graph);
    g.bench_function("stored_graph_decode", |x| {
        x.iter(|| store::decode(black_box(&bytes), &s, 5_000, cfg, Engine::Native).unwrap())
    });
    let sq8 = build(
        &s,
        5_000,
        cfg.with_quantization(Quantization::Sq8),
        BuildOptions::all_cores(),
    );
    let queries: Vec<Vec<f32>> = (0..64).map(|i| s.row(i * 71).to_vec()).collect();
    for (name, graph) in [("f32", &graph), ("sq8", &sq8)] {
        for ef in [10, 40, 160] {
            g.bench_function(format!("search_{name}_k10_ef{ef}"), |x| {
                let mut i = 0;
                x.iter(|| {
                    i = (i + 1) % queries.len();
                    graph.search(&s, black_box(&queries[i]), 10, ef)
                })
            });
        }
    }
    g.finish();
}

/// A served search through the service at monitor sample_rate 0 and 0.01 (10k × 384 cosine,
/// default config): what the live recall monitor costs the request path. The sampled
/// searches' exact re-runs happen on the runtime's blocking threads meanwhile.
fn monitored_search(c: &mut Criterion) {
    use vectune::names::IndexName;
    use vectune::service::Vectune;
    use vectune::vectors::{Dims, NewVector};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let name = IndexName::parse("bench".to_string()).expect("name");
    let data = rows(10_000, 384, 11);
    let svc = rt.block_on(async {
        let svc = Vectune::open(
            vectune::storage::Storage::in_memory(),
            1,
            BuildOptions::all_cores(),
        )
        .await
        .expect("open");
        svc.create_index(name.clone(), Dims::parse(384).expect("dims"), Metric::Cosine)
            .await
            .expect("index");
        let batch = data
            .chunks(384)
            .enumerate()
            .map(|(i, v)| NewVector {
                id: format!("v{i}"),
                vector: v.to_vec(),
            })
            .collect();
        svc.append(&name, batch).await.expect("append");
        svc.activate(&name).await.expect("activate");
        svc
    });
    let queries = rows(500, 384, 12);
    for rate in [0.0, 0.01] {
        rt.block_on(svc.set_monitor(&name, Some(rate), None))
            .expect("monitor");
        let mut i = 0;
        c.bench_function(&format!("service_search_384_monitor_{rate}"), |x| {
            x.iter(|| {
                i = (i + 1) % 500;
                let q = &queries[i * 384..(i + 1) * 384];
                black_box(svc.search(&name, black_box(q), 10, None).expect("search"))
            })
        });
    }
}

criterion_group!(
    benches,
    distance_kernels,
    segments,
    binary_ingest,
    exact,
    graphs,
    monitored_search
);
criterion_main!(benches);
