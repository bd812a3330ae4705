#!/usr/bin/env bash
# setup.sh -- everything meshd needs on a fresh Debian machine, idempotent: the system packages
# the engine and the tests use, the npm dependencies (this builds the native addon), the build.
# Run as root. Used by the README's commands and scripts/demo.sh; .ci/run shares its package list
# (scripts/common.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

# A step's own output (apt, npm, node-gyp) is shown only when it fails; the packages are
# MESHD_PACKAGES, the list .ci/run installs.
. scripts/common.sh
missing=()
for p in "${MESHD_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[setup] installing ${missing[*]}" >&2
  quiet "[setup]" apt-get update -qq
  quiet "[setup]" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# node-gyp builds the addon offline against the headers Debian's node ships.
if [ -d /usr/include/node ]; then export npm_config_nodedir=/usr; fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "[setup] npm ci" >&2
  quiet "[setup]" npm ci --no-audit --no-fund
fi
if [ ! -f src/wg/native/build/Release/meshd_native.node ]; then
  echo "[setup] building the native addon" >&2
  quiet "[setup]" npm run -s install
fi
npm run -s build
