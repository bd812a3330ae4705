import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import {
  CookieChecker, CookieGenerator, CookieReply, COOKIE_REFRESH_TIME_MS, COOKIE_SECRET_LATENCY_MS,
  MAC1_FROM_END, MAC2_FROM_END,
} from '../../src/wg/cookie.js';
import { generatePrivateKey, hash, mac, staticKey, xaeadOpen } from '../../src/wg/crypto.js';
import { addrFromString } from '../../src/wg/endpoint.js';
import { Initiation, Response } from '../../src/wg/messages.js';

function setup() {
  const responder = staticKey(generatePrivateKey());
  const checker = new CookieChecker();
  checker.init(responder.publicKey);
  const gen = new CookieGenerator();
  gen.init(responder.publicKey);
  const msg = randomBytes(Initiation.size);
  msg.writeUInt32LE(1, 0);
  return { responder, checker, gen, msg };
}
const src = addrFromString('192.0.2.7');
const src6 = addrFromString('2001:db8::7');
const mac2Of = (msg: Buffer) => msg.subarray(msg.length - MAC2_FROM_END);
const isZero = (b: Uint8Array) => b.every((x) => x === 0);

/** Has the responder hand out a cookie for (addr, port) and the generator take it. */
function getCookie(s: ReturnType<typeof setup>, addr: Buffer, port: number, now: number): void {
  s.gen.addMacs(s.msg, now);
  assert.ok(s.gen.consumeReply(s.checker.createReply(s.msg, 7, addr, 0, port, now), now));
}

test('the macs sit where the protocol puts them, computed as the paper defines them', () => {
  const { responder, gen, msg } = setup();
  assert.equal(Initiation.size - MAC1_FROM_END, Initiation.mac1);
  assert.equal(Initiation.size - MAC2_FROM_END, Initiation.mac2);
  assert.equal(Response.size - MAC1_FROM_END, Response.mac1);
  gen.addMacs(msg, 0);
  const key = hash(Buffer.from('mac1----'), responder.publicKey);
  assert.deepEqual(msg.subarray(Initiation.mac1, Initiation.mac2), Buffer.from(mac(key, msg.subarray(0, Initiation.mac1))));
  assert.ok(isZero(mac2Of(msg)), 'no cookie: mac2 is zero');
});

test('mac1 proves knowledge of the responder key; any change breaks it', () => {
  const { checker, gen, msg } = setup();
  assert.ok(!checker.checkMac1(msg));
  gen.addMacs(msg, 0);
  assert.ok(checker.checkMac1(msg));
  const response = randomBytes(Response.size);
  gen.addMacs(response, 0);
  assert.ok(checker.checkMac1(response), 'responses too');
  for (const at of [0, 10, Initiation.mac1 - 1, Initiation.mac1, Initiation.mac2 - 1]) {
    const bad = Buffer.from(msg);
    bad[at] ^= 1;
    assert.ok(!checker.checkMac1(bad), `byte ${at} flipped`);
  }
  const bad = Buffer.from(msg);
  bad[Initiation.mac2] ^= 1;
  assert.ok(checker.checkMac1(bad), 'mac2 is not covered by mac1');
  const other = new CookieGenerator();
  other.init(staticKey(generatePrivateKey()).publicKey);
  other.addMacs(msg, 0);
  assert.ok(!checker.checkMac1(msg), 'macs for another responder');
});

test('truncated messages are rejected without throwing', () => {
  const s = setup();
  const { checker, gen, msg } = s;
  getCookie(s, src, 51820, 0);
  gen.addMacs(msg, 0);
  assert.ok(checker.checkMac1(msg) && checker.checkMac2(msg, src, 0, 51820, 0));
  for (const len of [0, 1, 16, 31, 32, 100, Initiation.size - 1]) {
    assert.ok(!checker.checkMac1(msg.subarray(0, len)), `mac1 of ${len} bytes`);
    assert.ok(!checker.checkMac2(msg.subarray(0, len), src, 0, 51820, 0), `mac2 of ${len} bytes`);
  }
  assert.ok(!checker.checkMac2(msg, src.subarray(0, 15), 0, 51820, 0), 'source address out of bounds');
  assert.ok(!checker.checkMac2(msg, src, 1, 51820, 0));
});

