#!/usr/bin/env bash
# What the Kubernetes suite's scripts print when a step fails: cola's Pods, their recent
# warnings, and the end of every container's log (with the earlier run of a restarted one),
# so that a failure seen once can be explained afterwards.
#
# Usage: scripts/k8s-local/diagnose.sh KUBECTL [LINES]   (KUBECONFIG set by the caller)
set -uo pipefail

kubectl=$1
lines=${2:-30}

echo "--- cola's Pods:"
"$kubectl" -n cola get pods -o wide
echo "--- warnings in cola and cola-executors:"
for namespace in cola cola-executors; do
  "$kubectl" -n "$namespace" get events --field-selector type=Warning \
    -o custom-columns=LAST:.lastTimestamp,OBJECT:.involvedObject.name,REASON:.reason,MESSAGE:.message \
    | tail -n "$lines"
done
for pod in $("$kubectl" -n cola get pods -o jsonpath='{.items[*].metadata.name}'); do
  for container in $("$kubectl" -n cola get pod "$pod" -o jsonpath='{.spec.containers[*].name}'); do
    echo "--- the end of $pod/$container's log:"
    "$kubectl" -n cola logs "$pod" -c "$container" --tail "$lines" | cut -c1-400
    if "$kubectl" -n cola logs "$pod" -c "$container" --previous --tail 1 >/dev/null 2>&1; then
      echo "--- the end of $pod/$container's previous run:"
      "$kubectl" -n cola logs "$pod" -c "$container" --previous --tail "$lines" | cut -c1-400
    fi
  done
done
