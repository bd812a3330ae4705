// Invite tokens (version 2): round trip, and every way a pasted token can be wrong, each with its
// own code; the joiner's proof that it holds the invite's secret, and what the ledger makes of it.
import '../../src/util/polyfill.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DEFAULT_INVITE_TTL_MS, INVITE_PREFIX, INVITE_VERSION, InviteError, encodeInvite, inviteProof, newInviteSecret, parseInvite,
  verifyInviteProof, type InviteErrorCode,
} from '../../src/discovery/invite.js';
import { foundNetwork, newNetwork, record } from '../../src/discovery/signer.js';
import { EnvelopeError, type NetworkInfo } from '../../src/discovery/records.js';
import { canonicalJson, eventId, signEnvelope } from '../../src/discovery/signed.js';
import { Node, T0, WG, idOf, newKeys } from './helpers/ledger-kit.js';

const [F, A, M] = await newKeys(3);
const { network: net, events: base } = await foundNetwork(F, { name: 'home', memberName: 'founder' }, T0);
const BOOT = [`/ip4/192.0.2.10/tcp/4001/p2p/${idOf(F)}`, `/ip6/2001:db8::1/tcp/4001/p2p/${idOf(F)}`];
const founder = new Node(F, net, base);

/** A fresh invite by the founder, encoded as a token. */
async function issue(opts: { ttlMs?: number; uses?: number; bootstrap?: string[] } = {}, now = T0) {
  const { envelope, secret } = await founder.signer.issueInvite({ ttlMs: opts.ttlMs, uses: opts.uses }, now);
  return encodeInvite({ network: net, envelope, secret, bootstrap: opts.bootstrap });
}

type TokenBody = { v: number; network: NetworkInfo; invite: { body: Record<string, unknown>; by: string; sig: string }; secret: string; bootstrap: string[] };
function decode(token: string): TokenBody {
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
  const inv = await issue({ ttlMs: 3_600_000, uses: 3, bootstrap: BOOT });
  assert.equal(INVITE_VERSION, 2);
  assert.match(inv.token, /^meshd2\.[A-Za-z0-9_-]+$/, 'safe to paste into a shell');
  const p = parseInvite(inv.token, T0);
  assert.deepEqual(p.network, net);
  assert.equal(p.id, eventId(p.envelope));
  assert.equal(p.id, inv.id);
  assert.ok(founder.ledger.has(p.id), 'the same event the issuer added to its ledger');
  assert.equal(p.issuer, idOf(F));
  assert.equal(p.expires, T0 + 3_600_000);
  assert.equal(p.uses, 3);
  assert.equal(p.key, p.envelope.body.key);
  assert.equal(p.secret.length, 32);
  assert.deepEqual(p.secret, inv.secret);
  assert.deepEqual(p.bootstrap, BOOT);
  assert.equal(p.token, inv.token);
  assert.equal(encodeInvite(p).token, inv.token, 'encoding a parsed invite gives the same token');
  assert.ok(Object.isFrozen(p) && Object.isFrozen(p.network) && Object.isFrozen(p.bootstrap) && Object.isFrozen(p.envelope.body));
  // The secret is in the token, never in the event: the ledger holds only its public key.
  const secretText = Buffer.from(p.secret).toString('base64url');
  assert.ok(!canonicalJson(p.envelope).includes(secretText));
  assert.equal(decode(inv.token).secret, secretText);
});

test('defaults: one use, 24 hours, no bootstrap; each invite its own id and key', async () => {
  const a = await issue();
  const b = await issue();
  assert.equal(a.uses, 1);
  assert.equal(a.expires, T0 + DEFAULT_INVITE_TTL_MS);
  assert.equal(DEFAULT_INVITE_TTL_MS, 24 * 3_600_000);
  assert.deepEqual(a.bootstrap, []);
  assert.notEqual(a.id, b.id);
  assert.notEqual(a.key, b.key);
  assert.notDeepEqual(a.secret, b.secret);
});

test('a token survives the spaces and line breaks of copy and paste', async () => {
  const inv = await issue({ bootstrap: BOOT });
  const pasted = `  ${inv.token.slice(0, 40)}\n${inv.token.slice(40, 90)} \r\n${inv.token.slice(90, 200)}\t${inv.token.slice(200)}\n`;
  const p = parseInvite(pasted, T0);
  assert.equal(p.id, inv.id);
  assert.equal(p.token, inv.token);
});

test("expired: 'expired' after `expires`, still valid at it; without now, no expiry check", async () => {
  const inv = await issue({ ttlMs: 1000 });
  assert.equal(parseInvite(inv.token, T0 + 1000).id, inv.id);
  rejects(inv.token, 'expired', /^invite expired at \d{4}-.*; ask an administrator for a new one$/, T0 + 1001);
  assert.equal(parseInvite(inv.token).id, inv.id);
});

