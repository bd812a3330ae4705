# common.sh -- sourced by scripts/setup.sh and .ci/run: the system packages meshd and its tests
# need, and quiet, which runs a setup step and shows its output only when it fails.
#
# iproute2, iptables, wireguard-*, iperf3, iputils-ping, jq, procps: the engine, the netns tests and
# the benches; faketime: skewed clocks; zbar-tools: reading back `meshd export --qr`;
# bind9-dnsutils: dig against the names server. python3, make, g++: node-gyp building the addon in
# src/wg/native (python3 also: the sd_notify listener of the service tests). systemd:
# systemd-analyze verify of the unit (no PID 1 needed). gdb: the native stacks of a daemon that a
# test waited on in vain (test/netns/harness.ts, stuckReport).
# shellcheck disable=SC2034 # used by the scripts that source this
MESHD_PACKAGES=(iproute2 iptables wireguard-go wireguard-tools iperf3 iputils-ping jq procps ca-certificates faketime zbar-tools
  bind9-dnsutils python3 make g++ systemd gdb)

# quiet PREFIX CMD...: runs CMD with its output kept aside; on failure prints it, then one line
# "PREFIX failed (exit N): CMD", and returns N.
quiet() {
  local prefix=$1 log rc
  shift
  log=$(mktemp)
  if "$@" >"$log" 2>&1; then rm -f "$log"; else
    rc=$?
    cat "$log" >&2; rm -f "$log"
    echo "$prefix failed (exit $rc): $*" >&2
    return "$rc"
  fi
}
