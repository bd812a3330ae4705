// The WireGuard device: peers, cryptokey routing, the handshake and transport paths. It is the
// sans-I/O core of the engine: the shell hands it batches (IP packets read from the TUN,
// datagrams received on the UDP socket) and a clock; it transforms them in place and hands them
// back through `DeviceOutput`. The whole protocol is tested without sockets or real time.
//
// Data path per batch, no allocation per packet: look up each packet's peer and session, write the
// transport header and padding, collect each slot's key, seal the whole batch at once
// (BatchCipher: native or reference), send the batch. The receive path mirrors it: parse headers,
// open the batch at once, then the replay window, roaming, timers and the source check.
import { MonotonicStamps } from './tai64n.js';
import type { BatchCipher } from './cipher.js';
import {
  DEFAULT_MTU, MAX_STAGED_PACKETS, PADDING_MULTIPLE, PROTOCOL_TIMINGS, REJECT_AFTER_MESSAGES,
  REKEY_AFTER_MESSAGES, type Timings,
} from './constants.js';
import { AllowedIps } from './allowedips.js';
import { BATCH_SIZE, HEADROOM, PacketBatch, SLOT_SIZE } from './batch.js';
import { ConfigError, EINVAL, type DeviceSet, type DeviceSnapshot, type Configurable } from './config.js';
import { CookieChecker } from './cookie.js';
import { equal, staticKey, type StaticKey } from './crypto.js';
import { endpointEquals, endpointKey } from './endpoint.js';
import { HandshakeGuard } from './handshake-guard.js';
import { IndexTable } from './indextable.js';
import { Keypair } from './keypair.js';
import {
  CookieReply, Initiation, MESSAGE_COOKIE_REPLY, MESSAGE_INITIATION,
  MESSAGE_TRANSPORT, Response, Transport, messageType,
} from './messages.js';
import { consumeInitiation, consumeResponse, createInitiation, createResponse, deriveKeys } from './noise.js';
import { Peer } from './peer.js';
import {
  NEW_HANDSHAKE, PERSISTENT_KEEPALIVE, RETRANSMIT_HANDSHAKE, SEND_KEEPALIVE, ZERO_KEY_MATERIAL,
} from './timers.js';
import { noopLogger, type Logger } from '../util/log.js';

export interface DeviceOutput {
  /** Datagrams to send: every slot with length > 0, to its addr/port. */
  send(batch: PacketBatch): void;
  /** IP packets for the TUN: every slot with length > 0. */
  write(batch: PacketBatch): void;
}

/** Monotonic milliseconds for protocol timers, wall-clock milliseconds for timestamps. */
export interface Clock {
  now(): number;
  wall(): number;
}

export const systemClock: Clock = {
  now: () => performance.now(),
  wall: () => Date.now(),
};


export interface DeviceOptions {
  cipher: BatchCipher;
  output: DeviceOutput;
  clock?: Clock;
  timings?: Timings;
  mtu?: number;
  logger?: Logger;
  /** Handshake messages per second above which the device asks for cookies (mac2). */
  underLoadThreshold?: number;
  /** Cookie replies a second to sources that are not a peer's endpoint (handshake-guard.ts). */
  cookieRepliesPerSecond?: number;
  /** Handshakes a second that get DH work from sources that are not a peer's endpoint. */
  handshakesPerSecond?: number;
  /** Where initiation timestamps come from (default: monotonic from the wall clock, no floor). */
  stamps?: MonotonicStamps;
}

/** Why packets were dropped; reported by `meshd engine` and tests. */
export interface DropCounters {
  malformed: number;
  noPeer: number;
  noEndpoint: number;
  mac1: number;
  /** Handshake messages under load that got neither DH work nor a cookie reply (over a budget). */
  rateLimited: number;
  handshake: number;
  unknownIndex: number;
  expired: number;
  decrypt: number;
  replay: number;
  sourceCheck: number;
  staged: number;
}

const newDropCounters = (): DropCounters => ({
  malformed: 0, noPeer: 0, noEndpoint: 0, mac1: 0, rateLimited: 0, handshake: 0, unknownIndex: 0,
  expired: 0, decrypt: 0, replay: 0, sourceCheck: 0, staged: 0,
});

const MAX_SAFE_HI = 2 ** 21; // a counter's high word below this keeps it a safe JS integer