test('forged: a secret that does not belong to the key, a tampered event, a swapped signer', async () => {
  const inv = await issue({ uses: 1, bootstrap: BOOT });
  const t = decode(inv.token);
  // Another invite's secret with this event (or this secret with a key of one's own).
  const other = newInviteSecret();
  rejects(encodeRaw({ ...t, secret: Buffer.from(other.secret).toString('base64url') }), 'forged', /^forged invite: its secret does not belong to it$/);
  // The event's content changed after signing: more uses, later expiry, another key.
  rejects(encodeRaw({ ...t, invite: { ...t.invite, body: { ...t.invite.body, uses: 1000 } } }), 'forged', /^forged invite: its signature does not match/);
  rejects(encodeRaw({ ...t, invite: { ...t.invite, body: { ...t.invite.body, expires: (t.invite.body.expires as number) + 1 } } }), 'forged', /forged/);
  rejects(encodeRaw({ ...t, invite: { ...t.invite, body: { ...t.invite.body, key: other.key } } }), 'forged', /forged/);
  // The same body signed by someone else, presented as the founder's; a flipped signature bit.
  const byA = await signEnvelope(A, t.invite.body);
  rejects(encodeRaw({ ...t, invite: { ...t.invite, sig: byA.sig } }), 'forged', /forged/);
  rejects(encodeRaw({ ...t, invite: { ...byA, by: idOf(F) } }), 'forged', /forged/);
  const sig = Buffer.from(t.invite.sig, 'base64url');
  sig[10] ^= 1;
  rejects(encodeRaw({ ...t, invite: { ...t.invite, sig: sig.toString('base64url') } }), 'forged', /forged/);
  // ...while a validly signed invite event by a non-administrator parses: only a ledger can tell.
  const mine = newInviteSecret();
  const byM = await signEnvelope(M, { ...t.invite.body, key: mine.key });
  const p = parseInvite(encodeRaw({ ...t, invite: byM, secret: Buffer.from(mine.secret).toString('base64url') }));
  assert.equal(p.issuer, idOf(M));
  const l = founder.ledger;
  assert.equal(l.ingest(p.envelope).reason, "prev is not its signer's previous event", 'not even storable: it continues the founder\'s chain');
});

test('malformed: garbage, truncated, wrong prefix, not an invite, parts that disagree', async () => {
  const inv = await issue({ bootstrap: BOOT });
  const t = decode(inv.token);
  for (const junk of [undefined, null, 42, {}, '', '   ', 'hello', 'meshd2.', 'meshd2.!!!', 'meshd2.e30', 'meshd2.bnVsbA', 'meshd.x', 'meshd2']) {
    rejects(junk, 'malformed', /^not a meshd invite/);
  }
  rejects(inv.token.slice(0, inv.token.length - 7), 'malformed', /^not a meshd invite/);
  rejects(inv.token.slice(0, 60), 'malformed', /^not a meshd invite/);
  rejects(inv.token.slice(1), 'malformed', /^not a meshd invite$/);
  rejects(inv.token.replace('meshd2.', 'wg2.'), 'malformed', /^not a meshd invite$/);
  rejects(inv.token.replace('meshd2.', ''), 'malformed', /^not a meshd invite$/);
  rejects(`${inv.token}.x`, 'malformed', /bad characters/);
  rejects('meshd2.' + 'A'.repeat(9000), 'malformed', /too long/);
  rejects(encodeRaw({ ...t, extra: true }), 'malformed', /^not a meshd invite/);
  rejects(encodeRaw({ ...t, v: 1 }), 'malformed', /^not a meshd invite/);
  rejects(encodeRaw({ ...t, secret: 'short' }), 'malformed', /^not a meshd invite/);
  rejects(encodeRaw({ ...t, bootstrap: ['/ip4/192.0.2.10/tcp/4001'] }), 'malformed', /^not a meshd invite/);
  rejects(encodeRaw({ ...t, invite: { ...t.invite, extra: 1 } }), 'malformed', /^not a meshd invite/);
  // A signed record passed off as the invite; the parts naming two networks.
  const rec = await record(F, { network: net, wgPublicKey: WG, name: 'f', endpoints: [], multiaddrs: [], seq: 1 }, T0);
  rejects(encodeRaw({ ...t, invite: rec }), 'malformed', /it carries a signed record/);
  rejects(encodeRaw({ ...t, network: newNetwork({ name: 'work', founder: idOf(F) }) }), 'malformed', /two networks/);
});

test("another version: 'version', saying which; an older meshd's token says to make a new network", async () => {
  const inv = await issue();
  rejects(inv.token.replace('meshd2.', 'meshd1.'), 'version', /older meshd \(invite version 1, ledger format 1\).*reads version 2.*meshd init/);
  rejects('meshd1.eyJ2IjoxfQ', 'version', /older meshd/);
  rejects('meshd0.xyz', 'version', /invite version 0/);
  rejects(inv.token.replace('meshd2.', 'meshd3.'), 'version', /invite version 3; this meshd reads version 2: upgrade meshd/);
  rejects(' meshd1.\nabc', 'version', /older/);
});

