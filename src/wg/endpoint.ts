// A UDP endpoint in the form the data path compares without allocating: a 16-byte IPv6 address
// (IPv4 mapped as ::ffff:a.b.c.d) and a port. Text forms follow `wg`: "1.2.3.4:51820", "[::1]:51820".
import { isIP } from 'node:net';

export interface Endpoint {
  readonly addr: Buffer; // 16 bytes
  readonly port: number;
}

const V4_MAPPED = Buffer.from('00000000000000000000ffff', 'hex');

export function isV4Mapped(addr: Uint8Array, at = 0): boolean {
  for (let i = 0; i < 10; i++) if (addr[at + i] !== 0) return false;
  return addr[at + 10] === 0xff && addr[at + 11] === 0xff;
}

/** Parses an IPv4 or IPv6 address into its 16-byte form; throws on anything else. */
export function addrFromString(ip: string): Buffer {
  const kind = isIP(ip);
  if (kind === 4) return Buffer.concat([V4_MAPPED, Buffer.from(ip.split('.').map(Number))]);
  if (kind !== 6) throw new Error(`invalid IP address: ${ip}`);
  let [head, tail] = ip.includes('::') ? ip.split('::') : [ip, undefined];
  const parse = (s: string): number[] => {
    if (!s) return [];
    const out: number[] = [];
    for (const part of s.split(':')) {
      if (part.includes('.')) {
        const b = part.split('.').map(Number);
        out.push((b[0] << 8) | b[1], (b[2] << 8) | b[3]);
      } else out.push(parseInt(part, 16));
    }
    return out;
  };
  const h = parse(head);
  const t = tail === undefined ? [] : parse(tail);
  const words = tail === undefined ? h : [...h, ...new Array(8 - h.length - t.length).fill(0), ...t];
  const b = Buffer.alloc(16);
  words.forEach((w, i) => b.writeUInt16BE(w, i * 2));
  return b;
}

export function addrToString(addr: Uint8Array, at = 0): string {
  if (isV4Mapped(addr, at)) return `${addr[at + 12]}.${addr[at + 13]}.${addr[at + 14]}.${addr[at + 15]}`;
  const words: string[] = [];
  for (let i = 0; i < 8; i++) words.push(((addr[at + 2 * i] << 8) | addr[at + 2 * i + 1]).toString(16));
  // compress the longest run of zero words (RFC 5952)
  let best = -1, bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (words[i] !== '0') { i++; continue; }
    let j = i;
    while (j < 8 && words[j] === '0') j++;
    if (j - i > bestLen && j - i > 1) { best = i; bestLen = j - i; }
    i = j;
  }
  if (best < 0) return words.join(':');
  return `${words.slice(0, best).join(':')}::${words.slice(best + bestLen).join(':')}`;
}

/** "1.2.3.4:51820" or "[v6]:51820"; throws with a clear message otherwise. */
export function parseEndpoint(text: string): Endpoint {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:]+):(\d+)$/.exec(text);
  if (!m) throw new Error(`invalid endpoint: ${text}`);
  const port = Number(m[2]);
  if (!(port > 0 && port < 65536)) throw new Error(`invalid endpoint port: ${text}`);
  return { addr: addrFromString(m[1].replace(/%.*$/, '')), port };
}

export function formatEndpoint(e: Endpoint): string {
  const a = addrToString(e.addr);
  return isV4Mapped(e.addr) ? `${a}:${e.port}` : `[${a}]:${e.port}`;
}

export function endpointEquals(e: Endpoint, addr: Uint8Array, at: number, port: number): boolean {
  if (e.port !== port) return false;
  for (let i = 0; i < 16; i++) if (e.addr[i] !== addr[at + i]) return false;
  return true;
}

/**
 * A key for the endpoint addr[at..at+16]:port that compares with ===: a number for IPv4 (address
 * and port in 48 bits, no allocation), a string for IPv6.
 */
export function endpointKey(addr: Uint8Array, at: number, port: number): number | string {
  if (isV4Mapped(addr, at)) {
    return (((addr[at + 12] << 24) | (addr[at + 13] << 16) | (addr[at + 14] << 8) | addr[at + 15]) >>> 0) * 65536 + port;
  }
  return `${Buffer.from(addr.subarray(at, at + 16)).toString('hex')}:${port}`;
}
