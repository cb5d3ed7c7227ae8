#!/usr/bin/env python3
"""Fresh writes over HTTP against the release binary (issue "fresh writes").

    .bench/venv/bin/python scripts/fresh_bench.py --data DIR [--metric l2|cosine]

DIR holds base.fvecs and query.fvecs (the synthetic 100k x 128 set of scripts/bench.py, or
../shared/data/pydocs-minilm-384). numpy computes exact ground truth. Measures, on one
instance over a temp-dir store:

1. append -> visible: single-row JSON appends, each followed at once by a search for its
   own vector; the append's round trip (ms, p50/p99) and whether that next search found it;
2. search p50 idle against p50 while `--writers` threads append single rows at a paced
   1,000/s between them (the rate reached is reported: writers that cannot keep up say so);
3. recall@10 after +50 % rows appended without re-activation, against the same index
   re-activated (a fresh build over all of them), and the search p50 of each (the fresh
   rows are scanned exactly: that scan's cost);
4. recall@10 after 30 % of the rows deleted, before re-activation, against after it; and
   every hit of those searches (k = 100) checked against the deleted ids.

Prints one JSON object; the figures go to BENCHMARKS.md by hand.
"""
import argparse, json, multiprocessing, os, random, statistics, tempfile, time
import http.client

import numpy as np

from tune_bench import ROOT, Server


def fvecs(path):
    a = np.fromfile(path, dtype=np.int32)
    d = a[0]
    return a.reshape(-1, d + 1)[:, 1:].view(np.float32).copy()


def fvecs_bytes(x):
    n, d = x.shape
    out = np.empty((n, d + 1), dtype=np.int32)
    out[:, 0] = d
    out[:, 1:] = x.view(np.int32)
    return out.tobytes()


def exact(base, live, queries, metric, k):
    """Exact top-k row numbers among the rows with live[row] True."""
    idx = np.nonzero(live)[0]
    x = base[idx]
    if metric == "cosine":
        xn = x / np.linalg.norm(x, axis=1, keepdims=True)
        qn = queries / np.linalg.norm(queries, axis=1, keepdims=True)
        d = -qn @ xn.T
    else:
        d = (queries ** 2).sum(1)[:, None] - 2 * queries @ x.T + (x ** 2).sum(1)[None, :]
    top = np.argpartition(d, k, axis=1)[:, :k]
    return [set(idx[t].tolist()) for t in top]


def recall(srv, index, queries, truth, k=10, check=None):
    found, checked = 0, 0
    for q, t in zip(queries, truth):
        hits = srv.call("POST", f"/vectors/search/{index}", {"vector": q.tolist(), "k": k})["hits"]
        ids = [int(h["id"]) for h in hits]
        if check is not None:
            bad = [i for i in ids if i in check]
            assert not bad, f"deleted ids returned: {bad}"
            checked += len(ids)
        found += len(set(ids[:10]) & t)
    return found / (10 * len(queries)), checked


def p50(srv, index, queries):
    """Median round trip (µs) of a search per query, after one warm-up pass."""
    xs = []
    for rep in range(2):
        for q in queries:
            t = time.perf_counter()
            srv.call("POST", f"/vectors/search/{index}", {"vector": q.tolist(), "k": 10})
            if rep:
                xs.append((time.perf_counter() - t) * 1e6)
    return statistics.median(xs)


