// A wg-quick(8) configuration file: what a user takes away to reach the mesh from a plain WireGuard
// client (a phone, a laptop without meshd). `wg-quick strip` of it is a `wg setconf` file.
//
// wg-quick runs its file through bash-like parsing and executes PreUp/PostUp lines as root, so
// every value written here is validated: a newline in an endpoint or a comment would let text
// from the mesh become a command on the user's machine.
import { isIP } from 'node:net';
import { formatEndpoint, type Endpoint } from './endpoint.js';
import { formatPrefix, type Prefix } from './prefix.js';

export interface WgQuickPeer {
  publicKey: Uint8Array;
  presharedKey?: Uint8Array | null;
  allowedIps: Prefix[];
  /** An address and port, or "host:port" text (a DNS name is fine for wg-quick). */
  endpoint?: Endpoint | string | null;
  persistentKeepalive?: number; // seconds; 0 or absent = off
  /** Written as a comment above the peer, e.g. its mesh name; control characters are dropped. */
  comment?: string;
}

export interface WgQuickConfig {
  privateKey: Uint8Array;
  /** The interface's own addresses with their prefix length, as `ip addr` takes them: "10.0.0.2/24". */
  addresses: string[];
  listenPort?: number;
  /** DNS servers (IP addresses) and search domains. */
  dns?: string[];
  mtu?: number;
  peers: WgQuickPeer[];
}

function key(k: Uint8Array, what: string): string {
  if (k.length !== 32) throw new Error(`${what} must be 32 bytes, got ${k.length}`);
  return Buffer.from(k).toString('base64');
}

function intIn(n: number, lo: number, hi: number, what: string): number {
  if (!Number.isInteger(n) || n < lo || n > hi) throw new Error(`${what} must be a whole number from ${lo} to ${hi}, got ${n}`);
  return n;
}

const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;

function address(a: string): string {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(a);
  const kind = m ? isIP(m[1]) : 0;
  if (!m || kind === 0 || m[1].includes('%') || Number(m[2]) > (kind === 4 ? 32 : 128)) {
    throw new Error(`invalid interface address ${JSON.stringify(a)}: expected address/length such as 10.0.0.2/24`);
  }
  return a;
}

function dnsEntry(d: string): string {
  if (isIP(d) || HOSTNAME.test(d)) return d;
  throw new Error(`invalid DNS entry ${JSON.stringify(d)}: expected an IP address or a search domain`);
}

function endpointText(e: Endpoint | string): string {
  if (typeof e !== 'string') return formatEndpoint(e);
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^\s:[\]]+)):(\d{1,5})$/.exec(e);
  const host = m?.[1] ?? m?.[2];
  const ok = m && (m[1] ? isIP(m[1]) === 6 : isIP(host!) === 4 || HOSTNAME.test(host!)) && Number(m[3]) >= 1 && Number(m[3]) <= 65535;
  if (!ok) throw new Error(`invalid endpoint ${JSON.stringify(e)}: expected host:port or [ipv6]:port`);
  return e;
}

/** Renders the configuration as wg-quick reads it; throws on any value it could not read safely. */
export function formatWgQuick(cfg: WgQuickConfig): string {
  const out = ['[Interface]', `PrivateKey = ${key(cfg.privateKey, 'private key')}`];
  if (cfg.addresses.length > 0) out.push(`Address = ${cfg.addresses.map(address).join(', ')}`);
  if (cfg.listenPort) out.push(`ListenPort = ${intIn(cfg.listenPort, 1, 65535, 'listen port')}`);
  if (cfg.dns && cfg.dns.length > 0) out.push(`DNS = ${cfg.dns.map(dnsEntry).join(', ')}`);
  if (cfg.mtu) out.push(`MTU = ${intIn(cfg.mtu, 576, 65535, 'MTU')}`);
  for (const p of cfg.peers) {
    out.push('', '[Peer]');
    const comment = p.comment?.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim();
    if (comment) out.push(`# ${comment}`);
    out.push(`PublicKey = ${key(p.publicKey, 'peer public key')}`);
    if (p.presharedKey) out.push(`PresharedKey = ${key(p.presharedKey, 'preshared key')}`);
    if (p.allowedIps.length > 0) out.push(`AllowedIPs = ${p.allowedIps.map(formatPrefix).join(', ')}`);
    if (p.endpoint) out.push(`Endpoint = ${endpointText(p.endpoint)}`);
    if (p.persistentKeepalive) out.push(`PersistentKeepalive = ${intIn(p.persistentKeepalive, 1, 65535, 'persistent keepalive')}`);
  }
  return `${out.join('\n')}\n`;
}
