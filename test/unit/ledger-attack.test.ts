// Adversarial ledger tests: events signed with real member keys by a member that lies (backdates,
// picks its deps and prev, forks its own chain, acts beyond its rights), thrown at the fold. Each
// case asserts who is a member afterwards and why the bad events do not count, on ledgers that
// receive the same events in many orders.
import '../../src/util/polyfill.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Ledger } from '../../src/discovery/ledger.js';
import { Signer, record } from '../../src/discovery/signer.js';
import { inviteProof } from '../../src/discovery/invite.js';
import { MAX_ENVELOPE_CHARS } from '../../src/discovery/records.js';
import { eventId } from '../../src/discovery/signed.js';
import {
  Forger, HOUR, Node, T0, WG, forge, found, idOf, ledgerOf, linkAfter, memberIds, newKeys, shuffled, view,
  type AnyEnv, type Env,
} from './helpers/ledger-kit.js';

const keys = await newKeys(11);
const [F, A, B, M, N, X, Y, Z] = keys;
const [f, a, b, m, n, x, y, z, p, q, w] = keys.map(idOf);

const REMOVED = /^its signer was removed by [0-9a-f]{12}, which had not seen it$/;
const INVITE_CUT = /^its invite was cancelled or its issuer removed by [0-9a-f]{12}, which had not seen it$/;
const EQUIVOCATION = /^equivocation: its signer signed two events at position \d+ of its chain$/;
const BAD_PROOF = /^bad invite proof/;

/**
 * The mesh every case starts from: F founded it; A and B are administrators, A granted first (so
 * senior to B); M and N are members; `inv` is F's open invite (many uses).
 */
async function mesh() {
  const net = await found(F);
  const fn = new Node(F, net.network, net.base);
  const inv = await fn.invite(T0 + 10, { uses: 100, ttlMs: 1000 * HOUR });
  let i = 0;
  for (const id of [a, b, m, n]) await fn.admit(id, inv, T0 + 20 + i++);
  await fn.grant(a, T0 + 30);
  await fn.grant(b, T0 + 31);
  const network = net.network;
  /** A replica of `key` that has seen what F has seen so far. */
  const node = (key: typeof A): Node => new Node(key, network, fn.ledger.events());
  return { net, network, fn, inv, node };
}

/**
 * Builds ledgers from `events` in order, reversed and shuffled: all must agree (`view`), and `check`
 * must hold on each. Returns the first.
 */
function everyOrder(network: Parameters<typeof ledgerOf>[0], events: readonly unknown[], check: (l: Ledger) => void, shuffles = 25, opts: { again?: boolean } = {}): Ledger {
  const first = ledgerOf(network, events);
  check(first);
  const reference = view(first);
  const orders = [[...events].reverse(), ...Array.from({ length: shuffles }, (_, i) => shuffled(events, 1000 + i))];
  for (const order of orders) {
    const l = ledgerOf(network, order);
    // Anti-entropy offers everything once more (an event refused before its signer's admission
    // arrived is stored now).
    if (opts.again) l.addAll(order);
    check(l);
    assert.deepEqual(view(l), reference);
  }
  return first;
}

/** All events of several replicas, each once. */
function union(...nodes: Node[]): Env[] {
  const out = new Map<string, Env>();
  for (const node of nodes) for (const e of node.ledger.events()) out.set(eventId(e), e);
  return [...out.values()];
}

const reason = (l: Ledger, e: { body: unknown; by: string }): string | null => l.reasonOf(eventId(e));

test("a kicked administrator that kept its state: nothing it signs outside the kick's past counts", async () => {
  const { network, fn, inv, node } = await mesh();
  const an = node(A);
  const invA = await an.invite(T0 + 40, { uses: 5 });
  await an.admit(p, invA, T0 + 41); // before the kick, and the kick saw it
  fn.receive(an);
  await fn.kick(a, T0 + 50);
  // A never received its kick (or pretends so): its replica still says it is an administrator.
  const bad: AnyEnv[] = [];
  bad.push(await an.admit(y, invA, T0 + 60)); // its own invite, issued before the kick
  const invA2 = await an.invite(T0 + 61);
  bad.push(invA2.envelope, await an.admit(x, invA2, T0 + 62));
  bad.push(await an.kick(b, T0 + 63)); // A is senior to B: this kick would count
  bad.push(await an.kick(m, T0 + 64));
  bad.push(await an.cancel(inv.id, T0 + 65));
  // Then, having heard of its kick, A backdates: an admission dated long before everything, its
  // deps chosen to predate the kick.
  an.receive(fn);
  const forger = Forger.from(A, network, an.ledger);
  const backdated = [
    await forger.admit(z, invA, [fn.ledger.get(eventId(invA.envelope))!], T0 - 1_000_000),
    await forger.sign({ type: 'grant', member: n }, [], T0 - 1_000_000),
  ];
  bad.push(...backdated);

  everyOrder(network, [...union(fn, an), ...backdated], (l) => {
    assert.deepEqual(memberIds(l), [f, b, m, n, p].sort());
    assert.equal(l.removal(a), 'kick');
    assert.equal(l.isAdmin(b), true);
    assert.equal(l.isAdmin(n), false);
    for (const e of bad) assert.match(reason(l, e)!, REMOVED);
    for (const id of [x, y, z]) {
      assert.equal(l.isMember(id), false);
      assert.equal(l.revoked(id), false, 'never a member, never removed: it may still join with a good invite');
    }
    assert.deepEqual(l.invites(T0 + 100).map((i) => i.id), [inv.id], "F's invite still open; A's died with it");
  });
});

