// Handshake floods against the sans-I/O device: initiations with a valid mac1 (anyone who knows a
// member's public key can make them) from one source and from thousands of spoofed ones, while a
// real peer keeps sending data and rekeys. What must hold: the flood costs no Diffie-Hellman work
// once the device is under load, the cookie replies it draws stay within their caps, and the real
// peer's traffic and rekeys go on. Also the pieces: the native MAC against noble's, the guard's
// budgets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { blake2s } from '@noble/hashes/blake2.js';
import { Wire, ipv4 } from './wire.js';
import { hash, macInto, macReference } from '../../src/wg/crypto.js';
import { native } from '../../src/wg/native.js';
import { Initiation } from '../../src/wg/messages.js';
import {
  COOKIE_REPLIES_PER_SECOND, HandshakeGuard, TokenBucket, UNDER_LOAD_THRESHOLD,
} from '../../src/wg/handshake-guard.js';
import { addrFromString } from '../../src/wg/endpoint.js';

/** n initiations with random fields and a valid mac1 for `responderPub`, mac2 zero. */
function floodOf(responderPub: Buffer, n: number): Buffer[] {
  const key = hash(Buffer.from('mac1----'), responderPub);
  return Array.from({ length: n }, () => {
    const m = randomBytes(Initiation.size);
    m.writeUInt32LE(1, 0);
    macInto(key, m.subarray(0, Initiation.mac1), m.subarray(Initiation.mac1, Initiation.mac2));
    m.fill(0, Initiation.mac2);
    return m;
  });
}

test('the addon\'s keyed BLAKE2s gives noble\'s bytes for every key, input and output size', () => {
  const addon = native();
  for (let i = 0; i < 300; i++) {
    const key = randomBytes(1 + (i % 32));
    const input = randomBytes(i % 3 === 0 ? i * 7 : i % 150);
    const out = new Uint8Array(1 + ((i * 5) % 32));
    assert.equal(addon.blake2sMac(key, input, out), true);
    assert.deepEqual(Buffer.from(out), Buffer.from(blake2s(input, { key, dkLen: out.length })));
    assert.deepEqual(Buffer.from(macInto(key, input, new Uint8Array(16))), Buffer.from(macReference(key, input)));
  }
  assert.throws(() => addon.blake2sMac(Buffer.alloc(0), Buffer.alloc(1), new Uint8Array(16)), RangeError);
  assert.throws(() => addon.blake2sMac(Buffer.alloc(33), Buffer.alloc(1), new Uint8Array(16)), RangeError);
  assert.throws(() => addon.blake2sMac(Buffer.alloc(32), Buffer.alloc(1), new Uint8Array(33)), RangeError);
  assert.throws(() => (addon.blake2sMac as (...a: unknown[]) => boolean)('key', Buffer.alloc(1), new Uint8Array(16)), TypeError);
});

test('a token bucket gives its burst, then its rate', () => {
  const b = new TokenBucket(10, 3);
  let t = 0;
  assert.deepEqual([b.take(t), b.take(t), b.take(t), b.take(t)], [true, true, true, false]);
  t += 100; // 1 token
  assert.deepEqual([b.take(t), b.take(t)], [true, false]);
  t += 10_000; // full again, never past the burst
  assert.equal([1, 2, 3, 4].filter(() => b.take(t)).length, 3);
});

