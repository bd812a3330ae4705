// In-memory hosts (src/discovery/host.ts) for tests: many members in one process, no sockets, no
// crypto handshakes, links cut and dials refused at will.
//
// A MemoryNetwork holds the hosts; a host listens at `/memory/<name>/p2p/<peer id>` (the address
// scheme of js-libp2p's memory transport) and dials another by peer id or by that address. A
// connection is what libp2p builds, from libp2p's own test parts (@libp2p/utils): a pair of
// mock multiaddr connections (multiaddrConnectionPair), a stream muxer on each end (mockMuxer),
// and multistream-select on each new stream (@libp2p/multistream-select, as libp2p's Connection
// does): a stream for a protocol the other side does not handle is refused, as over TCP. So the
// streams the protocols get are real libp2p Streams (the same length-prefixed frames, close and
// abort semantics), only the transport is a message queue.
//
// What a test can do to the network:
//   cut(a, b)        closes every connection between a and b at once (both ends see it close);
//                    either side may dial again
//   block(a, b)      refuses dials between a and b (both ways) and cuts them; unblock(a, b)
//   delayMs          each message on a link waits this long (one after another, as on a slow,
//                    loaded link): network-wide, or per host pair with setDelay(a, b, ms)
// A host's `gate` refuses peers as the real node's connection gate does (inbound and outbound).
//
// Exported API:
//   class MemoryNetwork { constructor({ delayMs? }); host(key?, { name?, gate? }): Promise<MemoryHost>;
//                         cut(a, b); block(a, b); unblock(a, b); setDelay(a, b, ms); stop() }
//   class MemoryHost implements Host { peerId; id; addrs; dials; getMultiaddrs(); stop(); ... Host }
import '../../../src/util/polyfill.js';
import { generateKeyPair } from '@libp2p/crypto/keys';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { mockMuxer, multiaddrConnectionPair } from '@libp2p/utils';
import * as mss from '@libp2p/multistream-select';
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr';
import type { AbortOptions, MultiaddrConnection, PeerId, PrivateKey, Stream, StreamMuxer } from '@libp2p/interface';
import type {
  Host, HostConnection, HostConnectionEvent, HostHandleOptions, HostStreamHandler,
} from '../../../src/discovery/host.js';

/** How long a stream may take to agree on its protocol (libp2p's default is 10 s). */
const NEGOTIATION_MS = 10_000;

let connections = 0;

const pairKey = (a: string, b: string): string => (a < b ? `${a} ${b}` : `${b} ${a}`);

export class MemoryNetwork {
  readonly #hosts = new Map<string, MemoryHost>();
  readonly #byName = new Map<string, MemoryHost>();
  readonly #blocked = new Set<string>();
  readonly #delays = new Map<string, number>();
  readonly delayMs: number;

  constructor(opts: { delayMs?: number } = {}) {
    this.delayMs = opts.delayMs ?? 0;
  }