test('events a member signs after its own removal count for nothing, whatever their date', async () => {
  const { network, fn, inv, node } = await mesh();
  const mn = node(M);
  await mn.leave(T0 + 40);
  const afterLeave = [await mn.admit(x, inv, T0 + 41), await mn.admit(y, inv, T0 - 5_000)];
  // The founder leaves too (A remains an administrator); its later grant and admission are void.
  fn.receive(mn);
  await fn.leave(T0 + 50);
  const afterFounder = [await fn.grant(n, T0 + 51), await fn.admit(z, inv, T0 + 52), await fn.kick(a, T0 + 53)];
  const an = node(A);
  const lateF = await an.admit(q, inv, T0 + 60); // F's invites died with it
  const invA = await an.invite(T0 + 61);
  await an.admit(w, invA, T0 + 62); // an administrator that stays: counts
  everyOrder(network, union(fn, an, mn), (l) => {
    assert.deepEqual(memberIds(l), [a, b, n, w].sort());
    assert.match(reason(l, lateF)!, INVITE_CUT);
    assert.equal(l.removal(m), 'leave');
    assert.equal(l.removal(f), 'leave');
    for (const e of [...afterLeave, ...afterFounder]) assert.match(reason(l, e)!, REMOVED);
    assert.equal(l.isAdmin(n), false);
    assert.equal(l.isAdmin(a), true);
  });
});

test('future-dated events count normally: the causal order decides, not the clock', async () => {
  const { network, fn, node } = await mesh();
  const far = T0 + 100 * 365 * 24 * HOUR;
  const future = await fn.invite(far, { uses: 3 }); // expires at far + 1 h
  await fn.admit(x, future, far + 1);
  await fn.admit(y, future, T0 - 10); // dated before the invite: still before it expires
  await fn.grant(m, far + 2);
  const mn = node(M);
  await mn.kick(n, T0 - 20); // dated before its grant, but signed after it
  const rec = await record(X, { network, wgPublicKey: WG, name: 'x', endpoints: [], multiaddrs: [], seq: 1 }, far * 2);
  const l = everyOrder(network, [...mn.ledger.events(), rec], (l) => {
    assert.deepEqual(memberIds(l), [f, a, b, m, x, y].sort());
    assert.equal(l.removal(n), 'kick');
    assert.equal(l.isAdmin(m), true);
    assert.equal(l.member(x)!.record!.at, far * 2);
    assert.deepEqual(l.rejected(), []);
  });
  const ats = l.events().map((e) => e.body.at);
  assert.notDeepEqual(ats, [...ats].sort((p1, p2) => p1 - p2), 'the fold order is not the order of the clocks');
});

test('a member that is no administrator cannot kick, grant, issue invites or cancel', async () => {
  const { network, fn, inv, node } = await mesh();
  const mn = node(M);
  const kick = await mn.kick(n, T0 + 40);
  const kickAdmin = await mn.kick(a, T0 + 41);
  const grant = await mn.grant(n, T0 + 42);
  const invM = await mn.invite(T0 + 43);
  const cancel = await mn.cancel(inv.id, T0 + 44);
  const useIt = await mn.admit(x, invM, T0 + 45);
  everyOrder(network, union(fn, mn), (l) => {
    assert.deepEqual(memberIds(l), [f, a, b, m, n].sort());
    assert.equal(reason(l, kick), 'not an administrator');
    assert.equal(reason(l, kickAdmin), 'not an administrator');
    assert.equal(reason(l, grant), 'only the founder can grant');
    assert.equal(reason(l, invM.envelope), 'not an administrator');
    assert.equal(reason(l, cancel), 'not an administrator');
    assert.equal(reason(l, useIt), 'unknown invite');
    assert.equal(l.isAdmin(n), false);
    assert.deepEqual(l.invites(T0 + 50).map((i) => i.id), [inv.id]);
  });
  // An administrator cannot grant either: only the founder.
  const an = node(A);
  assert.equal(reason(an.ledger, await an.grant(m, T0 + 50)), 'only the founder can grant');
});

