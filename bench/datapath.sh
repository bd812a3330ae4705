#!/usr/bin/env bash
# datapath.sh -- meshd's data path against wireguard-go, measured in the same run on the topology of
# shared/testbed/baseline.sh, rebuilt from scratch for each implementation:
#
#   A [tun 10.0.0.1/24] --(UDP 51820)-- veth 192.168.241.1 <-> veth 192.168.241.2 -- [tun 10.0.0.2/24] B
#
# The same implementation runs on both ends: wireguard-go, meshd (MESHD_DATAPATH=native) and,
# unless IMPLS says otherwise, meshd-reference (MESHD_DATAPATH=reference). Per implementation: the
# first ping through a fresh tunnel (handshake included), the average ping RTT, iperf3 TCP with 1
# and 4 streams from A to B, each daemon's CPU (utime+stime over the iperf3 run, % of one core) and
# RSS (VmRSS after the runs). Prints a table with the ratio meshd / wireguard-go per figure.
# Not a test: absolute figures move with the machine's load; the ratios come from one run.
#
# Knobs (env): DURATION=10 (iperf3 seconds)  PINGS=50  IMPLS="wireguard-go meshd meshd-reference"
#              KEEP=1 keeps the run directory (daemon logs, iperf3 JSON) and prints its path.
# Requirements: root, /dev/net/tun, the packages of scripts/setup.sh, a built tree (npm run build).
set -Eeuo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
PINGS=${PINGS:-50}
IMPLS=${IMPLS:-"wireguard-go meshd meshd-reference"}
MESHD=$PWD/dist/cmd/meshd.js
RUN=$(mktemp -d /tmp/meshd-bench.XXXXXX)
CLK_TCK=$(getconf CLK_TCK)
PIDS=()            # every process this script started and has not yet stopped
NAMESPACES=()      # every namespace this script created and has not yet deleted
SOCKETS=()         # UAPI sockets of our interfaces (they outlive a daemon killed with SIGKILL)

log() { echo "[bench] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# A prefix no namespace or UAPI socket on this machine uses: names of namespaces and of UAPI
# sockets (/var/run/wireguard is shared by every namespace) are machine-wide.
TAKEN=$(ip netns list; ls /var/run/wireguard 2>/dev/null || true)
while :; do
  P="mb$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')"
  grep -q "^$P" <<<"$TAKEN" || break
done
NS_A=${P}a NS_B=${P}b VA=${P}va VB=${P}vb WA=${P}wa WB=${P}wb

# Stops what we started, by PID (SIGTERM, then SIGKILL after 3 s), deletes our namespaces.
teardown() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  PIDS=()
  for ns in "${NAMESPACES[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  NAMESPACES=()
  rm -f "${SOCKETS[@]}"
  SOCKETS=()
}
on_exit() {
  local rc=$?
  set +e
  teardown
  if [ "${KEEP:-}" = 1 ] || [ $rc != 0 ]; then log "run directory: $RUN"; else rm -rf "$RUN"; fi
  return $rc
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

[ "$(id -u)" = 0 ] || die "must run as root"
[ -c /dev/net/tun ] || die "/dev/net/tun missing"
for b in ip wg wireguard-go iperf3 ping jq ss; do command -v $b >/dev/null || die "missing $b (run scripts/setup.sh)"; done
[ -f "$MESHD" ] || die "not built: npm run build"

# Starts IMPL on interface IFNAME in NS in the background; sets DAEMON_PID. A simple command, so
# bash forks straight into `ip netns exec`, which execs the daemon: $! is the daemon's own PID
# (the one /proc/PID/stat accounts and the one teardown stops).
start_daemon() {
  local ns=$1 ifname=$2 impl=$3 datapath= cmd
  case $impl in
    wireguard-go)    cmd=(wireguard-go -f "$ifname") ;;
    meshd)           cmd=(node "$MESHD" engine "$ifname"); datapath=native ;;
    meshd-reference) cmd=(node "$MESHD" engine "$ifname"); datapath=reference ;;
    *) die "unknown implementation $impl" ;;
  esac
  LOG_LEVEL=error MESHD_DATAPATH=$datapath ip netns exec "$ns" "${cmd[@]}" >"$RUN/$impl-$ifname.log" 2>&1 &
  DAEMON_PID=$!
  PIDS+=("$DAEMON_PID")
  SOCKETS+=("/var/run/wireguard/$ifname.sock")
}

cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }           # utime+stime, all threads
rss_mb() { awk '/^VmRSS/{printf "%.0f", $2/1024}' "/proc/$1/status"; }
pct_core() { echo $(( ($2 - $1) * 1000 * 100 / CLK_TCK / $3 )); }    # TICKS0 TICKS1 ELAPSED_MS
declare -A R   # R[impl.figure] = value

