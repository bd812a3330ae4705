// Relayed WireGuard datagrams: when two members have no direct path (symmetric NATs, UDP blocked
// between them), a member both reach forwards their WireGuard datagrams. It cannot read them:
// WireGuard stays end to end between the two. On the wire, a relayed datagram carries a header:
//
//   'mRLY' | src id (8) | dst id (8) | the WireGuard datagram        (ids: probe.ts)
//
// 20 bytes: a full 1420-byte tunnel packet (1452 bytes of WireGuard) relayed over IPv4 is 1500.
//
// The relay forwards a datagram only when (paths.ts checks the first two, this file the rest):
//   - it comes from the WireGuard endpoint of the member its src id names (the relay's own
//     WireGuard session with that member authenticated that endpoint);
//   - the member its dst id names has a WireGuard endpoint here: the datagram goes there and
//     nowhere else, so a relay is never an open reflector;
//   - the pair holds an allocation: granted to a member over libp2p (relay-service.ts) for both
//     directions, for 10 minutes, renewed while in use;
//   - the sender is within its budget (a token bucket of packets per second per member).
// Everything refused is counted.
//
// Exported API:
//   RELAY_MAGIC, RELAY_HEADER (20), ALLOCATION_MS (10 min)
//   idNumber(buf, at): number                     a member id's first 6 bytes, for map keys
//   class Allocations {
//     constructor(opts?: { now?, packetsPerSecond? (20 000) })
//     allow(a: number, b: number, ttlMs?)         both directions
//     allowed(src, dst): boolean;  take(src): boolean (budget);  size; prune()
//   }
export const RELAY_MAGIC = 0x6d524c59; // 'mRLY'
export const RELAY_HEADER = 20;
export const ALLOCATION_MS = 10 * 60_000;

/** A member id (8 bytes) as a number for maps: its first 6 bytes, a safe integer. */
export function idNumber(buf: Uint8Array, at: number): number {
  return buf[at] * 2 ** 40 + buf[at + 1] * 2 ** 32 + ((buf[at + 2] << 24) >>> 0) + (buf[at + 3] << 16) + (buf[at + 4] << 8) + buf[at + 5];
}

interface Bucket {
  tokens: number;
  at: number;
}

export class Allocations {
  private readonly pairs = new Map<number, Map<number, number>>(); // src -> dst -> expiry
  private readonly buckets = new Map<number, Bucket>();
  private readonly now: () => number;
  private readonly rate: number;

  constructor(opts: { now?: () => number; packetsPerSecond?: number } = {}) {
    this.now = opts.now ?? (() => performance.now());
    this.rate = opts.packetsPerSecond ?? 20_000;
  }

  allow(a: number, b: number, ttlMs = ALLOCATION_MS): void {
    const until = this.now() + ttlMs;
    for (const [x, y] of [[a, b], [b, a]]) {
      let m = this.pairs.get(x);
      if (!m) this.pairs.set(x, (m = new Map()));
      m.set(y, Math.max(m.get(y) ?? 0, until));
    }
  }

  allowed(src: number, dst: number): boolean {
    const until = this.pairs.get(src)?.get(dst);
    return until !== undefined && until > this.now();
  }

  /** One packet of src's budget. */
  take(src: number): boolean {
    const now = this.now();
    let b = this.buckets.get(src);
    if (!b) this.buckets.set(src, (b = { tokens: this.rate, at: now }));
    b.tokens = Math.min(this.rate, b.tokens + ((now - b.at) / 1000) * this.rate);
    b.at = now;
    if (b.tokens < 1) return false;
    b.tokens--;
    return true;
  }

  /** Pairs with a live allocation (each direction counted). */
  get size(): number {
    let n = 0;
    const now = this.now();
    for (const m of this.pairs.values()) for (const until of m.values()) if (until > now) n++;
    return n;
  }

  /** Forgets expired allocations and idle budgets. */
  prune(): void {
    const now = this.now();
    for (const [src, m] of this.pairs) {
      for (const [dst, until] of m) if (until <= now) m.delete(dst);
      if (m.size === 0) {
        this.pairs.delete(src);
        this.buckets.delete(src);
      }
    }
  }
}
