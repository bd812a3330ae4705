import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CookieChecker, CookieGenerator } from '../../src/wg/cookie.js';
import { generatePrivateKey, staticKey } from '../../src/wg/crypto.js';
import { addrFromString } from '../../src/wg/endpoint.js';
import { Initiation } from '../../src/wg/messages.js';
import { randomBytes } from 'node:crypto';

function setup() {
  const responder = staticKey(generatePrivateKey());
  const checker = new CookieChecker();
  checker.init(responder.publicKey);
  const gen = new CookieGenerator();
  gen.init(responder.publicKey);
  const msg = randomBytes(Initiation.size);
  msg.writeUInt32LE(1, 0);
  return { checker, gen, msg };
}
const src = addrFromString('192.0.2.7');

test('mac1 proves knowledge of the responder key; any change breaks it', () => {
  const { checker, gen, msg } = setup();
  assert.ok(!checker.checkMac1(msg));
  gen.addMacs(msg, 0);
  assert.ok(checker.checkMac1(msg));
  msg[10] ^= 1;
  assert.ok(!checker.checkMac1(msg));
  const other = new CookieGenerator();
  other.init(staticKey(generatePrivateKey()).publicKey);
  other.addMacs(msg, 0);
  assert.ok(!checker.checkMac1(msg));
  assert.ok(!checker.checkMac1(Buffer.alloc(5)), 'truncated');
});

test('mac2 is valid only with a cookie for this source, and only while it is fresh', () => {
  const { checker, gen, msg } = setup();
  gen.addMacs(msg, 1000);
  assert.ok(!checker.checkMac2(msg, src, 0, 51820, 1000), 'no cookie yet');
  const reply = checker.createReply(msg, 42, src, 0, 51820, 1000);
  assert.equal(reply.length, 64);
  assert.equal(reply.readUInt32LE(4), 42);
  assert.ok(gen.consumeReply(reply, 1000));
  gen.addMacs(msg, 2000);
  assert.ok(checker.checkMac1(msg));
  assert.ok(checker.checkMac2(msg, src, 0, 51820, 2000));
  assert.ok(!checker.checkMac2(msg, src, 0, 51821, 2000), 'another port');
  assert.ok(!checker.checkMac2(msg, addrFromString('192.0.2.8'), 0, 51820, 2000), 'another address');
  assert.ok(!checker.checkMac2(msg, src, 0, 51820, 1000 + 121_000), 'the secret expired');
  gen.addMacs(msg, 1000 + 121_000);
  assert.ok(msg.subarray(Initiation.mac2).every((b) => b === 0), 'stale cookie: no mac2');
});

test('a tampered, replayed-to-another-message or truncated cookie reply is refused', () => {
  const { checker, gen, msg } = setup();
  gen.addMacs(msg, 0);
  const reply = checker.createReply(msg, 1, src, 0, 1, 0);
  const bad = Buffer.from(reply);
  bad[40] ^= 1;
  assert.ok(!gen.consumeReply(bad, 0));
  assert.ok(!gen.consumeReply(reply.subarray(0, 63), 0));
  const msg2 = Buffer.from(msg);
  msg2[20] ^= 1;
  gen.addMacs(msg2, 0); // the generator now expects a reply to msg2
  assert.ok(!gen.consumeReply(reply, 0));
});
