// Which WireGuard peers the daemon wants (src/daemon/desired-peers.ts), from real ledgers: members
// with records, their routes (subnet prefixes, the exit node's default route, their clients' /32),
// the clients hosted here, and the kicker's grace for a member it just kicked. One rule per test.
import '../../src/util/polyfill.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { PrivateKey } from '@libp2p/interface';
import { record } from '../../src/discovery/signer.js';
import { eventId } from '../../src/discovery/signed.js';
import { REVOKED_GRACE_MS, WORKING_HANDSHAKE_MS, desiredPeers, type DesiredPeersInput } from '../../src/daemon/desired-peers.js';
import { parseEndpoint } from '../../src/wg/endpoint.js';
import type { Ledger } from '../../src/discovery/ledger.js';
import { Node, T0, found, idOf, newKeys } from './helpers/ledger-kit.js';

const [F, A, B, C] = await newKeys(4);
const [f, a, b, c] = [F, A, B, C].map(idOf);
const key = (n: number) => Buffer.alloc(32, n).toString('base64');
const WG = new Map<string, string>([[f, key(10)], [a, key(11)], [b, key(12)], [c, key(13)]]);

async function addRecord(l: Ledger, k: PrivateKey, network: Parameters<typeof record>[1]['network'], endpoints: string[], at: number): Promise<void> {
  const env = await record(k, { network, wgPublicKey: WG.get(idOf(k))!, name: 'x', endpoints, multiaddrs: [], seq: 1 }, at);
  assert.equal(l.add(env), 'new');
}

/** F founds; A, B and C are admitted (10.0.0.2, .3, .4); F, A and C publish records, B does not. */
async function setup() {
  const net = await found(F);
  const fn = new Node(F, net.network, net.base);
  const inv = await fn.invite(T0 + 10, { uses: 10 });
  await fn.admit(a, inv, T0 + 20, { name: 'a' });
  await fn.admit(b, inv, T0 + 21, { name: 'b' });
  await fn.admit(c, inv, T0 + 22, { name: 'c' });
  await addRecord(fn.ledger, F, net.network, ['192.0.2.1:51820'], T0 + 30);
  await addRecord(fn.ledger, A, net.network, ['192.0.2.2:51820', '198.51.100.2:4000'], T0 + 31);
  await addRecord(fn.ledger, C, net.network, ['192.0.2.4:51820'], T0 + 32);
  return { fn, l: fn.ledger, network: net.network };
}

/** The input as the daemon on F builds it, with nothing routed, no exit node, no history. */
function input(l: Ledger, over: Partial<DesiredPeersInput> = {}): DesiredPeersInput {
  return {
    self: f, selfWgKey: WG.get(f)!, members: l.members(), devices: l.devices(),
    routesOf: () => [], exitNode: null, handshakes: new Map(), decided: () => null, now: T0 + 1_000,
    last: new Map(), departing: new Map(), revoked: (p) => l.revoked(p), revokedByUs: () => false,
    ...over,
  };
}

test('desired peers: every other member with a record, with its mesh address and endpoints; not ourselves, not a member without a record', async () => {
  const { l } = await setup();
  const { peers, departing, recheckInMs } = desiredPeers(input(l));
  assert.deepEqual([...peers.keys()].sort(), [a, c].sort());
  assert.deepEqual(peers.get(a), { wgPublicKey: WG.get(a), meshIp: '10.0.0.2', routes: [], endpoints: ['192.0.2.2:51820', '198.51.100.2:4000'], working: false, decided: null });
  assert.equal(peers.get(c)!.meshIp, '10.0.0.4');
  assert.equal(departing.size, 0);
  assert.equal(recheckInMs, null);
});

test('desired peers: a recent handshake marks the endpoint working; an old one does not; the path finder\'s endpoint is passed on', async () => {
  const { l } = await setup();
  const now = T0 + 1_000_000;
  const decidedEp = parseEndpoint('203.0.113.9:51820');
  const { peers } = desiredPeers(input(l, {
    now,
    handshakes: new Map([[WG.get(a)!, now - 5_000], [WG.get(c)!, now - WORKING_HANDSHAKE_MS - 1]]),
    decided: (k) => (k === WG.get(a) ? decidedEp : null),
  }));
  assert.equal(peers.get(a)!.working, true);
  assert.equal(peers.get(c)!.working, false);
  assert.equal(peers.get(a)!.decided, decidedEp);
  assert.equal(peers.get(c)!.decided, null);
});

test('desired peers: the subnet prefixes a member holds are its routes', async () => {
  const { l } = await setup();
  const { peers } = desiredPeers(input(l, { routesOf: (p) => (p === a ? ['192.168.1.0/24'] : []) }));
  assert.deepEqual(peers.get(a)!.routes, ['192.168.1.0/24']);
  assert.deepEqual(peers.get(c)!.routes, []);
});

test('desired peers: our exit node gets 0.0.0.0/0, nobody else does', async () => {
  const { l } = await setup();
  const { peers } = desiredPeers(input(l, { exitNode: c }));
  assert.deepEqual(peers.get(c)!.routes, ['0.0.0.0/0']);
  assert.deepEqual(peers.get(a)!.routes, []);
});

