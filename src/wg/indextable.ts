// Receiver indices (paper 5.4.1): random 32-bit numbers we hand out in handshake messages so the
// other side names our state in every reply and transport packet. Each index points at a peer and
// at either its pending handshake or one of its keypairs.
import { randomInt } from 'node:crypto';
import type { Keypair } from './keypair.js';

export interface IndexEntry<P> {
  peer: P;
  keypair: Keypair | null; // null while the index belongs to a handshake in progress
}

export class IndexTable<P> {
  private readonly table = new Map<number, IndexEntry<P>>();

  /** A fresh random index not in use. */
  newIndex(peer: P): number {
    for (;;) {
      const index = randomInt(0, 2 ** 32 - 1) >>> 0;
      if (index !== 0 && !this.table.has(index)) {
        this.table.set(index, { peer, keypair: null });
        return index;
      }
    }
  }

  get(index: number): IndexEntry<P> | undefined {
    return this.table.get(index);
  }

  /** The index now names this keypair (the handshake that held it is done). */
  bindKeypair(index: number, peer: P, keypair: Keypair): void {
    this.table.set(index, { peer, keypair });
  }

  delete(index: number): void {
    if (index !== 0) this.table.delete(index);
  }

  get size(): number {
    return this.table.size;
  }
}
