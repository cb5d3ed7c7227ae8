#!/usr/bin/env python3
"""Schemathesis against vectune's own /openapi.json, on the release binary (.ci/run runs it).

Starts the server with a token on a fresh store, seeds one index (vectors, a harness, a
promoted trial, an activation) so operations reach real resources, then:
  1. negative mode (every request breaks the schema): all must be refused, and the stored
     state (indexes, vector counts, trials, promotions, agents, jobs, harness) must be
     exactly what it was before;
  2. all modes, every check but positive_data_acceptance (a schema cannot say "no more
     queries than the index has vectors", so schema-valid requests the core refuses with a
     4xx are expected), --max-examples per operation, with the stateful phase.
No 5xx, every status and body as the spec says. Prints schemathesis's own summaries.
Usage: schemathesis.py --bin target/release/vectune --st PATH_TO_st [--max-examples 30]
"""
import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

TOKEN = "schemathesis-token-5e1f"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def call(base, method, path, body=None):
    req = urllib.request.Request(base + path, method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            data = r.read()
            return r.status, json.loads(data) if data else None
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def seed(base):
    rnd = random.Random(7)
    steps = [
        ("POST", "/vectors/indexes", {"name": "st", "dims": 8, "metric": "l2"}),
        ("POST", "/vectors/indexes/st/vectors",
         {"vectors": [{"id": f"v{i}", "vector": [rnd.gauss(0, 1) for _ in range(8)]} for i in range(400)]}),
        ("POST", "/vectors/harness/autogen", {"name": "sth", "index_name": "st", "queries": 20, "k": 5}),
        ("POST", "/vectors/hnsw/trial", {"index_name": "st", "harness": "sth",
                                         "config": {"ef_construction": 40, "ef_search": 40}}),
    ]
    for m, p, b in steps:
        st, out = call(base, m, p, b)
        assert st in (200, 201), (m, p, st, out)
    st, out = call(base, "POST", f"/vectors/hnsw/promote/st/{out['id']}")
    assert st == 200, out
    st, out = call(base, "POST", "/vectors/indexes/st/activate")
    assert st == 200, out


def snapshot(base):
    """Everything stored, as the API shows it (volatile fields dropped)."""
    st, ix = call(base, "GET", "/vectors/indexes")
    assert st == 200, ix
    out = {"indexes": {}}
    for i in ix["indexes"]:
        name = i["name"]
        _, trials = call(base, "GET", f"/vectors/hnsw/trials/{name}")
        _, promoted = call(base, "GET", f"/vectors/hnsw/promoted/{name}")
        _, agent = call(base, "GET", f"/vectors/hnsw/agent/{name}")
        _, jobs = call(base, "GET", f"/vectors/jobs?index={name}")
        _, monitor = call(base, "GET", f"/vectors/indexes/{name}/monitor")
        out["indexes"][name] = {
            "dims": i["dims"], "metric": i["metric"], "vectors": i["vectors"],
            "active": (i["active"] or {}).get("generation"),
            "trials": [t["id"] for t in trials["trials"]],
            "promoted": promoted, "agent": agent.get("config"), "jobs": [j["id"] for j in jobs["jobs"]],
            "monitor": monitor,
        }
    _, h = call(base, "GET", "/vectors/harness/sth")
    out["harness"] = {k: h.get(k) for k in ("name", "index_name", "k")} | {"queries": len(h.get("queries") or [])}
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/vectune")
    ap.add_argument("--st", required=True)
    ap.add_argument("--max-examples", type=int, default=30)
    args = ap.parse_args()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    store = tempfile.mkdtemp(prefix="vectune-st-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VECTUNE_")}
    env.update({"VECTUNE_API_TOKEN": TOKEN, "RUST_LOG": "warn"})
    log = open(os.path.join(store, "server.log"), "w")
    srv = subprocess.Popen([args.bin, "serve", "--bind", f"127.0.0.1:{port}", "--store", os.path.join(store, "s")],
                           env=env, stdout=log, stderr=log)
    failed = False
    try:
        for _ in range(300):
            try:
                if urllib.request.urlopen(base + "/ready", timeout=2).status == 200:
                    break
            except OSError:
                time.sleep(0.1)
        seed(base)
        common = [args.st, "run", f"{base}/openapi.json", "-H", f"Authorization: Bearer {TOKEN}",
                  "--max-examples", str(args.max_examples), "--seed", "20261202", "--request-timeout", "60",
                  "--no-color", "--workers", "2", "--generation-database", "none"]
        before = snapshot(base)
        print("== schemathesis 1/2: negative mode (every request breaks the schema)", flush=True)
        r1 = subprocess.run(common + ["--mode", "negative", "--checks", "all",
                                      "--exclude-checks", "positive_data_acceptance"])
        after = snapshot(base)
        same = before == after
        print(f"== refused requests changed nothing stored: {'yes' if same else 'NO'}", flush=True)
        if not same:
            print(json.dumps({"before": before, "after": after}, indent=1))
        print("== schemathesis 2/2: all modes, stateful", flush=True)
        r2 = subprocess.run(common + ["--checks", "all", "--exclude-checks", "positive_data_acceptance"])
        failed = r1.returncode != 0 or r2.returncode != 0 or not same
    finally:
        srv.terminate()
        srv.wait(timeout=30)
        log.close()
    if failed:
        print(f"(server log: {store}/server.log)")
    print(f"schemathesis: {'FAILED' if failed else 'passed'}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
