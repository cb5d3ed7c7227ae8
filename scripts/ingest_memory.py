#!/usr/bin/env python3
"""Peak memory of binary uploads on the real binary (issue 24 item 5).

Starts `vectune serve` on a fresh local store, creates an index, uploads FILE (fvecs)
`--uploads` times at once over HTTP (each body streamed from the file, never held whole by
the client), and prints the server's peak RSS (VmHWM) and its RSS afterwards, as JSON:
the upload's cost is `peak - after` (what the index keeps stays in `after`).

  scripts/ingest_memory.py --file .bench/vt-synth-1000k-128/base.fvecs --dims 128 --uploads 3
"""
import argparse, http.client, json, os, socket, subprocess, sys, tempfile, threading, time

ap = argparse.ArgumentParser()
ap.add_argument("--file", required=True)
ap.add_argument("--dims", type=int, required=True)
ap.add_argument("--uploads", type=int, default=1)
ap.add_argument("--binary", default=os.path.join(os.path.dirname(__file__), "..", "target", "release", "vectune"))
a = ap.parse_args()

size = os.path.getsize(a.file)
store = tempfile.mkdtemp(prefix="vectune-ingest-mem-")
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
env = dict(os.environ, VECTUNE_MAX_BINARY_BODY_BYTES=str(size + 1024),
           VECTUNE_MAX_INGEST_BYTES_IN_FLIGHT=str((size + 1024) * a.uploads),
           VECTUNE_REQUEST_TIMEOUT_SECS="3600")
proc = subprocess.Popen([a.binary, "serve", "--bind", f"127.0.0.1:{port}", "--store", store], env=env,
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def status():
    out = {}
    with open(f"/proc/{proc.pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmHWM", "VmRSS"):
                out[k] = int(v.split()[0]) / 1024
    return out


def call(method, path, body=None, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=3600)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, json.loads(data or b"null")


for _ in range(500):
    try:
        call("GET", "/health")
        break
    except OSError:
        time.sleep(0.02)
st, _ = call("POST", "/vectors/indexes", json.dumps({"name": "m", "dims": a.dims, "metric": "l2"}).encode(),
             {"Content-Type": "application/json"})
assert st == 201, st
before = status()
answers = []


def upload():
    with open(a.file, "rb") as f:
        answers.append(call("POST", "/vectors/indexes/m/vectors?format=fvecs", f,
                            {"Content-Type": "application/octet-stream", "Content-Length": str(size)}))


t0 = time.perf_counter()
threads = [threading.Thread(target=upload) for _ in range(a.uploads)]
for t in threads:
    t.start()
for t in threads:
    t.join()
secs = time.perf_counter() - t0
time.sleep(0.5)
after = status()
proc.terminate()
proc.wait(timeout=60)
subprocess.run(["rm", "-rf", store])
body_mib = size / 2**20
print(json.dumps({
    "file": a.file, "body_mib": round(body_mib, 1), "uploads": a.uploads,
    "statuses": [s for s, _ in answers], "secs": round(secs, 2),
    "rss_before_mib": round(before["VmRSS"], 1), "peak_mib": round(after["VmHWM"], 1),
    "rss_after_mib": round(after["VmRSS"], 1),
    "upload_cost_over_kept_x_body": round((after["VmHWM"] - after["VmRSS"]) / (body_mib * a.uploads), 3),
}, indent=1))