  async host(key?: PrivateKey, opts: { name?: string; gate?: (peer: string) => boolean } = {}): Promise<MemoryHost> {
    const k = key ?? (await generateKeyPair('Ed25519'));
    const peerId = peerIdFromPrivateKey(k);
    const name = opts.name ?? `h${this.#hosts.size}`;
    if (this.#byName.has(name) || this.#hosts.has(peerId.toString())) throw new Error(`a host ${name} (${peerId.toString()}) is already on this network`);
    const h = new MemoryHost(this, peerId, name, opts.gate);
    this.#hosts.set(h.id, h);
    this.#byName.set(name, h);
    return h;
  }

  /** The host a dial target names: a peer id, or a /memory/<name> address. */
  resolve(target: PeerId | Multiaddr): MemoryHost | undefined {
    if (!isMultiaddr(target)) return this.#hosts.get(target.toString());
    const parts = target.getComponents();
    const mem = parts.find((c) => c.name === 'memory')?.value;
    const p2p = parts.filter((c) => c.name === 'p2p').at(-1)?.value;
    const h = mem !== undefined ? this.#byName.get(mem) : p2p !== undefined ? this.#hosts.get(p2p) : undefined;
    // An address naming one host's place and another's id reaches the one that is there (as TCP would).
    return h;
  }

  blocked(a: string, b: string): boolean {
    return this.#blocked.has(pairKey(a, b));
  }

  delay(a: string, b: string): number {
    return this.#delays.get(pairKey(a, b)) ?? this.delayMs;
  }

  /** Closes every connection between a and b, at both ends at once. */
  cut(a: MemoryHost, b: MemoryHost): void {
    for (const c of a.getConnections()) if (c.remotePeer.equals(b.peerId)) c.abort(new Error('link cut'));
    for (const c of b.getConnections()) if (c.remotePeer.equals(a.peerId)) c.abort(new Error('link cut'));
  }

  /** Dials between a and b fail (connection refused) until unblock; open connections are cut. */
  block(a: MemoryHost, b: MemoryHost): void {
    this.#blocked.add(pairKey(a.id, b.id));
    this.cut(a, b);
  }

  unblock(a: MemoryHost, b: MemoryHost): void {
    this.#blocked.delete(pairKey(a.id, b.id));
  }

  setDelay(a: MemoryHost, b: MemoryHost, ms: number): void {
    this.#delays.set(pairKey(a.id, b.id), ms);
  }

  forget(h: MemoryHost): void {
    this.#hosts.delete(h.id);
    this.#byName.delete(h.name);
  }

  async stop(): Promise<void> {
    await Promise.all([...this.#hosts.values()].map((h) => h.stop()));
  }
}

function isMultiaddr(t: PeerId | Multiaddr): t is Multiaddr {
  return typeof (t as Multiaddr).getComponents === 'function';
}

interface Registration {
  handler: HostStreamHandler;
  maxInboundStreams: number;
}

export class MemoryHost implements Host {
  readonly id: string;
  readonly #events = new EventTarget();
  readonly #handlers = new Map<string, Registration>();
  readonly #conns = new Set<MemoryConnection>();
  #stopped = false;
  /** Dials this host started (any outcome). */
  dials = 0;

  constructor(readonly network: MemoryNetwork, readonly peerId: PeerId, readonly name: string, readonly gate?: (peer: string) => boolean) {
    this.id = peerId.toString();
  }

  get addrs(): string[] {
    return this.getMultiaddrs().map(String);
  }

  getMultiaddrs(): Multiaddr[] {
    return [multiaddr(`/memory/${this.name}/p2p/${this.id}`)];
  }

  async handle(protocol: string, handler: HostStreamHandler, options: HostHandleOptions = {}): Promise<void> {
    if (this.#handlers.has(protocol) && options.force !== true) throw new Error(`a handler for ${protocol} is already registered`);
    this.#handlers.set(protocol, { handler, maxInboundStreams: options.maxInboundStreams ?? 32 });
  }

  async unhandle(protocol: string): Promise<void> {
    this.#handlers.delete(protocol);
  }

  protocols(): string[] {
    return [...this.#handlers.keys()];
  }

  registration(protocol: string): Registration | undefined {
    return this.#handlers.get(protocol);
  }

  getConnections(): HostConnection[] {
    return [...this.#conns];
  }

  #allows(peer: string): boolean {
    return this.gate === undefined || this.gate(peer);
  }

  async dial(target: PeerId | Multiaddr, options: AbortOptions = {}): Promise<HostConnection> {
    this.dials++;
    options.signal?.throwIfAborted();
    if (this.#stopped) throw new Error('this host is stopped');
    const remote = this.network.resolve(target);
    if (remote === undefined || remote.#stopped) throw new Error(`connect ECONNREFUSED ${target.toString()}`);
    if (remote === this) throw new Error('cannot dial self');
    if (!this.#allows(remote.id)) throw new Error(`the gate denies dialling ${remote.id}`);
    const open = [...this.#conns].find((c) => c.remotePeer.equals(remote.peerId) && c.status === 'open');
    if (open) return open;
    if (this.network.blocked(this.id, remote.id)) throw new Error(`connect ECONNREFUSED ${target.toString()}`);
    const delay = this.network.delay(this.id, remote.id);
    if (delay > 0) await new Promise((r) => setTimeout(r, delay));
    options.signal?.throwIfAborted();
    const [out, inb] = multiaddrConnectionPair({
      delay,
      capacity: 1_000_000,
      outbound: { remoteAddr: remote.getMultiaddrs()[0] },
      inbound: { remoteAddr: this.getMultiaddrs()[0] },
    });
    const id = ++connections;
    const local = new MemoryConnection(this, `mem-${id}-out`, remote.peerId, 'outbound', out);
    const far = new MemoryConnection(remote, `mem-${id}-in`, this.peerId, 'inbound', inb);
    // Both ends' gates decide once the peer is known (libp2p: after the encryption handshake).
    if (!remote.#allows(this.id)) {
      local.abort(new Error('the remote gate refused the connection'));
      far.abort(new Error('refused'));
      throw new Error('the connection was reset by the remote (its gate refused this peer)');
    }
    remote.#add(far);
    this.#add(local);
    return local;
  }

  #add(conn: MemoryConnection): void {
    this.#conns.add(conn);
    conn.onClose(() => {
      if (this.#conns.delete(conn)) this.#events.dispatchEvent(new CustomEvent('connection:close', { detail: conn }));
    });
    if (conn.status === 'open') this.#events.dispatchEvent(new CustomEvent('connection:open', { detail: conn }));
  }

  addEventListener(type: HostConnectionEvent, listener: (evt: CustomEvent<HostConnection>) => void): void {
    this.#events.addEventListener(type, listener as EventListener);
  }

  removeEventListener(type: HostConnectionEvent, listener: (evt: CustomEvent<HostConnection>) => void): void {
    this.#events.removeEventListener(type, listener as EventListener);
  }

  /** Closes every connection; dials to this host fail from now on. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#handlers.clear();
    for (const c of [...this.#conns]) c.abort(new Error('host stopped'));
    this.network.forget(this);
  }
}

/** One end of a connection: a muxer over a mock multiaddr connection, as libp2p's Connection. */
export class MemoryConnection implements HostConnection {
  readonly timeline: { open: number };
  readonly #muxer: StreamMuxer;

  constructor(
    readonly host: MemoryHost,
    readonly id: string,
    readonly remotePeer: PeerId,
    readonly direction: 'inbound' | 'outbound',
    readonly maConn: MultiaddrConnection,
  ) {
    this.timeline = { open: Date.now() };
    this.#muxer = mockMuxer().createStreamMuxer(maConn);
    this.#muxer.addEventListener('stream', (evt) => void this.#incoming(evt.detail));
  }

  get status(): HostConnection['status'] {
    return this.maConn.status;
  }

  get streams(): Stream[] {
    return this.#muxer.streams;
  }

  onClose(fn: () => void): void {
    if (this.maConn.status !== 'open') {
      queueMicrotask(fn);
      return;
    }
    this.maConn.addEventListener('close', () => fn(), { once: true });
  }

  async newStream(protocol: string, options: AbortOptions = {}): Promise<Stream> {
    if (this.status !== 'open' || this.#muxer.status !== 'open') throw new Error(`the connection is ${this.status}, not open`);
    const stream = await this.#muxer.createStream();
    try {
      stream.protocol = await mss.select(stream, [protocol], { signal: options.signal ?? AbortSignal.timeout(NEGOTIATION_MS) });
      return stream;
    } catch (err) {
      stream.abort(err as Error);
      throw err;
    }
  }

  async #incoming(stream: Stream): Promise<void> {
    try {
      stream.protocol = await mss.handle(stream, this.host.protocols(), { signal: AbortSignal.timeout(NEGOTIATION_MS) });
      const reg = this.host.registration(stream.protocol);
      if (!reg) throw new Error(`no handler for ${stream.protocol}`);
      const open = this.streams.filter((s) => s.direction === 'inbound' && s.protocol === stream.protocol).length;
      if (open > reg.maxInboundStreams) throw new Error(`too many inbound ${stream.protocol} streams (${open}/${reg.maxInboundStreams})`);
      await reg.handler(stream, this);
    } catch (err) {
      stream.abort(err as Error);
    }
  }

  async close(options: AbortOptions = {}): Promise<void> {
    const signal = options.signal ?? AbortSignal.timeout(5_000);
    try {
      await this.#muxer.close({ signal });
      await this.maConn.close({ signal });
    } catch (err) {
      this.abort(err as Error);
    }
  }

  abort(err: Error): void {
    this.#muxer.abort(err);
    this.maConn.abort(err);
  }
}
