#!/usr/bin/env python3
"""An adaptive autotune of a large set on the real binary (issue 24), end to end over HTTP.

Starts `vectune serve` on a fresh local store with `--env` settings (e.g. raised
`VECTUNE_TUNING_MAX_EF_SEARCH`), ingests DIR/base.fvecs (streamed), makes a harness of
DIR/query.fvecs (the server computes exact ground truth), runs one adaptive autotune to
`--target` with `--budget` seconds and `--validation` held out, and prints every stage's
wall time, the server's peak RSS and the run's result (winner, recall, held-out recall,
best recall, bounds, reason) as JSON. Make DIR with `vectune-bench synth`.

  scripts/scale_tune.py --data .bench/vt-synth-1000k-128 --dims 128 \
      --env VECTUNE_TUNING_MAX_EF_SEARCH=800 --budget 900
"""
import argparse, json, os, time

from vtserver import Server, read_fvecs, upload_env

ap = argparse.ArgumentParser()
ap.add_argument("--data", required=True)
ap.add_argument("--dims", type=int, required=True)
ap.add_argument("--target", type=float, default=0.95)
ap.add_argument("--budget", type=float, default=900)
ap.add_argument("--validation", type=float, default=0.2)
ap.add_argument("--queries", type=int, default=1000)
ap.add_argument("--env", action="append", default=[])
ap.add_argument("--sample-rows", type=int, default=None,
                help="the request's sample_rows (absent: the run decides; 0: never sample)")
ap.add_argument("--trials", action="store_true",
                help="add the run's journal (config, recall, its lower bound, p50, mean, note) to the output")
ap.add_argument("--baseline", action="store_true",
                help="first activate the default config (nothing promoted yet) and time it: "
                     "the one-build yardstick of the autotune's wall time")
a = ap.parse_args()


base = os.path.join(a.data, "base.fvecs")
size = os.path.getsize(base)
env = upload_env(size)
env.update(kv.split("=", 1) for kv in a.env)
srv = Server(env)
stages = {}
srv.call("POST", "/vectors/indexes", {"name": "big", "dims": a.dims, "metric": "l2"})
t = time.perf_counter()
with open(base, "rb") as f:
    srv.call("POST", "/vectors/indexes/big/vectors?format=fvecs", raw=f, length=size)
stages["ingest_secs"] = round(time.perf_counter() - t, 2)
qs = read_fvecs(os.path.join(a.data, "query.fvecs"), a.queries)
srv.call("POST", "/vectors/harness", {"name": "q", "index_name": "big", "k": 10,
                                      "queries": [{"id": f"q{i}", "vector": v} for i, v in enumerate(qs)]})
if a.baseline:
    t = time.perf_counter()
    _, act = srv.call("POST", "/vectors/indexes/big/activate")
    stages["default_activation_secs"] = round(time.perf_counter() - t, 1)
    stages["default_config"] = act.get("config")
req = {"index_name": "big", "harness": "q", "strategy": "adaptive", "objective": "min_latency",
       "target_recall": a.target, "budget_secs": a.budget, "validation_fraction": a.validation,
       "promote": "always"}
if a.sample_rows is not None:
    req["sample_rows"] = a.sample_rows
t = time.perf_counter()
_, res = srv.call("POST", "/vectors/hnsw/autotune", req)
stages["autotune_secs"] = round(time.perf_counter() - t, 1)
if res.get("promoted"):
    # the winner's activation: a sampled run stored its graph, so this loads it
    t = time.perf_counter()
    _, act = srv.call("POST", "/vectors/indexes/big/activate")
    stages["winner_activation_secs"] = round(time.perf_counter() - t, 1)
    stages["winner_loaded_from_store"] = act.get("loaded_from_store")
if "default_activation_secs" in stages:
    stages["autotune_over_one_build"] = round(stages["autotune_secs"] / stages["default_activation_secs"], 2)
w = res.get("winner") or {}
out = {
    "data": a.data, "env": a.env, "target": a.target, "budget_secs": a.budget, **stages,
    "peak_rss_mib": round(srv.memory()["peak_mib"], 1),
    "trials_run": res.get("trials_run"), "builds": res.get("builds"),
    "winner": w.get("config"), "recall": w.get("recall_at_k"),
    "held_out_recall": (w.get("validation") or {}).get("recall_at_k"),
    "p50_us": w.get("search_latency_p50_us"), "best_recall": res.get("best_recall"),
    "bounds": res.get("bounds"), "reason": res.get("reason"), "promoted": res.get("promoted"),
    "sample": res.get("sample"), "near_ties": len(res.get("near_ties") or []),
}
if a.trials:
    _, j = srv.call("GET", "/vectors/hnsw/trials/big")
    out["trials"] = [{"config": t["config"], "recall": t["metrics"].get("recall_at_k"),
                      "recall_ci_low": t["metrics"].get("recall_ci_low"),
                      "p50_us": t["metrics"].get("search_latency_p50_us"),
                      "mean_us": t["metrics"].get("search_latency_mean_us"),
                      "note": t.get("note")} for t in j.get("trials", [])]
srv.close()
print(json.dumps(out, indent=1))
