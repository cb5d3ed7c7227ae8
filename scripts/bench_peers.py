#!/usr/bin/env python3
"""One peer library on the same data as vectune-bench (run inside .bench/venv).

    python scripts/bench_peers.py --lib hnswlib|faiss|faiss-sq8|usearch|symqg|svs|scann|glass|flat --data DIR
        --metric cosine|l2
        [--m 16] [--ec 100] [--efs 10,12,...] [--no-serial]

Prints JSON: build seconds at 1 thread and at all cores (the searched index is the 1-thread
one), and per ef_search: recall@10, the batch mean µs/query (one call for all queries on
one thread, after a warm-up pass: the headline, no per-call Python overhead) and the
per-call p50/p99 µs (one query per call, one thread; includes a few µs of Python per call).
`--lib flat` times faiss IndexFlat exact search on all threads instead.
"""
import argparse, json, os, time
import numpy as np


def read_vecs(path, dtype):
    a = np.fromfile(path, dtype=np.int32)
    return a.reshape(-1, a[0] + 1)[:, 1:].copy().view(dtype)


def pct(xs, p):
    xs = sorted(xs)
    return xs[max(1, int(np.ceil(p / 100 * len(xs)))) - 1]


def recall(found, truth, k=10):
    return float(np.mean([len(set(map(int, f[:k])) & set(map(int, t[:k]))) / k for f, t in zip(found, truth)]))


class Hnswlib:
    def __init__(self, a, d, n):
        import hnswlib
        self.mod, self.a, self.d, self.n = hnswlib, a, d, n
        self.version = getattr(hnswlib, "__version__", "0.8.0")

    def build(self, base, threads):
        idx = self.mod.Index(space="ip" if self.a.metric != "l2" else "l2", dim=self.d)
        idx.init_index(max_elements=self.n, ef_construction=self.a.ec, M=self.a.m, random_seed=self.a.seed)
        order = np.arange(self.n) if self.a.seed == 42 else np.random.default_rng(self.a.seed).permutation(self.n)
        idx.add_items(base[order], order, num_threads=threads)
        idx.set_num_threads(1)
        return idx

    def set_ef(self, idx, ef):
        idx.set_ef(ef)

    def search(self, idx, q):
        return idx.knn_query(q, k=10, num_threads=1)[0]


class Faiss:
    def __init__(self, a, d, n):
        import faiss
        self.mod, self.a, self.d = faiss, a, d
        self.version = faiss.__version__

    def build(self, base, threads):
        f = self.mod
        f.omp_set_num_threads(threads)
        idx = self.index(base, f.METRIC_INNER_PRODUCT if self.a.metric != "l2" else f.METRIC_L2)
        idx.add(base)
        f.omp_set_num_threads(1)
        return idx

    def index(self, base, metric):
        idx = self.mod.IndexHNSWFlat(self.d, self.a.m, metric)
        idx.hnsw.efConstruction = self.a.ec
        return idx

    def set_ef(self, idx, ef):
        idx.hnsw.efSearch = ef

    def search(self, idx, q):
        return idx.search(q, 10)[1]


class Usearch:
    def __init__(self, a, d, n):
        import usearch
        from usearch.index import Index
        self.Index, self.a, self.d, self.n = Index, a, d, n
        self.version = usearch.__version__

    def build(self, base, threads):
        idx = self.Index(ndim=self.d, metric="ip" if self.a.metric != "l2" else "l2sq", dtype="f32",
                         connectivity=self.a.m, expansion_add=self.a.ec, expansion_search=10)
        idx.add(np.arange(self.n), base, threads=threads)
        return idx

    def set_ef(self, idx, ef):
        idx.expansion_search = ef

    def search(self, idx, q):
        return idx.search(q, 10, threads=1).keys.reshape(len(q), -1)


