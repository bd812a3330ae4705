// The membership ledger (format 2): convergence whatever the delivery order, addresses, invites,
// revocation, grants, records, trust in the network, the API's answers. Keys are real Ed25519
// identities; every honest event is signed through a Signer over its node's own replica.
// Attacks with hand-made events: ledger-attack.test.ts; random histories: ledger-property.test.ts.
import '../../src/util/polyfill.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Ledger } from '../../src/discovery/ledger.js';
import { Signer, foundNetwork, newNetwork, record } from '../../src/discovery/signer.js';
import { EnvelopeError } from '../../src/discovery/records.js';
import { eventId, signEnvelope } from '../../src/discovery/signed.js';
import {
  Forger, Node, T0, WG, found, foldOrder, forge, idOf, ledgerOf, memberIds, newKeys, permutations, shuffled, view,
} from './helpers/ledger-kit.js';

const [F, A, B, C, D, E, X, Y, Z] = await newKeys(9); // F founds every network below
const [a, b, c, d, e, x, y, z] = [A, B, C, D, E, X, Y, Z].map(idOf);
const f = idOf(F);
/** Why an admission with an invite that was cancelled, or whose issuer was removed, is void. */
const AFTER_CUT = /^its invite was cancelled or its issuer removed by [0-9a-f]{12}, which had not seen it$/;

/** A founded network with the founder's node and a member admitted with a 10-use invite. */
async function setup(opts: { cidr?: string; members?: Array<[typeof A, string]> } = {}) {
  const net = await found(F, { cidr: opts.cidr });
  const fn = new Node(F, net.network, net.base);
  const inv = await fn.invite(T0 + 10, { uses: 10 });
  for (const [k, name] of opts.members ?? []) await fn.admit(idOf(k), inv, T0 + 20, { name });
  return { net, network: net.network, fn, inv };
}

test('the founder is the first member, at the first host, and an administrator', async () => {
  const net = await found(F);
  const l = ledgerOf(net.network, net.base);
  assert.deepEqual(l.network(), net.network);
  assert.equal(l.members().length, 1);
  const [m] = l.members();
  assert.deepEqual({ ...m }, {
    peerId: f, name: 'founder', meshIp: '10.0.0.1', admin: true, founder: true, admittedAt: T0, admittedBy: f,
    admission: eventId(net.admission), invite: null, routes: [], record: null,
  });
  assert.equal(l.isAdmin(f), true);
  assert.equal(l.nextAddress(), '10.0.0.2');
  assert.deepEqual(l.rejected(), []);
  assert.equal(l.size(), 2);
  assert.deepEqual(l.heads(), [eventId(net.admission)]);
  assert.deepEqual(l.events(), net.base);
  // What the next events must carry: the founder continues its chain; a new signer starts one.
  assert.deepEqual(l.nextLink(f), { seq: 3, prev: eventId(net.admission), deps: [] });
  assert.deepEqual(l.nextLink(a), { seq: 1, prev: null, deps: [eventId(net.admission)] });
});

test('an event waits for its history: the admission before the genesis is pending, then both count', async () => {
  const net = await found(F);
  for (const l of [new Ledger(net.network.id), new Ledger()]) {
    const r = l.ingest(net.admission);
    assert.deepEqual(r, { status: 'pending', id: eventId(net.admission) });
    assert.equal(l.held(), 1);
    assert.deepEqual(l.missing(), [eventId(net.genesis)]);
    assert.equal(l.size(), 0);
    assert.deepEqual(l.members(), []);
    assert.equal(l.nextAddress(), null);
    assert.equal(l.network(), null, 'no genesis yet: only an id, or nothing');
    assert.equal(l.ingest(net.admission).status, 'known', 'a held event is known');
    assert.equal(l.add(net.genesis), 'new');
    assert.equal(l.held(), 0);
    assert.deepEqual(l.missing(), []);
    assert.deepEqual(l.network(), net.network, 'trust on first use');
    assert.deepEqual(memberIds(l), [f]);
    assert.equal(l.size(), 2);
  }
});

test('the same events in every order fold to the same members, addresses and rejections', async () => {
  const { network, fn, inv } = await setup();
  await fn.admit(a, inv, T0 + 20); // .2
  const an = new Node(A, network, fn.ledger.events());
  // F admits B while A admits C: both chose .3, neither having seen the other.
  const admitB = await fn.admit(b, inv, T0 + 30);
  const admitC = await an.admit(c, inv, T0 + 30);
  assert.equal(admitB.body.type === 'admit' && admitB.body.ip, '10.0.0.3');
  assert.equal(admitC.body.type === 'admit' && admitC.body.ip, '10.0.0.3');
  fn.receive(an);
  const beforeKick = ledgerOf(network, fn.ledger.events());
  await fn.grant(a, T0 + 40);
  an.receive(fn);
  await an.kick(b, T0 + 50);
  const invA = await an.invite(T0 + 60);
  await an.admit(e, invA, T0 + 70); // takes B's address
  const cn = new Node(C, network, an.ledger.events());
  const invC = await cn.invite(T0 + 80); // stored, but C is no administrator: void
  const events = cn.ledger.events();
  assert.equal(events.length, 11);

  const l = ledgerOf(network, events);
  // The fold, spelled out once: of two admissions choosing one address, the first in (height, id)
  // order keeps it and the other gets the lowest free one; E, admitted after B's kick, gets B's.
  const order = foldOrder(events);
  assert.deepEqual(l.events().map(eventId), order, 'the fold order: height, then id');
  const [first, second] = order.indexOf(eventId(admitB)) < order.indexOf(eventId(admitC)) ? [b, c] : [c, b];
  assert.equal(beforeKick.addressOf(first), '10.0.0.3');
  assert.equal(beforeKick.addressOf(second), '10.0.0.4');
  assert.equal(l.addressOf(a), '10.0.0.2');
  assert.equal(l.addressOf(c), beforeKick.addressOf(c));
  assert.equal(l.addressOf(e), beforeKick.addressOf(b));
  assert.deepEqual(memberIds(l), [f, a, c, e].sort());
  assert.equal(l.revoked(b), true);
  assert.equal(l.isAdmin(a), true);
  assert.deepEqual(l.rejected().map((r) => [r.id, r.reason]), [[eventId(invC.envelope), 'not an administrator']]);

  const reference = view(l);
  let n = 0;
  const [g, fa, ...rest] = events;
  for (const p of permutations(rest.slice(2, 7))) {
    assert.deepEqual(view(ledgerOf(network, [...p, ...rest.slice(7).reverse(), fa, ...rest.slice(0, 2), g])), reference);
    n++;
  }
  assert.equal(n, 120);
  for (let seed = 1; seed <= 150; seed++) assert.deepEqual(view(ledgerOf(network, shuffled(events, seed))), reference, `seed ${seed}`);
});

