// The path layer: what lives beneath the WireGuard device on its UDP socket, as Tailscale's
// magicsock does. The engine takes its Bind from outside (EngineOptions.bind); the daemon hands it
// `paths.bindFactory(openBind)`, so every socket the engine opens (and reopens on a new listen
// port) is wrapped in a PathBind that shares this one Paths object.
//
// Receive: each datagram is told apart by its first bytes. WireGuard's four message types go to
// the device untouched (checked first: the common case costs a few byte reads). The rest is
// taken out of the batch (length -1, which the device skips) and handled here:
//   - STUN (the magic cookie 0x2112A442 at offset 4; stun.ts): a Binding request is answered with
//     the address and port it came from, so every member is a STUN server for the others on its
//     WireGuard port, capped by a token bucket (a reply is 12 bytes longer than the request: no
//     useful amplification). A Binding success response completes one of our own requests only if
//     its transaction id is one we sent and it comes from where we sent it.
//   - path probes and their answers ('mPRB', 'mPNG'; probe.ts): authenticated between two
//     members; a probe is answered, an answer completes one of our probes.
//   - relayed datagrams ('mRLY'; relay.ts): for us, the WireGuard datagram inside goes on to the
//     device as if it came from a virtual endpoint (below); for another member, we forward it if
//     we relay and the rules of relay.ts allow it.
// Streams (stream-link.ts): for a member whose UDP is blocked, relay frames travel on a libp2p
// stream instead. A relay reached by stream is used by stream; a frame that arrives on a stream
// is delivered or forwarded as one from UDP would be, the stream's peer standing in for its
// source address. A virtual endpoint whose peer is the relay itself means "to that member, over
// its stream": WireGuard over TCP.
//
// Nothing a stranger sends changes where WireGuard sends: answers only inform the daemon, which
// decides paths; a relayed datagram reaches the device, which authenticates it like any other.
//
// Virtual endpoints: a peer reached through a relay has, as its WireGuard endpoint, an address in
// fd7a:6d65:7368::/48 ("\xfdzmesh") that names the relay (a slot number) and the peer (its id):
//   fd7a:6d65:7368:SSSS:IIII:IIII:IIII:IIII, port 1
// The device compares and roams it like any endpoint; send() wraps each datagram for such an
// endpoint in a relay header and sends it to the relay's own endpoint (a copy into a batch of its
// own: the direct datagrams of the same batch go out untouched). `wg show` prints it as
// [fd7a:6d65:7368:1:...]:1.
//
// Exported API:
//   interface PathStats { stun*, probe*, relay* counters }
//   class Paths {
//     constructor(opts?: { logger?, stunRate?, now?, endpointOf?(hex): Endpoint | null, relay? })
//     readonly stats: PathStats; readonly allocations: Allocations; relay: boolean
//     bindFactory(inner: BindFactory): BindFactory     wraps every socket the engine opens
//     setIdentity(privateKey | null); setMembers(publicKeys)   who we are, who may use paths
//     stun(to, timeoutMs?): Promise<Endpoint | null>   our address as `to` sees it
//     probe(peerHex, to, timeoutMs?): Promise<{ from: Endpoint; rttMs } | null>
//     onProbe: ((peerHex, from) => void) | null          a member probed us (punch back)
//     virtualEndpoint(relayHex, peerHex): Endpoint | null;  isVirtual(e); relayOf(e): relay hex | null
//     attach(hex, link) / detach(hex, link) / hasStream(hex) / receive(hex, frame)   stream links
//     close(): void                                    pending requests resolve null
//   }
import { randomBytes, type KeyObject } from 'node:crypto';
import { BATCH_SIZE, PacketBatch, SLOT_SIZE } from '../wg/batch.js';
import type { Bind, BindFactory } from '../wg/bind.js';
import { staticKey } from '../wg/crypto.js';
import { endpointEquals, formatEndpoint, type Endpoint } from '../wg/endpoint.js';
import { messageType } from '../wg/messages.js';
import { ID_BYTES, PONG_MAGIC, PROBE_BYTES, PROBE_MAGIC, checkProbe, pairKey, writeProbe } from './probe.js';
import { Allocations, RELAY_HEADER, RELAY_MAGIC, idNumber } from './relay.js';
import { BINDING_REQUEST, BINDING_SUCCESS, STUN_MAGIC, TXID_BYTES, isStun, parseStun, writeBindingRequest, writeBindingSuccess } from './stun.js';
import { noopLogger, type Logger } from '../util/log.js';

