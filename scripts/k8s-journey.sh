#!/usr/bin/env bash
# The journey a person makes through cola deployed on the local cluster (`make k8s-up`, then
# scripts/k8s-deploy.sh, overlay local-test-login), through `kubectl port-forward` as
# k8s/README.md says:
#   - the test OpenID provider (web/tests/oidc, as in the browser tests) on localhost:9090 and
#     on node 1's bridge address (where the gateway's Pod reaches it through its forwarder)
#   - kubectl -n cola port-forward svc/cola-gateway 8080:80
#   - log in as alice through the provider (the pages' own redirects, a cookie jar: what a
#     browser does, without the JavaScript), submit a C program through the web form, make an
#     API token on the tokens page, submit Go, JavaScript and a numeric problem through the
#     JSON API, wait for all four to end, download each one's zip (the page's link and the API)
#   - check that each program ran as an executor Pod (its Scheduled event names the node) and
#     that the Pod was deleted after its job
# Fails loudly at the first step that does not happen. Prints the figures (submit -> terminal).
#
# Usage: scripts/k8s-journey.sh
#   COLA_K8S_JOURNEY_KEEP=1   leave the provider and the port-forward running afterwards (their
#                             PIDs are printed), to go on in a browser at http://localhost:8080
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
state=${COLA_K8S_STATE:-/var/lib/cola-k8s}
bridge=10.244.1.1 # node 1's bridge (scripts/k8s-local.sh); the overlay's forwarder targets it
provider_port=9090
gateway_port=8080
base=http://localhost:$gateway_port
issuer=http://localhost:$provider_port

