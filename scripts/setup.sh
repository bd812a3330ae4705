#!/usr/bin/env bash
# setup.sh -- everything meshd needs on a fresh Debian machine, idempotent: the system packages
# the engine and the tests use, the npm dependencies (this builds the native addon), the build.
# Run as root. Used by the README's commands and by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(iproute2 iptables wireguard-go wireguard-tools iperf3 iputils-ping jq procps ca-certificates faketime zbar-tools bind9-dnsutils python3 systemd)
missing=()
for p in "${PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[setup] installing ${missing[*]}" >&2
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# node-gyp builds the addon offline against the headers Debian's node ships.
if [ -d /usr/include/node ]; then export npm_config_nodedir=/usr; fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "[setup] npm ci" >&2
  npm ci --no-audit --no-fund
fi
if [ ! -f src/wg/native/build/Release/meshd_native.node ]; then
  npm run -s install >/dev/null
fi
npm run -s build