export interface PathStats {
  stunRequests: number;
  stunAnswered: number;
  stunRateLimited: number;
  stunResponses: number;
  stunUnmatched: number;
  stunMalformed: number;
  probesSent: number;
  probesAnswered: number;
  pongs: number;
  /** Probes and answers that fail authentication, name no member, or answer nothing we sent. */
  probesRefused: number;
  /** Datagrams we sent through a relay, and relayed datagrams delivered to us. */
  relaySent: number;
  relayDelivered: number;
  /** Datagrams we forwarded as a relay, and those we refused (see relay.ts), by reason. */
  relayForwarded: number;
  relayRefused: number;
  relayNoAllocation: number;
  relayRateLimited: number;
  /** Datagrams for a relay we have no endpoint for. */
  relayNoEndpoint: number;
}

interface Member {
  key: Buffer;
  hex: string;
  num: number;
  pair: Buffer | null | undefined; // undefined: not derived yet
}

interface PendingProbe {
  peer: string;
  sentAt: number;
  resolve: (r: { from: Endpoint; rttMs: number } | null) => void;
  timer: NodeJS.Timeout;
}

/** fd7a:6d65:7368::/48 */
const VIRTUAL_PREFIX = Buffer.from('fd7a6d657368', 'hex');
const VIRTUAL_PORT = 1;

function isVirtualAt(addr: Uint8Array, at: number): boolean {
  return addr[at] === 0xfd && addr[at + 1] === 0x7a && addr[at + 2] === 0x6d && addr[at + 3] === 0x65 && addr[at + 4] === 0x73 && addr[at + 5] === 0x68;
}

interface Pending {
  to: Endpoint;
  resolve: (mapped: Endpoint | null) => void;
  timer: NodeJS.Timeout;
}

export interface PathsOptions {
  logger?: Logger;
  /** STUN answers per second, and the burst (default 50). */
  stunRate?: number;
  now?: () => number;
  /** Where WireGuard reaches a member now (its peer's endpoint in the device), by key in hex. */
  endpointOf?: (hex: string) => Endpoint | null;
  /** Forward other members' datagrams (default true). */
  relay?: boolean;
}