test('two members admitting two nodes at once: provisional equal addresses, then distinct everywhere', async () => {
  const { network, fn, inv } = await setup();
  await fn.admit(a, inv, T0 + 20);
  const an = new Node(A, network, fn.ledger.events());
  const shared = fn.ledger.heads();
  await fn.admit(x, inv, T0 + 100);
  await an.admit(y, inv, T0 + 100);
  assert.equal(fn.ledger.addressOf(x), '10.0.0.3');
  assert.equal(an.ledger.addressOf(y), '10.0.0.3'); // each saw only its own admission
  assert.notEqual(fn.ledger.digest(), an.ledger.digest());
  // Anti-entropy: each sends what the heads they share do not cover; heads it does not know
  // itself tell it nothing, so it would send everything.
  const toA = fn.ledger.since(shared);
  const toF = an.ledger.since(shared);
  assert.deepEqual(toA.map((ev) => ev.body.type === 'admit' && ev.body.member), [x]);
  assert.deepEqual(toF.map((ev) => ev.body.type === 'admit' && ev.body.member), [y]);
  assert.equal(fn.ledger.since(an.ledger.heads()).length, fn.ledger.size());
  fn.receive(toF);
  an.receive(toA);
  assert.deepEqual(view(fn.ledger), view(an.ledger));
  assert.equal(fn.ledger.digest(), an.ledger.digest());
  assert.deepEqual([fn.ledger.addressOf(x), fn.ledger.addressOf(y)].sort(), ['10.0.0.3', '10.0.0.4']);
  assert.equal(new Set(fn.ledger.members().map((m) => m.meshIp)).size, 4);
  assert.deepEqual(fn.ledger.since(fn.ledger.heads()), []);
  assert.equal(fn.ledger.heads().length, 2, 'two concurrent admissions: two heads');
});

test('a single-use invite used at two members at once admits exactly one node, everywhere', async () => {
  const { network, fn, inv } = await setup();
  await fn.admit(a, inv, T0 + 20);
  const once = await fn.invite(T0 + 30); // uses: 1
  const an = new Node(A, network, fn.ledger.events());
  const ax = await fn.admit(x, once, T0 + 100);
  const ay = await an.admit(y, once, T0 + 100);
  fn.receive(an);
  const events = fn.ledger.events();
  const results = [ledgerOf(network, events), ledgerOf(network, [...events].reverse()), ledgerOf(network, shuffled(events, 3))];
  // Same height: the lower id is first in the fold and wins.
  const [winner, loser] = eventId(ax) < eventId(ay) ? [ax, ay] : [ay, ax];
  for (const l of results) {
    assert.deepEqual(view(l), view(results[0]));
    assert.equal(l.isMember((winner.body as { member: string }).member), true);
    assert.equal(l.isMember((loser.body as { member: string }).member), false);
    assert.deepEqual(l.rejected().map((r) => [r.id, r.reason]), [[eventId(loser), 'invite already used']]);
    assert.equal(l.checkAdmission({ invite: once.id, member: z }, T0 + 200), 'invite already used');
    assert.deepEqual(l.invites(T0 + 200).map((i) => i.id), [inv.id]);
    const info = l.inviteInfo(once.id, T0 + 200)!;
    assert.equal(info.open, false);
    assert.equal(info.reason, 'used up');
    assert.equal(info.used, 1);
  }
});

test('admitting the same member twice with a two-use invite counts once', async () => {
  const { network, fn, inv } = await setup();
  await fn.admit(a, inv, T0 + 20);
  const two = await fn.invite(T0 + 30, { uses: 2 });
  await fn.admit(x, two, T0 + 100);
  // The joiner asked two members; the second had already seen the first admission.
  const an = new Node(A, network, fn.ledger.events());
  const again = await an.admit(x, two, T0 + 101);
  const l = an.ledger;
  assert.equal(l.reasonOf(eventId(again)), 'already a member');
  assert.equal(l.addressOf(x), '10.0.0.3');
  assert.equal(l.inviteInfo(two.id, T0 + 110)!.used, 1);
  assert.equal(l.checkAdmission({ invite: two.id, member: x }, T0 + 110), null, 'X itself may ask again');
  assert.equal(l.checkAdmission({ invite: two.id, member: y }, T0 + 110), null, 'one use left');
  await an.admit(y, two, T0 + 120);
  assert.equal(l.addressOf(y), '10.0.0.4');
  assert.equal(l.checkAdmission({ invite: two.id, member: z }, T0 + 130), 'invite already used');
  const third = await an.admit(z, two, T0 + 130);
  assert.equal(l.reasonOf(eventId(third)), 'invite already used');
  assert.equal(l.isMember(z), false);
});

