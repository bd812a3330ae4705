// The libp2p node of a mesh member: one node per network, sealed to the network by its pnet key.
//
//   tcp -> pnet (the network's psk: a node without it cannot even finish the handshake)
//       -> noise (peer ids are Ed25519 keys: the same keys that sign ledger entries)
//       -> yamux, with identify and ping on top (ledger entries travel on our own push and sync
//          protocols, sync.ts: gossipsub would hand them to any subscriber, members or not).
//
// Discovery: bootstrap multiaddrs (an invite's, or the members' records at restart) are dialled
// at once (timeout 0; the default 1 s delay only slows the first exchange, see libp2p.md), and
// mDNS when asked (lan-discovery.ts: a query when the sync fails to reach a member, not every
// 10 s; a peer it finds is dialled if `mdnsWanted` says so). The connections themselves come
// from the members' records, not from discovery: every member's record carries its multiaddrs
// (sync.ts).
//
// Idle cost: the connection monitor pings each connection every 30 s (libp2p's default is 10 s;
// a dead connection is still closed within a minute), and yamux's own keepalive is off (the
// monitor's pings keep the connection active).
//
// mDNS caveat for the daemon: in a network namespace, or on a host whose only route is a
// default route through another interface, multicast needs a route (`ip route add 224.0.0.0/4
// dev IF`); without it every mDNS send fails with ENETUNREACH and libp2p swallows the error, so
// discovery silently finds nobody. The mDNS service tag is derived from the psk, so nodes of
// other meshd networks on the same LAN do not answer (a dial to them would fail at pnet anyway).
//
// The connection gater asks `gate.allow(peerId)` once a connection is encrypted (inbound and
// outbound: that is the first point where the remote peer id is proven) and before dialling a
// peer: the daemon denies revoked members there.
//
// This file also holds the small wire helper the stream protocols share (JSON frames over
// length-prefixed streams), because it is a property of how we use libp2p streams, not of
// either protocol.
//
// Exported API:
//   interface ConnectionGate { allow(peerId: string): boolean }
//   interface MeshNodeOptions { privateKey, psk, listen, bootstrap?, mdns?, mdnsWanted?, gate, logger?,
//                               announce?, connectionMonitor? }
//   interface MeshServices { identify, ping, lan? };  type MeshNode = Libp2p<MeshServices>
//   createMeshNode(opts: MeshNodeOptions): Promise<MeshNode>     started, listeners attached
//   swarmKey(pskHex: string): Uint8Array                         the pnet key file bytes
//   mdnsServiceTag(pskHex: string): string
//   peerOf(multiaddr: string): string | null                     the /p2p/ peer id it ends with
//   isLoopbackAddr(multiaddr: string): boolean;  dialOrder(addrs): addrs, loopback last
//   class FrameStream { bytesRead; read(signal?): Promise<unknown>; write(value, signal?);
//                       writeMany(values, signal?); close(signal?); abort(err) }
//   class FrameError extends Error
import '../util/polyfill.js';
import { createHash } from 'node:crypto';
import { createLibp2p, type Libp2p, type Libp2pOptions } from 'libp2p';
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id';
import { tcp } from '@libp2p/tcp';
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import { identify, type Identify } from '@libp2p/identify';
import { ping, type Ping } from '@libp2p/ping';
import { bootstrap as bootstrapDiscovery } from '@libp2p/bootstrap';
import { lanDiscovery, type LanDiscovery } from './lan-discovery.js';
import { preSharedKey } from '@libp2p/pnet';
import { lpStream, type LengthPrefixedStream } from '@libp2p/utils';
import { multiaddr } from '@multiformats/multiaddr';
import type { AbortOptions, PeerId, PrivateKey, Stream } from '@libp2p/interface';
import { listenError } from './listen-error.js';
import { noopLogger, type Logger } from '../util/log.js';

