// The path layer: what lives beneath the WireGuard device on its UDP socket, as Tailscale's
// magicsock does. The engine takes its Bind from outside (EngineOptions.bind); the daemon hands it
// `paths.bindFactory(openBind)`, so every socket the engine opens (and reopens on a new listen
// port) is wrapped in a PathBind that shares this one Paths object.
//
// Receive: each datagram is told apart by its first bytes. WireGuard's four message types go to
// the device untouched; STUN (the magic cookie at offset 4) is taken out of the batch (its length
// set to -1, which the device skips) and handled here:
//   - a Binding request is answered with the address and port it came from (XOR-MAPPED-ADDRESS),
//     so every member is a STUN server for the others on its WireGuard port. Answers are capped by
//     a token bucket (a reply is 12 bytes longer than the request: no useful amplification);
//   - a Binding success response completes one of our own requests only if its transaction id is
//     one we sent and it comes from the address we sent it to; anything else is counted and
//     dropped. Nothing a stranger sends changes where WireGuard sends: a response only tells the
//     daemon which endpoint to advertise.
// Send: batches go to the current socket as they are (relayed paths will be added here).
//
// Exported API:
//   interface PathStats { stunRequests, stunAnswered, stunRateLimited, stunResponses, stunUnmatched, stunMalformed }
//   class Paths {
//     constructor(opts?: { logger?, stunRate? (answers/s, default 50), now?: () => number })
//     readonly stats: PathStats
//     bindFactory(inner: BindFactory): BindFactory     wraps every socket the engine opens
//     stun(to: Endpoint, timeoutMs?): Promise<Endpoint | null>   our address as `to` sees it
//                                                     (from the WireGuard socket); null: no answer
//     close(): void                                    pending requests resolve null
//   }
import { randomBytes } from 'node:crypto';
import { PacketBatch } from '../wg/batch.js';
import type { Bind, BindFactory } from '../wg/bind.js';
import { endpointEquals, formatEndpoint, type Endpoint } from '../wg/endpoint.js';
import { messageType } from '../wg/messages.js';
import { BINDING_REQUEST, BINDING_SUCCESS, STUN_MAGIC, TXID_BYTES, isStun, parseStun, writeBindingRequest, writeBindingSuccess } from './stun.js';
import { noopLogger, type MeshLogger } from './p2p.js';

export interface PathStats {
  stunRequests: number;
  stunAnswered: number;
  stunRateLimited: number;
  stunResponses: number;
  stunUnmatched: number;
  stunMalformed: number;
}

interface Pending {
  to: Endpoint;
  resolve: (mapped: Endpoint | null) => void;
  timer: NodeJS.Timeout;
}

export interface PathsOptions {
  logger?: MeshLogger;
  /** STUN answers per second, and the burst (default 50). */
  stunRate?: number;
  now?: () => number;
}

export class Paths {
  readonly stats: PathStats = { stunRequests: 0, stunAnswered: 0, stunRateLimited: 0, stunResponses: 0, stunUnmatched: 0, stunMalformed: 0 };
  private current: PathBind | null = null;
  private readonly pending = new Map<string, Pending>();
  private readonly out = new PacketBatch(1);
  private readonly log: MeshLogger;
  private readonly now: () => number;
  private readonly stunRate: number;
  private tokens: number;
  private refilled: number;

  constructor(opts: PathsOptions = {}) {
    this.log = opts.logger ?? noopLogger;
    this.now = opts.now ?? (() => performance.now());
    this.stunRate = opts.stunRate ?? 50;
    this.tokens = this.stunRate;
    this.refilled = this.now();
  }

  bindFactory(inner: BindFactory): BindFactory {
    return async (port) => new PathBind(this, await inner(port));
  }

  /** The socket the engine uses now: the last one it started. */
  attach(bind: PathBind): void {
    this.current = bind;
  }

  detach(bind: PathBind): void {
    if (this.current === bind) this.current = null;
  }

