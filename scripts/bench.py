#!/usr/bin/env python3
"""The benchmark: vectune beside hnswlib and faiss on the same data and machine, in one run.

Run through scripts/bench.sh (which builds the release binaries and the Python venv).
Writes .bench/results.json and the generated section of BENCHMARKS.md.
Data: ../shared/data/pydocs-minilm-384 (cosine) and a synthetic 100k x 128 L2 set made here
with numpy's default_rng(42): a 12-d latent gaussian through a fixed random 12x128 map plus
noise 0.1 (exact top-100 ground truth from faiss IndexFlatL2).
"""
import argparse, datetime, json, os, platform, re, signal, socket, subprocess, sys, tempfile, time
import urllib.request

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, ".bench")
BIN = os.path.join(ROOT, "target/release/vectune")
DRIVER = os.path.join(ROOT, "target/release/vectune-bench")
EFS = "10,20,40,80,160"


def log(*a):
    print("[bench]", *a, file=sys.stderr, flush=True)


def write_vecs(path, a):
    a = np.ascontiguousarray(a)
    n, d = a.shape
    out = np.empty((n, d + 1), dtype=np.int32)
    out[:, 0] = d
    out[:, 1:] = a.view(np.int32)
    out.tofile(path)


def read_vecs(path, dtype):
    a = np.fromfile(path, dtype=np.int32)
    return a.reshape(-1, a[0] + 1)[:, 1:].copy().view(dtype)


def synth(n=100_000, d=128, nq=1000):
    path = os.path.join(BENCH, f"synth-{n // 1000}k-{d}-latent12")
    if os.path.exists(os.path.join(path, "groundtruth.ivecs")):
        return path
    import faiss
    os.makedirs(path, exist_ok=True)
    # i.i.d. gaussian 128-d data has no structure at all (no ANN index reaches recall .95 at
    # M=16 on it); like real embeddings, this set lies near a low-dimensional manifold:
    # a 12-d gaussian latent mapped to 128-d by a fixed random matrix, plus small noise.
    rng = np.random.default_rng(42)
    proj = rng.standard_normal((12, d)).astype(np.float32)
    def draw(m):
        z = rng.standard_normal((m, 12)).astype(np.float32)
        return (z @ proj + 0.1 * rng.standard_normal((m, d))).astype(np.float32)
    base, q = draw(n), draw(nq)
    flat = faiss.IndexFlatL2(d)
    flat.add(base)
    _, gt = flat.search(q, 100)
    write_vecs(os.path.join(path, "base.fvecs"), base)
    write_vecs(os.path.join(path, "query.fvecs"), q)
    write_vecs(os.path.join(path, "groundtruth.ivecs"), gt.astype(np.int32))
    return path


def run_json(cmd):
    log(" ".join(cmd))
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


class Server:
    def __init__(self, store):
        self.store, self.proc = store, None

    def start(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.base = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen([BIN, "serve", "--bind", f"127.0.0.1:{port}", "--store", self.store],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.t0 = time.perf_counter()
        while True:
            try:
                self.call("GET", "/health")
                return
            except OSError:
                time.sleep(0.01)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)

    def call(self, method, path, body=None, raw=None, timeout=3600):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Content-Type", "application/octet-stream" if raw is not None else "application/json")
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read() or b"null")

    def rss_mib(self):
        vals = {}
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS", "VmHWM")):
                    k, v = line.split(":")
                    vals[k] = int(v.split()[0]) / 1024
        return vals


def ingest_fvecs(srv, index, path):
    body = open(path, "rb").read()
    t = time.perf_counter()
    r = srv.call("POST", f"/vectors/indexes/{index}/vectors?format=fvecs", raw=body)
    return time.perf_counter() - t, r, len(body)


def promote_config(srv, index, harness, m, ec, es):
    t = srv.call("POST", "/vectors/hnsw/trial", {"index_name": index, "harness": harness,
                                                 "config": {"m": m, "ef_construction": ec, "ef_search": es}})
    srv.call("POST", f"/vectors/hnsw/promote/{index}/{t['id']}?promoted_by=bench")
    return t