test('admission rules: an invite and its proof, a member admitting, expiry at the admitter\'s clock', async () => {
  const { network, fn, inv } = await setup();
  const l = fn.ledger;
  // Only the founder admits without an invite, and only itself, once.
  assert.equal(l.reasonOf(eventId(await fn.signer.sign({ type: 'admit', member: f, name: 'again', invite: null, proof: null }, T0 + 30))), 'already a member');
  assert.equal(l.reasonOf(eventId(await fn.signer.sign({ type: 'admit', member: a, name: 'a', invite: null, proof: null }, T0 + 30))), 'missing invite');
  assert.equal(l.isMember(a), false);
  // An invite that is not in the ledger; one without the joiner's proof; a proof made with
  // another invite's secret, or for another member.
  const other = await fn.invite(T0 + 40);
  const noSuch = 'ab'.repeat(32);
  assert.equal(l.reasonOf(eventId(await fn.signer.sign({ type: 'admit', member: a, name: 'a', invite: noSuch, proof: null }, T0 + 50))), 'unknown invite');
  assert.equal(l.checkAdmission({ invite: noSuch, member: a }, T0 + 50), 'unknown invite');
  const bad = /^bad invite proof/;
  assert.match(l.reasonOf(eventId(await fn.signer.sign({ type: 'admit', member: a, name: 'a', invite: inv.id, proof: null }, T0 + 50)))!, bad);
  assert.match(l.reasonOf(eventId(await fn.admit(a, { ...inv, secret: other.secret }, T0 + 50)))!, bad);
  assert.match(l.reasonOf(eventId(await fn.admit(a, inv, T0 + 50, { proofFor: b })))!, bad);
  assert.equal(l.isMember(a), false);
  // A node named by a void admission may sign (its events are stored) but admits nobody.
  const an = new Node(A, network, l.events());
  assert.equal(an.ledger.reasonOf(eventId(await an.admit(b, inv, T0 + 60))), 'admitter is not a member');
  // Expiry is judged at the admission's `at`: at == expires is still valid.
  const short = await fn.invite(T0 + 1000, { ttlMs: 500 });
  assert.equal(l.checkAdmission({ invite: short.id, member: c }, T0 + 1500), null);
  assert.equal(l.checkAdmission({ invite: short.id, member: c }, T0 + 1501), 'expired');
  assert.equal(l.reasonOf(eventId(await fn.admit(c, short, T0 + 1501))), 'expired');
  assert.equal(l.reasonOf(eventId(await fn.admit(c, short, T0 + 1500))), null);
  assert.equal(l.isMember(c), true);
  assert.equal(l.inviteInfo(short.id, T0 + 1400)!.reason, 'used up');
  assert.deepEqual(l.invites(T0 + 1400).map((i) => i.id).sort(), [inv.id, other.id].sort());
});

test('addresses: the admitter\'s choice when free and in range, else the lowest free; names made unique', async () => {
  const { fn, inv } = await setup();
  const l = fn.ledger;
  await fn.admit(a, inv, T0 + 20, { ip: '10.0.0.77', name: 'laptop' });
  await fn.admit(b, inv, T0 + 21, { ip: '10.0.0.77', name: 'laptop' }); // taken
  await fn.admit(c, inv, T0 + 22, { ip: '10.0.1.5', name: 'laptop' }); // outside the range
  await fn.admit(d, inv, T0 + 23, { ip: '10.0.0.0', name: 'laptop' }); // the network address
  await fn.admit(e, inv, T0 + 24, { ip: '10.0.0.255', name: 'laptop-2' }); // broadcast; a name that was made up already
  assert.deepEqual(l.members().map((m) => [m.peerId, m.meshIp, m.name]), [
    [f, '10.0.0.1', 'founder'], [b, '10.0.0.2', 'laptop-2'], [c, '10.0.0.3', 'laptop-3'],
    [d, '10.0.0.4', 'laptop-4'], [e, '10.0.0.5', 'laptop-2-2'], [a, '10.0.0.77', 'laptop'],
  ]);
  assert.equal(l.freeName('laptop'), 'laptop-5');
  assert.equal(l.freeName('desk'), 'desk');
  assert.equal(l.nextAddress(), '10.0.0.6');
  assert.deepEqual(l.rejected(), []);
});

test('a revocation frees the address for the admissions that follow it, not for concurrent ones', async () => {
  const { network, fn, inv } = await setup();
  await fn.admit(a, inv, T0 + 20); // .2
  await fn.admit(b, inv, T0 + 21); // .3
  await fn.admit(c, inv, T0 + 22); // .4
  const an = new Node(A, network, fn.ledger.events());
  await fn.kick(b, T0 + 30);
  await fn.admit(e, inv, T0 + 40); // after the kick: B's .3
  await an.admit(d, inv, T0 + 35); // A had not seen the kick: .5
  fn.receive(an);
  const events = fn.ledger.events();
  for (const order of [events, [...events].reverse(), shuffled(events, 7), shuffled(events, 8)]) {
    const l = ledgerOf(network, order);
    assert.deepEqual(l.members().map((m) => [m.peerId, m.meshIp]), [[f, '10.0.0.1'], [a, '10.0.0.2'], [e, '10.0.0.3'], [c, '10.0.0.4'], [d, '10.0.0.5']]);
    assert.equal(l.revoked(b), true);
    assert.equal(l.removal(b), 'kick');
    assert.equal(l.addressOf(b), null);
    assert.equal(l.nextAddress(), '10.0.0.6');
  }
});