test('a junior administrator cannot kick a senior one, nor anyone the founder', async () => {
  const { fn, node } = await mesh();
  const bn = node(B);
  assert.equal(reason(bn.ledger, await bn.kick(a, T0 + 40)), 'cannot kick a more senior administrator');
  assert.equal(reason(bn.ledger, await bn.kick(f, T0 + 41)), 'cannot kick the founder');
  assert.equal(bn.ledger.isAdmin(a), true);
  const an = node(A);
  an.receive(bn);
  assert.equal(reason(an.ledger, await an.kick(f, T0 + 42)), 'cannot kick the founder');
  assert.equal(reason(an.ledger, await an.kick(b, T0 + 43)), null);
  assert.equal(an.ledger.removal(b), 'kick');
  fn.receive(an);
  assert.deepEqual(memberIds(fn.ledger), [f, a, m, n].sort());
});

test("two administrators kicking each other at once: only the senior's kick counts, on every ledger", async () => {
  const { network, fn } = await mesh();
  const base = fn.ledger.events();
  const seen = new Set<string>();
  for (let trial = 0; trial < 40 && seen.size < 2; trial++) {
    const an = new Node(A, network, base);
    const bn = new Node(B, network, base);
    const kickA = await an.kick(b, T0 + 200 + trial);
    const kickB = await bn.kick(a, T0 + 200 + trial);
    const invB = await bn.invite(T0 + 201 + trial); // what B does next dies with it
    const byB = await bn.admit(x, invB, T0 + 202 + trial);
    const l = everyOrder(network, union(an, bn), (l) => {
      assert.deepEqual(memberIds(l), [f, a, m, n].sort());
      assert.equal(l.isAdmin(a), true);
      assert.equal(l.removal(b), 'kick');
      assert.equal(l.revoked(a), false);
      assert.equal(reason(l, kickA), null);
      assert.match(reason(l, kickB)!, REMOVED);
      assert.match(reason(l, byB)!, REMOVED);
      assert.match(reason(l, invB.envelope)!, REMOVED);
    }, 6);
    // Which of the two kicks the fold reaches first depends on their ids: see both.
    const order = l.events().map(eventId);
    seen.add(order.indexOf(eventId(kickA)) < order.indexOf(eventId(kickB)) ? 'senior first' : 'junior first');
  }
  assert.deepEqual([...seen].sort(), ['junior first', 'senior first']);
});

test("a removed administrator's invite admits nobody after its removal, nor concurrently with it", async () => {
  const { network, fn, inv, node } = await mesh();
  const an = node(A);
  const invA = await an.invite(T0 + 40, { uses: 10 });
  await an.admit(p, invA, T0 + 41); // before the kick, which saw it: stays
  fn.receive(an);
  const mn = node(M); // M has A's invite and P's admission
  await fn.kick(a, T0 + 50);
  const concurrent = await mn.admit(x, invA, T0 + 55); // M has not seen the kick
  mn.receive(fn);
  const after = await mn.admit(y, invA, T0 + 60); // M has seen it
  const ok = await mn.admit(z, inv, T0 + 61); // F's invite is fine
  everyOrder(network, union(fn, mn), (l) => {
    assert.deepEqual(memberIds(l), [f, b, m, n, p, z].sort());
    assert.match(reason(l, concurrent)!, INVITE_CUT);
    assert.match(reason(l, after)!, INVITE_CUT);
    assert.equal(reason(l, ok), null);
    assert.equal(l.checkAdmission({ invite: invA.id, member: q }, T0 + 70), 'invite dead: its issuer was removed');
    assert.equal(l.inviteInfo(invA.id, T0 + 70)!.open, false);
  });
});

test("an honest admission concurrent with the admitter's removal is void; one the removal saw stays", async () => {
  const { network, fn, inv, node } = await mesh();
  const mn = node(M);
  const seen = await mn.admit(y, inv, T0 + 40);
  fn.receive(mn);
  const concurrent = await mn.admit(x, inv, T0 + 60);
  await fn.kick(m, T0 + 60);
  everyOrder(network, union(fn, mn), (l) => {
    assert.equal(l.isMember(x), false);
    assert.equal(l.isMember(y), true);
    assert.equal(l.removal(m), 'kick');
    assert.match(reason(l, concurrent)!, /removed/);
    assert.match(reason(l, concurrent)!, REMOVED);
    assert.equal(reason(l, seen), null);
    // X may ask again: the invite still has uses, and X was never removed.
    assert.equal(l.checkAdmission({ invite: inv.id, member: x }, T0 + 70), null);
  });
});

