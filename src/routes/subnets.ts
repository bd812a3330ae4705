// Subnet routes: which member carries each prefix the mesh routes beyond its own addresses (a LAN
// behind a member). Pure: the daemon gives it the members' offers and who answers probes, and
// programs what it returns (WireGuard allowed IPs, kernel routes).
//
// A prefix is usable through a member when the member advertises it in its record AND an
// administrator approved it for that member (ledger `routes` event): no member pulls in traffic for
// a prefix by saying so. Default routes (0.0.0.0/0, ::/0) are exit nodes, chosen by the user, never
// used as subnet routes; a prefix that overlaps the mesh range is never used (it would take
// members' own addresses). WireGuard gives each prefix to one peer, so of several members offering
// one prefix one holds it: this node itself when it offers it (its own LAN stays local), else the
// current holder while it answers, else the first member by mesh address that answers, else (no
// one answers) the current or first one, so traffic at least tries.
//
//   usableRoutes(offer): string[]                     advertised and approved
//   isDefaultRoute(prefix): boolean
//   chooseHolders(offers, { self, online, current, meshCidr }): Map<prefix, peerId>
//   contested(offers, meshCidr): Set<peerId>           members that share a prefix with another
import { parsePrefix } from '../wg/prefix.js';

export interface RouteOffer {
  readonly peerId: string;
  readonly meshIp: string;
  /** What the member's record advertises. */
  readonly advertised: readonly string[];
  /** What administrators approved for it. */
  readonly approved: readonly string[];
}

export function usableRoutes(offer: RouteOffer): string[] {
  const approved = new Set(offer.approved);
  return offer.advertised.filter((p) => approved.has(p));
}

export function isDefaultRoute(prefix: string): boolean {
  try {
    return parsePrefix(prefix).bits === 0;
  } catch {
    return false;
  }
}

/** Whether two prefixes share any address (one contains the other). */
export function overlaps(a: string, b: string): boolean {
  const pa = parsePrefix(a);
  const pb = parsePrefix(b);
  if (pa.addr.length !== pb.addr.length) return false;
  const bits = Math.min(pa.bits, pb.bits);
  for (let i = 0; i < bits; i++) {
    const byte = i >> 3;
    const mask = 0x80 >> (i & 7);
    if ((pa.addr[byte] & mask) !== (pb.addr[byte] & mask)) return false;
  }
  return true;
}

/** The prefixes each offer may route as a subnet route (not default routes, not the mesh's own range). */
function subnetRoutes(offer: RouteOffer, meshCidr: string): string[] {
  return usableRoutes(offer).filter((p) => !isDefaultRoute(p) && !overlaps(p, meshCidr));
}

function byMeshIp(a: RouteOffer, b: RouteOffer): number {
  const n = (ip: string) => ip.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);
  return n(a.meshIp) - n(b.meshIp);
}

export function chooseHolders(
  offers: readonly RouteOffer[],
  opts: { self: string; online: (peerId: string) => boolean; current: ReadonlyMap<string, string>; meshCidr: string },
): Map<string, string> {
  const byPrefix = new Map<string, RouteOffer[]>();
  for (const o of [...offers].sort(byMeshIp)) {
    for (const p of subnetRoutes(o, opts.meshCidr)) {
      const list = byPrefix.get(p) ?? [];
      list.push(o);
      byPrefix.set(p, list);
    }
  }
  const out = new Map<string, string>();
  for (const [prefix, candidates] of byPrefix) {
    const ids = candidates.map((c) => c.peerId);
    if (ids.includes(opts.self)) {
      out.set(prefix, opts.self);
      continue;
    }
    const current = opts.current.get(prefix);
    const holder = (current !== undefined && ids.includes(current) && opts.online(current) ? current : undefined)
      ?? ids.find((id) => opts.online(id))
      ?? (current !== undefined && ids.includes(current) ? current : ids[0]);
    out.set(prefix, holder);
  }
  return out;
}

/** Members that offer a usable subnet route another member offers too: whose liveness decides. */
export function contested(offers: readonly RouteOffer[], meshCidr: string): Set<string> {
  const seen = new Map<string, string>();
  const out = new Set<string>();
  for (const o of offers) {
    for (const p of subnetRoutes(o, meshCidr)) {
      const other = seen.get(p);
      if (other !== undefined && other !== o.peerId) {
        out.add(other);
        out.add(o.peerId);
      } else seen.set(p, o.peerId);
    }
  }
  return out;
}