class FaissSq8(Faiss):
    """faiss HNSW over SQ8 codes (IndexHNSWSQ, 8-bit) with an exact re-rank (IndexRefineFlat)
    of `k_factor` × 10 candidates: faiss's own quantized-graph-plus-refine mode."""

    def index(self, base, metric):
        f = self.mod
        inner = f.IndexHNSWSQ(self.d, f.ScalarQuantizer.QT_8bit, self.a.m, metric)
        inner.hnsw.efConstruction = self.a.ec
        inner.train(base)
        self.inner = inner  # the refine index does not own it
        return f.IndexRefineFlat(inner)

    def set_ef(self, idx, ef):
        self.params = self.mod.IndexRefineSearchParameters(k_factor=1.5)
        self.params.base_index_params = self.mod.SearchParametersHNSW(efSearch=ef)

    def search(self, idx, q):
        return idx.search(q, 10, params=self.params)[1]


class Symqg:
    """rabitqlib's SymqgIndex (SymphonyQG: 1-bit RaBitQ codes of each node's neighbours in its
    block, FastScan), degree 2·m rounded to its multiple of 32 (the paper's default 32 for
    m 16), searched with num_threads=1."""

    def __init__(self, a, d, n):
        import rabitqlib
        from importlib.metadata import version
        self.mod, self.a, self.d = rabitqlib, a, d
        self.version = version("rabitqlib")
        self.degree = max(32, (2 * a.m + 31) // 32 * 32)

    def build(self, base, threads):
        metric = "ip" if self.a.metric != "l2" else "l2"
        idx = self.mod.SymqgIndex(self.d, self.degree, metric)
        idx.build(base, self.a.ec, num_threads=threads)
        return idx

    def set_ef(self, idx, ef):
        self.ef = max(ef, 10)

    def search(self, idx, q):
        return np.asarray(idx.search_batch(q, 10, self.ef, num_threads=1)[0]).reshape(len(q), -1)


class Svs:
    """Intel SVS (scalable-vs) Vamana over float32, degree 2·m, window ef_construction, one
    search thread."""

    def __init__(self, a, d, n):
        import svs
        from importlib.metadata import version
        self.mod, self.a, self.d = svs, a, d
        self.version = version("scalable-vs")

    def build(self, base, threads):
        s = self.mod
        metric = s.DistanceType.MIP if self.a.metric != "l2" else s.DistanceType.L2
        params = s.VamanaBuildParameters(graph_max_degree=2 * self.a.m, window_size=max(self.a.ec, 2 * self.a.m + 1))
        idx = s.Vamana.build(params, base, metric, num_threads=threads)
        idx.num_threads = 1
        return idx

    def set_ef(self, idx, ef):
        idx.search_window_size = max(ef, 10)

    def search(self, idx, q):
        return idx.search(q, 10)[0]


class Scann:
    """ScaNN (tree + asymmetric hashing + exact reorder), searched with search_batched (one
    thread); its knob is leaves searched, so "ef" maps to leaves = ef / 2 of 2·sqrt(n)."""

    def __init__(self, a, d, n):
        import scann
        from importlib.metadata import version
        self.mod, self.a, self.d, self.n = scann, a, d, n
        self.version = version("scann")

    def build(self, base, threads):
        leaves = int(2 * np.sqrt(self.n))
        b = self.mod.scann_ops_pybind.builder(base, 10, "dot_product" if self.a.metric != "l2" else "squared_l2")
        b = b.tree(num_leaves=leaves, num_leaves_to_search=max(1, leaves // 20), training_sample_size=min(self.n, 250_000))
        b = b.score_ah(2, anisotropic_quantization_threshold=0.2).reorder(100)
        b.set_n_training_threads(threads)
        return b.build()

    def set_ef(self, idx, ef):
        self.leaves = max(1, ef // 2)

    def search(self, idx, q):
        return idx.search_batched(q, leaves_to_search=self.leaves, pre_reorder_num_neighbors=100)[0]


class Glass:
    """glass (zilliztech/pyglass, built from source with -march=native): HNSW built on SQ8U
    codes, degree R = 2·m, L = ef_construction, searched on SQ4U codes with an FP32 re-rank,
    `batch_search(num_threads=1)`. Optional: absent unless built (scripts/build_glass.sh)."""

    def __init__(self, a, d, n):
        import glass
        self.mod, self.a, self.d = glass, a, d
        self.version = getattr(glass, "__version__", "2.1.0")

    def build(self, base, threads):
        g = self.mod
        g.set_num_threads(threads)
        metric = "IP" if self.a.metric != "l2" else "L2"
        # glass prints its progress on stdout, which carries this script's JSON: to stderr
        saved = os.dup(1)
        os.dup2(2, 1)
        try:
            graph = g.Index(index_type="HNSW", metric=metric, quant="SQ8U", R=2 * self.a.m, L=self.a.ec).build(base)
            searcher = g.Searcher(graph, base, metric, "SQ4U", "FP32")
            searcher.optimize(1)
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        g.set_num_threads(1)
        return searcher

    def set_ef(self, idx, ef):
        idx.set_ef(ef)

    def search(self, idx, q):
        return np.asarray(idx.batch_search(q, 10, num_threads=1)[0]).reshape(len(q), -1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", required=True, choices=("hnswlib", "faiss", "faiss-sq8", "usearch", "symqg", "svs", "scann", "glass",
                                                     "flat"))
    ap.add_argument("--data", required=True)
    ap.add_argument("--metric", default="cosine")
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--ec", type=int, default=100)
    ap.add_argument("--efs", default="10,20,40,80,160")
    ap.add_argument("--no-serial", action="store_true")
    ap.add_argument("--seed", type=int, default=42,
                    help="hnswlib: its level seed, and rows inserted in a permutation drawn from it (42: in row order)")
    a = ap.parse_args()
    threads = os.cpu_count()
    base = read_vecs(os.path.join(a.data, "base.fvecs"), np.float32)
    queries = read_vecs(os.path.join(a.data, "query.fvecs"), np.float32)
    truth = read_vecs(os.path.join(a.data, "groundtruth.ivecs"), np.int32)
    if a.metric == "cosine":
        base = base / np.linalg.norm(base, axis=1, keepdims=True)
        queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    base, queries = np.ascontiguousarray(base, np.float32), np.ascontiguousarray(queries, np.float32)
    n, d = base.shape
    out = {"lib": a.lib, "vectors": n, "dims": d, "queries": len(queries), "threads": threads}
    if a.lib == "flat":
        import faiss
        faiss.omp_set_num_threads(threads)
        flat = faiss.IndexFlatIP(d) if a.metric != "l2" else faiss.IndexFlatL2(d)
        flat.add(base)
        t = time.perf_counter()
        _, gt = flat.search(queries, 10)
        out["faiss_flat_secs_all_threads"] = time.perf_counter() - t
        out["faiss_flat_agreement_with_dataset"] = recall(gt, truth)
        print(json.dumps(out))
        return
    lib = {"hnswlib": Hnswlib, "faiss": Faiss, "faiss-sq8": FaissSq8, "usearch": Usearch, "symqg": Symqg,
           "svs": Svs, "scann": Scann, "glass": Glass}[a.lib](a, d, n)
    out["version"] = lib.version
    t = time.perf_counter()
    idx = lib.build(base, threads)
    out["build_parallel_secs"] = time.perf_counter() - t
    if not a.no_serial:
        del idx
        t = time.perf_counter()
        idx = lib.build(base, 1)
        out["build_serial_secs"] = time.perf_counter() - t
    rows = []
    for ef in (int(x) for x in a.efs.split(",")):
        lib.set_ef(idx, ef)
        lib.search(idx, queries)  # warm-up pass
        t, cpu = time.perf_counter(), time.process_time()
        found = lib.search(idx, queries)  # each query once, one call
        wall = time.perf_counter() - t
        batch = wall * 1e6 / len(queries)
        # one search thread: the process's CPU time over the call is its wall time, not more
        cpu_over_wall = (time.process_time() - cpu) / wall
        lat = []
        for q in queries:
            t = time.perf_counter()
            lib.search(idx, q[None, :])
            lat.append((time.perf_counter() - t) * 1e6)
        rows.append({"ef_search": ef, "recall_at_10": recall(found, truth), "mean_us": batch,
                     "cpu_over_wall": round(cpu_over_wall, 2),
                     "p50_us": pct(lat, 50), "p99_us": pct(lat, 99)})
    out["search"] = rows
    print(json.dumps(out))


if __name__ == "__main__":
    main()
