// Rate limiting of handshake messages per source address while under load, as wireguard-go's
// ratelimiter: a token bucket of 20 packets per second with a burst of 5, per IPv4 address or per
// IPv6 /64 (one host can own a whole /64). Entries idle for a second are forgotten.
const PACKETS_PER_SECOND = 20;
const PACKETS_BURSTABLE = 5;
const PACKET_COST = 1000 / PACKETS_PER_SECOND; // ms of credit per packet
const MAX_TOKENS = PACKET_COST * PACKETS_BURSTABLE;
const IDLE_MS = 1000;

interface Bucket {
  tokens: number;
  last: number;
}

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private lastGc = 0;

  /** addr16: 16-byte address (IPv4 mapped) at `at`. */
  allow(addr16: Uint8Array, at: number, nowMs: number): boolean {
    const v4 = addr16[at + 10] === 0xff && addr16[at + 11] === 0xff && addr16.subarray(at, at + 10).every((b) => b === 0);
    const key = Buffer.from(addr16.subarray(v4 ? at + 12 : at, v4 ? at + 16 : at + 8)).toString('hex');
    let b = this.buckets.get(key);
    if (!b) {
      b = { tokens: MAX_TOKENS - PACKET_COST, last: nowMs };
      this.buckets.set(key, b);
      return true;
    }
    b.tokens = Math.min(MAX_TOKENS, b.tokens + (nowMs - b.last));
    b.last = nowMs;
    if (b.tokens < PACKET_COST) return false;
    b.tokens -= PACKET_COST;
    return true;
  }

  gc(nowMs: number): void {
    if (nowMs - this.lastGc < IDLE_MS) return;
    this.lastGc = nowMs;
    for (const [k, b] of this.buckets) if (nowMs - b.last > IDLE_MS) this.buckets.delete(k);
  }

  get size(): number {
    return this.buckets.size;
  }
}
