#!/usr/bin/env bash
# Pod-job latency on the local cluster against the process backend on the same machine, in the
# same run (issue 12, item 4): a C hello world, submit -> terminal through the HTTP API
# (`POST /api/v1/jobs?wait=60`), measured by the client; the cluster's gateway through its
# Service's cluster IP (kube-proxy runs on this machine; a `kubectl port-forward` would add a
# tunnel through the API server and a kubelet, ≈ 3.5 ms a request here).
#
#   phase "cold": cola on the cluster makes a Pod per job (COLA_KUBE_WARM_PODS=0);
#   phase "warm": each middleware keeps one Pod per language started ahead of its jobs
#                 (COLA_KUBE_WARM_PODS=1).
# In each phase, pairs alternate which side goes first: one job on the cluster, one on
# `cola up --dev` (process backend, bubblewrap)
# on this machine, a pause between pairs (a warm pool refills in about three seconds). Prints
# p50/p95 of each side, the ratio of the p50s and the median of the pair ratios.
#
# Needs the local cluster with cola deployed (`make k8s-up`, `make k8s-deploy`); leaves the
# middleware at COLA_KUBE_WARM_PODS=0.
#
# Usage: scripts/bench-k8s.sh   (COLA_BENCH_K8S_PAIRS=N pairs per phase, default 30;
#   COLA_BINARY: the cola binary of the process-backend side, default target/release/cola,
#   built when missing)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
state=${COLA_K8S_STATE:-/var/lib/cola-k8s}
pairs=${COLA_BENCH_K8S_PAIRS:-30}
local_port=18082 local_nats_port=14333

say() { echo "bench-k8s: $*" >&2; }
fail() {
  echo "bench-k8s: FAILED: $*" >&2
  exit 1
}

"$root/scripts/apt-install.sh" curl:curl jq:jq python3:python3 bwrap:bubblewrap
export KUBECONFIG=$state/admin.kubeconfig
kubectl=$state/bin/kubectl
[ -f "$KUBECONFIG" ] && [ -x "$kubectl" ] || fail "no local cluster: run \`make k8s-up\` and \`make k8s-deploy\` first"
"$kubectl" -n cola get deployment cola-middleware >/dev/null 2>&1 \
  || fail "cola is not deployed: run \`make k8s-deploy\` first"
cola=${COLA_BINARY:-$root/target/release/cola}
[ -x "$cola" ] || (cd "$root" && cargo build --release --bin cola)

work=$(mktemp -d /tmp/cola-bench-k8s.XXXXXX)
pids=()
cleanup() {
  "$kubectl" -n cola set env deployment/cola-middleware COLA_KUBE_WARM_PODS=0 >/dev/null 2>&1 || true
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The cluster's gateway and NATS at their Services' cluster IPs, and a token issued straight
# into its NATS.
gateway_ip=$("$kubectl" -n cola get svc cola-gateway -o jsonpath='{.spec.clusterIP}')
nats_ip=$("$kubectl" -n cola get svc cola-nats -o jsonpath='{.spec.clusterIP}')
password=$("$kubectl" -n cola get secret cola-nats-auth -o jsonpath='{.data.services-password}' | base64 -d)
curl -fsS --max-time 5 "http://$gateway_ip/readyz" >/dev/null \
  || fail "the gateway does not answer at its cluster IP $gateway_ip"
cluster_token=$("$cola" token issue --user bench-k8s --name bench \
  --nats-url "nats://cola:$password@$nats_ip:4222") || fail "cannot issue a token on the cluster"

# The process backend on this machine.
setsid "$cola" up --dev --listen "127.0.0.1:$local_port" --nats-url "nats://127.0.0.1:$local_nats_port" \
  --data-dir "$work/local" >"$work/local.log" 2>&1 </dev/null &
pids+=($!)
for _ in $(seq 1 150); do
  [ -s "$work/local/dev-token" ] && curl -fsS "http://127.0.0.1:$local_port/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done
[ -s "$work/local/dev-token" ] || fail "cola up did not start: $(tail -n 5 "$work/local.log")"
local_token=$(cat "$work/local/dev-token")

set_warm() {
  "$kubectl" -n cola set env deployment/cola-middleware "COLA_KUBE_WARM_PODS=$1" >/dev/null
  "$kubectl" -n cola rollout status deployment/cola-middleware --timeout=240s >/dev/null
  local want=$(( $1 * 2 * 3 )) _
  for _ in $(seq 1 120); do
    [ "$("$kubectl" -n cola-executors get pods -l cola/warm=true --field-selector=status.phase=Running --no-headers 2>/dev/null | wc -l)" -ge "$want" ] && break
    sleep 1
  done
  sleep 5 # the executors connect after their containers start
}

for phase in cold warm; do
  case "$phase" in cold) set_warm 0 ;; warm) set_warm 1 ;; esac
  say "phase $phase: $pairs pairs"
  CLUSTER="http://$gateway_ip" CLUSTER_TOKEN=$cluster_token \
    LOCAL="http://127.0.0.1:$local_port" LOCAL_TOKEN=$local_token PAIRS=$pairs PHASE=$phase \
    python3 "$root/scripts/bench-k8s.py"
done
