// A mesh range must not overlap a network this machine already has. If a LAN uses the mesh's
// prefix, the LAN's route wins (the kernel keeps the first of two equal routes, and a more
// specific one always beats the mesh's): "mesh" traffic crosses the LAN unencrypted while pings
// work and status looks fine. If the LAN is wider than the mesh range, the mesh hides part of it.
// So `meshd init` and `meshd join` refuse such a range unless told --allow-overlap.
//
// Pure logic: the machine's networks come in as data (kernel.ts localNetworks reads them).
//
// Decisions:
// - Two prefixes overlap when one contains the other (CIDR blocks never partly overlap).
// - A local network as specific as the mesh range or more is a leak (traffic to mesh addresses in
//   it goes out on that interface, in clear); a wider one is not, but the mesh would hide part of
//   it. Both are refused; the message says which.
// - Routes shorter than /8 are not networks but default routes in pieces (VPN clients install
//   0.0.0.0/1 and 128.0.0.0/1): the mesh's own, more specific, route beats them. Ignored, as the
//   default route is; the caller leaves both out or this module skips them (isDefaultLike).
// - A free range keeps the requested size and is looked for first in 10.0.0.0/8 from 10.77.0.0
//   (home and office LANs crowd 10.0.x and 10.1.x), then in 100.64.0.0/10 (shared address
//   space), then 172.16.0.0/12; one candidate per /16 (or per block, for ranges wider than /16).
import { formatCidr, intToIp, ipToInt, maskOf, parseCidr, type Cidr } from './cidr.js';

/** A network configured on this machine: an interface's address prefix, or a route through it. */
export interface LocalNetwork {
  ifname: string;
  /** 'a.b.c.d/n' with host bits zero. */
  prefix: string;
  /** 'address': an address on the interface (its network); 'route': a route through it. */
  kind: 'address' | 'route';
}

export interface Overlap {
  /** The mesh range asked for. */
  cidr: string;
  network: LocalNetwork;
  /** true: the local network is as specific as the range or more: mesh traffic would take it. */
  leaks: boolean;
}

/** Shorter than this, a route is a default route in pieces, not a network (see above). */
export const MIN_NETWORK_BITS = 8;

export class OverlapError extends Error {
  readonly code = 'EOVERLAP';
  constructor(readonly overlap: Overlap, message: string) {
    super(message);
    this.name = 'OverlapError';
  }
}

const asCidr = (c: string | Cidr): Cidr => (typeof c === 'string' ? parseCidr(c) : c);

/** True when the two IPv4 prefixes share an address (one contains the other). */
export function overlaps(a: string | Cidr, b: string | Cidr): boolean {
  const [x, y] = [asCidr(a), asCidr(b)];
  const mask = maskOf(Math.min(x.bits, y.bits));
  return ((x.network & mask) >>> 0) === ((y.network & mask) >>> 0);
}

/** A route that only splits the default route (bits < MIN_NETWORK_BITS). */
export function isDefaultLike(n: LocalNetwork): boolean {
  return n.kind === 'route' && parseCidr(n.prefix).bits < MIN_NETWORK_BITS;
}

/**
 * The local network the range collides with, or null: a leaking one first (as specific as the
 * range or more), else one the range would hide part of. Default-like routes are skipped.
 */
export function findOverlap(cidr: string, networks: readonly LocalNetwork[]): Overlap | null {
  const range = parseCidr(cidr);
  let hides: Overlap | null = null;
  for (const network of networks) {
    if (isDefaultLike(network)) continue;
    const n = parseCidr(network.prefix);
    if (!overlaps(range, n)) continue;
    if (n.bits >= range.bits) return { cidr, network, leaks: true };
    hides ??= { cidr, network, leaks: false };
  }
  return hides;
}

const POOLS = [
  { pool: '10.0.0.0/8', from: '10.77.0.0' },
  { pool: '100.64.0.0/10', from: '100.64.0.0' },
  { pool: '172.16.0.0/12', from: '172.16.0.0' },
];

/** Candidate ranges of `bits` in the order they are offered (see the header). */
export function* candidateRanges(bits: number): Generator<string, void, undefined> {
  const size = 2 ** (32 - bits);
  for (const { pool, from } of POOLS) {
    const p = parseCidr(pool);
    if (p.bits > bits) continue;
    const step = Math.max(size, 2 ** 16);
    const start = Math.floor((ipToInt(from) - p.network) / step) * step;
    for (let i = 0; i < p.size / step; i++) {
      yield `${intToIp(p.network + ((start + i * step) % p.size))}/${bits}`;
    }
  }
}

/** A range of `bits` (default /24) that overlaps none of the networks, or null if none is left. */
export function freeRange(networks: readonly LocalNetwork[], bits = 24): string | null {
  for (const c of candidateRanges(bits)) if (findOverlap(c, networks) === null) return c;
  return null;
}

function describe(n: LocalNetwork): string {
  return n.kind === 'address' ? `${n.ifname}'s network ${n.prefix}` : `the route to ${n.prefix} via ${n.ifname}`;
}

function consequence(o: Overlap): string {
  return o.leaks
    ? `mesh traffic would leave in clear on ${o.network.ifname}`
    : `the mesh would hide the part of ${o.network.prefix} it covers (those hosts on ${o.network.ifname} become unreachable)`;
}

/** Why `meshd init --cidr` is refused, and what to type instead. */
export function initRefusal(o: Overlap, suggestion: string | null): string {
  const instead = suggestion ? `Pick another range, e.g. meshd init --cidr ${suggestion}` : 'Pick another range with --cidr';
  return `${o.cidr} overlaps ${describe(o.network)}: ${consequence(o)}. ${instead} (or --allow-overlap if you know why)`;
}

/** Why `meshd join` is refused: the range is the network's, so the fix is on this machine or the network's. */
export function joinRefusal(o: Overlap, suggestion: string | null): string {
  const free = suggestion ? ` (${suggestion} is free here)` : '';
  return `the network's range ${o.cidr} overlaps ${describe(o.network)}: ${consequence(o)}. This node did not join. ` +
    `Move ${o.network.ifname} to another range, or join a network founded on a range free here${free}; ` +
    'meshd join --allow-overlap <invite> if you know why';
}

/**
 * Throws OverlapError when `cidr` overlaps one of `networks`, with the message for `command`.
 * The one call init and join make (join passes the invite's network range).
 */
export function checkOverlap(cidr: string, networks: readonly LocalNetwork[], command: 'init' | 'join'): void {
  const o = findOverlap(cidr, networks);
  if (!o) return;
  const suggestion = freeRange(networks, parseCidr(cidr).bits);
  throw new OverlapError(o, command === 'init' ? initRefusal(o, suggestion) : joinRefusal(o, suggestion));
}

/** The network an address sits in: 10.0.0.5 with prefix 24 -> 10.0.0.0/24. */
export function networkOf(address: string, prefixlen: number): string {
  return formatCidr({ family: 4, network: (ipToInt(address) & maskOf(prefixlen)) >>> 0, bits: prefixlen, size: 2 ** (32 - prefixlen) });
}