export interface ConnectionGate {
  /** false: refuse (and never dial) this peer. Called often; keep it cheap and synchronous. */
  allow(peerId: string): boolean;
}

export interface MeshNodeOptions {
  /** The node's Ed25519 identity (the same key signs its ledger entries). */
  privateKey: PrivateKey;
  /** The network's pnet key: 64 hex characters (NetworkInfo.psk). */
  psk: string;
  /** Listen multiaddrs, e.g. ['/ip4/0.0.0.0/tcp/4001']. */
  listen: string[];
  /** Multiaddrs ending in /p2p/<peer id>, dialled at start. Our own peer id is skipped. */
  bootstrap?: string[];
  /** Discover members on the LAN by mDNS, when asked (see the multicast route caveat above). */
  mdns?: boolean;
  /** Whether a peer mDNS found is dialled (default: every peer the gate allows). */
  mdnsWanted?: (peerId: string) => boolean;
  gate: ConnectionGate;
  logger?: Logger;
  /** Multiaddrs to advertise instead of the listen addresses (port forwards, public addresses). */
  announce?: string[];
  /**
   * libp2p's connection monitor: it pings every connection every 30 s and aborts one whose ping
   * takes longer than an adaptive timeout (5 s at least). Default libp2p's; tests on a loaded
   * machine set a generous timeout (a starved test process would otherwise lose its connections).
   */
  connectionMonitor?: Libp2pOptions['connectionMonitor'];
}

// A type literal, not an interface: libp2p's ServiceMap needs an implicit index signature.
export type MeshServices = {
  identify: Identify;
  ping: Ping;
  /** Only with the mdns option. */
  lan?: LanDiscovery;
};

/**
 * How often the connection monitor pings each connection (libp2p's default: 10 s). Each ping is a
 * new stream both ends negotiate and record in their peer stores: at 30 s it was half of an idle
 * member's CPU (issue 11). A link gone dark is found sooner by what uses it: a push or a sync that
 * times out closes its connection (sync.ts), and anti-entropy syncs a connection every 60 s.
 */
const CONNECTION_PING_MS = 120_000;

/**
 * How long libp2p gives a dial (all of a peer's addresses), one address, and an inbound
 * connection's upgrade (pnet, Noise, yamux). Its defaults (10 s, 6 s, 10 s) are for a machine
 * that is not busy: in a join storm on a loaded machine (50 daemons on 2 cores) a member's
 * answer to a joiner's Noise handshake came after they had run out, and the join failed with the
 * member alive and willing. Whoever needs less sets its own deadline (sync.ts, join.ts).
 */
const DIAL_TIMEOUT_MS = 20_000;
const ADDRESS_DIAL_TIMEOUT_MS = 15_000;
const INBOUND_UPGRADE_TIMEOUT_MS = 20_000;

export type MeshNode = Libp2p<MeshServices>;

const PSK_RE = /^[0-9a-f]{64}$/;

/** The swarm key file format @libp2p/pnet reads: `/key/swarm/psk/1.0.0/\n/base16/\n<hex>`. */
export function swarmKey(pskHex: string): Uint8Array {
  if (!PSK_RE.test(pskHex)) throw new TypeError('the pnet key must be 64 lower-case hex characters');
  return new TextEncoder().encode(`/key/swarm/psk/1.0.0/\n/base16/\n${pskHex}`);
}

/** A per-network mDNS tag that does not reveal the psk (a hash of it, truncated). */
export function mdnsServiceTag(pskHex: string): string {
  const h = createHash('sha256').update(`meshd mdns ${pskHex}`).digest('hex').slice(0, 16);
  return `_meshd-${h}._udp.local`;
}

function safeAllow(gate: ConnectionGate, peer: PeerId, log: Logger): boolean {
  try {
    return gate.allow(peer.toString());
  } catch (err) {
    // A gate that throws is a bug; refusing is the safe answer for a membership check.
    log.error({ err: (err as Error).message, peer: peer.toString() }, 'connection gate threw; refusing');
    return false;
  }
}

