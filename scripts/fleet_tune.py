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
"""
import argparse, json, os, struct, time

from vtserver import Server, upload_env

ap = argparse.ArgumentParser()
ap.add_argument("--data", required=True)
ap.add_argument("--dims", type=int, required=True)
ap.add_argument("--mode", choices=["grid", "adaptive"], default="grid")
ap.add_argument("--rounds", type=int, default=2)
ap.add_argument("--queries", type=int, default=500)
ap.add_argument("--target", type=float, default=0.95)
a = ap.parse_args()

GRID = [{"m": m, "ef_construction": ec, "ef_search": ef}
        for (m, ec) in [(12, 200), (16, 160), (20, 128), (24, 100), (32, 80), (8, 320)]
        for ef in (40, 80)]


def read_fvecs(path, limit):
    rows = []
    with open(path, "rb") as f:
        while len(rows) < limit:
            head = f.read(4)
            if not head:
                break
            d = struct.unpack("<i", head)[0]
            rows.append(list(struct.unpack(f"<{d}f", f.read(4 * d))))
    return rows


def one_round(helpers):
    base = os.path.join(a.data, "base.fvecs")
    size = os.path.getsize(base)
    env = upload_env(size)
    env.update({"VECTUNE_BUILD_THREADS": "1", "VECTUNE_LEASE_TTL_SECS": "6", "VECTUNE_FLEET_SYNC_SECS": "0.5"})
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
            req.update({"strategy": "adaptive", "budget_secs": 3600})
        t = time.perf_counter()
        _, res = srv.call("POST", "/vectors/hnsw/autotune", req)
        wall = time.perf_counter() - t
        w = res.get("winner") or {}
        return {"instances": 1 + helpers, "wall_secs": round(wall, 1), "builds": res["builds"],
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
    for helpers in (0, 1):
        out = one_round(helpers)
        out["round"] = r + 1
        print(json.dumps(out), flush=True)
        walls[1 + helpers].append(out["wall_secs"])
one, two = min(walls[1]), min(walls[2])
print(json.dumps({"one_instance_secs": one, "two_instances_secs": two, "ratio": round(two / one, 3)}))
