#!/usr/bin/env bash
# End-to-end checks of cola deployed on the local cluster (`make k8s-up`, `make k8s-deploy`),
# through `kubectl port-forward` and the live API server (issue 12, item 3; part of
# `make test-k8s`, never of `make test`):
#   1. the Deployments and the NATS StatefulSet are spread over both nodes;
#   2. a running executor Pod, read back from the API server, has the hardening of
#      k8s/README.md: non-root, read-only root, no privilege escalation, no capabilities,
#      seccomp RuntimeDefault, no service-account token, no service links, resource limits;
#   3. limits end with their reasons through the real kubelet and executor: a memory hog and a
#      shared-memory hog `memory_limit` (the run step's own limit, not the compiler's), an endless
#      loop `time_limit`;
#   4. the executors' NATS user (from the Secret cola-executor-nats) may not take jobs: it is
#      refused a subscription to cola.> and a publish to cola.c (NetworkPolicies are applied but
#      not enforced by this cluster's bridge CNI: not tested);
#   5. a burst of 200 C jobs (4 users, 50 each: the per-user quota) while one middleware Pod is
#      deleted: every job ends `succeeded`, each ran as exactly one Pod (one Scheduled event per
#      job), and no executor Pod is left;
#   6. a burst of 100 C jobs while the kubelet of one node is stopped (and started again once
#      every job has ended): every job ends, none ran as two Pods, no executor Pod is left; how
#      they ended is reported;
#   7. with COLA_KUBE_WARM_PODS=1 on the middleware, C, Go and JavaScript jobs with default
#      limits run in Pods started ahead of them (no Pod is made for them), the pool refills, and
#      with the setting back at 0 the stopping middlewares delete their warm Pods;
#   8. executor Pods follow the sun: with readings published over MQTT (mosquitto_pub as
#      cola-telemetry, through the Service cola-nats's mqtt port) saying node 1 is renewable and
#      node 2 is not, every one of SUN_JOBS jobs (default 10, one after another) runs on node 1,
#      each job's view naming the node and its share; with the shares swapped, every one on node
#      2; then a burst of SUN_BURST jobs (default 40) at once while node 2 is the sunny one: every
#      job succeeds, those node 2 had no room for made again without the requirement (counted
#      from the middlewares' logs).
# Fails loudly at the first check that does not hold.
#
# Usage: scripts/k8s-e2e.sh   (COLA_K8S_BURST=N, COLA_K8S_NODE_BURST=N for other burst sizes,
#                              multiples of 4)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
state=${COLA_K8S_STATE:-/var/lib/cola-k8s}
bridge=10.244.1.1
provider_port=9090
gateway_port=8080
base=http://localhost:$gateway_port
issuer=http://localhost:$provider_port
burst=${COLA_K8S_BURST:-200}
sun_jobs=${SUN_JOBS:-10}
sun_burst=${SUN_BURST:-40}
mqtt_port=18830
node_burst=${COLA_K8S_NODE_BURST:-100}
stopped_node=cola-node-2

