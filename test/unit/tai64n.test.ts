import { test } from 'node:test';
import assert from 'node:assert/strict';
import { after, stamp, TIMESTAMP_SIZE } from '../../src/wg/tai64n.js';

const BASE = 0x400000000000000an; // 2^62 + 10

test('layout: big-endian seconds + 2^62 + 10, then big-endian nanoseconds', () => {
  const t = stamp(0);
  assert.equal(t.length, TIMESTAMP_SIZE);
  assert.equal(t.toString('hex'), '400000000000000a00000000');
  const now = Date.UTC(2024, 0, 2, 3, 4, 5, 0);
  const s = stamp(now);
  assert.equal(s.readBigUInt64BE(0), BASE + BigInt(now / 1000));
  assert.equal(s.readUInt32BE(8), 0);
  // far future: the seconds cross 2^32 and carry into the high word
  const future = 2 ** 32 * 1000 + 1234;
  assert.equal(stamp(future).readBigUInt64BE(0), BASE + 2n ** 32n + 1n);
  // before 1970 the offset keeps the seconds positive
  assert.equal(stamp(-1000).readBigUInt64BE(0), BASE - 1n);
  assert.equal(stamp(-1).readBigUInt64BE(0), BASE - 1n, 'floor, not truncation');
});

test('nanoseconds are whitened to a multiple of 2^24', () => {
  for (const ms of [1, 16, 17, 499, 500, 999]) {
    const nanos = stamp(1_700_000_000_000 + ms).readUInt32BE(8);
    assert.equal(nanos % 2 ** 24, 0, `${ms} ms`);
    assert.ok(nanos <= ms * 1e6 && ms * 1e6 - nanos < 2 ** 24, `${ms} ms rounds down by less than 2^24 ns`);
  }
  assert.equal(stamp(1_700_000_000_000 + 999).readUInt32BE(8), Math.floor(999e6 / 2 ** 24) * 2 ** 24);
  assert.deepEqual(stamp(1_700_000_000_001), stamp(1_700_000_000_016), 'within one 16.8 ms step: equal');
});

test('after is strict and follows time across seconds and whitening steps', () => {
  const t0 = 1_700_000_000_000;
  assert.ok(after(stamp(t0 + 17), stamp(t0)), 'the next whitening step');
  assert.ok(!after(stamp(t0), stamp(t0 + 17)));
  assert.ok(!after(stamp(t0), stamp(t0)), 'equal is not after');
  assert.ok(!after(stamp(t0 + 5), stamp(t0)), 'inside one step: not after (a replay to the responder)');
  assert.ok(after(stamp(t0 + 1000), stamp(t0 + 999)), 'next second beats the largest nanoseconds');
  assert.ok(after(stamp(2 ** 32 * 1000), stamp(2 ** 32 * 1000 - 1000)), 'across the low-word carry');
  assert.ok(after(stamp(0), Buffer.alloc(12)), 'any stamp is after the all-zero initial state');
});

test('after refuses timestamps of the wrong size; stamp refuses non-finite times', () => {
  assert.ok(!after(stamp(1000).subarray(0, 11), Buffer.alloc(12)));
  assert.ok(!after(stamp(1000), Buffer.alloc(11)));
  assert.ok(!after(Buffer.alloc(0), Buffer.alloc(0)));
  assert.throws(() => stamp(Number.NaN), RangeError);
  assert.throws(() => stamp(Infinity), RangeError);
});