  /** Takes STUN out of a received batch; WireGuard's messages stay. Per slot: a few byte reads. */
  demux(batch: PacketBatch): void {
    const data = batch.data;
    for (let i = 0; i < batch.count; i++) {
      const len = batch.length[i];
      if (len < 20) continue;
      const at = batch.slot(i) + batch.offset[i];
      if (messageType(data, at, len) !== 0) continue; // WireGuard: the common case, first
      if (data.readUInt32BE(at + 4) !== STUN_MAGIC) continue; // neither: the device counts it malformed
      batch.length[i] = -1;
      if (!isStun(data, at, len)) { this.stats.stunMalformed++; continue; }
      this.onStun(batch, i, at, len);
    }
  }

  private onStun(batch: PacketBatch, i: number, at: number, len: number): void {
    const type = batch.data.readUInt16BE(at);
    if (type === BINDING_REQUEST) {
      this.stats.stunRequests++;
      if (!this.takeToken()) { this.stats.stunRateLimited++; return; }
      const txid = batch.data.subarray(at + 8, at + 8 + TXID_BYTES);
      const o = this.out;
      o.length[0] = writeBindingSuccess(o.data, 0, txid, batch.addr, i * 16, batch.port[i]);
      o.offset[0] = 0;
      o.addr.set(batch.addr.subarray(i * 16, i * 16 + 16), 0);
      o.port[0] = batch.port[i];
      o.count = 1;
      this.current?.sendRaw(o);
      this.stats.stunAnswered++;
      return;
    }
    if (type !== BINDING_SUCCESS) { this.stats.stunUnmatched++; return; }
    this.stats.stunResponses++;
    const msg = parseStun(batch.data, at, len);
    const key = batch.data.toString('hex', at + 8, at + 8 + TXID_BYTES);
    const p = this.pending.get(key);
    if (!msg || !msg.mapped || !p || !endpointEquals(p.to, batch.addr, i * 16, batch.port[i])) {
      this.stats.stunUnmatched++;
      return;
    }
    this.pending.delete(key);
    clearTimeout(p.timer);
    p.resolve({ addr: msg.mapped.addr, port: msg.mapped.port });
  }

  private takeToken(): boolean {
    const now = this.now();
    this.tokens = Math.min(this.stunRate, this.tokens + ((now - this.refilled) / 1000) * this.stunRate);
    this.refilled = now;
    if (this.tokens < 1) return false;
    this.tokens--;
    return true;
  }

  /** Sends one Binding request to `to` from the WireGuard socket; our endpoint as `to` sees it. */
  stun(to: Endpoint, timeoutMs = 2000): Promise<Endpoint | null> {
    const bind = this.current;
    if (bind === null) return Promise.resolve(null);
    const txid = randomBytes(TXID_BYTES);
    const o = this.out;
    o.length[0] = writeBindingRequest(o.data, 0, txid);
    o.offset[0] = 0;
    o.addr.set(to.addr, 0);
    o.port[0] = to.port;
    o.count = 1;
    return new Promise((resolve) => {
      const key = txid.toString('hex');
      const timer = setTimeout(() => {
        this.pending.delete(key);
        resolve(null);
      }, timeoutMs);
      this.pending.set(key, { to: { addr: Buffer.from(to.addr), port: to.port }, resolve, timer });
      bind.sendRaw(o);
      this.log.debug({ to: formatEndpoint(to) }, 'STUN request sent');
    });
  }

  close(): void {
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.resolve(null);
    }
    this.pending.clear();
    this.current = null;
  }
}

/** One socket the engine opened, seen through the path layer. */
export class PathBind implements Bind {
  constructor(private readonly paths: Paths, private readonly inner: Bind) {}

  get port(): number {
    return this.inner.port;
  }

  start(onBatch: (batch: PacketBatch) => void): void {
    this.paths.attach(this);
    this.inner.start((b) => {
      this.paths.demux(b);
      onBatch(b);
    });
  }

  send(batch: PacketBatch): void {
    this.inner.send(batch);
  }

  /** Datagrams of the path layer itself (STUN), straight to the socket. */
  sendRaw(batch: PacketBatch): void {
    this.inner.send(batch);
  }

  setMark(mark: number): void {
    if (!this.inner.setMark) throw Object.assign(new Error('fwmark needs the native data path'), { errno: 95 });
    this.inner.setMark(mark);
  }

  close(): void {
    this.paths.detach(this);
    this.inner.close();
  }
}