export class Device implements Configurable {
  readonly peers = new Map<string, Peer>();
  readonly allowedIps = new AllowedIps<Peer>();
  readonly indices = new IndexTable<Peer>();
  readonly drops = newDropCounters();
  listenPort = 0;
  fwmark = 0;
  mtu: number;

  private identity: StaticKey | null = null;
  private readonly cookieChecker = new CookieChecker();
  private readonly guard: HandshakeGuard;
  /** Cookie replies sent, since the start. */
  cookieReplies = 0;
  /** Handshakes completed (a session confirmed, as initiator or responder), since the start. */
  handshakes = 0;
  /** The peers' current endpoints by endpointKey; rebuilt when one changed and a flood asks. */
  private endpointKeys = new Set<number | string>();
  private endpointsChanged = true;
  private readonly cipher: BatchCipher;
  private readonly output: DeviceOutput;
  private readonly clock: Clock;
  private readonly stamps: MonotonicStamps;
  private readonly timings: Timings;
  private readonly log: Logger;

  // Per-slot scratch, one set for each direction: the receive path may send staged packets while
  // it is still walking its own batch.
  private readonly tx = new Scratch();
  private readonly rx = new Scratch();
  /** Handshake messages, sent as they arise. */
  private readonly control = new PacketBatch(1);
  /** Cookie replies to one received batch, sent together once it is walked. */
  private readonly cookieBatch = new PacketBatch(BATCH_SIZE);
  /** Staged packets and keepalives on their way to the seal path. */
  private readonly staging = new PacketBatch(BATCH_SIZE);

  constructor(opts: DeviceOptions) {
    this.cipher = opts.cipher;
    this.output = opts.output;
    this.clock = opts.clock ?? systemClock;
    this.stamps = opts.stamps ?? new MonotonicStamps();
    this.timings = opts.timings ?? PROTOCOL_TIMINGS;
    this.mtu = opts.mtu ?? DEFAULT_MTU;
    this.log = opts.logger ?? noopLogger;
    this.guard = new HandshakeGuard({
      threshold: opts.underLoadThreshold,
      cookieRepliesPerSecond: opts.cookieRepliesPerSecond,
      handshakesPerSecond: opts.handshakesPerSecond,
    });
  }

  /** Set by tests to exercise cookies; otherwise the rate of handshake messages decides. */
  set forceUnderLoad(on: boolean) {
    this.guard.forceUnderLoad = on;
  }

  get publicKey(): Buffer | null {
    return this.identity?.publicKey ?? null;
  }

  // ---------------------------------------------------------------- outgoing: TUN -> UDP

  /** IP packets read from the TUN, each at offset HEADROOM of its slot: encrypt and send. */
  handleTunBatch(batch: PacketBatch): void {
    const tx = this.tx.fit(batch.capacity);
    const data = batch.data;
    for (let i = 0; i < batch.count; i++) {
      const p = i * SLOT_SIZE + batch.offset[i];
      const len = batch.length[i];
      const version = len > 0 ? data[p] >> 4 : 0;
      let peer: Peer | undefined;
      if (version === 4 && len >= 20) peer = this.allowedIps.lookupV4(data, p + 16);
      else if (version === 6 && len >= 40) peer = this.allowedIps.lookupV6(data, p + 24);
      else { this.drops.malformed++; tx.peer[i] = null; continue; }
      if (peer === undefined) this.drops.noPeer++;
      tx.peer[i] = peer ?? null;
    }
    this.sealAndSend(batch, this.clock.now());
  }

