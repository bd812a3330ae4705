// An IP prefix (CIDR): the unit of allowed IPs and routes. addr is 4 bytes for IPv4, 16 for IPv6,
// with host bits cleared, as WireGuard's allowed-IPs table stores it.
import { isIP } from 'node:net';
import { addrFromString, addrToString, isV4Mapped } from './endpoint.js';

export interface Prefix {
  readonly addr: Buffer; // 4 or 16 bytes
  readonly bits: number;
}

/** Parses "10.0.0.0/24", "fd00::/64", or a bare address (a host prefix); throws on bad input. */
export function parsePrefix(text: string): Prefix {
  const [ip, len, extra] = text.trim().split('/');
  if (extra !== undefined) throw new Error(`invalid prefix: ${text}`);
  const kind = isIP(ip);
  if (kind === 0) throw new Error(`invalid prefix: ${text}`);
  const full = addrFromString(ip);
  const addr = kind === 4 ? full.subarray(12) : full;
  const max = addr.length * 8;
  const bits = len === undefined ? max : Number(len);
  if (!/^\d+$/.test(len ?? String(max)) || bits > max) throw new Error(`invalid prefix length: ${text}`);
  return { addr: maskAddr(Buffer.from(addr), bits), bits };
}

export function maskAddr(addr: Buffer, bits: number): Buffer {
  for (let i = 0; i < addr.length; i++) {
    const keep = Math.max(0, Math.min(8, bits - i * 8));
    addr[i] &= keep === 0 ? 0 : (0xff << (8 - keep)) & 0xff;
  }
  return addr;
}

export function formatPrefix(p: Prefix): string {
  // A 16-byte prefix is IPv6 even when it is v4-mapped: addrToString would print "10.0.0.1" (it
  // serves endpoints, where mapped means IPv4), and "10.0.0.1/128" is not a prefix `wg` can read.
  const ip = p.addr.length === 4 ? p.addr.join('.')
    : isV4Mapped(p.addr) ? `::ffff:${p.addr.subarray(12).join('.')}` : addrToString(p.addr);
  return `${ip}/${p.bits}`;
}

export function prefixEquals(a: Prefix, b: Prefix): boolean {
  return a.bits === b.bits && a.addr.equals(b.addr);
}
