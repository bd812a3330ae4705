// Transport-data AEAD throughput at 1420-byte packets, sealing and opening batches of 64:
// NativeCipher (one addon call per batch, OpenSSL EVP), NobleCipher (pure TypeScript) and
// node:crypto createCipheriv per packet (what a data path without the addon would use).
// Run: npx tsc -p . && node dist/bench/cipher.js [seconds per case, default 1]
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { BATCH_SIZE, HEADROOM, PacketBatch, SLOT_SIZE } from '../src/wg/batch.js';
import { NativeCipher, NobleCipher, type BatchCipher } from '../src/wg/cipher.js';

const PACKET = 1420;
const seconds = Number(process.argv[2] ?? 1);

/** node:crypto, one cipher object per packet, behind the same batch interface. */
class NodeCryptoCipher implements BatchCipher {
  private readonly nonce = Buffer.alloc(12);

  private setNonce(b: PacketBatch, i: number): Buffer {
    b.data.copy(this.nonce, 4, i * SLOT_SIZE + 8, i * SLOT_SIZE + 16);
    return this.nonce;
  }

  seal(b: PacketBatch, keys: Buffer, count: number): void {
    for (let i = 0; i < count; i++) {
      const start = i * SLOT_SIZE + b.offset[i];
      const len = b.length[i];
      const c = createCipheriv('chacha20-poly1305', keys.subarray(i * 32, i * 32 + 32), this.setNonce(b, i), { authTagLength: 16 });
      c.update(b.data.subarray(start, start + len)).copy(b.data, start);
      c.final();
      c.getAuthTag().copy(b.data, start + len);
    }
  }

  open(b: PacketBatch, keys: Buffer, ok: Uint8Array, count: number): void {
    for (let i = 0; i < count; i++) {
      const start = i * SLOT_SIZE + b.offset[i];
      const body = b.length[i] - 16;
      const d = createDecipheriv('chacha20-poly1305', keys.subarray(i * 32, i * 32 + 32), this.setNonce(b, i), { authTagLength: 16 });
      d.setAuthTag(b.data.subarray(start + body, start + body + 16));
      d.update(b.data.subarray(start, start + body)).copy(b.data, start);
      try {
        d.final();
        ok[i] = 1;
      } catch {
        ok[i] = 0;
      }
    }
  }
}

function batch(): { b: PacketBatch; keys: Buffer } {
  const b = new PacketBatch(BATCH_SIZE);
  for (let i = 0; i < BATCH_SIZE; i++) {
    randomBytes(PACKET).copy(b.data, i * SLOT_SIZE + HEADROOM);
    b.data.writeBigUInt64LE(BigInt(i), i * SLOT_SIZE + 8);
    b.offset[i] = HEADROOM;
  }
  b.count = BATCH_SIZE;
  return { b, keys: randomBytes(BATCH_SIZE * 32) };
}

/** MB/s of payload for seal+open round trips (the payload is counted once per direction). */
function measure(cipher: BatchCipher): { seal: number; open: number } {
  const { b, keys } = batch();
  const ok = new Uint8Array(BATCH_SIZE);
  let sealNs = 0n;
  let openNs = 0n;
  let rounds = 0;
  const end = Date.now() + seconds * 1000;
  while (Date.now() < end) {
    b.length.fill(PACKET);
    let t = process.hrtime.bigint();
    cipher.seal(b, keys, BATCH_SIZE);
    sealNs += process.hrtime.bigint() - t;
    b.length.fill(PACKET + 16);
    t = process.hrtime.bigint();
    cipher.open(b, keys, ok, BATCH_SIZE);
    openNs += process.hrtime.bigint() - t;
    if (ok.indexOf(0) !== -1) throw new Error('bench: a packet failed to open');
    rounds++;
  }
  const bytes = rounds * BATCH_SIZE * PACKET;
  return { seal: bytes / Number(sealNs) * 1e3, open: bytes / Number(openNs) * 1e3 };
}

const results = new Map<string, { seal: number; open: number }>();
for (const [name, cipher] of [
  ['native (batch, EVP)', new NativeCipher()],
  ['node:crypto (per packet)', new NodeCryptoCipher()],
  ['noble (pure TS)', new NobleCipher()],
] as const) {
  measure(cipher); // warm up
  results.set(name, measure(cipher));
}
const native = results.get('native (batch, EVP)')!;
console.log(`ChaCha20-Poly1305, ${PACKET}-byte packets, batches of ${BATCH_SIZE}, ${seconds}s per case`);
for (const [name, r] of results) {
  const usPerPacket = (mbs: number) => (PACKET / mbs).toFixed(2);
  console.log(
    `${name.padEnd(26)} seal ${r.seal.toFixed(0).padStart(5)} MB/s (${usPerPacket(r.seal)} us/pkt, native x${(native.seal / r.seal).toFixed(1)})` +
      `   open ${r.open.toFixed(0).padStart(5)} MB/s (${usPerPacket(r.open)} us/pkt, native x${(native.open / r.open).toFixed(1)})`,
  );
}