def writer(base_url, rows, w, writers, stop, wrote):
    """One writer process: single-row appends paced at its share of 1,000/s, on one kept-alive
    connection (as an application's HTTP client would)."""
    host, port = base_url.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=600)
    t0, i = time.perf_counter(), 0
    while not stop.is_set():
        v = rows[(i * 31 + w) % len(rows)].tolist()
        body = json.dumps({"vectors": [{"id": f"s{w}-{i}", "vector": v}]})
        conn.request("POST", "/vectors/indexes/f/vectors", body=body,
                     headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        r.read()
        assert r.status == 200, r.status
        i += 1
        wrote[w] = i
        ahead = t0 + i * writers / 1000.0 - time.perf_counter()
        if ahead > 0:
            time.sleep(ahead)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--metric", default="l2")
    ap.add_argument("--appends", type=int, default=300)
    ap.add_argument("--writers", type=int, default=4, help="processes sharing the 1,000 appends/s")
    ap.add_argument("--stream-secs", type=float, default=3.0, help="length of the search windows")
    ap.add_argument("--only-stream", action="store_true", help="parts 1 and 2 only")
    ap.add_argument("--fold-in-rows", type=int, default=1000, help="the index's fold_in_rows (0: never)")
    args = ap.parse_args()
    base = fvecs(os.path.join(args.data, "base.fvecs"))
    queries = fvecs(os.path.join(args.data, "query.fvecs"))
    n, dims = base.shape
    out = {"set": os.path.basename(args.data.rstrip("/")), "n": n, "dims": dims}
    store = tempfile.mkdtemp(prefix="vectune-fresh-", dir=os.path.join(ROOT, ".bench"))
    srv = Server(store)
    try:
        # 1 and 2 on the whole set
        srv.call("POST", "/vectors/indexes", {"name": "f", "dims": int(dims), "metric": args.metric})
        srv.call("POST", "/vectors/indexes/f/vectors?format=fvecs", raw=fvecs_bytes(base))
        srv.call("PUT", "/vectors/indexes/f/refresh", {"max_fresh_fraction": 1.0, "fold_in_rows": args.fold_in_rows})
        srv.call("POST", "/vectors/indexes/f/activate")
        rng = np.random.default_rng(7)
        lat, seen = [], 0
        for i in range(args.appends):
            v = (base[rng.integers(n)] + rng.normal(0, 0.01, dims).astype(np.float32)).tolist()
            t = time.perf_counter()
            srv.call("POST", "/vectors/indexes/f/vectors", {"vectors": [{"id": f"a{i}", "vector": v}]})
            lat.append((time.perf_counter() - t) * 1e3)
            hits = srv.call("POST", "/vectors/search/f", {"vector": v, "k": 1})["hits"]
            seen += hits[0]["id"] == f"a{i}"
        lat.sort()
        out["append_ms_p50"] = lat[len(lat) // 2]
        out["append_ms_p99"] = lat[int(len(lat) * 0.99) - 1]
        out["append_visible_next_search"] = f"{seen}/{args.appends}"

        host, port = srv.base.split("//")[1].split(":")
        sconn = http.client.HTTPConnection(host, int(port), timeout=600)

        def searches(secs):
            """Median µs of searches over one kept-alive connection for `secs`."""
            t_end, xs = time.perf_counter() + secs, []
            i = 0
            while time.perf_counter() < t_end:
                body = json.dumps({"vector": queries[i % len(queries)].tolist(), "k": 10})
                t = time.perf_counter()
                sconn.request("POST", "/vectors/search/f", body=body, headers={"Content-Type": "application/json"})
                r = sconn.getresponse()
                r.read()
                xs.append((time.perf_counter() - t) * 1e6)
                assert r.status == 200, r.status
                i += 1
            return statistics.median(xs)

        idle = [searches(args.stream_secs)]
        # writers in processes of their own: in this one they would share the searcher's GIL
        ctx = multiprocessing.get_context("fork")
        stop, wrote = ctx.Event(), ctx.Array("l", args.writers)
        rows = base[:4096].copy()
        ws = [ctx.Process(target=writer, args=(srv.base, rows, w, args.writers, stop, wrote))
              for w in range(args.writers)]
        t = time.perf_counter()
        for w in ws:
            w.start()
        busy = searches(args.stream_secs)
        stop.set()
        for w in ws:
            w.join()
        rate = sum(wrote[:]) / (time.perf_counter() - t)
        idle.append(searches(args.stream_secs))
        out["search_p50_us_idle"] = min(idle)
        out["search_p50_us_during_appends"] = busy
        out["append_rate_reached_per_s"] = rate
        out["writers"] = args.writers
        out["fold_in_rows"] = args.fold_in_rows
        out["generation_after_stream"] = srv.call("GET", "/vectors/indexes/f")["active"]["generation"]
        srv.call("DELETE", "/vectors/indexes/f")
        if args.only_stream:
            print(json.dumps(out, indent=1))
            return

        # 3: two thirds built, the last third (+50 %) appended
        cut = (2 * n) // 3
        srv.call("POST", "/vectors/indexes", {"name": "g", "dims": int(dims), "metric": args.metric})
        srv.call("POST", "/vectors/indexes/g/vectors?format=fvecs", raw=fvecs_bytes(base[:cut]))
        # the scan path first (no fold-in), then the same rows folded in by insertion
        srv.call("PUT", "/vectors/indexes/g/refresh", {"max_fresh_fraction": 1.0, "fold_in_rows": 0})
        srv.call("POST", "/vectors/indexes/g/activate")
        srv.call("POST", "/vectors/indexes/g/vectors?format=fvecs", raw=fvecs_bytes(base[cut:]))
        live = np.ones(n, dtype=bool)
        truth = exact(base, live, queries, args.metric, 10)
        out["recall_after_50pct_appended"] = recall(srv, "g", queries, truth)[0]
        out["search_p50_us_with_50pct_fresh"] = p50(srv, "g", queries)
        t = time.perf_counter()
        srv.call("PUT", "/vectors/indexes/g/refresh", {"fold_in_rows": 1000})
        while srv.call("GET", "/vectors/indexes/g")["active"]["fresh"]["inserted"] > 0:
            time.sleep(0.05)
        out["fold_in_secs_50pct"] = time.perf_counter() - t
        out["recall_after_50pct_folded_in"] = recall(srv, "g", queries, truth)[0]
        out["search_p50_us_after_fold_in"] = p50(srv, "g", queries)
        srv.call("POST", "/vectors/indexes/g/activate")
        out["recall_fresh_build_all"] = recall(srv, "g", queries, truth)[0]
        out["search_p50_us_after_reactivation"] = p50(srv, "g", queries)

        # 4: 30 % deleted
        dead = random.Random(3).sample(range(n), int(0.3 * n))
        for i in range(0, len(dead), 5000):
            srv.call("POST", "/vectors/indexes/g/vectors/delete", {"ids": [str(r) for r in dead[i:i + 5000]]})
        live[dead] = False
        truth = exact(base, live, queries, args.metric, 10)
        gone = set(dead)
        r_before, c1 = recall(srv, "g", queries, truth, k=100, check=gone)
        out["recall_after_30pct_deleted"] = r_before
        srv.call("POST", "/vectors/indexes/g/activate")
        r_after, c2 = recall(srv, "g", queries, truth, k=100, check=gone)
        out["recall_fresh_build_after_deletes"] = r_after
        out["deleted_id_checks"] = c1 + c2
        out["deleted_ids_returned"] = 0
    finally:
        srv.stop()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
