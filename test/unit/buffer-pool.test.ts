// The daemon's Buffer pool (src/daemon/buffer-pool.ts): small buffers made after the daemon
// starts are slices of 8 KB pools, so one kept for ever pins 8 KB, not Node 22+'s 64 KB.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { run } from './helpers/run.js';

test('after useSmallBufferPool, a small buffer kept pins an 8 KB pool whatever node made the default', { timeout: 30_000 }, async () => {
  const script = `
    const { useSmallBufferPool, POOL_BYTES } = await import(${JSON.stringify(new URL('../../src/daemon/buffer-pool.js', import.meta.url).href)});
    const before = Buffer.from('x').buffer.byteLength;
    useSmallBufferPool();
    // Use up the pool node started with; the next ones are the new size.
    const kept = [];
    for (let i = 0; i < 70_000 / 16; i++) kept.push(Buffer.from(new Uint8Array(16)));
    const after = new Set(kept.slice(-100).map((b) => b.buffer.byteLength));
    console.log(JSON.stringify({ before, after: [...after], pool: POOL_BYTES, bigIsOwn: Buffer.from(new Uint8Array(5000)).buffer.byteLength }));
  `;
  const r = await run(process.execPath, ['--input-type=module', '-e', script]);
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { before: number; after: number[]; pool: number; bigIsOwn: number };
  assert.ok(out.before === 8192 || out.before === 65536, `node's own pool: ${out.before}`);
  assert.deepEqual(out.after, [8192]);
  assert.equal(out.pool, 8192);
  assert.equal(out.bigIsOwn, 5000, 'a buffer of half the pool or more has its own ArrayBuffer');
});
