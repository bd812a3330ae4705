// A recording fake of the host kernel (src/daemon/host-kernel.ts) for daemon unit tests: nothing
// runs `ip`, iptables, sysctl or resolvectl. It keeps each interface's addresses and link state as
// the daemon set them, and a log of every call, so a test asserts what the daemon asked for.
//
//   const kernel = new FakeKernel(); Daemon.start(opts, { kernel })
//   kernel.addresses('wgB') -> ['10.0.0.2/24']; kernel.isUp('wgB'); kernel.calls
import type { ExitRules, ForwardingRules, HostKernel, RouteWatch } from '../../../src/daemon/host-kernel.js';
import type { LocalAddress, RouteTo } from '../../../src/routes/kernel.js';
import type { LocalNetwork } from '../../../src/routes/overlap.js';
import type { ForwardedRoute } from '../../../src/routes/forwarding.js';

export interface KernelCall {
  op: string;
  args: unknown[];
}

export class FakeKernel implements HostKernel {
  readonly calls: KernelCall[] = [];
  private readonly addrs = new Map<string, string[]>();
  private readonly up = new Set<string>();
  readonly routes = new Set<string>();
  /** What localAddresses answers (the mesh interface's own are left out, as the real one does). */
  local: LocalAddress[] = [];
  /** What localNetworks answers (the overlap check). */
  networks: LocalNetwork[] = [];

  private record(op: string, ...args: unknown[]): void {
    this.calls.push({ op, args });
  }

  /** The calls of one kind, in order. */
  callsOf(op: string): unknown[][] {
    return this.calls.filter((c) => c.op === op).map((c) => c.args);
  }

  addresses(ifname: string): string[] {
    return [...(this.addrs.get(ifname) ?? [])];
  }

  isUp(ifname: string): boolean {
    return this.up.has(ifname);
  }

  async addAddress(ifname: string, ip: string, bits: number): Promise<void> {
    this.record('addAddress', ifname, ip, bits);
    const list = this.addrs.get(ifname) ?? [];
    if (!list.includes(`${ip}/${bits}`)) list.push(`${ip}/${bits}`);
    this.addrs.set(ifname, list);
  }

  async flushAddresses(ifname: string): Promise<void> {
    this.record('flushAddresses', ifname);
    this.addrs.delete(ifname);
  }

  async setLinkUp(ifname: string): Promise<void> {
    this.record('setLinkUp', ifname);
    this.up.add(ifname);
  }

  async addRoute(prefix: string, ifname: string): Promise<void> {
    this.record('addRoute', prefix, ifname);
    this.routes.add(`${prefix} dev ${ifname}`);
  }

  async delRoute(prefix: string, ifname: string): Promise<void> {
    this.record('delRoute', prefix, ifname);
    this.routes.delete(`${prefix} dev ${ifname}`);
  }

  localAddresses(skipIfname?: string): LocalAddress[] {
    return this.local.filter((a) => a.ifname !== skipIfname);
  }

  async localNetworks(skipIfname?: string): Promise<LocalNetwork[]> {
    this.record('localNetworks', skipIfname);
    return this.networks.filter((n) => n.ifname !== skipIfname);
  }

  /** Every address routes nowhere in particular: no leak to report. */
  async routesTo(_ips: readonly string[]): Promise<Map<string, RouteTo>> {
    return new Map();
  }

  async multicastRouted(): Promise<boolean> {
    return true;
  }

  async ensureMulticastRoute(ifname: string): Promise<void> {
    this.record('ensureMulticastRoute', ifname);
  }

  routeMonitor(): RouteWatch {
    return { start: () => this.record('routeMonitor.start'), stop: () => this.record('routeMonitor.stop') };
  }

  forwarding(opts: { ifname: string; meshCidr: string }): ForwardingRules {
    return {
      apply: async (routes: readonly ForwardedRoute[]) => this.record('forwarding.apply', opts.ifname, routes.map((r) => r.prefix)),
      clear: async () => this.record('forwarding.clear', opts.ifname),
    };
  }

  exitRouting(opts: { ifname: string }): ExitRules {
    return {
      apply: async (p) => this.record('exitRouting.apply', opts.ifname, p),
      off: async () => this.record('exitRouting.off', opts.ifname),
    };
  }

  async systemdResolved(ifname: string, ip: string, domain: string): Promise<boolean> {
    this.record('systemdResolved', ifname, ip, domain);
    return false;
  }

  async revertResolved(ifname: string): Promise<void> {
    this.record('revertResolved', ifname);
  }
}
