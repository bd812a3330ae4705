// TAI64N timestamps (paper section 5.4.2), the initiator's proof that an initiation is newer than
// the last one the responder accepted: 8 bytes of big-endian seconds since 1970 offset by
// 2^62 + 10 (wireguard-go's base 0x400000000000000a), then 4 bytes of big-endian nanoseconds.
// Big-endian throughout, so "later" is a plain byte comparison.
//
// Like wireguard-go (tai64n.go, whitenerMask) the nanoseconds are rounded down to a multiple of
// 2^24 ns (about 16.8 ms), so the timestamp does not leak the sender's clock more finely than that.

export const TIMESTAMP_SIZE = 12;

const BASE_HI = 0x40000000; // the high 32 bits of 2^62 + 10
const BASE_LO = 10;
const TWO_32 = 2 ** 32;
const WHITENER_MASK = 0xffffff; // 2^24 - 1

/** The timestamp of a wall-clock time in milliseconds since the Unix epoch. */
export function stamp(nowMs: number): Buffer {
  if (!Number.isFinite(nowMs)) throw new RangeError(`tai64n: time ${nowMs}`);
  const ms = Math.floor(nowMs);
  const seconds = Math.floor(ms / 1000);
  const nanos = (ms - seconds * 1000) * 1_000_000;
  // Seconds + base as two 32-bit halves: floor division keeps times before 1970 right too.
  const low = seconds + BASE_LO;
  const carry = Math.floor(low / TWO_32);
  const out = Buffer.alloc(TIMESTAMP_SIZE);
  out.writeUInt32BE(BASE_HI + carry, 0);
  out.writeUInt32BE(low - carry * TWO_32, 4);
  out.writeUInt32BE(nanos - (nanos & WHITENER_MASK), 8);
  return out;
}

/** True when timestamp a is strictly later than b; false if either is not 12 bytes. */
export function after(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== TIMESTAMP_SIZE || b.length !== TIMESTAMP_SIZE) return false;
  for (let i = 0; i < TIMESTAMP_SIZE; i++) {
    if (a[i] !== b[i]) return a[i] > b[i];
  }
  return false;
}

/** One whitening step: the smallest increase a whitened timestamp can show. */
const STEP_NS = WHITENER_MASK + 1;

/** `ts` plus one whitening step (carrying into the seconds). */
export function nextAfter(ts: Uint8Array): Buffer {
  const out = Buffer.from(ts);
  let nanos = out.readUInt32BE(8) + STEP_NS;
  let hi = out.readUInt32BE(0);
  let lo = out.readUInt32BE(4);
  if (nanos >= 1_000_000_000) {
    nanos -= 1_000_000_000;
    lo += 1;
    if (lo >= TWO_32) { lo -= TWO_32; hi += 1; }
  }
  out.writeUInt32BE(hi, 0);
  out.writeUInt32BE(lo, 4);
  out.writeUInt32BE(nanos - (nanos & WHITENER_MASK), 8);
  return out;
}

/**
 * Timestamps that only go up, whatever the wall clock does (a responder refuses an initiation
 * that is not later than the last one it accepted from us, so after a clock jump back our
 * rekeys would be refused until the clock caught up: minutes, or days). The next stamp is the
 * wall clock's, or one whitening step after the last one given out, whichever is later.
 *
 * Across restarts the last one given out is gone, so the source starts from a floor the caller
 * keeps (the daemon: its store): `reserve` is called before a stamp passes the current floor,
 * with a new floor a while ahead (RESERVE_MS), and the source does not hand out that stamp until
 * a floor is reserved: it raises its own floor at once and the caller persists it (in the
 * background). Every stamp given out is below the last floor reserved, so a restart that begins
 * above the stored floor never goes back. (A crash in the moment between a reservation and its
 * write can: peers then refuse our initiations until our stamps pass theirs, as after a jump
 * without this source.)
 */
export class MonotonicStamps {
  static readonly RESERVE_MS = 10 * 60_000;
  #last: Buffer | null;
  #floor: Buffer | null;

  constructor(private readonly opts: { floor?: Uint8Array | null; reserve?: (floor: Buffer) => void } = {}) {
    const f = opts.floor && opts.floor.length === TIMESTAMP_SIZE ? Buffer.from(opts.floor) : null;
    this.#last = f;
    this.#floor = f;
  }

  /** The next timestamp for an initiation, at wall-clock time `wallMs`. */
  next(wallMs: number): Buffer {
    let ts = stamp(wallMs);
    if (this.#last !== null && !after(ts, this.#last)) ts = nextAfter(this.#last);
    this.#last = ts;
    if (this.opts.reserve && (this.#floor === null || !after(this.#floor, ts))) {
      // The floor the next start begins above: this stamp plus a while.
      const ahead = stamp(Math.max(wallMs, unstampMs(ts)) + MonotonicStamps.RESERVE_MS);
      this.#floor = ahead;
      this.opts.reserve(ahead);
    }
    return ts;
  }

  /** The last timestamp handed out, if any. */
  get last(): Buffer | null {
    return this.#last;
  }
}

/** Milliseconds since the Unix epoch of a timestamp (the inverse of stamp, to the whitening). */
export function unstampMs(ts: Uint8Array): number {
  const b = Buffer.from(ts);
  const seconds = (b.readUInt32BE(0) - BASE_HI) * TWO_32 + b.readUInt32BE(4) - BASE_LO;
  return seconds * 1000 + Math.floor(b.readUInt32BE(8) / 1_000_000);
}
