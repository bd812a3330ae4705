// Invite tokens: round trip, and every way a pasted token can be wrong, each with its own code.
import '../../src/util/polyfill.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPair } from '@libp2p/crypto/keys';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import type { PrivateKey } from '@libp2p/interface';
import {
  DEFAULT_INVITE_TTL_MS, INVITE_PREFIX, InviteError, createInvite, encodeInvite, inviteKey, parseInvite,
  type InviteErrorCode,
} from '../../src/discovery/invite.js';
import { Ledger, admit, foundNetwork, newNetwork, record } from '../../src/discovery/ledger.js';
import { EnvelopeError, type InviteBody, type NetworkInfo } from '../../src/discovery/records.js';
import { canonicalJson, signEnvelope, type SignedEnvelope } from '../../src/discovery/signed.js';

const [F, A, M] = await Promise.all([1, 2, 3].map(() => generateKeyPair('Ed25519')));
const id = (k: PrivateKey): string => peerIdFromPrivateKey(k).toString();
const T0 = 1_700_000_000_000;
const { network: net, events: base } = await foundNetwork(F, { name: 'home', memberName: 'founder' }, T0);
const BOOT = [`/ip4/192.0.2.10/tcp/4001/p2p/${id(F)}`, `/ip6/2001:db8::1/tcp/4001/p2p/${id(F)}`];

function decode(token: string): SignedEnvelope<InviteBody> {
  return JSON.parse(Buffer.from(token.slice(INVITE_PREFIX.length), 'base64url').toString('utf8'));
}
function encodeRaw(value: unknown): string {
  return INVITE_PREFIX + Buffer.from(JSON.stringify(value)).toString('base64url');
}