  /**
   * Seals slots whose plaintext sits at offset HEADROOM (length 0 = keepalive) for slotPeer[i],
   * then sends them. Packets of peers without a usable session are staged and a handshake begins.
   */
  private sealAndSend(batch: PacketBatch, now: number): void {
    const tx = this.tx;
    const data = batch.data;
    const mtu = this.mtu;
    let sealed = 0;
    for (let i = 0; i < batch.count; i++) {
      const peer = tx.peer[i];
      tx.keypair[i] = null;
      if (peer === null) { batch.length[i] = -1; continue; }
      const kp = peer.keypairs.current;
      const endpoint = peer.endpoint;
      if (endpoint === null) { this.drops.noEndpoint++; batch.length[i] = -1; continue; }
      if (kp === null || kp.sendNonce >= REJECT_AFTER_MESSAGES || now - kp.created >= this.timings.rejectAfterTime) {
        this.stage(peer, batch.packet(i));
        batch.length[i] = -1;
        continue;
      }
      const slot = i * SLOT_SIZE;
      const len = batch.length[i];
      // Pad to a multiple of 16 but never past the MTU (wireguard-go calculatePaddingSize).
      const last = len > mtu ? len % mtu : len;
      let padded = (last + PADDING_MULTIPLE - 1) & ~(PADDING_MULTIPLE - 1);
      if (padded > mtu) padded = mtu;
      padded += len - last;
      if (padded > len) data.fill(0, slot + HEADROOM + len, slot + HEADROOM + padded);
      const counter = kp.sendNonce++;
      data.writeUInt32LE(MESSAGE_TRANSPORT, slot);
      data.writeUInt32LE(kp.remoteIndex, slot + Transport.receiver);
      data.writeUInt32LE(counter >>> 0, slot + Transport.counter);
      data.writeUInt32LE(Math.floor(counter / 2 ** 32), slot + Transport.counter + 4);
      tx.keys.set(kp.sendKey, i * 32); // TypedArray set: no Buffer.copy wrapper per packet
      batch.offset[i] = HEADROOM;
      batch.length[i] = padded;
      batch.addr.set(endpoint.addr, i * 16);
      batch.port[i] = endpoint.port;
      tx.keypair[i] = kp;
      sealed++;
    }
    if (sealed > 0) {
      this.cipher.seal(batch, tx.keys, batch.count);
      for (let i = 0; i < batch.count; i++) {
        if (tx.keypair[i] === null) continue;
        batch.offset[i] = 0;
        batch.length[i] += HEADROOM + 16;
      }
      this.output.send(batch);
      for (let i = 0; i < batch.count; i++) {
        const kp = tx.keypair[i];
        if (kp === null) continue;
        const peer = tx.peer[i]!;
        peer.txBytes += batch.length[i];
        peer.timers.anyAuthenticatedPacketTraversal(now);
        peer.timers.anyAuthenticatedPacketSent();
        if (batch.length[i] > Transport.minSize) peer.timers.dataSent(now);
        this.keepKeyFreshSending(peer, kp, now);
      }
    }
  }

  private stage(peer: Peer, packet: Buffer): void {
    if (peer.staged.length >= MAX_STAGED_PACKETS) {
      peer.staged.shift();
      this.drops.staged++;
    }
    peer.staged.push(Buffer.from(packet));
    this.sendHandshakeInitiation(peer, false, this.clock.now());
  }

  /** Sends what waited for a session, or a keepalive if nothing did (wireguard-go SendKeepalive). */
  private sendStaged(peer: Peer, now: number, keepalive: boolean): void {
    if (peer.staged.length === 0 && !keepalive) return;
    const packets = peer.staged;
    peer.staged = [];
    if (packets.length === 0) packets.push(Buffer.alloc(0));
    const b = this.staging;
    for (let start = 0; start < packets.length; start += b.capacity) {
      b.count = Math.min(b.capacity, packets.length - start);
      for (let i = 0; i < b.count; i++) {
        const pkt = packets[start + i];
        pkt.copy(b.data, i * SLOT_SIZE + HEADROOM);
        b.offset[i] = HEADROOM;
        b.length[i] = pkt.length;
        this.tx.peer[i] = peer;
      }
      this.sealAndSend(b, now);
    }
  }

  /**
   * A keepalive to every peer with a live session (wireguard-go's
   * SendKeepalivesToPeersWithCurrentKeypair, which wireguard-apple calls when the network path
   * changes): after this machine moved, each peer hears an authenticated packet from the new
   * address and roams its endpoint there at once, rather than at the next keepalive or handshake.
   * Returns how many were sent.
   */
  sendKeepalivesToPeersWithCurrentKeypair(): number {
    if (!this.identity) return 0;
    const now = this.clock.now();
    let sent = 0;
    for (const peer of this.peers.values()) {
      const kp = peer.keypairs.current;
      if (kp === null || now - kp.created >= this.timings.rejectAfterTime || peer.endpoint === null) continue;
      this.sendStaged(peer, now, true);
      sent++;
    }
    return sent;
  }

