// The daemon's components: what it uses of the machine, handed in rather than built inside, as a
// js-libp2p service takes its `components`. `meshd daemon` passes none and gets the real ones; a
// unit test (test/unit/daemon.test.ts) passes an in-memory TUN, a recording fake kernel, a UAPI
// directory of its own, no prober and a libp2p node on loopback, and runs real daemons without root.
//
//   Daemon.start(opts, components?: Partial<DaemonComponents>)
//   defaultComponents(): DaemonComponents     the real ones
import type { Tun } from '../wg/tun.js';
import { openTun } from '../wg/tun.js';
import { UAPI_DIR } from '../wg/uapi-server.js';
import { createMeshNode, type MeshNode, type MeshNodeOptions } from '../discovery/p2p.js';
import { TunnelProber } from './prober.js';
import { hostKernel, type HostKernel } from './host-kernel.js';

export interface DaemonComponents {
  /** Addresses, routes, forwarding, policy routing, resolved: everything that runs `ip` and friends. */
  kernel: HostKernel;
  /** Opens the WireGuard interface's TUN (engine.ts); default the kernel's (/dev/net/tun). */
  openTun: (name: string, opts: { mtu?: number }) => Tun;
  /** Where the UAPI socket (IFNAME.sock, for `wg`) lives; default /var/run/wireguard. */
  uapiDir: string;
  /** ICMP echo through the tunnel (status's latency, subnet-route liveness); null or a throw: none. */
  prober: () => TunnelProber | null;
  /** The libp2p node of a network. */
  libp2p: (opts: MeshNodeOptions) => Promise<MeshNode>;
}

export function defaultComponents(): DaemonComponents {
  return {
    kernel: hostKernel,
    openTun,
    uapiDir: UAPI_DIR,
    prober: () => TunnelProber.open(),
    libp2p: createMeshNode,
  };
}