test('replayed old records are ignored; a forged newer one is invalid', async () => {
  const { network, fn } = await mesh();
  const recs = await Promise.all([1, 2, 3, 4, 5].map((seq) =>
    record(M, { network, wgPublicKey: WG, name: 'm', endpoints: [`192.0.2.7:${51820 + seq}`], multiaddrs: [], seq }, T0 + 100 * (6 - seq))));
  const l = ledgerOf(network, fn.ledger.events());
  assert.equal(l.add(recs[4]), 'new');
  for (const r of recs.slice(0, 4)) assert.equal(l.add(r), 'known');
  assert.deepEqual(l.recordOf(m), recs[4]);
  for (let seed = 1; seed <= 10; seed++) {
    const other = ledgerOf(network, shuffled([...fn.ledger.events(), ...recs], seed));
    assert.equal(other.member(m)!.record!.seq, 5);
    assert.equal(other.recordsDigest(), l.recordsDigest());
  }
  // N signs "M's" record with a higher seq: not M's signature, so invalid.
  const fake = await forge(N, network, { ...recs[4].body, seq: 99, endpoints: ['203.0.113.66:51820'] });
  assert.equal(l.add(fake), 'invalid');
  assert.equal(l.add({ ...fake, by: m }), 'invalid');
  assert.equal(l.member(m)!.record!.seq, 5);
  // After M's removal, replaying its latest record does not bring it back.
  await fn.kick(m, T0 + 50);
  l.addAll(fn.ledger.events());
  assert.equal(l.add(recs[4]), 'known');
  assert.deepEqual(l.records().map((r) => r.by), [], 'only M had a record; M is gone');
  assert.equal(l.isMember(m), false);
});

test("an admission with a proof for another member, or another admission's proof, is void", async () => {
  const { network, fn, inv, node } = await mesh();
  const other = await fn.invite(T0 + 35);
  const mn = node(M);
  await fn.invite(T0 + 36); // so that N's admission of X comes after M's first event in the fold
  const nn = node(N);
  const admitX = await nn.admit(x, inv, T0 + 40);
  const proofX = (admitX.body as { proof: string }).proof;
  // Before M has seen X's admission: X's proof, presented for another invite of the same network.
  const wrongInvite = await mn.signer.sign({ type: 'admit', member: x, name: 'x', invite: other.id, proof: proofX }, T0 + 41);
  mn.receive(nn);
  // Having read X's admission, M reuses its proof for Y; a joiner's proof made for Q, used for Z;
  // a proof made with the secret of another invite.
  const copied = await mn.signer.sign({ type: 'admit', member: y, name: 'y', invite: inv.id, proof: proofX }, T0 + 50);
  const forOther = await mn.admit(z, inv, T0 + 51, { proofFor: q });
  const otherSecret = await mn.admit(w, { ...inv, secret: other.secret }, T0 + 53);
  everyOrder(network, union(nn, mn), (l) => {
    for (const e of [wrongInvite, copied, forOther, otherSecret]) assert.match(reason(l, e)!, BAD_PROOF);
    assert.equal(reason(l, admitX), null);
    assert.deepEqual(memberIds(l), [f, a, b, m, n, x].sort());
    assert.equal(l.inviteInfo(inv.id, T0 + 60)!.used, 5);
    assert.equal(l.inviteInfo(other.id, T0 + 60)!.used, 0);
  }, 10);
});

test('equivocation by a member: removed, its events from the fork on void, the same in every order', async () => {
  const { network, fn, inv, node } = await mesh();
  const mn = node(M);
  const m1 = await mn.admit(p, inv, T0 + 40); // before the fork: counts
  const forger = Forger.from(M, network, mn.ledger);
  const m2a = await forger.admit(x, inv, [], T0 + 41);
  const m2b = await forger.admit(y, inv, [], T0 + 41, { prev: m1 }); // a second event at position 2
  const m3 = await forger.admit(z, inv, [], T0 + 42, { prev: m2a });
  // An honest member saw one branch and built on it: its own events count.
  const nn = node(N).receive([m1, m2a]);
  const n1 = await nn.admit(q, inv, T0 + 43);
  const events = [...union(fn, nn), m2b, m3];
  everyOrder(network, events, (l) => {
    assert.equal(l.removal(m), 'equivocation');
    assert.deepEqual(memberIds(l), [f, a, b, n, p, q].sort());
    for (const e of [m2a, m2b, m3]) assert.match(reason(l, e)!, EQUIVOCATION);
    assert.equal(reason(l, m1), null);
    assert.equal(reason(l, n1), null);
  });
});