function rejects(token: unknown, code: InviteErrorCode, message: RegExp, now?: number): void {
  assert.throws(() => parseInvite(token, now), (e: unknown) => {
    assert.ok(e instanceof InviteError, `expected an InviteError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    assert.match(e.message, message);
    assert.ok(!e.message.includes('\n'), 'one line');
    return true;
  });
}

test('an invite round-trips through its token with all its fields', async () => {
  const inv = await createInvite(F, net, { ttlMs: 3_600_000, uses: 3, bootstrap: BOOT }, T0);
  assert.ok(inv.token.startsWith('meshd1.'));
  assert.match(inv.token, /^meshd1\.[A-Za-z0-9_-]+$/, 'safe to paste into a shell');
  assert.match(inv.id, /^[0-9a-f]{32}$/);
  const p = parseInvite(inv.token, T0);
  assert.deepEqual(p.network, net);
  assert.equal(p.issuer, id(F));
  assert.equal(p.expires, T0 + 3_600_000);
  assert.equal(p.uses, 3);
  assert.deepEqual(p.bootstrap, BOOT);
  assert.equal(p.token, inv.token);
  assert.equal(p.id, inv.id);
  assert.equal(inviteKey(p), `${id(F)}/${inv.id}`);
  assert.equal(encodeInvite(p.envelope), inv.token);
});

test('defaults: one use, 24 hours, no bootstrap; each invite gets its own id', async () => {
  const a = await createInvite(F, net, {}, T0);
  const b = await createInvite(F, net, {}, T0);
  assert.equal(a.uses, 1);
  assert.equal(a.expires, T0 + DEFAULT_INVITE_TTL_MS);
  assert.deepEqual(a.bootstrap, []);
  assert.notEqual(a.id, b.id);
});

test('a token survives the spaces and line breaks of copy and paste', async () => {
  const inv = await createInvite(F, net, { bootstrap: BOOT }, T0);
  const pasted = `  ${inv.token.slice(0, 40)}\n${inv.token.slice(40, 90)} \r\n${inv.token.slice(90)}\n`;
  assert.equal(parseInvite(pasted, T0).id, inv.id);
});

test("expired: 'expired' after `expires`, still valid at it; without now, no expiry check", async () => {
  const inv = await createInvite(F, net, { ttlMs: 1000 }, T0);
  assert.equal(parseInvite(inv.token, T0 + 1000).id, inv.id);
  rejects(inv.token, 'expired', /^invite expired at \d{4}-.*; ask an administrator for a new one$/, T0 + 1001);
  assert.equal(parseInvite(inv.token).id, inv.id);
});

test("forged: a tampered body, another key's signature, or a swapped signer", async () => {
  const inv = await createInvite(F, net, { uses: 1 }, T0);
  const env = decode(inv.token);
  // More uses, later expiry, another network: the signature no longer matches.
  rejects(encodeRaw({ ...env, body: { ...env.body, uses: 1000 } }), 'forged', /^forged invite/);
  rejects(encodeRaw({ ...env, body: { ...env.body, expires: env.body.expires + 1 } }), 'forged', /forged/);
  rejects(encodeRaw({ ...env, body: { ...env.body, network: { ...net, cidr: '10.1.0.0/16' } } }), 'forged', /forged/);
  // The same body signed by a non-administrator, presented as the founder's.
  const byA = await signEnvelope(A, env.body);
  rejects(encodeRaw({ ...env, sig: byA.sig }), 'forged', /forged/);
  rejects(encodeRaw({ ...byA, by: id(F) }), 'forged', /forged/);
  // A flipped bit in the signature itself.
  const sig = Buffer.from(env.sig, 'base64url');
  sig[10] ^= 1;
  rejects(encodeRaw({ ...env, sig: sig.toString('base64url') }), 'forged', /forged/);
  // ...while a validly signed invite from a non-administrator parses fine: only a ledger can tell.
  assert.equal(parseInvite(encodeInvite(byA)).issuer, id(A));
});

test('malformed: garbage, truncated, wrong prefix, not an invite', async () => {
  const inv = await createInvite(F, net, { bootstrap: BOOT }, T0);
  for (const junk of [undefined, null, 42, {}, '', '   ', 'hello', 'meshd1.', 'meshd1.!!!', 'meshd1.e30', 'meshd1.bnVsbA']) {
    rejects(junk, 'malformed', /^not a meshd invite/);
  }
  rejects(inv.token.slice(0, inv.token.length - 7), 'malformed', /^not a meshd invite/);
  rejects(inv.token.slice(0, 60), 'malformed', /^not a meshd invite/);
  rejects(inv.token.slice(1), 'malformed', /^not a meshd invite$/);
  rejects(inv.token.replace('meshd1.', 'meshd.'), 'malformed', /^not a meshd invite$/);
  rejects(inv.token.replace('meshd1.', 'wg1.'), 'malformed', /^not a meshd invite$/);
  rejects(inv.token.replace('meshd1.', ''), 'malformed', /^not a meshd invite$/);
  rejects(`${inv.token}.x`, 'malformed', /bad characters/);
  rejects('meshd1.' + 'A'.repeat(9000), 'malformed', /too long/);
  // Valid base64url of a valid JSON envelope with an extra key, and a signed record passed off as an invite.
  rejects(encodeRaw({ ...decode(inv.token), extra: true }), 'malformed', /^not a meshd invite/);
  const rec = await record(F, { network: net, wgPublicKey: Buffer.alloc(32).toString('base64'), name: 'f', endpoints: [], multiaddrs: [], seq: 1 }, T0);
  rejects(INVITE_PREFIX + Buffer.from(canonicalJson(rec)).toString('base64url'), 'malformed', /it is a signed record/);
});

test("wrong version: 'version', with both versions in the message", async () => {
  const inv = await createInvite(F, net, {}, T0);
  rejects(inv.token.replace('meshd1.', 'meshd2.'), 'version', /version 2.*version 1/);
  rejects('meshd0.xyz', 'version', /version 0/);
});

test('createInvite refuses what no peer would accept', async () => {
  await assert.rejects(createInvite(F, net, { bootstrap: ['/ip4/192.0.2.10/tcp/4001'] }, T0), { name: 'EnvelopeError', message: /bootstrap\.0.*\/p2p\// });
  await assert.rejects(createInvite(F, net, { uses: 0 }, T0), EnvelopeError);
  await assert.rejects(createInvite(F, net, { ttlMs: 0 }, T0), /ttl/);
  await assert.rejects(createInvite(F, net, { ttlMs: -5 }, T0), /ttl/);
  await assert.rejects(createInvite(F, { ...net, name: 'Home' }, {}, T0), /network\.name/);
});

test('checkInvite: administrator, uses, expiry and network against a ledger', async () => {
  const l = new Ledger(net);
  l.addAll(base);
  const good = await createInvite(F, net, { ttlMs: 1000 }, T0);
  assert.equal(l.checkInvite(good, T0), null);
  assert.equal(l.checkInvite(good.token, T0), null, 'a token works too');
  assert.equal(l.checkInvite(good, T0 + 1001), 'expired');
  assert.equal(l.checkInvite('meshd9.abc', T0), 'this invite is for meshd invite version 9; this meshd reads version 1');

  const notAdmin = await createInvite(A, net, {}, T0); // A is not even a member
  assert.equal(l.checkInvite(notAdmin, T0), 'issuer is not an administrator');
  const elsewhere = await createInvite(F, newNetwork({ name: 'work', founder: id(F) }), {}, T0);
  assert.equal(l.checkInvite(elsewhere, T0), 'other network');

  // The fold agrees: a non-administrator's invite admits nobody.
  const a = await admit(F, { network: net, member: id(M), name: 'm', invite: notAdmin }, T0 + 10);
  const evId = l.ingest(a).id;
  assert.equal(l.isMember(id(M)), false);
  assert.deepEqual(l.rejected().find((r) => r.id === evId)?.reason, 'issuer is not an administrator');

  l.add(await admit(F, { network: net, member: id(M), name: 'm', invite: good }, T0 + 20));
  assert.equal(l.isMember(id(M)), true);
  assert.equal(l.checkInvite(good, T0 + 30), 'invite already used');
  assert.equal(l.checkInvite(good, T0 + 30, id(M)), null, 'the member it admitted may present it again');
});

test('a ledger without a network knows no invite', async () => {
  const inv = await createInvite(F, net, {}, T0);
  assert.equal(new Ledger().checkInvite(inv, T0), 'other network');
});

test('parseInvite never throws anything but InviteError on mangled tokens', async () => {
  const inv = await createInvite(F, net, { bootstrap: BOOT, uses: 2 }, T0);
  const chars = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.';
  let seed = 12345;
  const rnd = (n: number): number => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n; };
  let forged = 0;
  for (let i = 0; i < 400; i++) {
    const t = inv.token.split('');
    for (let k = 0; k <= rnd(3); k++) t[7 + rnd(t.length - 7)] = chars[rnd(chars.length)];
    try {
      parseInvite(t.join(''), T0);
    } catch (e) {
      assert.ok(e instanceof InviteError, String(e));
      if (e.code === 'forged') forged++;
    }
  }
  assert.ok(forged > 0, 'some mutations keep the shape and break the signature');
});

// Keep the NetworkInfo type honest: an invite carries the whole network, pnet key included.
test('the invite carries the network the joiner needs before it knows anything else', async () => {
  const inv = parseInvite((await createInvite(F, net, { bootstrap: BOOT }, T0)).token, T0);
  const n: NetworkInfo = inv.network;
  assert.match(n.psk, /^[0-9a-f]{64}$/);
  assert.equal(n.cidr, '10.0.0.0/24');
  assert.equal(n.founder, id(F));
});
