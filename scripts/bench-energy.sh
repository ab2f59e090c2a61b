#!/usr/bin/env bash
# Energy-aware placement against energy-blind, on the same solar day (issue 14; see BENCHMARKS.md,
# "Energy-aware placement"). For each run (MODES: blind, energy, energy, blind), a fresh stack on free ports:
#   - node a: a release `cola up --dev --mqtt-listen 127.0.0.1:<port> --node-name a` (gateway,
#     middleware, and the nats-server it spawns, with its MQTT listener);
#   - nodes b and c: `cola middleware --node-name b|c` against the same NATS, each with its own
#     data dir; every node has --concurrency 2 (CONCURRENCY): two jobs at a time, as a
#     small node would run, so a node's room is something to compete for;
#   - the day before (scripts/energy/solar-trace-yesterday.csv: the same nodes, other clouds)
#     replayed through MQTT (replay.py, paho-mqtt) at SPEED x, without jobs: the middlewares'
#     forecast (--forecast-period, one simulated day) needs a yesterday;
#   - then the day (scripts/energy/solar-trace.csv) replayed the same way from 00:00 at SPEED x
#     (default 720: the day in 120 s), and at the same time JOBS C jobs
#     (default 1,000) with Poisson arrivals spread over the simulated day, a share SHIFTABLE
#     (default 0.3) of them time-shiftable by WINDOW_SIM_HOURS (default 6) simulated hours
#     (loadgen.py, which waits until every job has ended);
# then compares the modes (each over its runs) with scripts/energy/evaluate.py: renewable share of executor
# CPU-seconds (target >= 1.5x blind), p95 latency of non-shiftable jobs (<= 1.10x), every
# shiftable job started by its not_after; the table on standard output, everything in OUT:
# blind-N.jsonl / aware-N.jsonl (job views of the N-th run of each mode), replay-*.csv (wall
# time of each simulated step), energy.svg (the simulated day, CPU-seconds summed over a mode's
# runs), figures.json, and per run (OUT/blind-1, OUT/aware-1, ...) its logs,
# its `GET /api/v1/energy` at the end (energy.json) and each node's
# cola_executor_cpu_seconds_total (cpu-<node>.prom).
#
# Placement flags, scaled to SPEED (at 720 a reading every 0.42 s): FRESH_FOR (--energy-fresh-for,
# default 24 simulated minutes: 2s at 720), RECHECK (--shift-recheck, default 6 simulated
# minutes: 500ms at 720), FORECAST_PERIOD (--forecast-period, default a simulated day: 120s at
# 720; 0: no forecast, and no yesterday replayed), MAX_DELAY (--placement-max-delay, default 200ms: latency is real time, not scaled),
# GREEN_SHARE (--green-share, default 0.8: with 0.5, jobs shifted to the morning start as soon as
# a node passes half renewable, and even perfect placement would reach only 1.48x on this trace).
# Other settings (environment): LOOKAHEAD (--lookahead of every node, default 1), SEED (default
# 14: the same arrivals in every run), MODES (default "blind energy energy blind": the runs in
# that order, each mode's figures over all its runs), CHECK=1 (exit 1 when a target is missed), KEEP=1 (keep the data dirs),
# LOG (RUST_LOG, default info), COLA_BIN (that cola binary instead of building this checkout's
# release one), OUT (default a new /tmp/cola-bench-energy.* dir).
set -euo pipefail
cd "$(dirname "$0")/.."

SPEED=${SPEED:-720}
JOBS=${JOBS:-1000}
SHIFTABLE=${SHIFTABLE:-0.3}
WINDOW_SIM_HOURS=${WINDOW_SIM_HOURS:-6}
SEED=${SEED:-14}
CONCURRENCY=${CONCURRENCY:-2}
LOOKAHEAD=${LOOKAHEAD:-1}
# 24 and 6 simulated minutes, in wall milliseconds at SPEED.
FRESH_FOR=${FRESH_FOR:-$((24 * 60 * 1000 / SPEED))ms}
RECHECK=${RECHECK:-$((6 * 60 * 1000 / SPEED))ms}
FORECAST_PERIOD=${FORECAST_PERIOD:-$((24 * 3600 * 1000 / SPEED))ms}
MAX_DELAY=${MAX_DELAY:-200ms}
GREEN_SHARE=${GREEN_SHARE:-0.8}
MODES=${MODES:-blind energy energy blind}
LOG=${LOG:-info}
OUT=${OUT:-$(mktemp -d /tmp/cola-bench-energy.XXXXXX)}
mkdir -p "$OUT"

