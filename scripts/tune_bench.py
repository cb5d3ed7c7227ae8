#!/usr/bin/env python3
"""Tuning-engine benchmark: four strategies on pydocs-minilm-384, one server, one run.

    cargo build --release && python3 scripts/tune_bench.py [--data ../shared/data/pydocs-minilm-384]

Every strategy tunes the same index (10k x 384, cosine) against the same explicit harness
(the data set's 500 queries, k = 10) with objective min_latency, target_recall 0.95,
validation_fraction 0.2 (100 queries held out, 400 tuned on) and promote never:

- seed grid: the seed's default grid (m 16; (ec, es) = (20,30) (40,30) (80,30) (80,60) (160,30));
- nested-ef grid: m 16, ec {20,40,80,160}, every es of the exhaustive ladder (4 builds, 40 trials);
- adaptive: strategy adaptive with its defaults (max_trials 40, budget_secs 300), three times
  (its path depends on noisy measurements, so one run is one sample);
- exhaustive: m {8,12,16,24,32,48} x ec {40,80,160,320} x es {10,15,20,30,40,60,80,120,160,200}.

Then the adaptive and exhaustive winners are re-measured head to head (manual trials on all
500 queries, alternating, 3 rounds, median p50), because the exhaustive best is the minimum
of 205 noisy p50s and so reads low. Writes .bench/tune_results.json and the section between
<!-- tune:start --> and <!-- tune:end --> of BENCHMARKS.md. Standard library only.
"""
import argparse, datetime, json, os, platform, signal, socket, statistics, struct, subprocess, tempfile, time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target/release/vectune")
EXH_M, EXH_EC = (8, 12, 16, 24, 32, 48), (40, 80, 160, 320)
EXH_ES = (10, 15, 20, 30, 40, 60, 80, 120, 160, 200)
COMMON = {"objective": "min_latency", "target_recall": 0.95, "validation_fraction": 0.2, "promote": "never"}


def log(*a):
    print(f"[{time.strftime('%H:%M:%S')}]", *a, flush=True)


def fvecs(path):
    b = open(path, "rb").read()
    out, i = [], 0
    while i < len(b):
        d = struct.unpack_from("<i", b, i)[0]
        out.append(list(struct.unpack_from(f"<{d}f", b, i + 4)))
        i += 4 + 4 * d
    return out


class Server:
    def __init__(self, store):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.base = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen([BIN, "serve", "--bind", f"127.0.0.1:{port}", "--store", store],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while True:
            try:
                self.call("GET", "/health")
                return
            except OSError:
                time.sleep(0.02)

    def call(self, method, path, body=None, raw=None):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Content-Type", "application/octet-stream" if raw is not None else "application/json")
        with urllib.request.urlopen(req, timeout=7200) as r:
            return json.loads(r.read() or b"null")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=120)


def strategies():
    seed = {}
    nested = {"grid": [{"m": 16, "ef_construction": ec, "ef_search": es} for ec in (20, 40, 80, 160) for es in EXH_ES]}
    adaptive = {"strategy": "adaptive"}
    exhaustive = {"grid": [{"m": m, "ef_construction": ec, "ef_search": es}
                           for m in EXH_M for ec in EXH_EC for es in EXH_ES]}
    # adaptive three times: its path depends on measurements, so one run is one sample
    return [("seed grid", seed), ("nested-ef grid", nested), ("adaptive", adaptive), ("adaptive #2", adaptive),
            ("adaptive #3", adaptive), ("exhaustive", exhaustive)]


