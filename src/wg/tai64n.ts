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
