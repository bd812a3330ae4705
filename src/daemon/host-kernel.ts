// What the daemon asks of the host's kernel, in one object: interface addresses and link state,
// routes, the machine's own addresses and networks, the routing-table watch, forwarding
// (iptables and sysctl), exit-node policy routing, and systemd-resolved. Everything the daemon
// would otherwise run `ip`, iptables, sysctl or resolvectl for goes through a HostKernel, so that a
// test can hand the daemon a fake one (test/unit/helpers/fake-kernel.ts) and run it without root.
//
//   hostKernel: HostKernel      the real one: src/routes/kernel.ts and friends
//
// The stateful parts (the route monitor, forwarding, exit routing) are factories: the daemon and
// SubnetRoutes make one per network, as they did with `new`.
import {
  addAddress, addRoute, delRoute, ensureMulticastRoute, flushAddresses, localAddresses, localNetworks, routesTo, runIp, setLinkUp,
  type LocalAddress, type RouteTo,
} from '../routes/kernel.js';
import type { LocalNetwork } from '../routes/overlap.js';
import { RouteMonitor, type RouteMonitorOptions } from '../routes/route-monitor.js';
import { Forwarding, type ForwardedRoute } from '../routes/forwarding.js';
import { ExitRouting } from '../routes/exit-node.js';
import { revertResolved, systemdResolved } from './names.js';
import type { Logger } from '../util/log.js';

/** Tells when the routing table, addresses, rules or links change (route-monitor.ts). */
export interface RouteWatch {
  start(): void;
  stop(): void;
}

/** Forwarding and masquerading for prefixes this node routes for the mesh (forwarding.ts). */
export interface ForwardingRules {
  apply(routes: readonly ForwardedRoute[]): Promise<void>;
  /** Rules and sysctls as they were found. */
  clear(): Promise<void>;
}

/** Policy routing of all traffic through the mesh interface (exit-node.ts). */
export interface ExitRules {
  apply(p: { allowLan: boolean; keep: readonly string[] }): Promise<void>;
  /** Rules as they were found. */
  off(): Promise<void>;
}

export interface HostKernel {
  /** `ip addr add IP/BITS dev IF` (idempotent). */
  addAddress(ifname: string, ip: string, bits: number): Promise<void>;
  /** `ip addr flush dev IF`. */
  flushAddresses(ifname: string): Promise<void>;
  /** `ip link set dev IF up`. */
  setLinkUp(ifname: string): Promise<void>;
  /** `ip route add PREFIX dev IF` (idempotent). */
  addRoute(prefix: string, ifname: string): Promise<void>;
  /** `ip route del PREFIX dev IF` (a route already gone is success). */
  delRoute(prefix: string, ifname: string): Promise<void>;
  /** This host's interface addresses, except interface `skipIfname`. */
  localAddresses(skipIfname?: string): LocalAddress[];
  /** This host's IPv4 networks (for the overlap check), except interface `skipIfname`'s. */
  localNetworks(skipIfname?: string): Promise<LocalNetwork[]>;
  /** Where the kernel routes each address. */
  routesTo(ips: readonly string[]): Promise<Map<string, RouteTo>>;
  /** Whether multicast (mDNS, 224.0.0.251) has a route at all. */
  multicastRouted(): Promise<boolean>;
  /** A route for 224.0.0.0/4 through `ifname`. */
  ensureMulticastRoute(ifname: string): Promise<void>;
  routeMonitor(opts: RouteMonitorOptions): RouteWatch;
  forwarding(opts: { ifname: string; meshCidr: string; logger?: Logger }): ForwardingRules;
  exitRouting(opts: { ifname: string; logger?: Logger }): ExitRules;
  /** Points systemd-resolved at our name server for the domain (false where it does not run). */
  systemdResolved(ifname: string, ip: string, domain: string, logger: Logger): Promise<boolean>;
  revertResolved(ifname: string, logger: Logger): Promise<void>;
}

export const hostKernel: HostKernel = {
  addAddress,
  flushAddresses,
  setLinkUp: (ifname) => setLinkUp(ifname),
  addRoute,
  delRoute,
  localAddresses,
  localNetworks,
  routesTo,
  multicastRouted: () => runIp(['route', 'get', '224.0.0.251']).then(() => true, () => false),
  ensureMulticastRoute,
  routeMonitor: (opts) => new RouteMonitor(opts),
  forwarding: (opts) => new Forwarding(opts),
  exitRouting: (opts) => new ExitRouting(opts),
  systemdResolved,
  revertResolved,
};
