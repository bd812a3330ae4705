// Mesh traffic that does not go through the mesh: a member's mesh address that the kernel routes
// out of another interface (a LAN on the same range, a more specific route that appeared later, a
// DHCP lease on an overlapping network). WireGuard never sees that traffic: it leaves in clear,
// and pings still work if something on that LAN answers. The daemon checks with one `ip route
// get` batch for all members (kernel.ts routesTo: the kernel's own answer, policy routing
// included) whenever the routing table changes (route-monitor.ts) or members come and go, and
// every LEAK_CHECK_MS as a backstop; status shows the result per member, and the log warns once
// per member per change, not on every check.
import type { Logger } from '../util/log.js';
import type { RouteTo } from '../routes/kernel.js';

/** How often the routes to members' mesh addresses are checked besides on changes (a backstop). */
export const LEAK_CHECK_MS = 60_000;

export interface MemberAddress {
  peerId: string;
  name: string;
  meshIp: string;
}

/**
 * Why traffic to a mesh address does not enter the mesh interface, or null when it does. No route
 * at all is not a leak: nothing leaves (and the member is unreachable, which status shows anyway).
 */
export function leakOf(route: RouteTo | undefined, meshIfname: string): string | null {
  if (!route) return null;
  if (route.type === 'local') return `routes via ${route.dev ?? 'lo'} (an address of this machine)`;
  if (route.dev === meshIfname) return null;
  return route.dev ? `routes via ${route.dev}` : `routes outside ${meshIfname}`;
}

export interface LeakWatchOptions {
  /** The mesh interface. */
  ifname: string;
  /** Every other member, now. */
  members(): MemberAddress[];
  /** Where the kernel routes each address (kernel.ts routesTo). */
  lookup(ips: readonly string[]): Promise<Map<string, RouteTo>>;
  logger: Logger;
}

export class LeakWatch {
  /** The current leak per member (peer id); members without one are absent. */
  private readonly leaks = new Map<string, string>();
  private running = false;
  private stopped = false;

  constructor(private readonly opts: LeakWatchOptions) {}

  /** Why traffic to this member leaves outside the tunnel, or null. */
  leak(peerId: string): string | null {
    return this.leaks.get(peerId) ?? null;
  }

  /** One look at the routes; logs what changed since the last look. A check already running is not doubled. */
  async check(): Promise<void> {
    if (this.running || this.stopped) return;
    this.running = true;
    try {
      const members = this.opts.members();
      const routes = await this.opts.lookup(members.map((m) => m.meshIp));
      if (this.stopped) return;
      const log = this.opts.logger;
      for (const m of members) {
        const now = leakOf(routes.get(m.meshIp), this.opts.ifname);
        const was = this.leaks.get(m.peerId) ?? null;
        if (now === was) continue;
        if (now) {
          this.leaks.set(m.peerId, now);
          log.warn({ member: m.name, meshIp: m.meshIp, leak: now, was }, `mesh traffic to ${m.name} (${m.meshIp}) ${now}, not through ${this.opts.ifname}: it is not encrypted; remove the route or address that captures it (ip route get ${m.meshIp})`);
        } else {
          this.leaks.delete(m.peerId);
          log.info({ member: m.name, meshIp: m.meshIp, was }, `mesh traffic to ${m.name} (${m.meshIp}) goes through ${this.opts.ifname} again`);
        }
      }
      const present = new Set(members.map((m) => m.peerId));
      for (const peerId of [...this.leaks.keys()]) if (!present.has(peerId)) this.leaks.delete(peerId);
    } finally {
      this.running = false;
    }
  }

  /** No more checks (the network stopped); a check under way is discarded. */
  stop(): void {
    this.stopped = true;
    this.leaks.clear();
  }
}
