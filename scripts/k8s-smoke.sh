#!/usr/bin/env bash
# Smoke test of the local two-node cluster (`make k8s-up` first):
#   1. both nodes are Ready, and a Pod runs to Succeeded (the local NATS image's
#      `nats-server --version`: it prints and exits 0), its output read back through the kubelet;
#   2. a Deployment of 4 pause Pods with a topology spread constraint (maxSkew 1 over
#      kubernetes.io/hostname) lands 2 and 2 on the nodes;
#   3. cola, outside the cluster (`cola up --dev --backend kubernetes`), with nothing but the
#      middleware's rights from k8s/base/rbac.yaml and a NATS server on node 1's bridge address,
#      runs a C hello world submitted through the HTTP API as an executor Pod, which succeeds
#      and is deleted afterwards.
# Fails loudly (with the logs' ends) when any of it does not happen.
#
# Usage: scripts/k8s-smoke.sh
#   COLA_BINARY   the cola binary to run and to put in the executor images
#                 (default: target/release/cola, built when missing)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
state=${COLA_K8S_STATE:-/var/lib/cola-k8s}
run=${COLA_K8S_RUN:-/run/cola-k8s}
cola=${COLA_BINARY:-$root/target/release/cola}
nats_host=10.244.1.1 # node 1's bridge (scripts/k8s-local.sh)
nodes=(cola-node-1 cola-node-2)
smoke_namespace="cola-k8s-smoke"

"$root/scripts/apt-install.sh" curl:curl jq:jq
export KUBECONFIG=$state/admin.kubeconfig
kubectl=$state/bin/kubectl
if [ ! -x "$kubectl" ] || [ ! -f "$KUBECONFIG" ]; then
  echo "k8s-smoke: no local cluster: run \`make k8s-up\` first" >&2
  exit 1
fi