def wait_active(srv, index):
    while True:
        i = srv.call("GET", f"/vectors/indexes/{index}")
        if i["active"]:
            return
        time.sleep(0.005)


def http_part(data):
    """pydocs over HTTP: ingest rates, activation, HTTP search, restart-to-serving."""
    store = tempfile.mkdtemp(prefix="vectune-bench-", dir=BENCH)
    srv = Server(store)
    srv.start()
    out = {}
    base = read_vecs(os.path.join(data, "base.fvecs"), np.float32)
    queries = read_vecs(os.path.join(data, "query.fvecs"), np.float32)
    d = base.shape[1]
    # JSON ingest, batches of 1000
    srv.call("POST", "/vectors/indexes", {"name": "json", "dims": d, "metric": "cosine"})
    bodies = [json.dumps({"vectors": [{"id": str(i), "vector": base[i].tolist()} for i in range(s, min(s + 1000, len(base)))]}).encode()
              for s in range(0, len(base), 1000)]
    t = time.perf_counter()
    for b in bodies:
        req = urllib.request.Request(srv.base + "/vectors/indexes/json/vectors", data=b, method="POST")
        req.add_header("Content-Type", "application/json")
        urllib.request.urlopen(req).read()
    out["json_ingest_vectors_per_sec"] = len(base) / (time.perf_counter() - t)
    # 30k x 384 fvecs in one body (the pydocs base three times)
    big = os.path.join(BENCH, "pydocs-x3.fvecs")
    write_vecs(big, np.concatenate([base, base, base]))
    srv.call("POST", "/vectors/indexes", {"name": "bulk30k", "dims": d, "metric": "cosine"})
    secs, r, size = ingest_fvecs(srv, "bulk30k", big)
    out["fvecs_ingest_30k_secs"] = secs
    out["fvecs_ingest_bytes"] = size
    # the measured index
    srv.call("POST", "/vectors/indexes", {"name": "py", "dims": d, "metric": "cosine"})
    secs, r, _ = ingest_fvecs(srv, "py", os.path.join(data, "base.fvecs"))
    out["fvecs_ingest_10k_secs"] = secs
    h = srv.call("POST", "/vectors/harness", {"name": "pyq", "index_name": "py", "k": 10,
                                             "queries": [{"vector": q.tolist()} for q in queries]})
    out["harness_ground_truth_secs"] = h["ground_truth_compute_secs"]
    promote_config(srv, "py", "pyq", 16, 100, 40)
    a = srv.call("POST", "/vectors/indexes/py/activate")
    out["activation_build_secs"] = a["build_time_secs"]
    out["activation_loaded_from_store"] = a["loaded_from_store"]
    hr = run_json([DRIVER, "http", "--base", srv.base, "--index", "py", "--data", data, "--efs", EFS])
    out["http"], out["http_floor_p50_us"] = hr["http"], hr["floor_p50_us"]
    srv.stop()
    # restart: until the index serves again (graph loaded from the store)
    srv.start()
    wait_active(srv, "py")
    out["restart_to_serving_secs"] = time.perf_counter() - srv.t0
    a = srv.call("POST", "/vectors/indexes/py/activate")
    out["reactivation_secs"] = a["build_time_secs"]
    out["reactivation_loaded_from_store"] = a["loaded_from_store"]
    srv.stop()
    return out


