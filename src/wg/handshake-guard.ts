// What a responder spends on handshake messages, and when it stops spending (paper 5.3: cookies
// under load; wireguard-go's IsUnderLoad and ratelimiter; the kernel's cookie.c and ratelimiter.c).
//
// A handshake initiation with a valid mac1 costs its responder Diffie-Hellman work, and anyone who
// knows the responder's public key can make one (every member knows every member's key). So:
//  - Under load (more than `threshold` handshake messages in a second, sticky for a second, as
//    wireguard-go's signal is), a message needs a valid mac2: proof that its sender received a
//    cookie at its source address. One without gets a cookie reply instead of DH work.
//  - Cookie replies are themselves capped: per source (the kernel's bucket, 20 a second) and in
//    all (COOKIE_REPLIES_PER_SECOND), so a flood from one address or from a million spoofed ones
//    costs a bounded number of replies a second. wireguard-go answers every message; on its cores
//    that is cheap, on meshd's one JavaScript thread it would starve the data path.
//  - With a valid mac2, a message still passes the per-source rate limiter and a global budget of
//    HANDSHAKES_PER_SECOND (DH work for addresses the flooder really owns).
//  - A message from a configured peer's current endpoint (where its rekeys come from) skips the
//    global caps, never the per-source ones, which it takes from limiters of its own (a spoofed
//    flood that fills the others' tables cannot refuse it): a flood from elsewhere cannot crowd out
//    a member's rekey, and a flood spoofing that endpoint gets no more than one source's share.
// Everything else is dropped and counted by the device. Time is passed in (monotonic ms).
import { RateLimiter } from './ratelimiter.js';

/** Cookie replies a second to sources that are not a peer's endpoint, over all of them. */
export const COOKIE_REPLIES_PER_SECOND = 2000;
/** Handshake messages a second that get DH work, from sources that are not a peer's endpoint. */
export const HANDSHAKES_PER_SECOND = 500;
/** Handshake messages a second above which the device is under load (wireguard-go: a queue 1/8 full). */
export const UNDER_LOAD_THRESHOLD = 64;
/** How long the under-load state lasts after the rate last exceeded the threshold. */
export const UNDER_LOAD_AFTER_MS = 1000;

/** A token bucket: `rate` tokens a second, holding at most `burst`. */
export class TokenBucket {
  private tokens: number;
  private last = -Infinity;

  constructor(private readonly rate: number, private readonly burst: number) {
    this.tokens = burst;
  }

  take(nowMs: number): boolean {
    if (nowMs > this.last) {
      this.tokens = Math.min(this.burst, this.tokens + ((nowMs - this.last) * this.rate) / 1000);
      this.last = nowMs;
    }
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

export interface HandshakeGuardOptions {
  threshold?: number;
  cookieRepliesPerSecond?: number;
  handshakesPerSecond?: number;
}

export class HandshakeGuard {
  /** Set by tests to exercise cookies; otherwise the rate of handshake messages decides. */
  forceUnderLoad = false;
  private readonly threshold: number;
  private windowStart = -Infinity;
  private inWindow = 0;
  private underLoadUntil = -Infinity;
  private readonly handshakeLimiter = new RateLimiter();
  private readonly cookieLimiter = new RateLimiter();
  private readonly peerHandshakeLimiter = new RateLimiter();
  private readonly peerCookieLimiter = new RateLimiter();
  private readonly cookieBudget: TokenBucket;
  private readonly handshakeBudget: TokenBucket;

  constructor(opts: HandshakeGuardOptions = {}) {
    this.threshold = opts.threshold ?? UNDER_LOAD_THRESHOLD;
    const cookies = opts.cookieRepliesPerSecond ?? COOKIE_REPLIES_PER_SECOND;
    const handshakes = opts.handshakesPerSecond ?? HANDSHAKES_PER_SECOND;
    this.cookieBudget = new TokenBucket(cookies, cookies);
    this.handshakeBudget = new TokenBucket(handshakes, handshakes);
  }

  /** Counts one handshake message with a valid mac1; whether the device is now under load. */
  underLoad(nowMs: number): boolean {
    if (nowMs - this.windowStart >= 1000) {
      this.windowStart = nowMs;
      this.inWindow = 0;
    }
    if (++this.inWindow > this.threshold) this.underLoadUntil = nowMs + UNDER_LOAD_AFTER_MS;
    return this.forceUnderLoad || nowMs < this.underLoadUntil;
  }

  /**
   * Whether a source (16-byte address at addr[at..], IPv4 mapped) without a valid mac2 may be sent
   * a cookie reply now; `peerEndpoint` when it is a configured peer's current endpoint.
   */
  allowCookieReply(addr: Uint8Array, at: number, nowMs: number, peerEndpoint: boolean): boolean {
    if (peerEndpoint) return this.peerCookieLimiter.allow(addr, at, nowMs);
    return this.cookieLimiter.allow(addr, at, nowMs) && this.cookieBudget.take(nowMs);
  }

  /** Whether a message with a valid mac2 from this source may have its DH work done now. */
  allowHandshake(addr: Uint8Array, at: number, nowMs: number, peerEndpoint: boolean): boolean {
    if (peerEndpoint) return this.peerHandshakeLimiter.allow(addr, at, nowMs);
    return this.handshakeLimiter.allow(addr, at, nowMs) && this.handshakeBudget.take(nowMs);
  }

  /** Forgets idle sources; cheap to call on every timer tick. */
  gc(nowMs: number): void {
    this.handshakeLimiter.gc(nowMs);
    this.cookieLimiter.gc(nowMs);
    this.peerHandshakeLimiter.gc(nowMs);
    this.peerCookieLimiter.gc(nowMs);
  }
}