test('desired peers: the clients a member hosts are reached through it (their /32 among its routes); they are not peers here', async () => {
  const { fn, l } = await setup();
  const dev = await fn.signer.sign({ type: 'device', member: a, name: 'phone', wgPublicKey: key(20) }, T0 + 40);
  assert.equal(l.reasonOf(eventId(dev)), null);
  const ip = l.device(eventId(dev))!.ip;
  const { peers } = desiredPeers(input(l));
  assert.deepEqual(peers.get(a)!.routes, [`${ip}/32`]);
  assert.equal(peers.has(`device:${eventId(dev)}`), false, 'hosted by A: A is its peer, not us');
  assert.deepEqual([...peers.keys()].sort(), [a, c].sort());
});

test('desired peers: a client hosted here is a peer with its /32 and no endpoint; one with a member\'s key, or ours, is left out', async () => {
  const { fn, l } = await setup();
  const phone = await fn.signer.sign({ type: 'device', member: f, name: 'phone', wgPublicKey: key(21) }, T0 + 40);
  // A device event with B's key (B has no record, so no peer holds it yet) and one with C's (C has one).
  const clash = await fn.signer.sign({ type: 'device', member: f, name: 'clash', wgPublicKey: WG.get(c)! }, T0 + 41);
  const own = await fn.signer.sign({ type: 'device', member: f, name: 'own', wgPublicKey: key(30) }, T0 + 42);
  for (const e of [phone, clash, own]) assert.equal(l.reasonOf(eventId(e)), null);
  const { peers } = desiredPeers(input(l, { selfWgKey: key(30) }));
  const phoneIp = l.device(eventId(phone))!.ip;
  assert.deepEqual(peers.get(`device:${eventId(phone)}`), { wgPublicKey: key(21), meshIp: phoneIp, routes: [], endpoints: [], working: false, decided: null });
  assert.equal(peers.has(`device:${eventId(clash)}`), false, 'C\'s key is C\'s peer');
  assert.equal(peers.get(c)!.wgPublicKey, WG.get(c));
  assert.equal(peers.has(`device:${eventId(own)}`), false, 'our own key is never a peer');
  assert.equal([...peers.values()].filter((p) => p.wgPublicKey === WG.get(c)).length, 1, 'one peer per key');
});

test('desired peers: the kicker keeps a member it just kicked for REVOKED_GRACE_MS, then drops it', async () => {
  const { fn, l } = await setup();
  const before = desiredPeers(input(l));
  const kick = await fn.kick(a, T0 + 50);
  assert.equal(l.reasonOf(eventId(kick)), null);
  assert.equal(l.revoked(a), true);
  const now = T0 + 2_000;
  const during = desiredPeers(input(l, { now, last: before.peers, revokedByUs: (p) => p === a }));
  assert.deepEqual(during.peers.get(a), before.peers.get(a), 'still a peer, as it was');
  assert.equal(during.departing.get(a), now + REVOKED_GRACE_MS);
  assert.equal(during.recheckInMs, REVOKED_GRACE_MS, 'decide again when the grace ends');
  // Just before the end: still there, and no second grace is begun.
  const later = desiredPeers(input(l, { now: now + REVOKED_GRACE_MS - 1, last: during.peers, departing: during.departing, revokedByUs: (p) => p === a }));
  assert.equal(later.peers.has(a), true);
  assert.equal(later.recheckInMs, null);
  const after = desiredPeers(input(l, { now: now + REVOKED_GRACE_MS, last: later.peers, departing: later.departing, revokedByUs: (p) => p === a }));
  assert.equal(after.peers.has(a), false, 'dropped once the grace is over');
  assert.equal(after.peers.has(c), true);
  // Remembered a while (a later change grants no new grace), then forgotten.
  const again = desiredPeers(input(l, { now: now + REVOKED_GRACE_MS + 1, last: later.peers, departing: after.departing, revokedByUs: (p) => p === a }));
  assert.equal(again.peers.has(a), false);
  assert.equal(again.recheckInMs, null);
  const gone = desiredPeers(input(l, { now: now + REVOKED_GRACE_MS + 60_000, last: after.peers, departing: after.departing, revokedByUs: (p) => p === a }));
  assert.equal(gone.departing.has(a), false);
});

test('desired peers: a member that did not sign the kick drops the kicked member at once', async () => {
  const { fn, l } = await setup();
  const before = desiredPeers(input(l));
  await fn.kick(a, T0 + 50);
  const now = T0 + 2_000;
  const out = desiredPeers(input(l, { self: c, selfWgKey: WG.get(c)!, now, last: before.peers, revokedByUs: () => false }));
  assert.equal(out.peers.has(a), false);
  assert.equal(out.departing.size, 0);
  assert.equal(out.recheckInMs, null);
  // A member that was not revoked but simply has no record any more is not kept either.
  const noRecord = desiredPeers(input(l, { now, last: new Map([[b, before.peers.get(a)!]]), revokedByUs: () => true }));
  assert.equal(noRecord.peers.has(b), false);
});
