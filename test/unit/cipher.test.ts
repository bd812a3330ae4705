// The native batched AEAD against the pure-TypeScript reference: identical bytes, both ways.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, createCipheriv } from 'node:crypto';
import { NativeCipher, NobleCipher } from '../../src/wg/cipher.js';
import { PacketBatch, SLOT_SIZE, HEADROOM } from '../../src/wg/batch.js';

// Lengths at the edges (empty, around the tag size and ChaCha's 64-byte block, the largest), then random.
const EDGE_LENGTHS = [0, 1, 15, 16, 17, 63, 64, 65, 1440];

function randomBatch(n: number) {
  const b = new PacketBatch(n);
  const keys = randomBytes(n * 32);
  for (let i = 0; i < n; i++) {
    const len = EDGE_LENGTHS[i] ?? Math.floor(Math.random() * 1441);
    randomBytes(len).copy(b.data, i * SLOT_SIZE + HEADROOM);
    b.offset[i] = HEADROOM;
    b.length[i] = len;
    // the nonce's counter sits in the transport header, bytes 8..16 of the slot
    b.data.writeBigUInt64LE(BigInt(Math.floor(Math.random() * 2 ** 48)) * 1000n, i * SLOT_SIZE + 8);
  }
  b.count = n;
  return { b, keys };
}

function copyBatch(src: PacketBatch): PacketBatch {
  const b = new PacketBatch(src.capacity);
  src.data.copy(b.data);
  b.offset.set(src.offset);
  b.length.set(src.length);
  b.count = src.count;
  return b;
}

test('native and noble seal a batch to identical bytes, and each opens the other', () => {
  const native = new NativeCipher();
  const noble = new NobleCipher();
  for (let round = 0; round < 5; round++) {
    const { b, keys } = randomBatch(64);
    const plain = copyBatch(b);
    const n1 = copyBatch(b);
    const n2 = copyBatch(b);
    native.seal(n1, keys, 64);
    noble.seal(n2, keys, 64);
    for (let i = 0; i < 64; i++) {
      const len = b.length[i] + 16;
      const s = i * SLOT_SIZE + HEADROOM;
      assert.deepEqual(n1.data.subarray(s, s + len), n2.data.subarray(s, s + len), `slot ${i}`);
      // Encrypted: the ciphertext differs from the plaintext (checked from 8 bytes up: a shorter
      // one equals its plaintext by chance too often, 1 in 256 for a single byte).
      if (b.length[i] >= 8) assert.notDeepEqual(n1.data.subarray(s, s + len - 16), plain.data.subarray(s, s + len - 16));
    }
    for (const [sealed, opener] of [[n1, noble], [n2, native]] as const) {
      for (let i = 0; i < 64; i++) sealed.length[i] += 16;
      const ok = new Uint8Array(64);
      opener.open(sealed, keys, ok, 64);
      for (let i = 0; i < 64; i++) {
        assert.equal(ok[i], 1, `slot ${i} authentic`);
        const s = i * SLOT_SIZE + HEADROOM;
        assert.deepEqual(sealed.data.subarray(s, s + b.length[i]), plain.data.subarray(s, s + b.length[i]));
      }
    }
  }
});

test('a flipped bit in ciphertext or tag, a wrong key or counter fails authentication in both', () => {
  for (const cipher of [new NativeCipher(), new NobleCipher()]) {
    const { b, keys } = randomBatch(8);
    cipher.seal(b, keys, 8);
    for (let i = 0; i < 8; i++) b.length[i] += 16;
    b.data[1 * SLOT_SIZE + HEADROOM] ^= 1; // slot 1: ciphertext (or tag, if empty)
    b.data[2 * SLOT_SIZE + HEADROOM + b.length[2] - 1] ^= 0x80; // slot 2: last tag byte
    keys[3 * 32] ^= 1; // slot 3: wrong key
    b.data[4 * SLOT_SIZE + 8] ^= 1; // slot 4: wrong nonce
    b.length[5] = 15; // slot 5: shorter than a tag
    const ok = new Uint8Array(8);
    cipher.open(b, keys, ok, 8);
    assert.deepEqual([...ok], [1, 0, 0, 0, 0, 0, 1, 1]);
  }
});

test('matches node:crypto ChaCha20-Poly1305 with the WireGuard nonce (counter little-endian at slot+8)', () => {
  const key = randomBytes(32);
  const plain = randomBytes(100);
  const counter = 0x0123456789abcdefn;
  const nonce = Buffer.alloc(12);
  nonce.writeBigUInt64LE(counter, 4);
  const c = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
  c.setAAD(Buffer.alloc(0), { plaintextLength: plain.length });
  const expected = Buffer.concat([c.update(plain), c.final(), c.getAuthTag()]);
  for (const cipher of [new NativeCipher(), new NobleCipher()]) {
    const b = new PacketBatch(1);
    plain.copy(b.data, HEADROOM);
    b.offset[0] = HEADROOM;
    b.length[0] = 100;
    b.data.writeBigUInt64LE(counter, 8);
    b.count = 1;
    cipher.seal(b, Buffer.from(key), 1);
    assert.deepEqual(b.data.subarray(HEADROOM, HEADROOM + 116), expected);
  }
});

test('skipped slots are left alone: length < 0 on seal, length < 16 on open', () => {
  for (const cipher of [new NativeCipher(), new NobleCipher()]) {
    const { b, keys } = randomBatch(4);
    b.length[2] = -1;
    const before = Buffer.from(b.data);
    cipher.seal(b, keys, 4);
    const s2 = 2 * SLOT_SIZE;
    assert.deepEqual(b.data.subarray(s2, s2 + SLOT_SIZE), before.subarray(s2, s2 + SLOT_SIZE));
    const ok = new Uint8Array(4).fill(9);
    b.length[0] = 16; // slot 0 held an empty packet: its tag alone, authentic
    b.length[1] = 15; // shorter than a tag
    b.length[3] = -1;
    const snapshot = Buffer.from(b.data);
    cipher.open(b, keys, ok, 4);
    assert.deepEqual([...ok], [1, 0, 0, 0]);
    const s3 = 3 * SLOT_SIZE;
    assert.deepEqual(b.data.subarray(s3, s3 + SLOT_SIZE), snapshot.subarray(s3, s3 + SLOT_SIZE));
  }
});