  private keepKeyFreshSending(peer: Peer, kp: Keypair, now: number): void {
    if ((kp.isInitiator && now - kp.created > this.timings.rekeyAfterTime) || kp.sendNonce > REKEY_AFTER_MESSAGES) {
      this.sendHandshakeInitiation(peer, false, now);
    }
  }

  private keepKeyFreshReceiving(peer: Peer, now: number): void {
    const kp = peer.keypairs.current;
    if (kp === null || !kp.isInitiator || peer.timers.sentLastMinuteHandshake) return;
    const t = this.timings;
    if (now - kp.created > t.rejectAfterTime - t.keepaliveTimeout - t.rekeyTimeout) {
      peer.timers.sentLastMinuteHandshake = true;
      this.sendHandshakeInitiation(peer, false, now);
    }
  }

  // ---------------------------------------------------------------- incoming: UDP -> TUN

  /** Datagrams received on the UDP socket, each at offset 0 of its slot; slots of length < 0 are skipped. */
  handleUdpBatch(batch: PacketBatch): void {
    const rx = this.rx.fit(batch.capacity);
    const now = this.clock.now();
    const data = batch.data;
    let transport = 0;
    this.cookieBatch.count = 0;
    for (let i = 0; i < batch.count; i++) {
      rx.keypair[i] = null;
      const at = i * SLOT_SIZE + batch.offset[i];
      const len = batch.length[i];
      if (len < 0) continue; // taken by the layer below (STUN, probes) or flagged oversized by the bind
      const type = messageType(data, at, len);
      if (type === MESSAGE_TRANSPORT) {
        const entry = this.indices.get(data.readUInt32LE(at + Transport.receiver));
        const kp = entry?.keypair;
        if (!kp) { this.drops.unknownIndex++; batch.length[i] = -1; continue; }
        if (now - kp.created >= this.timings.rejectAfterTime) { this.drops.expired++; batch.length[i] = -1; continue; }
        const hi = data.readUInt32LE(at + Transport.counter + 4);
        if (hi >= MAX_SAFE_HI) { this.drops.replay++; batch.length[i] = -1; continue; }
        rx.counter[i] = hi * 2 ** 32 + data.readUInt32LE(at + Transport.counter);
        rx.keys.set(kp.receiveKey, i * 32);
        batch.offset[i] += Transport.headerSize;
        batch.length[i] = len - Transport.headerSize;
        rx.keypair[i] = kp;
        rx.peer[i] = entry!.peer;
        transport++;
      } else {
        if (type === 0) this.drops.malformed++;
        else this.handleHandshakeMessage(type, batch, i, now);
        batch.length[i] = -1;
      }
    }
    if (this.cookieBatch.count > 0) this.sendCookieReplies();
    if (transport === 0) return;

    this.cipher.open(batch, rx.keys, rx.ok, batch.count);
    for (let i = 0; i < batch.count; i++) {
      const kp = rx.keypair[i];
      if (kp === null) continue;
      if (rx.ok[i] !== 1) { this.drops.decrypt++; batch.length[i] = -1; continue; }
      const datagramLength = batch.length[i] + Transport.headerSize;
      const counter = rx.counter[i];
      if (!kp.replay.validateCounter(counter, REJECT_AFTER_MESSAGES)) {
        this.drops.replay++;
        batch.length[i] = -1;
        continue;
      }
      const peer = rx.peer[i]!;
      const promoted = peer.keypairs.received(kp);
      if (promoted.promoted) {
        if (promoted.dropped) this.dropKeypair(promoted.dropped);
        this.handshakeComplete(peer);
        this.sendStaged(peer, now, false);
      }
      this.roam(peer, batch.addr, i * 16, batch.port[i]);
      peer.rxBytes += datagramLength;
      this.keepKeyFreshReceiving(peer, now);
      peer.timers.anyAuthenticatedPacketTraversal(now);
      peer.timers.anyAuthenticatedPacketReceived();
      const plainLength = batch.length[i] - 16;
      if (plainLength === 0) { batch.length[i] = -1; continue; } // keepalive
      peer.timers.dataReceived(now);
      batch.length[i] = this.innerLength(batch, i, plainLength, peer);
    }
    this.output.write(batch);
  }

