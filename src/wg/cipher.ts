// Batched ChaCha20-Poly1305 for transport data (paper 5.4.6): the one piece of per-packet
// cryptography. Two implementations of one small interface: NativeCipher seals a whole batch in
// one call into the addon (OpenSSL EVP), NobleCipher is the pure-TypeScript reference. A
// differential test holds them to identical bytes.
//
// Slot i's bytes [slot + offset[i], + length[i]) are sealed in place and its 16-byte tag written
// right after them; open() takes the same region with the tag as its last 16 bytes and decrypts in
// place. keys holds slot i's key at i*32; counters[i] is the nonce counter. Slots with a negative
// length (for open: shorter than a tag) are skipped.
import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { SLOT_SIZE, type PacketBatch } from './batch.js';
import { native } from './native.js';

export interface BatchCipher {
  seal(batch: PacketBatch, keys: Buffer, counters: BigUint64Array, count: number): void;
  open(batch: PacketBatch, keys: Buffer, counters: BigUint64Array, ok: Uint8Array, count: number): void;
}

export class NobleCipher implements BatchCipher {
  private readonly nonce = new Uint8Array(12);
  private readonly nonceView = new DataView(this.nonce.buffer);

  private setNonce(counter: bigint): Uint8Array {
    this.nonceView.setBigUint64(4, counter, true);
    return this.nonce;
  }

  seal(batch: PacketBatch, keys: Buffer, counters: BigUint64Array, count: number): void {
    for (let i = 0; i < count; i++) {
      const len = batch.length[i];
      if (len < 0) continue;
      const start = i * SLOT_SIZE + batch.offset[i];
      const key = keys.subarray(i * 32, i * 32 + 32);
      const region = batch.data.subarray(start, start + len + 16);
      chacha20poly1305(key, this.setNonce(counters[i])).encrypt(region.subarray(0, len), region);
    }
  }

  open(batch: PacketBatch, keys: Buffer, counters: BigUint64Array, ok: Uint8Array, count: number): void {
    for (let i = 0; i < count; i++) {
      ok[i] = 0;
      const len = batch.length[i];
      if (len < 16) continue;
      const start = i * SLOT_SIZE + batch.offset[i];
      const key = keys.subarray(i * 32, i * 32 + 32);
      const sealed = batch.data.subarray(start, start + len);
      try {
        chacha20poly1305(key, this.setNonce(counters[i])).decrypt(sealed, sealed.subarray(0, len - 16));
        ok[i] = 1;
      } catch {
        // not authentic: ok stays 0
      }
    }
  }
}

export class NativeCipher implements BatchCipher {
  private readonly addon = native();

  seal(batch: PacketBatch, keys: Buffer, counters: BigUint64Array, count: number): void {
    this.addon.sealBatch(batch.data, SLOT_SIZE, batch.offset, batch.length, keys, counters, count);
  }

  open(batch: PacketBatch, keys: Buffer, counters: BigUint64Array, ok: Uint8Array, count: number): void {
    this.addon.openBatch(batch.data, SLOT_SIZE, batch.offset, batch.length, keys, counters, ok, count);
  }
}

export function createCipher(kind: 'native' | 'noble'): BatchCipher {
  return kind === 'native' ? new NativeCipher() : new NobleCipher();
}