work=$(mktemp -d /tmp/cola-k8s-smoke.XXXXXX)
cola_pid="" nats_pid=""
cleanup() {
  [ -z "$cola_pid" ] || kill "$cola_pid" 2>/dev/null || true
  [ -z "$nats_pid" ] || kill "$nats_pid" 2>/dev/null || true
  [ -z "$cola_pid" ] || wait "$cola_pid" 2>/dev/null || true
  [ -z "$nats_pid" ] || wait "$nats_pid" 2>/dev/null || true
  "$kubectl" delete namespace "$smoke_namespace" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

say() { echo "k8s-smoke: $*"; }
fail() {
  echo "k8s-smoke: FAILED: $*" >&2
  local log
  for log in "$work"/*.log; do
    [ -f "$log" ] || continue
    echo "--- the end of $(basename "$log"):" >&2
    tail -n 30 "$log" >&2
  done
  exit 1
}

# 1. Two Ready nodes.
ready=$("$kubectl" get nodes -o json \
  | jq -r '[.items[] | select(.status.conditions[] | .type == "Ready" and .status == "True")] | length')
[ "$ready" = "${#nodes[@]}" ] || fail "$ready of ${#nodes[@]} nodes are Ready: $("$kubectl" get nodes)"
say "${#nodes[@]} nodes Ready"

"$kubectl" create namespace "$smoke_namespace" >/dev/null
pod_started=$(date +%s.%N)
"$kubectl" -n "$smoke_namespace" apply -f - >/dev/null <<'EOF'
apiVersion: v1
kind: Pod
metadata:
  name: hello
spec:
  restartPolicy: Never
  automountServiceAccountToken: false
  containers:
    - name: hello
      image: localhost/cola/nats:local
      imagePullPolicy: Never
      args: ["--version"]
      securityContext:
        allowPrivilegeEscalation: false
        readOnlyRootFilesystem: true
        runAsNonRoot: true
        capabilities: {drop: [ALL]}
EOF
phase=""
for _ in $(seq 1 300); do
  phase=$("$kubectl" -n "$smoke_namespace" get pod hello -o jsonpath='{.status.phase}')
  case "$phase" in Succeeded | Failed) break ;; esac
  sleep 0.2
done
pod_finished=$(date +%s.%N)
[ "$phase" = Succeeded ] || fail "the Pod hello is $phase, not Succeeded: $("$kubectl" -n "$smoke_namespace" describe pod hello)"
output=$("$kubectl" -n "$smoke_namespace" logs hello)
grep -q '^nats-server: v' <<<"$output" || fail "the Pod hello printed '$output'"
say "a Pod reached Succeeded in $(awk -v a="$pod_started" -v b="$pod_finished" 'BEGIN { printf "%.2f", b - a }') s" \
  "on $("$kubectl" -n "$smoke_namespace" get pod hello -o jsonpath='{.spec.nodeName}'); it printed: $output"

# 2. Four Pods spread over the two nodes.
"$kubectl" -n "$smoke_namespace" apply -f - >/dev/null <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata:
  name: spread
spec:
  replicas: 4
  selector:
    matchLabels: {app: spread}
  template:
    metadata:
      labels: {app: spread}
    spec:
      automountServiceAccountToken: false
      securityContext: {runAsNonRoot: true, runAsUser: 65535}
      topologySpreadConstraints:
        - maxSkew: 1
          topologyKey: kubernetes.io/hostname
          whenUnsatisfiable: DoNotSchedule
          labelSelector:
            matchLabels: {app: spread}
      containers:
        - name: pause
          image: localhost/cola/pause:1.0
          imagePullPolicy: Never
          resources:
            requests: {cpu: 10m, memory: 8Mi}
            limits: {cpu: 50m, memory: 16Mi}
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: {drop: [ALL]}
EOF
"$kubectl" -n "$smoke_namespace" rollout status deployment/spread --timeout=120s >/dev/null \
  || fail "the Deployment did not become available: $("$kubectl" -n "$smoke_namespace" get pods -o wide)"
spread=$("$kubectl" -n "$smoke_namespace" get pods -l app=spread -o json \
  | jq -r '[.items[] | select(.status.phase == "Running") | .spec.nodeName] | group_by(.) | map("\(.[0])=\(length)") | join(" ")')
[ "$spread" = "cola-node-1=2 cola-node-2=2" ] || fail "4 Pods spread as '$spread', not 2 and 2"
say "4 Pods spread 2 and 2: $spread"
"$kubectl" delete namespace "$smoke_namespace" --wait=false >/dev/null

# 3. cola runs a C hello world as a Pod.
if [ ! -x "$cola" ]; then
  say "building cola (cargo build --release --bin cola)"
  (cd "$root" && nice -n 10 cargo build --release --bin cola)
fi
# The executor images hold this very binary; `up` imports what changed into both nodes.
"$root/scripts/images.sh" --cola-binary "$cola" >"$work/images.log" 2>&1 \
  || fail "scripts/images.sh failed"
"$root/scripts/k8s-local.sh" up >"$work/k8s-up.log" 2>&1 || fail "scripts/k8s-local.sh up failed"
for node in "${nodes[@]}"; do
  ctr --address "$run/$node/containerd.sock" -n k8s.io images ls -q \
    | grep -x docker.io/library/cola-executor-c:latest >/dev/null \
    || fail "$node has no cola-executor-c:latest image"
done

"$kubectl" apply -f "$root/k8s/base/namespaces.yaml" -f "$root/k8s/base/rbac.yaml" \
  -f "$root/k8s/base/executors.yaml" >/dev/null

# The middleware's own rights: the ServiceAccount's token in a kubeconfig of its own.
token=""
if ! token=$("$kubectl" -n cola create token cola-middleware 2>/dev/null); then
  # Before Kubernetes 1.24: the token Secret the controller manager makes for the account.
  for _ in $(seq 1 60); do
    secret=$("$kubectl" -n cola get serviceaccount cola-middleware -o jsonpath='{.secrets[0].name}')
    [ -n "$secret" ] && token=$("$kubectl" -n cola get secret "$secret" -o jsonpath='{.data.token}' | base64 -d)
    [ -n "$token" ] && break
    sleep 0.5
  done
fi
[ -n "$token" ] || fail "no token for the ServiceAccount cola-middleware"
middleware_kubeconfig=$work/middleware.kubeconfig
cat >"$middleware_kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: cola-local
  cluster:
    server: $("$kubectl" config view --minify -o jsonpath='{.clusters[0].cluster.server}')
    certificate-authority-data: $(base64 -w0 "$state/pki/ca.crt")
users:
- name: cola-middleware
  user:
    token: $token
contexts:
- name: cola-local
  context: {cluster: cola-local, user: cola-middleware, namespace: cola-executors}
current-context: cola-local
EOF
chmod 600 "$middleware_kubeconfig"
can() { "$kubectl" --kubeconfig "$middleware_kubeconfig" -n cola-executors auth can-i "$@" 2>/dev/null; }
[ "$(can create pods)" = yes ] || fail "the middleware's account cannot create Pods"
[ "$(can get secrets)" = no ] || fail "the middleware's account can read Secrets"

# NATS where the Pods reach it: node 1's bridge address (both nodes' Pods route to it).
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
nats_port=$(free_port)
nats_url=nats://$nats_host:$nats_port
ip -o addr show | grep " $nats_host/" >/dev/null \
  || fail "$nats_host is no address of this machine (node 1's bridge): is the cluster up?"
# An explicit store limit, as `cola up`'s (cola-localnats): JetStream's default is 75% of the
# disk free at start, which on a fuller disk is less than cola's buckets reserve.
printf 'jetstream {\n  store_dir: "%s"\n  max_file_store: 16GB\n}\n' "$work/nats" >"$work/nats.conf"
nats-server --addr "$nats_host" --port "$nats_port" -c "$work/nats.conf" \
  >"$work/nats.log" 2>&1 &
nats_pid=$!
for _ in $(seq 1 50); do
  (exec 3<>"/dev/tcp/$nats_host/$nats_port") 2>/dev/null && break
  sleep 0.1
done
"$kubectl" -n cola-executors delete secret cola-executor-nats --ignore-not-found >/dev/null
"$kubectl" -n cola-executors create secret generic cola-executor-nats \
  --from-literal=url="$nats_url" >/dev/null

http_port=$(free_port)
KUBECONFIG=$middleware_kubeconfig "$cola" up --dev --data-dir "$work/data" \
  --listen "127.0.0.1:$http_port" --nats-url "$nats_url" \
  --backend kubernetes --kube-image-pull-policy Never >"$work/cola.log" 2>&1 &
cola_pid=$!
api=http://127.0.0.1:$http_port
for _ in $(seq 1 100); do
  [ -s "$work/data/dev-token" ] && curl -fsS "$api/readyz" >/dev/null 2>&1 && break
  kill -0 "$cola_pid" 2>/dev/null || fail "cola up exited"
  sleep 0.2
done
curl -fsS "$api/readyz" >/dev/null 2>&1 || fail "cola up is not ready"

source='#include <stdio.h>
int main(void) { puts("hello from a pod"); return 0; }'
started=$(date +%s.%N)
job=$(jq -n --arg source "$source" '{language: "c", source: $source}' \
  | curl -sS -H "Authorization: Bearer $(cat "$work/data/dev-token")" \
    -H "Content-Type: application/json" --data-binary @- "$api/api/v1/jobs?wait=60")
finished=$(date +%s.%N)
echo "$job" >"$work/job.log"
id=$(jq -r '.id // empty' <<<"$job")
status=$(jq -r '.status // empty' <<<"$job")
[ -n "$id" ] || fail "the API did not take the job: $job"
[ "$status" = succeeded ] || fail "job $id ended '$status' ($(jq -r '.reason // empty' <<<"$job")), not succeeded"
jq -e '.stdout | contains("hello from a pod")' <<<"$job" >/dev/null \
  || fail "job $id printed $(jq '.stdout' <<<"$job")"

pod=cola-job-$id
scheduled=$("$kubectl" -n cola-executors get events -o json \
  | jq -r --arg pod "$pod" '.items[] | select(.involvedObject.name == $pod and .reason == "Scheduled") | .message')
[ -n "$scheduled" ] || fail "no Pod $pod was scheduled (events: $("$kubectl" -n cola-executors get events))"
for _ in $(seq 1 100); do
  "$kubectl" -n cola-executors get pod "$pod" >/dev/null 2>&1 || break
  sleep 0.3
done
"$kubectl" -n cola-executors get pod "$pod" >/dev/null 2>&1 && fail "the Pod $pod was not deleted after its job"
say "C hello world succeeded as Pod $pod ($scheduled) in $(awk -v a="$started" -v b="$finished" 'BEGIN { printf "%.2f", b - a }') s, Pod deleted"
say "passed"
