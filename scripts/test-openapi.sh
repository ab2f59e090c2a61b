#!/usr/bin/env bash
# Fuzzes the JSON API against its own OpenAPI document with schemathesis (PyPI), on a live
# `cola up --dev` (real NATS, real middleware and bubblewrap) on free ports with its own data
# directory: every operation of /api/v1/openapi.json, examples, coverage, fuzzing and stateful
# phases, every check (no server error, status codes, content types, headers and bodies as the
# document says, schema-invalid data refused, schema-valid data accepted, 405 with Allow for
# undocumented methods, auth enforced, ...). Fails on any failure.
#
# Usage: scripts/test-openapi.sh [schemathesis run arguments...]
#
# Bounded in time: at most MAX_EXAMPLES (default 40) cases per operation and phase, the fuzzing
# and stateful phases repeated until MAX_TIME seconds (default 150) are spent, each request at
# most 70 s (a `wait` may hold one 60 s). SEED makes a run repeat an earlier one (each run
# prints its seed). COLA_BIN runs that binary instead of building the debug `cola`. The JUnit
# report and cola's log land in target/test-artifacts/openapi/ (or
# $COLA_TEST_ARTIFACTS/openapi/); a failure is printed with the requests that reproduce it.
#
# One worker: with two, schemathesis once died of an internal error (`SystemError: AST
# constructor recursion depth mismatch`, CPython's AST state shared between threads:
# python/cpython#106905) without any failed check.
#
# schemathesis comes from PyPI into a virtualenv under target/openapi-tools (made once, reused).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
tools=${COLA_OPENAPI_TOOLS:-$root/target/openapi-tools}
MAX_EXAMPLES=${MAX_EXAMPLES:-40}
MAX_TIME=${MAX_TIME:-150}
artifacts=${COLA_TEST_ARTIFACTS:-$root/target/test-artifacts}/openapi

requirements=("schemathesis==4.32.5")

"$root/scripts/apt-install.sh" curl:curl
"$root/scripts/python-venv.sh" "$tools" "${requirements[@]}"
command -v nats-server >/dev/null || "$root/scripts/setup.sh"

cd "$root"
if [ -n "${COLA_BIN:-}" ]; then
  cola=$COLA_BIN
  [ -x "$cola" ] || { echo "COLA_BIN=$cola is not an executable" >&2; exit 2; }
else
  cargo build --bin cola >&2
  target_dir=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  cola="$target_dir/debug/cola"
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http_port=$(free_port)
nats_port=$(free_port)
scratch=$(mktemp -d /tmp/cola-openapi.XXXXXX)
data="$scratch/data"
rm -rf "$artifacts"
mkdir -p "$data" "$artifacts"

RUST_LOG=${RUST_LOG:-info} "$cola" up --dev --data-dir "$data" --listen "127.0.0.1:$http_port" \
  --nats-url "nats://127.0.0.1:$nats_port" >"$artifacts/cola.log" 2>&1 &
cola_pid=$!
# shellcheck disable=SC2317  # run by the EXIT trap
cleanup() {
  kill "$cola_pid" 2>/dev/null || true
  wait "$cola_pid" 2>/dev/null || true
  rm -rf "$scratch"
}
trap cleanup EXIT

url="http://127.0.0.1:$http_port"
for _ in $(seq 1 240); do
  if [ -s "$data/dev-token" ] && curl -fsS "$url/readyz" >/dev/null 2>&1; then break; fi
  kill -0 "$cola_pid" 2>/dev/null || { cat "$artifacts/cola.log" >&2; exit 1; }
  sleep 0.5
done
curl -fsS "$url/readyz" >/dev/null || { echo "openapi: cola did not get ready" >&2; exit 1; }
token=$(tr -d '\n' <"$data/dev-token")

started=$SECONDS
status=0
# From target/: schemathesis keeps its cache (failures to replay first) in .schemathesis here.
cd "$root/target"
"$tools/bin/schemathesis" --config-file "$root/scripts/openapi/schemathesis.toml" run \
  "$url/api/v1/openapi.json" \
  --header "Authorization: Bearer $token" \
  --checks all \
  --max-examples "$MAX_EXAMPLES" \
  --max-time "$MAX_TIME" \
  --request-timeout 70 \
  --workers 1 \
  --seed "${SEED:-$RANDOM}" \
  --report junit --report-dir "$artifacts" \
  --output-sanitize true \
  "$@" || status=$?
echo "openapi: schemathesis finished in $((SECONDS - started)) s (exit $status)" >&2
if grep -q "panicked" "$artifacts/cola.log"; then
  echo "openapi: cola panicked during the run (see $artifacts/cola.log)" >&2
  status=1
fi
exit "$status"
