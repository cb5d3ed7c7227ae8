#!/usr/bin/env bash
# Builds glass (zilliztech/pyglass) from source into .bench/venv for the bench: pybind11 2.13.6,
# its own -march=native -Ofast flags, pinned to the commit measured. Optional: on any failure
# it says so and exits 0, and the bench runs without glass (bench.py reports it absent).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.bench/venv/bin/python
COMMIT=8c69018
if $PY -c "import glass" 2>/dev/null; then
  echo "glass: already built"; exit 0
fi
src=.bench/pyglass
if [ ! -d "$src" ]; then
  git clone --quiet https://github.com/zilliztech/pyglass "$src" || { echo "glass: clone failed, absent"; exit 0; }
fi
git -C "$src" checkout --quiet "$COMMIT" 2>/dev/null || echo "glass: commit $COMMIT not found, building HEAD"
$PY -m pip install --quiet --disable-pip-version-check pybind11==2.13.6 setuptools wheel numpy \
  && $PY -m pip install --quiet --disable-pip-version-check --no-build-isolation "$src/python" \
  || { echo "glass: build failed, absent"; exit 0; }
echo "glass: built"
