#!/usr/bin/env python3
"""One autotune on one instance, and the same autotune with a second instance on the same
store (issue 24: an autotune's builds spread over the fleet), on the real binary.

Each instance is pinned to its own core (`taskset`) with one build thread, so "two
instances" is two machines' worth of CPU and "one instance" one machine's, on this box.
Rounds alternate the two setups (machines drift); every round is printed and each
setup's minimum is the figure. Each round is a fresh store: ingest DIR/base.fvecs, a harness
of DIR/query.fvecs (exact ground truth by the server), then the timed autotune on instance A
(B, when there, only builds what A offers).

  scripts/fleet_tune.py --data .bench/synth-100k-128-latent12 --dims 128 --mode grid --rounds 2
  scripts/fleet_tune.py --data .bench/vt-synth-1000k-128-full --dims 128 --mode adaptive --rounds 1 \
      --validation 0.2 --env VECTUNE_TUNING_MAX_EF_SEARCH=2000 --env VECTUNE_TUNING_MAX_EF_CONSTRUCTION=800 \
      --env VECTUNE_TUNING_MAX_M=96
"""
import argparse, json, os, time

from vtserver import Server, read_fvecs, upload_env

ap = argparse.ArgumentParser()
ap.add_argument("--data", required=True)
ap.add_argument("--dims", type=int, required=True)
ap.add_argument("--mode", choices=["grid", "adaptive"], default="grid")
ap.add_argument("--rounds", type=int, default=2)
ap.add_argument("--queries", type=int, default=500)
ap.add_argument("--target", type=float, default=0.95)
ap.add_argument("--budget", type=float, default=3600)
ap.add_argument("--validation", type=float, default=None, help="validation_fraction (absent: the default)")
ap.add_argument("--env", action="append", default=[], help="KEY=VALUE for both instances")
ap.add_argument("--setups", default="1,2", help="which setups each round runs: 1, 2 or 1,2")
a = ap.parse_args()

GRID = [{"m": m, "ef_construction": ec, "ef_search": ef}
        for (m, ec) in [(12, 200), (16, 160), (20, 128), (24, 100), (32, 80), (8, 320)]
        for ef in (40, 80)]


def one_round(helpers):
    base = os.path.join(a.data, "base.fvecs")
    size = os.path.getsize(base)
    env = upload_env(size)
    env.update({"VECTUNE_BUILD_THREADS": "1", "VECTUNE_LEASE_TTL_SECS": "6", "VECTUNE_FLEET_SYNC_SECS": "0.5"})
    env.update(kv.split("=", 1) for kv in a.env)
    srv = Server(env, cpus="0")
    others = [Server(env, store=srv.store, cpus=str(1 + i)) for i in range(helpers)]
    try:
        srv.call("POST", "/vectors/indexes", {"name": "big", "dims": a.dims, "metric": "l2"})
        with open(base, "rb") as f:
            srv.call("POST", "/vectors/indexes/big/vectors?format=fvecs", raw=f, length=size)
        qs = read_fvecs(os.path.join(a.data, "query.fvecs"), a.queries)
        srv.call("POST", "/vectors/harness", {"name": "q", "index_name": "big", "k": 10,
                                              "queries": [{"id": f"q{i}", "vector": v} for i, v in enumerate(qs)]})
        # the helpers see the index and both sides count each other alive (a heartbeat is
        # a third of the TTL)
        for o in others:
            o.wait("/vectors/indexes/big", lambda st, b: st == 200 and b.get("vectors", 0) > 0)
        time.sleep(2.5 if others else 0)
        req = {"index_name": "big", "harness": "q", "objective": "min_latency", "target_recall": a.target,
               "promote": "never"}
        if a.mode == "grid":
            req["grid"] = GRID
        else:
            req.update({"strategy": "adaptive", "budget_secs": a.budget})
        if a.validation is not None:
            req["validation_fraction"] = a.validation
        t = time.perf_counter()
        _, res = srv.call("POST", "/vectors/hnsw/autotune", req)
        wall = time.perf_counter() - t
        w = res.get("winner") or {}
        s = res.get("sample") or {}
        return {"instances": 1 + helpers, "wall_secs": round(wall, 1), "builds": res["builds"],
                "sample_builds": s.get("builds"), "full_builds": s.get("full_builds"),
                "leading": [(c["m"], c["ef_construction"], c.get("quantization"), c.get("patience", 0))
                            for c in s.get("leading", [])],
                "builds_elsewhere": res.get("builds_elsewhere"), "trials": res["trials_run"],
                "winner": (w.get("config") or {}), "winner_recall": w.get("recall_at_k")}
    finally:
        for o in others:
            o.close()
        srv.close()


with open("/proc/cpuinfo") as f:
    cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "?")
print(json.dumps({"cpu": cpu, "data": a.data, "mode": a.mode}))
walls = {1: [], 2: []}
for r in range(a.rounds):
    for helpers in [int(n) - 1 for n in a.setups.split(",")]:
        out = one_round(helpers)
        out["round"] = r + 1
        print(json.dumps(out), flush=True)
        walls[1 + helpers].append(out["wall_secs"])
if walls[1] and walls[2]:
    one, two = min(walls[1]), min(walls[2])
    print(json.dumps({"one_instance_secs": one, "two_instances_secs": two, "ratio": round(two / one, 3)}))
