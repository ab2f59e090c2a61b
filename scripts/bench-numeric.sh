#!/usr/bin/env bash
# Numeric jobs through the HTTP API (see BENCHMARKS.md, "Numeric jobs"): starts a release
# `cola up --dev` on free ports with its own data dir and nats-server, then drives
# `POST /api/v1/jobs?wait=10` with the issue's bisection example using wrk (Debian package,
# installed if missing, as curl) and a Lua script:
#   1. latency: one client, jobs one after another: p50/p90/p99 submit → terminal;
#   2. throughput: 32 concurrent clients: jobs completed per second.
# Every request waits for its job's end (?wait), so a completed request is a completed job;
# the script checks that afterwards through the API (statuses of the last jobs).
#
# Settings (environment): DURATION (s, default 10), CLIENTS (default 32), LOG (RUST_LOG of cola,
# default info, as `cola up` runs by default), OUT (where logs go), KEEP=1 keeps cola's data
# dir (NATS store) afterwards, PERF=1 also records a CPU profile of cola with
# `perf` during the throughput run (report in $OUT/perf.txt; NATS_PERF=1 profiles nats-server).
# The bench's one user may submit as fast as it can (COLA_SUBMISSIONS_PER_MINUTE, default here
# 1000000: the per-minute quota is not what is measured; the unfinished-jobs quota of 50 is
# above the 32 clients' jobs and stays). COLA_BIN measures that cola binary instead of building this checkout's release one (another
# commit's, say, run alternately with this one's to compare them in the same minutes).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
CLIENTS=${CLIENTS:-32}
LOG=${LOG:-info}
OUT=${OUT:-$(mktemp -d /tmp/cola-bench-numeric.XXXXXX)}

scripts/apt-install.sh wrk:wrk curl:curl
command -v nats-server >/dev/null || scripts/setup.sh

if [ -n "${COLA_BIN:-}" ]; then
  COLA=$COLA_BIN
  [ -x "$COLA" ] || { echo "COLA_BIN=$COLA is not an executable" >&2; exit 2; }
else
  cargo build --release --bin cola >&2
  target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  COLA="$target_dir/release/cola"
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
HTTP_PORT=$(free_port)
NATS_PORT=$(free_port)
DATA="$OUT/data"
mkdir -p "$DATA"

COLA_SUBMISSIONS_PER_MINUTE=${COLA_SUBMISSIONS_PER_MINUTE:-1000000} \
  RUST_LOG=$LOG "$COLA" up --dev --data-dir "$DATA" --listen "127.0.0.1:$HTTP_PORT" \
  --nats-url "nats://127.0.0.1:$NATS_PORT" >"$OUT/cola.log" 2>&1 &
COLA_PID=$!
cleanup() {
  kill "$COLA_PID" 2>/dev/null || true
  wait "$COLA_PID" 2>/dev/null || true
  # The store holds every job of the run (hundreds of MB): keep it only when asked.
  [ "${KEEP:-0}" = 1 ] || rm -rf "$DATA"
}
trap cleanup EXIT

URL="http://127.0.0.1:$HTTP_PORT"
for _ in $(seq 1 600); do
  if [ -s "$DATA/dev-token" ] && curl -fsS "$URL/readyz" >/dev/null 2>&1; then break; fi
  kill -0 "$COLA_PID" 2>/dev/null || { cat "$OUT/cola.log" >&2; exit 1; }
  sleep 0.5
done
TOKEN=$(tr -d '\n' <"$DATA/dev-token")

cat >"$OUT/post.lua" <<EOF
wrk.method = "POST"
wrk.path = "/api/v1/jobs?wait=10"
wrk.headers["Authorization"] = "Bearer $TOKEN"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"language":"numeric","problem":{"method":"bisection","f":"x^3 + 4*x^2 - 10","a":1,"b":2,"tol":1e-10,"max_iter":100}}'
local bad = 0
response = function(status, headers, body)
  if status ~= 201 or not string.find(body, '"status":"succeeded"', 1, true) then
    bad = bad + 1
    if bad <= 3 then io.stderr:write("unexpected answer: " .. status .. " " .. body .. "\n") end
  end
