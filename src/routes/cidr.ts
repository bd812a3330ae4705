// IPv4 CIDR arithmetic for mesh address ranges, without libraries: an address is an unsigned 32-bit
// integer held in a JS number (never a signed int32: `>>> 0` after every bitwise operation).
//
// Decisions:
// - Host bits set ('10.0.0.5/24') is an error, not silently normalised: a range typed with a host
//   address is usually a mistake, and the ledger (discovery/records.ts) rejects such ranges too.
//   The error names the range that was probably meant.
// - Addresses are strict dotted quads: four decimal octets 0..255 without leading zeros, because
//   inet_aton would read '010' as octal 8 and the kernel and the user would disagree.
// - Usable hosts: the network and broadcast addresses are excluded, except
//     /31: both addresses are usable (RFC 3021, point-to-point links have no broadcast);
//     /32: the single address is usable (a host route names exactly one host).
// - IPv6 is out of scope for now; parseCidr says so explicitly. The parsed form carries
//   `family: 4` so a later IPv6 variant (bigint arithmetic) can sit beside it. contains() and
//   isUsableHost() answer false for an IPv6 address (it is not in an IPv4 range); any other
//   malformed address throws CidrError.
import { isIP } from 'node:net';

export interface Cidr {
  readonly family: 4;
  /** The network address as an unsigned 32-bit integer. */
  readonly network: number;
  /** Prefix length, 0..32. */
  readonly bits: number;
  /** Number of addresses in the range (2^(32-bits)), including network and broadcast. */
  readonly size: number;
}

export class CidrError extends Error {
  readonly code = 'EINVAL';
  constructor(message: string) {
    super(message);
    this.name = 'CidrError';
  }
}

const OCTET = /^(0|[1-9]\d{0,2})$/;

/** Strict dotted-quad to unsigned 32-bit integer; throws CidrError. */
export function ipToInt(ip: string): number {
  if (typeof ip !== 'string') throw new CidrError(`invalid IPv4 address: ${String(ip)}`);
  if (ip.includes(':')) throw new CidrError(`IPv6 addresses are not supported yet: ${ip}`);
  const parts = ip.split('.');
  if (parts.length !== 4 || !parts.every((p) => OCTET.test(p) && Number(p) <= 255)) {
    throw new CidrError(`invalid IPv4 address: ${ip}`);
  }
  return parts.reduce((n, p) => n * 256 + Number(p), 0);
}

export function intToIp(n: number): string {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new CidrError(`not an IPv4 address value: ${n}`);
  return [n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff].join('.');
}

/** Netmask for a prefix length as an unsigned integer (bits=0 -> 0, bits=32 -> 0xffffffff). */
export function maskOf(bits: number): number {
  return bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
}

/** Parses 'a.b.c.d/n'; throws CidrError on bad syntax, prefix length or host bits set. */
export function parseCidr(text: string): Cidr {
  if (typeof text !== 'string') throw new CidrError(`invalid CIDR: ${String(text)}`);
  const slash = text.indexOf('/');
  if (slash < 0) throw new CidrError(`invalid CIDR ${text}: missing prefix length (e.g. 10.0.0.0/24)`);
  const ipText = text.slice(0, slash);
  const lenText = text.slice(slash + 1);
  if (ipText.includes(':')) throw new CidrError(`IPv6 ranges are not supported yet: ${text}`);
  const ip = ipToInt(ipText);
  if (!/^\d{1,2}$/.test(lenText) || Number(lenText) > 32) {
    throw new CidrError(`invalid prefix length in ${text}: must be 0..32`);
  }
  const bits = Number(lenText);
  const network = (ip & maskOf(bits)) >>> 0;
  if (network !== ip) {
    throw new CidrError(`invalid CIDR ${text}: host bits are set (did you mean ${intToIp(network)}/${bits}?)`);
  }
  return { family: 4, network, bits, size: 2 ** (32 - bits) };
}

export function formatCidr(c: Cidr): string {
  return `${intToIp(c.network)}/${c.bits}`;
}

function asCidr(cidr: string | Cidr): Cidr {
  return typeof cidr === 'string' ? parseCidr(cidr) : cidr;
}

function asInt(ip: string | number): number {
  if (typeof ip === 'number') {
    if (!Number.isInteger(ip) || ip < 0 || ip > 0xffffffff) throw new CidrError(`not an IPv4 address value: ${ip}`);
    return ip;
  }
  return ipToInt(ip);
}

/** The broadcast (last) address of the range. */
export function broadcastOf(cidr: string | Cidr): number {
  const c = asCidr(cidr);
  return c.network + c.size - 1;
}

/** True if ip lies in the range (network and broadcast included). */
export function contains(cidr: string | Cidr, ip: string | number): boolean {
  const c = asCidr(cidr);
  if (typeof ip === 'string' && isIP(ip) === 6) return false;
  const n = asInt(ip);
  return n >= c.network && n < c.network + c.size;
}

/** The first usable host address and how many there are (see the /31, /32 rules above). */
function usableSpan(c: Cidr): { first: number; count: number } {
  if (c.bits >= 31) return { first: c.network, count: c.size };
  return { first: c.network + 1, count: c.size - 2 };
}

/** How many addresses can be given to hosts. */
export function usableCount(cidr: string | Cidr): number {
  return usableSpan(asCidr(cidr)).count;
}

/** True if ip is in the range and is neither its network nor its broadcast address (/31, /32: see above). */
export function isUsableHost(cidr: string | Cidr, ip: string | number): boolean {
  const c = asCidr(cidr);
  if (typeof ip === 'string' && isIP(ip) === 6) return false;
  const n = asInt(ip);
  const { first, count } = usableSpan(c);
  return n >= first && n < first + count;
}

/** The i-th usable host (0-based) as a dotted quad; throws RangeError past the end. */
export function hostAt(cidr: string | Cidr, i: number): string {
  const c = asCidr(cidr);
  const { first, count } = usableSpan(c);
  if (!Number.isInteger(i) || i < 0 || i >= count) {
    throw new RangeError(`host index ${i} is outside ${formatCidr(c)} (it has ${count} usable addresses)`);
  }
  return intToIp(first + i);
}

/** Lazily yields every usable host in order (a /8 has 16 million: do not spread it into an array). */
export function* hostAddresses(cidr: string | Cidr): Generator<string, void, undefined> {
  const c = asCidr(cidr);
  const { first, count } = usableSpan(c);
  for (let i = 0; i < count; i++) yield intToIp(first + i);
}