  /**
   * The true length of a decrypted IP packet (padding trimmed), or -1 when it is malformed or its
   * source address is not one the sending peer may use (cryptokey routing's incoming check).
   */
  private innerLength(batch: PacketBatch, i: number, plainLength: number, peer: Peer): number {
    const data = batch.data;
    const p = i * SLOT_SIZE + batch.offset[i];
    const version = data[p] >> 4;
    let length: number;
    let owner: Peer | undefined;
    if (version === 4 && plainLength >= 20) {
      length = data.readUInt16BE(p + 2);
      owner = this.allowedIps.lookupV4(data, p + 12);
    } else if (version === 6 && plainLength >= 40) {
      length = 40 + data.readUInt16BE(p + 4);
      owner = this.allowedIps.lookupV6(data, p + 8);
    } else {
      this.drops.malformed++;
      return -1;
    }
    if (length > plainLength || length < 20) { this.drops.malformed++; return -1; }
    if (owner !== peer) { this.drops.sourceCheck++; return -1; }
    return length;
  }

  /** The endpoint follows the last authenticated packet (roaming, paper 2.1). */
  private roam(peer: Peer, addr: Buffer, at: number, port: number): void {
    if (peer.endpoint !== null && endpointEquals(peer.endpoint, addr, at, port)) return;
    peer.endpoint = { addr: Buffer.from(addr.subarray(at, at + 16)), port };
    this.endpointsChanged = true;
    this.log.debug({ peer: peer.key.slice(0, 8), port }, 'endpoint changed');
  }

  // ---------------------------------------------------------------- handshake

  /** Whether the source of a received datagram is some peer's current endpoint. */
  private isPeerEndpoint(addr: Buffer, at: number, port: number): boolean {
    if (this.endpointsChanged) {
      this.endpointsChanged = false;
      this.endpointKeys = new Set();
      for (const peer of this.peers.values()) {
        if (peer.endpoint !== null) this.endpointKeys.add(endpointKey(peer.endpoint.addr, 0, peer.endpoint.port));
      }
    }
    return this.endpointKeys.has(endpointKey(addr, at, port));
  }

  private sendCookieReplies(): void {
    this.output.send(this.cookieBatch);
    this.cookieReplies += this.cookieBatch.count;
    this.cookieBatch.count = 0;
  }

  private handleHandshakeMessage(type: number, batch: PacketBatch, i: number, now: number): void {
    const identity = this.identity;
    const msg = batch.packet(i);
    const addrAt = i * 16;
    const port = batch.port[i];
    if (identity === null) { this.drops.handshake++; return; }

    if (type === MESSAGE_COOKIE_REPLY) {
      const entry = this.indices.get(msg.readUInt32LE(CookieReply.receiver));
      if (!entry || !entry.peer.cookieGenerator.consumeReply(msg, now)) this.drops.handshake++;
      return;
    }

    if (!this.cookieChecker.checkMac1(msg)) { this.drops.mac1++; return; }
    if (this.guard.underLoad(now)) {
      const known = this.isPeerEndpoint(batch.addr, addrAt, port);
      if (!this.cookieChecker.checkMac2(msg, batch.addr, addrAt, port, now)) {
        if (!this.guard.allowCookieReply(batch.addr, addrAt, now, known)) { this.drops.rateLimited++; return; }
        const sender = msg.readUInt32LE(type === MESSAGE_INITIATION ? Initiation.sender : Response.sender);
        const c = this.cookieBatch;
        if (c.count === c.capacity) this.sendCookieReplies();
        const slot = c.count++;
        this.cookieChecker.createReply(msg, sender, batch.addr, addrAt, port, now,
          c.data.subarray(slot * SLOT_SIZE, slot * SLOT_SIZE + CookieReply.size));
        c.offset[slot] = 0;
        c.length[slot] = CookieReply.size;
        batch.addr.copy(c.addr, slot * 16, addrAt, addrAt + 16);
        c.port[slot] = port;
        return;
      }
      if (!this.guard.allowHandshake(batch.addr, addrAt, now, known)) { this.drops.rateLimited++; return; }
    }

    if (type === MESSAGE_INITIATION) {
      const result = consumeInitiation(identity, msg, (pub) => this.peers.get(pub.toString('hex')), now,
        this.timings.handshakeInitiationRate);
      if (typeof result === 'string') {
        this.drops.handshake++;
        this.log.debug({ reason: result }, 'handshake initiation refused');
        return;
      }
      const peer = result;
      peer.rxBytes += msg.length;
      this.roam(peer, batch.addr, addrAt, port);
      peer.timers.anyAuthenticatedPacketTraversal(now);
      peer.timers.anyAuthenticatedPacketReceived();
      this.sendHandshakeResponse(peer, now);
      return;
    }

    // MESSAGE_RESPONSE
    const entry = this.indices.get(msg.readUInt32LE(Response.receiver));
    if (!entry || entry.keypair !== null || !consumeResponse(identity, entry.peer.handshake, msg)) {
      this.drops.handshake++;
      return;
    }
    const peer = entry.peer;
    peer.rxBytes += msg.length;
    this.roam(peer, batch.addr, addrAt, port);
    peer.timers.anyAuthenticatedPacketTraversal(now);
    peer.timers.anyAuthenticatedPacketReceived();
    if (!this.beginSymmetricSession(peer, now)) return;
    peer.timers.sessionDerived(now);
    this.handshakeComplete(peer);
    this.sendStaged(peer, now, true);
  }