test('encodeInvite and issueInvite refuse what no peer would accept', async () => {
  const { envelope, secret } = await founder.signer.issueInvite({}, T0);
  assert.throws(() => encodeInvite({ network: net, envelope, secret, bootstrap: ['/ip4/192.0.2.10/tcp/4001'] }), { name: 'EnvelopeError', message: /bootstrap\.0.*\/p2p\// });
  assert.throws(() => encodeInvite({ network: net, envelope, secret: newInviteSecret().secret }), { name: 'InviteError', code: 'forged' });
  assert.throws(() => encodeInvite({ network: net, envelope, secret: new Uint8Array(16) }), EnvelopeError);
  assert.throws(() => encodeInvite({ network: { ...net, name: 'Home' }, envelope, secret }), /network\.name/);
  assert.throws(() => encodeInvite({ network: newNetwork({ name: 'x', founder: idOf(F) }), envelope, secret }), { name: 'InviteError', message: /two networks/ });
  await assert.rejects(founder.signer.issueInvite({ uses: 0 }, T0), EnvelopeError);
  await assert.rejects(founder.signer.issueInvite({ uses: 70_000 }, T0), EnvelopeError);
  await assert.rejects(founder.signer.issueInvite({ ttlMs: 0 }, T0), /ttl/);
  await assert.rejects(founder.signer.issueInvite({ ttlMs: -5 }, T0), /ttl/);
});

test('the proof: made with the secret, for one network, one invite and one member; verify never throws', async () => {
  const { secret, key } = newInviteSecret();
  const opts = { network: net.id, invite: 'ab'.repeat(32), member: idOf(M) };
  const proof = inviteProof(secret, opts);
  assert.match(proof, /^[A-Za-z0-9_-]{86}$/);
  assert.equal(verifyInviteProof(key, proof, opts), true);
  assert.equal(inviteProof(secret, opts), proof, 'deterministic');
  assert.equal(verifyInviteProof(key, proof, { ...opts, member: idOf(A) }), false, 'another member');
  assert.equal(verifyInviteProof(key, proof, { ...opts, invite: 'cd'.repeat(32) }), false, 'another invite');
  assert.equal(verifyInviteProof(key, proof, { ...opts, network: '00'.repeat(16) }), false, 'another network');
  assert.equal(verifyInviteProof(newInviteSecret().key, proof, opts), false, 'another key');
  const flipped = Buffer.from(proof, 'base64url');
  flipped[3] ^= 1;
  assert.equal(verifyInviteProof(key, flipped.toString('base64url'), opts), false);
  for (const [k, p] of [['', proof], [key, ''], ['!!', proof], [key, 'x'.repeat(86)], [key.slice(1), proof], [key, proof.slice(2)], [null, null], [{}, 42]]) {
    assert.equal(verifyInviteProof(k as string, p as string, opts), false);
  }
});

test('the ledger admits with a token: the joiner proves the secret, the admission carries only the proof', async () => {
  const inv = parseInvite((await issue({ uses: 2 })).token, T0);
  const l = founder.ledger;
  assert.equal(l.checkAdmission({ invite: inv.id, member: idOf(M) }, T0), null);
  const proof = inviteProof(inv.secret, { network: inv.network.id, invite: inv.id, member: idOf(M) });
  const admission = await founder.signer.sign({ type: 'admit', member: idOf(M), name: 'm', invite: inv.id, proof }, T0 + 10);
  assert.equal(l.reasonOf(eventId(admission)), null);
  assert.equal(l.isMember(idOf(M)), true);
  assert.equal(l.member(idOf(M))!.invite, inv.id);
  assert.ok(!canonicalJson(admission).includes(Buffer.from(inv.secret).toString('base64url')), 'no secret in the ledger');
  // Someone reading that admission cannot reuse its proof for another node.
  const replay = await founder.signer.sign({ type: 'admit', member: idOf(A), name: 'a', invite: inv.id, proof }, T0 + 20);
  assert.match(l.reasonOf(eventId(replay))!, /^bad invite proof/);
  assert.equal(l.isMember(idOf(A)), false);
  assert.equal(l.inviteInfo(inv.id, T0 + 30)!.used, 1);
});

test('parseInvite never throws anything but InviteError on mangled tokens', async () => {
  const inv = await issue({ bootstrap: BOOT, uses: 2 });
  const chars = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.';
  let seed = 12345;
  const rnd = (n: number): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const codes = new Map<string, number>();
  for (let i = 0; i < 400; i++) {
    const t = inv.token.split('');
    for (let k = 0; k <= rnd(3); k++) t[7 + rnd(t.length - 7)] = chars[rnd(chars.length)];
    try {
      parseInvite(t.join(''), T0);
    } catch (e) {
      assert.ok(e instanceof InviteError, String(e));
      codes.set(e.code, (codes.get(e.code) ?? 0) + 1);
    }
  }
  assert.ok((codes.get('forged') ?? 0) > 0, 'some mutations keep the shape and break the signature or the secret');
  assert.ok((codes.get('malformed') ?? 0) > 0);
});

test('the invite carries the network the joiner needs before it knows anything else', async () => {
  const inv = parseInvite((await issue({ bootstrap: BOOT })).token, T0);
  const n: NetworkInfo = inv.network;
  assert.match(n.psk, /^[0-9a-f]{64}$/);
  assert.equal(n.cidr, '10.0.0.0/24');
  assert.equal(n.founder, idOf(F));
  assert.deepEqual(n, net);
});
