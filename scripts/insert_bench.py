"""Insert throughput into a serving graph: vectune's fold-in path against hnswlib's add_items.

Both get the same graph to grow: the first `--base` rows indexed (all cores, not timed), then
the remaining rows of the set inserted on ONE thread and timed (hnswlib: `add_items(...,
num_threads=1)`; vectune: `native::extend` with 1 thread, via `vectune-bench extend`). Same m
and ef_construction. Rounds alternate the two libraries; each figure's minimum is the headline
and every round is printed. Recall@10 of each grown graph at the same ef against the set's
ground truth (vectune's at the `--efs` list; hnswlib's at the same list).

    .bench/venv/bin/python scripts/insert_bench.py --data .bench/synth-100k-128-latent12 --rounds 2
"""
import argparse, json, os, subprocess, time
import numpy as np
import hnswlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fvecs(path):
    a = np.fromfile(path, dtype=np.int32)
    d = a[0]
    return a.reshape(-1, d + 1)[:, 1:].copy().view(np.float32)


def ivecs(path):
    a = np.fromfile(path, dtype=np.int32)
    d = a[0]
    return a.reshape(-1, d + 1)[:, 1:].copy()


def hnswlib_round(base, queries, truth, args, efs):
    n, dims = base.shape
    ix = hnswlib.Index(space=args.metric if args.metric != "cosine" else "cosine", dim=dims)
    ix.init_index(max_elements=n, M=args.m, ef_construction=args.ec, random_seed=42)
    ix.add_items(base[:args.base], np.arange(args.base), num_threads=os.cpu_count())
    t = time.perf_counter()
    ix.add_items(base[args.base:], np.arange(args.base, n), num_threads=1)
    secs = time.perf_counter() - t
    rec = []
    for ef in efs:
        ix.set_ef(ef)
        labels, _ = ix.knn_query(queries, k=10, num_threads=1)
        hit = sum(len(set(l) & set(t[:10])) for l, t in zip(labels, truth))
        rec.append({"ef": ef, "recall": hit / (10 * len(queries))})
    return {"insert_secs": secs, "insert_rows_per_sec": (n - args.base) / secs, "recall": rec}


def vectune_round(args, efs):
    exe = os.path.join(ROOT, "target", "release", "vectune-bench")
    out = subprocess.run([exe, "extend", "--data", args.data, "--metric", args.metric,
                          "--base", str(args.base), "--m", str(args.m), "--ec", str(args.ec),
                          "--engine", args.engine, "--threads", "1", "--efs", ",".join(map(str, efs))],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--metric", default="l2")
    ap.add_argument("--base", type=int, default=0, help="rows indexed first (default: two thirds)")
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--ec", type=int, default=80)
    ap.add_argument("--engine", default="native")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--efs", default="20,40,80,160")
    args = ap.parse_args()
    base = fvecs(os.path.join(args.data, "base.fvecs"))
    queries = fvecs(os.path.join(args.data, "query.fvecs"))
    truth = ivecs(os.path.join(args.data, "groundtruth.ivecs"))
    if args.base <= 0:
        args.base = (2 * len(base)) // 3
    efs = [int(x) for x in args.efs.split(",")]
    rounds = []
    for r in range(args.rounds):
        v = vectune_round(args, efs)
        h = hnswlib_round(base, queries, truth, args, efs)
        print(json.dumps({"round": r, "vectune_rows_per_sec": round(v["insert_rows_per_sec"]),
                          "hnswlib_rows_per_sec": round(h["insert_rows_per_sec"])}), flush=True)
        rounds.append((v, h))
    best_v = min(rounds, key=lambda p: p[0]["insert_secs"])[0]
    best_h = min(rounds, key=lambda p: p[1]["insert_secs"])[1]
    print(json.dumps({
        "set": os.path.basename(args.data.rstrip("/")), "n": len(base), "base": args.base,
        "inserted": len(base) - args.base, "m": args.m, "ef_construction": args.ec,
        "engine": args.engine, "kernel": best_v["kernel"],
        "vectune_insert_secs": best_v["insert_secs"], "hnswlib_insert_secs": best_h["insert_secs"],
        "ratio_vectune_over_hnswlib_rows_per_sec": best_h["insert_secs"] / best_v["insert_secs"],
        "vectune_recall": best_v["recall"], "hnswlib_recall": best_h["recall"],
    }, indent=1))


if __name__ == "__main__":
    main()
