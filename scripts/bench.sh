#!/usr/bin/env bash
# Reproduces BENCHMARKS.md's generated section: vectune (native f32, native sq8, the hnsw_rs
# reference), hnswlib, faiss (HNSWFlat and HNSW-SQ8 + refine), usearch, SymphonyQG (rabitqlib),
# SVS and ScaNN on the same data and machine in one run, three
# rounds alternating the libraries. Creates its own Python venv (.bench/venv) with the peers.
# Takes ~30-40 minutes on 2 cores; --skip-synth for a pydocs-only run; --million adds the same
# generator at 1M x 128 (the leaders, vectune rabitq/sq4, hnswlib; ~20 minutes a round). To time the default
# autotune against an earlier build: --baseline-bin PATH --baseline-commit SHA.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .bench
cargo build --release --bins
if [ ! -x .bench/venv/bin/python ]; then
  python3 -m venv .bench/venv
fi
# every time: the venv may have been made by tune_bench.sh with fewer peers (pip skips what is there)
.bench/venv/bin/pip install --quiet --disable-pip-version-check hnswlib==0.8.0 faiss-cpu==1.15.1 usearch==2.26.6 \
  optuna==5.0.0 numpy rabitqlib==0.7.1 scalable-vs==0.5.0 scann==1.4.2
# glass is optional: built from source when it can be (the bench says when it is absent)
scripts/build_glass.sh
exec .bench/venv/bin/python scripts/bench.py "$@"
