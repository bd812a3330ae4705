#!/usr/bin/env bash
# flood.sh -- a handshake flood against a live tunnel: what meshd keeps, against wireguard-go in the
# same run. Per implementation (the same one on both ends), on this topology:
#
#   A [10.0.0.1] --(UDP 51820)-- 192.168.241.1 <veth> 192.168.241.2  B [10.0.0.2]  192.168.242.2 <veth> F
#                                                                    192.168.242.10..(10+SOURCES-1)
#
# F floods B's WireGuard port with handshake initiations carrying a valid mac1 for B's public key
# (test/netns/helpers/flooder.js; anyone who knows B's key can make them) while iperf3 runs from A
# to B through the tunnel and A pings B. Phases, DURATION seconds each: no flood; a flood from one
# source; from SOURCES sources; from one source with a wrong mac1. Per phase: single-stream TCP
# (Mbit/s, and the share of the no-flood figure kept), ping loss, B's CPU (% of one core), the
# cookie replies F received. Then, still under the one-source flood, A forgets its session and
# must make a new handshake with B: the time until a ping gets through. Prints a table with the
# ratio meshd / wireguard-go per figure. Not a test: absolute figures move with the machine's
# load; the ratios come from one run.
#
# Knobs (env): DURATION=10  RATE=20000 (initiations per second)  SOURCES=64
#              IMPLS="wireguard-go meshd"  KEEP=1 keeps the run directory and prints its path.
# Requirements: root, /dev/net/tun, the packages of scripts/setup.sh, a built tree (npm run build).
set -Eeuo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
RATE=${RATE:-20000}
SOURCES=${SOURCES:-64}
IMPLS=${IMPLS:-"wireguard-go meshd"}
MESHD=$PWD/dist/cmd/meshd.js
FLOODER=$PWD/dist/test/netns/helpers/flooder.js
RUN=$(mktemp -d /tmp/meshd-flood.XXXXXX)
CLK_TCK=$(getconf CLK_TCK)
PIDS=()            # every process this script started and has not yet stopped
NAMESPACES=()      # every namespace this script created and has not yet deleted
SOCKETS=()         # UAPI sockets of our interfaces (they outlive a daemon killed with SIGKILL)

log() { echo "[flood] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# A prefix no namespace or UAPI socket on this machine uses (both are machine-wide names).
TAKEN=$(ip netns list; ls /var/run/wireguard 2>/dev/null || true)
while :; do
  P="fl$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')"
  grep -q "^$P" <<<"$TAKEN" || break
done

stop_pid() {  # PID: SIGTERM, SIGKILL after 3 s
  kill "$1" 2>/dev/null || true
  for _ in $(seq 30); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$1" 2>/dev/null || true
}
teardown() {
  local pid ns
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
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
[ -f "$MESHD" ] && [ -f "$FLOODER" ] || die "not built: npm run build"

start_daemon() {  # NS IFNAME IMPL; sets DAEMON_PID (the daemon's own PID: bash execs into ip, ip into it)
  local ns=$1 ifname=$2 impl=$3 cmd
  case $impl in
    wireguard-go) cmd=(wireguard-go -f "$ifname") ;;
    meshd)        cmd=("$MESHD" engine "$ifname") ;;
    *) die "unknown implementation $impl" ;;
  esac
  LOG_LEVEL=error MESHD_DATAPATH=native ip netns exec "$ns" "${cmd[@]}" >"$RUN/$impl-$ifname.log" 2>&1 &
  DAEMON_PID=$!
  PIDS+=("$DAEMON_PID")
  SOCKETS+=("/var/run/wireguard/$ifname.sock")
}

cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
pct_core() { echo $(( ($2 - $1) * 1000 * 100 / CLK_TCK / $3 )); }    # TICKS0 TICKS1 ELAPSED_MS
declare -A R

