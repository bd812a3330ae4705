#!/usr/bin/env bash
# datapath.sh -- meshd's data path against wireguard-go, measured in the same run on the same
# two-namespace topology as ../shared/testbed/baseline.sh:
#
#   A [tun 10.0.0.1/24] --(UDP 51820)-- veth 192.168.241.1 <-> veth 192.168.241.2 -- [tun 10.0.0.2/24] B
#
# For each implementation (wireguard-go on both ends, meshd native on both ends, optionally meshd
# reference): first ping through a fresh tunnel, ping RTT, iperf3 TCP 1 and 4 streams, CPU of
# both daemons (% of one core, during the iperf runs) and RSS. Prints a table with the ratio
# meshd / wireguard-go. Not a test: figures vary with the machine's load; ratios are what count.
#
# Knobs (env): DURATION=10 (iperf3 seconds)  PINGS=50  IMPLS="wireguard-go meshd meshd-reference"
# Requirements: root, the packages of scripts/setup.sh, a built tree (npm run build).
set -Eeuo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

DURATION=${DURATION:-10}
PINGS=${PINGS:-50}
IMPLS=${IMPLS:-"wireguard-go meshd meshd-reference"}
P="mb$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')"   # unique prefix of this run
NS_A=$P-a NS_B=$P-b VA=${P}va VB=${P}vb
RUN=$(mktemp -d /tmp/meshd-bench.XXXXXX)
PIDS=()
CLK_TCK=$(getconf CLK_TCK)

log() { echo "[bench] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

teardown() {
  set +e
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done; kill -9 "$pid" 2>/dev/null; done
  PIDS=()
  for ns in $NS_A $NS_B; do ip netns list | awk '{print $1}' | grep -qx "$ns" && ip netns del "$ns"; done
  rm -f /var/run/wireguard/${P}wa.sock /var/run/wireguard/${P}wb.sock
  set -e
}
trap 'teardown; rm -rf "$RUN"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

[ "$(id -u)" = 0 ] || die "must run as root"
for b in ip wg wireguard-go iperf3 ping jq; do command -v $b >/dev/null || die "missing $b (run scripts/setup.sh)"; done
[ -f dist/cmd/meshd.js ] || die "not built: npm run build"

start_daemon() {  # NS IFNAME IMPL -> echoes PID
  local ns=$1 ifname=$2 impl=$3
  case $impl in
    wireguard-go) LOG_LEVEL=error ip netns exec "$ns" wireguard-go -f "$ifname" >"$RUN/$ifname.log" 2>&1 & ;;
    meshd) MESHD_DATAPATH=native LOG_LEVEL=error ip netns exec "$ns" node dist/cmd/meshd.js engine "$ifname" >"$RUN/$ifname.log" 2>&1 & ;;
    meshd-reference) MESHD_DATAPATH=reference LOG_LEVEL=error ip netns exec "$ns" node dist/cmd/meshd.js engine "$ifname" >"$RUN/$ifname.log" 2>&1 & ;;
  esac
  echo $!
}

cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
rss_mb() { awk '/VmRSS/{printf "%.0f", $2/1024}' "/proc/$1/status"; }
declare -A R

