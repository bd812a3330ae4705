// Batched ChaCha20-Poly1305 for transport data (paper 5.4.6): the one piece of per-packet
// cryptography. Two implementations of one small interface: NativeCipher seals a whole batch in
// one call into the addon (OpenSSL EVP), NobleCipher is the pure-TypeScript reference. A
// differential test holds them to identical bytes.
//
// Slot i's bytes [slot + offset[i], + length[i]) are sealed in place and its 16-byte tag written
// right after them; open() takes the same region with the tag as its last 16 bytes and decrypts in
// place. keys holds slot i's key at i*32. The nonce's counter is the transport header's: bytes
// 8..16 of the slot, little-endian, where WireGuard puts it on the wire; so no counter array (and
// no BigInt) is needed. Slots with a negative length (for open: shorter than a tag) are skipped.
import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { SLOT_SIZE, type PacketBatch } from './batch.js';
import { native } from './native.js';

export interface BatchCipher {
  seal(batch: PacketBatch, keys: Buffer, count: number): void;
  open(batch: PacketBatch, keys: Buffer, ok: Uint8Array, count: number): void;
}

export class NobleCipher implements BatchCipher {
  private readonly nonce = new Uint8Array(12);

  private setNonce(batch: PacketBatch, i: number): Uint8Array {
    this.nonce.set(batch.data.subarray(i * SLOT_SIZE + 8, i * SLOT_SIZE + 16), 4);
    return this.nonce;
  }

  seal(batch: PacketBatch, keys: Buffer, count: number): void {
    for (let i = 0; i < count; i++) {
      const len = batch.length[i];
      if (len < 0) continue;
      const start = i * SLOT_SIZE + batch.offset[i];
      const key = keys.subarray(i * 32, i * 32 + 32);
      const region = batch.data.subarray(start, start + len + 16);
      chacha20poly1305(key, this.setNonce(batch, i)).encrypt(region.subarray(0, len), region);
    }
  }

  open(batch: PacketBatch, keys: Buffer, ok: Uint8Array, count: number): void {
    for (let i = 0; i < count; i++) {
      ok[i] = 0;
      const len = batch.length[i];
      if (len < 16) continue;
      const start = i * SLOT_SIZE + batch.offset[i];
      const key = keys.subarray(i * 32, i * 32 + 32);
      const sealed = batch.data.subarray(start, start + len);
      try {
        chacha20poly1305(key, this.setNonce(batch, i)).decrypt(sealed, sealed.subarray(0, len - 16));
        ok[i] = 1;
      } catch {
        // not authentic: ok stays 0
      }
    }
  }
}

export class NativeCipher implements BatchCipher {
  private readonly addon = native();

  seal(batch: PacketBatch, keys: Buffer, count: number): void {
    this.addon.sealBatch(batch.data, SLOT_SIZE, batch.offset, batch.length, keys, count);
  }

  open(batch: PacketBatch, keys: Buffer, ok: Uint8Array, count: number): void {
    this.addon.openBatch(batch.data, SLOT_SIZE, batch.offset, batch.length, keys, ok, count);
  }
}

export function createCipher(kind: 'native' | 'noble'): BatchCipher {
  return kind === 'native' ? new NativeCipher() : new NobleCipher();
}