test('mac2 is valid only after a cookie reply was taken, and only from that source', () => {
  const s = setup();
  const { checker, gen, msg } = s;
  gen.addMacs(msg, 1000);
  assert.ok(!checker.checkMac2(msg, src, 0, 51820, 1000), 'no cookie yet');
  const reply = checker.createReply(msg, 0xdeadbeef, src, 0, 51820, 1000);
  assert.equal(reply.length, 64);
  assert.deepEqual([...reply.subarray(0, 4)], [3, 0, 0, 0]);
  assert.equal(reply.readUInt32LE(CookieReply.receiver), 0xdeadbeef);
  assert.ok(!checker.checkMac2(msg, src, 0, 51820, 1000), 'a reply alone does not make mac2 valid');
  assert.ok(gen.consumeReply(reply, 1000));
  gen.addMacs(msg, 2000);
  assert.ok(!isZero(mac2Of(msg)));
  assert.ok(checker.checkMac1(msg));
  assert.ok(checker.checkMac2(msg, src, 0, 51820, 2000));
  assert.ok(!checker.checkMac2(msg, src, 0, 51821, 2000), 'another port');
  assert.ok(!checker.checkMac2(msg, addrFromString('192.0.2.8'), 0, 51820, 2000), 'another address');
  assert.ok(!checker.checkMac2(msg, src6, 0, 51820, 2000), 'another family');
  const tampered = Buffer.from(msg);
  tampered[20] ^= 1;
  assert.ok(!checker.checkMac2(tampered, src, 0, 51820, 2000), 'mac2 covers the message');
  // the source read from a batch's address array at an offset
  const addrs = Buffer.alloc(48);
  src.copy(addrs, 32);
  assert.ok(checker.checkMac2(msg, addrs, 32, 51820, 2000));
});

test('IPv6 sources get their own cookies', () => {
  const s = setup();
  getCookie(s, src6, 443, 0);
  s.gen.addMacs(s.msg, 0);
  assert.ok(s.checker.checkMac2(s.msg, src6, 0, 443, 0));
  assert.ok(!s.checker.checkMac2(s.msg, addrFromString('2001:db8::8'), 0, 443, 0));
});

test('the cookie reply is the paper\'s: XAEAD under HASH("cookie--" || Spub) with mac1 as AAD', () => {
  const { responder, checker, gen, msg } = setup();
  gen.addMacs(msg, 0);
  const reply = checker.createReply(msg, 1, src, 0, 51820, 0);
  const key = hash(Buffer.from('cookie--'), responder.publicKey);
  const nonce = reply.subarray(CookieReply.nonce, CookieReply.cookie);
  const cookie = xaeadOpen(key, nonce, reply.subarray(CookieReply.cookie), msg.subarray(Initiation.mac1, Initiation.mac2));
  assert.ok(cookie !== null && cookie.length === 16);
  // and mac2 is MAC(cookie, msg up to mac2)
  gen.consumeReply(reply, 0);
  gen.addMacs(msg, 0);
  assert.deepEqual(Buffer.from(mac(cookie, msg.subarray(0, Initiation.mac2))), mac2Of(msg));
  const again = checker.createReply(msg, 1, src, 0, 51820, 0);
  assert.notDeepEqual(again.subarray(CookieReply.nonce, CookieReply.cookie), nonce, 'a fresh random nonce each time');
});

test('the initiator stops using a cookie 5 s before it is 2 minutes old', () => {
  const s = setup();
  getCookie(s, src, 51820, 0);
  const lastUse = COOKIE_REFRESH_TIME_MS - COOKIE_SECRET_LATENCY_MS - 1;
  s.gen.addMacs(s.msg, lastUse);
  assert.ok(!isZero(mac2Of(s.msg)));
  assert.ok(s.checker.checkMac2(s.msg, src, 0, 51820, lastUse));
  s.gen.addMacs(s.msg, lastUse + 1);
  assert.ok(isZero(mac2Of(s.msg)), 'stale cookie: mac2 zeroed');
});

