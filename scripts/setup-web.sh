#!/usr/bin/env bash
# Installs what the browser tests need, idempotently: Debian's Chromium and ChromeDriver, and the
# npm packages of the local OpenID provider that stands in for Google (web/tests/oidc).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v chromium >/dev/null || need_apt+=(chromium)
command -v chromedriver >/dev/null || need_apt+=(chromium-driver)
command -v node >/dev/null || need_apt+=(nodejs)
command -v npm >/dev/null || need_apt+=(npm)

if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup-web: installing ${need_apt[*]} (Debian packages)"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

oidc=web/tests/oidc
stamp="$oidc/node_modules/.cola-installed"
# npm ci only when the lock file changed since the last install.
if ! [ "$stamp" -nt "$oidc/package-lock.json" ]; then
  echo "setup-web: npm ci in $oidc"
  (cd "$oidc" && npm ci --no-audit --no-fund --prefer-offline --loglevel=error)
  touch "$stamp"
fi
