#!/usr/bin/env bash
# vectune's tuner against Optuna over hnswlib on pydocs (see scripts/tune_bench.py). Creates
# its own venv (.bench/venv) with the peers; ~10 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .bench
cargo build --release --bins
if [ ! -x .bench/venv/bin/python ]; then
  python3 -m venv .bench/venv
fi
.bench/venv/bin/pip install --quiet --disable-pip-version-check hnswlib==0.8.0 optuna==5.0.0 numpy
exec .bench/venv/bin/python scripts/tune_bench.py "$@"
