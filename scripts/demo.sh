#!/usr/bin/env bash
# demo.sh -- sets meshd up and shows a mesh at work: four hosts (network namespaces on one
# bridge) each run `meshd daemon`; one founds a network with `meshd init`, the others join with
# `meshd invite` / `meshd join`; every member pings every other, then `meshd status` and `wg show`
# show the mesh. Everything it creates carries a unique prefix and is removed on exit.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "demo: run as root (it creates network namespaces and TUN devices)" >&2; exit 1; }
bash scripts/setup.sh

P="mx$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')"
BR=${P}br
HOSTS=(1 2 3 4)
NAMES=(- alpha bravo charlie delta)
PIDS=()
STATE=$(mktemp -d /tmp/meshd-demo.XXXXXX)
cleanup() {
  set +e
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  sleep 0.5
  for h in "${HOSTS[@]}"; do ip netns del "$P-h$h" 2>/dev/null; rm -f "/var/run/wireguard/${P}m$h.sock"; done
  ip netns del "$P-lan" 2>/dev/null
  rm -rf "$STATE"
}
trap cleanup EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
meshd() { local h=$1; shift; ip netns exec "$P-h$h" dist/cmd/meshd.js --state-dir "$STATE/${NAMES[$h]}" "$@"; }

say "four hosts on a LAN (network namespaces $P-h1..4 on one bridge), each running meshd daemon"
ip netns add "$P-lan"
ip -n "$P-lan" link add $BR type bridge
ip -n "$P-lan" link set $BR up
for h in "${HOSTS[@]}"; do
  ns=$P-h$h
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip link add "${P}e$h" netns "$ns" type veth peer name "${P}p$h" netns "$P-lan"
  ip -n "$P-lan" link set "${P}p$h" master $BR up
  ip -n "$ns" addr add "192.168.50.$h/24" dev "${P}e$h"
  ip -n "$ns" link set "${P}e$h" up
  LOG_LEVEL=warn ip netns exec "$ns" dist/cmd/meshd.js --state-dir "$STATE/${NAMES[$h]}" daemon --interface "${P}m$h" --name "${NAMES[$h]}" & PIDS+=($!)
done
for h in "${HOSTS[@]}"; do
  for _ in $(seq 150); do meshd "$h" status >/dev/null 2>&1 && break; sleep 0.1; done
done

say "alpha: meshd init"
meshd 1 init --network demo
for h in 2 3 4; do
  say "alpha: meshd invite   ->   ${NAMES[$h]}: meshd join <invite>"
  token=$(meshd 1 invite)
  echo "${token:0:60}..."
  meshd "$h" join "$token"
done

say "every member pings every other member's mesh address"
for h in "${HOSTS[@]}"; do
  for o in "${HOSTS[@]}"; do
    [ "$o" = "$h" ] && continue
    ip=$(meshd "$o" status --json | jq -r .self.meshIp)
    printf '%-8s -> %-8s %-10s ' "${NAMES[$h]}" "${NAMES[$o]}" "$ip"
    ip netns exec "$P-h$h" ping -c 2 -i 0.2 -W 2 "$ip" | awk -F', ' '/packet loss/{print $3}'
  done
done

say "meshd status on alpha"
meshd 1 status
say "meshd ping bravo on alpha (through the tunnel; each answer names its path)"
meshd 1 ping bravo -c 2
say "wg show on alpha (the daemon's interface, read-only)"
ip netns exec "$P-h1" wg show "${P}m1"
say "done: cleaning up"
