// Rate limiting of handshake messages per source while the device is under load, after the
// source proved its address with a cookie (mac2). The algorithm is the kernel's ratelimiter.c
// (wireguard-go's ratelimiter is the same bucket): a token bucket per source filling at one
// millisecond of credit per millisecond, where a packet costs 1000/20 ms (20 packets a second)
// and the bucket holds five packets' worth (a burst of 5). A new source starts with the burst
// minus the packet that created it.
//
// Sources are IPv4 addresses or, as in the kernel, IPv6 /64s: one host commonly owns a whole /64,
// so keying by full address would let it multiply its budget. Entries idle for a second hold a
// full bucket anyway, so dropping them changes nothing but memory; like the kernel, the table is
// capped and a new source is refused while it is full, so a flood of spoofed sources cannot grow
// it without bound. Time is passed in (monotonic milliseconds): this is sans-I/O.
import { isV4Mapped } from './endpoint.js';

const PACKETS_PER_SECOND = 20;
const PACKETS_BURSTABLE = 5;
const PACKET_COST = 1000 / PACKETS_PER_SECOND; // ms of credit one packet takes
const TOKEN_MAX = PACKET_COST * PACKETS_BURSTABLE;
/** Entries idle longer than this are dropped; also the period of the sweep. */
export const RATELIMITER_GC_MS = 1000;
/** The kernel's maximum for hosts with more than 1 GiB of RAM (8192 buckets * 8). */
export const RATELIMITER_MAX_ENTRIES = 65536;

interface Bucket {
  tokens: number; // ms of credit
  last: number; // ms, time of the last packet
}

export class RateLimiter {
  /** IPv4 sources keyed by their 32-bit value, IPv6 /64s by a 4-character string of 16-bit words. */
  private readonly buckets = new Map<number | string, Bucket>();
  private lastSweep = -Infinity;

  /**
   * Whether a handshake message from this source may be processed now. `addr16` holds the
   * source as 16 bytes at `at` (IPv4 mapped as ::ffff:a.b.c.d, as batches carry it); false when
   * those bytes are out of bounds.
   */
  allow(addr16: Uint8Array, at: number, nowMs: number): boolean {
    if (!(at >= 0 && at + 16 <= addr16.length)) return false;
    const key = isV4Mapped(addr16, at)
      ? ((addr16[at + 12] << 24) | (addr16[at + 13] << 16) | (addr16[at + 14] << 8) | addr16[at + 15]) >>> 0
      : String.fromCharCode((addr16[at] << 8) | addr16[at + 1], (addr16[at + 2] << 8) | addr16[at + 3],
        (addr16[at + 4] << 8) | addr16[at + 5], (addr16[at + 6] << 8) | addr16[at + 7]);
    const bucket = this.buckets.get(key);
    if (bucket === undefined) {
      if (this.buckets.size >= RATELIMITER_MAX_ENTRIES) return false;
      this.buckets.set(key, { tokens: TOKEN_MAX - PACKET_COST, last: nowMs });
      return true;
    }
    const elapsed = nowMs - bucket.last;
    if (elapsed > 0) bucket.tokens = Math.min(TOKEN_MAX, bucket.tokens + elapsed);
    bucket.last = Math.max(bucket.last, nowMs);
    if (bucket.tokens < PACKET_COST) return false;
    bucket.tokens -= PACKET_COST;
    return true;
  }

  /**
   * Drops entries idle for more than RATELIMITER_GC_MS. Cheap to call often (the device calls it
   * on every timer tick): it sweeps at most once per RATELIMITER_GC_MS.
   */
  gc(nowMs: number): void {
    if (nowMs - this.lastSweep < RATELIMITER_GC_MS) return;
    this.lastSweep = nowMs;
    for (const [key, bucket] of this.buckets) {
      if (nowMs - bucket.last > RATELIMITER_GC_MS) this.buckets.delete(key);
    }
  }

  /** Sources currently tracked. */
  get size(): number {
    return this.buckets.size;
  }
}
