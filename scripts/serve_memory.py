#!/usr/bin/env python3
"""Serving memory and restart time of a large index on the real binary (issue 24 item 4).

Starts `vectune serve` on a fresh local store, ingests DIR/base.fvecs, activates the
default config (nothing promoted: activation builds m 16 / efC 80), and reports the
server's RSS while serving against what serving needs (the activation's `memory_bytes`:
the f32 rows plus the graph's links and codes); then stops it (SIGTERM), starts it again on
the same store and reports the seconds to serving (`/ready`, then a search answered) and
the RSS after the restart.

  scripts/serve_memory.py --data .bench/vt-synth-1000k-128 --dims 128 [--config 24,40,37,rabitq]
"""
import argparse, json, os, struct, time

from vtserver import Server, upload_env

ap = argparse.ArgumentParser()
ap.add_argument("--data", required=True)
ap.add_argument("--dims", type=int, required=True)
ap.add_argument("--config", default=None,
                help="m,ef_construction,ef_search,quantization to serve instead of the default: "
                     "measured as a trial on a 10-query harness and promoted before the activation "
                     "(a RaBitQ config derives its blocks again at every restart)")
a = ap.parse_args()

base = os.path.join(a.data, "base.fvecs")
size = os.path.getsize(base)
with open(os.path.join(a.data, "query.fvecs"), "rb") as f:
    d = struct.unpack("<i", f.read(4))[0]
    q = list(struct.unpack(f"<{d}f", f.read(4 * d)))

srv = Server(upload_env(size))
srv.call("POST", "/vectors/indexes", {"name": "big", "dims": a.dims, "metric": "l2"})
with open(base, "rb") as f:
    srv.call("POST", "/vectors/indexes/big/vectors?format=fvecs", raw=f, length=size)
if a.config:
    m, ec, ef, quant = a.config.split(",")
    srv.call("POST", "/vectors/harness/autogen", {"name": "h", "index_name": "big", "queries": 10, "k": 10})
    config = {"m": int(m), "ef_construction": int(ec), "ef_search": int(ef), "quantization": quant}
    _, trial = srv.call("POST", "/vectors/hnsw/trial", {"index_name": "big", "harness": "h", "config": config})
    srv.call("POST", f"/vectors/hnsw/promote/big/{trial['id']}")
t = time.perf_counter()
_, act = srv.call("POST", "/vectors/indexes/big/activate")
activation_secs = time.perf_counter() - t
n = srv.call("GET", "/vectors/indexes/big")[1]["vectors"]
raw_mib = n * a.dims * 4 / 2**20
# the activation's memory_bytes: the f32 rows plus the graph's links and codes
serves_mib = act["memory_bytes"] / 2**20
srv.call("POST", "/vectors/search/big", {"vector": q, "k": 10})
serving = srv.memory()
srv.stop()

srv.start()
srv.wait("/ready")
ready = time.perf_counter() - srv.t0
while srv.call("POST", "/vectors/search/big", {"vector": q, "k": 10}, check=False)[0] != 200:
    time.sleep(0.01)
first_search = time.perf_counter() - srv.t0
after = srv.memory()
# a RaBitQ generation restarts on exact reads and derives its blocks behind them: the RSS
# it settles at (unchanged for 3 s, or 120 s passed) is what it serves with
settled, still = after, 0
while still < 6 and time.perf_counter() - srv.t0 < 120:
    time.sleep(0.5)
    now = srv.memory()
    still = still + 1 if abs(now["rss_mib"] - settled["rss_mib"]) < 0.01 * settled["rss_mib"] else 0
    settled = now
settled_secs = time.perf_counter() - srv.t0 - 3.0
srv.close()
print(json.dumps({
    "data": a.data, "vectors": n, "activation_secs": round(activation_secs, 1), "config": act["config"],
    "raw_mib": round(raw_mib, 1), "raw_links_codes_mib": round(serves_mib, 1),
    "serving_rss_mib": round(serving["rss_mib"], 1), "serving_peak_mib": round(serving["peak_mib"], 1),
    "serving_rss_over_raw_links_codes": round(serving["rss_mib"] / serves_mib, 3),
    "restart_ready_secs": round(ready, 2), "restart_first_search_secs": round(first_search, 2),
    "restart_rss_mib": round(after["rss_mib"], 1),
    "restart_rss_over_raw_links_codes": round(after["rss_mib"] / serves_mib, 3),
    "restart_settled_secs": round(settled_secs, 1), "restart_settled_rss_mib": round(settled["rss_mib"], 1),
    "restart_settled_rss_over_raw_links_codes": round(settled["rss_mib"] / serves_mib, 3),
}, indent=1))
