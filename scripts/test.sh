#!/usr/bin/env bash
# The whole test suite: unit tests, in-process router tests and end-to-end tests of the
# real binary. Release mode, because graph builds in a debug build are ~20x slower.
# The S3 storage contract runs too when VECTUNE_TEST_S3_URL names a bucket of a running
# S3-compatible server (.ci/run starts one); without it that one test says so and returns.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo test --release "$@"
