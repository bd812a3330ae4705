// Curve25519 keys as the engine makes them (src/wg/crypto.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
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