# One phase: iperf3 and pings from A through the tunnel, with the flooder (unless KIND=none).
phase() {  # IMPL KIND(none|one|many|badmac1)
  local impl=$1 kind=$2 sources='[]' bad=false fpid= b0 b1 s0 s1 json el
  case $kind in
    one) sources='["192.168.242.10"]' ;;
    many) sources=$(seq 10 $(( 9 + SOURCES )) | jq -R '"192.168.242." + .' | jq -sc .) ;;
    badmac1) sources='["192.168.242.10"]'; bad=true ;;
  esac
  log "$impl: phase $kind"
  if [ "$kind" != none ]; then
    ip netns exec "$NF" node "$FLOODER" "{\"target\":\"192.168.242.2:51820\",\"targetPub\":\"$PUBB\",\"rate\":$RATE,\"sources\":$sources,\"badMac1\":$bad}" \
      >"$RUN/flooder-$impl-$kind.json" 2>&1 &
    fpid=$!
    PIDS+=("$fpid")
    for _ in $(seq 50); do grep -q ready "$RUN/flooder-$impl-$kind.json" && break; sleep 0.1; done
    sleep 1   # the flood is on before the measurement starts
  fi
  ip netns exec "$NA" ping -q -i 0.2 -W1 -c $(( DURATION * 5 )) 10.0.0.2 >"$RUN/ping-$impl-$kind.txt" 2>&1 &
  local ppid=$!
  b0=$(cpu_ticks "$PB_"); s0=$(date +%s%N)
  json=$(ip netns exec "$NA" iperf3 -J -c 10.0.0.2 -p 5201 -t "$DURATION" || true)
  b1=$(cpu_ticks "$PB_"); s1=$(date +%s%N)
  wait "$ppid" || true
  echo "$json" > "$RUN/iperf-$impl-$kind.json"
  el=$(( (s1 - s0) / 1000000 ))
  R[$impl.$kind.tcp]=$(jq -r '(.end.sum_received.bits_per_second // 0)/1e6 | .*10|round/10' <<<"$json" 2>/dev/null || echo 0)
  R[$impl.$kind.cpu]=$(pct_core "$b0" "$b1" "$el")
  R[$impl.$kind.loss]=$(sed -n 's/.* \([0-9.]*\)% packet loss.*/\1/p' "$RUN/ping-$impl-$kind.txt")
  if [ -n "$fpid" ]; then
    if [ "$kind" = one ]; then rehandshake "$impl"; fi
    stop_pid "$fpid"
    local stats; stats=$(grep '"sent"' "$RUN/flooder-$impl-$kind.json" || echo '{}')
    R[$impl.$kind.rate]=$(jq -r 'if .sent then (.sent / .seconds | round) else "-" end' <<<"$stats")
    R[$impl.$kind.cookies]=$(jq -r 'if .sent then ((.replies["3"] // 0) / .seconds | round) else "-" end' <<<"$stats")
  fi
}

# Under the flood: A drops B and adds it back (a new session is needed), then pings until one gets
# through. The time it takes is how long a handshake takes under this flood.
rehandshake() {  # IMPL
  local impl=$1 t0 t1 ok=0
  ip netns exec "$NA" wg set "$WA" peer "$PUBB" remove
  ip netns exec "$NA" wg set "$WA" peer "$PUBB" endpoint 192.168.241.2:51820 allowed-ips 10.0.0.2/32
  t0=$(date +%s%N)
  for _ in $(seq 60); do ip netns exec "$NA" ping -c1 -W1 10.0.0.2 >/dev/null 2>&1 && { ok=1; break; }; done
  t1=$(date +%s%N)
  R[$impl.rehandshake]=$([ $ok = 1 ] && echo $(( (t1 - t0) / 1000000 )) || echo "none in 60 s")
}

