#!/usr/bin/env bash
# Makes sure a Docker daemon answers: when none does, installs Debian's docker.io (and
# debootstrap, which `scripts/images.sh` uses) and starts dockerd in the background.
# Idempotent; prints nothing when a daemon already answers.
set -euo pipefail

if docker info >/dev/null 2>&1; then
  exit 0
fi

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

need_apt=()
command -v dockerd >/dev/null || need_apt+=(docker.io)
command -v docker >/dev/null || need_apt+=(docker.io)
command -v debootstrap >/dev/null || need_apt+=(debootstrap)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "dockerd: installing ${need_apt[*]} (Debian packages)"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

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
