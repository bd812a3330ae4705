// The Noise_IKpsk2 handshake of WireGuard (paper section 5.4.2-5.4.5), one message at a time.
// Sans-I/O: functions take bytes, keys and times and return bytes or state; the device decides
// what to send where. Mirrors wireguard-go's noise-protocol.go step for step, so a stock peer
// agrees on every hash.
import type { KeyObject } from 'node:crypto';
import {
  aead, aeadOpen, dh, generateEphemeral, hash, kdf1, kdf2, kdf3, publicKeyObject, type StaticKey,
} from './crypto.js';
import { Initiation, MESSAGE_INITIATION, MESSAGE_RESPONSE, Response, writeType } from './messages.js';
import * as tai64n from './tai64n.js';

const CONSTRUCTION = Buffer.from('Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s');
const IDENTIFIER = Buffer.from('WireGuard v1 zx2c4 Jason@zx2c4.com');
export const INITIAL_CHAIN_KEY = hash(CONSTRUCTION);
export const INITIAL_HASH = hash(INITIAL_CHAIN_KEY, IDENTIFIER);
const EMPTY = Buffer.alloc(0);
const ZERO_KEY = Buffer.alloc(32);

export enum HandshakeState {
  Zeroed,
  InitiationCreated,
  InitiationConsumed,
  ResponseCreated,
  ResponseConsumed,
}

/** The handshake state a peer keeps (wireguard-go: Handshake). */
export class Handshake {
  state = HandshakeState.Zeroed;
  hash: Buffer = ZERO_KEY;
  chainKey: Buffer = ZERO_KEY;
  presharedKey: Buffer = ZERO_KEY;
  localEphemeral: KeyObject | null = null;
  localIndex = 0;
  remoteIndex = 0;
  remoteEphemeral: Buffer = ZERO_KEY;
  /** DH(S_priv_i, S_pub_r), cached; null for a low-order peer key: such a peer never talks. */
  precomputedStaticStatic: Buffer | null = null;
  lastTimestamp: Buffer = Buffer.alloc(12);
  lastInitiationConsumption = -Infinity;
  lastSentHandshake = -Infinity;
  readonly remoteStaticKey: KeyObject;

  constructor(readonly remoteStatic: Buffer) {
    this.remoteStaticKey = publicKeyObject(remoteStatic);
  }

  /** Recomputes the static-static secret after our private key changed. */
  precompute(local: StaticKey | null): void {
    this.precomputedStaticStatic = local ? dh(local.keyObject, this.remoteStaticKey) : null;
  }

  clear(): void {
    this.state = HandshakeState.Zeroed;
    this.hash = ZERO_KEY;
    this.chainKey = ZERO_KEY;
    this.localEphemeral = null;
    this.localIndex = 0;
  }
}

const mixHash = (h: Buffer, data: Uint8Array): Buffer => hash(h, data);
const mixKey = (ck: Buffer, data: Uint8Array): Buffer => kdf1(ck, data);

/**
 * Builds a handshake initiation (macs left zero: the cookie generator adds them). Returns null
 * when the peer cannot be talked to (no private key, low-order peer key).
 */
export function createInitiation(
  local: StaticKey, hs: Handshake, localIndex: number, timestamp: Uint8Array,
): Buffer | null {
  if (!hs.precomputedStaticStatic) return null;
  const msg = Buffer.alloc(Initiation.size);
  writeType(msg, MESSAGE_INITIATION);
  msg.writeUInt32LE(localIndex, Initiation.sender);

  let h = mixHash(INITIAL_HASH, hs.remoteStatic);
  let ck = INITIAL_CHAIN_KEY;
  const e = generateEphemeral();
  e.publicKey.copy(msg, Initiation.ephemeral);
  ck = mixKey(ck, e.publicKey);
  h = mixHash(h, e.publicKey);

  const es = dh(e.keyObject, hs.remoteStaticKey);
  if (!es) return null;
  let key: Buffer;
  [ck, key] = kdf2(ck, es);
  const encStatic = aead(key, 0n, local.publicKey, h);
  encStatic.copy(msg, Initiation.static);
  h = mixHash(h, encStatic);

  [ck, key] = kdf2(ck, hs.precomputedStaticStatic);
  const encTimestamp = aead(key, 0n, Buffer.from(timestamp.buffer, timestamp.byteOffset, timestamp.byteLength), h);
  encTimestamp.copy(msg, Initiation.timestamp);
  h = mixHash(h, encTimestamp);

  hs.hash = h;
  hs.chainKey = ck;
  hs.localEphemeral = e.keyObject;
  hs.localIndex = localIndex;
  hs.state = HandshakeState.InitiationCreated;
  return msg;
}

/** Why an initiation was refused: for counters and debug logs. */
export type InitiationRefusal = 'decrypt' | 'unknown-peer' | 'low-order' | 'replay' | 'flood';

/**
 * Consumes an initiation addressed to us. `lookup` finds the handshake of the peer whose static
 * key the message carries. On success the handshake holds the state to answer with.
 */
