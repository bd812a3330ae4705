// Property: whatever history a few members make (invites, admissions, grants, kicks, leaves,
// cancels, records; each member signing from its own partial view, views merging now and then;
// now and then a stale node signing what its view does not allow, or a node restored from an old
// backup signing at chain positions it already used), every ledger that ends up with the same
// events folds them to the same view, whatever the delivery order, duplicates, or a partition
// healed later; and nobody removed is a member.
//
// Everything is deterministic for a given fast-check seed (keys from fixed seeds, invite secrets
// from the program's own generator), so a failure replays: FC_SEED=<seed> FC_PATH=<path>
// (FC_SHRINK=1 to shrink it, FC_RUNS=<n> for a longer hunt).
import '../../src/util/polyfill.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys';
import type { PrivateKey } from '@libp2p/interface';
import { ed25519 } from '@noble/curves/ed25519.js';
import { Ledger } from '../../src/discovery/ledger.js';
import { record } from '../../src/discovery/signer.js';
import { intToIp, meshRange, type NetworkInfo, type RecordBody } from '../../src/discovery/records.js';
import { eventId, signEnvelope, type SignedEnvelope } from '../../src/discovery/signed.js';
import { Node, T0, WG, idOf, ledgerOf, rng, shuffled, view, type Env, type InviteHandle } from './helpers/ledger-kit.js';

const sha = (label: string): Buffer => createHash('sha256').update(label).digest();
const FOUNDER = await generateKeyPairFromSeed('Ed25519', sha('meshd ledger property: founder'));
/** Nodes that may join; more of them than the range has room for (a /29: 6 hosts). */
const POOL = await Promise.all(Array.from({ length: 7 }, (_, i) => generateKeyPairFromSeed('Ed25519', sha(`meshd ledger property: ${i}`))));
const ALL_IDS = [FOUNDER, ...POOL].map(idOf);

const NETWORK: NetworkInfo = Object.freeze({
  id: sha('meshd ledger property: network').toString('hex').slice(0, 32),
  name: 'prop',
  cidr: '10.7.0.0/29',
  psk: sha('meshd ledger property: psk').toString('hex'),
  founder: idOf(FOUNDER),
});
const RANGE = meshRange(NETWORK.cidr)!;

/** The genesis and the founder's admission, signed deterministically (foundNetwork picks a random id). */
const BASE: Env[] = await (async () => {
  const g = await signEnvelope(FOUNDER, { type: 'genesis', v: 2, network: NETWORK, seq: 1, prev: null, deps: [], at: T0 });
  const a = await signEnvelope(FOUNDER, {
    type: 'admit', network: NETWORK.id, member: idOf(FOUNDER), name: 'founder', ip: intToIp(RANGE.base + 1),
    invite: null, proof: null, seq: 2, prev: eventId(g), deps: [], at: T0,
  });
  return [g, a] as unknown as Env[];
})();

interface Step {
  op: number;
  r: number;
  u: number;
  t: number;
}

interface Replica {
  key: PrivateKey;
  node: Node;
  recordSeq: number;
  /** Its events at its last backup: restoring them makes it sign at positions it already used. */
  backup?: Env[];
}

interface World {
  replicas: Replica[];
  /** Events of replicas since restored from a backup: they had been published before the crash. */
  published: Env[];
  invites: InviteHandle[];
  records: SignedEnvelope<RecordBody>[];
}

const OPS = [
  'admit', 'admit', 'admit', 'admit', 'admit', 'invite', 'invite', 'invite', 'grant', 'grant', 'kick', 'leave', 'cancel',
  'sync', 'sync', 'sync', 'sync', 'sync', 'record', 'backup', 'restore',
] as const;