/** The peer id a multiaddr ends with, or null. */
export function peerOf(addr: string): string | null {
  try {
    const p2p = multiaddr(addr).getComponents().filter((c) => c.name === 'p2p');
    return p2p[p2p.length - 1]?.value ?? null;
  } catch {
    return null;
  }
}

/**
 * True for /ip4/127.x and /ip6/::1 addresses. A record or an invite made from getMultiaddrs() on a
 * 0.0.0.0 listener lists the loopback address too; from another host that address reaches the
 * dialler's own machine (often its own node, on the same port), so it is tried last.
 */
export function isLoopbackAddr(addr: string): boolean {
  try {
    const ip = multiaddr(addr).getComponents().find((c) => c.name === 'ip4' || c.name === 'ip6');
    return ip !== undefined && (ip.value?.startsWith('127.') === true || ip.value === '::1');
  } catch {
    return false;
  }
}

/** Addresses in the order to try them: routable ones first, loopback last. */
export function dialOrder<T extends string>(addrs: readonly T[]): T[] {
  return [...addrs.filter((a) => !isLoopbackAddr(a)), ...addrs.filter((a) => isLoopbackAddr(a))];
}

export async function createMeshNode(opts: MeshNodeOptions): Promise<MeshNode> {
  const log = opts.logger ?? noopLogger;
  const psk = swarmKey(opts.psk);
  const self = peerIdFromPrivateKey(opts.privateKey).toString();
  // Dialling ourselves is an error in libp2p; an invite made by this node lists this node.
  const bootstrap = (opts.bootstrap ?? []).filter((a) => {
    const p = peerOf(a);
    if (p === null) log.warn({ addr: a }, 'ignoring a bootstrap address without /p2p/<peer id>');
    return p !== null && p !== self;
  });

  const peerDiscovery: NonNullable<Libp2pOptions['peerDiscovery']> = [];
  // @libp2p/bootstrap throws on an empty list, so it is only configured when there is one.
  if (bootstrap.length > 0) peerDiscovery.push(bootstrapDiscovery({ list: bootstrap, timeout: 0 }));
  const gate = opts.gate;
  const services = {
    identify: identify(),
    ping: ping(),
    ...(opts.mdns ? { lan: lanDiscovery({ serviceTag: mdnsServiceTag(opts.psk), wanted: (id) => id !== self && safeAllow(gate, peerIdFromString(id), log) && (opts.mdnsWanted?.(id) ?? true) }) } : {}),
  };
  const node = await createLibp2p({
    start: false, // events during start would be missed otherwise (libp2p.md)
    privateKey: opts.privateKey,
    addresses: { listen: opts.listen, ...(opts.announce ? { announce: opts.announce } : {}) },
    transports: [tcp()],
    connectionProtector: preSharedKey({ psk }),
    connectionEncrypters: [noise()],
    streamMuxers: [yamux({ enableKeepAlive: false })],
    connectionMonitor: { pingInterval: CONNECTION_PING_MS, ...opts.connectionMonitor },
    connectionManager: { dialTimeout: DIAL_TIMEOUT_MS, addressDialTimeout: ADDRESS_DIAL_TIMEOUT_MS, inboundUpgradeTimeout: INBOUND_UPGRADE_TIMEOUT_MS },
    peerDiscovery,
    connectionGater: {
      denyDialPeer: (peer) => !safeAllow(gate, peer, log),
      denyInboundEncryptedConnection: (peer) => !safeAllow(gate, peer, log),
      denyOutboundEncryptedConnection: (peer) => !safeAllow(gate, peer, log),
    },
    services,
  }) as MeshNode;

  // A peer mDNS found and we want: its LAN addresses are in the peer store now.
  const lan = node.services.lan;
  if (lan) {
    lan.onPeer = (peer) => {
      const id = peer.toString();
      if (node.getConnections(peer).length > 0) return;
      node.dial(peer).then(
        () => log.info({ peer: id }, 'connected to a member found on the LAN'),
        (err: Error) => log.debug({ peer: id, err: err.message }, 'cannot dial a peer found on the LAN'),
      );
    };
  }
  node.addEventListener('peer:connect', (evt) => log.debug({ peer: evt.detail.toString() }, 'peer connected'));
  node.addEventListener('peer:disconnect', (evt) => log.debug({ peer: evt.detail.toString() }, 'peer disconnected'));

  try {
    await node.start();
  } catch (err) {
    // Nothing half-started stays behind (listeners that did open, mDNS, discovery).
    await Promise.resolve(node.stop()).catch(() => {});
    throw listenError(err);
  }
  log.info({ peerId: self, addrs: node.getMultiaddrs().map(String), bootstrap: bootstrap.length, mdns: opts.mdns === true }, 'libp2p node started');
  return node;
}


