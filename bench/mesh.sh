#!/usr/bin/env bash
# mesh.sh -- how fast the mesh forms: N meshd daemons in namespaces on one LAN bridge; one runs
# `meshd init`, the others join one after another with invites. Reports, per size N:
#   * join -> first ping: from starting `meshd join` to the first ping answered by the founder
#     (median and max over the joins)
#   * full mesh: from the end of the last join until every node has a WireGuard handshake with every
#     other node (driven by one ping per pair, as traffic would)
#   * RSS per idle daemon (median and max, MB)
#   * idle CPU per daemon (median and max, % of a core), from /proc over IDLE_S seconds
# Targets (issue 3): first ping under 2 s on a LAN, full mesh of 10 within 10 s. Issue 11: idle
# CPU under 0.3% at 20 members and flat from 10 to 40, 50 daemons in a full mesh, RSS under 100 MB.
# Knobs: SIZES="5 10"; SETTLE_S=10 IDLE_S=30 (idle CPU: measured over IDLE_S after SETTLE_S);
# PROF=DIR (node PROF_NODE, default 1, writes a CPU profile there); MEM=1 serves each daemon's
# metrics and, after the idle window, breaks down the memory of the three largest (RssAnon, RssFile,
# V8 heap used/total, external, array buffers); LOGS=DIR keeps each daemon's log (info level) as DIR/<N>-n<i>.log. Root; a built tree (npm run build). Cleans up via trap.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
SIZES=${SIZES:-"5 10"}
[ "$(id -u)" = 0 ] || { echo "mesh.sh: run as root" >&2; exit 1; }
[ -f dist/cmd/meshd.js ] || { echo "mesh.sh: not built (npm run build)" >&2; exit 1; }
[ -z "${LOGS:-}" ] || mkdir -p "$LOGS"