def scale_part(data):
    """100k x 128: ingest -> ground truth -> autotune -> activation, time and RSS of each."""
    store = tempfile.mkdtemp(prefix="vectune-scale-", dir=BENCH)
    srv = Server(store)
    srv.start()
    stages = []
    def stage(name, secs, **extra):
        stages.append(dict(stage=name, secs=round(secs, 3), **{k: round(v, 1) for k, v in srv.rss_mib().items()}, **extra))
        log(stages[-1])
    stage("start", time.perf_counter() - srv.t0)
    srv.call("POST", "/vectors/indexes", {"name": "s", "dims": 128, "metric": "l2"})
    secs, _, _ = ingest_fvecs(srv, "s", os.path.join(data, "base.fvecs"))
    stage("ingest (fvecs, one body)", secs)
    queries = read_vecs(os.path.join(data, "query.fvecs"), np.float32)
    t = time.perf_counter()
    h = srv.call("POST", "/vectors/harness", {"name": "sq", "index_name": "s", "k": 10,
                                             "queries": [{"vector": q.tolist()} for q in queries]})
    stage("harness + exact ground truth (1000 queries)", time.perf_counter() - t,
          ground_truth_secs=h["ground_truth_compute_secs"])
    t = time.perf_counter()
    r = srv.call("POST", "/vectors/hnsw/autotune", {"index_name": "s", "harness": "sq"})
    stage("autotune (default grid, 5 trials)", time.perf_counter() - t, winner=str(r["winner"] and r["winner"]["config"]),
          winner_recall=r["winner"] and r["winner"]["recall_at_k"])
    t = time.perf_counter()
    a = srv.call("POST", "/vectors/indexes/s/activate")
    stage("activation (parallel build, stored)", time.perf_counter() - t, serving_mib=a["memory_bytes"] / 2**20)
    mem = a["memory_bytes"]
    rss = srv.rss_mib()["VmRSS"]
    srv.stop()
    srv.start()
    wait_active(srv, "s")
    restart = time.perf_counter() - srv.t0
    stage("restart to serving (graph from the store)", restart)
    rss_restart = srv.rss_mib()["VmRSS"]
    srv.stop()
    raw = 100_000 * 128 * 4
    return {"stages": stages, "serving_bytes": mem, "raw_f32_bytes": raw,
            "rss_after_activation_mib": rss, "rss_after_restart_mib": rss_restart,
            "rss_ratio": (rss * 2 ** 20 / mem) if mem else None,
            "activation_build_secs": a["build_time_secs"]}


def interp_p50(rows, target=0.95, key="p50_us"):
    """p50 at recall = target, linear between the ef points around it (None if never reached)."""
    pts = sorted((r["recall_at_10"], r[key]) for r in rows)
    for (r0, p0), (r1, p1) in zip(pts, pts[1:]):
        if r0 < target <= r1:
            return p0 + (p1 - p0) * (target - r0) / (r1 - r0) if r1 > r0 else p1
    if pts and pts[0][0] >= target:
        return pts[0][1]
    return None


def fmt(x, nd=1):
    return "–" if x is None else (f"{x:.{nd}f}" if isinstance(x, float) else str(x))