// ---- JSON frames --------------------------------------------------------------------------------

export class FrameError extends Error {
  override readonly name = 'FrameError';
}

/**
 * JSON values as length-prefixed frames on a libp2p stream. Frames are bounded (a varint length
 * larger than maxFrameBytes fails before anything is buffered), and a frame that is not JSON is a
 * FrameError: a peer can make us drop the stream, never throw anything else.
 */
export class FrameStream {
  readonly #lp: LengthPrefixedStream<Stream>;
  /** Payload bytes read so far (for per-exchange budgets). */
  bytesRead = 0;

  /** maxFrameBytes bounds what we read; maxWriteBytes (default the same) what we write. */
  constructor(readonly stream: Stream, readonly maxFrameBytes: number, readonly maxWriteBytes = maxFrameBytes) {
    this.#lp = lpStream(stream, { maxDataLength: maxFrameBytes });
  }

  async read(signal?: AbortSignal): Promise<unknown> {
    let buf;
    try {
      buf = await this.#lp.read(signal ? { signal } : undefined);
    } catch (err) {
      if (signal?.aborted) throw new FrameError('timed out waiting for the peer');
      throw new FrameError(`cannot read a frame: ${(err as Error).message}`);
    }
    this.bytesRead += buf.byteLength;
    try {
      return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(buf.subarray()));
    } catch {
      throw new FrameError('frame is not JSON');
    }
  }

  async write(value: unknown, signal?: AbortSignal): Promise<void> {
    const bytes = new TextEncoder().encode(JSON.stringify(value));
    if (bytes.length > this.maxWriteBytes) throw new FrameError(`frame of ${bytes.length} bytes exceeds ${this.maxWriteBytes}`);
    const options: AbortOptions | undefined = signal ? { signal } : undefined;
    await this.#lp.write(bytes, options);
  }

  /** Several values in one write (one syscall-ish), each its own frame. */
  async writeMany(values: readonly unknown[], signal?: AbortSignal): Promise<void> {
    if (values.length === 0) return;
    const frames = values.map((v) => new TextEncoder().encode(JSON.stringify(v)));
    for (const f of frames) if (f.length > this.maxWriteBytes) throw new FrameError(`frame of ${f.length} bytes exceeds ${this.maxWriteBytes}`);
    await this.#lp.writeV(frames, signal ? { signal } : undefined);
  }

  /**
   * Graceful: flushes what was written, then closes our writing half. A close that fails aborts
   * the stream; one cut short by `signal` (a connection gone dark never acknowledges) also throws.
   */
  async close(signal?: AbortSignal): Promise<void> {
    try {
      await this.stream.close(signal ? { signal } : undefined);
    } catch {
      this.stream.abort(new Error('close failed'));
      if (signal?.aborted) throw new FrameError('timed out closing the stream');
    }
  }

  abort(err: Error): void {
    this.stream.abort(err);
  }
}