test("events a node signs without its admission in their history are refused everywhere, whatever the order", async () => {
  const { network, net, fn, inv } = await mesh();
  await fn.admit(x, inv, T0 + 40);
  // X signs two first events that name only the genesis: no admission of X in their history.
  // (Had they been stored, they would come before its admission in the fold, and equivocate.)
  const fx = new Forger(X, network, null);
  const x1a = await fx.sign({ type: 'cancel', invite: inv.id }, [net.genesis], T0 + 50, null);
  const x1b = await fx.sign({ type: 'revoke', member: x, reason: 'leave' }, [net.genesis], T0 + 51, null);
  const history = fn.ledger.events();
  const l = ledgerOf(network, [...history, x1a, x1b], { allowInvalid: true });
  for (const e of [x1a, x1b]) assert.deepEqual(l.ingest(e), { status: 'invalid', id: eventId(e), reason: 'its signer was never admitted' });
  assert.equal(l.isMember(x), true, 'its admission counts; the events it signed outside it do not exist');
  assert.equal(l.removal(x), null);
  for (let seed = 1; seed <= 10; seed++) {
    const other = new Ledger(network);
    for (const e of shuffled([...history, x1a, x1b], seed)) other.add(e);
    assert.deepEqual(view(other), view(l), `order ${seed}`);
    assert.equal(other.has(eventId(x1a)) || other.has(eventId(x1b)), false);
  }
});

test('a former member forking its pre-revocation chain changes nothing', async () => {
  const { network, fn, inv, node } = await mesh();
  // A (kicked) and M (left) each signed something the revocation saw.
  const an = node(A);
  const invA = await an.invite(T0 + 40, { uses: 5 });
  const a2 = await an.admit(p, invA, T0 + 41);
  const mn = node(M);
  const m1 = await mn.admit(q, inv, T0 + 42);
  await mn.leave(T0 + 43);
  fn.receive(an).receive(mn);
  await fn.kick(a, T0 + 50);
  const honest = fn.ledger.events();
  const before = ledgerOf(network, honest);
  assert.deepEqual(memberIds(before), [f, b, n, p, q].sort());
  // Later (restored from an old backup, or malice) each signs again at a position it used.
  const forkA = await new Forger(A, network, an.ledger.get(eventId(invA.envelope))).admit(x, invA, [], T0 + 60);
  assert.equal((forkA.body as { seq: number }).seq, (a2.body as { seq: number }).seq);
  const forkM = await new Forger(M, network, null).admit(y, inv, [fn.ledger.get(m1.body.prev ?? m1.body.deps[0])!], T0 + 61);
  assert.equal((forkM.body as { seq: number }).seq, 1);
  const withForks = everyOrder(network, [...honest, forkA, forkM], (l) => {
    assert.deepEqual(memberIds(l), [f, b, n, p, q].sort());
    assert.equal(l.removal(a), 'kick');
    assert.equal(l.removal(m), 'leave');
    assert.match(reason(l, forkA)!, REMOVED);
    assert.match(reason(l, forkM)!, REMOVED);
    assert.equal(reason(l, a2), null);
    assert.equal(reason(l, m1), null);
  });
  const strip = (v: unknown) => { const { members, next, invites } = v as Record<string, unknown>; return { members, next, invites }; };
  assert.deepEqual(strip(view(withForks)), strip(view(before)));
});

test('a fork the revocation itself saw: removed for equivocation, both branches void', async () => {
  const { network, fn, inv, node } = await mesh();
  const mn = node(M);
  const forger = Forger.from(M, network, mn.ledger);
  const m1a = await forger.admit(x, inv, mn.ledger.heads().map((h) => mn.ledger.get(h)!), T0 + 40, { prev: null });
  const m1b = await forger.admit(y, inv, mn.ledger.heads().map((h) => mn.ledger.get(h)!), T0 + 41, { prev: null });
  fn.receive([m1a, m1b]);
  const kick = await fn.kick(m, T0 + 50);
  everyOrder(network, fn.ledger.events(), (l) => {
    assert.equal(l.removal(m), 'equivocation');
    assert.equal(reason(l, kick), 'already removed');
    assert.deepEqual(memberIds(l), [f, a, b, n].sort());
    for (const e of [m1a, m1b]) assert.match(reason(l, e)!, EQUIVOCATION);
  });
});

test("a kick whose past leaves out its own signer's admission is refused, in every order", async () => {
  // M admits X; the founder makes X an administrator. X then signs a kick of M whose deps are a
  // long chain by N that never saw X's admission: high in the fold, but without X's admission (or
  // its grant) in its causal past. Had it counted, its cut would void M's admission of X.
  const { network, fn, inv, node } = await mesh();
  const mn = node(M);
  const nn = node(N);
  await mn.admit(x, inv, T0 + 40); // M admits X; X is the administrator below
  for (let i = 0; i < 10; i++) await nn.cancel(inv.id, T0 + 50 + i); // void, but high
  fn.receive(mn);
  await fn.grant(x, T0 + 60);
  const kick = await new Forger(X, network, null).sign({ type: 'revoke', member: m, reason: 'kick' }, [nn.ledger.get(nn.ledger.heads()[0])!], T0 + 70);
  const all = [...union(fn, nn), kick];
  for (let seed = 0; seed <= 10; seed++) {
    const l = new Ledger(network);
    for (const e of seed === 0 ? all : shuffled(all, seed)) l.add(e);
    assert.equal(l.has(eventId(kick)), false, 'never stored');
    assert.equal(l.isMember(m), true);
    assert.equal(l.isMember(x), true);
    assert.equal(l.isAdmin(x), true);
  }
});

