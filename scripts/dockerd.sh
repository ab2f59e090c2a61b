#!/usr/bin/env bash
# Makes sure a Docker daemon answers: when none does, installs Debian's docker.io and starts
# dockerd in the background.
# Idempotent; prints nothing when a daemon already answers.
set -euo pipefail

if docker info >/dev/null 2>&1; then
  exit 0
fi

"$(dirname "$0")/apt-install.sh" dockerd:docker.io docker:docker.io

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

if docker info >/dev/null 2>&1; then
  exit 0 # the package's service started it
fi

log=${COLA_DOCKERD_LOG:-/tmp/cola-dockerd.log}
echo "dockerd: starting the Docker daemon (log: $log)"
# setsid: the daemon outlives this script and is not in the caller's process group.
$sudo setsid dockerd >"$log" 2>&1 < /dev/null &

for _ in $(seq 1 120); do
  if docker info >/dev/null 2>&1; then
    exit 0
  fi
  sleep 0.5
done
echo "dockerd: the Docker daemon did not answer within 60 s; its log:" >&2
tail -n 40 "$log" >&2 || true
exit 1
