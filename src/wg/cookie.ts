// Cookies (paper section 5.4.7; wireguard-go cookie.go, the kernel's cookie.c), on raw handshake
// messages. Every handshake message ends in two MACs:
//   mac1 = MAC(HASH("mac1----" || Spub_responder), msg[0, len-32))  proves the sender knows our
//          public key, so only would-be peers can make us do Curve25519 work; always checked.
//   mac2 = MAC(cookie, msg[0, len-16))  proves the sender received a cookie at its source address;
//          checked only under load. Zero when the sender holds no fresh cookie.
// The cookie is MAC(R_secret, source address || source port), with R_secret random and replaced
// every two minutes. A loaded responder answers a message lacking a valid mac2 with a cookie
// reply instead of processing it: the cookie, sealed with XChaCha20-Poly1305 under
// HASH("cookie--" || Spub_responder), a random 24-byte nonce, and the message's mac1 as AAD (so
// only the sender of that message can open it).
//
// Time is always passed in (nowMs, monotonic milliseconds): this is sans-I/O.
import { equal, hash, mac, macInto, random, randomInto, xaead, xaeadOpen, MAC_LEN, TAG_LEN } from './crypto.js';
import { isV4Mapped } from './endpoint.js';
import { CookieReply, MESSAGE_COOKIE_REPLY } from './messages.js';

/** mac1 starts this many bytes before the end of a handshake message. */
export const MAC1_FROM_END = 2 * MAC_LEN;
/** mac2 starts this many bytes before the end (and runs to it). */
export const MAC2_FROM_END = MAC_LEN;
export const COOKIE_LEN = 16;
export const COOKIE_NONCE_LEN = 24;
/** How long R_secret lives, and how long a cookie is good for (paper: COOKIE_REFRESH_TIME). */
export const COOKIE_REFRESH_TIME_MS = 120_000;
/**
 * A cookie is used only while younger than COOKIE_REFRESH_TIME_MS minus this margin (the kernel's
 * COOKIE_SECRET_LATENCY), so a mac2 we send is not made with a secret the responder is just
 * replacing. wireguard-go uses the full two minutes.
 */
export const COOKIE_SECRET_LATENCY_MS = 5_000;

const LABEL_MAC1 = Buffer.from('mac1----');
const LABEL_COOKIE = Buffer.from('cookie--');

/** The cookie reply layout, from messages.ts: type(1) reserved(3) receiver(4) nonce(24) cookie(16+16). */
export { CookieReply };

/** A cookie reply as the device receives it: the right size, type 3, reserved bytes zero. */
function isCookieReply(reply: Uint8Array): boolean {
  return reply.length === CookieReply.size && reply[0] === MESSAGE_COOKIE_REPLY
    && reply[1] === 0 && reply[2] === 0 && reply[3] === 0;
}

/** The responder's side: checks macs, hands out cookies. One per device, keyed by our public key. */
export class CookieChecker {
  private mac1Key: Buffer = Buffer.alloc(32);
  private cookieKey: Buffer = Buffer.alloc(32);
  private secret: Buffer = Buffer.alloc(32);
  private secretSet = -Infinity;
  /**
   * The bytes a cookie binds, as wireguard-go's endpoint DstToBytes: the IPv4 (4 bytes) or IPv6
   * (16 bytes) address, then the port as 2 little-endian bytes (netip.AddrPort.MarshalBinary; the
   * kernel hashes the port in network order). Only this responder ever recomputes its cookies,
   * so the layout is ours to choose and does not touch interoperability.
   */
  private readonly source = Buffer.alloc(18);
  private readonly source4 = this.source.subarray(0, 6);
  // Scratch for the checks: a flood of handshake messages allocates nothing here.
  private readonly computed = new Uint8Array(MAC_LEN);
  private readonly cookie = new Uint8Array(COOKIE_LEN);
  private readonly nonce = new Uint8Array(COOKIE_NONCE_LEN);

  init(ourPublicKey: Uint8Array): void {
    this.mac1Key = hash(LABEL_MAC1, ourPublicKey);
    this.cookieKey = hash(LABEL_COOKIE, ourPublicKey);
    this.secretSet = -Infinity; // no cookie is valid until one is handed out under the new key
  }

  /** Whether msg (a whole handshake message) carries a valid mac1; false if shorter than the macs. */
  checkMac1(msg: Uint8Array): boolean {
    if (msg.length < MAC1_FROM_END) return false;
    const at = msg.length - MAC1_FROM_END;
    return equal(macInto(this.mac1Key, msg.subarray(0, at), this.computed), msg.subarray(at, at + MAC_LEN));
  }

  /**
   * Whether msg carries a valid mac2 for the cookie of this source (16-byte address at
   * srcAddr[srcAt..], IPv4 mapped). False when no secret younger than COOKIE_REFRESH_TIME_MS
   * exists: every cookie we handed out before then is void.
   */
  checkMac2(msg: Uint8Array, srcAddr: Uint8Array, srcAt: number, srcPort: number, nowMs: number): boolean {
    if (msg.length < MAC1_FROM_END || nowMs - this.secretSet > COOKIE_REFRESH_TIME_MS) return false;
    const cookie = this.cookieFor(srcAddr, srcAt, srcPort);
    if (cookie === null) return false;
    const at = msg.length - MAC2_FROM_END;
    return equal(macInto(cookie, msg.subarray(0, at), this.computed), msg.subarray(at));
  }