def cfg(c):
    return f"m{c['m']} ec{c['ef_construction']} es{c['ef_search']}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "pydocs-minilm-384"))
    args = ap.parse_args()
    os.makedirs(os.path.join(ROOT, ".bench"), exist_ok=True)
    store = tempfile.mkdtemp(prefix="vectune-tune-", dir=os.path.join(ROOT, ".bench"))
    srv = Server(store)
    try:
        srv.call("POST", "/vectors/indexes", {"name": "py", "dims": 384, "metric": "cosine"})
        srv.call("POST", "/vectors/indexes/py/vectors?format=fvecs", raw=open(os.path.join(args.data, "base.fvecs"), "rb").read())
        queries = fvecs(os.path.join(args.data, "query.fvecs"))
        srv.call("POST", "/vectors/harness", {"name": "pyq", "index_name": "py", "k": 10,
                                              "queries": [{"vector": q} for q in queries]})
        rows = []
        for name, extra in strategies():
            body = dict(COMMON, index_name="py", harness="pyq", **extra)
            log(f"{name}: running")
            t = time.perf_counter()
            r = srv.call("POST", "/vectors/hnsw/autotune", body)
            wall = time.perf_counter() - t
            w = r["winner"] or {}
            rows.append({"strategy": name, "trials": r["trials_run"], "builds": r["builds"], "wall_secs": wall,
                         "winner": w.get("config"), "recall": w.get("recall_at_k"),
                         "p50_us": w.get("search_latency_p50_us"),
                         "validation_recall": (w.get("validation") or {}).get("recall_at_k"),
                         "validation_p50_us": (w.get("validation") or {}).get("search_latency_p50_us")})
            log(f"{name}: {wall:.1f}s, {r['trials_run']} trials, {r['builds']} builds, winner {w.get('config')} "
                f"recall {w.get('recall_at_k')} p50 {w.get('search_latency_p50_us')}")
        by = {r["strategy"]: r for r in rows}
        # head to head: the adaptive and exhaustive winners on all 500 queries, alternating
        h2h = {"adaptive": [], "exhaustive": []}
        for _ in range(3):
            for name in ("adaptive", "exhaustive"):
                c = by[name]["winner"]
                t = srv.call("POST", "/vectors/hnsw/trial", {"index_name": "py", "harness": "pyq", "config": c,
                                                             "note": f"tune_bench head-to-head: {name} winner"})
                h2h[name].append((t["metrics"]["search_latency_p50_us"], t["metrics"]["recall_at_k"]))
        head = {k: {"p50_us": statistics.median(p for p, _ in v), "recall": v[0][1], "runs": v} for k, v in h2h.items()}
        log("head to head", head)
    finally:
        srv.stop()
    res = {"date": datetime.date.today().isoformat(), "machine": machine(), "rows": rows, "head_to_head": head}
    json.dump(res, open(os.path.join(ROOT, ".bench", "tune_results.json"), "w"), indent=1)
    write_md(res)


def machine():
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def write_md(res):
    rows, head = res["rows"], res["head_to_head"]
    by = {r["strategy"]: r for r in rows}
    ex, ad = by["exhaustive"], by["adaptive"]
    f = lambda x, nd=1: "-" if x is None else f"{x:.{nd}f}"
    out = [f"<!-- tune:start (generated by scripts/tune_bench.py; do not edit by hand) -->",
           f"### Tuning engine on pydocs-minilm-384 ({res['date']})", "",
           f"Machine: {res['machine']}. Command: `cargo build --release && python3 scripts/tune_bench.py`.",
           "One server, one run; objective min_latency, target_recall 0.95, validation_fraction 0.2 "
           "(tuned on 400 queries, validated on 100 held out), k = 10, serial seeded builds.", "",
           "| strategy | trials | builds | wall time (s) | winner | recall | p50 (µs) | validation recall | validation p50 (µs) |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['strategy']} | {r['trials']} | {r['builds']} | {f(r['wall_secs'])} | "
                   f"{cfg(r['winner']) if r['winner'] else '-'} | {f(r['recall'], 4)} | {f(r['p50_us'])} | "
                   f"{f(r['validation_recall'], 4)} | {f(r['validation_p50_us'])} |")
    ads = [r for r in rows if r["strategy"].startswith("adaptive")]
    ratio_t = ", ".join(f"{r['wall_secs'] / ex['wall_secs']:.2f}×" for r in ads)
    ratio_p = ", ".join(f"{r['p50_us'] / ex['p50_us']:.2f}×" for r in ads if r["p50_us"] and ex["p50_us"])
    hh = head["adaptive"]["p50_us"] / head["exhaustive"]["p50_us"]
    out += ["",
            f"Adaptive vs exhaustive, each of the {len(ads)} adaptive runs: wall time **{ratio_t}** (bar ≤ 0.25×); "
            f"winner p50 as measured in each run **{ratio_p}** (bar ≤ 1.10×).",
            f"Head to head (the first adaptive run's winner and the exhaustive winner re-measured on all 500 "
            f"queries, alternating, median of 3): adaptive "
            f"{cfg(ad['winner'])} {head['adaptive']['p50_us']:.1f} µs (recall {head['adaptive']['recall']:.4f}) vs "
            f"exhaustive {cfg(ex['winner'])} {head['exhaustive']['p50_us']:.1f} µs (recall "
            f"{head['exhaustive']['recall']:.4f}): **{hh:.2f}×**.",
            "<!-- tune:end -->"]
    path = os.path.join(ROOT, "BENCHMARKS.md")
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    block = "\n".join(out)
    if "<!-- tune:start" in text:
        a = text.index("<!-- tune:start")
        b = text.index("<!-- tune:end -->") + len("<!-- tune:end -->")
        text = text[:a] + block + text[b:]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    open(path, "w").write(text)
    print(block)


if __name__ == "__main__":
    main()
