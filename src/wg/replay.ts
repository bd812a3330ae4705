// The sliding window against replayed transport packets (paper section 5.4.6), as RFC 6479
// describes and wireguard-go's replay.Filter and the kernel's counter_validate implement: a ring
// of bitmap blocks in which moving the window forward clears whole blocks instead of shifting
// bits. The caller runs it after a packet authenticated, so only genuine counters move it.
//
// Geometry: 256 blocks of 32 bits (a Uint32Array), one block of which is always being recycled,
// so the window is (256 - 1) * 32 = 8160 counters: the kernel's COUNTER_WINDOW_SIZE on a machine
// with 32-bit longs (8192 - 32). wireguard-go uses 128 blocks of 64 bits, (128 - 1) * 64 = 8128.
// Both are far above the 2048 the paper asks for, so heavy reordering on fast links is tolerated.
//
// Counters are JS numbers, not bigints, so this hot path allocates nothing: counters at or above
// 2^53 are rejected outright. The paper's REJECT_AFTER_MESSAGES (2^64 - 2^13 - 1) is never the
// binding limit in practice: REJECT_AFTER_TIME ends a session after 180 s, under 10^9 packets
// even at tens of Gbit/s, while 2^53 is about 9 * 10^15.
const BLOCK_BITS = 32;
const RING_BLOCKS = 256; // a power of two
const BLOCK_MASK = RING_BLOCKS - 1;

/** Counters accepted behind the highest one seen. */
export const REPLAY_WINDOW = (RING_BLOCKS - 1) * BLOCK_BITS;

export class ReplayFilter {
  /** Highest counter accepted so far. */
  private last = 0;
  private readonly ring = new Uint32Array(RING_BLOCKS);

  /** Forgets all counters, for a new keypair. */
  reset(): void {
    this.last = 0;
    this.ring.fill(0);
  }

  /**
   * Accepts a counter once: true if it is new and inside the window (and marks it seen); false
   * for a replay, a counter too far behind the window, one at or above `limit`, or anything that
   * is not an integer in [0, 2^53).
   */
  validateCounter(counter: number, limit: number): boolean {
    if (!(counter < limit) || !Number.isSafeInteger(counter) || counter < 0) return false;
    const block = Math.floor(counter / BLOCK_BITS);
    if (counter > this.last) {
      // Move the window forward, clearing the blocks it enters; a jump of a whole ring or more
      // clears them all.
      const current = Math.floor(this.last / BLOCK_BITS);
      const advance = Math.min(block - current, RING_BLOCKS);
      for (let i = 1; i <= advance; i++) this.ring[(current + i) & BLOCK_MASK] = 0;
      this.last = counter;
    } else if (this.last - counter > REPLAY_WINDOW) {
      return false;
    }
    const index = block & BLOCK_MASK;
    const bit = 1 << (counter - block * BLOCK_BITS);
    const old = this.ring[index];
    if ((old & bit) !== 0) return false;
    this.ring[index] = old | bit;
    return true;
  }
}
