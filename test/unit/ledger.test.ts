// The membership fold: convergence whatever the order, addresses, invites, revocation, grants,
// records. Keys are real Ed25519 identities; times are injected numbers.
import '../../src/util/polyfill.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPair } from '@libp2p/crypto/keys';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import type { PrivateKey } from '@libp2p/interface';
import {
  Ledger, admit, foundNetwork, genesis, grant, newNetwork, record, revoke, type Member,
} from '../../src/discovery/ledger.js';
import { createInvite, type Invite } from '../../src/discovery/invite.js';
import type { NetworkInfo } from '../../src/discovery/records.js';
import { signEnvelope, type SignedEnvelope } from '../../src/discovery/signed.js';

const keys = await Promise.all(Array.from({ length: 9 }, () => generateKeyPair('Ed25519')));
const [F, A, B, C, D, E, X, Y, Z] = keys; // F founds every network below
const id = (k: PrivateKey): string => peerIdFromPrivateKey(k).toString();
const WG = Buffer.alloc(32, 7).toString('base64');

async function found(cidr = '10.0.0.0/24'): Promise<{ net: NetworkInfo; base: SignedEnvelope[] }> {
  const { network, events } = await foundNetwork(F, { name: 'home', memberName: 'founder', cidr }, 1000);
  return { net: network, base: events };
}

function inviteFrom(k: PrivateKey, net: NetworkInfo, now: number, opts: { uses?: number; ttlMs?: number } = {}): Promise<Invite> {
  return createInvite(k, net, { uses: opts.uses, ttlMs: opts.ttlMs ?? 60_000 }, now);
}

function ledgerOf(net: NetworkInfo, envs: Iterable<SignedEnvelope>): Ledger {
  const l = new Ledger(net);
  for (const e of envs) assert.notEqual(l.add(e), 'invalid');
  return l;
}

/** What must be equal on every member: members with their addresses, and the rejections. */
function view(l: Ledger): unknown {
  return {
    members: l.members().map((m: Member) => [m.peerId, m.meshIp, m.admin, m.name]),
    rejected: l.rejected().map((r) => [r.id, r.reason]),
    next: l.nextAddress(),
  };
}

function ipOf(l: Ledger, k: PrivateKey): string | null {
  return l.addressOf(id(k));
}

function reasonFor(l: Ledger, env: SignedEnvelope): string | undefined {
  const evId = l.ingest(env).id;
  return l.rejected().find((r) => r.id === evId)?.reason;
}

function* permutations<T>(items: T[]): Generator<T[]> {
  if (items.length <= 1) { yield items; return; }
  for (let i = 0; i < items.length; i++) {
    const rest = [...items.slice(0, i), ...items.slice(i + 1)];
    for (const p of permutations(rest)) yield [items[i], ...p];
  }
}

