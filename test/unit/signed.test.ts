// Canonical JSON, envelopes, event ids, and parseEnvelope's checks on bytes from outside: schemas,
// the links of format 2 (seq, prev, deps), who may sign what, and entries of the older format.
import '../../src/util/polyfill.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPair } from '@libp2p/crypto/keys';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import type { PrivateKey } from '@libp2p/interface';
import {
  canonicalJson, ed25519PeerId, eventId, signEnvelope, signingBytes, verifyEnvelope, type SignedEnvelope,
} from '../../src/discovery/signed.js';
import { EnvelopeError, MAX_DEPS, meshRange, parseEnvelope, type EnvelopeErrorCode } from '../../src/discovery/records.js';
import { newNetwork } from '../../src/discovery/signer.js';
import { newInviteSecret } from '../../src/discovery/invite.js';

const [K, L] = await Promise.all([1, 2].map(() => generateKeyPair('Ed25519')));
const id = (k: PrivateKey): string => peerIdFromPrivateKey(k).toString();
const WG = Buffer.alloc(32, 9).toString('base64');
const NET = newNetwork({ name: 'home', founder: id(K) });

const recordBody = (over: Record<string, unknown> = {}) => ({
  type: 'record', network: NET.id, member: id(K), wgPublicKey: WG, name: 'laptop',
  endpoints: ['192.0.2.1:51820', '[2001:db8::1]:51820'], multiaddrs: ['/ip4/192.0.2.1/tcp/4001'], seq: 1, at: 1000, ...over,
});

