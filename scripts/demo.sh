#!/usr/bin/env bash
# demo.sh -- sets meshd up and shows its engine at work: three hosts (network namespaces on one
# bridge) each run `meshd engine`, configured into a full WireGuard mesh on 10.0.0.0/24 with the
# stock `wg` tool; every host pings every other through the tunnels, then `wg show` prints what
# happened. Everything it creates carries a unique prefix and is removed on exit.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "demo: run as root (it creates network namespaces and TUN devices)" >&2; exit 1; }
bash scripts/setup.sh

P="mx$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')"
BR=${P}br
HOSTS=(1 2 3)
PIDS=()
KEYS=$(mktemp -d /tmp/meshd-demo.XXXXXX)
cleanup() {
  set +e
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  sleep 0.3
  for h in "${HOSTS[@]}"; do ip netns del "$P-h$h" 2>/dev/null; rm -f "/var/run/wireguard/${P}w$h.sock"; done
  ip netns del "$P-lan" 2>/dev/null
  rm -rf "$KEYS"
}
trap cleanup EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "three hosts on a LAN (namespaces $P-h1..3, underlay 192.168.50.0/24)"
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
  (umask 077; wg genkey > "$KEYS/$h.key"); wg pubkey < "$KEYS/$h.key" > "$KEYS/$h.pub"
  LOG_LEVEL=warn ip netns exec "$ns" node dist/cmd/meshd.js engine "${P}w$h" & PIDS+=($!)
done
for h in "${HOSTS[@]}"; do
  for _ in $(seq 100); do [ -S "/var/run/wireguard/${P}w$h.sock" ] && break; sleep 0.1; done
done

say "each host's meshd engine is configured with plain wg and ip, as wireguard-go would be"
for h in "${HOSTS[@]}"; do
  ns=$P-h$h
  args=(set "${P}w$h" listen-port 51820 private-key "$KEYS/$h.key")
  for o in "${HOSTS[@]}"; do
    [ "$o" = "$h" ] && continue
    args+=(peer "$(cat "$KEYS/$o.pub")" endpoint "192.168.50.$o:51820" allowed-ips "10.0.0.$o/32")
  done
  ip netns exec "$ns" wg "${args[@]}"
  ip -n "$ns" addr add "10.0.0.$h/24" dev "${P}w$h"
  ip -n "$ns" link set "${P}w$h" up
done

say "every host pings every other host's mesh address"
for h in "${HOSTS[@]}"; do
  for o in "${HOSTS[@]}"; do
    [ "$o" = "$h" ] && continue
    printf 'host%s -> 10.0.0.%s: ' "$h" "$o"
    ip netns exec "$P-h$h" ping -c 2 -i 0.2 -W 2 "10.0.0.$o" | awk -F', ' '/packet loss/{print $3}'
  done
done

say "wg show on host1"
ip netns exec "$P-h1" wg show "${P}w1"
say "done: cleaning up"
