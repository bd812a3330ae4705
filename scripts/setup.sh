#!/usr/bin/env bash
# setup.sh -- everything meshd needs on a fresh Debian machine, idempotent: the system packages
# the engine and the tests use, the npm dependencies (this builds the native addon), the build.
# Run as root. Used by the README's commands and by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

# A step's own output (apt, npm, node-gyp) is shown only when it fails.
quiet() {
  local log
  log=$(mktemp)
  if "$@" >"$log" 2>&1; then rm -f "$log"; else
    local rc=$?
    cat "$log" >&2; rm -f "$log"
    echo "[setup] failed (exit $rc): $*" >&2
    return "$rc"
  fi
}

# python3, make, g++: node-gyp building the addon in src/wg/native (as in .ci/run); python3 also
# the sd_notify listener of the service tests; systemd: systemd-analyze verify of the unit.
PACKAGES=(iproute2 iptables wireguard-go wireguard-tools iperf3 iputils-ping jq procps ca-certificates faketime zbar-tools bind9-dnsutils
  python3 make g++ systemd)
missing=()
for p in "${PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[setup] installing ${missing[*]}" >&2
  quiet apt-get update -qq
  quiet apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# node-gyp builds the addon offline against the headers Debian's node ships.
if [ -d /usr/include/node ]; then export npm_config_nodedir=/usr; fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "[setup] npm ci" >&2
  quiet npm ci --no-audit --no-fund
fi
if [ ! -f src/wg/native/build/Release/meshd_native.node ]; then
  echo "[setup] building the native addon" >&2
  quiet npm run -s install
fi
npm run -s build