  private handshakeComplete(peer: Peer): void {
    this.handshakes++;
    peer.timers.handshakeComplete();
    peer.lastHandshakeWall = this.clock.wall();
    this.log.debug({ peer: peer.key.slice(0, 8) }, 'handshake complete');
  }

  private sendHandshakeInitiation(peer: Peer, isRetry: boolean, now: number): void {
    if (!isRetry) peer.timers.handshakeAttempts = 0;
    const hs = peer.handshake;
    if (now - hs.lastSentHandshake < this.timings.rekeyTimeout) return;
    if (this.identity === null || peer.endpoint === null) return;
    hs.lastSentHandshake = now;
    if (hs.localIndex !== 0) this.indices.delete(hs.localIndex);
    const index = this.indices.newIndex(peer);
    const msg = createInitiation(this.identity, hs, index, this.stamps.next(this.clock.wall()));
    if (msg === null) { this.indices.delete(index); return; }
    peer.cookieGenerator.addMacs(msg, now);
    peer.timers.anyAuthenticatedPacketTraversal(now);
    peer.timers.anyAuthenticatedPacketSent();
    this.sendToPeer(peer, msg);
    peer.timers.handshakeInitiated(now);
  }

  private sendHandshakeResponse(peer: Peer, now: number): void {
    const hs = peer.handshake;
    hs.lastSentHandshake = now;
    if (hs.localIndex !== 0) this.indices.delete(hs.localIndex);
    const index = this.indices.newIndex(peer);
    const msg = createResponse(hs, index);
    if (msg === null) { this.indices.delete(index); return; }
    peer.cookieGenerator.addMacs(msg, now);
    if (!this.beginSymmetricSession(peer, now)) return;
    peer.timers.sessionDerived(now);
    peer.timers.anyAuthenticatedPacketTraversal(now);
    peer.timers.anyAuthenticatedPacketSent();
    this.sendToPeer(peer, msg);
  }

  private beginSymmetricSession(peer: Peer, now: number): boolean {
    const hs = peer.handshake;
    const localIndex = hs.localIndex;
    const remoteIndex = hs.remoteIndex;
    const keys = deriveKeys(hs);
    if (keys === null) return false;
    const kp = new Keypair(keys.send, keys.receive, keys.isInitiator, now, localIndex, remoteIndex);
    this.indices.bindKeypair(localIndex, peer, kp);
    for (const old of peer.keypairs.install(kp)) this.dropKeypair(old);
    return true;
  }

  private dropKeypair(kp: Keypair): void {
    this.indices.delete(kp.localIndex);
    kp.zero();
  }

  private sendToPeer(peer: Peer, msg: Buffer): void {
    const e = peer.endpoint;
    if (e === null) return;
    peer.txBytes += msg.length;
    this.sendControl(msg, e.addr, 0, e.port);
  }

  private sendControl(msg: Uint8Array, addr: Buffer, addrAt: number, port: number): void {
    const b = this.control;
    b.data.set(msg, 0);
    b.offset[0] = 0;
    b.length[0] = msg.length;
    addr.copy(b.addr, 0, addrAt, addrAt + 16);
    b.port[0] = port;
    b.count = 1;
    this.output.send(b);
  }