/** Plays a program: each step has one replica sign from its own view, or two replicas sync. */
async function play(steps: readonly Step[], seed: number): Promise<World> {
  const rnd = rng(seed);
  const founder: Replica = { key: FOUNDER, node: new Node(FOUNDER, NETWORK, BASE), recordSeq: 0 };
  const world: World = { replicas: [founder], published: [], invites: [], records: [] };
  const invite = async (r: Replica, at: number, ttlMs: number, uses: number): Promise<void> => {
    const secret = Uint8Array.from({ length: 32 }, () => Math.floor(rnd() * 256));
    const key = Buffer.from(ed25519.getPublicKey(secret)).toString('base64url');
    const envelope = await r.node.signer.sign({ type: 'invite', key, expires: at + ttlMs, uses }, at);
    world.invites.push({ id: eventId(envelope), secret, envelope: envelope as InviteHandle['envelope'] });
  };
  await invite(founder, T0 + 1, 100_000, 4);

  for (const [i, s] of steps.entries()) {
    // Clocks roughly follow the steps, with jitter, and now and then a clock far behind.
    const at = s.t % 9 === 0 ? T0 - 10 * s.t : T0 + 1000 * (i + 1) + (s.t % 700);
    // Mostly an honest node acts: one whose own view allows what it signs (conflicts then come
    // from concurrency). One step in five, any node signs it regardless, as a stale or confused
    // node would.
    const honest = s.t % 5 !== 0;
    const able = (what: 'admin' | 'founder' | 'member' | 'any'): Replica | undefined => {
      const list = !honest || what === 'any' ? world.replicas : world.replicas.filter((r) => {
        const l = r.node.ledger;
        return what === 'founder' ? r.key === FOUNDER && l.isMember(r.node.id) : what === 'admin' ? l.isAdmin(r.node.id) : l.isMember(r.node.id);
      });
      return list[s.r % Math.max(1, list.length)];
    };
    const pick = <T>(list: readonly T[]): T | undefined => list[s.u % Math.max(1, list.length)];
    const othersOf = (r: Replica) => r.node.ledger.members().filter((m) => m.peerId !== r.node.id);
    switch (OPS[s.op % OPS.length]) {
      case 'admit': {
        const actor = able('member');
        if (!actor) break;
        const l = actor.node.ledger;
        const open = new Set(l.invites(at).map((x) => x.id));
        const inv = pick(honest ? world.invites.filter((x) => open.has(x.id)) : world.invites);
        const joiner = POOL[(s.u + s.t) % POOL.length];
        if (!inv || (honest && (l.isMember(idOf(joiner)) || l.revoked(idOf(joiner))))) break;
        await actor.node.admit(idOf(joiner), inv, at);
        // The joiner learns its admission from the member that admitted it, and starts from there.
        if (!world.replicas.some((r) => r.key === joiner)) {
          world.replicas.push({ key: joiner, node: new Node(joiner, NETWORK, actor.node.ledger.events()), recordSeq: 0 });
        }
        break;
      }
      case 'invite': {
        const actor = able('admin');
        if (actor) await invite(actor, at, 2000 + 3000 * (s.t % 6), 1 + (s.u % 3));
        break;
      }
      case 'grant': {
        const actor = able('founder');
        const target = actor && pick(othersOf(actor).filter((m) => !honest || !m.admin));
        if (actor && target) await actor.node.grant(target.peerId, at);
        break;
      }
      case 'kick': {
        const actor = able('admin');
        const target = actor && pick(othersOf(actor).filter((m) => !honest || !m.founder));
        if (actor && target) await actor.node.kick(target.peerId, at);
        break;
      }
      case 'leave': {
        // The founder leaving ends most histories early (its invites die with it): rarely.
        const actor = able('member');
        if (actor && (actor.key !== FOUNDER || s.u % 20 === 0)) await actor.node.leave(at);
        break;
      }
      case 'cancel': {
        const actor = able('admin');
        const open = new Set(actor?.node.ledger.invites(at).map((x) => x.id));
        const inv = pick(honest ? world.invites.filter((x) => open.has(x.id)) : world.invites);
        if (actor && inv) await actor.node.cancel(inv.id, at);
        break;
      }
      case 'sync': {
        const actor = able('any')!;
        const other = world.replicas[s.u % world.replicas.length];
        actor.node.receive(other.node);
        if (s.t % 2 === 0) other.node.receive(actor.node);
        break;
      }
      case 'backup': {
        const actor = able('any')!;
        actor.backup = actor.node.ledger.events();
        break;
      }
      case 'restore': {
        // A node restored from an old backup: it equivocates if it signed anything since.
        const actor = able('any')!;
        if (!actor.backup) break;
        world.published.push(...actor.node.ledger.events());
        actor.node = new Node(actor.key, NETWORK, actor.backup);
        break;
      }
      case 'record': {
        const actor = able('any')!;
        // Mostly a newer record; sometimes one with an old seq (a replay or a lost counter).
        const seq = s.t % 3 === 0 && actor.recordSeq > 0 ? s.t % actor.recordSeq : ++actor.recordSeq;
        world.records.push(await record(actor.key, {
          network: NETWORK, wgPublicKey: WG, name: `n${s.r % 100}`, endpoints: [`192.0.2.${1 + (s.u % 200)}:${1024 + s.t}`], multiaddrs: [], seq,
        }, at));
        break;
      }
    }
  }
  return world;
}

