#!/usr/bin/env python3
"""Peak memory of binary uploads on the real binary (issue 24 item 5).

Starts `vectune serve` on a fresh local store, creates an index, uploads FILE (fvecs)
`--uploads` times at once over HTTP (each body streamed from the file, never held whole by
the client), and prints the server's peak RSS (VmHWM) and its RSS afterwards, as JSON:
the upload's cost is `peak - after` (what the index keeps stays in `after`).

  scripts/ingest_memory.py --file .bench/vt-synth-1000k-128/base.fvecs --dims 128 --uploads 3
"""
import argparse, json, os, threading, time

from vtserver import Server, upload_env

ap = argparse.ArgumentParser()
ap.add_argument("--file", required=True)
ap.add_argument("--dims", type=int, required=True)
ap.add_argument("--uploads", type=int, default=1)
a = ap.parse_args()

size = os.path.getsize(a.file)
env = upload_env(size)
env["VECTUNE_MAX_INGEST_BYTES_IN_FLIGHT"] = str(max(int(env["VECTUNE_MAX_BINARY_BODY_BYTES"]), (size + 1024) * a.uploads))
srv = Server(env)
srv.call("POST", "/vectors/indexes", {"name": "m", "dims": a.dims, "metric": "l2"})
before = srv.memory()
answers = []


def upload():
    with open(a.file, "rb") as f:
        answers.append(srv.call("POST", "/vectors/indexes/m/vectors?format=fvecs", raw=f, length=size, check=False))


t0 = time.perf_counter()
threads = [threading.Thread(target=upload) for _ in range(a.uploads)]
for t in threads:
    t.start()
for t in threads:
    t.join()
secs = time.perf_counter() - t0
time.sleep(0.5)
after = srv.memory()
srv.close()
body_mib = size / 2**20
print(json.dumps({
    "file": a.file, "body_mib": round(body_mib, 1), "uploads": a.uploads,
    "statuses": [s for s, _ in answers], "secs": round(secs, 2),
    "rss_before_mib": round(before["rss_mib"], 1), "peak_mib": round(after["peak_mib"], 1),
    "rss_after_mib": round(after["rss_mib"], 1),
    "upload_cost_over_kept_x_body": round((after["peak_mib"] - after["rss_mib"]) / (body_mib * a.uploads), 3),
}, indent=1))