test("a missing predecessor: held ('pending'), named by missing(), stored when it arrives", async () => {
  const { network, net, fn, inv, node } = await mesh();
  const mn = node(M);
  const m1 = await mn.admit(p, inv, T0 + 40);
  const m2 = await mn.admit(q, inv, T0 + 41);
  const l = ledgerOf(network, fn.ledger.events());
  const size = l.size();
  const heads = l.heads();
  assert.deepEqual(l.ingest(m2), { status: 'pending', id: eventId(m2) });
  assert.equal(l.held(), 1);
  assert.deepEqual(l.missing(), [eventId(m1)]);
  assert.equal(l.has(eventId(m2)), false);
  assert.equal(l.size(), size);
  assert.deepEqual(l.heads(), heads);
  assert.equal(l.isMember(q), false);
  assert.deepEqual(l.ingest(m1), { status: 'new', id: eventId(m1) });
  assert.equal(l.held(), 0);
  assert.deepEqual(l.missing(), []);
  assert.equal(l.size(), size + 2);
  assert.deepEqual(l.heads(), [eventId(m2)]);
  assert.equal(l.isMember(p) && l.isMember(q), true);

  // A parent that never comes: held for good (bounded), and missing() says what to fetch.
  const fm = Forger.from(M, network, l);
  const ghost = 'ee'.repeat(32);
  const waiting = await fm.sign({ type: 'cancel', invite: inv.id }, [], T0 + 50);
  const orphan = await forge(M, network, { type: 'cancel', invite: inv.id, seq: (waiting.body.seq as number) + 1, prev: eventId(waiting), deps: [ghost], at: T0 + 51 });
  assert.equal(l.add(orphan), 'pending');
  assert.deepEqual(l.missing().sort(), [eventId(waiting), ghost].sort());
  assert.equal(l.add(waiting), 'new');
  assert.deepEqual(l.missing(), [ghost]);
  assert.equal(l.held(), 1);

  // A held event whose parent turns out invalid is dropped, and nobody waits any more.
  const zf = new Forger(Z, network, null); // Z was never admitted
  const zEvent = await zf.sign({ type: 'cancel', invite: inv.id }, [net.genesis], T0 + 60);
  const onZ = await forge(N, network, { type: 'cancel', invite: inv.id, ...linkAfter(null, [zEvent], T0 + 61), deps: [eventId(zEvent), 'dd'.repeat(32)].sort() });
  assert.equal(l.add(onZ), 'pending');
  assert.equal(l.held(), 2);
  assert.deepEqual(l.ingest(zEvent).reason, 'its signer was never admitted');
  assert.equal(l.held(), 1);
  assert.deepEqual(l.missing(), [ghost], 'not the other parent of the dropped event');
  assert.equal(l.add(onZ), 'pending', 'offered again, it waits again (its parent may yet come valid from elsewhere)');

  // Links that lie about the chain: prev by another signer, or a skipped position.
  const [g0] = net.base;
  assert.equal(l.ingest(await forge(M, network, { type: 'cancel', invite: inv.id, seq: 2, prev: eventId(g0), deps: [], at: T0 })).reason, "prev is not its signer's previous event");
  assert.equal(l.ingest(await forge(M, network, { type: 'cancel', invite: inv.id, seq: 5, prev: eventId(m1), deps: [], at: T0 })).reason, "prev is not its signer's previous event");
});

test('oversized and deeply nested events are invalid and never throw', async () => {
  const { network, fn, inv } = await mesh();
  const l = fn.ledger;
  const before = view(l);
  const fm = Forger.from(F, network, l);
  const ok = await fm.sign({ type: 'cancel', invite: inv.id }, [], T0 + 40);
  const text = JSON.stringify(ok);
  let deep: unknown = 'x';
  for (let i = 0; i < 100_000; i++) deep = { body: deep, by: f, sig: ok.sig };
  let deepArray: unknown = [];
  for (let i = 0; i < 100_000; i++) deepArray = [deepArray];
  const manyKeys = Object.fromEntries(Array.from({ length: 50_000 }, (_, i) => [`k${i}`, i]));
  const hugeDeps = await forge(F, network, { ...ok.body, deps: Array.from({ length: 5000 }, (_, i) => i.toString(16).padStart(64, '0')) });
  const inputs: unknown[] = [
    ' '.repeat(MAX_ENVELOPE_CHARS) + text, // a valid event, padded past the bound
    Buffer.from(' '.repeat(MAX_ENVELOPE_CHARS * 5) + text),
    hugeDeps, JSON.stringify(hugeDeps),
    { ...ok, body: { ...ok.body, name: 'x'.repeat(1_000_000) } },
    { ...ok, body: { ...ok.body, ...manyKeys } },
    { ...ok, sig: 'A'.repeat(1_000_000) },
    deep, { ...ok, body: { ...ok.body, deps: [deepArray] } }, { ...ok, body: deepArray },
    '['.repeat(8000) + ']'.repeat(8000), '{"body":'.repeat(1500) + '1' + '}'.repeat(1500),
  ];
  for (const input of inputs) {
    const r = l.ingest(input);
    assert.equal(r.status, 'invalid');
    assert.equal(typeof r.reason, 'string');
  }
  assert.deepEqual(view(l), before);
  assert.equal(l.add(text), 'new', 'the event itself, unpadded, is fine');
});

