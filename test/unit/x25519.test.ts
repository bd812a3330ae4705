// Curve25519 keys as the engine makes them (src/wg/crypto.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPrivateKey, createPublicKey, randomBytes } from 'node:crypto';
import { dh, generateEphemeral, staticKey } from '../../src/wg/crypto.js';

test('an ephemeral key pair: its public half is X25519 of its private half and the base point, and each is new', () => {
  const basePoint = Buffer.alloc(32);
  basePoint[0] = 9;
  const seen = new Set<string>();
  for (let i = 0; i < 50; i++) {
    const e = generateEphemeral();
    assert.equal(e.publicKey.length, 32);
    assert.deepEqual(dh(e.keyObject, basePoint), e.publicKey);
    seen.add(e.publicKey.toString('hex'));
  }
  assert.equal(seen.size, 50);
});

test('a static key from raw bytes: clamped, and its public half as wg pubkey prints it', () => {
  // wg genkey / wg pubkey, RFC 7748's first Diffie-Hellman vector (Alice).
  const k = staticKey(Buffer.from('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a', 'hex'));
  assert.equal(k.publicKey.toString('hex'), '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a');
  assert.equal(k.privateKey[0] & 7, 0);
  assert.equal(k.privateKey[31] & 0xc0, 0x40);
});

test("RFC 7748's Diffie-Hellman vector, and keys that agree with OpenSSL's own PKCS#8 import", () => {
  // The engine imports private keys as JWKs (fast on Node 20): the secret must be the one given.
  const alice = staticKey(Buffer.from('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a', 'hex'));
  const bob = staticKey(Buffer.from('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb', 'hex'));
  assert.equal(bob.publicKey.toString('hex'), 'de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f');
  const shared = '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742';
  assert.equal(dh(alice.keyObject, bob.publicKey)?.toString('hex'), shared);
  assert.equal(dh(bob.keyObject, alice.publicKey)?.toString('hex'), shared);
  const pkcs8 = Buffer.from('302e020100300506032b656e04220420', 'hex');
  for (let i = 0; i < 100; i++) {
    const k = staticKey(randomBytes(32));
    const viaDer = createPublicKey(createPrivateKey({ key: Buffer.concat([pkcs8, k.privateKey]), format: 'der', type: 'pkcs8' }));
    assert.deepEqual((viaDer.export({ format: 'der', type: 'spki' }) as Buffer).subarray(12), k.publicKey);
  }
});