P="mm$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')"
STATE=$(mktemp -d /tmp/meshd-bench-mesh.XXXXXX)
PIDS=()
N=0
teardown() {
  set +e
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
  done
  PIDS=()
  for i in $(seq "$N"); do ip netns del "$P-$i" 2>/dev/null; rm -f "/var/run/wireguard/${P}m$i.sock"; done
  ip netns del "$P-lan" 2>/dev/null
  rm -rf "${STATE:?}"/*
  set -e
}
trap 'teardown; rm -rf "$STATE"' EXIT

ms() { date +%s%3N; }
HZ=$(getconf CLK_TCK)
SETTLE_S=${SETTLE_S:-10}
IDLE_S=${IDLE_S:-30}
# utime + stime of a process, in clock ticks
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
meshd() { local i=$1; shift; ip netns exec "$P-$i" dist/cmd/meshd.js --state-dir "$STATE/n$i" "$@"; }
mac() { printf '02:00:00:00:%02x:%02x' $(($1 / 256)) $(($1 % 256)); }
median() { sort -n | awk '{a[NR]=$1} END{ if (NR==0) print "-"; else print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2) }'; }

run() {
  N=$1
  ip netns add "$P-lan"
  ip -n "$P-lan" link add br0 type bridge
  ip -n "$P-lan" link set br0 up
  for i in $(seq "$N"); do
    ip netns add "$P-$i"
    ip -n "$P-$i" link set lo up
    ip link add "${P}e$i" netns "$P-$i" address "$(mac "$i")" type veth peer name "${P}p$i" netns "$P-lan"
    ip -n "$P-lan" link set "${P}p$i" master br0 up
    ip -n "$P-$i" addr add "192.168.60.$i/24" dev "${P}e$i"
    ip -n "$P-$i" link set "${P}e$i" up
    if [ -n "${LOGS:-}" ]; then log=$LOGS/$N-n$i.log level=info; else log=/dev/null level=warn; fi
    # PROF=DIR: node PROF_NODE (1, the founder) writes a CPU profile (.cpuprofile) there when it exits.
    exe=(dist/cmd/meshd.js); [ -n "${PROF:-}" ] && [ "$i" = "${PROF_NODE:-1}" ] && exe=(node --max-semi-space-size=1 --expose-gc --cpu-prof --cpu-prof-dir="$PROF" dist/cmd/meshd.js)
    extra=(); [ -n "${MEM:-}" ] && extra=(--metrics 127.0.0.1:9464)
    LOG_LEVEL=$level ip netns exec "$P-$i" "${exe[@]}" --state-dir "$STATE/n$i" daemon --interface "${P}m$i" --name "n$i" "${extra[@]}" >"$log" 2>&1 & PIDS+=($!)
  done
  # The kernel's neighbour table is one for all namespaces, and it holds 1024 entries that it may
  # evict (net.ipv4.neigh.default.gc_thresh3): a full mesh of 50 needs 2,450, and joins then fail
  # with "neighbor table overflow" in dmesg. Permanent entries do not count against that limit.
  for i in $(seq "$N"); do
    for j in $(seq "$N"); do [ "$i" = "$j" ] || echo "neigh replace 192.168.60.$j lladdr $(mac "$j") dev ${P}e$i nud permanent"; done | ip -n "$P-$i" -batch -
  done
  # Each daemon answers `meshd status` (200 tries, 0.1 s apart) or the bench stops: no wait on a dead one.
  for i in $(seq "$N"); do
    local up=0 pid=${PIDS[$((${#PIDS[@]} - N + i - 1))]}
    for _ in $(seq 200); do
      kill -0 "$pid" 2>/dev/null || break
      meshd "$i" status >/dev/null 2>&1 && { up=1; break; }
      sleep 0.1
    done
    [ "$up" = 1 ] || { echo "mesh.sh: daemon n$i did not start (LOGS=DIR keeps its output)" >&2; exit 1; }
  done
  meshd 1 init >/dev/null
  local firsts=() joins=() t0 t1
  for i in $(seq 2 "$N"); do
    token=$(meshd 1 invite)
    t0=$(ms)
    meshd "$i" join "$token" >/dev/null
    joins+=($(( $(ms) - t0 )))
    for _ in $(seq 100); do ip netns exec "$P-$i" ping -c1 -W1 10.0.0.1 >/dev/null 2>&1 && break; done
    t1=$(ms)
    firsts+=($((t1 - t0)))
  done
  # Full mesh: every node has a handshake with every other. Read from each node's engine with
  # `wg show` (fast, and what an operator would look at); a peer without a handshake yet gets a
  # ping to its mesh address, as traffic would.
  t0=$(ms)
  local done_=0 i want=$((N - 1)) count key ipnet hs
  for _ in $(seq 600); do
    done_=1
    for i in $(seq "$N"); do
      count=0
      while read -r key hs; do
        if [ "$hs" != 0 ]; then count=$((count + 1)); continue; fi
        ipnet=$(ip netns exec "$P-$i" wg show "${P}m$i" allowed-ips | awk -v k="$key" '$1 == k { print $2 }')
        [ -n "$ipnet" ] && { ip netns exec "$P-$i" ping -c1 -W1 "${ipnet%/*}" >/dev/null 2>&1 & }
      done < <(ip netns exec "$P-$i" wg show "${P}m$i" latest-handshakes)
      [ "$count" -ge "$want" ] || done_=0
    done
    [ $done_ = 1 ] && break
    sleep 0.1
  done
  t1=$(ms)
  # Idle: no traffic, no membership change. CPU time (user + system, from /proc) over IDLE_S
  # seconds, after SETTLE_S seconds for the pings above to stop mattering.
  sleep "$SETTLE_S"
  local procs=() before=() cpu=() rss=() k
  # The daemon itself (ip netns exec and env exec it; its own children, like `ip monitor`, are not it)
  for pid in "${PIDS[@]}"; do
    if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = node ]; then procs+=("$pid"); continue; fi
    child=$(pgrep -P "$pid" -x node | head -1 || true)
    procs+=("${child:-$pid}")
  done
  for p in "${procs[@]}"; do before+=($(ticks "$p")); done
  # PROF: the idle window on the profile's clock (CLOCK_MONOTONIC, seconds), to read only that part.
  [ -n "${PROF:-}" ] && awk '{print "start", $1}' /proc/uptime >"$PROF/window-$N.txt"
  sleep "$IDLE_S"
  [ -n "${PROF:-}" ] && awk '{print "end", $1}' /proc/uptime >>"$PROF/window-$N.txt"
  for k in "${!procs[@]}"; do
    cpu+=($(awk -v a="${before[$k]}" -v b="$(ticks "${procs[$k]}")" -v hz="$HZ" -v s="$IDLE_S" 'BEGIN{printf "%.2f", (b - a) * 100 / hz / s}'))
    rss+=($(awk '/VmRSS/{printf "%.0f", $2/1024}' "/proc/${procs[$k]}/status" 2>/dev/null || echo 0))
  done
  printf '%-4s %20s %22s %18s %20s %16s %20s\n' "$N" \
    "$(printf '%s\n' "${joins[@]}" | median) / $(printf '%s\n' "${joins[@]}" | sort -n | tail -1)" \
    "$(printf '%s\n' "${firsts[@]}" | median) / $(printf '%s\n' "${firsts[@]}" | sort -n | tail -1)" \
    "$([ $done_ = 1 ] && echo $((t1 - t0)) || echo 'not reached')" \
    "$(printf '%s\n' "${rss[@]}" | median) / $(printf '%s\n' "${rss[@]}" | sort -n | tail -1)" "$N x $(printf '%s\n' "${rss[@]}" | median)" \
    "$(printf '%s\n' "${cpu[@]}" | median) / $(printf '%s\n' "${cpu[@]}" | sort -n | tail -1)"
  [ -n "${MEM:-}" ] && breakdown
  teardown
}

# MEM=1: where the memory of the three largest daemons is (/proc status, and V8's own figures from
# the daemon's metrics endpoint, 127.0.0.1:9464 in its namespace).
breakdown() {
  local k i m
  for k in $(for k in "${!rss[@]}"; do echo "${rss[$k]} $k"; done | sort -rn | head -3 | awk '{print $2}'); do
    i=$((k + 1))
    m=$(ip netns exec "$P-$i" curl -s --max-time 5 http://127.0.0.1:9464/metrics || true)
    printf '  n%-3s RSS %4s MB: anon %s, file %s; heap used %s / total %s, external %s, libp2p conns %s\n' "$i" "${rss[$k]}" \
      "$(awk '/RssAnon/{printf "%.0f", $2/1024}' "/proc/${procs[$k]}/status")" "$(awk '/RssFile/{printf "%.0f", $2/1024}' "/proc/${procs[$k]}/status")" \
      "$(mb nodejs_heap_size_used_bytes <<<"$m")" "$(mb nodejs_heap_size_total_bytes <<<"$m")" "$(mb nodejs_external_memory_bytes <<<"$m")" \
      "$(ip netns exec "$P-$i" ss -tnH state established 2>/dev/null | wc -l)"
  done
}
mb() { awk -v k="$1" 'index($0, k) == 1 { printf "%.0f", $NF / 1048576; exit }'; }

printf '%-4s %20s %22s %18s %20s %16s %20s\n' N "join cmd ms med/max" "join->ping ms med/max" "full mesh ms" "RSS MB med/max" "total" "idle CPU % med/max"
for n in $SIZES; do run "$n"; done
