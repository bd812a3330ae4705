// Where others can reach this member: the UDP endpoints (WireGuard) and libp2p multiaddrs (TCP)
// that go into its record and into the invites it issues.
//
// A node cannot ask libp2p for this: its address manager holds back public listen addresses until
// something confirms them (so a server on a public address advertised only 127.0.0.1 and its mesh
// address), and identify's observed TCP address carries an ephemeral port. So the list is built
// here from what the node knows for sure:
//
//   1. announced addresses (`--announce HOST`, `--announce-udp HOST:PORT`, `--announce-tcp
//      HOST:PORT`): a floating IP, a DNS name, a port forward. The operator said so: first.
//   2. reflexive UDP endpoints: what members see of our WireGuard socket from outside (NAT).
//   3. every global interface address, then every private one (RFC 1918, CGNAT, ULA), IPv4 and
//      IPv6, with our own ports.
//
// Never: loopback (from elsewhere it is the dialler's own machine), link-local (needs a scope
// nobody else has), the mesh interface or any address inside the mesh range (it only works for
// someone already in the mesh, and leads a joiner in circles). Duplicates are dropped, order kept.
//
// Exported API:
//   interface Announce { hosts: string[]; udp: HostPort[]; tcp: HostPort[] }   parsed, not resolved
//   interface HostPort { host: string; port: number }
//   parseAnnounce({ hosts?, udp?, tcp? }: string lists): Announce    throws AddressError (one line)
//   parseHostPort(text): HostPort                                      'h:p', '[v6]:p'; AddressError
//   resolveAnnounce(a: Announce, lookup?): Promise<ResolvedAnnounce>  DNS names -> addresses (UDP)
//   advertisedEndpoints(input): string[]     canonical 'ip:port' / '[v6]:port', best first
//   advertisedMultiaddrs(input): string[]    each ending in /p2p/<peer id>, best first
//   isPublicIp(ip): boolean                  not private, loopback, link-local, multicast, reserved
//   hostPortOf(multiaddr): string            '1.2.3.4:4001' for people ('/dns/x/tcp/1' -> 'x:1')
import { isIP } from 'node:net';
import { lookup as dnsLookup } from 'node:dns/promises';
import { multiaddr } from '@multiformats/multiaddr';
import { addrFromString, formatEndpoint } from '../wg/endpoint.js';
import { isLinkLocal, type LocalAddress } from '../routes/kernel.js';
import { meshRange, ipToInt } from './records.js';

export class AddressError extends Error {
  override readonly name = 'AddressError';
}

export interface HostPort {
  host: string;
  port: number;
}

export interface Announce {
  /** Addresses or DNS names where this node is reachable on its own ports. */
  hosts: string[];
  /** Where its WireGuard port is reachable, when a forward changes the port. */
  udp: HostPort[];
  /** Where its libp2p port is reachable, likewise. */
  tcp: HostPort[];
}

/** Announced UDP endpoints with DNS names resolved (WireGuard endpoints are addresses). */
export interface ResolvedAnnounce {
  /** IP addresses only, for the UDP endpoints: `hosts` resolved, with our listen port. */
  udpHosts: string[];
  udp: HostPort[];
  /** As given (names stay names: libp2p resolves /dns/ multiaddrs when it dials). */
  hosts: string[];
  tcp: HostPort[];
}

export const NO_ANNOUNCE: Announce = { hosts: [], udp: [], tcp: [] };

// A DNS name: labels of letters, digits and '-', at least one dot or a single label.
const DNS_NAME = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*\.?$/i;

function checkHost(host: string, what: string): string {
  const h = host.trim();
  if (isIP(h) !== 0) return canonicalIp(h);
  if (DNS_NAME.test(h) && !/^\d+(\.\d+)*$/.test(h)) return h.replace(/\.$/, '').toLowerCase();
  throw new AddressError(`${what}: ${JSON.stringify(host)} is neither an IP address nor a DNS name`);
}

function canonicalIp(ip: string): string {
  return formatEndpoint({ addr: addrFromString(ip), port: 1 }).replace(/:1$/, '').replace(/^\[(.*)\]$/, '$1');
}

export function parseHostPort(text: string, what = 'address'): HostPort {
  const m = /^\[([^\]]+)\]:(\d{1,5})$/.exec(text.trim()) ?? /^([^:[\]]+):(\d{1,5})$/.exec(text.trim());
  if (!m) throw new AddressError(`${what}: ${JSON.stringify(text)} is not HOST:PORT (an IPv6 address goes in brackets: [2001:db8::1]:51820)`);
  const port = Number(m[2]);
  if (!(port >= 1 && port <= 65535)) throw new AddressError(`${what}: port ${m[2]} is not 1-65535`);
  if (m[0].startsWith('[') && isIP(m[1]) !== 6) throw new AddressError(`${what}: ${m[1]} in brackets is not an IPv6 address`);
  return { host: checkHost(m[1], what), port };
}

export function parseAnnounce(a: { hosts?: readonly string[]; udp?: readonly string[]; tcp?: readonly string[] }): Announce {
  return {
    hosts: (a.hosts ?? []).map((h) => checkHost(h, '--announce')),
    udp: (a.udp ?? []).map((t) => parseHostPort(t, '--announce-udp')),
    tcp: (a.tcp ?? []).map((t) => parseHostPort(t, '--announce-tcp')),
  };
}

type Lookup = (host: string) => Promise<string[]>;
const systemLookup: Lookup = async (host) => (await dnsLookup(host, { all: true, verbatim: true })).map((r) => r.address);