/** Every event of every replica, once. */
function eventsOf(world: World): Env[] {
  const out = new Map<string, Env>();
  for (const e of world.published) out.set(eventId(e), e);
  for (const r of world.replicas) for (const e of r.node.ledger.events()) out.set(eventId(e), e);
  return [...out.values()];
}

/** The view, plus how each identity stands: what every ledger must agree on. */
function fullView(l: Ledger): unknown {
  return { ...(view(l, T0 + 5000) as object), removal: ALL_IDS.map((id) => l.removal(id)), held: l.held() };
}

/** What must hold on any ledger, complete or not. */
function invariants(l: Ledger): void {
  const members = l.members();
  for (const m of members) {
    assert.equal(l.revoked(m.peerId), false, 'a removed identity is never a member');
    assert.equal(l.reasonOf(m.admission), null, "a member's admission counts");
    assert.equal(l.get(m.admission)!.by, m.admittedBy);
  }
  for (const e of l.events()) {
    if (e.body.type === 'revoke' && l.reasonOf(eventId(e)) === null) {
      assert.equal(l.isMember(e.body.member), false, 'a counting revocation removes for good');
      assert.equal(l.revoked(e.body.member), true);
    }
  }
  const ips = members.map((m) => m.meshIp);
  assert.equal(new Set(ips).size, ips.length, 'distinct addresses');
  assert.equal(new Set(members.map((m) => m.name)).size, members.length, 'distinct names');
  for (const ip of ips) {
    const offset = Number(ip.split('.')[3]) - (RANGE.base & 255);
    assert.ok(offset >= 1 && offset <= RANGE.hosts, `${ip} in the range, neither network nor broadcast`);
  }
  assert.ok(members.length <= RANGE.hosts);
  for (const i of l.invites(T0 + 5000)) assert.ok(i.used < i.uses);
}

/** Delivers `items` with some of them twice, at random places. */
function withDuplicates<T>(items: readonly T[], seed: number): T[] {
  const rnd = rng(seed);
  const out = shuffled(items, seed);
  const extra = Math.floor(rnd() * 6);
  for (let k = 0; k < extra && items.length > 0; k++) out.splice(Math.floor(rnd() * out.length), 0, items[Math.floor(rnd() * items.length)]);
  return out;
}

/** Two ledgers that each saw part of the events, then exchange (anti-entropy) until they agree. */
function partitionAndHeal(events: readonly Env[], records: readonly unknown[], seed: number): [Ledger, Ledger] {
  const rnd = rng(seed);
  const sides: [unknown[], unknown[]] = [[], []];
  for (const item of [...events, ...records]) {
    const r = rnd();
    if (r < 0.55) sides[0].push(item);
    if (r >= 0.45) sides[1].push(item); // a tenth of them both saw
  }
  const p = new Ledger(NETWORK);
  const q = new Ledger(NETWORK);
  p.addAll(shuffled(sides[0], seed + 1));
  q.addAll(shuffled(sides[1], seed + 2));
  invariants(p);
  invariants(q);
  // Heal: each sends what the other's heads do not cover, and re-gossips its records.
  const isRecord = (x: unknown): boolean => (x as { body: { type: string } }).body.type === 'record';
  p.addAll(sides[1].filter(isRecord));
  q.addAll(sides[0].filter(isRecord));
  // A chain whose events alternate between the sides advances a step or two a round.
  let rounds = 0;
  for (; rounds < 200 && (p.digest() !== q.digest() || p.held() + q.held() > 0); rounds++) {
    const toQ = p.since(q.heads());
    const toP = q.since(p.heads());
    q.addAll(toQ);
    p.addAll(toP);
  }
  assert.ok(rounds < 200, 'anti-entropy converges');
  return [p, q];
}