measure() {  # IMPL
  local impl=$1 pa pb
  log "measuring $impl"
  ip netns add "$NS_A"; NAMESPACES+=("$NS_A")
  ip netns add "$NS_B"; NAMESPACES+=("$NS_B")
  ip link add "$VA" netns "$NS_A" type veth peer name "$VB" netns "$NS_B"
  ip -n "$NS_A" addr add 192.168.241.1/24 dev "$VA"
  ip -n "$NS_B" addr add 192.168.241.2/24 dev "$VB"
  for ns in "$NS_A" "$NS_B"; do ip -n "$ns" link set lo up; done
  ip -n "$NS_A" link set "$VA" up; ip -n "$NS_B" link set "$VB" up

  start_daemon "$NS_A" "$WA" "$impl"; pa=$DAEMON_PID
  start_daemon "$NS_B" "$WB" "$impl"; pb=$DAEMON_PID
  for _ in $(seq 100); do [ -S /var/run/wireguard/$WA.sock ] && [ -S /var/run/wireguard/$WB.sock ] && break; sleep 0.1; done
  [ -S /var/run/wireguard/$WA.sock ] && [ -S /var/run/wireguard/$WB.sock ] || die "$impl did not start: $(cat "$RUN"/"$impl"-*.log)"
  (umask 077; wg genkey > "$RUN/a.key"; wg genkey > "$RUN/b.key")
  ip netns exec "$NS_A" wg set "$WA" listen-port 51820 private-key "$RUN/a.key" \
    peer "$(wg pubkey < "$RUN/b.key")" endpoint 192.168.241.2:51820 allowed-ips 10.0.0.2/32
  ip netns exec "$NS_B" wg set "$WB" listen-port 51820 private-key "$RUN/b.key" \
    peer "$(wg pubkey < "$RUN/a.key")" endpoint 192.168.241.1:51820 allowed-ips 10.0.0.1/32
  ip -n "$NS_A" addr add 10.0.0.1/24 dev "$WA"; ip -n "$NS_B" addr add 10.0.0.2/24 dev "$WB"
  ip -n "$NS_A" link set "$WA" mtu 1420 up; ip -n "$NS_B" link set "$WB" mtu 1420 up

  # First packet through a fresh tunnel: includes the Noise IK handshake.
  local t0 t1 ok=0
  t0=$(date +%s%N)
  for _ in $(seq 20); do ip netns exec "$NS_A" ping -c1 -W1 10.0.0.2 >/dev/null 2>&1 && { ok=1; break; }; done
  t1=$(date +%s%N)
  [ $ok = 1 ] || die "$impl: tunnel never came up (logs in $RUN)"
  R[$impl.first_ping]=$(( (t1 - t0) / 1000000 ))
  R[$impl.rtt]=$(ip netns exec "$NS_A" ping -q -c "$PINGS" -i 0.02 -W1 10.0.0.2 | awk -F'/' '/^rtt/{print $5}')

  ip netns exec "$NS_B" iperf3 -s -p 5201 >"$RUN/iperf3-server.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 50); do ip netns exec "$NS_B" ss -ltn | grep -q ':5201 ' && break; sleep 0.1; done
  local streams a0 b0 a1 b1 s0 s1 json el
  for streams in 1 4; do
    sleep 1   # let the previous run's sockets drain
    a0=$(cpu_ticks "$pa"); b0=$(cpu_ticks "$pb"); s0=$(date +%s%N)
    json=$(ip netns exec "$NS_A" iperf3 -J -c 10.0.0.2 -p 5201 -t "$DURATION" -P "$streams" || true)
    a1=$(cpu_ticks "$pa"); b1=$(cpu_ticks "$pb"); s1=$(date +%s%N)
    echo "$json" > "$RUN/iperf-$impl-$streams.json"
    [ -n "$json" ] || die "$impl iperf3 -P $streams: no output"
    [ -z "$(jq -r '.error // empty' <<<"$json")" ] || die "$impl iperf3 -P $streams: $(jq -r .error <<<"$json")"
    el=$(( (s1 - s0) / 1000000 ))
    R[$impl.tcp$streams]=$(jq -r '.end.sum_received.bits_per_second/1e6 | .*10|round/10' <<<"$json")
    R[$impl.cpu_a$streams]=$(pct_core "$a0" "$a1" "$el")
    R[$impl.cpu_b$streams]=$(pct_core "$b0" "$b1" "$el")
  done
  R[$impl.rss_a]=$(rss_mb "$pa")
  R[$impl.rss_b]=$(rss_mb "$pb")
  # Both daemons' CPU per Gbit/s of one stream: efficiency, independent of how fast the run was.
  R[$impl.cpu_gbit]=$(awk -v a="${R[$impl.cpu_a1]}" -v b="${R[$impl.cpu_b1]}" -v m="${R[$impl.tcp1]}" 'BEGIN{ if (m > 0) printf "%.0f", (a + b) / (m / 1000); else print "-" }')
  teardown
}

for impl in $IMPLS; do measure "$impl"; done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a != "" && b + 0 > 0) printf "%.2f", a / b; else print "-" }'; }
printf '\n%-34s' figure
for impl in $IMPLS; do
  printf ' %15s' "$impl"
  [ "$impl" = wireguard-go ] || printf ' %7s' ratio
done
printf '\n'
for f in tcp1:"TCP 1 stream (Mbit/s)" tcp4:"TCP 4 streams (Mbit/s)" rtt:"ping RTT avg (ms)" \
         first_ping:"first ping, handshake incl. (ms)" \
         cpu_a1:"CPU A, sender, 1 stream (%core)" cpu_b1:"CPU B, receiver, 1 stream (%core)" \
         cpu_a4:"CPU A, sender, 4 streams (%core)" cpu_b4:"CPU B, receiver, 4 streams (%core)" \
         cpu_gbit:"CPU A+B per Gbit/s (%core)" rss_a:"RSS A (MB)" rss_b:"RSS B (MB)"; do
  key=${f%%:*} label=${f#*:}
  printf '%-34s' "$label"
  for impl in $IMPLS; do
    printf ' %15s' "${R[$impl.$key]:--}"
    [ "$impl" = wireguard-go ] || printf ' %7s' "$(ratio "${R[$impl.$key]:-}" "${R[wireguard-go.$key]:-}")"
  done
  printf '\n'
done
echo "(ratio = that column / wireguard-go; DURATION=$DURATION s per iperf3 run, $(nproc) cores shared by both ends and iperf3)"
