#!/usr/bin/env bash
# datapath.sh -- meshd's data path against wireguard-go, measured in the same run on the topology of
# shared/testbed/baseline.sh, built once per implementation (all of them up side by side):
#
#   A [tun 10.0.0.1/24] --(UDP 51820)-- veth 192.168.241.1 <-> veth 192.168.241.2 -- [tun 10.0.0.2/24] B
#
# The same implementation runs on both ends: wireguard-go, meshd (MESHD_DATAPATH=native) and,
# unless IMPLS says otherwise, meshd-reference (MESHD_DATAPATH=reference). Per implementation: the
# first ping through a fresh tunnel (handshake included), the ping RTT (mean, median, 99th
# percentile; pings alternate between the implementations in rounds), iperf3 TCP with 1
# and 4 streams from A to B, each daemon's CPU (utime+stime over the iperf3 run, % of one core) and
# RSS (VmRSS after the runs). Prints a table with the ratio meshd / wireguard-go per figure.
# Not a test: absolute figures move with the machine's load; the ratios come from one run.
#
# Knobs (env): DURATION=10 (iperf3 seconds)  PINGS=500 ROUNDS=5 (pings per implementation, in
#              ROUNDS rounds, after WARMUP=10 seconds of uncounted pings)  IMPLS="wireguard-go meshd meshd-reference"
#              KEEP=1 keeps the run directory (daemon logs, iperf3 JSON) and prints its path.
# Requirements: root, /dev/net/tun, the packages of scripts/setup.sh, a built tree (npm run build).
set -Eeuo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
PINGS=${PINGS:-500}
ROUNDS=${ROUNDS:-5}
WARMUP=${WARMUP:-10}
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
    meshd)           cmd=("$MESHD" engine "$ifname"); datapath=native ;;
    meshd-reference) cmd=("$MESHD" engine "$ifname"); datapath=reference ;;
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
declare -A R                        # R[impl.figure] = value
declare -A PA PB NSA NSB            # per implementation: daemon PIDs and namespaces

# Builds the topology for IMPL (the IDXth implementation: names ${P}${IDX}...), configures the
# tunnel and measures the first ping through it. Every implementation's topology stays up until
# the end, so that the latency rounds can alternate between them.
up() {  # IMPL IDX
  local impl=$1 i=$2
  local na=${P}${i}a nb=${P}${i}b va=${P}${i}va vb=${P}${i}vb wa=${P}${i}wa wb=${P}${i}wb
  log "starting $impl"
  ip netns add "$na"; NAMESPACES+=("$na")
  ip netns add "$nb"; NAMESPACES+=("$nb")
  ip link add "$va" netns "$na" type veth peer name "$vb" netns "$nb"
  ip -n "$na" addr add 192.168.241.1/24 dev "$va"
  ip -n "$nb" addr add 192.168.241.2/24 dev "$vb"
  for ns in "$na" "$nb"; do ip -n "$ns" link set lo up; done
  ip -n "$na" link set "$va" up; ip -n "$nb" link set "$vb" up

  start_daemon "$na" "$wa" "$impl"; PA[$impl]=$DAEMON_PID
  start_daemon "$nb" "$wb" "$impl"; PB[$impl]=$DAEMON_PID
  NSA[$impl]=$na NSB[$impl]=$nb
  for _ in $(seq 100); do [ -S /var/run/wireguard/$wa.sock ] && [ -S /var/run/wireguard/$wb.sock ] && break; sleep 0.1; done
  [ -S /var/run/wireguard/$wa.sock ] && [ -S /var/run/wireguard/$wb.sock ] || die "$impl did not start: $(cat "$RUN"/"$impl"-*.log)"
  (umask 077; wg genkey > "$RUN/a.key"; wg genkey > "$RUN/b.key")
  ip netns exec "$na" wg set "$wa" listen-port 51820 private-key "$RUN/a.key" \
    peer "$(wg pubkey < "$RUN/b.key")" endpoint 192.168.241.2:51820 allowed-ips 10.0.0.2/32
  ip netns exec "$nb" wg set "$wb" listen-port 51820 private-key "$RUN/b.key" \
    peer "$(wg pubkey < "$RUN/a.key")" endpoint 192.168.241.1:51820 allowed-ips 10.0.0.1/32
  ip -n "$na" addr add 10.0.0.1/24 dev "$wa"; ip -n "$nb" addr add 10.0.0.2/24 dev "$wb"
  ip -n "$na" link set "$wa" mtu 1420 up; ip -n "$nb" link set "$wb" mtu 1420 up

  # First packet through a fresh tunnel: includes the Noise IK handshake.
  local t0 t1 ok=0
  t0=$(date +%s%N)
  for _ in $(seq 20); do ip netns exec "$na" ping -c1 -W1 10.0.0.2 >/dev/null 2>&1 && { ok=1; break; }; done
  t1=$(date +%s%N)
  [ $ok = 1 ] || die "$impl: tunnel never came up (logs in $RUN)"
  R[$impl.first_ping]=$(( (t1 - t0) / 1000000 ))
}