say() { echo "k8s-e2e: $*"; }
work=$(mktemp -d /tmp/cola-k8s-e2e.XXXXXX)
fail() {
  echo "k8s-e2e: FAILED: $*" >&2
  local log
  for log in "$work"/*.log; do
    [ -f "$log" ] || continue
    echo "--- the end of $(basename "$log"):" >&2
    tail -n 15 "$log" >&2
  done
  [ -z "${kubectl:-}" ] || "$root/scripts/k8s-local/diagnose.sh" "$kubectl" >&2 2>&1 || true
  exit 1
}

"$root/scripts/apt-install.sh" curl:curl jq:jq node:nodejs npm:npm python3:python3 \
  mosquitto_pub:mosquitto-clients
export KUBECONFIG=$state/admin.kubeconfig
kubectl=$root/target/k8s-kubectl/bin/kubectl
[ -x "$kubectl" ] || kubectl=$state/bin/kubectl
[ -f "$KUBECONFIG" ] || fail "no local cluster: run \`make k8s-up\` and \`make k8s-deploy\` first"
"$kubectl" -n cola get deployment cola-gateway >/dev/null 2>&1 \
  || fail "cola is not deployed: run \`make k8s-deploy\` first"

provider_pid="" forward_pid="" node_forward_pid="" mqtt_forward_pid="" kubelet_stopped=0 warm_set=0
cleanup() {
  [ "$kubelet_stopped" = 0 ] || "$root/scripts/k8s-local.sh" kubelet-start "$stopped_node" || true
  [ "$warm_set" = 0 ] || "$kubectl" -n cola set env deployment/cola-middleware COLA_KUBE_WARM_PODS=0 >/dev/null || true
  [ -z "$provider_pid" ] || kill "$provider_pid" 2>/dev/null || true
  [ -z "$forward_pid" ] || kill "$forward_pid" 2>/dev/null || true
  [ -z "$node_forward_pid" ] || kill "$node_forward_pid" 2>/dev/null || true
  [ -z "$mqtt_forward_pid" ] || kill "$mqtt_forward_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# 1. Spread.
spread_of() {
  "$kubectl" -n cola get pods -l "app.kubernetes.io/name=$1" -o json \
    | jq -r '[.items[] | select(.status.phase == "Running") | .spec.nodeName] | unique | length'
}
for workload in cola-gateway cola-middleware cola-nats; do
  nodes=$(spread_of "$workload")
  [ "$nodes" = 2 ] || fail "$workload runs on $nodes node(s), not both: $("$kubectl" -n cola get pods -o wide)"
done
say "1. gateway, middleware and NATS each run on both nodes"

# The provider, the port-forward, four users with an API token each.
oidc=$root/web/tests/oidc
if ! [ "$oidc/node_modules/.cola-installed" -nt "$oidc/package-lock.json" ]; then
  (cd "$oidc" && npm ci --no-audit --no-fund --prefer-offline --loglevel=error)
  touch "$oidc/node_modules/.cola-installed"
fi
client_id=$("$kubectl" -n cola get secret cola-oidc -o jsonpath='{.data.client-id}' | base64 -d)
client_secret=$("$kubectl" -n cola get secret cola-oidc -o jsonpath='{.data.client-secret}' | base64 -d)
(cd "$oidc" && OIDC_PORT=$provider_port OIDC_LISTEN="127.0.0.1,$bridge" \
  OIDC_CLIENT_ID=$client_id OIDC_CLIENT_SECRET=$client_secret \
  OIDC_REDIRECT_URI=$base/auth/callback exec setsid node server.mjs) >"$work/provider.log" 2>&1 &
provider_pid=$!
setsid "$kubectl" -n cola port-forward svc/cola-gateway "$gateway_port:80" >"$work/port-forward.log" 2>&1 &
forward_pid=$!
for _ in $(seq 1 100); do
  grep -q '^ready ' "$work/provider.log" && curl -fsS "$base/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -fsS "$base/readyz" >/dev/null || fail "the gateway does not answer through the port-forward"

# token_for NAME: logs NAME in through the provider and makes an API token on the tokens page.
token_for() {
  local name=$1 jar=$work/$1.cookies landed action
  landed=$(curl -sS --max-time 30 -b "$jar" -c "$jar" -L -o "$work/$name-login.html" \
    -w '%{url_effective}' "$base/auth/login")
  action=$(sed -n 's/.*<form method="post" action="\([^"]*\)".*/\1/p' "$work/$name-login.html" | head -n 1)
  [ -n "$action" ] || fail "$name: no sign-in form at $landed"
  curl -sS --max-time 30 -b "$jar" -c "$jar" -L -o /dev/null --data-urlencode "login=$name" "$issuer$action"
  curl -sS --max-time 30 -b "$jar" -c "$jar" -o "$work/$name-tokens.html" "$base/tokens"
  local csrf
  csrf=$(sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p' "$work/$name-tokens.html" | head -n 1)
  [ -n "$csrf" ] || fail "$name: not signed in (no form on the tokens page)"
  curl -sS --max-time 30 -b "$jar" -c "$jar" -o "$work/$name-token.html" -d "csrf=$csrf" -d name=e2e "$base/tokens"
  sed -n 's/.*id="new-token"[^>]*value="\([^"]*\)".*/\1/p' "$work/$name-token.html"
}
declare -A tokens
for name in alice bob carol dave; do
  tokens[$name]=$(token_for "$name")
  [ -n "${tokens[$name]}" ] || fail "no API token for $name"
done

# submit USER JSON: the job's id.
submit() {
  curl -sS --max-time 30 -H "Authorization: Bearer ${tokens[$1]}" -H 'Content-Type: application/json' \
    --data-binary "$2" "$base/api/v1/jobs" | tee -a "$work/submit.json" | jq -r '.id // empty'
}
# wait_job USER ID: the job's final view (JSON).
wait_job() {
  local view status
  for _ in $(seq 1 10); do
    view=$(curl -sS --max-time 70 -H "Authorization: Bearer ${tokens[$1]}" "$base/api/v1/jobs/$2?wait=60")
    status=$(jq -r '.status // empty' <<<"$view")
    case "$status" in queued | running | "") continue ;; *) break ;; esac
  done
  echo "$view"
}
# c_job SOURCE [LIMITS]: a C job's JSON.
c_job() {
  local limits='{}'
  [ $# -lt 2 ] || limits=$2
  jq -nc --arg source "$1" --argjson limits "$limits" '{language: "c", source: $source, limits: $limits}'
}

# 2. The hardening of a running executor Pod, read back from the API server.
id=$(submit alice "$(c_job '#include <unistd.h>
int main(void) { sleep(4); return 0; }')")
[ -n "$id" ] || fail "the sleeping job was not taken"
pod=cola-job-$id
spec=""
for _ in $(seq 1 50); do
  spec=$("$kubectl" -n cola-executors get pod "$pod" -o json 2>/dev/null) && break
  sleep 0.1
done
[ -n "$spec" ] || fail "no Pod $pod appeared for job $id"
echo "$spec" >"$work/executor-pod.log"
check() {
  jq -e "$1" <<<"$spec" >/dev/null || fail "the executor Pod does not have $2: $(jq -c "$3" <<<"$spec")"
}
check '.spec.automountServiceAccountToken == false' "automountServiceAccountToken: false" '.spec.automountServiceAccountToken'
check '.spec.enableServiceLinks == false' "enableServiceLinks: false" '.spec.enableServiceLinks'
check '[.spec.volumes[]? | select(.projected)] | length == 0' "no projected (token) volume" '.spec.volumes'
check '(.spec.securityContext.runAsNonRoot == true) and ((.spec.securityContext.runAsUser // .spec.containers[0].securityContext.runAsUser) > 0)' \
  "a non-root user" '.spec.securityContext'
check '(.spec.securityContext.seccompProfile.type // .spec.containers[0].securityContext.seccompProfile.type) == "RuntimeDefault"' \
  "seccomp RuntimeDefault" '.spec.securityContext'
check 'all((.spec.initContainers // []) + .spec.containers | .[]; .securityContext.readOnlyRootFilesystem == true and .securityContext.allowPrivilegeEscalation == false and (.securityContext.capabilities.drop | index("ALL")) != null and (.securityContext.privileged // false) == false)' \
  "a read-only root, no privilege escalation, every capability dropped" '[(.spec.initContainers // []) + .spec.containers | .[].securityContext]'
check 'all((.spec.initContainers // []) + .spec.containers | .[]; .resources.limits.memory != null and .resources.limits.cpu != null and .resources.limits["ephemeral-storage"] != null)' \
  "memory, CPU and ephemeral-storage limits" '[(.spec.initContainers // []) + .spec.containers | .[].resources]'
# A C job: compiled in an init container with the compiler's memory limit, run in the executor
# container with the program's own (256 MiB by default, plus the executor's 128 MiB).
check '[.spec.containers[].name] == ["compile", "executor"] and .spec.containers[0].resources.limits.memory == "2308Mi" and .spec.containers[1].resources.limits.memory == "384Mi"' \
  "a compile container of its own and the program's memory limit in the executor's" '[.spec.containers[] | {name, memory: .resources.limits.memory}]'
check 'all((.spec.initContainers // []) + .spec.containers | .[].env[] | select(.name == "COLA_JOB"); (.value | contains("sleep(4)") | not) and (.value | fromjson | has("input_object")))' \
  "no source in its spec (the inputs in the object store)" '[.spec.containers[].env[] | select(.name == "COLA_JOB") | .value]'
check '.spec.restartPolicy == "Never" and .spec.activeDeadlineSeconds > 0' \
  "restartPolicy Never and an active deadline" '{restartPolicy: .spec.restartPolicy, activeDeadlineSeconds: .spec.activeDeadlineSeconds}'
memory_limit=$(jq -r '.spec.containers[] | select(.name == "executor") | .resources.limits.memory' <<<"$spec")
view=$(wait_job alice "$id")
[ "$(jq -r .status <<<"$view")" = succeeded ] || fail "the sleeping job ended $(jq -c '{status, reason}' <<<"$view")"
say "2. executor Pod $pod: non-root, read-only root, no escalation, no capabilities, RuntimeDefault," \
  "no token, no service links, limits (memory $memory_limit); the job succeeded"

# 3. Limits end with their reasons.
id=$(submit alice "$(c_job '#include <stdlib.h>
#include <string.h>
int main(void) { for (;;) { char *p = malloc(1 << 20); if (!p) return 3; memset(p, 1, 1 << 20); } }' '{"memory_mb": 64}')")
view=$(wait_job alice "$id")
[ "$(jq -r '.status + "/" + (.reason // "")' <<<"$view")" = failed/memory_limit ] \
  || fail "the memory hog ended $(jq -c '{status, reason, stderr}' <<<"$view")"
# Shared memory counts too: 1 GiB of shared pages with a limit of 64 MB (the compiler's larger
# limit is its own container's).
id=$(submit alice "$(c_job '#define _DEFAULT_SOURCE
#include <string.h>
#include <sys/mman.h>
int main(void) { size_t n = (size_t)1 << 30; char *p = mmap(0, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0); if (p == MAP_FAILED) return 3; memset(p, 1, n); return 0; }' '{"memory_mb": 64}')")
view=$(wait_job alice "$id")
[ "$(jq -r '.status + "/" + (.reason // "")' <<<"$view")" = failed/memory_limit ] \
  || fail "the shared-memory hog ended $(jq -c '{status, reason, stderr}' <<<"$view")"
id=$(submit alice "$(c_job 'int main(void) { for (;;) { } }' '{"wall_time_ms": 2000, "cpu_time_ms": 2000}')")
view=$(wait_job alice "$id")
[ "$(jq -r '.status + "/" + (.reason // "")' <<<"$view")" = failed/time_limit ] \
  || fail "the endless loop ended $(jq -c '{status, reason}' <<<"$view")"
say "3. a memory hog and a shared-memory hog ended failed/memory_limit, an endless loop failed/time_limit"

# 4. The executors' NATS user cannot take jobs.
executor_url=$("$kubectl" -n cola-executors get secret cola-executor-nats -o jsonpath='{.data.url}' | base64 -d)
EXECUTOR_URL=$executor_url python3 - >"$work/nats-permissions.log" <<'EOF' || fail "the executors' NATS user may do what it must not"
import json, os, socket, time, urllib.parse
url = urllib.parse.urlparse(os.environ["EXECUTOR_URL"])
sock = socket.create_connection((url.hostname, url.port), timeout=5)
sock.recv(65536)  # INFO
def say(line):
    sock.sendall(line.encode() + b"\r\n")
say("CONNECT " + json.dumps({"user": urllib.parse.unquote(url.username),
                            "pass": urllib.parse.unquote(url.password), "verbose": True}))
say("SUB cola.> 1")
say("PUB cola.c 2\r\nhi")
say("SUB _INBOX.e2e 3")
say("PING")
answer = b""
deadline = time.time() + 5
while b"PONG" not in answer and time.time() < deadline:
    answer += sock.recv(65536)
text = answer.decode()
print(text)
assert text.startswith("+OK"), "the executor user could not log in"
assert "Permissions Violation for Subscription to \"cola.>\"" in text, "subscribing to cola.> was allowed"
assert "Permissions Violation for Publish to \"cola.c\"" in text, "publishing to cola.c was allowed"
assert text.count("+OK") >= 2, "subscribing to _INBOX.> was refused"
EOF
say "4. the executors' NATS user is refused cola.> and cola.c (and may use _INBOX.>)"

# 5. A burst while a middleware Pod is deleted.
per_user=$((burst / 4))
declare -A owner
started=$(date +%s)
source='#include <stdio.h>
int main(void) { puts("burst"); return 0; }'
job_json=$(c_job "$source")
index=0
for name in alice bob carol dave; do
  for _ in $(seq 1 "$per_user"); do
    id=$(submit "$name" "$job_json")
    [ -n "$id" ] || fail "the API did not take job $index of the burst ($(tail -c 300 "$work/submit.json"))"
    owner[$id]=$name
    index=$((index + 1))
    if [ "$index" = $((burst / 4)) ]; then
      victim=$("$kubectl" -n cola get pods -l app.kubernetes.io/name=cola-middleware -o jsonpath='{.items[0].metadata.name}')
      "$kubectl" -n cola delete pod "$victim" --wait=false >/dev/null
      say "5. deleted the middleware Pod $victim after $index of $burst submissions"
    fi
  done
done
say "5. $burst jobs submitted in $(($(date +%s) - started)) s"
# ended STEP: waits for every job of `owner` to end and checks each ran as exactly one Pod;
# adds to `problems` what does not hold (every job must succeed unless `may_fail` is set).
ended() {
  local step=$1 id view outcome
  declare -A outcomes=()
  for id in "${!owner[@]}"; do
    view=$(wait_job "${owner[$id]}" "$id")
    outcome=$(jq -r '.status + "/" + (.reason // "")' <<<"$view")
    outcomes[$outcome]=$((${outcomes[$outcome]:-0} + 1))
    [ "$outcome" = succeeded/ ] || echo "$id $outcome $(jq -c .message <<<"$view")" >>"$work/burst-failures.log"
  done
  local summary
  summary=$(for outcome in "${!outcomes[@]}"; do echo "$outcome=${outcomes[$outcome]}"; done | sort | paste -sd' ' -)
  say "$step. all ${#owner[@]} terminal $(($(date +%s) - started)) s after the first submission: $summary"
  local unfinished=$(( ${outcomes[queued/]:-0} + ${outcomes[running/]:-0} ))
  [ "$unfinished" = 0 ] || problems+=("$unfinished jobs never ended")
  [ "${may_fail:-0}" = 1 ] || [ "${outcomes[succeeded/]:-0}" = "${#owner[@]}" ] \
    || problems+=("not every job of the burst succeeded: $summary")
}
# one_pod_each STEP: each job of `owner` ran as exactly one Pod.
one_pod_each() {
  local step=$1 scheduled id count never=0 twice=0
  scheduled=$("$kubectl" -n cola-executors get events -o json \
    | jq -r '.items[] | select(.reason == "Scheduled") | "\(.involvedObject.name) \(.count // 1)"')
  for id in "${!owner[@]}"; do
    count=$(awk -v pod="cola-job-$id" '$1 == pod { n += $2 } END { print n + 0 }' <<<"$scheduled")
    case "$count" in
      1) ;;
      0) never=$((never + 1)) ;;
      *) echo "cola-job-$id scheduled $count times" >>"$work/burst-pods.log"; twice=$((twice + 1)) ;;
    esac
  done
  [ "$never" = 0 ] || [ "${may_fail:-0}" = 1 ] || problems+=("$never jobs of the burst never ran as a Pod")
  [ "$twice" = 0 ] || problems+=("$twice jobs of the burst ran as more than one Pod")
  say "$step. jobs whose Pod was never scheduled: $never; scheduled more than once: $twice"
}
# no_pod_left STEP SECONDS: no executor Pod is left within SECONDS.
no_pod_left() {
  local step=$1 left _
  for _ in $(seq 1 "$2"); do
    left=$("$kubectl" -n cola-executors get pods --no-headers 2>/dev/null | wc -l)
    [ "$left" = 0 ] && break
    sleep 1
  done
  [ "$left" = 0 ] || problems+=("$left executor Pods are left after the burst: $("$kubectl" -n cola-executors get pods --no-headers | head -n 5)")
  say "$step. executor Pods left after the burst: $left"
}
problems=()
ended 5
one_pod_each 5
no_pod_left 5 60
[ ${#problems[@]} = 0 ] || fail "$(printf '%s; ' "${problems[@]}")"

# 6. A burst while one node's kubelet is stopped. The API is reached through a gateway Pod on
# the other node (a port-forward goes through the kubelet of the Pod's node).
gateway_pod=$("$kubectl" -n cola get pods -l app.kubernetes.io/name=cola-gateway -o json \
  | jq -r --arg node "$stopped_node" '[.items[] | select(.spec.nodeName != $node and .status.phase == "Running")][0].metadata.name // empty')
[ -n "$gateway_pod" ] || fail "no gateway Pod runs outside $stopped_node"
gateway_container_port=$("$kubectl" -n cola get pod "$gateway_pod" -o json \
  | jq -r '.spec.containers[0].ports[] | select(.name == "http") | .containerPort')
setsid "$kubectl" -n cola port-forward "pod/$gateway_pod" "$((gateway_port + 1)):$gateway_container_port" \
  >"$work/node-port-forward.log" 2>&1 &
node_forward_pid=$!
base=http://localhost:$((gateway_port + 1))
for _ in $(seq 1 50); do
  curl -fsS "$base/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -fsS "$base/readyz" >/dev/null || fail "gateway Pod $gateway_pod does not answer through its port-forward"
owner=()
started=$(date +%s)
index=0
for name in alice bob carol dave; do
  for _ in $(seq 1 $((node_burst / 4))); do
    id=$(submit "$name" "$job_json")
    [ -n "$id" ] || fail "the API did not take job $index of the second burst ($(tail -c 300 "$work/submit.json"))"
    owner[$id]=$name
    index=$((index + 1))
    if [ "$index" = $((node_burst / 4)) ]; then
      "$root/scripts/k8s-local.sh" kubelet-stop "$stopped_node" >/dev/null
      kubelet_stopped=1
      say "6. stopped the kubelet of $stopped_node after $index of $node_burst submissions"
    fi
  done
done
say "6. $node_burst jobs submitted in $(($(date +%s) - started)) s"
may_fail=1 ended 6
"$root/scripts/k8s-local.sh" kubelet-start "$stopped_node" >/dev/null
kubelet_stopped=0
say "6. started the kubelet of $stopped_node again"
may_fail=1 one_pod_each 6
no_pod_left 6 180
[ ${#problems[@]} = 0 ] || fail "$(printf '%s; ' "${problems[@]}")"

# 7. Pods started ahead of their jobs.
warm_pods() {
  "$kubectl" -n cola-executors get pods -l cola/warm=true -o json \
    | jq -r --arg phase "$1" '[.items[] | select(.metadata.deletionTimestamp == null) | select($phase == "" or .status.phase == $phase)] | length'
}
warm_scheduled() {
  "$kubectl" -n cola-executors get events -o json \
    | jq -r '[.items[] | select(.reason == "Scheduled" and (.involvedObject.name | startswith("cola-job-warm-")))] | length'
}
set_warm() {
  warm_set=$1
  "$kubectl" -n cola set env deployment/cola-middleware "COLA_KUBE_WARM_PODS=$1" >/dev/null
  "$kubectl" -n cola rollout status deployment/cola-middleware --timeout=240s >/dev/null \
    || fail "the middleware did not roll out with COLA_KUBE_WARM_PODS=$1"
}
set_warm 1
expected=$(( 2 * 3 ))
for _ in $(seq 1 120); do
  [ "$(warm_pods Running)" -ge "$expected" ] && break
  sleep 1
done
[ "$(warm_pods Running)" -ge "$expected" ] || fail "fewer than $expected warm Pods run: $("$kubectl" -n cola-executors get pods)"
say "7. $(warm_pods Running) warm Pods run (1 per language and middleware)"
# Their executors connect after their containers start: a moment for that.
sleep 3
before=$(warm_scheduled)
declare -A warm_jobs=(
  [c]='{"language": "c", "source": "#include <stdio.h>\nint main(void) { puts(\"warm c\"); return 0; }\n"}'
  [go]='{"language": "go", "source": "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"warm go\") }\n"}'
  [javascript]='{"language": "javascript", "source": "console.log(\"warm javascript\");\n"}'
)
for lang in c go javascript; do
  id=$(submit alice "${warm_jobs[$lang]}")
  [ -n "$id" ] || fail "the API did not take the warm $lang job ($(tail -c 300 "$work/submit.json"))"
  view=$(wait_job alice "$id")
  [ "$(jq -r '.status + " " + .stdout' <<<"$view")" = "succeeded warm $lang" ] \
    || fail "the warm $lang job ended $(jq -c '{status, reason, stdout, message}' <<<"$view")"
  own=$("$kubectl" -n cola-executors get events -o json \
    | jq -r --arg pod "cola-job-$id" '[.items[] | select(.reason == "Scheduled" and .involvedObject.name == $pod)] | length')
  [ "$own" = 0 ] || fail "the $lang job with default limits got a Pod of its own, not a warm one"
done
for _ in $(seq 1 60); do
  [ "$(warm_scheduled)" -ge $((before + 3)) ] && break
  sleep 1
done
[ "$(warm_scheduled)" -ge $((before + 3)) ] || fail "the warm pool was not refilled ($before, then $(warm_scheduled) warm Pods scheduled)"
say "7. C, Go and JavaScript ran in warm Pods (no Pod of their own); the pool was refilled"
set_warm 0
for _ in $(seq 1 60); do
  [ "$(warm_pods "")" = 0 ] && break
  sleep 1
done
[ "$(warm_pods "")" = 0 ] || fail "warm Pods are left after the middleware stopped keeping them: $("$kubectl" -n cola-executors get pods)"
say "7. with COLA_KUBE_WARM_PODS=0 the stopping middlewares deleted their warm Pods"

# 8. Executor Pods follow the sun.
telemetry_password=$("$kubectl" -n cola get secret cola-nats-auth -o jsonpath='{.data.telemetry-password}' | base64 -d)
[ -n "$telemetry_password" ] || fail "the Secret cola-nats-auth has no telemetry-password"
setsid "$kubectl" -n cola port-forward svc/cola-nats "$mqtt_port:mqtt" >"$work/mqtt-port-forward.log" 2>&1 &
mqtt_forward_pid=$!
# sunny NODE: publishes NODE 100% renewable and the other node 0%, through MQTT.
sunny() {
  local node share
  for node in cola-node-1 cola-node-2; do
    share=0.0
    [ "$node" = "$1" ] && share=1.0
    for _ in $(seq 1 50); do
      mosquitto_pub -h 127.0.0.1 -p "$mqtt_port" -u cola-telemetry -P "$telemetry_password" -q 1 \
        -t "energy/$node" -m "{\"renewable_share\": $share}" 2>>"$work/mosquitto.log" && continue 2
      sleep 0.2
    done
    fail "cannot publish the reading of $node over MQTT"
  done
  # The middlewares take readings in from their watch of cola-energy: a moment.
  sleep 2
}
# sun_follows NODE: SUN_JOBS C jobs one after another all run on NODE, which their views name
# with its share.
sun_follows() {
  local node=$1 id view where on=0
  for _ in $(seq 1 "$sun_jobs"); do
    id=$(submit alice "$job_json")
    [ -n "$id" ] || fail "the API did not take a job while $node is sunny"
    view=$(wait_job alice "$id")
    [ "$(jq -r .status <<<"$view")" = succeeded ] || fail "a job ended $(jq -c '{status, reason, message}' <<<"$view")"
    where=$(jq -r '"\(.node) \(.renewable_share)"' <<<"$view")
    echo "$id $where" >>"$work/sun.log"
    [ "$where" = "${node//./_} 1" ] && on=$((on + 1))
  done
  [ "$on" = "$sun_jobs" ] || fail "with $node sunny, $on of $sun_jobs jobs ran there: $(cut -d' ' -f2- "$work/sun.log" | sort | uniq -c | tr '\n' ';')"
  say "8. with $node 100% renewable and the other node 0%: $on of $sun_jobs jobs ran on $node"
}
sunny cola-node-1
sun_follows cola-node-1
: >"$work/sun.log"
sunny cola-node-2
sun_follows cola-node-2
# A burst at once: node 2 fills up, and what it has no room for goes elsewhere.
since=$(date -u +%Y-%m-%dT%H:%M:%SZ)
owner=()
started=$(date +%s)
for _ in $(seq 1 "$sun_burst"); do
  id=$(submit alice "$job_json")
  [ -n "$id" ] || fail "the API did not take a job of the sunny burst ($(tail -c 300 "$work/submit.json"))"
  owner[$id]=alice
done
problems=()
ended 8
[ ${#problems[@]} = 0 ] || fail "$(printf '%s; ' "${problems[@]}")"
declare -A burst_nodes=()
for id in "${!owner[@]}"; do
  where=$(wait_job alice "$id" | jq -r '.node // "unknown"')
  burst_nodes[$where]=$(( ${burst_nodes[$where]:-0} + 1 ))
done
remade=$("$kubectl" -n cola logs -l app.kubernetes.io/name=cola-middleware -c middleware --since-time="$since" --tail=-1 2>/dev/null \
  | grep -c "executor Pod made again" || true)
say "8. a burst of $sun_burst with cola-node-2 sunny: $(for n in "${!burst_nodes[@]}"; do echo "$n ${burst_nodes[$n]}"; done | sort | paste -sd, -);" \
  "$remade Pods made again without the requirement (no room on the sunny node)"
say "passed"