test('a removed identity never comes back, whatever invite; its records stop counting', async () => {
  const { network, fn, inv } = await setup();
  await fn.admit(a, inv, T0 + 20);
  const l = fn.ledger;
  const rec = (seq: number) => record(A, { network, wgPublicKey: WG, name: 'a', endpoints: [`192.0.2.1:${51820 + seq}`], multiaddrs: [], seq }, T0 + seq);
  const r1 = await rec(1);
  assert.equal(l.add(r1), 'new');
  assert.equal(l.member(a)!.record!.seq, 1);
  assert.deepEqual(l.records(), [r1]);

  await fn.kick(a, T0 + 100);
  assert.equal(l.member(a), null);
  assert.equal(l.isMember(a), false);
  assert.equal(l.revoked(a), true);
  assert.equal(l.removal(a), 'kick');
  assert.deepEqual(l.records(), [], 'a former member has no record in force');
  const r2 = await rec(2);
  assert.equal(l.add(r2), 'new', 'stored all the same');
  assert.deepEqual(l.recordOf(a), r2);
  assert.deepEqual(l.records(), []);

  // Not with the invite that still has uses, not with a fresh one.
  const fresh = await fn.invite(T0 + 200);
  assert.equal(l.checkAdmission({ invite: inv.id, member: a }, T0 + 200), 'revoked');
  assert.equal(l.checkAdmission({ invite: fresh.id, member: a }, T0 + 200), 'revoked');
  assert.equal(l.checkAdmission({ invite: fresh.id, member: b }, T0 + 200), null);
  for (const i of [inv, fresh]) assert.match(l.reasonOf(eventId(await fn.admit(a, i, T0 + 210)))!, /^removed: a removed identity cannot come back/);
  assert.equal(l.isMember(a), false);
  assert.deepEqual(memberIds(l), [f]);
});

test('leave is signed by the member itself; a kick needs an administrator; nobody kicks the founder', async () => {
  const { network, fn, inv } = await setup();
  await fn.admit(a, inv, T0 + 20);
  await fn.admit(b, inv, T0 + 21);
  await fn.grant(a, T0 + 22);
  const an = new Node(A, network, fn.ledger.events());
  const bn = new Node(B, network, fn.ledger.events());
  // A leave signed by someone else is not even a valid envelope: the Signer refuses it.
  await assert.rejects(an.signer.sign({ type: 'revoke', member: b, reason: 'leave' }, T0 + 30), { name: 'EnvelopeError', code: 'unauthorized' });
  assert.equal(bn.ledger.reasonOf(eventId(await bn.kick(a, T0 + 30))), 'not an administrator');
  assert.equal(an.ledger.reasonOf(eventId(await an.kick(f, T0 + 30))), 'cannot kick the founder');
  assert.equal(an.ledger.reasonOf(eventId(await an.kick(z, T0 + 31))), 'not a member');
  const leave = await bn.leave(T0 + 40);
  assert.equal(leave.body.type === 'revoke' && leave.body.reason, 'leave');
  assert.equal(bn.ledger.isMember(b), false);
  assert.equal(bn.ledger.removal(b), 'leave');

  // An administrator who is kicked loses its rights, and its open invites die with it.
  const invA = await an.invite(T0 + 50);
  fn.receive(an).receive(bn);
  assert.equal(fn.ledger.checkAdmission({ invite: invA.id, member: c }, T0 + 60), null);
  await fn.kick(a, T0 + 60);
  assert.equal(fn.ledger.isAdmin(a), false);
  assert.equal(fn.ledger.checkAdmission({ invite: invA.id, member: c }, T0 + 70), 'invite dead: its issuer was removed');
  assert.deepEqual(fn.ledger.inviteInfo(invA.id, T0 + 70)!.reason, 'dead: its issuer was removed');
  // An admission after the kick is outside the kick's causal past: void by its cut.
  assert.match(fn.ledger.reasonOf(eventId(await fn.admit(c, invA, T0 + 70)))!, AFTER_CUT);
  assert.equal(fn.ledger.isMember(c), false);

  // The founder may leave; what it signs afterwards does not count.
  await fn.admit(d, inv, T0 + 80);
  await fn.leave(T0 + 90);
  assert.deepEqual(memberIds(fn.ledger), [d]);
  assert.equal(fn.ledger.removal(f), 'leave');
  assert.equal(fn.ledger.nextAddress(), '10.0.0.1');
  assert.match(fn.ledger.reasonOf(eventId(await fn.grant(d, T0 + 100)))!, /removed/);
  assert.match(fn.ledger.reasonOf(eventId(await fn.admit(e, inv, T0 + 100)))!, /removed/);
  assert.equal(fn.ledger.isAdmin(d), false);
  assert.deepEqual(memberIds(fn.ledger), [d]);
});