def report(res):
    cpu = next((l.split(":", 1)[1].strip() for l in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
                if l.startswith("Model name")), platform.processor())
    lines = ["<!-- bench:start (generated by scripts/bench.sh; edits here are overwritten) -->",
             "## Serving, builds, ground truth and ingest against hnswlib and faiss (issue 5)", "",
             f"- Machine: {cpu}, {os.cpu_count()} cores; date {datetime.date.today()}; command `scripts/bench.sh`.",
             f"- Peers: hnswlib {res['versions']['hnswlib']}, faiss-cpu {res['versions']['faiss']}, numpy {res['versions']['numpy']}, same process model (one query per call, one thread).",
             "- M=16, ef_construction=100, seed 42, k=10. Ratios are vectune / peer (below 1 = vectune faster).", ""]
    for name, r in res["sets"].items():
        v, p = r["vectune"], r["peers"]
        lines += [f"### {name} ({v['vectors']:,} × {v['dims']}, {v['metric']}, {v['queries']} queries)", "",
                  "| ef_search | vectune recall | vectune p50 µs | vectune p99 µs | hnswlib recall | hnswlib p50 µs | faiss recall | faiss p50 µs | p50 vs hnswlib | p50 vs faiss | vectune QPS (1 thread) | hnswlib QPS | faiss QPS |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for a, b, c in zip(v["search"], p["hnswlib"]["search"], p["faiss_hnsw"]["search"]):
            lines.append(f"| {a['ef_search']} | {a['recall_at_10']:.4f} | {a['p50_us']:.1f} | {a['p99_us']:.1f} | {b['recall_at_10']:.4f} | {b['p50_us']:.1f} | {c['recall_at_10']:.4f} | {c['p50_us']:.1f} | {a['p50_us'] / b['p50_us']:.2f} | {a['p50_us'] / c['p50_us']:.2f} | {a['qps_1_thread']:.0f} | {b['qps_1_thread']:.0f} | {c['qps_1_thread']:.0f} |")
        e = {k: interp_p50(x) for k, x in (("v", v["search"]), ("h", p["hnswlib"]["search"]), ("f", p["faiss_hnsw"]["search"]))}
        eb = {k: interp_p50(x, key="batch_mean_us") for k, x in (("h", p["hnswlib"]["search"]), ("f", p["faiss_hnsw"]["search"]))}
        ev = interp_p50(v["search"], key="mean_us")
        lines += ["", f"At equal recall@10 = 0.95 (p50 interpolated between ef points): vectune {fmt(e['v'])} µs, hnswlib {fmt(e['h'])} µs, faiss {fmt(e['f'])} µs"
                  + (f" → **{e['v'] / e['h']:.2f}× hnswlib, {e['v'] / e['f']:.2f}× faiss**." if None not in e.values() else "."),
                  f"Same without per-call Python overhead (mean µs of one batch call on one thread vs vectune's mean): vectune {fmt(ev)}, hnswlib {fmt(eb['h'])}, faiss {fmt(eb['f'])}"
                  + (f" → {ev / eb['h']:.2f}× hnswlib, {ev / eb['f']:.2f}× faiss." if None not in (ev, eb['h'], eb['f']) else "."), ""]
        ser = lambda x: x.get("build_serial_secs")
        lines += ["| build | vectune s | hnswlib s | faiss s | vs hnswlib | vs faiss |", "|---|---|---|---|---|---|"]
        for label, key in (("1 thread", "build_serial_secs"), (f"{v['threads']} threads", "build_parallel_secs")):
            a, b, c = v.get(key), p["hnswlib"].get(key), p["faiss_hnsw"].get(key)
            if a and b and c:
                lines.append(f"| {label} | {a:.2f} | {b:.2f} | {c:.2f} | {a / b:.2f} | {a / c:.2f} |")
        lines += ["", f"Exact ground truth ({v['queries']} queries, k=10, {v['threads']} threads): vectune {v['ground_truth_secs_all_threads']:.3f} s "
                  f"(1 thread {v['ground_truth_secs_1_thread']:.3f} s), faiss IndexFlat {p['faiss_flat_secs_all_threads']:.3f} s → "
                  f"**{v['ground_truth_secs_all_threads'] / p['faiss_flat_secs_all_threads']:.2f}× faiss**; agreement with the set's own top-10: "
                  f"vectune {v['ground_truth_agreement_with_dataset']:.4f}, faiss {p['faiss_flat_agreement_with_dataset']:.4f}.",
                  f"Serving memory: vectors {v['vector_bytes'] / 2**20:.1f} MiB + frozen graph {v['graph_bytes'] / 2**20:.1f} MiB. "
                  f"Recall of a parallel-built graph at the same ef: "
                  + ", ".join(f"ef {x['ef_search']}: {x['recall_at_10_parallel_build']:.4f}" for x in v["search"]) + ".", ""]
    h = res.get("http")
    if h:
        v = res["sets"]["pydocs-minilm-384"]["vectune"]["search"]
        lines += ["### Over HTTP (pydocs-minilm-384, one keep-alive connection, Rust client)", "",
                  "| ef_search | recall | HTTP p50 µs | HTTP p99 µs | in-process p50 µs | HTTP overhead µs |", "|---|---|---|---|---|---|"]
        for a, b in zip(h["http"], v):
            lines.append(f"| {a['ef_search']} | {a['recall_at_10']:.4f} | {a['p50_us']:.1f} | {a['p99_us']:.1f} | {b['p50_us']:.1f} | {a['p50_us'] - b['p50_us']:.1f} |")
        lines += ["", f"- HTTP floor on this machine (p50 of a request the server answers with no work, same client and connection): {h['http_floor_p50_us']:.1f} µs; "
                  "the rest of the overhead is parsing the 384 floats of the body and writing the answer.",
                  f"- JSON ingest: {h['json_ingest_vectors_per_sec']:,.0f} vectors/s (batches of 1,000, Python client).",
                  f"- fvecs ingest: 30,000 × 384 ({h['fvecs_ingest_bytes'] / 2**20:.1f} MiB, one body) in **{h['fvecs_ingest_30k_secs']:.3f} s**; 10,000 × 384 in {h['fvecs_ingest_10k_secs']:.3f} s.",
                  f"- Activation (parallel build, graph stored): {h['activation_build_secs']:.2f} s; restart to serving (graph loaded from the store, vectors from segments): "
                  f"**{h['restart_to_serving_secs']:.3f} s = {h['restart_to_serving_secs'] / h['activation_build_secs']:.3f}× the build**; "
                  f"activation of the same config and vectors again: {h['reactivation_secs']:.3f} s (loaded_from_store={str(h['reactivation_loaded_from_store']).lower()}).", ""]
    s = res.get("scale")
    if s:
        lines += ["### Scale run: synthetic 100k × 128 (L2) end to end over HTTP", "", "| stage | seconds | RSS MiB | peak RSS MiB | notes |", "|---|---|---|---|---|"]
        for st in s["stages"]:
            notes = ", ".join(f"{k}={v}" for k, v in st.items() if k not in ("stage", "secs", "VmRSS", "VmHWM"))
            lines.append(f"| {st['stage']} | {st['secs']} | {st.get('VmRSS')} | {st.get('VmHWM')} | {notes} |")
        if s["serving_bytes"]:
            lines += ["", f"Raw f32 + frozen graph = {s['serving_bytes'] / 2**20:.1f} MiB. RSS of the server that ingested, tuned and activated: "
                      f"{s['rss_after_activation_mib']:.1f} MiB → **{s['rss_ratio']:.2f}×**; RSS of a fresh process that loaded and activated the index "
                      f"(restart): {s['rss_after_restart_mib']:.1f} MiB → **{s['rss_after_restart_mib'] * 2**20 / s['serving_bytes']:.2f}×**."]
    lines.append("<!-- bench:end -->")
    text = "\n".join(lines) + "\n"
    path = os.path.join(ROOT, "BENCHMARKS.md")
    old = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    if "<!-- bench:start" in old:
        old = re.sub(r"<!-- bench:start.*?<!-- bench:end -->\n?", lambda _: text, old, flags=re.S)
    else:
        old = old.rstrip("\n") + "\n\n" + text
    open(path, "w").write(old)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pydocs", default=os.path.join(ROOT, "../shared/data/pydocs-minilm-384"))
    ap.add_argument("--skip-synth", action="store_true")
    ap.add_argument("--skip-scale", action="store_true")
    a = ap.parse_args()
    import faiss, hnswlib
    res = {"versions": {"hnswlib": getattr(hnswlib, "__version__", "?"), "faiss": faiss.__version__, "numpy": np.__version__},
           "sets": {}}
    sets = [("pydocs-minilm-384", a.pydocs, "cosine", [])]
    if not a.skip_synth:
        sets.append(("synthetic-100k-128", synth(), "l2", []))
    py = os.path.join(BENCH, "venv/bin/python")
    for name, path, metric, extra in sets:
        v = run_json([DRIVER, "inproc", "--data", path, "--metric", metric, "--efs", EFS, *extra])
        p = run_json([py, os.path.join(ROOT, "scripts/bench_peers.py"), "--data", path, "--metric", metric, "--efs", EFS])
        res["sets"][name] = {"vectune": v, "peers": p}
    res["http"] = http_part(a.pydocs)
    if not a.skip_synth and not a.skip_scale:
        res["scale"] = scale_part(synth())
    json.dump(res, open(os.path.join(BENCH, "results.json"), "w"), indent=2)
    report(res)
    log("wrote BENCHMARKS.md and .bench/results.json")


if __name__ == "__main__":
    main()
