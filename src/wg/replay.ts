// The sliding window against replayed transport packets (paper 5.4.6), as RFC 6479 describes
// and wireguard-go's replay.Filter implements: a ring of 32-bit blocks, where moving the window
// forward clears whole blocks instead of shifting bits. Window: (RING_BLOCKS - 1) * 32 = 8160
// packets, above the 2048 the paper asks for, so heavy reordering on fast links is tolerated.
const BLOCK_BITS = 32;
const RING_BLOCKS = 256; // a power of two
const WINDOW = (RING_BLOCKS - 1) * BLOCK_BITS;

export const REPLAY_WINDOW = WINDOW;

export class ReplayFilter {
  private last = 0;
  private readonly ring = new Uint32Array(RING_BLOCKS);

  reset(): void {
    this.last = 0;
    this.ring.fill(0);
  }

  /**
   * Accepts a counter once: true if it is new and inside the window (and marks it), false for a
   * replay, a counter too old for the window, or one at or above `limit`. Counters are JS numbers;
   * the caller rejects anything at or above 2^53 before it gets here.
   */
  validateCounter(counter: number, limit: number): boolean {
    if (counter >= limit) return false;
    const index = Math.floor(counter / BLOCK_BITS);
    if (counter > this.last) {
      // Move the window forward, clearing the blocks it passes (at most the whole ring).
      const current = Math.floor(this.last / BLOCK_BITS);
      const diff = Math.min(index - current, RING_BLOCKS);
      for (let i = 1; i <= diff; i++) this.ring[(current + i) & (RING_BLOCKS - 1)] = 0;
      this.last = counter;
    } else if (this.last - counter > WINDOW) {
      return false;
    }
    const block = index & (RING_BLOCKS - 1);
    const bit = 1 << (counter % BLOCK_BITS);
    const old = this.ring[block];
    if ((old & bit) !== 0) return false;
    this.ring[block] = old | bit;
    return true;
  }
}
