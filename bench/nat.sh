#!/usr/bin/env bash
# nat.sh -- the mesh through NAT routers: join -> first ping, both online -> direct path, and TCP
# throughput and RTT through the direct path and through a relay, in one run (bench/nat.ts).
# Knobs: DURATION (iperf3 seconds, default 5), PINGS (default 200). Root; builds first.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "nat.sh: run as root" >&2; exit 1; }
npm run -s build
exec node dist/bench/nat.js
