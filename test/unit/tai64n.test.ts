import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MonotonicStamps, after, nextAfter, stamp, unstampMs, TIMESTAMP_SIZE } from '../../src/wg/tai64n.js';

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

test('nextAfter is one whitening step later, carrying into the seconds', () => {
  const t = stamp(Date.UTC(2025, 5, 1, 0, 0, 0, 500));
  const n = nextAfter(t);
  assert.ok(after(n, t));
  assert.equal(n.readUInt32BE(8) - t.readUInt32BE(8), 2 ** 24);
  const edge = stamp(Date.UTC(2025, 5, 1, 0, 0, 0, 990)); // 990 ms: the next step crosses the second
  const e = nextAfter(edge);
  assert.equal(e.readBigUInt64BE(0), edge.readBigUInt64BE(0) + 1n);
  assert.ok(e.readUInt32BE(8) < 2 ** 25);
  assert.equal(unstampMs(stamp(1_700_000_123_456)), 1_700_000_123_452, 'ms back, to the whitening');
});

test('monotonic stamps: the wall clock when it moves on, one step after the last when it does not', () => {
  const s = new MonotonicStamps();
  const t0 = 1_700_000_000_000;
  const a = s.next(t0);
  const b = s.next(t0); // same millisecond
  const c = s.next(t0 - 86_400_000); // a day back
  const d = s.next(t0 - 86_400_000 + 5);
  assert.ok(after(b, a) && after(c, b) && after(d, c), 'strictly increasing');
  const later = s.next(t0 + 60_000);
  assert.deepEqual(later, stamp(t0 + 60_000), 'back on the wall clock once it is ahead again');
});

test('monotonic stamps across a restart: the reserved floor is where the next run begins', () => {
  const reserved: Buffer[] = [];
  const t0 = 1_700_000_000_000;
  const first = new MonotonicStamps({ reserve: (f) => reserved.push(f) });
  const used = [first.next(t0), first.next(t0 + 1000), first.next(t0 + 2000)];
  assert.equal(reserved.length, 1, 'one reservation covers the next 10 minutes');
  assert.ok(after(reserved[0], used[2]));
  first.next(t0 + MonotonicStamps.RESERVE_MS + 1000);
  assert.equal(reserved.length, 2, 'and a new one when they are used up');
  // The machine restarts with its clock an hour behind: the next stamp is still later than any
  // the last run gave out.
  const second = new MonotonicStamps({ floor: reserved[1], reserve: (f) => reserved.push(f) });
  const next = second.next(t0 - 3_600_000);
  assert.ok(after(next, reserved[1]));
  assert.ok(after(next, first.last!));
});