say() { echo "k8s-journey: $*"; }
work=$(mktemp -d /tmp/cola-k8s-journey.XXXXXX)
fail() {
  echo "k8s-journey: FAILED: $*" >&2
  local log
  for log in "$work"/*.log; do
    [ -f "$log" ] || continue
    echo "--- the end of $(basename "$log"):" >&2
    tail -n 20 "$log" >&2
  done
  [ -z "${kubectl:-}" ] || "$root/scripts/k8s-local/diagnose.sh" "$kubectl" >&2 2>&1 || true
  exit 1
}

"$root/scripts/apt-install.sh" curl:curl jq:jq unzip:unzip node:nodejs npm:npm python3:python3
export KUBECONFIG=$state/admin.kubeconfig
kubectl=$root/target/k8s-kubectl/bin/kubectl
[ -x "$kubectl" ] || kubectl=$state/bin/kubectl
[ -f "$KUBECONFIG" ] || fail "no local cluster: run \`make k8s-up\` and scripts/k8s-deploy.sh first"
"$kubectl" -n cola get deployment cola-gateway >/dev/null 2>&1 \
  || fail "cola is not deployed: run scripts/k8s-deploy.sh first"

provider_pid="" forward_pid=""
cleanup() {
  if [ "${COLA_K8S_JOURNEY_KEEP:-}" = 1 ]; then
    say "left running: the provider (pid $provider_pid), the port-forward (pid $forward_pid)"
  else
    [ -z "$provider_pid" ] || kill "$provider_pid" 2>/dev/null || true
    [ -z "$forward_pid" ] || kill "$forward_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# The provider, with the client of the Secret cola-oidc.
oidc=$root/web/tests/oidc
if ! [ "$oidc/node_modules/.cola-installed" -nt "$oidc/package-lock.json" ]; then
  say "npm ci in web/tests/oidc"
  (cd "$oidc" && npm ci --no-audit --no-fund --prefer-offline --loglevel=error)
  touch "$oidc/node_modules/.cola-installed"
fi
client_id=$("$kubectl" -n cola get secret cola-oidc -o jsonpath='{.data.client-id}' | base64 -d)
client_secret=$("$kubectl" -n cola get secret cola-oidc -o jsonpath='{.data.client-secret}' | base64 -d)
for port in "$provider_port" "$gateway_port"; do
  if ss -Htln "sport = :$port" | grep . >/dev/null; then
    fail "port $port is taken: $(ss -Htlnp "sport = :$port" | head -n 1)"
  fi
done
(cd "$oidc" && OIDC_PORT=$provider_port OIDC_LISTEN="127.0.0.1,$bridge" \
  OIDC_CLIENT_ID=$client_id OIDC_CLIENT_SECRET=$client_secret \
  OIDC_REDIRECT_URI=$base/auth/callback exec setsid node server.mjs) >"$work/provider.log" 2>&1 &
provider_pid=$!
for _ in $(seq 1 100); do
  grep -q '^ready ' "$work/provider.log" && break
  kill -0 "$provider_pid" 2>/dev/null || fail "the test OpenID provider exited"
  sleep 0.1
done
grep -q '^ready ' "$work/provider.log" || fail "the test OpenID provider did not start"
say "test OpenID provider: $issuer (and $bridge:$provider_port for the Pods)"

# kubectl port-forward, as the README says.
setsid "$kubectl" -n cola port-forward svc/cola-gateway "$gateway_port:80" >"$work/port-forward.log" 2>&1 &
forward_pid=$!
for _ in $(seq 1 100); do
  curl -fsS "$base/readyz" >/dev/null 2>&1 && break
  kill -0 "$forward_pid" 2>/dev/null || fail "kubectl port-forward exited"
  sleep 0.2
done
curl -fsS "$base/readyz" >/dev/null || fail "the gateway does not answer through the port-forward"
say "kubectl -n cola port-forward svc/cola-gateway $gateway_port:80: ready"

# Log in: the gateway sends the browser to the provider, the provider shows its form.
jar=$work/cookies
browse() { curl -sS --max-time 30 -b "$jar" -c "$jar" -L "$@"; }
landed=$(browse -o "$work/login.html" -w '%{url_effective}' "$base/auth/login")
case "$landed" in
  "$issuer"/interaction/*) ;;
  *) fail "GET /auth/login landed on $landed, not the provider's sign-in page" ;;
esac
action=$(sed -n 's/.*<form method="post" action="\([^"]*\)".*/\1/p' "$work/login.html" | head -n 1)
[ -n "$action" ] || fail "no sign-in form on $landed"
landed=$(browse -o "$work/index.html" -w '%{url_effective}' --data-urlencode login=alice "$issuer$action")
[ "${landed%/}" = "$base" ] || fail "after signing in, landed on $landed, not $base/"
grep -q 'alice@example.edu' "$work/index.html" || fail "the job list does not say who is signed in"
say "logged in as alice@example.edu through the test provider"

csrf() { sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p' "$1" | head -n 1; }

# A C program through the web form.
token=$(csrf "$work/index.html")
[ -n "$token" ] || fail "no CSRF token in the form"
c_source='#include <stdio.h>
int main(void) { printf("hello from a pod: %d\n", 6 * 7); return 0; }'
started_c=$(date +%s.%N)
landed=$(browse -o "$work/submitted.html" -w '%{url_effective}' --form-string "csrf=$token" -F mode=program \
  -F language=c --form-string "source=$c_source" "$base/jobs")
c_id=$(sed -n 's/.*[?&]submitted=\([0-9a-f-]*\).*/\1/p' <<<"$landed")
[ -n "$c_id" ] || fail "the form did not take the C program (landed on $landed)"
say "C program submitted through the form: job $c_id"

# An API token from the tokens page.
browse -o "$work/tokens.html" "$base/tokens"
browse -o "$work/token.html" -d "csrf=$(csrf "$work/tokens.html")" -d name=k8s-journey "$base/tokens"
api_token=$(sed -n 's/.*id="new-token"[^>]*value="\([^"]*\)".*/\1/p' "$work/token.html")
[ -n "$api_token" ] || fail "the tokens page showed no new token"
say "API token made on the tokens page"

api() { curl -sS --max-time 70 -H "Authorization: Bearer $api_token" "$@"; }
submit() {
  api -H 'Content-Type: application/json' --data-binary @- "$base/api/v1/jobs" \
    | tee -a "$work/api.log" | jq -r '.id // empty'
}
declare -A ids started
started[c]=$started_c
ids[c]=$c_id
started[go]=$(date +%s.%N)
ids[go]=$(jq -n '{language: "go", source: "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hello from a pod in Go\") }\n"}' | submit)
started[javascript]=$(date +%s.%N)
ids[javascript]=$(jq -n '{language: "javascript", source: "console.log(`hello from a pod in JavaScript: ${6 * 7}`);\n"}' | submit)
started[numeric]=$(date +%s.%N)
ids[numeric]=$(jq -n '{language: "numeric", problem: {method: "bisection", f: "x^3 + 4*x^2 - 10", a: 1, b: 2, tol: 1e-10, max_iter: 100}}' | submit)
for language in go javascript numeric; do
  [ -n "${ids[$language]}" ] || fail "the API did not take the $language job"
  say "$language submitted through the API: job ${ids[$language]}"
done

# Watch each to its end, then download its zip, through the page's link and the API.
declare -A expect=([c]="hello from a pod: 42" [go]="hello from a pod in Go"
  [javascript]="hello from a pod in JavaScript: 42")
for language in c go javascript numeric; do
  id=${ids[$language]}
  job=""
  for _ in $(seq 1 5); do
    job=$(api "$base/api/v1/jobs/$id?wait=60")
    case "$(jq -r .status <<<"$job")" in queued | running) continue ;; *) break ;; esac
  done
  finished=$(date +%s.%N)
  echo "$job" >>"$work/jobs.log"
  status=$(jq -r .status <<<"$job")
  [ "$status" = succeeded ] || fail "the $language job $id ended $status ($(jq -r '.reason // empty' <<<"$job"))"
  if [ "$language" = numeric ]; then
    root_found=$(jq -r .result.root <<<"$job")
    awk -v r="$root_found" 'BEGIN { exit !(r > 1.3652300134 && r < 1.3652300135) }' \
      || fail "the numeric job found the root $root_found"
  else
    jq -e --arg want "${expect[$language]}" '.stdout | contains($want)' <<<"$job" >/dev/null \
      || fail "the $language job printed $(jq .stdout <<<"$job")"
  fi
  browse -o "$work/$language-page.zip" "$base/jobs/$id/output.zip"
  api -o "$work/$language-api.zip" "$base/api/v1/jobs/$id/output.zip"
  cmp -s "$work/$language-page.zip" "$work/$language-api.zip" \
    || fail "the page's zip and the API's zip of $id differ"
  files=$(unzip -Z1 "$work/$language-api.zip" | paste -sd' ' -)
  [ -n "$files" ] || fail "the zip of $id is empty or not a zip"
  say "$language: $status in $(awk -v a="${started[$language]}" -v b="$finished" 'BEGIN { printf "%.2f", b - a }') s" \
    "(submit -> seen terminal), zip ($(stat -c %s "$work/$language-api.zip") bytes): $files"
done

# Each program ran as an executor Pod, on a node, and the Pod is gone.
for language in c go javascript; do
  id=${ids[$language]}
  pod=cola-job-$id
  scheduled=$("$kubectl" -n cola-executors get events -o json \
    | jq -r --arg pod "$pod" '.items[] | select(.involvedObject.name == $pod and .reason == "Scheduled") | .message')
  [ -n "$scheduled" ] || fail "no Pod $pod was scheduled for the $language job"
  for _ in $(seq 1 100); do
    "$kubectl" -n cola-executors get pod "$pod" >/dev/null 2>&1 || break
    sleep 0.3
  done
  "$kubectl" -n cola-executors get pod "$pod" >/dev/null 2>&1 && fail "the Pod $pod was not deleted after its job"
  say "$language ran as Pod $pod: $scheduled; deleted after the job"
done
say "passed"