test('grant: by the founder only; an administrator\'s invites work; seniority follows the grants', async () => {
  const { network, fn, inv } = await setup();
  await fn.admit(a, inv, T0 + 20);
  await fn.admit(b, inv, T0 + 21);
  await fn.admit(c, inv, T0 + 22);
  const an = new Node(A, network, fn.ledger.events());
  const early = await an.invite(T0 + 30); // before A is an administrator: void
  assert.equal(an.ledger.reasonOf(eventId(early.envelope)), 'not an administrator');
  assert.equal(an.ledger.checkAdmission({ invite: early.id, member: x }, T0 + 30), 'invite not valid: not an administrator');
  assert.equal(an.ledger.reasonOf(eventId(await an.grant(b, T0 + 31))), 'only the founder can grant');
  fn.receive(an);
  await fn.grant(a, T0 + 40);
  await fn.grant(b, T0 + 41);
  assert.equal(fn.ledger.isAdmin(a), true);
  assert.equal(fn.ledger.member(a)!.admin, true);
  assert.equal(fn.ledger.reasonOf(eventId(await fn.grant(a, T0 + 42))), 'already an administrator');
  assert.equal(fn.ledger.reasonOf(eventId(await fn.grant(z, T0 + 42))), 'not a member');
  // The void invite stays void; a new one admits, through any member (C is none of the admins).
  an.receive(fn);
  assert.equal(an.ledger.reasonOf(eventId(await an.admit(x, early, T0 + 50))), 'unknown invite');
  const later = await an.invite(T0 + 51, { uses: 2 });
  const cn = new Node(C, network, an.ledger.events());
  await cn.admit(y, later, T0 + 52);
  assert.equal(cn.ledger.isMember(y), true);
  assert.equal(cn.ledger.member(y)!.admittedBy, c);
  assert.equal(cn.ledger.member(y)!.invite, later.id);
  // B (granted after A) cannot kick A; A can kick B; neither can kick the founder.
  const bn = new Node(B, network, cn.ledger.events());
  assert.equal(bn.ledger.reasonOf(eventId(await bn.kick(a, T0 + 60))), 'cannot kick a more senior administrator');
  an.receive(bn);
  assert.equal(an.ledger.reasonOf(eventId(await an.kick(b, T0 + 61))), null);
  assert.equal(an.ledger.revoked(b), true);
  assert.deepEqual(memberIds(an.ledger), [f, a, c, y].sort());
});

test("a full range: 'range full' and nextAddress() null, room again after a leave", async () => {
  const { network, fn, inv } = await setup({ cidr: '10.9.0.0/30' }); // hosts .1 and .2 only
  const l = fn.ledger;
  assert.equal(l.members()[0].meshIp, '10.9.0.1');
  assert.equal(l.nextAddress(), '10.9.0.2');
  await fn.admit(a, inv, T0 + 20);
  assert.equal(l.addressOf(a), '10.9.0.2');
  assert.equal(l.nextAddress(), null);
  const full = await fn.admit(b, inv, T0 + 21);
  assert.equal(l.reasonOf(eventId(full)), 'range full');
  assert.equal(l.isMember(b), false);
  const an = new Node(A, network, l.events());
  fn.receive([await an.leave(T0 + 30)]);
  assert.equal(l.nextAddress(), '10.9.0.2');
  await fn.admit(c, inv, T0 + 40);
  assert.equal(l.addressOf(c), '10.9.0.2');
  assert.equal(l.isMember(b), false, 'the void admission stays void');
  assert.ok(!l.members().some((m) => m.meshIp === '10.9.0.0' || m.meshIp === '10.9.0.3'));
});

test('records: last writer wins by seq in any order; an equal seq resolves the same everywhere', async () => {
  const { network, fn, inv } = await setup();
  await fn.admit(a, inv, T0 + 20);
  const events = fn.ledger.events();
  const rec = (seq: number, port: number) =>
    record(A, { network, wgPublicKey: WG, name: 'a', endpoints: [`198.51.100.7:${port}`], multiaddrs: ['/ip4/198.51.100.7/tcp/4001'], seq }, T0 + port);
  const r1 = await rec(1, 1000);
  const r2 = await rec(2, 2000);
  const l = ledgerOf(network, events);
  assert.equal(l.add(r2), 'new');
  assert.equal(l.add(r1), 'known', 'an older record is no news');
  assert.equal(l.add(r2), 'known');
  assert.deepEqual(l.member(a)!.record!.endpoints, ['198.51.100.7:2000']);
  const l2 = ledgerOf(network, events);
  assert.equal(l2.add(r1), 'new');
  assert.equal(l2.add(r2), 'new');
  assert.deepEqual(l2.records(), [r2]);
  assert.equal(l.recordsDigest(), l2.recordsDigest());
  assert.equal(l.has(eventId(r2)), true);
  assert.deepEqual(l.get(eventId(r2)), r2);
  assert.equal(l.has(eventId(r1)), false, 'the older record is not kept');

  // Two different records with one seq (a member that lost its counter): both orders keep one.
  const c1 = await rec(5, 5001);
  const c2 = await rec(5, 5002);
  const p = ledgerOf(network, [...events, c1, c2]);
  const q = ledgerOf(network, [c2, ...events, c1]);
  assert.deepEqual(p.records(), q.records());
  assert.deepEqual(p.records(), [eventId(c1) > eventId(c2) ? c1 : c2], 'the larger id wins');
  assert.equal(p.digest(), q.digest());

  // A record of a node not (yet) admitted here waits for its admission.
  const r = await record(B, { network, wgPublicKey: WG, name: 'b', endpoints: [], multiaddrs: [], seq: 1 }, T0);
  assert.equal(l.ingest(r).status, 'pending');
  assert.equal(l.recordOf(b), null);
  await fn.admit(b, inv, T0 + 30);
  const admitted = fn.ledger.events().at(-1)!;
  assert.equal(l.ingest(admitted).status, 'new');
  assert.deepEqual(l.recordOf(b), r);
  assert.equal(l.member(b)!.record!.name, 'b');
});