  // ---------------------------------------------------------------- timers

  /** Runs the timers that are due; the shell calls it a few times a second. */
  /** Milliseconds until tick() has work: the earliest armed timer of any peer (Infinity: none). */
  msUntilNextTimer(): number {
    let next = Infinity;
    for (const peer of this.peers.values()) next = Math.min(next, peer.timers.earliest());
    return next - this.clock.now();
  }

  tick(): void {
    const now = this.clock.now();
    for (const peer of this.peers.values()) {
      const fired = peer.timers.expired(now);
      if (fired === 0) continue;
      if (fired & RETRANSMIT_HANDSHAKE) this.retransmitHandshake(peer, now);
      if (fired & SEND_KEEPALIVE) {
        this.sendStaged(peer, now, true);
        if (peer.timers.needAnotherKeepalive) {
          peer.timers.needAnotherKeepalive = false;
          peer.timers.sendKeepalive = now + this.timings.keepaliveTimeout;
        }
      }
      if (fired & NEW_HANDSHAKE) this.sendHandshakeInitiation(peer, false, now);
      if (fired & ZERO_KEY_MATERIAL) this.zeroKeyMaterial(peer);
      if ((fired & PERSISTENT_KEEPALIVE) && peer.timers.persistentKeepaliveInterval > 0) {
        this.sendStaged(peer, now, true);
      }
    }
    this.guard.gc(now);
  }

  private retransmitHandshake(peer: Peer, now: number): void {
    const t = peer.timers;
    if (t.handshakeAttempts > t.maxAttempts) {
      this.log.debug({ peer: peer.key.slice(0, 8) }, 'handshake gave up');
      t.sendKeepalive = Infinity;
      this.drops.staged += peer.staged.length;
      peer.staged = [];
      if (!t.isArmed(t.zeroKeyMaterial)) t.zeroKeyMaterial = now + this.timings.rejectAfterTime * 3;
      return;
    }
    t.handshakeAttempts++;
    this.sendHandshakeInitiation(peer, true, now);
  }

  private zeroKeyMaterial(peer: Peer): void {
    for (const kp of peer.keypairs.clear()) this.dropKeypair(kp);
    if (peer.handshake.localIndex !== 0) this.indices.delete(peer.handshake.localIndex);
    peer.handshake.clear();
  }

  /** Forces a new handshake on next send (wireguard-go ExpireCurrentKeypairs). */
  private expireCurrentKeypairs(peer: Peer): void {
    if (peer.handshake.localIndex !== 0) this.indices.delete(peer.handshake.localIndex);
    peer.handshake.clear();
    peer.handshake.lastSentHandshake = -Infinity;
    if (peer.keypairs.current) peer.keypairs.current.sendNonce = REJECT_AFTER_MESSAGES;
    if (peer.keypairs.next) peer.keypairs.next.sendNonce = REJECT_AFTER_MESSAGES;
  }

  // ---------------------------------------------------------------- configuration

  snapshot(): DeviceSnapshot {
    return {
      privateKey: this.identity?.privateKey ?? null,
      listenPort: this.listenPort,
      fwmark: this.fwmark,
      peers: [...this.peers.values()].map((p) => ({
        publicKey: p.publicKey,
        presharedKey: p.handshake.presharedKey.every((b) => b === 0) ? null : p.handshake.presharedKey,
        endpoint: p.endpoint,
        lastHandshakeMs: p.lastHandshakeWall,
        rxBytes: p.rxBytes,
        txBytes: p.txBytes,
        persistentKeepalive: p.persistentKeepalive,
        allowedIps: this.allowedIps.prefixesOf(p),
      })),
    };
  }