test('the responder\'s secret lives two minutes: then every cookie is void, and a new one is made', () => {
  const s = setup();
  getCookie(s, src, 51820, 0);
  s.gen.addMacs(s.msg, 1000);
  const oldMac2 = Buffer.from(mac2Of(s.msg));
  assert.ok(s.checker.checkMac2(s.msg, src, 0, 51820, COOKIE_REFRESH_TIME_MS), 'still valid at exactly 2 min');
  assert.ok(!s.checker.checkMac2(s.msg, src, 0, 51820, COOKIE_REFRESH_TIME_MS + 1), 'the secret expired');
  // the next reply rotates the secret: the old cookie stays void, the new one works
  const t = COOKIE_REFRESH_TIME_MS + 10;
  s.gen.addMacs(s.msg, t);
  assert.ok(isZero(mac2Of(s.msg)), 'the initiator dropped the old cookie by now');
  const reply = s.checker.createReply(s.msg, 1, src, 0, 51820, t);
  assert.ok(s.gen.consumeReply(reply, t));
  s.gen.addMacs(s.msg, t);
  assert.notDeepEqual(mac2Of(s.msg), oldMac2, 'a new secret, so a new cookie for the same source');
  assert.ok(s.checker.checkMac2(s.msg, src, 0, 51820, t));
  // re-initialising the checker (a new identity key) voids the secret too
  s.checker.init(staticKey(generatePrivateKey()).publicKey);
  assert.ok(!s.checker.checkMac2(s.msg, src, 0, 51820, t));
});

test('a tampered, foreign, duplicated, unsolicited or truncated cookie reply is refused', () => {
  const { checker, gen, msg } = setup();
  const fresh = new CookieGenerator();
  fresh.init(staticKey(generatePrivateKey()).publicKey);
  gen.addMacs(msg, 0);
  const reply = checker.createReply(msg, 1, src, 0, 1, 0);
  assert.ok(!fresh.consumeReply(reply, 0), 'nothing sent yet: unsolicited');
  for (const at of [8, 31, 32, 47, 48, 63]) {
    const bad = Buffer.from(reply);
    bad[at] ^= 1;
    assert.ok(!gen.consumeReply(bad, 0), `byte ${at} flipped`);
  }
  const wrongType = Buffer.from(reply);
  wrongType[0] = 2;
  assert.ok(!gen.consumeReply(wrongType, 0), 'not a cookie reply');
  const reserved = Buffer.from(reply);
  reserved[2] = 1;
  assert.ok(!gen.consumeReply(reserved, 0), 'reserved bytes set');
  for (const len of [0, 8, 32, 63]) assert.ok(!gen.consumeReply(reply.subarray(0, len), 0), `${len} bytes`);
  assert.ok(!gen.consumeReply(Buffer.concat([reply, Buffer.alloc(1)]), 0), '65 bytes');
  // a reply to an earlier message is refused once we sent another
  const msg2 = Buffer.from(msg);
  msg2[20] ^= 1;
  gen.addMacs(msg2, 0);
  assert.ok(!gen.consumeReply(reply, 0), 'answers a message we no longer wait on');
  const reply2 = checker.createReply(msg2, 1, src, 0, 1, 0);
  assert.ok(gen.consumeReply(reply2, 0));
  assert.ok(!gen.consumeReply(reply2, 0), 'one reply per message sent');
});

test('createReply and addMacs refuse messages without room for macs (caller bugs)', () => {
  const { checker, gen } = setup();
  assert.throws(() => checker.createReply(Buffer.alloc(31), 1, src, 0, 1, 0), RangeError);
  assert.throws(() => checker.createReply(Buffer.alloc(148), 1, src, 4, 1, 0), RangeError);
  assert.throws(() => gen.addMacs(Buffer.alloc(31), 0), RangeError);
});