test('a record signed by someone else for a member is invalid', async () => {
  const { network, fn, inv } = await setup();
  await fn.admit(a, inv, T0 + 20);
  const l = fn.ledger;
  const real = await record(A, { network, wgPublicKey: WG, name: 'a', endpoints: [], multiaddrs: [], seq: 1 }, T0);
  const byF = await signEnvelope(F, { ...real.body, seq: 9 });
  const r = l.ingest(byF);
  assert.equal(r.status, 'invalid');
  assert.match(r.reason!, /signed by the member itself/);
  assert.equal(l.add({ ...byF, by: a }), 'invalid', "F's signature presented as A's");
  assert.equal(l.member(a)!.record, null);
  assert.equal(l.add(real), 'new');
});

test('other networks, forged and conflicting geneses are invalid; garbage never throws', async () => {
  const { network, net, fn } = await setup();
  const l = ledgerOf(network, net.base);
  const other = await foundNetwork(F, { name: 'work', memberName: 'founder' }, T0);
  assert.deepEqual(l.ingest(other.events[0]), { status: 'invalid', id: eventId(other.events[0]), reason: 'other network' });
  assert.equal(l.ingest(other.events[1]).reason, 'other network');
  // Someone else claiming our network id with itself as founder: a valid envelope, another network.
  const hijackNet = { ...network, founder: a };
  const hijack = await signEnvelope(A, { type: 'genesis', v: 2, network: hijackNet, seq: 1, prev: null, deps: [], at: T0 });
  assert.deepEqual(l.ingest(hijack).reason, 'conflicting genesis: other network');
  // The same claim signed by A but naming F as founder does not even parse.
  assert.match(l.ingest({ ...hijack, body: { ...hijack.body, network } }).reason!, /bad signature|founder/);
  // Trust on first use with only the id: the first genesis is adopted, a different one refused.
  const byId = new Ledger(network.id);
  assert.equal(byId.add(hijack), 'new');
  assert.equal(byId.add(net.genesis), 'invalid');
  assert.equal(byId.add(net.admission), 'pending', 'its history (our genesis) will never come');
  assert.deepEqual(byId.network(), hijackNet);
  // A ledger whose id is not valid hex cannot even be made.
  assert.throws(() => new Ledger('XYZ'), EnvelopeError);
  // Forged: a flipped signature, a body changed after signing, a swapped signer.
  const inv = await fn.invite(T0 + 10);
  const sig = Buffer.from(inv.envelope.sig, 'base64url');
  sig[5] ^= 1;
  assert.equal(l.add({ ...inv.envelope, sig: sig.toString('base64url') }), 'invalid');
  assert.equal(l.add({ ...inv.envelope, body: { ...inv.envelope.body, uses: 9 } }), 'invalid');
  assert.equal(l.add({ ...inv.envelope, by: a }), 'invalid');
  const junk: unknown[] = [null, undefined, 42, 'x', '{', '{}', [], { body: {}, by: '', sig: '' }, new Uint8Array([1, 2, 3]),
    { ...net.admission, extra: 1 }, { get body(): never { throw new Error('boom'); }, by: f, sig: 'x' }, Symbol('s'), 10n,
    JSON.stringify(net.admission).replace('"seq":2', '"seq":2.5'), 'x'.repeat(100_000)];
  for (const j of junk) {
    assert.equal(l.add(j), 'invalid');
    assert.equal(typeof l.ingest(j).reason, 'string');
  }
  assert.deepEqual(l.addAll(junk), { new: 0, known: 0, pending: 0, invalid: junk.length });
  assert.deepEqual(memberIds(l), [f]);
  assert.equal(l.size(), 2);
});

test('add answers new / known / pending, takes JSON text and bytes; onChange fires only for news', async () => {
  const { network, net, fn, inv } = await setup();
  await fn.admit(a, inv, T0 + 20);
  const [g, fa, i, aa] = fn.ledger.events();
  const l = new Ledger(network);
  assert.deepEqual(l.network(), network, 'the pinned network is known before its genesis arrives');
  let calls = 0;
  const off = l.onChange((ledger) => {
    assert.equal(ledger, l);
    calls++;
  });
  assert.equal(l.add(JSON.stringify(g)), 'new');
  assert.equal(l.add(Buffer.from(JSON.stringify(g))), 'known');
  assert.equal(calls, 1);
  assert.equal(l.add(aa), 'pending');
  assert.equal(calls, 1, 'nothing stored');
  // addAll puts parents first (fa after i), counts every event stored, the released ones
  // included, and notifies once.
  assert.deepEqual(l.addAll([fa, i, fa, 'junk']), { new: 3, known: 1, pending: 0, invalid: 1 });
  assert.equal(calls, 2);
  assert.equal(l.has(eventId(aa)), true);
  assert.deepEqual(l.get(eventId(aa)), aa);
  assert.equal(l.get('00'.repeat(32)), null);
  // ingest of an event that releases a held one: 'new' for itself, and one notification.
  const rec = await record(A, { network, wgPublicKey: WG, name: 'a', endpoints: [], multiaddrs: [], seq: 1 }, T0);
  assert.equal(l.add(rec), 'new', 'a record is news too');
  assert.equal(calls, 3);
  assert.equal(l.add(rec), 'known');
  assert.equal(calls, 3);
  off();
  await fn.admit(b, inv, T0 + 30);
  l.addAll(fn.ledger.events());
  assert.equal(calls, 3, 'unsubscribed');
  // events(): parents first, whatever the arrival order.
  assert.deepEqual(l.events().map(eventId), foldOrder(fn.ledger.events()));
  assert.deepEqual(l.events().slice(0, 2), net.base);
  // A throwing listener does not stop the others, and the add itself took effect.
  const l2 = new Ledger(network);
  let second = 0;
  l2.onChange(() => { throw new Error('listener'); });
  l2.onChange(() => { second++; });
  assert.throws(() => l2.add(g), /listener/);
  assert.equal(second, 1);
  assert.equal(l2.size(), 1);
});

