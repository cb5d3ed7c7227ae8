#!/usr/bin/env python3
"""Closed-loop measurements on pydocs-minilm-384 (issue "tuning engine II"), one server each:

1. flaps: after an adaptive autotune has promoted its winner, an agent (cooldown 1 s,
   min_latency at .95, max 1000 trials/hour) is left running 20 cycles on the unchanged index;
   its promotions are counted (target: at most 1);
2. canary: the agent tunes on a harness easier than the traffic (stored vectors as queries)
   with target .99 and activate: true, while the live traffic is the data set's own 500 queries
   (texts that are not in the index); its activation should be rolled back by itself, with
   the reason;
3. monitor overhead: HTTP search p50 (one client, 2,000 searches of the 500 queries) with the
   monitor at sample_rate 0 and at 0.01, 3 rounds alternating, every round printed.

    cargo build --release && python3 scripts/loop_bench.py [--data ../shared/data/pydocs-minilm-384]

Writes .bench/loop_results.json and the <!-- loop:start --> section of BENCHMARKS.md.
Standard library only.
"""
import argparse, datetime, json, os, statistics, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tune_bench import ROOT, Server, fvecs, log, machine  # noqa: E402


def fresh(args):
    os.makedirs(os.path.join(ROOT, ".bench"), exist_ok=True)
    srv = Server(tempfile.mkdtemp(prefix="vectune-loop-", dir=os.path.join(ROOT, ".bench")))
    srv.call("POST", "/vectors/indexes", {"name": "py", "dims": 384, "metric": "cosine"})
    srv.call("POST", "/vectors/indexes/py/vectors?format=fvecs", raw=open(os.path.join(args.data, "base.fvecs"), "rb").read())
    return srv


def agent_runs(srv):
    return srv.call("GET", "/vectors/hnsw/agent/py")


def flaps(args, cycles=20):
    srv = fresh(args)
    try:
        queries = fvecs(os.path.join(args.data, "query.fvecs"))
        srv.call("POST", "/vectors/harness", {"name": "pyq", "index_name": "py", "k": 10,
                                              "queries": [{"vector": q} for q in queries]})
        r = srv.call("POST", "/vectors/hnsw/autotune", {"index_name": "py", "harness": "pyq", "strategy": "adaptive",
                                                        "objective": "min_latency", "target_recall": 0.95, "promote": "always"})
        start_cfg = r["winner"]["config"]
        log(f"flaps: promoted {start_cfg}; agent on for {cycles} cycles")
        srv.call("PUT", "/vectors/hnsw/agent/py", {"harness": "pyq", "cooldown_secs": 1, "max_trials_per_hour": 1000,
                                                   "objective": "min_latency", "target_recall": 0.95})
        t = time.perf_counter()
        while agent_runs(srv)["runs"] < cycles:
            time.sleep(1)
        wall = time.perf_counter() - t
        srv.call("DELETE", "/vectors/hnsw/agent/py")
        a = agent_runs(srv)
        p = srv.call("GET", "/vectors/hnsw/promoted/py")
        entries = ([p["current"]] if p["current"] else []) + p["history"]
        by_agent = [e for e in entries if e["promoted_by"] == "agent"]
        kept = [d["reason"] for d in a["decisions"] if d["action"] == "kept"]
        why = [d["reason"] for d in a["decisions"] if d["action"] == "promoted"]
        for w in why:
            log(f"flaps: promoted because {w}")
        log(f"flaps: {a['runs']} runs in {wall:.0f}s, {len(by_agent)} agent promotions")
        return {"cycles": a["runs"], "wall_secs": wall, "start": start_cfg, "promotions": len(by_agent),
                "promoted": [e["config"] for e in by_agent], "trials_last_hour": a["trials_last_hour"],
                "sample_kept_reasons": kept[:3], "promoted_reasons": why}
    finally:
        srv.stop()


def canary(args):
    srv = fresh(args)
    try:
        srv.call("POST", "/vectors/harness/autogen", {"name": "stored", "index_name": "py", "queries": 200, "k": 10, "seed": 3})
        srv.call("PUT", "/vectors/indexes/py/monitor", {"sample_rate": 1.0, "window": 500})
        srv.call("POST", "/vectors/indexes/py/activate")
        srv.call("PUT", "/vectors/hnsw/agent/py", {"harness": "stored", "cooldown_secs": 3600, "epsilon": 0.25,
                                                   "objective": "min_latency", "target_recall": 0.99,
                                                   "activate": True, "canary_queries": 300})
        queries = fvecs(os.path.join(args.data, "query.fvecs"))
        t, i, last = time.perf_counter(), 0, None
        while time.perf_counter() - t < 600:
            for _ in range(20):
                srv.call("POST", "/vectors/search/py", {"vector": queries[i % len(queries)], "k": 10})
                i += 1
            a = agent_runs(srv)
            last = a["last_decision"]
            if last and (last["action"] == "rolled_back" or (last["action"] == "activated" and "canary passed" in last["reason"])):
                break
        srv.call("DELETE", "/vectors/hnsw/agent/py")
        ix = srv.call("GET", "/vectors/indexes/py")
        log(f"canary: {last}")
        return {"last_decision": last, "decisions": a["decisions"], "rejected": a["rejected"], "searches": i,
                "secs": time.perf_counter() - t, "active": ix["active"]["config"], "live": ix["live"]}
    finally:
        srv.stop()