test("a never-admitted node's events are invalid: 'never admitted', held or not", async () => {
  const { network, net, fn, inv } = await mesh();
  const l = fn.ledger;
  const zf = new Forger(Z, network, null);
  const head = l.get(l.heads()[0])!;
  const kick = await zf.sign({ type: 'revoke', member: m, reason: 'kick' }, [head], T0 + 40, null);
  assert.deepEqual(l.ingest(kick), { status: 'invalid', id: eventId(kick), reason: 'its signer was never admitted' });
  // Z holds a token for F's invite and admits itself with a good proof: still never admitted.
  const self = await zf.admit(z, inv, [head], T0 + 41, { prev: null });
  assert.equal(l.ingest(self).reason, 'its signer was never admitted');
  // A genesis of our network by Z does not even parse (only the founder signs one).
  const g = await forge(Z, network, { type: 'genesis', v: 2, network, seq: 1, prev: null, deps: [], at: T0 });
  assert.match(l.ingest(g).reason!, /founder/);
  // Held first (its parent unknown), then dropped when the parent arrives.
  const fresh = ledgerOf(network, net.base);
  const held = await zf.sign({ type: 'invite', key: inv.envelope.body.key, expires: T0 + HOUR, uses: 1 }, [fn.ledger.get(eventId(inv.envelope))!], T0 + 42, null);
  assert.equal(fresh.add(held), 'pending');
  fresh.addAll(fn.ledger.events());
  assert.equal(fresh.held(), 0);
  assert.equal(fresh.has(eventId(held)), false);
  assert.deepEqual(view(fresh), view(ledgerOf(network, fn.ledger.events())));
  assert.deepEqual(memberIds(l), [f, a, b, m, n].sort());
});

test('held events and held records are bounded (maxHeld, maxHeldRecords)', async () => {
  const { network, fn, inv, node } = await mesh();
  const mn = node(M);
  const chain: Env[] = [];
  for (let i = 0; i < 6; i++) chain.push(await mn.cancel(inv.id, T0 + 40 + i)); // void (M is no admin), but stored
  const l = new Ledger(network, { maxHeld: 3, maxHeldRecords: 2 });
  l.addAll(fn.ledger.events());
  const statuses = [chain[5], chain[4], chain[3], chain[2], chain[1]].map((e) => l.ingest(e));
  assert.deepEqual(statuses.map((r) => r.status), ['pending', 'pending', 'pending', 'invalid', 'invalid']);
  assert.equal(statuses[3].reason, 'too many events waiting for their history');
  assert.equal(l.held(), 3);
  assert.equal(l.add(chain[0]), 'new');
  assert.equal(l.held(), 3, 'chain[1] was refused: the rest still waits');
  assert.deepEqual(l.missing(), [eventId(chain[2])]);
  assert.deepEqual(l.addAll([chain[1], chain[2]]), { new: 5, known: 0, pending: 0, invalid: 0 });
  assert.equal(l.held(), 0);
  assert.equal(l.size(), fn.ledger.size() + 6);
  // Records of nodes not admitted here: at most two wait.
  const rec = (k: typeof X, name: string) => record(k, { network, wgPublicKey: WG, name, endpoints: [], multiaddrs: [], seq: 1 }, T0);
  assert.equal(l.ingest(await rec(X, 'x')).status, 'pending');
  assert.equal(l.ingest(await rec(Y, 'y')).status, 'pending');
  const third = l.ingest(await rec(Z, 'z'));
  assert.equal(third.status, 'invalid');
  assert.equal(third.reason, 'too many records of non-members waiting');
  // A newer record of a node already waiting replaces its old one, within the bound.
  const x2 = await record(X, { network, wgPublicKey: WG, name: 'x', endpoints: [], multiaddrs: [], seq: 2 }, T0);
  assert.equal(l.ingest(x2).status, 'pending');
  await fn.admit(x, inv, T0 + 60);
  l.addAll(fn.ledger.events());
  assert.deepEqual(l.recordOf(x), x2);
  assert.equal(l.member(x)!.record!.seq, 2);
});