# Ping RTT over the established tunnels: ROUNDS rounds, each sending PINGS/ROUNDS pings 20 ms
# apart through every implementation in turn (the order rotates), so that load which changes
# during the run weighs on every implementation alike. Reports mean, median and 99th percentile
# of the per-packet times, and the loss.
latency() {
  local round impl k n=$(( PINGS / ROUNDS )) order=($IMPLS) f
  for impl in $IMPLS; do : > "$RUN/rtt-$impl.txt"; done
  # Warm-up, not counted: JIT tiers and the collector's post-start heap shrinking (V8's memory
  # reducer runs one full GC about 8 s after start) settle, as they have in any running daemon.
  log "warm-up: ${WARMUP}s of pings through each implementation"
  for impl in $IMPLS; do
    ip netns exec "${NSA[$impl]}" ping -q -c $(( WARMUP * 50 )) -i 0.02 -W1 10.0.0.2 >/dev/null 2>&1 || true
  done
  log "ping RTT: $ROUNDS rounds of $n pings per implementation"
  for round in $(seq 0 $(( ROUNDS - 1 ))); do
    for k in "${!order[@]}"; do
      impl=${order[$(( (k + round) % ${#order[@]} ))]}
      ip netns exec "${NSA[$impl]}" ping -c "$n" -i 0.02 -W1 10.0.0.2 2>/dev/null \
        | sed -n 's/.*time=\([0-9.]*\).*/\1/p' >> "$RUN/rtt-$impl.txt" || true
    done
  done
  for impl in $IMPLS; do
    f=$RUN/rtt-$impl.txt
    [ -s "$f" ] || die "$impl: no ping came back"
    read -r R[$impl.rtt] R[$impl.rtt50] R[$impl.rtt99] R[$impl.loss] < <(sort -n "$f" | awk -v sent=$(( n * ROUNDS )) '
      { a[NR] = $1; s += $1 }
      END { p99 = int(NR * 0.99); if (p99 < 1) p99 = 1; printf "%.3f %.3f %.3f %.1f\n", s / NR, a[int((NR + 1) / 2)], a[p99], 100 * (sent - NR) / sent }')
  done
}

# iperf3 TCP through IMPL's tunnel (the other implementations' tunnels stay idle meanwhile), with
# each daemon's CPU over the run, then its RSS.
throughput() {  # IMPL
  local impl=$1 pa=${PA[$1]} pb=${PB[$1]} streams a0 b0 a1 b1 s0 s1 json el srv
  log "iperf3 through $impl"
  ip netns exec "${NSB[$impl]}" iperf3 -s -p 5201 >"$RUN/iperf3-server-$impl.log" 2>&1 &
  srv=$!
  PIDS+=("$srv")
  for _ in $(seq 50); do ip netns exec "${NSB[$impl]}" ss -ltn | grep -q ':5201 ' && break; sleep 0.1; done
  for streams in 1 4; do
    sleep 1   # let the previous run's sockets drain
    a0=$(cpu_ticks "$pa"); b0=$(cpu_ticks "$pb"); s0=$(date +%s%N)
    json=$(ip netns exec "${NSA[$impl]}" iperf3 -J -c 10.0.0.2 -p 5201 -t "$DURATION" -P "$streams" || true)
    a1=$(cpu_ticks "$pa"); b1=$(cpu_ticks "$pb"); s1=$(date +%s%N)
    echo "$json" > "$RUN/iperf-$impl-$streams.json"
    [ -n "$json" ] || die "$impl iperf3 -P $streams: no output"
    [ -z "$(jq -r '.error // empty' <<<"$json")" ] || die "$impl iperf3 -P $streams: $(jq -r .error <<<"$json")"
    el=$(( (s1 - s0) / 1000000 ))
    R[$impl.tcp$streams]=$(jq -r '.end.sum_received.bits_per_second/1e6 | .*10|round/10' <<<"$json")
    R[$impl.cpu_a$streams]=$(pct_core "$a0" "$a1" "$el")
    R[$impl.cpu_b$streams]=$(pct_core "$b0" "$b1" "$el")
  done
  kill "$srv" 2>/dev/null || true
  R[$impl.rss_a]=$(rss_mb "$pa")
  R[$impl.rss_b]=$(rss_mb "$pb")
  # Both daemons' CPU per Gbit/s of one stream: efficiency, independent of how fast the run was.
  R[$impl.cpu_gbit]=$(awk -v a="${R[$impl.cpu_a1]}" -v b="${R[$impl.cpu_b1]}" -v m="${R[$impl.tcp1]}" 'BEGIN{ if (m > 0) printf "%.0f", (a + b) / (m / 1000); else print "-" }')
}

idx=0
for impl in $IMPLS; do up "$impl" $idx; idx=$((idx + 1)); done
latency
for impl in $IMPLS; do throughput "$impl"; done
teardown

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a != "" && b + 0 > 0) printf "%.2f", a / b; else print "-" }'; }
printf '\n%-34s' figure
for impl in $IMPLS; do
  printf ' %15s' "$impl"
  [ "$impl" = wireguard-go ] || printf ' %7s' ratio
done
printf '\n'
for f in tcp1:"TCP 1 stream (Mbit/s)" tcp4:"TCP 4 streams (Mbit/s)" rtt:"ping RTT mean (ms)" \
         rtt50:"ping RTT median (ms)" rtt99:"ping RTT 99th percentile (ms)" loss:"ping loss (%)" \
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