measure() {  # IMPL
  local impl=$1 wa=${P}wa wb=${P}wb
  log "measuring $impl"
  ip netns add $NS_A; ip netns add $NS_B
  ip link add $VA netns $NS_A type veth peer name $VB netns $NS_B
  ip -n $NS_A addr add 192.168.241.1/24 dev $VA; ip -n $NS_B addr add 192.168.241.2/24 dev $VB
  for ns in $NS_A $NS_B; do ip -n $ns link set lo up; done
  ip -n $NS_A link set $VA up; ip -n $NS_B link set $VB up
  local pa pb
  pa=$(start_daemon $NS_A $wa "$impl"); PIDS+=("$pa")
  pb=$(start_daemon $NS_B $wb "$impl"); PIDS+=("$pb")
  for _ in $(seq 100); do [ -S /var/run/wireguard/$wa.sock ] && [ -S /var/run/wireguard/$wb.sock ] && break; sleep 0.1; done
  [ -S /var/run/wireguard/$wa.sock ] || die "$impl did not start: $(cat "$RUN/$wa.log")"
  (umask 077; wg genkey > "$RUN/a.key"; wg genkey > "$RUN/b.key")
  ip netns exec $NS_A wg set $wa listen-port 51820 private-key "$RUN/a.key" peer "$(wg pubkey < "$RUN/b.key")" endpoint 192.168.241.2:51820 allowed-ips 10.0.0.2/32
  ip netns exec $NS_B wg set $wb listen-port 51820 private-key "$RUN/b.key" peer "$(wg pubkey < "$RUN/a.key")" endpoint 192.168.241.1:51820 allowed-ips 10.0.0.1/32
  ip -n $NS_A addr add 10.0.0.1/24 dev $wa; ip -n $NS_B addr add 10.0.0.2/24 dev $wb
  ip -n $NS_A link set $wa mtu 1420 up; ip -n $NS_B link set $wb mtu 1420 up

  local t0 t1
  t0=$(date +%s%N)
  for _ in $(seq 100); do ip netns exec $NS_A ping -c1 -W1 10.0.0.2 >/dev/null 2>&1 && break; done
  t1=$(date +%s%N)
  R[$impl.first_ping_ms]=$(( (t1 - t0) / 1000000 ))
  R[$impl.rtt_ms]=$(ip netns exec $NS_A ping -q -c "$PINGS" -i 0.02 -W1 10.0.0.2 | awk -F'/' '/^rtt/{print $5}')

  ip netns exec $NS_B iperf3 -s -D -p 5201 --logfile "$RUN/iperf-s.log"
  sleep 0.5
  local streams a0 b0 a1 b1 s0 s1 json el
  for streams in 1 4; do
    sleep 1
    a0=$(cpu_ticks "$pa"); b0=$(cpu_ticks "$pb"); s0=$(date +%s%N)
    json=$(ip netns exec $NS_A iperf3 -J -c 10.0.0.2 -t "$DURATION" -P $streams)
    a1=$(cpu_ticks "$pa"); b1=$(cpu_ticks "$pb"); s1=$(date +%s%N)
    el=$(( (s1 - s0) / 1000000 ))
    R[$impl.tcp$streams]=$(jq -r '.end.sum_received.bits_per_second/1e6 | .*10|round/10' <<<"$json")
    R[$impl.cpu$streams]=$(( ((a1 - a0) + (b1 - b0)) * 1000 * 100 / CLK_TCK / el ))
  done
  R[$impl.rss]=$(( $(rss_mb "$pa") + $(rss_mb "$pb") ))
  R[$impl.cpu_per_gbit]=$(awk -v c="${R[$impl.cpu1]}" -v m="${R[$impl.tcp1]}" 'BEGIN{ if (m > 0) printf "%.0f", c / (m / 1000); else print "-" }')
  ip netns pids $NS_B | xargs -r kill 2>/dev/null || true   # the iperf3 server we started (and b's daemon)
  teardown
}

for impl in $IMPLS; do measure "$impl"; done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0 && a != "") printf "%.2f", a / b; else print "-" }'; }
printf '\n%-24s %14s' figure wireguard-go
for impl in $IMPLS; do [ "$impl" = wireguard-go ] || printf ' %16s %8s' "$impl" ratio; done
printf '\n'
for f in tcp1:"TCP 1 stream (Mbit/s)" tcp4:"TCP 4 streams (Mbit/s)" rtt_ms:"ping RTT avg (ms)" first_ping_ms:"first ping (ms)" cpu1:"CPU, 1 stream (%core)" cpu_per_gbit:"CPU per Gbit/s (%core)" rss:"RSS, both ends (MB)"; do
  key=${f%%:*} label=${f#*:}
  printf '%-24s %14s' "$label" "${R[wireguard-go.$key]:-}"
  for impl in $IMPLS; do
    [ "$impl" = wireguard-go ] && continue
    printf ' %16s %8s' "${R[$impl.$key]:-}" "$(ratio "${R[$impl.$key]:-}" "${R[wireguard-go.$key]:-}")"
  done
  printf '\n'
done
