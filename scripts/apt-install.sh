#!/usr/bin/env bash
# Installs the Debian packages of the commands that are missing, idempotently, so that every
# script installs the tools it uses itself.
#
# Usage: scripts/apt-install.sh COMMAND:PACKAGE...
#   e.g. scripts/apt-install.sh debootstrap:debootstrap docker:docker.io
# Prints nothing when every command is there.
set -euo pipefail

packages=()
for pair in "$@"; do
  command=${pair%%:*}
  package=${pair#*:}
  if ! command -v "$command" >/dev/null 2>&1 && [[ " ${packages[*]} " != *" $package "* ]]; then
    packages+=("$package")
  fi
done
[ ${#packages[@]} -gt 0 ] || exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing ${packages[*]} (Debian packages)"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${packages[@]}" >/dev/null