scripts/apt-install.sh curl:curl
for tool in nats-server bwrap gcc; do
  command -v "$tool" >/dev/null || { scripts/setup.sh; break; }
done
PY=$(scripts/energy/setup-venv.sh | tail -1)

if [ -n "${COLA_BIN:-}" ]; then
  COLA=$COLA_BIN
  [ -x "$COLA" ] || { echo "COLA_BIN=$COLA is not an executable" >&2; exit 2; }
else
  cargo build --release --bin cola >&2
  target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  COLA="$target_dir/release/cola"
fi
up_help=$("$COLA" up --help)
middleware_help=$("$COLA" middleware --help)
for flag in --mqtt-listen --node-name --placement --energy-fresh-for --placement-max-delay --shift-recheck --green-share --forecast-period; do
  grep -q -e "$flag" <<<"$up_help" ||
    { echo "bench-energy: $COLA up has no $flag (issue 14's placement is not in this binary)" >&2; exit 2; }
  [ "$flag" = --mqtt-listen ] || grep -q -e "$flag" <<<"$middleware_help" ||
    { echo "bench-energy: $COLA middleware has no $flag (issue 14's placement is not in this binary)" >&2; exit 2; }
done

# The day's length and the load, in wall seconds at SPEED.
read -r DAY_S RATE WINDOW_S < <(python3 -c '
import sys
speed, jobs, hours = float(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
day = 86400 / speed
print(f"{day:.3f} {jobs / day:.4f} {hours * 3600 / speed:.3f}")' "$SPEED" "$JOBS" "$WINDOW_SIM_HOURS")
echo "bench-energy: a simulated day in $DAY_S s, $JOBS jobs at $RATE jobs/s, shiftable by $WINDOW_S s; out: $OUT"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PIDS=()
stop_all() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=()
}
# shellcheck disable=SC2317  # run by the EXIT trap
cleanup() {
  stop_all
  # The stores hold every job of the run: keep them only when asked.
  [ "${KEEP:-0}" = 1 ] || rm -rf "$OUT"/*/data-*
}
trap cleanup EXIT

# Waits until URL answers (curl -f), while process PID lives; LOGFILE is shown if it dies.
wait_ready() {
  local url=$1 pid=$2 logfile=$3
  for _ in $(seq 1 600); do
    curl -fsS "$url" >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || { tail -50 "$logfile" >&2; echo "bench-energy: $logfile: the process exited" >&2; exit 1; }
    sleep 0.5
  done
  echo "bench-energy: $url did not answer in 300 s" >&2
  exit 1
}

# One run: MODE is cola's --placement (blind or energy); its results are named NAME.
run_mode() {
  local mode=$1 name=$2 dir="$OUT/$2" http nats mqtt url token_file node
  local -A health
  http=$(free_port)
  nats=$(free_port)
  mqtt=$(free_port)
  for node in a b c; do health[$node]=$(free_port); done
  url="http://127.0.0.1:$http"
  rm -rf "$dir" "$OUT/$name.jsonl" "$OUT/replay-$name.csv"
  mkdir -p "$dir/data-a" "$dir/data-b" "$dir/data-c"
  # --lookahead 1 (LOOKAHEAD): a node takes one job beyond its free slot, not the whole queue
  # (README, "Energy-aware placement").
  local placement=(--placement "$mode" --energy-fresh-for "$FRESH_FOR" --placement-max-delay "$MAX_DELAY"
    --shift-recheck "$RECHECK" --green-share "$GREEN_SHARE" --forecast-period "$FORECAST_PERIOD"
    --concurrency "$CONCURRENCY"
    --lookahead "$LOOKAHEAD"
    # One user submits everything: the quotas are not what is measured.
    --max-unfinished-per-user 100000 --submissions-per-minute 1000000)

  echo "== $mode: starting nodes a (cola up), b, c (cola middleware)"
  RUST_LOG=$LOG "$COLA" up --dev --data-dir "$dir/data-a" --listen "127.0.0.1:$http" \
    --nats-url "nats://127.0.0.1:$nats" --mqtt-listen "127.0.0.1:$mqtt" --node-name a \
    --health-listen "127.0.0.1:${health[a]}" "${placement[@]}" >"$dir/cola-a.log" 2>&1 &
  PIDS+=("$!")
  wait_ready "$url/readyz" "${PIDS[0]}" "$dir/cola-a.log"
  for _ in $(seq 1 100); do [ -s "$dir/data-a/dev-token" ] && break; sleep 0.1; done
  token_file="$dir/data-a/dev-token"
  [ -s "$token_file" ] || { echo "bench-energy: no dev token in $dir/data-a" >&2; exit 1; }
  wait_ready "http://127.0.0.1:${health[a]}/readyz" "${PIDS[0]}" "$dir/cola-a.log"
  for node in b c; do
    RUST_LOG=$LOG "$COLA" middleware --data-dir "$dir/data-$node" --nats-url "nats://127.0.0.1:$nats" \
      --node-name "$node" --health-listen "127.0.0.1:${health[$node]}" "${placement[@]}" \
      >"$dir/cola-$node.log" 2>&1 &
    PIDS+=("$!")
    wait_ready "http://127.0.0.1:${health[$node]}/readyz" "$!" "$dir/cola-$node.log"
  done

  local credentials=()
  [ -z "${COLA_MQTT_PASSWORD:-}" ] || credentials=(--username cola-telemetry)
  if [ "${FORECAST_PERIOD%ms}" != 0 ] && [ "$FORECAST_PERIOD" != 0 ]; then
    echo "== $mode: the day before: replay at ${SPEED}x, no jobs"
    "$PY" scripts/energy/replay.py --trace scripts/energy/solar-trace-yesterday.csv --port "$mqtt" \
      --speed "$SPEED" "${credentials[@]}" --log "$dir/replay-yesterday.csv" >"$dir/replay-yesterday.log" 2>&1 ||
      { cat "$dir/replay-yesterday.log" >&2; echo "bench-energy: the replay of the day before failed ($mode)" >&2; exit 1; }
    # Its last step lasts one step too: the day begins a day after the day before did.
    sleep "$(python3 -c "import sys; print(300 / float(sys.argv[1]))" "$SPEED")"
  fi
  echo "== $mode: the day: replay at ${SPEED}x and $JOBS jobs"
  "$PY" scripts/energy/replay.py --port "$mqtt" --speed "$SPEED" "${credentials[@]}" \
    --log "$OUT/replay-$name.csv" >"$dir/replay.log" 2>&1 &
  local replay_pid=$!
  PIDS+=("$replay_pid")
  local status=0
  python3 scripts/energy/loadgen.py --url "$url" --token-file "$token_file" --jobs "$JOBS" --rate "$RATE" \
    --shiftable "$SHIFTABLE" --window-seconds "$WINDOW_S" --seed "$SEED" \
    --out "$OUT/$name.jsonl" 2> >(tee "$dir/loadgen.log" >&2) || status=$?
  wait "$replay_pid" || { cat "$dir/replay.log" >&2; echo "bench-energy: the replay failed ($mode)" >&2; exit 1; }

  # What cola itself says at the end: the nodes' last readings and each node's CPU by power.
  curl -fsS -H "Authorization: Bearer $(tr -d '\n' <"$token_file")" "$url/api/v1/energy" >"$dir/energy.json" ||
    echo "bench-energy: GET /api/v1/energy failed ($mode)" >&2
  for node in a b c; do
    curl -fsS "http://127.0.0.1:${health[$node]}/metrics" | grep '^cola_executor_cpu_seconds_total' \
      >"$dir/cpu-$node.prom" || echo "bench-energy: no cola_executor_cpu_seconds_total from node $node" >&2
  done
  stop_all
  [ "$status" = 0 ] || { echo "bench-energy: loadgen failed ($mode), see $dir/loadgen.log" >&2; exit 1; }
}

# The runs alternate (default blind, energy, energy, blind): the machine's speed drifts between
# minutes, and each mode's figures are taken over all of its runs.
declare -A runs_of=([blind]=0 [energy]=0)
runs=()
for mode in $MODES; do
  case $mode in
    blind) name=blind ;;
    energy) name=aware ;;
    *) echo "bench-energy: MODES: unknown mode $mode (blind, energy)" >&2; exit 2 ;;
  esac
  runs_of[$mode]=$((runs_of[$mode] + 1))
  name=$name-${runs_of[$mode]}
  run_mode "$mode" "$name"
  runs+=("$name")
done

if [ "${runs_of[blind]}" = 0 ] || [ "${runs_of[energy]}" = 0 ]; then
  echo "bench-energy: MODES=\"$MODES\": no comparison without both modes; results in $OUT"
  exit 0
fi
evaluate=()
for name in "${runs[@]}"; do
  mode=${name%-*}
  evaluate+=(--"$mode" "$OUT/$name.jsonl" --"$mode"-replay "$OUT/replay-$name.csv")
done
[ "${CHECK:-0}" = 1 ] && evaluate+=(--check)
python3 scripts/energy/evaluate.py "${evaluate[@]}" --svg "$OUT/energy.svg" --json "$OUT/figures.json"
echo "bench-energy: results in $OUT"