/**
 * Resolves the DNS names that must become UDP endpoints (a WireGuard endpoint is an address). A
 * name that does not resolve is left out and reported in `unresolved`; the rest still counts.
 */
export async function resolveAnnounce(a: Announce, lookup: Lookup = systemLookup): Promise<ResolvedAnnounce & { unresolved: string[] }> {
  const unresolved: string[] = [];
  const resolve = async (host: string): Promise<string[]> => {
    if (isIP(host) !== 0) return [host];
    try {
      return (await lookup(host)).map(canonicalIp);
    } catch {
      unresolved.push(host);
      return [];
    }
  };
  const udpHosts = (await Promise.all(a.hosts.map(resolve))).flat();
  const udp = (await Promise.all(a.udp.map(async (hp) => (await resolve(hp.host)).map((host) => ({ host, port: hp.port }))))).flat();
  return { udpHosts, udp, hosts: a.hosts, tcp: a.tcp, unresolved };
}

// ---- what is public ----------------------------------------------------------------------------

const V4_NOT_PUBLIC: [string, number][] = [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16],
  ['172.16.0.0', 12], ['192.0.0.0', 24], ['192.0.2.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15],
  ['198.51.100.0', 24], ['203.0.113.0', 24], ['224.0.0.0', 3],
];

function inV4(ip: string, net: string, bits: number): boolean {
  const a = ipToInt(ip);
  const b = ipToInt(net);
  if (a === null || b === null) return false;
  const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0;
  return ((a & mask) >>> 0) === ((b & mask) >>> 0);
}

/** A global unicast address: what someone on the internet could reach (if nothing filters it). */
export function isPublicIp(ip: string): boolean {
  const kind = isIP(ip);
  if (kind === 4) return !V4_NOT_PUBLIC.some(([net, bits]) => inV4(ip, net, bits));
  if (kind !== 6) return false;
  const a = addrFromString(ip);
  if (a.subarray(0, 12).equals(Buffer.from('00000000000000000000ffff', 'hex'))) return isPublicIp(`${a[12]}.${a[13]}.${a[14]}.${a[15]}`);
  // 2000::/3 is global unicast; 2001:db8::/32 is documentation.
  return (a[0] & 0xe0) === 0x20 && !(a[0] === 0x20 && a[1] === 0x01 && a[2] === 0x0d && a[3] === 0xb8);
}

// ---- what we advertise ---------------------------------------------------------------------------

export interface AdvertiseInput {
  /** This machine's interface addresses (localAddresses()), the mesh interface already left out. */
  local: readonly LocalAddress[];
  /** The mesh range, whose addresses are never advertised (null before joining). */
  meshCidr: string | null;
  udpPort: number;
  tcpPort: number;
  peerId: string;
  announce: ResolvedAnnounce;
  /** Reflexive UDP endpoints ('ip:port') that members see; after the announced ones. */
  reflexive?: readonly string[];
}

/** Interface addresses worth advertising, public ones first (stable within each group). */
function usableLocal(input: AdvertiseInput): string[] {
  const range = input.meshCidr ? meshRange(input.meshCidr) : null;
  const inMesh = (ip: string) => range !== null && isIP(ip) === 4 && inV4(ip, input.meshCidr!.split('/')[0], range.bits);
  const ips = input.local
    .filter((a) => !isLinkLocal(a) && !isLoopback(a.address) && !inMesh(a.address))
    .map((a) => canonicalIp(a.address));
  return [...ips.filter(isPublicIp), ...ips.filter((ip) => !isPublicIp(ip))];
}

function isLoopback(ip: string): boolean {
  return ip.startsWith('127.') || ip === '::1';
}

function uniq(list: string[]): string[] {
  return [...new Set(list)];
}

const endpointText = (host: string, port: number) => (isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`);

export function advertisedEndpoints(input: AdvertiseInput, max = 32): string[] {
  const a = input.announce;
  return uniq([
    ...a.udp.map((hp) => endpointText(hp.host, hp.port)),
    ...a.udpHosts.map((h) => endpointText(h, input.udpPort)),
    ...(input.reflexive ?? []),
    ...usableLocal(input).map((ip) => endpointText(ip, input.udpPort)),
  ]).slice(0, max);
}

function tcpMultiaddr(host: string, port: number, peerId: string): string {
  const proto = isIP(host) === 4 ? 'ip4' : isIP(host) === 6 ? 'ip6' : 'dns';
  return `/${proto}/${host}/tcp/${port}/p2p/${peerId}`;
}

export function advertisedMultiaddrs(input: AdvertiseInput, max = 32): string[] {
  const a = input.announce;
  return uniq([
    ...a.tcp.map((hp) => tcpMultiaddr(hp.host, hp.port, input.peerId)),
    ...a.hosts.map((h) => tcpMultiaddr(h, input.tcpPort, input.peerId)),
    ...usableLocal(input).map((ip) => tcpMultiaddr(ip, input.tcpPort, input.peerId)),
  ]).slice(0, max);
}

/** A multiaddr as people write addresses: '198.51.100.7:4001', '[2001:db8::1]:4001', 'host:4001'. */
export function hostPortOf(addr: string): string {
  try {
    const parts = multiaddr(addr).getComponents();
    const host = parts.find((c) => ['ip4', 'ip6', 'dns', 'dns4', 'dns6'].includes(c.name));
    const port = parts.find((c) => c.name === 'tcp' || c.name === 'udp');
    if (host?.value && port?.value) return host.name === 'ip6' ? `[${host.value}]:${port.value}` : `${host.value}:${port.value}`;
  } catch {
    // not a multiaddr: show it as it is
  }
  return addr;
}
