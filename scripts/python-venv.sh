#!/usr/bin/env bash
# Makes (or makes again) a Python virtualenv with exactly the given PyPI requirements, for the
# scripts that need a Python tool (schemathesis, kubernetes-validate, paho-mqtt, ...): the venv
# is made again only when the requirements changed (kept in <dir>/requirements.txt). Installs
# Debian's python3-venv first when `python3 -m venv` cannot work.
#
# Usage: scripts/python-venv.sh DIR REQUIREMENT...   e.g. scripts/python-venv.sh target/x "pytest>=8,<9"
set -euo pipefail

[ $# -ge 2 ] || { echo "usage: $0 DIR REQUIREMENT..." >&2; exit 2; }
venv=$1
shift
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  echo "python-venv: installing python3-venv" >&2
  if [ "$(id -u)" = 0 ]; then sudo=(); else sudo=(sudo); fi
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq python3-venv >/dev/null
fi
stamp="$venv/requirements.txt"
if [ ! -x "$venv/bin/python" ] || ! printf '%s\n' "$@" | cmp -s - "$stamp"; then
  echo "python-venv: installing $* into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "$@"
  printf '%s\n' "$@" >"$stamp"
fi