function parseFails(input: unknown, code: EnvelopeErrorCode, message?: RegExp): void {
  assert.throws(() => parseEnvelope(input), (e: unknown) => {
    assert.ok(e instanceof EnvelopeError, `expected an EnvelopeError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    if (message) assert.match(e.message, message);
    return true;
  });
}

test('canonical JSON sorts keys recursively and has no whitespace', () => {
  assert.equal(canonicalJson({ b: 1, a: { d: [3, { z: 1, y: 2 }], c: 'x' } }), '{"a":{"c":"x","d":[3,{"y":2,"z":1}]},"b":1}');
  assert.equal(canonicalJson({ a: 1, b: 2 }), canonicalJson({ b: 2, a: 1 }));
  assert.equal(canonicalJson([2, 1]), '[2,1]', 'arrays keep their order');
  assert.equal(canonicalJson({ s: 'é"\n\u2028' }), '{"s":"é\\"\\n\u2028"}');
  assert.equal(canonicalJson({ a: undefined, b: null }), '{"b":null}');
  assert.equal(canonicalJson(Object.assign(Object.create(null), { k: true })), '{"k":true}');
  for (const bad of [NaN, Infinity, undefined, () => 1, 1n, new Date(0), new Map(), new Uint8Array(1), Symbol('s')]) {
    assert.throws(() => canonicalJson({ x: bad === undefined ? [bad] : bad }), TypeError, String(bad));
  }
});

test('sign then verify; any change to body, signer or signature fails', async () => {
  const env = await signEnvelope(K, { hello: 'world', n: 1 });
  assert.equal(env.by, id(K));
  assert.match(env.sig, /^[A-Za-z0-9_-]{86}$/);
  assert.equal(verifyEnvelope(env), true);
  // Key order on the wire does not matter: the signature is over canonical bytes.
  assert.equal(verifyEnvelope(JSON.parse('{"sig":"' + env.sig + '","by":"' + env.by + '","body":{"n":1,"hello":"world"}}')), true);
  assert.equal(verifyEnvelope({ ...env, body: { hello: 'world', n: 2 } }), false);
  assert.equal(verifyEnvelope({ ...env, body: { hello: 'world', n: 1, x: 0 } }), false);
  assert.equal(verifyEnvelope({ ...env, by: id(L) }), false, 'another signer');
  const other = await signEnvelope(L, env.body);
  assert.equal(verifyEnvelope({ ...env, sig: other.sig }), false, "another key's signature");
  assert.equal(verifyEnvelope(other), true);
  const sig = Buffer.from(env.sig, 'base64url');
  sig[63] ^= 0x80;
  assert.equal(verifyEnvelope({ ...env, sig: sig.toString('base64url') }), false);
  // Non-canonical encodings of the same signature bytes are refused, so a signature has one text.
  assert.equal(verifyEnvelope({ ...env, sig: env.sig + '==' }), false);
  assert.equal(verifyEnvelope({ ...env, sig: Buffer.from(env.sig, 'base64url').toString('base64') }), env.sig === Buffer.from(env.sig, 'base64url').toString('base64'));
  const last = env.sig.at(-1)!;
  const sibling = String.fromCharCode(last.charCodeAt(0) + 1); // same 2 data bits, non-zero padding bits
  assert.equal(verifyEnvelope({ ...env, sig: env.sig.slice(0, -1) + sibling }), false);
});

test('verifyEnvelope never throws on junk', () => {
  const junk: unknown[] = [null, undefined, 0, 'x', [], {}, { body: 1, by: 2, sig: 3 }, { body: {}, by: 'nope', sig: 'A'.repeat(86) },
    { body: { a: NaN }, by: id(K), sig: 'A'.repeat(86) }, { body: {}, by: id(K), sig: 'A'.repeat(85) + 'Q' }];
  for (const j of junk) assert.equal(verifyEnvelope(j as SignedEnvelope), false);
});

test('event ids: sha256 hex of the signed content, independent of key order and signature text', async () => {
  const env = await signEnvelope(K, { a: 1, b: [1, 2] });
  const evId = eventId(env);
  assert.match(evId, /^[0-9a-f]{64}$/);
  assert.equal(eventId({ by: env.by, body: { b: [1, 2], a: 1 } }), evId);
  assert.notEqual(eventId({ ...env, body: { a: 1, b: [2, 1] } }), evId);
  assert.notEqual(eventId({ ...env, by: id(L) }), evId);
  assert.deepEqual([...signingBytes(env.body, env.by)], [...Buffer.from(`{"body":{"a":1,"b":[1,2]},"by":"${env.by}"}`)]);
});

test('peer ids: canonical Ed25519 only', async () => {
  assert.equal(ed25519PeerId(id(K)), id(K));
  assert.equal(ed25519PeerId(peerIdFromPrivateKey(K).toCID().toString()), null, 'the CID spelling of the same key');
  const secp = await generateKeyPair('secp256k1');
  assert.equal(ed25519PeerId(peerIdFromPrivateKey(secp).toString()), null);
  for (const bad of ['', 'hello', id(K).slice(0, -1), id(K) + 'x', ' ' + id(K), 'Qm' + 'a'.repeat(44)]) assert.equal(ed25519PeerId(bad), null, bad);
});

test('mesh ranges: IPv4, canonical, /8 to /30', () => {
  assert.deepEqual(meshRange('10.0.0.0/24'), { base: 0x0a000000, bits: 24, hosts: 254 });
  assert.equal(meshRange('10.9.0.0/30')!.hosts, 2);
  for (const bad of ['10.0.0.1/24', '10.0.0.0/31', '10.0.0.0/32', '10.0.0.0/7', '010.0.0.0/24', '10.0.0.0', 'fd00::/64', '10.0.0.0/24 ', '300.0.0.0/8']) {
    assert.equal(meshRange(bad), null, bad);
  }
});

test('parseEnvelope accepts a valid record as a value, as JSON text, and as bytes; the result is frozen', async () => {
  const env = await signEnvelope(K, recordBody());
  for (const input of [env, JSON.stringify(env), Buffer.from(JSON.stringify(env)), JSON.parse(JSON.stringify(env))]) {
    const p = parseEnvelope(input);
    assert.deepEqual(p, env);
    assert.ok(Object.isFrozen(p) && Object.isFrozen(p.body) && Object.isFrozen((p.body as { endpoints: string[] }).endpoints));
  }
  assert.ok(!Object.isFrozen(env.body), "the caller's object is left alone");
});

test('parseEnvelope: strict shapes, bounded strings, hostname-like names, real keys', async () => {
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ extra: 1 }, /Unrecognized key/],
    [{ name: 'Laptop' }, /body\.name/],
    [{ name: '-laptop' }, /body\.name/],
    [{ name: 'a'.repeat(64) }, /body\.name/],
    [{ name: 'my laptop' }, /body\.name/],
    [{ member: 'not-a-peer-id' }, /body\.member.*peer id/],
    [{ wgPublicKey: Buffer.alloc(31).toString('base64') }, /body\.wgPublicKey/],
    [{ wgPublicKey: 'not base64 at all!' }, /body\.wgPublicKey/],
    [{ endpoints: ['192.0.2.1'] }, /body\.endpoints\.0/],
    [{ endpoints: ['192.0.2.1:0'] }, /body\.endpoints\.0/],
    [{ endpoints: ['2001:db8::1:51820'] }, /body\.endpoints\.0/],
    [{ endpoints: ['[2001:0db8::1]:51820'] }, /body\.endpoints\.0/],
    [{ endpoints: Array(33).fill('192.0.2.1:1') }, /body\.endpoints/],
    [{ multiaddrs: ['/ip4/1.2.3.4/tcp/99999'] }, /body\.multiaddrs\.0/],
    [{ multiaddrs: ['/ip4/1.2.3.4/tcp/1/p2p/xyz'] }, /body\.multiaddrs\.0/],
    [{ seq: -1 }, /body\.seq/],
    [{ seq: 1.5 }, /body\.seq/],
    [{ seq: 2 ** 53 }, /body\.seq/],
    [{ at: '1000' }, /body\.at/],
    [{ network: 'ABCDEF' }, /body\.network/],
    [{ type: 'weird' }, /body/],
  ];
  for (const [over, message] of cases) {
    const env = await signEnvelope(K, recordBody(over));
    parseFails(env, 'malformed', message);
  }
  const env = await signEnvelope(K, recordBody());
  parseFails({ ...env, extra: 1 }, 'malformed');
  parseFails({ body: env.body, by: env.by }, 'malformed', /sig/);
  parseFails('{"body":', 'malformed', /not JSON/);
  parseFails('x'.repeat(40000), 'malformed', /too large/);
  parseFails({ ...env, sig: 'A'.repeat(86) }, 'forged');
  parseFails({ ...env, body: { ...env.body, seq: 2 } }, 'forged');
});

const hexId = (n: number): string => n.toString(16).padStart(64, '0');
const link = (over: Record<string, unknown> = {}) => ({ seq: 2, prev: hexId(1), deps: [hexId(2), hexId(3)], at: 1000, ...over });
const genesisBody = (over: Record<string, unknown> = {}) => ({ type: 'genesis', v: 2, network: NET, seq: 1, prev: null, deps: [], at: 1000, ...over });

test('parseEnvelope accepts every event type of format 2', async () => {
  const { key } = newInviteSecret();
  const bodies: Record<string, unknown>[] = [
    { type: 'admit', network: NET.id, member: id(L), name: 'l', ip: '10.0.0.9', invite: hexId(7), proof: 'A'.repeat(85) + 'w', ...link() },
    { type: 'admit', network: NET.id, member: id(K), name: 'k', ip: '10.0.0.1', invite: null, proof: null, ...link() },
    { type: 'revoke', network: NET.id, member: id(L), reason: 'kick', ...link() },
    { type: 'revoke', network: NET.id, member: id(K), reason: 'leave', ...link() },
    { type: 'grant', network: NET.id, member: id(L), ...link() },
    { type: 'invite', network: NET.id, key, expires: 5000, uses: 3, ...link() },
    { type: 'cancel', network: NET.id, invite: hexId(9), ...link() },
    { type: 'cancel', network: NET.id, invite: hexId(9), ...link({ seq: 1, prev: null, deps: [hexId(4)] }) },
    { type: 'cancel', network: NET.id, invite: hexId(9), ...link({ deps: [] }) },
  ];
  for (const body of bodies) {
    const env = await signEnvelope(K, body);
    assert.deepEqual(parseEnvelope(env), env, String(body.type));
  }
  const g = await signEnvelope(K, genesisBody());
  assert.deepEqual(parseEnvelope(g), g);
});

test('parseEnvelope: the links of an event (seq, prev, deps) are checked without a ledger', async () => {
  const cancel = (over: Record<string, unknown>) => signEnvelope(K, { type: 'cancel', network: NET.id, invite: hexId(9), ...link(over) });
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ seq: 1, prev: hexId(1) }, /prev must be null exactly for the first event/],
    [{ seq: 2, prev: null }, /prev must be null exactly for the first event/],
    [{ deps: [hexId(3), hexId(2)] }, /deps must be sorted and unique/],
    [{ deps: [hexId(2), hexId(2)] }, /deps must be sorted and unique/],
    [{ deps: [hexId(1), hexId(2)] }, /deps must not repeat prev/],
    [{ seq: 1, prev: null, deps: [] }, /at least one parent/],
    [{ seq: 0, prev: null }, /body\.seq/],
    [{ seq: 1.5 }, /body\.seq/],
    [{ prev: 'ab' }, /body\.prev/],
    [{ prev: hexId(0xabc).toUpperCase() }, /body\.prev/],
    [{ deps: ['x'] }, /body\.deps\.0/],
    [{ deps: Array.from({ length: MAX_DEPS + 1 }, (_, i) => hexId(i + 10)) }, /body\.deps/],
    [{ at: -1 }, /body\.at/],
  ];
  for (const [over, message] of cases) parseFails(await cancel(over), 'malformed', message);
  // Exactly MAX_DEPS is fine.
  assert.equal(parseEnvelope(await cancel({ deps: Array.from({ length: MAX_DEPS }, (_, i) => hexId(i + 10)) })).by, id(K));
  // Link fields are part of the strict shape: a missing one is malformed (without `seq` at all, an
  // admission, revocation or grant reads as format 1: see the next test).
  const { prev: _p, ...noPrev } = { type: 'grant', network: NET.id, member: id(L), ...link() };
  parseFails(await signEnvelope(K, noPrev), 'malformed', /body\.prev/);
  const { deps: _d, ...noDeps } = { type: 'invite', network: NET.id, key: newInviteSecret().key, expires: 1, uses: 1, ...link() };
  parseFails(await signEnvelope(K, noDeps), 'malformed', /body\.deps/);
  // A genesis is the root: seq 1, no prev, no deps, version 2.
  parseFails(await signEnvelope(K, genesisBody({ seq: 2 })), 'malformed', /body\.seq/);
  parseFails(await signEnvelope(K, genesisBody({ prev: hexId(1) })), 'malformed', /body\.prev/);
  parseFails(await signEnvelope(K, genesisBody({ deps: [hexId(1)] })), 'malformed', /body\.deps/);
});

test("parseEnvelope: a ledger entry of format 1 is a 'version' error, not 'malformed'", async () => {
  const token = 'meshd1.' + 'A'.repeat(40);
  const older = [
    { type: 'genesis', network: NET, at: 1000 },
    { type: 'genesis', v: 1, network: NET, seq: 1, prev: null, deps: [], at: 1000 },
    { type: 'genesis', v: 3, network: NET, seq: 1, prev: null, deps: [], at: 1000 },
    { type: 'admit', network: NET.id, member: id(L), name: 'l', invite: token, at: 1000 },
    { type: 'revoke', network: NET.id, member: id(L), reason: 'kick', at: 1000 },
    { type: 'grant', network: NET.id, member: id(L), at: 1000 },
  ];
  for (const body of older) {
    parseFails(await signEnvelope(K, body), 'version', /older meshd \(ledger format 1\); this meshd reads format 2/);
    parseFails(JSON.stringify(await signEnvelope(K, body)), 'version');
  }
  // A format-2 body that is merely wrong stays 'malformed'.
  parseFails(await signEnvelope(K, { type: 'grant', network: NET.id, member: id(L), ...link({ seq: 'x' }) }), 'malformed');
  parseFails(await signEnvelope(K, { type: 'invite', network: NET.id, at: 1 }), 'malformed');
});

test('parseEnvelope: who may sign what, as far as the envelope alone can tell', async () => {
  // A record for K signed by L.
  parseFails(await signEnvelope(L, recordBody()), 'unauthorized', /signed by the member itself/);
  // A genesis not signed by its founder.
  parseFails(await signEnvelope(L, genesisBody()), 'unauthorized', /founder/);
  // A leave for K signed by L; a kick signed by L is fine here (the ledger checks L is an admin).
  const revokeBody = (reason: string) => ({ type: 'revoke', network: NET.id, member: id(K), reason, ...link() });
  parseFails(await signEnvelope(L, revokeBody('leave')), 'unauthorized', /leave/);
  assert.equal(parseEnvelope(await signEnvelope(L, revokeBody('kick'))).by, id(L));
  assert.equal(parseEnvelope(await signEnvelope(K, revokeBody('leave'))).by, id(K));
  parseFails(await signEnvelope(L, revokeBody('ban')), 'malformed', /reason/);
  // The signature is checked before the links and the signer: a forgery is 'forged' first.
  const leave = await signEnvelope(L, revokeBody('leave'));
  parseFails({ ...leave, body: { ...leave.body, seq: 3 } }, 'forged');
});

test('parseEnvelope throws only EnvelopeError, whatever it is fed', async () => {
  const text = JSON.stringify(await signEnvelope(K, recordBody()));
  const hostile = { get body(): never { throw new Error('boom'); }, by: id(K), sig: 'x' };
  const deep = JSON.parse('['.repeat(5000) + ']'.repeat(5000));
  for (const input of [hostile, deep, new Proxy({}, { ownKeys: () => { throw new Error('trap'); } }), Symbol('s'), 1n]) {
    assert.throws(() => parseEnvelope(input), EnvelopeError);
  }
  let seed = 7;
  const rnd = (n: number): number => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n; };
  const codes = new Set<string>();
  for (let i = 0; i < 500; i++) {
    const t = text.split('');
    t[rnd(t.length)] = '{}[]":,a0\\'[rnd(10)];
    try {
      parseEnvelope(t.join(''));
    } catch (e) {
      assert.ok(e instanceof EnvelopeError, String(e));
      codes.add(e.code);
    }
  }
  assert.ok(codes.has('malformed') && codes.has('forged'), [...codes].join());
});