def overhead(args, n=2000, rounds=3):
    srv = fresh(args)
    try:
        srv.call("POST", "/vectors/indexes/py/activate")
        queries = fvecs(os.path.join(args.data, "query.fvecs"))
        bodies = [json.dumps({"vector": q, "k": 10}).encode() for q in queries]
        import urllib.request

        def p50(rate):
            srv.call("PUT", "/vectors/indexes/py/monitor", {"sample_rate": rate, "window": 1000})
            for b in bodies[:100]:  # warm-up
                urllib.request.urlopen(urllib.request.Request(srv.base + "/vectors/search/py", data=b, method="POST",
                                                              headers={"Content-Type": "application/json"})).read()
            lat = []
            for j in range(n):
                req = urllib.request.Request(srv.base + "/vectors/search/py", data=bodies[j % len(bodies)], method="POST",
                                             headers={"Content-Type": "application/json"})
                t = time.perf_counter()
                urllib.request.urlopen(req).read()
                lat.append((time.perf_counter() - t) * 1e6)
            return statistics.median(lat)
        out = []
        for r in range(rounds):
            order = (0.0, 0.01) if r % 2 == 0 else (0.01, 0.0)
            row = {str(rate): p50(rate) for rate in order}
            out.append(row)
            log(f"overhead round {r + 1}: " + ", ".join(f"rate {k}: {v:.0f} µs" for k, v in row.items()))
        ix = srv.call("GET", "/vectors/indexes/py")
        return {"rounds": out, "min": {k: min(r[k] for r in out) for k in out[0]}, "live_after": ix["live"]}
    finally:
        srv.stop()


def write_md(res):
    f, c, o = res["flaps"], res["canary"], res["overhead"]
    d = c["last_decision"] or {}
    cfg = lambda w: f"m{w['m']} ec{w['ef_construction']} es{w['ef_search']} {w['quantization']}"
    out = ["<!-- loop:start (generated by scripts/loop_bench.py; do not edit by hand) -->",
           f"### Closing the loop on pydocs-minilm-384 ({res['date']})", "",
           f"Machine: {res['machine']}. Command: `cargo build --release && python3 scripts/loop_bench.py`.", "",
           f"- **Flaps** (target ≤ 1 promotion): an agent left {f['cycles']} cycles ({f['wall_secs']:.0f} s, cooldown 1 s, "
           f"min_latency at .95) on the unchanged index after an adaptive autotune promoted {cfg(f['start'])}: "
           f"**{f['promotions']} promotion(s)**" + (f" ({', '.join(cfg(x) for x in f['promoted'])})" if f["promoted"] else "")
           + ". A kept decision reads: " + (f"“{f['sample_kept_reasons'][0]}”" if f["sample_kept_reasons"] else "-") + "."
           + "".join(f" Promoted because: “{w}”." for w in f.get("promoted_reasons", [])),
           f"- **Canary** (harness of 200 stored vectors, live traffic the set's 500 real queries, target .99, "
           f"canary_queries 300, activate: true): last decision **{d.get('action')}** after {c['searches']} searches "
           f"({c['secs']:.0f} s): “{d.get('reason')}”. Serving after: {cfg(c['active'])}; rejected: "
           f"{', '.join(cfg(x) for x in c['rejected']) or '-'}.",
           f"- **Monitor overhead** on HTTP search p50 (one client, 2,000 searches per figure, 3 rounds alternating): "
           f"sample_rate 0: {o['min']['0.0']:.0f} µs, 0.01: {o['min']['0.01']:.0f} µs (minimum over rounds; rounds: "
           + "; ".join(", ".join(f"{k}: {v:.0f}" for k, v in r.items()) for r in o["rounds"]) + ").",
           "<!-- loop:end -->"]
    block = "\n".join(out)
    path = os.path.join(ROOT, "BENCHMARKS.md")
    text = open(path).read()
    if "<!-- loop:start" in text:
        a = text.index("<!-- loop:start")
        b = text.index("<!-- loop:end -->") + len("<!-- loop:end -->")
        text = text[:a] + block + text[b:]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    open(path, "w").write(text)
    print(block)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "pydocs-minilm-384"))
    ap.add_argument("--only", choices=("overhead", "canary", "flaps"),
                    help="re-measure one part; the others are kept from .bench/loop_results.json")
    args = ap.parse_args()
    path = os.path.join(ROOT, ".bench", "loop_results.json")
    res = json.load(open(path)) if args.only and os.path.exists(path) else {}
    res.update({"date": datetime.date.today().isoformat(), "machine": machine()})
    for part, fn in (("overhead", overhead), ("canary", canary), ("flaps", flaps)):
        if args.only in (None, part):
            res[part] = fn(args)
    json.dump(res, open(os.path.join(ROOT, ".bench", "loop_results.json"), "w"), indent=1)
    write_md(res)


if __name__ == "__main__":
    main()
