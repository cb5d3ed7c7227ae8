#!/usr/bin/env python3
"""hnswlib and faiss HNSW on the same data as vectune-bench (run inside .bench/venv).

    python scripts/bench_peers.py --data DIR --metric cosine|l2 [--m 16] [--ec 100] [--efs 10,20,40,80,160]

Prints JSON: per library, build seconds (1 thread and all threads), and per ef_search:
recall@10, single-query p50/p99 µs (one query per call, one thread) and the mean µs per
query of one batch call on one thread (no per-call Python overhead); plus faiss IndexFlat
exact search time on all threads.
"""
import argparse, json, os, time
import numpy as np


def read_vecs(path, dtype):
    a = np.fromfile(path, dtype=np.int32)
    d = a[0]
    return a.reshape(-1, d + 1)[:, 1:].copy().view(dtype)


def pct(xs, p):
    xs = sorted(xs)
    r = max(1, int(np.ceil(p / 100 * len(xs))))
    return xs[r - 1]


def recall(found, truth, k=10):
    return float(np.mean([len(set(f[:k]) & set(t[:k])) / k for f, t in zip(found, truth)]))


def per_query(search, queries):
    for q in queries:  # warm-up pass
        search(q[None, :])
    lat, found = [], []
    for q in queries:
        t = time.perf_counter()
        ids = search(q[None, :])
        lat.append((time.perf_counter() - t) * 1e6)
        found.append(list(ids[0]))
    return found, lat


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--metric", default="cosine")
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--ec", type=int, default=100)
    ap.add_argument("--efs", default="10,20,40,80,160")
    ap.add_argument("--no-serial", action="store_true")
    a = ap.parse_args()
    import faiss
    import hnswlib

    threads = os.cpu_count()
    base = read_vecs(os.path.join(a.data, "base.fvecs"), np.float32)
    queries = read_vecs(os.path.join(a.data, "query.fvecs"), np.float32)
    truth = read_vecs(os.path.join(a.data, "groundtruth.ivecs"), np.int32)
    if a.metric == "cosine":
        base = base / np.linalg.norm(base, axis=1, keepdims=True)
        queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    base, queries = np.ascontiguousarray(base, np.float32), np.ascontiguousarray(queries, np.float32)
    n, d = base.shape
    efs = [int(x) for x in a.efs.split(",")]
    out = {"vectors": n, "dims": d, "queries": len(queries), "threads": threads}

    # exact search (ground truth) with faiss IndexFlat on all threads
    faiss.omp_set_num_threads(threads)
    flat = faiss.IndexFlatIP(d) if a.metric != "l2" else faiss.IndexFlatL2(d)
    flat.add(base)
    t = time.perf_counter()
    _, gt = flat.search(queries, 10)
    out["faiss_flat_secs_all_threads"] = time.perf_counter() - t
    out["faiss_flat_agreement_with_dataset"] = recall(gt.tolist(), truth.tolist())

    # hnswlib
    space = "ip" if a.metric != "l2" else "l2"
    res = {}
    def hl_build(nt):
        idx = hnswlib.Index(space=space, dim=d)
        idx.init_index(max_elements=n, ef_construction=a.ec, M=a.m, random_seed=42)
        t = time.perf_counter()
        idx.add_items(base, np.arange(n), num_threads=nt)
        return idx, time.perf_counter() - t
    hl, res["build_parallel_secs"] = hl_build(threads)
    if not a.no_serial:
        hl, res["build_serial_secs"] = hl_build(1)
    hl.set_num_threads(1)
    rows = []
    for ef in efs:
        hl.set_ef(ef)
        found, lat = per_query(lambda q: hl.knn_query(q, k=10)[0], queries)
        t = time.perf_counter()
        hl.knn_query(queries, k=10, num_threads=1)
        batch = (time.perf_counter() - t) * 1e6 / len(queries)
        rows.append({"ef_search": ef, "recall_at_10": recall(found, truth.tolist()), "p50_us": pct(lat, 50),
                     "p99_us": pct(lat, 99), "batch_mean_us": batch, "qps_1_thread": 1e6 / batch})
    res["search"] = rows
    out["hnswlib"] = res

    # faiss HNSW
    metric = faiss.METRIC_INNER_PRODUCT if a.metric != "l2" else faiss.METRIC_L2
    res = {}
    def fa_build(nt):
        faiss.omp_set_num_threads(nt)
        idx = faiss.IndexHNSWFlat(d, a.m, metric)
        idx.hnsw.efConstruction = a.ec
        t = time.perf_counter()
        idx.add(base)
        return idx, time.perf_counter() - t
    fa, res["build_parallel_secs"] = fa_build(threads)
    if not a.no_serial:
        fa, res["build_serial_secs"] = fa_build(1)
    faiss.omp_set_num_threads(1)
    rows = []
    for ef in efs:
        fa.hnsw.efSearch = ef
        found, lat = per_query(lambda q: fa.search(q, 10)[1], queries)
        t = time.perf_counter()
        fa.search(queries, 10)
        batch = (time.perf_counter() - t) * 1e6 / len(queries)
        rows.append({"ef_search": ef, "recall_at_10": recall(found, truth.tolist()), "p50_us": pct(lat, 50),
                     "p99_us": pct(lat, 99), "batch_mean_us": batch, "qps_1_thread": 1e6 / batch})
    res["search"] = rows
    out["faiss_hnsw"] = res
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