const stepArb = fc.noBias(fc.record({ op: fc.nat({ max: OPS.length - 1 }), r: fc.nat({ max: 60 }), u: fc.nat({ max: 60 }), t: fc.nat({ max: 2000 }) }));

test('any delivery order, duplicates, or a healed partition: every ledger folds the same view', async (t) => {
  const stats = { runs: 0, events: 0, members: 0, removed: 0, rejected: 0, merges: 0, concurrent: 0, equivocations: 0, maxReplicas: 0 };
  const started = performance.now();
  await fc.assert(
    fc.asyncProperty(fc.array(stepArb, { minLength: 8, maxLength: 40 }), fc.nat(), async (steps, seed) => {
      const world = await play(steps, seed);
      const events = eventsOf(world);
      const all: unknown[] = [...events, ...world.records];
      const reference = ledgerOf(NETWORK, all);
      invariants(reference);
      const expected = fullView(reference);
      assert.equal(reference.held(), 0);
      assert.deepEqual(reference.since(reference.heads()), []);

      for (let k = 0; k < 3; k++) {
        const l = ledgerOf(NETWORK, withDuplicates(all, seed + 17 * k));
        assert.deepEqual(fullView(l), expected, `delivery order ${k}`);
      }
      const [p, q] = partitionAndHeal(events, world.records, seed + 99);
      assert.deepEqual(fullView(p), expected, 'one side of the partition, healed');
      assert.deepEqual(fullView(q), expected, 'the other side, healed');
      // The replicas themselves, which folded incrementally while they signed, agree once they have it all.
      for (const r of [world.replicas[0], world.replicas[world.replicas.length - 1]]) {
        invariants(r.node.ledger);
        r.node.ledger.addAll(all);
        assert.deepEqual(fullView(r.node.ledger), expected, `replica ${r.node.id}`);
      }

      stats.runs++;
      stats.events += events.length;
      stats.members += reference.members().length;
      stats.removed += ALL_IDS.filter((id) => reference.revoked(id)).length;
      stats.rejected += reference.rejected().length;
      // Events with two parents or more join branches that were concurrent.
      const merges = events.filter((e) => e.body.deps.length > (e.body.prev === null ? 1 : 0)).length;
      stats.merges += merges;
      if (merges > 0 || reference.heads().length > 1) stats.concurrent++;
      stats.equivocations += ALL_IDS.filter((id) => reference.removal(id) === 'equivocation').length;
      stats.maxReplicas = Math.max(stats.maxReplicas, world.replicas.length);
    }),
    {
      numRuns: Number(process.env.FC_RUNS ?? 60),
      seed: process.env.FC_SEED === undefined ? undefined : Number(process.env.FC_SEED),
      path: process.env.FC_PATH,
      endOnFailure: process.env.FC_SHRINK === undefined,
      includeErrorInReport: true,
    },
  );
  t.diagnostic(`${stats.runs} histories in ${((performance.now() - started) / 1000).toFixed(1)} s: ${stats.events} events, `
    + `${stats.members} members, ${stats.removed} removed, ${stats.rejected} void events, ${stats.merges} merges; `
    + `${stats.concurrent} histories with concurrent branches, ${stats.equivocations} equivocators; up to ${stats.maxReplicas} replicas`);
  // The generator must make histories worth checking: members come and go, and some events are void.
  assert.ok(stats.members > 1.5 * stats.runs, 'admissions happen');
  assert.ok(stats.removed > 0, 'removals happen');
  assert.ok(stats.rejected > 0, 'conflicts happen');
  assert.ok(stats.concurrent > stats.runs / 4, 'concurrent branches happen');
});