/** 10,000 events by one administrator, made once (on first use) for the two tests below. */
let flooded: ReturnType<typeof makeFlood> | null = null;
const flood = (): ReturnType<typeof makeFlood> => (flooded ??= makeFlood());
async function makeFlood() {
  const { network, fn, inv, node } = await mesh();
  const an = node(A);
  const forger = Forger.from(A, network, an.ledger);
  const key = inv.envelope.body.key; // one invite key for all: the fold does not care
  const events: AnyEnv[] = [];
  const invites: AnyEnv[] = [];
  const t = performance.now();
  const head = an.ledger.heads().map((h) => an.ledger.get(h)!);
  for (let i = 0; i < 4000; i++) {
    const issued = await forger.sign({ type: 'invite', key, expires: T0 + HOUR, uses: 1 }, i === 0 ? head : [], T0 + 100 + i);
    events.push(issued, await forger.sign({ type: 'cancel', invite: eventId(issued) }, [], T0 + 100 + i));
  }
  for (let i = 0; i < 2000; i++) {
    const issued = await forger.sign({ type: 'invite', key, expires: T0 + HOUR, uses: 1 }, [], T0 + 5000 + i);
    events.push(issued);
    invites.push(issued);
  }
  console.log(`flood: signed ${events.length} events in ${(performance.now() - t).toFixed(0)} ms`);
  return { network, fn, inv, base: an.ledger.events(), events, invites };
}

test('a flood of 10,000 valid events by a member folds, in reverse too, and the ledger stays usable', async (t0) => {
  const { network, inv, base, events, invites } = await flood();
  assert.equal(events.length, 10_000);
  const l = new Ledger(network);
  l.addAll(base);
  let t = performance.now();
  // Newest first, one at a time (as pushes would bring them): every event waits for its
  // predecessor until the first arrives (a held chain of 9,999 released at once).
  const counts = { new: 0, known: 0, pending: 0, invalid: 0 };
  for (const e of [...events].reverse()) counts[l.ingest(e).status]++;
  t0.diagnostic(`flood: added 10,000 events newest first in ${(performance.now() - t).toFixed(0)} ms`);
  assert.deepEqual(counts, { new: 1, known: 0, pending: 9_999, invalid: 0 });
  assert.equal(l.size(), base.length + 10_000, 'the release stored them all');
  assert.equal(l.held(), 0);
  t = performance.now();
  const open = l.invites(T0 + 1000);
  t0.diagnostic(`flood: folded ${l.size()} events in ${(performance.now() - t).toFixed(0)} ms`);
  assert.equal(open.length, 2001, "A's 2,000 uncancelled invites and F's");
  assert.deepEqual(new Set(open.map((i) => i.id)), new Set([inv.id, ...invites.map(eventId)]));
  assert.deepEqual(l.rejected(), []);
  // Still usable: the founder signs on this ledger, an admission with one of those invites, then
  // A's kick closes the rest.
  const founder = new Signer(F, l);
  const invite = eventId(invites[7]);
  const proof = inviteProof(inv.secret, { network: network.id, invite, member: x });
  t = performance.now();
  const admitted = await founder.sign({ type: 'admit', member: x, name: 'x', invite, proof }, T0 + 9000);
  t0.diagnostic(`flood: one more admission applied in ${(performance.now() - t).toFixed(1)} ms`);
  assert.equal(l.reasonOf(eventId(admitted)), null);
  assert.equal(l.isMember(x), true);
  await founder.sign({ type: 'revoke', member: a }, T0 + 9001);
  t = performance.now();
  assert.deepEqual(l.invites(T0 + 9002).map((i) => i.id), [inv.id]);
  t0.diagnostic(`flood: refolded after a kick in ${(performance.now() - t).toFixed(0)} ms`);
  assert.deepEqual(memberIds(l), [f, b, m, n, x].sort());
  assert.equal(l.removal(a), 'kick');
  assert.equal(l.nextLink(f).seq, (admitted.body.seq as number) + 2);
});

test('10,000 events fold: the time of members() after addAll', async (t0) => {
  const { network, base, events } = await flood();
  const l = new Ledger(network);
  let t = performance.now();
  l.addAll([...base, ...events]);
  const addMs = performance.now() - t;
  t = performance.now();
  const members = l.members();
  const foldMs = performance.now() - t;
  t0.diagnostic(`10,000 events: addAll ${addMs.toFixed(0)} ms (parsing and signatures), members() ${foldMs.toFixed(0)} ms (the fold)`);
  assert.equal(l.size(), base.length + 10_000);
  assert.deepEqual(members.map((mm) => mm.peerId).sort(), [f, a, b, m, n].sort());
  assert.equal(l.invites(T0).length, 2001);
});
