// Names: each member answers DNS on its mesh address (UDP and TCP port 53) for
// `<name>.<domain>` (A records of members, and of anything else the daemon passes in names()),
// NXDOMAIN for other names under the domain, and forwards every other query to the host's own
// resolvers (/etc/resolv.conf), so a device that uses a member as its only DNS server keeps
// resolving the rest. Packets are parsed and built with dns-packet.
//
// Exported API:
//   DEFAULT_TTL, MAX_FORWARDS
//   defaultDomain(networkName): string                `<network>.internal`
//   networkDomain(network): string                   network.domain ?? defaultDomain(network.name)
//   domainError(domain): string | null                why a --domain is not acceptable
//   answer(query: Buffer, ctx: { domain, names }): Reply
//       the pure part: { kind: 'reply', packet } (ours: A, NODATA, NXDOMAIN, FORMERR, NOTIMP,
//       REFUSED), { kind: 'forward' } (not under our domain) or { kind: 'drop' } (not a query)
//   meshSources(cidr): (source) => boolean         the mesh range and loopback: who may ask
//   servfail(query): Buffer | null                   SERVFAIL with the query's id and question
//   readResolvConf(text, skip): string[]             upstream nameservers, without `skip`
//   forwardUdp(query, upstream, timeoutMs) / forwardTcp(...): Promise<Buffer | null>
//   class NameServer {
//     constructor({ names: () => Map<name, ipv4>, domain: () => string, logger, allow?, resolvConf?, port?, upstreamPort? })
//         names: lower-case hostname labels -> IPv4, asked for at every query (members today;
//         devices are more entries in the same map)
//     listen(ip): Promise<void>     binds ip:53 (UDP and TCP); rebinds when ip changes; a failure
//                                   (port taken) is one warning, never a throw
//     close(): Promise<void>
//     readonly address: { ip, port } | null      where UDP is bound (tests use port 0)
//   }
//   systemdResolved(ifname, ip, domain, logger) / revertResolved(ifname, logger)
//       point the domain at the mesh interface where systemd-resolved runs (host-global: only in
//       the host's own network namespace)
import { createSocket, type Socket } from 'node:dgram';
import { createServer, connect, isIPv4, isIP, type Server, type Socket as TcpSocket } from 'node:net';
import { readFile, readlink, access } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import * as dns from 'dns-packet';
import type { Logger } from '../util/log.js';
import { domainError, ipToInt, meshRange } from '../discovery/records.js';

const run = promisify(execFile);

export const DEFAULT_TTL = 60;
/** Queries forwarded at once; beyond this, new ones are dropped (the client retries). */
export const MAX_FORWARDS = 256;
/** TCP connections at once; idle ones are closed after TCP_IDLE_MS. */
const MAX_TCP = 64;
const TCP_IDLE_MS = 10_000;
/** Queries one TCP connection may have waiting for their answers. */
const MAX_TCP_PENDING = 32;
const FORWARD_TIMEOUT_MS = 2_000;
/** Longest reply relayed from an upstream (and longest query read over TCP). */
const MAX_MESSAGE = 65_535;
const RESOLV_CONF = '/etc/resolv.conf';
const RESOLV_CACHE_MS = 5_000;

const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
const QR = 0x8000;
const OPCODE_MASK = 0x7800;

export { domainError };

export function defaultDomain(networkName: string): string {
  return `${networkName}.internal`;
}

/** The network's DNS domain: the one chosen at init, or `<network>.internal`. */
export function networkDomain(network: { name: string; domain?: string | undefined }): string {
  return network.domain ?? defaultDomain(network.name);
}

/** Sources in the mesh range `cidr`, or loopback: who the daemon answers. */
export function meshSources(cidr: string): (source: string) => boolean {
  const range = meshRange(cidr);
  return (source) => {
    const n = ipToInt(source);
    if (n === null) return false;
    if (n >>> 24 === 127) return true;
    if (!range) return false;
    const mask = range.bits === 0 ? 0 : (0xffffffff << (32 - range.bits)) >>> 0;
    return ((n & mask) >>> 0) === range.base;
  };
}