test('a copy of a stored entry is known at once; the same entry with another signature is refused, never known', async () => {
  const { network, fn, inv } = await setup();
  await fn.admit(a, inv, T0 + 20);
  const [g, fa, i, aa] = fn.ledger.events();
  const l = new Ledger(network);
  const rec = await record(A, { network, wgPublicKey: WG, name: 'a', endpoints: [], multiaddrs: [], seq: 1 }, T0);
  assert.deepEqual(l.addAll([g, fa, i]), { new: 3, known: 0, pending: 0, invalid: 0 });
  assert.equal(l.add(aa), 'new');
  assert.equal(l.add(rec), 'new');
  // Copies as the wire brings them (parsed JSON, keys in any order): known.
  const copies = [g, fa, i, aa, rec].map((env) => JSON.parse(JSON.stringify({ sig: env.sig, by: env.by, body: env.body })));
  assert.deepEqual(l.addAll(copies), { new: 0, known: 5, pending: 0, invalid: 0 });
  // The same bodies and signers with another entry's signature: forged, whichever kind.
  const forged = [g, fa, aa, rec].map((env, k) => ({ ...env, sig: [i, g, fa, aa][k].sig }));
  assert.deepEqual(l.addAll(forged), { new: 0, known: 0, pending: 0, invalid: 4 });
  assert.deepEqual(l.addAll([{ ...g, extra: 1 }, { ...rec, body: { ...rec.body, seq: 2 } }]), { new: 0, known: 0, pending: 0, invalid: 2 }, 'not the same entry');
  // A held event (its history missing) is known again too, and a forged copy of it is not.
  const l2 = new Ledger(network);
  assert.equal(l2.add(aa), 'pending');
  assert.deepEqual(l2.addAll([{ ...aa }, { ...aa, sig: g.sig }]), { new: 0, known: 1, pending: 0, invalid: 1 });
  assert.equal(l.size(), 4);
});

test('results are refolded after a change and callers cannot mutate them', async () => {
  const { fn, inv } = await setup();
  const l = fn.ledger;
  const first = l.members();
  assert.deepEqual(l.members(), first);
  await fn.admit(a, inv, T0 + 20);
  await fn.signer.sign({ type: 'admit', member: b, name: 'b', invite: null, proof: null }, T0 + 30); // void
  assert.equal(l.members().length, 2);
  assert.equal(first.length, 1, 'an earlier answer is not changed behind the caller');
  assert.throws(() => { (l.members()[0] as { name: string }).name = 'evil'; }, TypeError);
  assert.throws(() => { (l.member(a) as { admin: boolean }).admin = true; }, TypeError);
  assert.throws(() => { (l.invites(T0)[0] as { uses: number }).uses = 99; }, TypeError);
  assert.throws(() => { (l.rejected()[0] as { reason: string }).reason = 'fine'; }, TypeError);
  assert.throws(() => { (l.events()[0].body as { at: number }).at = 0; }, TypeError);
  l.rejected().pop();
  l.members().pop();
  l.heads().pop();
  assert.equal(l.rejected().length, 1);
  assert.equal(l.members().length, 2);
  assert.equal(l.heads().length, 1);
  assert.equal(l.isAdmin(a), false);
});

test('cancel: an administrator closes an open invite; later admissions with it are void', async () => {
  const { network, fn, inv } = await setup();
  await fn.admit(a, inv, T0 + 20);
  const three = await fn.invite(T0 + 30, { uses: 3 });
  await fn.admit(x, three, T0 + 40);
  assert.deepEqual(fn.ledger.invites(T0 + 50).map((i) => [i.id, i.used]), [[three.id, 1], [inv.id, 1]], 'newest first');
  const an = new Node(A, network, fn.ledger.events());
  assert.equal(an.ledger.reasonOf(eventId(await an.cancel(three.id, T0 + 50))), 'not an administrator');
  await fn.cancel(three.id, T0 + 60);
  assert.deepEqual(fn.ledger.invites(T0 + 70).map((i) => i.id), [inv.id]);
  assert.equal(fn.ledger.inviteInfo(three.id.slice(0, 8), T0 + 70)!.reason, 'cancelled');
  assert.equal(fn.ledger.checkAdmission({ invite: three.id, member: y }, T0 + 70), 'invite cancelled');
  assert.match(fn.ledger.reasonOf(eventId(await fn.admit(y, three, T0 + 70)))!, AFTER_CUT);
  assert.equal(fn.ledger.reasonOf(eventId(await fn.cancel(three.id, T0 + 80))), 'invite already cancelled');
  assert.equal(fn.ledger.reasonOf(eventId(await fn.cancel('cd'.repeat(32), T0 + 80))), 'unknown invite');
  assert.equal(fn.ledger.isMember(x), true, 'whom it admitted before stays');
  assert.equal(fn.ledger.isMember(y), false);
  assert.equal(fn.ledger.inviteInfo('zz', T0), null);
  assert.equal(fn.ledger.inviteInfo(three.id.slice(0, 5), T0), null, 'at least 6 characters');
});

