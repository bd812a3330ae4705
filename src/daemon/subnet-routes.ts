// The daemon's side of subnet routes (src/routes/subnets.ts decides; this programs): which prefixes
// go into which member's WireGuard allowed IPs, the kernel routes that send them into the mesh
// interface, and, on a member that routes prefixes for the mesh, forwarding and masquerading
// (src/routes/forwarding.ts). Where two members offer one prefix, their liveness decides who holds
// it: while such a contest exists they are probed through the tunnel every second, and a holder
// that has not answered for LIVENESS_MS hands the prefix to one that has (failover within seconds).
//
//   new SubnetRoutes({ ifname, meshCidr, self, logger, prober, onChange, kernel? })   kernel: default the host's (host-kernel.ts)
//   routes.update(members, advertisedHere, hostedDevices?): Promise<boolean>   recompute and program; true if holders changed
//       hostedDevices: mesh addresses of the plain WireGuard clients this node hosts (forwarded both ways)
//   routes.routesOf(peerId): string[]      the prefixes WireGuard gives that member
//   routes.rows(members): RouteRow[]       for `meshd routes`
//   routes.stop(): Promise<void>           kernel routes, forwarding and timers undone
import type { ForwardedRoute } from '../routes/forwarding.js';
import { hostKernel, type ForwardingRules, type HostKernel } from './host-kernel.js';
import { chooseHolders, contested, isDefaultRoute, overlaps, type RouteOffer } from '../routes/subnets.js';
import type { Member } from '../discovery/ledger.js';
import type { Logger } from '../util/log.js';

/** A holder that has not answered a probe this long has gone away. */
export const LIVENESS_MS = 3_500;
const CONTEST_PROBE_MS = 1_000;

/** A prefix this node advertises, and whether its forwarded traffic is masqueraded. */
export interface AdvertisedRoute {
  prefix: string;
  snat: boolean;
}

export interface RouteRow {
  member: string;
  meshIp: string;
  prefix: string;
  approved: boolean;
  /** This node sends the prefix's traffic through that member (or, for our own, forwards it). */
  inUse: boolean;
  exitNode: boolean;
}

export interface Liveness {
  probe(targets: { key: string; ip: string }[]): void;
  answeredWithin(key: string, ms: number): boolean;
}

export class SubnetRoutes {
  private holders = new Map<string, string>();
  private installed = new Set<string>();
  /** Prefixes the kernel refused to route here (reported once). */
  private readonly refused = new Set<string>();
  private readonly forwarding: ForwardingRules;
  private readonly kernel: Pick<HostKernel, 'addRoute' | 'delRoute' | 'forwarding'>;
  private contest: { key: string; ip: string }[] = [];
  private timer: NodeJS.Timeout | null = null;
  private forwardedKey = '';

  constructor(private readonly opts: {
    ifname: string;
    meshCidr: string;
    self: string;
    logger: Logger;
    prober: Liveness | null;
    /** Called when liveness changed a holder: the daemon reprograms its peers. */
    onChange: () => void;
    /** Routes and forwarding rules; default the host's. */
    kernel?: Pick<HostKernel, 'addRoute' | 'delRoute' | 'forwarding'>;
  }) {
    this.kernel = opts.kernel ?? hostKernel;
    this.forwarding = this.kernel.forwarding({ ifname: opts.ifname, meshCidr: opts.meshCidr, logger: opts.logger });
  }

  private offers(members: readonly Member[]): RouteOffer[] {
    return members.map((m) => ({ peerId: m.peerId, meshIp: m.meshIp, advertised: m.record?.routes ?? [], approved: m.routes }));
  }

  private online = (peerId: string): boolean => this.opts.prober?.answeredWithin(peerId, LIVENESS_MS) ?? false;

  /** Recomputes holders, then programs kernel routes and forwarding; true when holders changed. */
  async update(members: readonly Member[], advertisedHere: readonly AdvertisedRoute[], hostedDevices: readonly string[] = []): Promise<boolean> {
    const offers = this.offers(members);
    const next = chooseHolders(offers, { self: this.opts.self, online: this.online, current: this.holders, meshCidr: this.opts.meshCidr });
    const changed = next.size !== this.holders.size || [...next].some(([p, h]) => this.holders.get(p) !== h);
    for (const [prefix, holder] of next) {
      const was = this.holders.get(prefix);
      if (was !== undefined && was !== holder) this.opts.logger.info({ prefix, from: was, to: holder }, 'subnet route moved to another member');
    }
    this.holders = next;
    await this.programKernel();
    await this.programForwarding(members, advertisedHere, hostedDevices);
    this.watch(offers, members);
    return changed;
  }