export type Reply = { kind: 'reply'; packet: Buffer } | { kind: 'forward' } | { kind: 'drop' };

/** A header-only reply with the query's id and opcode: for a query we could not decode. */
function headerReply(query: Buffer, rcode: number): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt16BE(query.readUInt16BE(0), 0);
  b.writeUInt16BE(QR | (query.readUInt16BE(2) & OPCODE_MASK) | rcode, 2);
  return b;
}

function normalize(name: string): string {
  return name.toLowerCase().replace(/\.$/, '');
}

/**
 * Our answer to one DNS message. Never throws: malformed input is FORMERR (when it has a header to
 * answer) or dropped; responses (QR set) are dropped so two servers never ping-pong.
 */
export function answer(query: Buffer, ctx: { domain: string; names: ReadonlyMap<string, string> }): Reply {
  if (query.length < 12 || query.length > MAX_MESSAGE) return { kind: 'drop' };
  if (query.readUInt16BE(2) & QR) return { kind: 'drop' };
  let msg: dns.DecodedPacket;
  try {
    msg = dns.decode(query);
  } catch {
    return { kind: 'reply', packet: headerReply(query, RCODE.FORMERR) };
  }
  const flags = msg.flags ?? 0;
  if ((flags & OPCODE_MASK) !== 0) return { kind: 'reply', packet: headerReply(query, RCODE.NOTIMP) };
  const questions = msg.questions ?? [];
  if (questions.length !== 1) return { kind: 'reply', packet: headerReply(query, RCODE.FORMERR) };
  const q = questions[0]!;
  const name = normalize(q.name);
  const domain = ctx.domain;
  const ours = name === domain || name.endsWith(`.${domain}`);
  if (!ours) return { kind: 'forward' };
  const reply = (rcode: number, answers: dns.Answer[] = []): Reply => ({
    kind: 'reply',
    packet: dns.encode({
      type: 'response',
      id: msg.id ?? 0,
      flags: dns.AUTHORITATIVE_ANSWER | dns.RECURSION_AVAILABLE | (flags & dns.RECURSION_DESIRED) | rcode,
      questions: [q],
      answers,
    }),
  });
  if ((q.class ?? 'IN') !== 'IN' && q.class !== 'ANY') return reply(RCODE.REFUSED);
  if (name === domain) return reply(RCODE.NOERROR); // the domain itself exists: no A record
  const label = name.slice(0, -domain.length - 1);
  const ip = label.includes('.') ? undefined : ctx.names.get(label);
  if (ip === undefined || !isIPv4(ip)) return reply(RCODE.NXDOMAIN);
  if (q.type !== 'A' && (q.type as string) !== 'ANY') return reply(RCODE.NOERROR); // NODATA
  return reply(RCODE.NOERROR, [{ type: 'A', class: 'IN', name: q.name, ttl: DEFAULT_TTL, data: ip }]);
}

/** SERVFAIL for a query we meant to forward and could not (no upstream, no answer). */
export function servfail(query: Buffer): Buffer | null {
  try {
    const msg = dns.decode(query);
    return dns.encode({
      type: 'response', id: msg.id ?? 0,
      flags: dns.RECURSION_AVAILABLE | ((msg.flags ?? 0) & dns.RECURSION_DESIRED) | RCODE.SERVFAIL,
      questions: msg.questions ?? [],
    });
  } catch {
    return null;
  }
}

/** The nameservers of a resolv.conf, in order, without the addresses in `skip` (ours: a loop). */
export function readResolvConf(text: string, skip: ReadonlySet<string>): string[] {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    if (!m) continue;
    const addr = m[1]!.replace(/%.*$/, ''); // fe80::1%eth0: the zone is not ours to use
    if (isIP(addr) === 0 || skip.has(addr) || addr === '0.0.0.0' || out.includes(addr)) continue;
    out.push(addr);
  }
  return out;
}