test('nextLink follows the signer\'s chain and the heads; a Signer never forks its own chain', async () => {
  const { network, fn, inv } = await setup();
  const l = fn.ledger;
  // Three drafts at once: the Signer signs them one after the other.
  const [s1, s2, s3] = await Promise.all([fn.admit(a, inv, T0 + 20), fn.admit(b, inv, T0 + 20), fn.invite(T0 + 20)]);
  assert.deepEqual([s1.body.seq, s2.body.seq, s3.envelope.body.seq], [4, 5, 6]);
  assert.deepEqual([s1.body.prev, s2.body.prev, s3.envelope.body.prev], [eventId(inv.envelope), eventId(s1), eventId(s2)]);
  assert.deepEqual(l.nextLink(f), { seq: 7, prev: eventId(s3.envelope), deps: [] });
  // A replica that has not seen the last two of them signs with what it knows.
  const an = new Node(A, network, l.events().slice(0, 4));
  assert.deepEqual(an.ledger.nextLink(a), { seq: 1, prev: null, deps: [eventId(s1)] });
  // The Signer refuses what its own ledger would not store, and nothing without a network.
  const nobody = new Signer(Z, new Ledger());
  await assert.rejects(nobody.sign({ type: 'grant', member: a }, T0), /no network/);
  const stranger = new Signer(Z, ledgerOf(network, l.events()));
  await assert.rejects(stranger.sign({ type: 'grant', member: a }, T0), /never admitted/);
  await assert.rejects(fn.signer.sign({ type: 'admit', member: a, name: 'Bad Name', invite: null, proof: null }, T0), { name: 'EnvelopeError', code: 'malformed' });
  await assert.rejects(fn.signer.issueInvite({ ttlMs: 0 }, T0), /ttl/);
  await assert.rejects(fn.signer.issueInvite({ uses: 0 }, T0), EnvelopeError);
  assert.deepEqual(l.nextLink(f).seq, 7, 'a refused draft does not use up a chain position');
  // newNetwork: a random id and pnet key each time.
  const n1 = newNetwork({ name: 'x', founder: f });
  const n2 = newNetwork({ name: 'x', founder: f });
  assert.notEqual(n1.id, n2.id);
  assert.notEqual(n1.psk, n2.psk);
  assert.equal(n1.cidr, '10.0.0.0/24');
  // A forger's link helper agrees with the ledger's.
  const forger = Forger.from(F, network, l);
  const next = await forger.sign({ type: 'cancel', invite: inv.id }, l.heads().map((h) => l.get(h)!), T0 + 30);
  assert.deepEqual({ seq: next.body.seq, prev: next.body.prev, deps: next.body.deps }, l.nextLink(f));
  assert.equal(l.add(next), 'new');
});

test('a genesis alone admits nobody; a network pinned at construction refuses other geneses', async () => {
  const net = await found(F);
  const l = new Ledger(net.network);
  assert.equal(l.add(net.genesis), 'new');
  assert.deepEqual(l.members(), []);
  assert.equal(l.nextAddress(), '10.0.0.1');
  const forged = await forge(F, net.network, { type: 'genesis', v: 2, network: { ...net.network, name: 'other' }, seq: 1, prev: null, deps: [], at: T0 });
  assert.equal(l.ingest(forged).reason, 'conflicting genesis: other network');
  assert.equal(l.add(net.admission), 'new');
  assert.deepEqual(memberIds(l), [f]);
  assert.equal(l.checkAdmission({ invite: 'ab'.repeat(32), member: a }, T0), 'unknown invite');
  assert.equal(new Ledger().checkAdmission({ invite: 'ab'.repeat(32), member: a }, T0), 'no network');
  assert.deepEqual(new Ledger().members(), []);
  assert.deepEqual(new Ledger().rejected(), []);
  assert.equal(new Ledger().freeName('x'), 'x');
  assert.deepEqual(new Ledger().invites(T0), []);
});

test('routes: an administrator approves prefixes for a member (the latest approval counts); nobody else can; a record advertises them; bad prefixes never parse', async () => {
  const { fn, network } = await setup({ members: [[A, 'a'], [B, 'b']] });
  const l = fn.ledger;
  assert.deepEqual(l.member(a)!.routes, []);
  await fn.signer.sign({ type: 'routes', member: a, approved: ['192.168.50.0/24', 'fd00:50::/64'] }, T0 + 30);
  assert.deepEqual(l.member(a)!.routes, ['192.168.50.0/24', 'fd00:50::/64']);
  await fn.signer.sign({ type: 'routes', member: a, approved: ['0.0.0.0/0'] }, T0 + 31);
  assert.deepEqual(l.member(a)!.routes, ['0.0.0.0/0'], 'the latest approval replaces the earlier');
  // A member that is not an administrator: its approval is stored and void.
  const an = new Node(A, network, l.events());
  const mine = await an.signer.sign({ type: 'routes', member: a, approved: ['10.9.0.0/16'] }, T0 + 32);
  assert.equal(l.add(mine), 'new');
  assert.equal(l.reasonOf(eventId(mine)), 'not an administrator');
  assert.deepEqual(l.member(a)!.routes, ['0.0.0.0/0']);
  // Only canonical prefixes: host bits, a bare address, a repeat, garbage.
  for (const approved of [['192.168.50.1/24'], ['192.168.50.1'], ['10.1.0.0/16', '10.1.0.0/16'], ['nope/8'], ['10.0.0.0/33']]) {
    await assert.rejects(fn.signer.sign({ type: 'routes', member: b, approved }, T0 + 40), EnvelopeError, JSON.stringify(approved));
  }
  // A record carries what its member advertises; without any, the field is absent (older records read the same).
  const r = await record(A, { network, wgPublicKey: WG, name: 'a', endpoints: [], multiaddrs: [], routes: ['192.168.50.0/24'], seq: 1 }, T0 + 50);
  assert.deepEqual(r.body.routes, ['192.168.50.0/24']);
  assert.equal('routes' in (await record(A, { network, wgPublicKey: WG, name: 'a', endpoints: [], multiaddrs: [], seq: 2 }, T0 + 51)).body, false);
  // A kicked member's approval goes with it.
  await fn.kick(a, T0 + 60);
  assert.equal(l.member(a), null);
});
