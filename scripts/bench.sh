#!/usr/bin/env bash
# Reproduces BENCHMARKS.md's generated section: vectune, hnswlib and faiss on the same data
# and machine in one run. Creates its own Python venv (.bench/venv) with the peers.
# Takes ~15-25 minutes on 2 cores (the 100k x 128 scale run dominates); --skip-synth for a
# quick pydocs-only run.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .bench
cargo build --release --bins
if [ ! -x .bench/venv/bin/python ]; then
  python3 -m venv .bench/venv
  .bench/venv/bin/pip install --quiet --disable-pip-version-check hnswlib faiss-cpu numpy
fi
exec .bench/venv/bin/python scripts/bench.py "$@"