end
done = function(summary, latency, requests)
  io.write(string.format("jobs %d in %.2f s: %.0f jobs/s; latency p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms; errors %d\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
EOF

cpu_of() { # total CPU seconds (user+sys) of a process and its children so far
  awk '{print ($14+$15+$16+$17)}' "/proc/$1/stat"
}
NATS_PID=$(pgrep -f "nats-server .*-p $NATS_PORT" | head -1 || true)
ticks=$(getconf CLK_TCK)

echo "== warm-up"
wrk -t1 -c8 -d2s -s "$OUT/post.lua" "$URL" >/dev/null 2>&1

echo "== latency: 1 client, ${DURATION} s"
wrk -t1 -c1 -d"${DURATION}s" --timeout 15s -s "$OUT/post.lua" "$URL" | tail -1

echo "== throughput: $CLIENTS clients, ${DURATION} s"
busy() { awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat; } # all CPUs' busy time so far
cola_cpu0=$(cpu_of "$COLA_PID"); nats_cpu0=$(cpu_of "${NATS_PID:-$COLA_PID}"); busy0=$(busy)
if [ "${PERF:-0}" = 1 ] && command -v perf >/dev/null; then
  profiled=$COLA_PID
  [ "${NATS_PERF:-0}" = 1 ] && [ -n "$NATS_PID" ] && profiled=$NATS_PID
  perf record -F 250 --call-graph dwarf,16384 -p "$profiled" -o "$OUT/perf.data" -- sleep "$DURATION" >/dev/null 2>&1 &
  PERF_PID=$!
fi
bash -c 'wrk -t1 -c"$1" -d"$2s" --timeout 15s -s "$3/post.lua" "$4" >"$3/wrk.txt"; times >"$3/wrk-times.txt"' _ "$CLIENTS" "$DURATION" "$OUT" "$URL"
tail -1 "$OUT/wrk.txt" | tee "$OUT/throughput.txt"
cola_cpu1=$(cpu_of "$COLA_PID"); nats_cpu1=$(cpu_of "${NATS_PID:-$COLA_PID}"); busy1=$(busy)
jobs=$(sed -E 's/^jobs ([0-9]+) .*/\1/' "$OUT/throughput.txt")
python3 - "$jobs" "$cola_cpu0" "$cola_cpu1" "$nats_cpu0" "$nats_cpu1" "$ticks" "${NATS_PID:-}" "$OUT/wrk-times.txt" "$busy0" "$busy1" "$DURATION" <<'EOF'
import os, re, sys
jobs, c0, c1, n0, n1, ticks = int(sys.argv[1]), *map(float, sys.argv[2:6]), int(sys.argv[6])
cola = (c1 - c0) / ticks
nats = (n1 - n0) / ticks if sys.argv[7] else 0.0
line = f"CPU per job: cola (gateway + middleware) {cola / jobs * 1e6:.0f} us"
if sys.argv[7]:
    line += f", nats-server {nats / jobs * 1e6:.0f} us"
# `times` of the shell that ran wrk: its children's user and system time on the second line.
wrk = 0.0
try:
    child = open(sys.argv[8]).read().splitlines()[1].split()
    wrk = sum(float(m) * 60 + float(s) for m, s in (re.match(r"(\d+)m([\d.]+)s", t).groups() for t in child))
    line += f", wrk {wrk / jobs * 1e6:.0f} us"
except (OSError, IndexError, AttributeError):
    pass
print(line)
cores = os.cpu_count()
per_job = (cola + nats + wrk) / jobs
others = (float(sys.argv[10]) - float(sys.argv[9])) / ticks - cola - nats - wrk
print(f"capacity of {cores} idle cores at that cost: {cores / per_job:.0f} jobs/s; "
      f"other processes used {max(others, 0) / float(sys.argv[11]):.2f} cores during the run")
EOF
if [ -n "${PERF_PID:-}" ]; then
  wait "$PERF_PID" || true
  perf report -i "$OUT/perf.data" --no-children --sort symbol --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' | head -60 >"$OUT/perf.txt" || true
  echo "CPU profile: $OUT/perf.txt"
fi

# Every job ended, and succeeded (read back through the API; the jobs wrk left waiting when it
# stopped are given a moment to end).
for attempt in $(seq 1 20); do
  if curl -fsS -H "Authorization: Bearer $TOKEN" "$URL/api/v1/jobs?limit=200" | python3 -c '
import json, sys
jobs = json.load(sys.stdin)["jobs"]
bad = [j for j in jobs if j["status"] != "succeeded"]
if bad and sys.argv[1] != "20":
    sys.exit(1)
print(f"checked the last {len(jobs)} jobs through the API: {len(jobs) - len(bad)} succeeded")
for j in bad[:5]:
    print("  %s: %s %s %r" % (j["id"], j["status"], j["reason"] or "", j["stderr"][:200]))
sys.exit(1 if bad else 0)' "$attempt"; then break; fi
  [ "$attempt" = 20 ] && exit 1
  sleep 0.25
done