  routesOf(peerId: string): string[] {
    return [...this.holders].filter(([, h]) => h === peerId && h !== this.opts.self).map(([p]) => p);
  }

  rows(members: readonly Member[]): RouteRow[] {
    const rows: RouteRow[] = [];
    for (const m of members) {
      const approved = new Set(m.routes);
      for (const prefix of m.record?.routes ?? []) {
        rows.push({
          member: m.name, meshIp: m.meshIp, prefix, approved: approved.has(prefix),
          inUse: this.holders.get(prefix) === m.peerId, exitNode: isDefaultRoute(prefix),
        });
      }
    }
    return rows;
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    for (const p of this.installed) await this.kernel.delRoute(p, this.opts.ifname).catch(() => {});
    this.installed.clear();
    this.holders.clear();
    await this.forwarding.clear().catch((err: Error) => this.opts.logger.warn({ err: err.message }, 'cannot remove the forwarding rules'));
    this.forwardedKey = '';
  }

  /** Kernel routes: every prefix another member holds goes into the mesh interface. */
  private async programKernel(): Promise<void> {
    const want = new Set([...this.holders].filter(([, h]) => h !== this.opts.self).map(([p]) => p));
    for (const p of this.installed) {
      if (want.has(p)) continue;
      await this.kernel.delRoute(p, this.opts.ifname).catch((err: Error) => this.opts.logger.warn({ prefix: p, err: err.message }, 'cannot remove a subnet route'));
      this.installed.delete(p);
    }
    for (const p of want) {
      if (this.installed.has(p)) continue;
      try {
        await this.kernel.addRoute(p, this.opts.ifname);
        this.installed.add(p);
        this.opts.logger.info({ prefix: p }, 'subnet route added');
      } catch (err) {
        // Typically a network this host is on itself: its own route wins, and stays (said once).
        if (!this.refused.has(p)) this.opts.logger.warn({ prefix: p, err: (err as Error).message }, 'cannot route a subnet into the mesh');
        this.refused.add(p);
      }
    }
  }

  /** Forwarding for what this node itself advertises and has been approved for. */
  private async programForwarding(members: readonly Member[], advertisedHere: readonly AdvertisedRoute[], hostedDevices: readonly string[]): Promise<void> {
    const self = members.find((m) => m.peerId === this.opts.self);
    const approved = new Set(self?.routes ?? []);
    const routes: ForwardedRoute[] = [
      ...advertisedHere.filter((r) => approved.has(r.prefix) && (isDefaultRoute(r.prefix) || !overlaps(r.prefix, this.opts.meshCidr))),
      // A hosted client's traffic comes in and goes out on the mesh interface, its source kept.
      ...hostedDevices.map((ip) => ({ prefix: `${ip}/32`, snat: false })),
    ];
    const key = JSON.stringify(routes);
    if (key === this.forwardedKey) return;
    try {
      await this.forwarding.apply(routes);
      this.forwardedKey = key;
      if (routes.length) this.opts.logger.info({ routes: routes.map((r) => r.prefix) }, 'forwarding for the mesh');
    } catch (err) {
      this.opts.logger.error({ err: (err as Error).message }, 'cannot forward for the mesh');
    }
  }

  /** Probes the members that share a prefix every second while such a contest exists. */
  private watch(offers: RouteOffer[], members: readonly Member[]): void {
    const ids = contested(offers, this.opts.meshCidr);
    ids.delete(this.opts.self);
    this.contest = members.filter((m) => ids.has(m.peerId)).map((m) => ({ key: m.peerId, ip: m.meshIp }));
    if (this.contest.length === 0 || !this.opts.prober) {
      if (this.timer) clearInterval(this.timer);
      this.timer = null;
      return;
    }
    if (this.timer) return;
    this.timer = setInterval(() => {
      this.opts.prober?.probe(this.contest);
      // A holder that stopped answering, or a first answer after none: the daemon recomputes.
      const stale = [...this.holders].some(([, h]) => h !== this.opts.self && this.contest.some((c) => c.key === h) && !this.online(h));
      if (stale && this.contest.some((c) => this.online(c.key))) this.opts.onChange();
    }, CONTEST_PROBE_MS);
    this.timer.unref();
  }
}