run() {  # IMPL IDX
  local impl=$1 i=$2 srv n
  local vb2=${P}${i}vf vf=${P}${i}fv
  NA=${P}${i}a NB=${P}${i}b NF=${P}${i}f WA=${P}${i}wa WB=${P}${i}wb
  log "starting $impl"
  for ns in "$NA" "$NB" "$NF"; do ip netns add "$ns"; NAMESPACES+=("$ns"); ip -n "$ns" link set lo up; done
  ip link add "${P}${i}va" netns "$NA" type veth peer name "${P}${i}vb" netns "$NB"
  ip link add "$vb2" netns "$NB" type veth peer name "$vf" netns "$NF"
  ip -n "$NA" addr add 192.168.241.1/24 dev "${P}${i}va"; ip -n "$NA" link set "${P}${i}va" up
  ip -n "$NB" addr add 192.168.241.2/24 dev "${P}${i}vb"; ip -n "$NB" link set "${P}${i}vb" up
  ip -n "$NB" addr add 192.168.242.2/24 dev "$vb2"; ip -n "$NB" link set "$vb2" up
  for n in $(seq 10 $(( 9 + SOURCES ))); do ip -n "$NF" addr add "192.168.242.$n/24" dev "$vf"; done
  ip -n "$NF" link set "$vf" up

  start_daemon "$NA" "$WA" "$impl"
  start_daemon "$NB" "$WB" "$impl"; PB_=$DAEMON_PID
  for _ in $(seq 100); do [ -S /var/run/wireguard/$WA.sock ] && [ -S /var/run/wireguard/$WB.sock ] && break; sleep 0.1; done
  [ -S /var/run/wireguard/$WA.sock ] && [ -S /var/run/wireguard/$WB.sock ] || die "$impl did not start: $(cat "$RUN"/"$impl"-*.log)"
  (umask 077; wg genkey > "$RUN/a.key"; wg genkey > "$RUN/b.key")
  PUBB=$(wg pubkey < "$RUN/b.key")
  ip netns exec "$NA" wg set "$WA" listen-port 51820 private-key "$RUN/a.key" \
    peer "$PUBB" endpoint 192.168.241.2:51820 allowed-ips 10.0.0.2/32
  ip netns exec "$NB" wg set "$WB" listen-port 51820 private-key "$RUN/b.key" \
    peer "$(wg pubkey < "$RUN/a.key")" endpoint 192.168.241.1:51820 allowed-ips 10.0.0.1/32
  ip -n "$NA" addr add 10.0.0.1/24 dev "$WA"; ip -n "$NB" addr add 10.0.0.2/24 dev "$WB"
  ip -n "$NA" link set "$WA" mtu 1420 up; ip -n "$NB" link set "$WB" mtu 1420 up
  local ok=0
  for _ in $(seq 20); do ip netns exec "$NA" ping -c1 -W1 10.0.0.2 >/dev/null 2>&1 && { ok=1; break; }; done
  [ $ok = 1 ] || die "$impl: tunnel never came up (logs in $RUN)"
  ip netns exec "$NA" ping -q -c 100 -i 0.02 10.0.0.2 >/dev/null 2>&1 || true   # warm-up

  ip netns exec "$NB" iperf3 -s -p 5201 >"$RUN/iperf3-server-$impl.log" 2>&1 &
  srv=$!
  PIDS+=("$srv")
  for _ in $(seq 50); do ip netns exec "$NB" ss -ltn | grep -q ':5201 ' && break; sleep 0.1; done
  for kind in none one many badmac1; do phase "$impl" $kind; sleep 1; done
  teardown
}

idx=0
for impl in $IMPLS; do run "$impl" $idx; idx=$((idx + 1)); done

kept() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b + 0 > 0) printf "%.0f", 100 * a / b; else print "-" }'; }
for impl in $IMPLS; do
  for kind in one many badmac1; do R[$impl.$kind.kept]=$(kept "${R[$impl.$kind.tcp]}" "${R[$impl.none.tcp]}"); done
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a ~ /^[0-9.]+$/ && b + 0 > 0) printf "%.2f", a / b; else print "-" }'; }
printf '\n%-46s' figure
for impl in $IMPLS; do
  printf ' %13s' "$impl"
  [ "$impl" = wireguard-go ] || printf ' %7s' ratio
done
printf '\n'
for f in none.tcp:"TCP 1 stream, no flood (Mbit/s)" none.cpu:"CPU B, no flood (%core)" \
         one.tcp:"TCP, flood from 1 source (Mbit/s)" one.kept:"  kept (% of no flood)" one.loss:"  ping loss (%)" \
         one.cpu:"  CPU B (%core)" one.rate:"  initiations sent (/s)" one.cookies:"  cookie replies received (/s)" \
         many.tcp:"TCP, flood from $SOURCES sources (Mbit/s)" many.kept:"  kept (% of no flood)" many.loss:"  ping loss (%)" \
         many.cpu:"  CPU B (%core)" many.rate:"  initiations sent (/s)" many.cookies:"  cookie replies received (/s)" \
         badmac1.tcp:"TCP, wrong-mac1 flood (Mbit/s)" badmac1.kept:"  kept (% of no flood)" badmac1.cpu:"  CPU B (%core)" \
         rehandshake:"new handshake under flood (ms)"; do
  key=${f%%:*} label=${f#*:}
  printf '%-46s' "$label"
  for impl in $IMPLS; do
    printf ' %13s' "${R[$impl.$key]:--}"
    [ "$impl" = wireguard-go ] || printf ' %7s' "$(ratio "${R[$impl.$key]:-}" "${R[wireguard-go.$key]:-}")"
  done
  printf '\n'
done
echo "(ratio = that column / wireguard-go; RATE=$RATE initiations/s, DURATION=$DURATION s per phase, $(nproc) cores shared by both ends, iperf3 and the flooder)"