test('the guard: under load past the threshold, cookie replies capped per source and in all, a peer\'s endpoint never crowded out', () => {
  const g = new HandshakeGuard({ cookieRepliesPerSecond: 100 });
  let t = 1000;
  for (let i = 0; i < UNDER_LOAD_THRESHOLD; i++) assert.equal(g.underLoad(t), false);
  assert.equal(g.underLoad(t), true);
  assert.equal(g.underLoad(t + 999), true, 'sticky');
  assert.equal(g.underLoad(t + 2500), false, 'a quiet second later it is over');

  const one = addrFromString('198.51.100.7');
  const fromOne = Array.from({ length: 50 }, () => g.allowCookieReply(one, 0, t, false)).filter(Boolean).length;
  assert.equal(fromOne, 5, 'one source: a burst of 5');

  // Thousands of spoofed sources: the global budget (100 here, minus the 5 above) caps them.
  let granted = 0;
  for (let i = 0; i < 5000; i++) {
    const a = addrFromString(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
    if (g.allowCookieReply(a, 0, t, false)) granted++;
  }
  assert.equal(granted, 95);
  const peer = addrFromString('203.0.113.9');
  assert.equal(g.allowCookieReply(peer, 0, t, false), false, 'an unknown source: budget spent');
  assert.equal(g.allowCookieReply(peer, 0, t, true), true, 'a peer\'s endpoint: its own limiter');
  t += 1000;
  assert.equal(g.allowHandshake(peer, 0, t, true), true);
});

test('the guard: DH work for messages with a valid mac2 is budgeted in all, per source, and a peer\'s endpoint keeps its share', () => {
  const g = new HandshakeGuard({ handshakesPerSecond: 50 });
  const t = 5000;
  let granted = 0;
  for (let i = 0; i < 3000; i++) if (g.allowHandshake(addrFromString(`10.1.${i >> 8}.${i & 255}`), 0, t, false)) granted++;
  assert.equal(granted, 50, 'sources that really received cookies: the global budget');
  const one = addrFromString('198.51.100.8');
  assert.equal([...Array(40)].filter(() => g.allowHandshake(one, 0, t + 1000, false)).length, 5, 'one source: a burst of 5');
  const peer = addrFromString('203.0.113.10');
  assert.equal([...Array(40)].filter(() => g.allowHandshake(peer, 0, t, true)).length, 5, 'a peer: its burst, past the spent budget');
});

test('a valid-mac1 flood from one source and from 20,000 spoofed ones: no DH work under load, capped cookie replies, and the real peer keeps its data flowing and rekeys', () => {
  const wire = new Wire();
  const a = wire.addNode('a', '192.0.2.1', 51820);
  const b = wire.addNode('b', '192.0.2.2', 51821);
  wire.connect(a, b, '10.0.0.1/32', '10.0.0.2/32');
  wire.sendIp(a, [ipv4('10.0.0.1', '10.0.0.2', 10)]);
  wire.pump();
  assert.equal(b.delivered.length, 1, 'tunnel up');
  const peerOfB = b.device.peers.values().next().value!;
  const firstHandshake = peerOfB.lastHandshakeWall;

  const flood = floodOf(b.publicKey, 2000);
  const seconds = 15; // TEST_TIMINGS rekey after 6 s: at least two rekeys
  let sent = 0;
  let cookieRepliesFromOne = 0;
  const handshakeDropsBefore = b.device.drops.handshake;
  for (let step = 0; step < seconds * 10; step++) {
    // 2000 initiations each 100 ms (20,000 a second): the first half of the run from one source,
    // the second half each from its own spoofed address.
    const spoofed = step >= seconds * 5;
    if (step === seconds * 5) cookieRepliesFromOne = b.device.cookieReplies;
    for (let i = 0; i < flood.length; i += 64) {
      const chunk = flood.slice(i, i + 64);
      if (!spoofed) wire.inject(b, chunk, { ip: '198.51.100.7', port: 40000 });
      else chunk.forEach((m, k) => wire.inject(b, [m], { ip: `10.66.${(step * 31 + ((i + k) >> 8)) & 255}.${(i + k) & 255}`, port: 40000 + k }));
    }
    wire.queue = wire.queue.filter((d) => d.to.ip === '192.0.2.1' || d.to.ip === '192.0.2.2'); // replies to the flooder go nowhere
    wire.sendIp(a, [ipv4('10.0.0.1', '10.0.0.2', 10)]);
    sent++;
    wire.advance(100);
  }
  const delivered = b.delivered.length - 1;
  assert.ok(delivered >= sent * 0.95, `the peer's data got through the flood: ${delivered}/${sent}`);
  assert.ok(peerOfB.lastHandshakeWall > firstHandshake, 'the peer rekeyed during the flood');
  assert.ok(b.device.drops.handshake - handshakeDropsBefore <= UNDER_LOAD_THRESHOLD + 1,
    `DH work only until under load: ${b.device.drops.handshake - handshakeDropsBefore} initiations failed after DH`);
  // One source: a burst of 5 and 20 a second (plus the peer's own, from its own limiter).
  assert.ok(cookieRepliesFromOne <= 5 + 20 * (seconds / 2) + 20, `one source drew ${cookieRepliesFromOne} cookie replies`);
  const fromSpoofed = b.device.cookieReplies - cookieRepliesFromOne;
  assert.ok(fromSpoofed <= COOKIE_REPLIES_PER_SECOND * (seconds / 2 + 1) + 20, `spoofed sources drew ${fromSpoofed} cookie replies`);
  assert.ok(fromSpoofed > 0, 'spoofed sources were answered within the budget');
  assert.ok(b.device.drops.rateLimited > 0, 'the rest was dropped and counted');
});