  apply(change: DeviceSet): void {
    const now = this.clock.now();
    if (change.listenPort !== undefined) this.listenPort = change.listenPort;
    if (change.fwmark !== undefined) this.fwmark = change.fwmark;
    if (change.privateKey !== undefined) this.setPrivateKey(change.privateKey);
    if (change.replacePeers) for (const p of [...this.peers.values()]) this.removePeer(p);

    for (const ps of change.peers) {
      if (ps.publicKey.length !== 32) throw new ConfigError(EINVAL, 'public key must be 32 bytes');
      const key = ps.publicKey.toString('hex');
      let peer = this.peers.get(key);
      if (ps.remove) {
        if (peer) this.removePeer(peer);
        continue;
      }
      // A peer with our own public key is ignored, as in wireguard-go.
      if (this.identity && equal(this.identity.publicKey, ps.publicKey)) continue;
      if (!peer) {
        if (ps.updateOnly) continue;
        peer = new Peer(Buffer.from(ps.publicKey), this.timings);
        peer.handshake.precompute(this.identity);
        this.peers.set(key, peer);
      }
      if (ps.presharedKey !== undefined) {
        peer.handshake.presharedKey = ps.presharedKey ? Buffer.from(ps.presharedKey) : Buffer.alloc(32);
      }
      // A new endpoint for a peer that is kept alive and has no session yet (it was unreachable
      // where we tried) is tried at once, not at the next retransmission up to 5 s later: that is
      // when the other side of a hole punch is sending too. The handshake rate limit is per
      // destination in spirit, so it starts over.
      let tryNewEndpoint = false;
      if (ps.endpoint !== undefined) {
        const moved = peer.endpoint !== null && !endpointEquals(peer.endpoint, ps.endpoint.addr, 0, ps.endpoint.port);
        tryNewEndpoint = moved && peer.timers.persistentKeepaliveInterval > 0 && peer.keypairs.current === null;
        peer.endpoint = { addr: Buffer.from(ps.endpoint.addr), port: ps.endpoint.port };
        this.endpointsChanged = true;
      }
      if (ps.replaceAllowedIps) this.allowedIps.removeByPeer(peer);
      for (const change of ps.allowedIps) {
        if (change.remove) this.allowedIps.remove(change.prefix, peer);
        else this.allowedIps.insert(change.prefix, peer);
      }
      if (ps.persistentKeepalive !== undefined) {
        if (!(ps.persistentKeepalive >= 0 && ps.persistentKeepalive <= 65535)) {
          throw new ConfigError(EINVAL, 'persistent keepalive must be 0-65535');
        }
        const was = peer.timers.persistentKeepaliveInterval;
        peer.timers.persistentKeepaliveInterval = ps.persistentKeepalive * 1000;
        // Turning it on sends a keepalive at once, so a NAT mapping exists from the start.
        if (was === 0 && ps.persistentKeepalive > 0 && this.identity) this.sendStaged(peer, now, true);
      }
      if (tryNewEndpoint && this.identity) {
        peer.handshake.lastSentHandshake = -Infinity;
        this.sendStaged(peer, now, true);
      }
    }
  }

  private setPrivateKey(raw: Buffer | null): void {
    if (raw && this.identity && equal(this.identity.privateKey, staticKey(raw).privateKey)) return;
    this.identity = raw ? staticKey(raw) : null;
    if (this.identity) {
      this.cookieChecker.init(this.identity.publicKey);
      const own = this.peers.get(this.identity.publicKey.toString('hex'));
      if (own) this.removePeer(own);
    }
    for (const peer of this.peers.values()) {
      peer.handshake.precompute(this.identity);
      this.expireCurrentKeypairs(peer);
    }
  }

  removePeer(peer: Peer): void {
    peer.timers.stop();
    this.zeroKeyMaterial(peer);
    this.allowedIps.removeByPeer(peer);
    peer.staged = [];
    this.peers.delete(peer.key);
    this.endpointsChanged = true;
  }

  /** Used by the shell when it tears down: stop every timer and wipe all keys. */
  close(): void {
    for (const peer of [...this.peers.values()]) this.removePeer(peer);
    this.identity = null;
  }
}

/** Per-slot working memory of one batch, grown to the largest batch seen and then reused. */
class Scratch {
  capacity = 0;
  keys = Buffer.alloc(0);
  counter = new Float64Array(0);
  ok = new Uint8Array(0);
  peer: (Peer | null)[] = [];
  keypair: (Keypair | null)[] = [];

  constructor() {
    this.fit(BATCH_SIZE);
  }

  fit(n: number): this {
    if (n <= this.capacity) return this;
    this.capacity = n;
    this.keys = Buffer.alloc(n * 32);
    this.counter = new Float64Array(n);
    this.ok = new Uint8Array(n);
    this.peer = new Array(n).fill(null);
    this.keypair = new Array(n).fill(null);
    return this;
  }
}
