#!/usr/bin/env bash
# Checks replay.py end to end against a real nats-server with its MQTT listener, without cola:
# starts nats-server (JetStream, server_name, `mqtt { listen }` on free loopback ports, a temp
# store), subscribes to `energy.>` with a plain NATS client (nats_tail.py), replays the first
# STEPS steps of the trace at 72,000x through paho-mqtt (QoS 1), then checks that every reading
# arrived on `energy.<node>` with the trace's values as JSON, and that the replay log has a wall
# time per step. Also checks that a QoS 0 replay arrives. Cleans up its nats-server; exits
# non-zero on any failure.
#
# Usage: scripts/energy/check-replay.sh   (STEPS=4 steps from START=720, the simulated noon, by
# default; KEEP=1 keeps the temp dir)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
STEPS=${STEPS:-4}
START=${START:-720} # noon: readings that are not all 0

command -v nats-server >/dev/null || "$root/scripts/setup.sh"
py=$("$here/setup-venv.sh" | tail -1)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
nats_port=$(free_port)
mqtt_port=$(free_port)
scratch=$(mktemp -d /tmp/cola-energy-check.XXXXXX)
cat >"$scratch/nats.conf" <<EOF
server_name: energy-check
listen: 127.0.0.1:$nats_port
jetstream { store_dir: "$scratch/store" }
mqtt { listen: 127.0.0.1:$mqtt_port }
EOF

nats-server -c "$scratch/nats.conf" >"$scratch/nats.log" 2>&1 &
nats_pid=$!
tail_pid=""
# shellcheck disable=SC2317  # run by the EXIT trap
cleanup() {
  [ -z "$tail_pid" ] || kill "$tail_pid" 2>/dev/null || true
  kill "$nats_pid" 2>/dev/null || true
  wait "$nats_pid" 2>/dev/null || true
  if [ "${KEEP:-0}" = 1 ]; then echo "check-replay: kept $scratch" >&2; else rm -rf "$scratch"; fi
}
trap cleanup EXIT
fail() { echo "check-replay: FAIL: $*" >&2; exit 1; }

for _ in $(seq 1 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$mqtt_port") 2>/dev/null; then break; fi
  kill -0 "$nats_pid" 2>/dev/null || { cat "$scratch/nats.log" >&2; fail "nats-server exited"; }
  sleep 0.1
done
(exec 3<>"/dev/tcp/127.0.0.1/$mqtt_port") 2>/dev/null || fail "no MQTT listener on $mqtt_port"

# One replay: QoS $1, readings expected = steps x nodes.
check() {
  local qos=$1 nodes expected
  nodes=$(cut -d, -f2 "$here/solar-trace.csv" | tail -n +2 | sort -u | wc -l)
  expected=$((STEPS * nodes))
  rm -f "$scratch/ready"
  python3 "$here/nats_tail.py" --port "$nats_port" --subject 'energy.>' --count "$expected" \
    --timeout 20 --ready-file "$scratch/ready" --out "$scratch/got-$qos.jsonl" &
  tail_pid=$!
  for _ in $(seq 1 100); do [ -e "$scratch/ready" ] && break; sleep 0.05; done
  [ -e "$scratch/ready" ] || fail "the NATS subscriber did not get ready"
  "$py" "$here/replay.py" --port "$mqtt_port" --speed 72000 --steps "$STEPS" --start-minute "$START" --qos "$qos" \
    --log "$scratch/replay-$qos.csv" || fail "replay.py failed (QoS $qos)"
  wait "$tail_pid" || fail "the subscriber got fewer than $expected messages (QoS $qos)"
  tail_pid=""
  python3 - "$here" "$scratch/got-$qos.jsonl" "$scratch/replay-$qos.csv" "$STEPS" "$qos" "$START" <<'EOF'
import csv, json, sys
sys.path.insert(0, sys.argv[1])
import make_trace
trace = make_trace.read_trace(f"{sys.argv[1]}/solar-trace.csv")
got = [json.loads(line) for line in open(sys.argv[2])]
log = list(csv.DictReader(open(sys.argv[3])))
steps, qos, start = int(sys.argv[4]), sys.argv[5], int(sys.argv[6])
problems = []
if [int(r["sim_minute"]) for r in log] != [start + 5 * k for k in range(steps)]:
    problems.append(f"replay log minutes: {[r['sim_minute'] for r in log]}")
walls = [float(r["wall_time"]) for r in log]
if walls != sorted(walls):
    problems.append("replay log wall times go backwards")
seen = {}
for m in got:
    node = m["subject"].removeprefix("energy.")
    body = json.loads(m["payload"])
    if set(body) != {"renewable_share", "solar_w", "battery_pct", "carbon_g_per_kwh"}:
        problems.append(f"{m['subject']}: fields {sorted(body)}")
    seen.setdefault(node, []).append(body)
for node, readings in trace.items():
    want = [{k: readings[start + 5 * k_][k] for k in ("renewable_share", "solar_w", "battery_pct", "carbon_g_per_kwh")}
            for k_ in range(steps)]
    if seen.get(node) != want:
        problems.append(f"energy.{node}: got {seen.get(node)}, want {want}")
headers = sorted({json.dumps(m["headers"], sort_keys=True) for m in got})
if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
shares = ", ".join(f"{n} {b[0]['renewable_share']}" for n, b in sorted(seen.items()))
print(f"check-replay: QoS {qos}: {len(got)} readings of {len(trace)} nodes x {steps} steps arrived "
      f"on energy.<node> in order, payloads as in the trace (first shares: {shares}); NATS headers seen: {', '.join(headers)}")
EOF
}
check 1 || fail "QoS 1"
check 0 || fail "QoS 0"
echo "check-replay: OK"
