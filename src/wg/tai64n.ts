// TAI64N timestamps (paper 5.4.2): 8 bytes of big-endian seconds since 1970 offset by 2^62 + 10,
// then 4 bytes of big-endian nanoseconds. Like wireguard-go, the nanoseconds are whitened to a
// multiple of 2^24 so the timestamp does not leak the sender's clock to sub-16ms precision.
const BASE = 0x400000000000000an;
const WHITENER = 0x1000000;

export function stamp(nowWallMs: number): Buffer {
  const seconds = Math.floor(nowWallMs / 1000);
  const nanos = Math.floor((nowWallMs - seconds * 1000) * 1e6);
  const out = Buffer.alloc(12);
  out.writeBigUInt64BE(BASE + BigInt(seconds), 0);
  out.writeUInt32BE(nanos - (nanos % WHITENER), 8);
  return out;
}

/** True when timestamp a is strictly later than b. */
export function after(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.compare(a, b) > 0;
}
