#!/usr/bin/env python3
"""Measures the service core over HTTP on a real data set (stdlib only).

Starts target/release/vectune on a free loopback port with a temp store, then:
JSON ingest rate (batches of --batch), exact ground truth for the set's queries (explicit
harness, k=10), HNSW activation build time, and single-client HTTP search latency
(p50/p99 over the queries) with recall@10 against the set's own exact ground truth.

    python3 scripts/measure_core.py [--data ../shared/data/pydocs-minilm-384] [--bin target/release/vectune]
"""
import argparse, json, os, socket, statistics, struct, subprocess, sys, tempfile, time, urllib.request


def read_vecs(path, fmt):
    out = []
    with open(path, "rb") as f:
        data = f.read()
    off = 0
    while off < len(data):
        (d,) = struct.unpack_from("<i", data, off)
        out.append(list(struct.unpack_from(f"<{d}{fmt}", data, off + 4)))
        off += 4 + 4 * d
    return out


def call(base, method, path, body=None, timeout=600):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, json.loads(r.read() or b"null")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data/pydocs-minilm-384")
    ap.add_argument("--bin", default="target/release/vectune")
    ap.add_argument("--batch", type=int, default=1000)
    a = ap.parse_args()
    base_v = read_vecs(os.path.join(a.data, "base.fvecs"), "f")
    queries = read_vecs(os.path.join(a.data, "query.fvecs"), "f")
    gt = read_vecs(os.path.join(a.data, "groundtruth.ivecs"), "i")
    dims = len(base_v[0])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = tempfile.mkdtemp(prefix="vectune-measure-")
    proc = subprocess.Popen([a.bin, "serve", "--bind", f"127.0.0.1:{port}", "--store", store],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                call(base, "GET", "/health")
                break
            except OSError:
                time.sleep(0.1)
        call(base, "POST", "/vectors/indexes", {"name": "m", "dims": dims, "metric": "cosine"})
        bodies = [json.dumps({"vectors": [{"id": str(i), "vector": base_v[i]} for i in range(s, min(s + a.batch, len(base_v)))]}).encode()
                  for s in range(0, len(base_v), a.batch)]
        t0 = time.perf_counter()
        for b in bodies:
            req = urllib.request.Request(base + "/vectors/indexes/m/vectors", data=b, method="POST")
            req.add_header("Content-Type", "application/json")
            urllib.request.urlopen(req, timeout=600).read()
        ingest = time.perf_counter() - t0
        t0 = time.perf_counter()
        _, h = call(base, "POST", "/vectors/harness", {"name": "mq", "index_name": "m", "k": 10,
                                                       "queries": [{"id": f"q{i}", "vector": q} for i, q in enumerate(queries)]})
        harness_wall = time.perf_counter() - t0
        gt_agree = sum(len(set(q["ground_truth"]) & {str(x) for x in g[:10]}) for q, g in zip(h["queries"], gt)) / (10 * len(gt))
        _, act = call(base, "POST", "/vectors/indexes/m/activate")
        lat, found = [], 0
        for q, g in zip(queries, gt):
            body = json.dumps({"vector": q, "k": 10}).encode()
            req = urllib.request.Request(base + "/vectors/search/m", data=body, method="POST")
            req.add_header("Content-Type", "application/json")
            t0 = time.perf_counter()
            with urllib.request.urlopen(req, timeout=60) as r:
                res = json.loads(r.read())
            lat.append((time.perf_counter() - t0) * 1e6)
            found += len({hit["id"] for hit in res["hits"]} & {str(x) for x in g[:10]})
        lat.sort()
        out = {
            "vectors": len(base_v), "dims": dims, "queries": len(queries),
            "json_ingest_vectors_per_sec": round(len(base_v) / ingest),
            "json_ingest_secs": round(ingest, 3),
            "ground_truth_compute_secs": round(h["ground_truth_compute_secs"], 4),
            "harness_request_secs": round(harness_wall, 3),
            "ground_truth_agreement_with_dataset_top10": round(gt_agree, 4),
            "activation_config": act["config"],
            "activation_build_time_secs": round(act["build_time_secs"], 3),
            "http_search_p50_us": round(statistics.median(lat)),
            "http_search_p99_us": round(lat[int(0.99 * (len(lat) - 1))]),
            "recall_at_10": round(found / (10 * len(queries)), 4),
        }
        # autotune over the default grid with the set's queries as an explicit harness
        t0 = time.perf_counter()
        _, tune = call(base, "POST", "/vectors/hnsw/autotune", {"index_name": "m", "harness": "mq"})
        out["autotune_wall_secs"] = round(time.perf_counter() - t0, 2)
        out["autotune_duration_secs"] = round(tune["duration_secs"], 2)
        out["autotune_trials"] = tune["trials_run"]
        out["autotune_winner"] = tune["winner"]
        _, trials = call(base, "GET", "/vectors/hnsw/trials/m")
        out["autotune_trials_table"] = [
            {"config": t["config"], "recall": round(t["metrics"]["recall_at_k"], 4),
             "p50_us": round(t["metrics"]["search_latency_p50_us"], 1),
             "p99_us": round(t["metrics"]["search_latency_p99_us"], 1),
             "build_secs": round(t["metrics"]["build_time_secs"], 2),
             "brute_force_us": round(t["metrics"]["brute_force_latency_us"], 1),
             "memory_mb": round(t["metrics"]["memory_bytes"] / 2**20, 1)}
            for t in trials["trials"]]
        # the seed case: 54 gaussian vectors of 64 dims, a 10-query autogen harness
        import random
        rnd = random.Random(7)
        call(base, "POST", "/vectors/indexes", {"name": "seed", "dims": 64, "metric": "cosine"})
        call(base, "POST", "/vectors/indexes/seed/vectors",
             {"vectors": [{"id": f"doc-{i}", "vector": [rnd.gauss(0, 1) for _ in range(64)]} for i in range(54)]})
        call(base, "POST", "/vectors/harness/autogen", {"name": "seed-h", "index_name": "seed", "queries": 10, "k": 10, "seed": 42})
        t0 = time.perf_counter()
        _, tune = call(base, "POST", "/vectors/hnsw/autotune", {"index_name": "seed", "harness": "seed-h"})
        out["seed_autotune_wall_secs"] = round(time.perf_counter() - t0, 4)
        out["seed_autotune_winner"] = tune["winner"]
        print(json.dumps(out, indent=2))
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