/** An upstream's reply to our query: same id, a response, bounded. */
function matches(query: Buffer, reply: Buffer): boolean {
  return reply.length >= 12 && reply.length <= MAX_MESSAGE && reply.readUInt16BE(0) === query.readUInt16BE(0) && (reply.readUInt16BE(2) & QR) !== 0;
}

/** Asks one upstream over UDP from a fresh socket (a random source port); null on timeout or error. */
export function forwardUdp(query: Buffer, upstream: { ip: string; port: number }, timeoutMs = FORWARD_TIMEOUT_MS): Promise<Buffer | null> {
  return new Promise((resolve) => {
    const sock = createSocket(isIPv4(upstream.ip) ? 'udp4' : 'udp6');
    const done = (r: Buffer | null) => {
      clearTimeout(timer);
      sock.close();
      resolve(r);
    };
    const timer = setTimeout(() => done(null), timeoutMs);
    sock.on('error', () => done(null));
    sock.on('message', (reply, rinfo) => {
      if (rinfo.address !== upstream.ip || rinfo.port !== upstream.port || !matches(query, reply)) return;
      done(reply);
    });
    sock.send(query, upstream.port, upstream.ip, (err) => {
      if (err) done(null);
    });
  });
}

/** Asks one upstream over TCP (for a client that asked us over TCP); null on timeout or error. */
export function forwardTcp(query: Buffer, upstream: { ip: string; port: number }, timeoutMs = FORWARD_TIMEOUT_MS): Promise<Buffer | null> {
  return new Promise((resolve) => {
    let buf = Buffer.alloc(0);
    let settled = false;
    const sock = connect({ host: upstream.ip, port: upstream.port });
    const done = (r: Buffer | null) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => done(null), timeoutMs);
    sock.on('error', () => done(null));
    sock.on('close', () => done(null));
    sock.on('connect', () => {
      const len = Buffer.alloc(2);
      len.writeUInt16BE(query.length);
      sock.write(Buffer.concat([len, query]));
    });
    sock.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (buf.length < 2) return;
      const n = buf.readUInt16BE(0);
      if (buf.length < 2 + n) return;
      const reply = buf.subarray(2, 2 + n);
      done(matches(query, reply) ? Buffer.from(reply) : null);
    });
  });
}

export interface NameServerOptions {
  /** name (a hostname label) -> IPv4 address: the members, and later devices. */
  names: () => ReadonlyMap<string, string>;
  domain: () => string;
  logger: Logger;
  /** Where the upstream resolvers are listed (tests: a file of their own). */
  resolvConf?: string;
  /**
   * Who may ask (default: anyone). The daemon allows the mesh range and loopback: the port is on a
   * mesh address, but Linux accepts packets for any local address on any link, and an open
   * resolver on the underlay would serve anyone's reflection attacks.
   */
  allow?: (source: string) => boolean;
  /** Default 53; tests bind 0 and read `address`. */
  port?: number;
  /** Port upstreams listen on (default 53; tests use a fake upstream's port). */
  upstreamPort?: number;
}

export class NameServer {
  private udp: Socket | null = null;
  private tcp: Server | null = null;
  private ip: string | null = null;
  private bound: { ip: string; port: number } | null = null;
  private inFlight = 0;
  private conns = new Set<TcpSocket>();
  private upstreamCache: { at: number; list: string[] } | null = null;
  private closed = false;
  /** Serializes listen/close: a rebind never races the previous one. */
  private chain: Promise<void> = Promise.resolve();

  constructor(private readonly opts: NameServerOptions) {}

  get address(): { ip: string; port: number } | null {
    return this.bound;
  }

  listen(ip: string): Promise<void> {
    this.chain = this.chain.then(async () => {
      if (this.closed || ip === this.ip) return;
      await this.unbind();
      this.ip = ip;
      await this.bind(ip);
    });
    return this.chain;
  }