/** Deterministic shuffles (mulberry32), so a failure reproduces. */
function shuffled<T>(items: T[], seed: number): T[] {
  let s = seed >>> 0;
  const rnd = (): number => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

test('the founder is the first member, at the first host, and an administrator', async () => {
  const { net, base } = await found();
  const l = ledgerOf(net, base);
  assert.deepEqual(l.network(), net);
  const [m] = l.members();
  assert.equal(l.members().length, 1);
  assert.equal(m.peerId, id(F));
  assert.equal(m.meshIp, '10.0.0.1');
  assert.equal(m.admin, true);
  assert.equal(m.founder, true);
  assert.equal(m.name, 'founder');
  assert.equal(l.isAdmin(id(F)), true);
  assert.equal(l.nextAddress(), '10.0.0.2');
  assert.deepEqual(l.rejected(), []);
});

test('a genesis alone admits nobody; events without a genesis wait for it', async () => {
  const { net, base } = await found();
  const l = new Ledger(net.id);
  assert.equal(l.add(base[1]), 'new');
  assert.deepEqual(l.members(), []);
  assert.deepEqual(l.rejected().map((r) => r.reason), ['waiting for genesis']);
  assert.equal(l.nextAddress(), null);
  assert.equal(l.add(base[0]), 'new');
  assert.equal(l.members()[0].meshIp, '10.0.0.1');
  assert.deepEqual(l.rejected(), []);
});

test('the same events in every order fold to the same members, addresses and rejections', async () => {
  const { net, base } = await found();
  const invA = await inviteFrom(F, net, 1000, { uses: 3 });
  const invB = await inviteFrom(A, net, 1500); // A is not an administrator before the grant at 1600
  const invB2 = await inviteFrom(A, net, 1700);
  const events = [
    ...base,
    await admit(F, { network: net, member: id(A), name: 'a', invite: invA }, 1100),
    await admit(F, { network: net, member: id(B), name: 'b', invite: invA }, 1200),
    await admit(A, { network: net, member: id(C), name: 'c', invite: invA }, 1200), // same ms as B
    await admit(A, { network: net, member: id(D), name: 'd', invite: invB }, 1550), // void: not admin yet
    await grant(F, { network: net, member: id(A) }, 1600),
    await revoke(A, { network: net, member: id(B), reason: 'kick' }, 1650),
    await admit(A, { network: net, member: id(E), name: 'e', invite: invB2 }, 1800), // takes B's address
  ];
  const reference = view(ledgerOf(net, events));
  // The fold itself, spelled out once: B and C were admitted in the same ms (.3 and .4 in event id
  // order); E, admitted after B's kick, takes B's address.
  const l = ledgerOf(net, events);
  const beforeKick = ledgerOf(net, events.slice(0, 5));
  assert.deepEqual([ipOf(beforeKick, B), ipOf(beforeKick, C)].sort(), ['10.0.0.3', '10.0.0.4']);
  assert.equal(ipOf(l, A), '10.0.0.2');
  assert.equal(ipOf(l, C), ipOf(beforeKick, C));
  assert.equal(ipOf(l, E), ipOf(beforeKick, B));
  assert.equal(l.members().length, 4);
  assert.equal(l.isMember(id(B)), false);
  assert.equal(l.isMember(id(D)), false);
  assert.equal(l.revoked(id(B)), true);
  assert.deepEqual(l.rejected().map((r) => r.reason), ['issuer is not an administrator']);

  // All 5040 orders of the 7 events after genesis and the founder's admission would take seconds;
  // every order of the 6 that interact most, then many random orders of all 9.
  const [g, fa, ...rest] = events;
  let n = 0;
  for (const p of permutations(rest.slice(0, 6))) {
    assert.deepEqual(view(ledgerOf(net, [...p, fa, rest[6], g])), reference);
    n++;
  }
  assert.equal(n, 720);
  for (let seed = 1; seed <= 200; seed++) assert.deepEqual(view(ledgerOf(net, shuffled(events, seed))), reference, `seed ${seed}`);
});

test('two members admitting two nodes at the same moment give them different addresses', async () => {
  const { net, base } = await found();
  const invA = await inviteFrom(F, net, 1000);
  const invX = await inviteFrom(F, net, 1000);
  const invY = await inviteFrom(F, net, 1000);
  const shared = [...base, await admit(F, { network: net, member: id(A), name: 'a', invite: invA }, 1100)];
  // F admits X and A admits Y, each without having seen the other's admission.
  const atF = ledgerOf(net, shared);
  const atA = ledgerOf(net, shared);
  assert.equal(atF.nextAddress(), '10.0.0.3');
  assert.equal(atA.nextAddress(), '10.0.0.3');
  const ax = await admit(F, { network: net, member: id(X), name: 'x', invite: invX }, 2000);
  const ay = await admit(A, { network: net, member: id(Y), name: 'y', invite: invY }, 2000);
  atF.add(ax);
  atA.add(ay);
  assert.equal(ipOf(atF, X), '10.0.0.3');
  assert.equal(ipOf(atA, Y), '10.0.0.3'); // provisional: each saw only its own admission
  // Gossip: each learns the other's events; they converge on distinct addresses.
  for (const e of atA.events()) atF.add(e);
  for (const e of atF.events()) atA.add(e);
  assert.deepEqual(view(atF), view(atA));
  assert.equal(atF.digest(), atA.digest());
  const ips = [ipOf(atF, X), ipOf(atF, Y)];
  assert.deepEqual([...ips].sort(), ['10.0.0.3', '10.0.0.4']);
  assert.equal(new Set(atF.members().map((m) => m.meshIp)).size, 4);
});

test('an invite used at two members at once admits exactly one node, everywhere', async () => {
  const { net, base } = await found();
  const invA = await inviteFrom(F, net, 1000);
  const once = await inviteFrom(F, net, 1000); // uses: 1
  const shared = [...base, await admit(F, { network: net, member: id(A), name: 'a', invite: invA }, 1100)];
  const ax = await admit(F, { network: net, member: id(X), name: 'x', invite: once }, 2000);
  const ay = await admit(A, { network: net, member: id(Y), name: 'y', invite: once }, 2000);
  const results = [ledgerOf(net, [...shared, ax, ay]), ledgerOf(net, [ay, ...shared, ax]), ledgerOf(net, [ay, ax, ...shared])];
  for (const l of results) {
    assert.equal(l.members().length, 3);
    assert.equal([l.isMember(id(X)), l.isMember(id(Y))].filter(Boolean).length, 1);
    assert.deepEqual(l.rejected().map((r) => r.reason), ['invite already used']);
    assert.deepEqual(view(l), view(results[0]));
  }
  // The loser is the later one in fold order: (at, id), the same everywhere.
  const [first] = [ax, ay].map((e) => ({ e, id: results[0].ingest(e).id! })).sort((p, q) => (p.id < q.id ? -1 : 1));
  assert.equal(results[0].isMember(first.e.body.member), true);
  assert.equal(results[0].checkInvite(once, 2500), 'invite already used');
});

test('admitting the same member twice with the same invite counts once', async () => {
  const { net, base } = await found();
  const invA = await inviteFrom(F, net, 1000);
  const two = await inviteFrom(F, net, 1000, { uses: 2 });
  const l = ledgerOf(net, [...base, await admit(F, { network: net, member: id(A), name: 'a', invite: invA }, 1100)]);
  // The joiner asked two members; both admitted it.
  l.add(await admit(F, { network: net, member: id(X), name: 'x', invite: two }, 2000));
  const again = await admit(A, { network: net, member: id(X), name: 'x', invite: two }, 2001);
  assert.equal(reasonFor(l, again), 'already a member');
  assert.equal(ipOf(l, X), '10.0.0.3');
  assert.equal(l.checkInvite(two, 2100), null, 'one use left');
  assert.equal(l.checkInvite(two, 2100, id(X)), null, 'X itself may present it again');
  l.add(await admit(F, { network: net, member: id(Y), name: 'y', invite: two }, 2200));
  assert.equal(ipOf(l, Y), '10.0.0.4');
  assert.equal(l.checkInvite(two, 2300), 'invite already used');
  const third = await admit(F, { network: net, member: id(Z), name: 'z', invite: two }, 2300);
  assert.equal(reasonFor(l, third), 'invite already used');
});

test('admission rules: invite needed, admitter must be a member, expiry at admission time', async () => {
  const { net, base } = await found();
  const l = ledgerOf(net, base);
  assert.equal(reasonFor(l, await admit(F, { network: net, member: id(A), name: 'a', invite: null }, 1100)), 'missing invite');
  assert.equal(reasonFor(l, await admit(A, { network: net, member: id(A), name: 'a', invite: null }, 1100)), 'missing invite');
  const inv = await inviteFrom(F, net, 1000, { ttlMs: 500 });
  assert.equal(reasonFor(l, await admit(B, { network: net, member: id(A), name: 'a', invite: inv }, 1100)), 'admitter is not a member');
  assert.equal(reasonFor(l, await admit(F, { network: net, member: id(A), name: 'a', invite: inv }, 1501)), 'expired');
  const ok = await admit(F, { network: net, member: id(A), name: 'a', invite: inv }, 1500); // at == expires: valid
  assert.equal(l.add(ok), 'new');
  assert.equal(ipOf(l, A), '10.0.0.2');
  assert.equal(reasonFor(l, await admit(F, { network: net, member: id(F), name: 'f', invite: null }, 1600)), 'already a member');
  // Before the genesis: void, even when validly signed.
  const early = await admit(F, { network: net, member: id(B), name: 'b', invite: await inviteFrom(F, net, 0) }, 999);
  assert.equal(reasonFor(l, early), 'before genesis');
  // An invite for another network.
  const other = newNetwork({ name: 'work', founder: id(F) });
  assert.equal(reasonFor(l, await admit(F, { network: net, member: id(C), name: 'c', invite: await inviteFrom(F, other, 1000) }, 1700)), 'other network');
  // The builder refuses a token that does not parse; a hand-made admission carrying one is void.
  await assert.rejects(admit(F, { network: net, member: id(C), name: 'c', invite: 'meshd1.garbage' }, 1700), { name: 'InviteError', code: 'malformed' });
  const garbage = await signEnvelope(F, { type: 'admit', network: net.id, member: id(C), name: 'c', invite: 'meshd1.garbage', at: 1700 });
  assert.equal(reasonFor(l, garbage), 'bad invite: not a meshd invite (truncated or corrupted)');
  // A pasted token with line breaks is normalised before signing.
  const pasted = await inviteFrom(F, net, 1000);
  const a = await admit(F, { network: net, member: id(C), name: 'c', invite: `${pasted.token.slice(0, 30)}\n${pasted.token.slice(30)}\n` }, 1700);
  assert.equal(a.body.invite, pasted.token);
});

test('revocation frees the address only for later admissions', async () => {
  const { net, base } = await found();
  const inv = await inviteFrom(F, net, 1000, { uses: 10 });
  const events = [
    ...base,
    await admit(F, { network: net, member: id(A), name: 'a', invite: inv }, 1100), // .2
    await admit(F, { network: net, member: id(B), name: 'b', invite: inv }, 1200), // .3
    await admit(F, { network: net, member: id(C), name: 'c', invite: inv }, 1300), // .4
    await revoke(F, { network: net, member: id(B) }, 2000), // kick: frees .3 from 2000 on
    await admit(F, { network: net, member: id(D), name: 'd', invite: inv }, 1900), // before: .5
    await admit(F, { network: net, member: id(E), name: 'e', invite: inv }, 2100), // after: .3
  ];
  for (const order of [events, [...events].reverse(), shuffled(events, 7)]) {
    const l = ledgerOf(net, order);
    assert.deepEqual(l.members().map((m) => [m.name, m.meshIp]), [
      ['founder', '10.0.0.1'], ['a', '10.0.0.2'], ['e', '10.0.0.3'], ['c', '10.0.0.4'], ['d', '10.0.0.5'],
    ]);
    assert.equal(l.revoked(id(B)), true);
    assert.equal(l.isMember(id(B)), false);
    assert.equal(l.addressOf(id(B)), null);
    assert.equal(l.nextAddress(), '10.0.0.6');
  }
});

test("a revoked member's later records are ignored, and it needs a new invite to come back", async () => {
  const { net, base } = await found();
  const inv = await inviteFrom(F, net, 1000, { uses: 5 });
  const l = ledgerOf(net, [...base, await admit(F, { network: net, member: id(A), name: 'a', invite: inv }, 1100)]);
  const rec = (seq: number, at: number) =>
    record(A, { network: net, wgPublicKey: WG, name: 'a', endpoints: [`192.0.2.1:${51820 + seq}`], multiaddrs: [], seq }, at);
  assert.equal(l.add(await rec(1, 1200)), 'new');
  assert.equal(l.member(id(A))!.record!.seq, 1);
  assert.equal(l.records().length, 1);

  l.add(await revoke(F, { network: net, member: id(A), reason: 'kick' }, 2000));
  assert.equal(l.member(id(A)), null);
  assert.equal(l.add(await rec(2, 2500)), 'new'); // stored (it may matter later) but not in force
  assert.deepEqual(l.records(), []);
  assert.ok(!l.members().some((m) => m.peerId === id(A)));

  // The same invite (uses left) cannot bring it back, whoever admits it...
  assert.equal(reasonFor(l, await admit(F, { network: net, member: id(A), name: 'a', invite: inv }, 3000)), 'revoked');
  assert.equal(l.checkInvite(inv, 3000, id(A)), 'invite already used');
  assert.equal(l.checkInvite(inv, 3000), null, 'still good for someone else');
  // ...a new one does, with a fresh address choice, and only records made after the revocation count.
  const fresh = await inviteFrom(F, net, 3000);
  l.add(await admit(F, { network: net, member: id(A), name: 'a', invite: fresh }, 3100));
  assert.equal(l.revoked(id(A)), false);
  assert.equal(ipOf(l, A), '10.0.0.2');
  assert.equal(l.member(id(A))!.record!.seq, 2); // made at 2500 > revocation at 2000
  assert.equal(l.add(await rec(3, 1500)), 'new'); // higher seq, but dated before the revocation
  assert.equal(l.member(id(A))!.record, null);
  assert.equal(l.add(await rec(4, 3200)), 'new');
  assert.equal(l.member(id(A))!.record!.seq, 4);
});

test('leave is signed by the member itself; kick needs an administrator; nobody kicks the founder', async () => {
  const { net, base } = await found();
  const inv = await inviteFrom(F, net, 1000, { uses: 5 });
  const l = ledgerOf(net, [
    ...base,
    await admit(F, { network: net, member: id(A), name: 'a', invite: inv }, 1100),
    await admit(F, { network: net, member: id(B), name: 'b', invite: inv }, 1200),
    await grant(F, { network: net, member: id(A) }, 1300),
  ]);
  // A leave signed by someone else is not even a valid envelope.
  await assert.rejects(revoke(A, { network: net, member: id(B), reason: 'leave' }, 1400), { name: 'EnvelopeError', code: 'unauthorized' });
  assert.equal(reasonFor(l, await revoke(B, { network: net, member: id(A), reason: 'kick' }, 1400)), 'not an administrator');
  assert.equal(reasonFor(l, await revoke(A, { network: net, member: id(F), reason: 'kick' }, 1400)), 'cannot kick the founder');
  assert.equal(reasonFor(l, await revoke(A, { network: net, member: id(C), reason: 'kick' }, 1400)), 'not a member');
  const leave = await revoke(B, { network: net, member: id(B) }, 1500);
  assert.equal(leave.body.reason, 'leave');
  assert.equal(l.add(leave), 'new');
  assert.equal(l.isMember(id(B)), false);
  assert.equal(l.revoked(id(B)), true);
  // An administrator who is kicked loses its rights, and its outstanding invites die with them.
  const byA = await inviteFrom(A, net, 1500);
  assert.equal(l.checkInvite(byA, 1500), null);
  l.add(await revoke(F, { network: net, member: id(A) }, 1600));
  assert.equal(l.isAdmin(id(A)), false);
  assert.equal(l.checkInvite(byA, 1700), 'issuer is not an administrator');
  // The founder may leave; then it cannot grant any more.
  l.add(await revoke(F, { network: net, member: id(F) }, 1700));
  assert.deepEqual(l.members(), []);
  assert.equal(reasonFor(l, await grant(F, { network: net, member: id(A) }, 1800)), 'founder is not a member');
  assert.equal(reasonFor(l, await admit(F, { network: net, member: id(F), name: 'f', invite: null }, 1900)), 'revoked');
});

test('grant makes an administrator whose invites then work', async () => {
  const { net, base } = await found();
  const inv = await inviteFrom(F, net, 1000, { uses: 5 });
  const l = ledgerOf(net, [
    ...base,
    await admit(F, { network: net, member: id(A), name: 'a', invite: inv }, 1100),
    await admit(F, { network: net, member: id(B), name: 'b', invite: inv }, 1200),
  ]);
  const byA = await inviteFrom(A, net, 1300, { uses: 2 });
  assert.equal(l.isAdmin(id(A)), false);
  assert.equal(l.checkInvite(byA, 1300), 'issuer is not an administrator');
  assert.equal(reasonFor(l, await admit(A, { network: net, member: id(C), name: 'c', invite: byA }, 1400)), 'issuer is not an administrator');
  assert.equal(reasonFor(l, await grant(A, { network: net, member: id(B) }, 1450)), 'only the founder can grant');

  assert.equal(l.add(await grant(F, { network: net, member: id(A) }, 1500)), 'new');
  assert.equal(l.isAdmin(id(A)), true);
  assert.equal(l.member(id(A))!.admin, true);
  assert.equal(l.checkInvite(byA, 1600), null);
  // An admission with A's invite dated after the grant works, through any member.
  l.add(await admit(B, { network: net, member: id(D), name: 'd', invite: byA }, 1600));
  assert.equal(ipOf(l, D), '10.0.0.4');
  assert.equal(l.isMember(id(C)), false, 'the admission dated before the grant stays void');
  assert.equal(reasonFor(l, await grant(F, { network: net, member: id(A) }, 1700)), 'already an administrator');
  assert.equal(reasonFor(l, await grant(F, { network: net, member: id(X) }, 1700)), 'not a member');
});

test("a full range: 'range full' and nextAddress() null", async () => {
  const { net, base } = await found('10.9.0.0/30'); // hosts .1 and .2 only
  const inv = await inviteFrom(F, net, 1000, { uses: 5 });
  const l = ledgerOf(net, base);
  assert.equal(l.members()[0].meshIp, '10.9.0.1');
  assert.equal(l.nextAddress(), '10.9.0.2');
  l.add(await admit(F, { network: net, member: id(A), name: 'a', invite: inv }, 1100));
  assert.equal(ipOf(l, A), '10.9.0.2');
  assert.equal(l.nextAddress(), null);
  assert.equal(reasonFor(l, await admit(F, { network: net, member: id(B), name: 'b', invite: inv }, 1200)), 'range full');
  assert.equal(l.isMember(id(B)), false);
  // A leave makes room again, for admissions after it; the void one stays void.
  l.add(await revoke(A, { network: net, member: id(A) }, 1300));
  assert.equal(l.nextAddress(), '10.9.0.2');
  l.add(await admit(F, { network: net, member: id(C), name: 'c', invite: inv }, 1400));
  assert.equal(ipOf(l, C), '10.9.0.2');
  assert.equal(l.isMember(id(B)), false);
  // Never the network or broadcast address.
  assert.ok(!l.members().some((m) => m.meshIp === '10.9.0.0' || m.meshIp === '10.9.0.3'));
});

test('records: last writer wins by seq, in any order; equal seq resolves the same everywhere', async () => {
  const { net, base } = await found();
  const inv = await inviteFrom(F, net, 1000);
  const events = [...base, await admit(F, { network: net, member: id(A), name: 'a', invite: inv }, 1100)];
  const rec = (seq: number, port: number) =>
    record(A, { network: net, wgPublicKey: WG, name: 'a', endpoints: [`198.51.100.7:${port}`], multiaddrs: ['/ip4/198.51.100.7/tcp/4001'], seq }, 1200 + seq);
  const r1 = await rec(1, 1000), r2 = await rec(2, 2000);
  const l = ledgerOf(net, events);
  assert.equal(l.add(r2), 'new');
  assert.equal(l.add(r1), 'known');
  assert.equal(l.add(r2), 'known');
  assert.deepEqual(l.member(id(A))!.record!.endpoints, ['198.51.100.7:2000']);
  const l2 = ledgerOf(net, events);
  assert.equal(l2.add(r1), 'new');
  assert.equal(l2.add(r2), 'new');
  assert.deepEqual(l2.records(), [r2]);

  // Two different records with one seq (a member that lost its store): both orders keep the same.
  const c1 = await rec(5, 5001), c2 = await rec(5, 5002);
  const p = ledgerOf(net, [...events, c1, c2]), q = ledgerOf(net, [...events, c2, c1]);
  assert.deepEqual(p.records(), q.records());
  assert.equal(p.digest(), q.digest());
});

test('a record signed by someone else for a member is invalid', async () => {
  const { net, base } = await found();
  const inv = await inviteFrom(F, net, 1000);
  const l = ledgerOf(net, [...base, await admit(F, { network: net, member: id(A), name: 'a', invite: inv }, 1100)]);
  const real = await record(A, { network: net, wgPublicKey: WG, name: 'a', endpoints: [], multiaddrs: [], seq: 1 }, 1200);
  // F re-signs A's record body with its own key, claiming to be by F...
  const byF = await signEnvelope(F, { ...real.body, seq: 9 });
  assert.deepEqual(l.ingest(byF).status, 'invalid');
  assert.match(l.ingest(byF).reason!, /signed by the member itself/);
  // ...or keeps A as `by` with F's signature.
  assert.equal(l.add({ ...byF, by: id(A) }), 'invalid');
  assert.equal(l.member(id(A))!.record, null);
  assert.equal(l.add(real), 'new');
});

test('other networks, forged and conflicting geneses are invalid; garbage never throws', async () => {
  const { net, base } = await found();
  const l = ledgerOf(net, base);
  const other = await foundNetwork(F, { name: 'work', memberName: 'founder' }, 1000);
  assert.equal(l.add(other.events[0]), 'invalid');
  assert.equal(l.add(other.events[1]), 'invalid');
  assert.equal(l.ingest(other.events[1]).reason, 'other network');
  // Someone else claiming our network id with itself as founder.
  const hijack = await genesis(A, { ...net, founder: id(A) }, 0);
  assert.equal(l.add(hijack), 'invalid');
  // Same id, same founder, different pnet key: trust on first use in a ledger pinned by id only.
  const byId = new Ledger(net.id);
  assert.equal(byId.add(base[0]), 'new');
  assert.equal(byId.add(await genesis(F, { ...net, psk: 'ab'.repeat(32) }, 900)), 'invalid');
  assert.equal(byId.add(base[0]), 'known');
  // A second genesis of the same network from the founder: the earliest is the root.
  const again = await genesis(F, net, 5000);
  assert.equal(l.add(again), 'new');
  assert.equal(reasonFor(l, again), 'duplicate genesis');
  assert.equal(l.members().length, 1);
  // A genesis that is not by its founder does not even parse.
  assert.equal(l.add({ ...hijack, body: { ...hijack.body, network: net } }), 'invalid');
  for (const junk of [null, undefined, 42, 'x', '{', '{}', [], { body: {}, by: '', sig: '' }, new Uint8Array([1, 2, 3]), { ...base[1], extra: 1 }]) {
    assert.equal(l.add(junk), 'invalid');
  }
  assert.equal(l.members().length, 1);
});

test('add answers new / known, accepts JSON text and bytes, and onChange fires only for news', async () => {
  const { net, base } = await found();
  const l = new Ledger(net);
  assert.deepEqual(l.network(), net, 'the pinned network is known before its genesis arrives');
  let calls = 0;
  const off = l.onChange((ledger) => { assert.equal(ledger, l); calls++; });
  assert.equal(l.add(JSON.stringify(base[0])), 'new');
  assert.equal(l.add(Buffer.from(JSON.stringify(base[0]))), 'known');
  assert.equal(calls, 1);
  const counts = l.addAll([base[0], base[1], base[1], 'junk']);
  assert.deepEqual(counts, { new: 1, known: 2, invalid: 1 });
  assert.equal(calls, 2);
  assert.equal(l.has(l.ingest(base[1]).id!), true);
  assert.deepEqual(l.get(l.ingest(base[1]).id!), base[1]);
  off();
  const inv = await inviteFrom(F, net, 1000);
  l.add(await admit(F, { network: net, member: id(A), name: 'a', invite: inv }, 1100));
  assert.equal(calls, 2);
  // events() is in fold order: by time, whatever the arrival order.
  assert.deepEqual(l.events().map((e) => e.body.at), [1000, 1000, 1100]);
});

test('members() is refolded after a change and callers cannot mutate it', async () => {
  const { net, base } = await found();
  const l = ledgerOf(net, base);
  const first = l.members();
  assert.deepEqual(l.members(), first);
  const inv = await inviteFrom(F, net, 1000);
  l.add(await admit(F, { network: net, member: id(A), name: 'a', invite: inv }, 1100));
  assert.equal(l.members().length, 2);
  assert.throws(() => { (l.members()[0] as { name: string }).name = 'evil'; }, TypeError);
});
