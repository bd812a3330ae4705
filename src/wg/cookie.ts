// Cookies (paper 5.4.7, wireguard-go cookie.go): under load, a responder answers a handshake
// message with a cookie reply instead of doing Curve25519 work, and accepts only messages whose
// mac2 proves the sender received that cookie at its source address. mac1 (keyed with the
// responder's public key) is checked always, so only those who know the key can make us work.
import { hash, mac, random, xaead, xaeadOpen, equal, MAC_LEN } from './crypto.js';
import { CookieReply, MESSAGE_COOKIE_REPLY } from './messages.js';
import { isV4Mapped } from './endpoint.js';

const LABEL_MAC1 = Buffer.from('mac1----');
const LABEL_COOKIE = Buffer.from('cookie--');
const COOKIE_REFRESH_TIME = 120_000;
const COOKIE_LEN = 16;

/** mac1 and mac2 are the last 32 bytes of handshake messages. */
const mac1At = (msg: Uint8Array) => msg.length - 2 * MAC_LEN;
const mac2At = (msg: Uint8Array) => msg.length - MAC_LEN;

/** The bytes a cookie is bound to: the source address (4 or 16 bytes) and port. */
function sourceBytes(addr16: Uint8Array, at: number, port: number): Buffer {
  const ip = isV4Mapped(addr16, at) ? addr16.subarray(at + 12, at + 16) : addr16.subarray(at, at + 16);
  const out = Buffer.alloc(ip.length + 2);
  out.set(ip, 0);
  out.writeUInt16LE(port, ip.length);
  return out;
}

/** The responder's side: checks macs, hands out cookies. One per device. */
export class CookieChecker {
  private mac1Key: Buffer = Buffer.alloc(32);
  private cookieKey: Buffer = Buffer.alloc(32);
  private secret: Buffer = Buffer.alloc(32);
  private secretSet = -Infinity;

  init(ourPublicKey: Uint8Array): void {
    this.mac1Key = hash(LABEL_MAC1, ourPublicKey);
    this.cookieKey = hash(LABEL_COOKIE, ourPublicKey);
    this.secretSet = -Infinity;
  }

  checkMac1(msg: Uint8Array): boolean {
    if (msg.length < 2 * MAC_LEN) return false;
    const m = mac(this.mac1Key, msg.subarray(0, mac1At(msg)));
    return equal(m, msg.subarray(mac1At(msg), mac2At(msg)));
  }

  checkMac2(msg: Uint8Array, addr16: Uint8Array, at: number, port: number, nowMs?: number): boolean {
    if (msg.length < 2 * MAC_LEN) return false;
    if (nowMs !== undefined && nowMs - this.secretSet > COOKIE_REFRESH_TIME) return false;
    if (this.secretSet === -Infinity) return false;
    const cookie = mac(this.secret, sourceBytes(addr16, at, port));
    const m = mac(cookie, msg.subarray(0, mac2At(msg)));
    return equal(m, msg.subarray(mac2At(msg)));
  }

  /** A cookie reply to `msg` for the sender index `receiver` at this source. */
  createReply(msg: Uint8Array, receiver: number, addr16: Uint8Array, at: number, port: number, nowMs: number): Buffer {
    if (nowMs - this.secretSet > COOKIE_REFRESH_TIME) {
      this.secret = random(32);
      this.secretSet = nowMs;
    }
    const cookie = mac(this.secret, sourceBytes(addr16, at, port));
    const reply = Buffer.alloc(CookieReply.size);
    reply.writeUInt32LE(MESSAGE_COOKIE_REPLY, 0);
    reply.writeUInt32LE(receiver, CookieReply.receiver);
    const nonce = random(24);
    nonce.copy(reply, CookieReply.nonce);
    const sealed = xaead(this.cookieKey, nonce, cookie, msg.subarray(mac1At(msg), mac2At(msg)));
    reply.set(sealed, CookieReply.cookie);
    return reply;
  }
}

/** The initiator's side: adds macs, remembers cookies. One per peer. */
export class CookieGenerator {
  private mac1Key: Buffer = Buffer.alloc(32);
  private cookieKey: Buffer = Buffer.alloc(32);
  private cookie: Uint8Array | null = null;
  private cookieSet = -Infinity;
  private lastMac1: Uint8Array | null = null;

  init(peerPublicKey: Uint8Array): void {
    this.mac1Key = hash(LABEL_MAC1, peerPublicKey);
    this.cookieKey = hash(LABEL_COOKIE, peerPublicKey);
    this.cookie = null;
    this.cookieSet = -Infinity;
    this.lastMac1 = null;
  }

  /** Writes mac1, and mac2 when a fresh cookie is held, into the message in place. */
  addMacs(msg: Buffer, nowMs: number): void {
    const m1 = mac(this.mac1Key, msg.subarray(0, mac1At(msg)));
    msg.set(m1, mac1At(msg));
    this.lastMac1 = m1;
    if (this.cookie === null || nowMs - this.cookieSet > COOKIE_REFRESH_TIME) {
      msg.fill(0, mac2At(msg));
      return;
    }
    msg.set(mac(this.cookie, msg.subarray(0, mac2At(msg))), mac2At(msg));
  }

  /** Takes a cookie reply to the last message we sent; false if it does not authenticate. */
  consumeReply(reply: Uint8Array, nowMs: number): boolean {
    if (reply.length !== CookieReply.size || this.lastMac1 === null) return false;
    const cookie = xaeadOpen(this.cookieKey, reply.subarray(CookieReply.nonce, CookieReply.cookie),
      reply.subarray(CookieReply.cookie), this.lastMac1);
    if (cookie === null || cookie.length !== COOKIE_LEN) return false;
    this.cookie = cookie;
    this.cookieSet = nowMs;
    return true;
  }
}