  close(): Promise<void> {
    this.closed = true;
    this.chain = this.chain.then(() => this.unbind());
    return this.chain;
  }

  private async bind(ip: string): Promise<void> {
    const port = this.opts.port ?? 53;
    const udp = createSocket({ type: isIPv4(ip) ? 'udp4' : 'udp6' });
    try {
      await new Promise<void>((resolve, reject) => {
        udp.once('error', reject);
        udp.bind({ address: ip, port, exclusive: true }, () => {
          udp.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      udp.close();
      this.opts.logger.warn({ err: (err as Error).message, address: `${ip}:${port}` }, 'cannot answer DNS for mesh names: the port is not ours to bind (another DNS server?)');
      return;
    }
    udp.on('error', (err) => this.opts.logger.warn({ err: err.message }, 'DNS socket error'));
    udp.on('message', (msg, rinfo) => this.onUdp(udp, msg, rinfo.address, rinfo.port));
    this.udp = udp;
    this.bound = { ip, port: udp.address().port };
    // TCP on the same port (truncated answers, and clients that prefer it); optional.
    const tcp = createServer((sock) => this.onTcp(sock));
    tcp.maxConnections = MAX_TCP;
    try {
      await new Promise<void>((resolve, reject) => {
        tcp.once('error', reject);
        tcp.listen({ host: ip, port: this.bound!.port, exclusive: true }, () => {
          tcp.off('error', reject);
          resolve();
        });
      });
      tcp.on('error', (err) => this.opts.logger.warn({ err: err.message }, 'DNS TCP server error'));
      this.tcp = tcp;
    } catch (err) {
      tcp.close();
      this.opts.logger.warn({ err: (err as Error).message }, 'DNS over TCP is off: cannot bind the TCP port');
    }
    this.opts.logger.info({ address: `${ip}:${this.bound.port}`, domain: this.opts.domain() }, 'answering DNS for mesh names');
  }

  private async unbind(): Promise<void> {
    this.ip = null;
    this.bound = null;
    const udp = this.udp;
    this.udp = null;
    if (udp) await new Promise<void>((r) => udp.close(() => r()));
    for (const c of this.conns) c.destroy();
    this.conns.clear();
    const tcp = this.tcp;
    this.tcp = null;
    if (tcp) await new Promise<void>((r) => tcp.close(() => r()));
  }

  private async upstreams(): Promise<string[]> {
    const now = Date.now();
    if (this.upstreamCache && now - this.upstreamCache.at < RESOLV_CACHE_MS) return this.upstreamCache.list;
    let text = '';
    try {
      text = await readFile(this.opts.resolvConf ?? RESOLV_CONF, 'utf8');
    } catch {
      // no resolv.conf: nothing to forward to
    }
    const skip = new Set<string>(this.ip ? [this.ip] : []);
    const list = readResolvConf(text.slice(0, 65_536), skip);
    this.upstreamCache = { at: now, list };
    return list;
  }

  /** Our reply to one query: local, forwarded, or null (dropped). */
  async resolve(query: Buffer, tcp: boolean): Promise<Buffer | null> {
    let r: Reply;
    try {
      r = answer(query, { domain: this.opts.domain(), names: this.opts.names() });
    } catch {
      return null;
    }
    if (r.kind === 'reply') return r.packet;
    if (r.kind === 'drop') return null;
    if (this.inFlight >= MAX_FORWARDS) return null;
    this.inFlight++;
    try {
      const port = this.opts.upstreamPort ?? 53;
      for (const ip of await this.upstreams()) {
        const reply = tcp ? await forwardTcp(query, { ip, port }) : await forwardUdp(query, { ip, port });
        if (reply) return reply;
      }
      return servfail(query);
    } finally {
      this.inFlight--;
    }
  }

  private onUdp(sock: Socket, msg: Buffer, address: string, port: number): void {
    if (this.opts.allow && !this.opts.allow(address)) return;
    void this.resolve(msg, false).then((reply) => {
      if (!reply || this.udp !== sock) return;
      // A reply too long for UDP: the header with TC set, so the client asks again over TCP.
      const out = reply.length > MAX_MESSAGE - 28 ? truncated(reply) : reply;
      sock.send(out, port, address, () => {});
    }, () => {});
  }

  private onTcp(sock: TcpSocket): void {
    if (this.opts.allow && !this.opts.allow((sock.remoteAddress ?? '').replace(/^::ffff:/, ''))) return void sock.destroy();
    this.conns.add(sock);
    let buf = Buffer.alloc(0);
    sock.setTimeout(TCP_IDLE_MS, () => sock.destroy());
    sock.on('error', () => {});
    sock.on('close', () => this.conns.delete(sock));
    let busy = Promise.resolve();
    let pending = 0;
    sock.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (buf.length > 2 * (MAX_MESSAGE + 2)) return void sock.destroy(); // a client that floods
      while (buf.length >= 2) {
        const n = buf.readUInt16BE(0);
        if (buf.length < 2 + n) break;
        const query = Buffer.from(buf.subarray(2, 2 + n));
        buf = buf.subarray(2 + n);
        if (++pending > MAX_TCP_PENDING) return void sock.destroy(); // pipelining without reading
        busy = busy.then(async () => {
          pending--;
          const reply = await this.resolve(query, true);
          if (!reply || sock.destroyed) return;
          const len = Buffer.alloc(2);
          len.writeUInt16BE(reply.length);
          sock.write(Buffer.concat([len, reply]));
        }).catch(() => {});
      }
    });
  }
}

function truncated(reply: Buffer): Buffer {
  const b = Buffer.from(reply.subarray(0, 12));
  b.writeUInt16BE(b.readUInt16BE(2) | dns.TRUNCATED_RESPONSE, 2);
  b.fill(0, 4, 12);
  return b;
}

// ---- systemd-resolved ---------------------------------------------------------------------------

/**
 * systemd-resolved runs, and we are in the host's own network namespace (resolved lives there and
 * names links by index: from another namespace we would reconfigure some other host link).
 */
async function resolvedHere(): Promise<boolean> {
  try {
    await access('/run/systemd/resolve/io.systemd.Resolve');
    const [ours, host] = await Promise.all([readlink('/proc/self/ns/net'), readlink('/proc/1/ns/net')]);
    return ours === host;
  } catch {
    return false;
  }
}

/**
 * Where systemd-resolved runs, send the domain's queries to us on the mesh interface: `~domain` is
 * a routing-only domain, and default-route off keeps every other query away from us (we forward
 * those to the host's resolvers, perhaps 127.0.0.53 itself: that would be a loop).
 */
export async function systemdResolved(ifname: string, ip: string, domain: string, logger: Logger): Promise<boolean> {
  if (!(await resolvedHere())) return false;
  try {
    await run('resolvectl', ['dns', ifname, ip], { timeout: 5_000 });
    await run('resolvectl', ['domain', ifname, `~${domain}`], { timeout: 5_000 });
    await run('resolvectl', ['default-route', ifname, 'false'], { timeout: 5_000 }).catch(() => {});
    logger.info({ ifname, domain }, 'systemd-resolved sends the mesh domain to this member');
    return true;
  } catch (err) {
    logger.warn({ err: (err as Error).message.split('\n')[0] }, 'cannot point systemd-resolved at the mesh names (resolvectl failed)');
    return false;
  }
}

export async function revertResolved(ifname: string, logger: Logger): Promise<void> {
  if (!(await resolvedHere())) return;
  await run('resolvectl', ['revert', ifname], { timeout: 5_000 }).catch((err: Error) => logger.debug({ err: err.message }, 'resolvectl revert failed'));
}
