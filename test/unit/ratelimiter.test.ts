import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RateLimiter, RATELIMITER_GC_MS, RATELIMITER_MAX_ENTRIES } from '../../src/wg/ratelimiter.js';
import { addrFromString } from '../../src/wg/endpoint.js';

const a = (ip: string) => addrFromString(ip); // 16 bytes, IPv4 mapped

/** How many of `n` packets sent at `t` are allowed. */
function burst(r: RateLimiter, ip: Buffer, t: number, n: number): number {
  let allowed = 0;
  for (let i = 0; i < n; i++) if (r.allow(ip, 0, t)) allowed++;
  return allowed;
}

test('a source gets a burst of 5, then one packet per 50 ms (20 per second)', () => {
  const r = new RateLimiter();
  const ip = a('192.0.2.1');
  assert.equal(burst(r, ip, 1000, 10), 5);
  assert.ok(!r.allow(ip, 0, 1049), '49 ms later: not yet');
  assert.ok(r.allow(ip, 0, 1050), '50 ms after the burst');
  assert.ok(!r.allow(ip, 0, 1050));
  // steady state: over 10 s at 100 attempts per second, about 20 per second get through
  let allowed = 0;
  for (let t = 2000; t < 12_000; t += 10) if (r.allow(ip, 0, t)) allowed++;
  assert.ok(allowed >= 200 && allowed <= 205, `${allowed} in 10 s`);
  // credit is capped at the burst: after a long pause, 5 again, not more
  assert.equal(burst(r, ip, 60_000, 10), 5);
});

test('sources are independent; IPv6 is limited per /64', () => {
  const r = new RateLimiter();
  assert.equal(burst(r, a('192.0.2.1'), 0, 10), 5);
  assert.equal(burst(r, a('192.0.2.2'), 0, 10), 5, 'another IPv4 address');
  assert.equal(burst(r, a('2001:db8:1:2::1'), 0, 3), 3);
  assert.equal(burst(r, a('2001:db8:1:2:ffff::9'), 0, 10), 2, 'the same /64 shares the bucket');
  assert.equal(burst(r, a('2001:db8:1:3::1'), 0, 10), 5, 'the next /64 does not');
  assert.equal(burst(r, a('::ffff:192.0.2.3'), 0, 10), 5);
  assert.equal(r.size, 5);
});

test('the address is read at an offset, as batches carry it', () => {
  const r = new RateLimiter();
  const batchAddrs = Buffer.alloc(48);
  a('198.51.100.7').copy(batchAddrs, 16);
  a('198.51.100.7').copy(batchAddrs, 32);
  let allowed = 0;
  for (let i = 0; i < 3; i++) if (r.allow(batchAddrs, 16, 0)) allowed++;
  for (let i = 0; i < 3; i++) if (r.allow(batchAddrs, 32, 0)) allowed++;
  assert.equal(allowed, 5, 'both slots are one source');
  assert.ok(r.allow(batchAddrs, 0, 0), 'slot 0 (::) is another');
});

test('malformed input: an address out of bounds is refused without throwing', () => {
  const r = new RateLimiter();
  assert.ok(!r.allow(Buffer.alloc(15), 0, 0));
  assert.ok(!r.allow(Buffer.alloc(32), 17, 0));
  assert.ok(!r.allow(Buffer.alloc(32), -1, 0));
  assert.equal(r.size, 0);
});

test('a clock that steps back neither throws nor mints credit', () => {
  const r = new RateLimiter();
  const ip = a('192.0.2.1');
  assert.equal(burst(r, ip, 10_000, 5), 5);
  assert.ok(!r.allow(ip, 0, 5_000));
  assert.ok(!r.allow(ip, 0, 10_049), 'still measured from the latest time');
  assert.ok(r.allow(ip, 0, 10_050));
});

test('gc drops entries idle for more than a second, sweeping at most once a second', () => {
  const r = new RateLimiter();
  r.allow(a('192.0.2.1'), 0, 0);
  r.gc(1000); // first sweep: idle for exactly 1 s is kept
  assert.equal(r.size, 1);
  r.allow(a('192.0.2.2'), 0, 1200);
  r.gc(1500); // too soon after the last sweep: does nothing, though the first entry is now idle
  assert.equal(r.size, 2);
  r.gc(1000 + RATELIMITER_GC_MS);
  assert.equal(r.size, 1, 'the entry last seen at 0 is gone');
  r.gc(3000);
  assert.equal(r.size, 0);
  // a forgotten source starts over with a full burst
  assert.equal(burst(r, a('192.0.2.1'), 3000, 10), 5);
});

test('the table is capped: new sources are refused while it is full, known ones still served', () => {
  const r = new RateLimiter();
  const ip = Buffer.alloc(16);
  ip[10] = ip[11] = 0xff;
  for (let i = 0; i < RATELIMITER_MAX_ENTRIES; i++) {
    ip.writeUInt32BE(i, 12);
    assert.ok(r.allow(ip, 0, 0));
  }
  assert.equal(r.size, RATELIMITER_MAX_ENTRIES);
  ip.writeUInt32BE(RATELIMITER_MAX_ENTRIES, 12);
  assert.ok(!r.allow(ip, 0, 0), 'a new source while full');
  ip.writeUInt32BE(7, 12);
  assert.ok(r.allow(ip, 0, 0), 'a known source');
  r.gc(2000);
  assert.equal(r.size, 0);
  ip.writeUInt32BE(RATELIMITER_MAX_ENTRIES, 12);
  assert.ok(r.allow(ip, 0, 2000), 'room again after gc');
});