  /**
   * The 64-byte cookie reply to msg, addressed to the sender's index `receiverIndex`. Call it only
   * with a message whose mac1 checked (so at least 32 bytes from a 16-byte source address in
   * bounds): anything else is a caller bug and throws a RangeError. Replaces R_secret when it is
   * older than COOKIE_REFRESH_TIME_MS. Written into `out` (64 bytes, e.g. a batch slot) when given.
   */
  createReply(msg: Uint8Array, receiverIndex: number, srcAddr: Uint8Array, srcAt: number, srcPort: number,
    nowMs: number, out?: Buffer): Buffer {
    if (msg.length < MAC1_FROM_END) throw new RangeError('cookie reply to a message without macs');
    if (nowMs - this.secretSet > COOKIE_REFRESH_TIME_MS) {
      this.secret = random(32);
      this.secretSet = nowMs;
    }
    const cookie = this.cookieFor(srcAddr, srcAt, srcPort);
    if (cookie === null) throw new RangeError('cookie reply to a source address out of bounds');
    if (out !== undefined && out.length < CookieReply.size) throw new RangeError('cookie reply needs 64 bytes');
    const reply = out ?? Buffer.alloc(CookieReply.size);
    reply.writeUInt32LE(MESSAGE_COOKIE_REPLY, 0);
    reply.writeUInt32LE(receiverIndex >>> 0, CookieReply.receiver);
    const nonce = randomInto(this.nonce);
    reply.set(nonce, CookieReply.nonce);
    const at = msg.length - MAC1_FROM_END;
    reply.set(xaead(this.cookieKey, nonce, cookie, msg.subarray(at, at + MAC_LEN)), CookieReply.cookie);
    return reply;
  }

  /** MAC(R_secret, source bytes), or null when the 16 address bytes are out of bounds. */
  private cookieFor(srcAddr: Uint8Array, srcAt: number, srcPort: number): Uint8Array | null {
    if (!(srcAt >= 0 && srcAt + 16 <= srcAddr.length)) return null;
    const v4 = isV4Mapped(srcAddr, srcAt);
    const src = v4 ? this.source4 : this.source;
    src.set(srcAddr.subarray(v4 ? srcAt + 12 : srcAt, srcAt + 16), 0);
    src.writeUInt16LE(srcPort & 0xffff, src.length - 2);
    return macInto(this.secret, src, this.cookie);
  }
}

/** The initiator's side: adds macs, keeps the latest cookie. One per peer, keyed by its public key. */
export class CookieGenerator {
  private mac1Key: Buffer = Buffer.alloc(32);
  private cookieKey: Buffer = Buffer.alloc(32);
  private readonly cookie = new Uint8Array(COOKIE_LEN);
  private cookieSet = -Infinity;
  /** The mac1 of the last message we sent: the AAD a cookie reply to it is sealed with. */
  private readonly lastMac1 = new Uint8Array(MAC_LEN);
  private hasLastMac1 = false;

  init(peerPublicKey: Uint8Array): void {
    this.mac1Key = hash(LABEL_MAC1, peerPublicKey);
    this.cookieKey = hash(LABEL_COOKIE, peerPublicKey);
    this.cookieSet = -Infinity;
    this.hasLastMac1 = false;
  }

  /**
   * Writes mac1 into the handshake message we are about to send, and mac2 when we hold a cookie
   * younger than COOKIE_REFRESH_TIME_MS - COOKIE_SECRET_LATENCY_MS (zeros otherwise). Our own
   * message must have room for the macs; a shorter one is a caller bug and throws a RangeError.
   */
  addMacs(msg: Uint8Array, nowMs: number): void {
    if (msg.length < MAC1_FROM_END) throw new RangeError('handshake message without room for macs');
    const at1 = msg.length - MAC1_FROM_END;
    const at2 = msg.length - MAC2_FROM_END;
    const mac1 = mac(this.mac1Key, msg.subarray(0, at1));
    msg.set(mac1, at1);
    this.lastMac1.set(mac1);
    this.hasLastMac1 = true;
    if (nowMs - this.cookieSet < COOKIE_REFRESH_TIME_MS - COOKIE_SECRET_LATENCY_MS) {
      msg.set(mac(this.cookie, msg.subarray(0, at2)), at2);
    } else {
      msg.fill(0, at2);
    }
  }

  /**
   * Takes a cookie reply to the last message we sent; false (and nothing kept) if it is malformed,
   * answers no message of ours, or does not authenticate. Like the kernel, one reply is taken per
   * message sent, so a duplicated reply cannot refresh the cookie's age.
   */
  consumeReply(reply: Uint8Array, nowMs: number): boolean {
    if (!this.hasLastMac1 || !isCookieReply(reply)) return false;
    const cookie = xaeadOpen(this.cookieKey, reply.subarray(CookieReply.nonce, CookieReply.cookie),
      reply.subarray(CookieReply.cookie, CookieReply.cookie + COOKIE_LEN + TAG_LEN), this.lastMac1);
    if (cookie === null || cookie.length !== COOKIE_LEN) return false;
    this.cookie.set(cookie);
    this.cookieSet = nowMs;
    this.hasLastMac1 = false;
    return true;
  }
}