export class Paths {
  readonly stats: PathStats = {
    stunRequests: 0, stunAnswered: 0, stunRateLimited: 0, stunResponses: 0, stunUnmatched: 0, stunMalformed: 0,
    probesSent: 0, probesAnswered: 0, pongs: 0, probesRefused: 0,
    relaySent: 0, relayDelivered: 0, relayForwarded: 0, relayRefused: 0, relayNoAllocation: 0, relayRateLimited: 0, relayNoEndpoint: 0,
  };
  readonly allocations: Allocations;
  relay: boolean;
  onProbe: ((peerHex: string, from: Endpoint) => void) | null = null;
  private current: PathBind | null = null;
  private readonly pending = new Map<string, Pending>();
  private readonly probes = new Map<string, PendingProbe>();
  private readonly out = new PacketBatch(1);
  /** Datagrams forwarded as a relay, sent once per received batch. */
  private readonly fwd = new PacketBatch(BATCH_SIZE);
  /** Our datagrams wrapped for relays, sent once per sent batch. */
  private readonly wrapped = new PacketBatch(BATCH_SIZE);
  private readonly skipped = new Uint8Array(BATCH_SIZE);
  private readonly endpointOf: (hex: string) => Endpoint | null;
  private identity: KeyObject | null = null;
  private ownId = Buffer.alloc(ID_BYTES);
  private ownNum = -1;
  private byNum = new Map<number, Member>();
  private byHex = new Map<string, Member>();
  /** Relays in use, by slot: the member's key in hex. */
  private readonly relaySlots: string[] = [];
  /** Members we have a WireGuard stream with (stream-link.ts), by key in hex. */
  private readonly streams = new Map<string, { write(frame: Uint8Array): void }>();
  /** One datagram from a stream, on its way to the device. */
  private readonly fromStream = new PacketBatch(1);
  private readonly log: Logger;
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
    this.endpointOf = opts.endpointOf ?? (() => null);
    this.relay = opts.relay ?? true;
    this.allocations = new Allocations({ now: this.now });
  }

  /** Our WireGuard private key: our id, and the key probes are authenticated with. */
  setIdentity(privateKey: Buffer | null): void {
    const k = privateKey ? staticKey(privateKey) : null;
    this.identity = k?.keyObject ?? null;
    this.ownId = k ? Buffer.from(k.publicKey.subarray(0, ID_BYTES)) : Buffer.alloc(ID_BYTES);
    this.ownNum = k ? idNumber(k.publicKey, 0) : -1;
    for (const m of this.byHex.values()) m.pair = undefined;
  }

  /** The members (WireGuard public keys): only they may probe us or use us as a relay. */
  setMembers(publicKeys: readonly Buffer[]): void {
    const byNum = new Map<number, Member>();
    const byHex = new Map<string, Member>();
    for (const key of publicKeys) {
      const hex = key.toString('hex');
      const m = this.byHex.get(hex) ?? { key: Buffer.from(key), hex, num: idNumber(key, 0), pair: undefined };
      byNum.set(m.num, m);
      byHex.set(hex, m);
    }
    this.byNum = byNum;
    this.byHex = byHex;
  }

  private pairOf(m: Member): Buffer | null {
    if (m.pair === undefined) m.pair = this.identity ? pairKey(this.identity, m.key) : null;
    return m.pair;
  }

  /** The endpoint WireGuard uses to reach `peerHex` through the relay `relayHex`. */
  virtualEndpoint(relayHex: string, peerHex: string): Endpoint | null {
    const peer = this.byHex.get(peerHex);
    if (!peer || !this.byHex.has(relayHex)) return null;
    let slot = this.relaySlots.indexOf(relayHex);
    if (slot < 0) slot = this.relaySlots.push(relayHex) - 1;
    const addr = Buffer.alloc(16);
    VIRTUAL_PREFIX.copy(addr, 0);
    addr.writeUInt16BE(slot, 6);
    peer.key.copy(addr, 8, 0, ID_BYTES);
    return { addr, port: VIRTUAL_PORT };
  }

  isVirtual(e: Endpoint): boolean {
    return isVirtualAt(e.addr, 0);
  }

  /** The relay (key in hex) a virtual endpoint goes through, or null. */
  relayOf(e: Endpoint): string | null {
    return isVirtualAt(e.addr, 0) ? (this.relaySlots[e.addr.readUInt16BE(6)] ?? null) : null;
  }

  // ---- streams ---------------------------------------------------------------------------------

  attach(hex: string, link: { write(frame: Uint8Array): void }): void {
    this.streams.set(hex, link);
  }

  detach(hex: string, link: { write(frame: Uint8Array): void }): void {
    if (this.streams.get(hex) === link) this.streams.delete(hex);
  }

  hasStream(hex: string): boolean {
    return this.streams.has(hex);
  }

  /** A relay frame that arrived on the stream of member `hex`. */
  receive(hex: string, frame: Buffer): void {
    const via = this.byHex.get(hex);
    const len = frame.length;
    if (!via || len < RELAY_HEADER + 32 || frame.readUInt32BE(0) !== RELAY_MAGIC) { this.stats.relayRefused++; return; }
    const src = this.byNum.get(idNumber(frame, 4));
    const dstNum = idNumber(frame, 12);
    if (!src) { this.stats.relayRefused++; return; }
    if (dstNum === this.ownNum) {
      const b = this.fromStream;
      frame.copy(b.data, 0, RELAY_HEADER, len);
      b.offset[0] = 0;
      b.length[0] = len - RELAY_HEADER;
      b.addr.set(VIRTUAL_PREFIX, 0);
      b.addr.writeUInt16BE(this.slotOf(hex), 6);
      b.addr.set(src.key.subarray(0, ID_BYTES), 8);
      b.port[0] = VIRTUAL_PORT;
      b.count = 1;
      this.stats.relayDelivered++;
      this.current?.deliver(b);
      return;
    }
    // Relaying for the member at the other end of the stream: it can only speak for itself.
    const dst = this.byNum.get(dstNum);
    if (!this.relay || !dst || src !== via) { this.stats.relayRefused++; return; }
    if (!this.allocations.allowed(src.num, dst.num)) { this.stats.relayNoAllocation++; return; }
    if (!this.allocations.take(src.num)) { this.stats.relayRateLimited++; return; }
    this.forwardTo(dst.hex, frame, 0, len);
    if (this.fwd.count > 0) this.flushForwarded(); // one frame per stream read: nothing to wait for
  }

  private slotOf(hex: string): number {
    const slot = this.relaySlots.indexOf(hex);
    return slot >= 0 ? slot : this.relaySlots.push(hex) - 1;
  }

  /**
   * Queues one relay frame for member `hex`: on its stream (at once) or to its WireGuard
   * endpoint (in the forwarded batch). False when there is no way to it (counted).
   */
  private forwardTo(hex: string, data: Buffer, at: number, len: number): boolean {
    const stream = this.streams.get(hex);
    if (stream) {
      stream.write(Buffer.from(data.subarray(at, at + len)));
      this.stats.relayForwarded++;
      return false;
    }
    const to = this.endpointOf(hex);
    if (!to || isVirtualAt(to.addr, 0)) { this.stats.relayRefused++; return false; }
    const f = this.fwd;
    const k = f.count++;
    data.copy(f.data, k * SLOT_SIZE, at, at + len);
    f.offset[k] = 0;
    f.length[k] = len;
    f.addr.set(to.addr, k * 16);
    f.port[k] = to.port;
    this.stats.relayForwarded++;
    return f.count === f.capacity;
  }

  bindFactory(inner: BindFactory): BindFactory {
    return async (port) => new PathBind(this, await inner(port));
  }

  /** The socket the engine uses now: the last one it started. */
  attachBind(bind: PathBind): void {
    this.current = bind;
  }

  detachBind(bind: PathBind): void {
    if (this.current === bind) this.current = null;
  }

  /** Takes what is not WireGuard out of a received batch (see the top of this file). */
  demux(batch: PacketBatch): void {
    const data = batch.data;
    for (let i = 0; i < batch.count; i++) {
      const len = batch.length[i];
      if (len < 20) continue;
      const at = batch.slot(i) + batch.offset[i];
      if (messageType(data, at, len) !== 0) continue; // WireGuard: the common case, first
      const magic = data.readUInt32BE(at);
      if (magic === RELAY_MAGIC) { this.onRelayed(batch, i, at, len); continue; }
      if (magic === PROBE_MAGIC || magic === PONG_MAGIC) { batch.length[i] = -1; this.onProbeMessage(batch, i, at, len, magic); continue; }
      if (data.readUInt32BE(at + 4) !== STUN_MAGIC) continue; // none of ours: the device counts it malformed
      batch.length[i] = -1;
      if (!isStun(data, at, len)) { this.stats.stunMalformed++; continue; }
      this.onStun(batch, i, at, len);
    }
    if (this.fwd.count > 0) this.flushForwarded();
  }

  // ---- relaying --------------------------------------------------------------------------------

  /** A relayed datagram: ours (on to the device, from a virtual endpoint) or to forward. */
  private onRelayed(batch: PacketBatch, i: number, at: number, len: number): void {
    const data = batch.data;
    const src = this.byNum.get(idNumber(data, at + 4));
    const dstNum = idNumber(data, at + 12);
    if (len < RELAY_HEADER + 32 || !src) { batch.length[i] = -1; this.stats.relayRefused++; return; }
    if (dstNum === this.ownNum) {
      const slot = this.relaySlotFrom(batch.addr, i * 16, batch.port[i]);
      if (slot < 0) { batch.length[i] = -1; this.stats.relayRefused++; return; }
      // The datagram moves to where the bind puts datagrams: the ciphers read the transport
      // header's counter at a fixed place in the slot.
      data.copyWithin(at, at + RELAY_HEADER, at + len);
      batch.length[i] = len - RELAY_HEADER;
      const a = i * 16;
      batch.addr.set(VIRTUAL_PREFIX, a);
      batch.addr.writeUInt16BE(slot, a + 6);
      batch.addr.set(src.key.subarray(0, ID_BYTES), a + 8);
      batch.port[i] = VIRTUAL_PORT;
      this.stats.relayDelivered++;
      return;
    }
    batch.length[i] = -1;
    const dst = this.byNum.get(dstNum);
    if (!this.relay || !dst) { this.stats.relayRefused++; return; }
    const from = this.endpointOf(src.hex);
    if (!from || !endpointEquals(from, batch.addr, i * 16, batch.port[i])) { this.stats.relayRefused++; return; }
    if (!this.allocations.allowed(src.num, dst.num)) { this.stats.relayNoAllocation++; return; }
    if (!this.allocations.take(src.num)) { this.stats.relayRateLimited++; return; }
    if (this.forwardTo(dst.hex, data, at, len)) this.flushForwarded();
  }

  private flushForwarded(): void {
    this.current?.sendRaw(this.fwd);
    this.fwd.count = 0;
  }

  /** The slot of the member a relayed datagram came through (a member at that endpoint), or -1. */
  private relaySlotFrom(addr: Buffer, at: number, port: number): number {
    for (let s = 0; s < this.relaySlots.length; s++) {
      const e = this.endpointOf(this.relaySlots[s]);
      if (e && endpointEquals(e, addr, at, port)) return s;
    }
    for (const m of this.byHex.values()) {
      const e = this.endpointOf(m.hex);
      if (e && endpointEquals(e, addr, at, port)) return this.relaySlots.push(m.hex) - 1;
    }
    return -1;
  }

  /**
   * Sends a batch from the device: datagrams for virtual endpoints go wrapped to their relay (a
   * copy each), the rest as they are.
   */
  send(batch: PacketBatch, bind: Bind): void {
    let relayed = 0;
    for (let i = 0; i < batch.count; i++) {
      if (batch.length[i] > 0 && isVirtualAt(batch.addr, i * 16)) relayed++;
    }
    if (relayed === 0) { bind.send(batch); return; }
    const w = this.wrapped;
    w.count = 0;
    for (let i = 0; i < batch.count; i++) {
      const len = batch.length[i];
      this.skipped[i] = 0;
      if (len <= 0 || !isVirtualAt(batch.addr, i * 16)) continue;
      this.skipped[i] = 1;
      batch.length[i] = -len;
      const relay = this.relaySlots[batch.addr.readUInt16BE(i * 16 + 6)];
      const stream = relay === undefined ? undefined : this.streams.get(relay);
      if (stream) {
        const frame = Buffer.allocUnsafe(len + RELAY_HEADER); // the stream writes it later: a copy of its own
        frame.writeUInt32BE(RELAY_MAGIC, 0);
        this.ownId.copy(frame, 4);
        batch.addr.copy(frame, 12, i * 16 + 8, i * 16 + 16);
        batch.data.copy(frame, RELAY_HEADER, batch.slot(i) + batch.offset[i], batch.slot(i) + batch.offset[i] + len);
        stream.write(frame);
        this.stats.relaySent++;
        continue;
      }
      const to = relay === undefined ? null : this.endpointOf(relay);
      if (!to || isVirtualAt(to.addr, 0) || len + RELAY_HEADER > SLOT_SIZE) { this.stats.relayNoEndpoint++; continue; }
      const k = w.count++;
      const o = k * SLOT_SIZE;
      w.data.writeUInt32BE(RELAY_MAGIC, o);
      this.ownId.copy(w.data, o + 4);
      batch.addr.copy(w.data, o + 12, i * 16 + 8, i * 16 + 16);
      batch.data.copy(w.data, o + RELAY_HEADER, batch.slot(i) + batch.offset[i], batch.slot(i) + batch.offset[i] + len);
      w.offset[k] = 0;
      w.length[k] = len + RELAY_HEADER;
      w.addr.set(to.addr, k * 16);
      w.port[k] = to.port;
    }
    if (relayed < batch.count) bind.send(batch);
    for (let i = 0; i < batch.count; i++) if (this.skipped[i] === 1) batch.length[i] = -batch.length[i];
    if (w.count > 0) {
      bind.send(w);
      this.stats.relaySent += w.count;
    }
  }

  // ---- probes ----------------------------------------------------------------------------------

  private onProbeMessage(batch: PacketBatch, i: number, at: number, len: number, magic: number): void {
    const data = batch.data;
    const src = len === PROBE_BYTES ? this.byNum.get(idNumber(data, at + 4)) : undefined;
    const key = src ? this.pairOf(src) : null;
    if (!src || !key || idNumber(data, at + 12) !== this.ownNum || !checkProbe(data, at, key)) { this.stats.probesRefused++; return; }
    const from: Endpoint = { addr: Buffer.from(batch.addr.subarray(i * 16, i * 16 + 16)), port: batch.port[i] };
    if (magic === PROBE_MAGIC) {
      const o = this.out;
      o.length[0] = writeProbe(o.data, 0, PONG_MAGIC, this.ownId, src.key, data.subarray(at + 20, at + 28), key);
      o.offset[0] = 0;
      o.addr.set(from.addr, 0);
      o.port[0] = from.port;
      o.count = 1;
      this.current?.sendRaw(o);
      this.stats.probesAnswered++;
      this.onProbe?.(src.hex, from);
      return;
    }
    const txid = data.toString('hex', at + 20, at + 28);
    const p = this.probes.get(txid);
    if (!p || p.peer !== src.hex) { this.stats.probesRefused++; return; }
    this.probes.delete(txid);
    clearTimeout(p.timer);
    this.stats.pongs++;
    p.resolve({ from, rttMs: this.now() - p.sentAt });
  }

  /**
   * Probes `to` for the member `peerHex`: resolves with where its answer came from and the round
   * trip, or null (no answer within timeoutMs, or the member is unknown).
   */
  probe(peerHex: string, to: Endpoint, timeoutMs = 1500): Promise<{ from: Endpoint; rttMs: number } | null> {
    const m = this.byHex.get(peerHex);
    const key = m ? this.pairOf(m) : null;
    const bind = this.current;
    if (!m || !key || !bind || isVirtualAt(to.addr, 0)) return Promise.resolve(null);
    const txid = randomBytes(8);
    const o = this.out;
    o.length[0] = writeProbe(o.data, 0, PROBE_MAGIC, this.ownId, m.key, txid, key);
    o.offset[0] = 0;
    o.addr.set(to.addr, 0);
    o.port[0] = to.port;
    o.count = 1;
    return new Promise((resolve) => {
      const id = txid.toString('hex');
      const timer = setTimeout(() => {
        this.probes.delete(id);
        resolve(null);
      }, timeoutMs);
      this.probes.set(id, { peer: peerHex, sentAt: this.now(), resolve, timer });
      bind.sendRaw(o);
      this.stats.probesSent++;
    });
  }

  // ---- STUN ------------------------------------------------------------------------------------

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
    for (const p of this.probes.values()) {
      clearTimeout(p.timer);
      p.resolve(null);
    }
    this.probes.clear();
    this.current = null;
  }
}

/** One socket the engine opened, seen through the path layer. */
export class PathBind implements Bind {
  constructor(private readonly paths: Paths, private readonly inner: Bind) {}

  get port(): number {
    return this.inner.port;
  }

  private onBatch: ((batch: PacketBatch) => void) | null = null;

  start(onBatch: (batch: PacketBatch) => void): void {
    this.onBatch = onBatch;
    this.paths.attachBind(this);
    this.inner.start((b) => {
      this.paths.demux(b);
      onBatch(b);
    });
  }

  send(batch: PacketBatch): void {
    this.paths.send(batch, this.inner);
  }

  /** Datagrams that came another way (a stream), to the device as if received. */
  deliver(batch: PacketBatch): void {
    this.onBatch?.(batch);
  }

  /** Datagrams of the path layer itself (STUN, probes, forwarded), straight to the socket. */
  sendRaw(batch: PacketBatch): void {
    this.inner.send(batch);
  }

  setMark(mark: number): void {
    if (!this.inner.setMark) throw Object.assign(new Error('fwmark needs the native data path'), { errno: 95 });
    this.inner.setMark(mark);
  }

  close(): void {
    this.paths.detachBind(this);
    this.inner.close();
  }
}