export function consumeInitiation<P extends { handshake: Handshake }>(
  local: StaticKey, msg: Buffer, lookup: (remoteStatic: Buffer) => P | undefined,
  nowMs: number, floodIntervalMs: number,
): P | InitiationRefusal {
  let h = mixHash(INITIAL_HASH, local.publicKey);
  const ephemeral = msg.subarray(Initiation.ephemeral, Initiation.ephemeral + 32);
  h = mixHash(h, ephemeral);
  let ck = mixKey(INITIAL_CHAIN_KEY, ephemeral);

  const es = dh(local.keyObject, ephemeral);
  if (!es) return 'decrypt';
  let key: Buffer;
  [ck, key] = kdf2(ck, es);
  const encStatic = msg.subarray(Initiation.static, Initiation.timestamp);
  const remoteStatic = aeadOpen(key, 0n, encStatic, h);
  if (!remoteStatic) return 'decrypt';
  h = mixHash(h, encStatic);

  const peer = lookup(remoteStatic);
  if (!peer) return 'unknown-peer';
  const hs = peer.handshake;
  if (!hs.precomputedStaticStatic) return 'low-order';

  [ck, key] = kdf2(ck, hs.precomputedStaticStatic);
  const encTimestamp = msg.subarray(Initiation.timestamp, Initiation.mac1);
  const timestamp = aeadOpen(key, 0n, encTimestamp, h);
  if (!timestamp) return 'decrypt';
  h = mixHash(h, encTimestamp);

  // An old timestamp is a replayed initiation; initiations faster than the flood interval are
  // refused so a replay cannot keep rotating our keys.
  if (!tai64n.after(timestamp, hs.lastTimestamp)) return 'replay';
  if (nowMs - hs.lastInitiationConsumption <= floodIntervalMs) return 'flood';

  hs.hash = h;
  hs.chainKey = ck;
  hs.remoteIndex = msg.readUInt32LE(Initiation.sender);
  hs.remoteEphemeral = Buffer.from(ephemeral);
  hs.lastTimestamp = timestamp;
  hs.lastInitiationConsumption = nowMs;
  hs.state = HandshakeState.InitiationConsumed;
  return peer;
}

/** Builds the response to a consumed initiation (macs left zero). */
export function createResponse(hs: Handshake, localIndex: number): Buffer | null {
  if (hs.state !== HandshakeState.InitiationConsumed) return null;
  const msg = Buffer.alloc(Response.size);
  writeType(msg, MESSAGE_RESPONSE);
  msg.writeUInt32LE(localIndex, Response.sender);
  msg.writeUInt32LE(hs.remoteIndex, Response.receiver);

  const e = generateEphemeral();
  e.publicKey.copy(msg, Response.ephemeral);
  let h = mixHash(hs.hash, e.publicKey);
  let ck = mixKey(hs.chainKey, e.publicKey);
  const ee = dh(e.keyObject, hs.remoteEphemeral);
  const se = dh(e.keyObject, hs.remoteStaticKey);
  if (!ee || !se) return null;
  ck = mixKey(ck, ee);
  ck = mixKey(ck, se);
  const [ck2, tau, key] = kdf3(ck, hs.presharedKey);
  h = mixHash(h, tau);
  const empty = aead(key, 0n, EMPTY, h);
  empty.copy(msg, Response.empty);
  h = mixHash(h, empty);

  hs.hash = h;
  hs.chainKey = ck2;
  hs.localEphemeral = e.keyObject;
  hs.localIndex = localIndex;
  hs.state = HandshakeState.ResponseCreated;
  return msg;
}

/** Consumes a response to the initiation `hs` sent. True when it authenticates. */
export function consumeResponse(local: StaticKey, hs: Handshake, msg: Buffer): boolean {
  if (hs.state !== HandshakeState.InitiationCreated || !hs.localEphemeral) return false;
  const ephemeral = msg.subarray(Response.ephemeral, Response.ephemeral + 32);
  let h = mixHash(hs.hash, ephemeral);
  let ck = mixKey(hs.chainKey, ephemeral);
  const ee = dh(hs.localEphemeral, ephemeral);
  const se = dh(local.keyObject, ephemeral);
  if (!ee || !se) return false;
  ck = mixKey(ck, ee);
  ck = mixKey(ck, se);
  const [ck2, tau, key] = kdf3(ck, hs.presharedKey);
  h = mixHash(h, tau);
  const empty = msg.subarray(Response.empty, Response.mac1);
  if (!aeadOpen(key, 0n, empty, h)) return false;
  h = mixHash(h, empty);

  hs.hash = h;
  hs.chainKey = ck2;
  hs.remoteIndex = msg.readUInt32LE(Response.sender);
  hs.state = HandshakeState.ResponseConsumed;
  return true;
}

/** The transport keys of a finished handshake; zeroes the handshake (paper 5.4.5). */
export function deriveKeys(hs: Handshake): { send: Buffer; receive: Buffer; isInitiator: boolean } | null {
  let send: Buffer, receive: Buffer, isInitiator: boolean;
  if (hs.state === HandshakeState.ResponseConsumed) {
    [send, receive] = kdf2(hs.chainKey, EMPTY);
    isInitiator = true;
  } else if (hs.state === HandshakeState.ResponseCreated) {
    [receive, send] = kdf2(hs.chainKey, EMPTY);
    isInitiator = false;
  } else {
    return null;
  }
  hs.clear();
  return { send, receive, isInitiator };
}
