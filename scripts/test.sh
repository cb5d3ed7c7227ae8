#!/usr/bin/env bash
# The whole test suite: unit tests, in-process router tests and end-to-end tests of the
# real binary, in release mode (graph builds in a debug build are ~20x slower).
#
# It also tests what needs real outside parts: it starts an S3-compatible server (moto)
# for the S3 storage contract and the S3 end-to-end test, and gives the tests a Python
# with the real parsers others use (prometheus_client for /metrics, openapi-spec-validator
# for /openapi.json). Those tests are #[ignore]d in a plain `cargo test`, and run here
# with --include-ignored. When the tools cannot be installed (no PyPI), this says so and
# they are reported as "ignored" in the summary, never as passed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
tools="$root/.tools/venv"

include_ignored=1
if [ ! -x "$tools/bin/moto_server" ] || ! "$tools/bin/python" -c 'import prometheus_client, openapi_spec_validator' 2>/dev/null; then
  echo "== test tools: installing moto, prometheus_client, openapi-spec-validator into $tools"
  if ! { python3 -m venv "$tools" &&
         "$tools/bin/pip" install --quiet --disable-pip-version-check \
           "moto[server]==5.2.5" "prometheus_client==0.26.0" "openapi-spec-validator==0.9.0"; }; then
    echo "== test tools: NOT installed; the S3 and parser tests will show as ignored (SKIPPED)"
    include_ignored=0
  fi
fi

moto_pid=
cleanup() { [ -n "$moto_pid" ] && kill "$moto_pid" 2>/dev/null || true; }
trap cleanup EXIT
if [ "$include_ignored" = 1 ]; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  mkdir -p "$root/.tools"
  "$tools/bin/moto_server" -H 127.0.0.1 -p "$port" > "$root/.tools/moto.log" 2>&1 &
  moto_pid=$!
  up=0
  for _ in $(seq 1 150); do
    if curl -fs "http://127.0.0.1:$port/" > /dev/null 2>&1; then up=1; break; fi
    sleep 0.2
  done
  if [ "$up" = 1 ] && curl -fs -X PUT "http://127.0.0.1:$port/vectune-test" > /dev/null; then
    echo "== S3-compatible server (moto) on 127.0.0.1:$port, bucket vectune-test"
    export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
    export VECTUNE_TEST_S3_URL="s3://vectune-test" VECTUNE_TEST_S3_ENDPOINT="http://127.0.0.1:$port"
  else
    echo "== S3-compatible server did not start (see .tools/moto.log); the ignored tests will show as ignored (SKIPPED)"
    include_ignored=0
  fi
  export VECTUNE_TEST_PYTHON="$tools/bin/python"
fi

# cargo's own arguments, then the test binaries' (after a `--`)
cargo_args=() test_args=() seen_sep=0
for a in "$@"; do
  if [ "$seen_sep" = 0 ] && [ "$a" = "--" ]; then seen_sep=1; continue; fi
  if [ "$seen_sep" = 0 ]; then cargo_args+=("$a"); else test_args+=("$a"); fi
done
if [ "$include_ignored" = 1 ]; then test_args+=("--include-ignored"); fi
cargo test --release ${cargo_args[@]+"${cargo_args[@]}"} -- ${test_args[@]+"${test_args[@]}"}
