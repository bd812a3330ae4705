// LedgerSync on in-memory hosts (helpers/memory-host.ts): twelve members, beyond fullMeshMax (8),
// each connected to its ring neighbours only; a grant (the founder's) and a member's new record
// reach all twelve; a
// member cut off from everyone misses what is published meanwhile and catches up once its links
// come back.
import '../../src/util/polyfill.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { PrivateKey } from '@libp2p/interface';
import { admission, ledgerWith, newKey, newNet, selfRecord, waitFor, type Net } from './helpers/mesh-fixture.js';
import { MemoryNetwork, memoryHost, memoryRecord, startMemoryPeer, type MemoryPeer } from './helpers/memory-mesh.js';
import type { LedgerSyncOptions } from '../../src/discovery/sync.js';

const N = 12;

/** N members that know each other's records from the start (as after their joins). */
async function twelve(t: { after(fn: () => unknown): void }): Promise<{ net: Net; mnet: MemoryNetwork; peers: MemoryPeer[] }> {
  const net = await newNet();
  const keys: PrivateKey[] = [net.founderKey];
  for (let i = 1; i < N; i++) {
    const k = await newKey();
    await admission(net, k, `m${i}`);
    keys.push(k);
  }
  const mnet = new MemoryNetwork();
  t.after(() => mnet.stop());
  const hosts = await Promise.all(keys.map((k, i) => memoryHost(mnet, k, `m${i}`)));
  for (let i = 0; i < N; i++) net.ledger.add(await memoryRecord(net, keys[i], `m${i}`, hosts[i]));
  const everything = [...net.ledger.events(), ...net.ledger.records()];
  const peers: MemoryPeer[] = [];
  for (let i = 0; i < N; i++) {
    const ledger = i === 0 ? net.ledger : ledgerWith(net, everything);
    peers.push(await startMemoryPeer(net, keys[i], `m${i}`, ledger, hosts[i]));
  }
  t.after(() => Promise.all(peers.map((p) => p.stop())));
  return { net, mnet, peers };
}

/** The ring of sync.ts: each member wants the two on either side and the one opposite. */
function ringNeighbours(peers: MemoryPeer[]): (id: string) => Set<string> {
  const ring = peers.map((p) => p.id).sort();
  const n = ring.length;
  return (id) => {
    const i = ring.indexOf(id);
    return new Set([1, 2, -1, -2, n / 2].map((d) => ring[(i + d + n) % n]));
  };
}

const same = (x: Set<string>, y: Set<string>): boolean => x.size === y.size && [...x].every((v) => y.has(v));

/**
 * Two members (the founder m0 and m1) connected over in-memory hosts, with these sync options;
 * `delayMs`: each message on their link takes this long each way (set before they connect).
 */
async function twoMembers(t: { after(fn: () => unknown): void }, sync: LedgerSyncOptions, delayMs = 0) {
  const net = await newNet();
  const key = await newKey();
  await admission(net, key, 'm1');
  const mnet = new MemoryNetwork();
  t.after(() => mnet.stop());
  const [h0, h1] = await Promise.all([memoryHost(mnet, net.founderKey, 'm0'), memoryHost(mnet, key, 'm1')]);
  if (delayMs > 0) mnet.setDelay(h0, h1, delayMs);
  net.ledger.add(await memoryRecord(net, net.founderKey, 'm0', h0));
  net.ledger.add(await memoryRecord(net, key, 'm1', h1));
  const a = await startMemoryPeer(net, net.founderKey, 'm0', net.ledger, h0, { sync });
  const b = await startMemoryPeer(net, key, 'm1', ledgerWith(net, [...net.ledger.events(), ...net.ledger.records()]), h1, { sync });
  t.after(() => Promise.all([a.stop(), b.stop()]));
  await waitFor(() => a.links().has(b.id), 20_000, 'a connection between the two');
  const conn = h0.getConnections().find((c) => c.remotePeer.toString() === b.id && c.status === 'open')!;
  return { net, mnet, h0, h1, a, b, conn };
}

test(`${N} members (beyond fullMeshMax): ring neighbours only, and a grant by one member reaches all`, { timeout: 60_000 }, async (t) => {
  const { net, peers } = await twelve(t);
  const wanted = ringNeighbours(peers);
  await waitFor(() => peers.every((p) => same(p.links(), wanted(p.id))), 20_000, 'every member connected to exactly its five neighbours');
  for (const p of peers) assert.equal(p.links().size, 5, `${p.name}: five connections of ${N} members`);

  // The founder (only it may grant) grants m9; m0 is connected to its five neighbours only.
  const target = peers[9].id;
  assert.ok(!peers.some((p) => p.ledger.isAdmin(target)));
  await peers[0].sync.publish(await net.signer.sign({ type: 'grant', member: target }, Date.now()));
  await waitFor(() => peers.every((p) => p.ledger.isAdmin(target)), 10_000, `the grant to reach all ${N} members`);
  // Any member's own entry too: m6's new record.
  const m6 = peers[6];
  const rec = await selfRecord(net, m6.key, 'm6', [...m6.host.addrs, '/memory/m6-second']);
  await m6.sync.publish(rec);
  await waitFor(() => peers.every((p) => p.ledger.recordOf(m6.id)?.body.multiaddrs.length === 2), 10_000, `m6's new record to reach all ${N} members`);
  const digest = peers[0].ledger.digest();
  for (const p of peers) assert.equal(p.ledger.digest(), digest, `${p.name} converged`);
});

test('a member cut off from everyone misses what is published, and catches up when its links come back', { timeout: 60_000 }, async (t) => {
  const { net, mnet, peers } = await twelve(t);
  const wanted = ringNeighbours(peers);
  await waitFor(() => peers.every((p) => same(p.links(), wanted(p.id))), 20_000, 'the ring formed');

  const away = peers[7];
  const rest = peers.filter((p) => p !== away);
  for (const p of rest) mnet.block(away.host, p.host);
  assert.equal(away.links().size, 0, 'cut off');

  // Two entries while it is away: the founder's grant, and a member's new record.
  await peers[0].sync.publish(await net.signer.sign({ type: 'grant', member: peers[3].id }, Date.now()));
  const m4 = peers[4];
  await m4.sync.publish(await selfRecord(net, m4.key, 'm4', [...m4.host.addrs, '/memory/m4-second']));
  const got = (p: MemoryPeer): boolean => p.ledger.isAdmin(peers[3].id) && p.ledger.recordOf(m4.id)?.body.multiaddrs.length === 2;
  await waitFor(() => rest.every(got), 10_000, 'both entries to reach the members still connected');
  // It keeps trying (its dials are refused) and learns nothing.
  await waitFor(() => away.host.dials > 0 && [...wanted(away.id)].some((id) => away.sync.missing(id)), 10_000, 'the cut-off member to fail its dials');
  assert.ok(!away.ledger.isAdmin(peers[3].id) && away.ledger.recordOf(m4.id)?.body.multiaddrs.length === 1, 'nothing reached it');
  assert.notEqual(away.ledger.digest(), peers[0].ledger.digest());

  for (const p of rest) mnet.unblock(away.host, p.host);
  await waitFor(() => away.ledger.digest() === peers[0].ledger.digest(), 15_000, 'the member back to catch up');
  assert.ok(got(away));
  // Its neighbours are connected again (members dialled in its place may stay until idle).
  await waitFor(() => [...wanted(away.id)].every((id) => away.links().has(id)), 15_000, 'its neighbours connected again');
});

test('a connection that cannot carry a push in time is closed, and the member is dialled again', { timeout: 60_000 }, async (t) => {
  // Every message on this link takes 1.5 s each way: a push (stream negotiation, then the entry)
  // cannot finish in 300 ms, as on a link gone dark.
  const { net, mnet, h0, h1, a, b, conn: slow } = await twoMembers(t, { pushTimeoutMs: 300, syncTimeoutMs: 30_000 }, 1_500);

  assert.equal(await a.sync.publish(await net.signer.sign({ type: 'grant', member: b.id }, Date.now())), 0, 'the push did not get through');
  assert.notEqual(slow.status, 'open', 'the connection it timed out on is closed');

  // The link recovers: the member is dialled again and gets the entry by a sync.
  mnet.setDelay(h0, h1, 0);
  await waitFor(() => b.ledger.isAdmin(b.id), 20_000, 'the grant to reach the member over a new connection');
  assert.ok(h0.getConnections().some((c) => c.remotePeer.toString() === b.id && c.status === 'open' && c !== slow));
});

test('a push ends by its deadline even when opening its stream never does (libp2p awaits past the signal)', { timeout: 60_000 }, async (t) => {
  const { net, a, b, conn } = await twoMembers(t, { pushTimeoutMs: 500, syncTimeoutMs: 30_000 });
  // As libp2p's newStream awaiting a peer-store write the signal does not reach: it never settles.
  conn.newStream = () => new Promise(() => {});

  const started = Date.now();
  const recipients = await a.sync.publish(await net.signer.sign({ type: 'grant', member: b.id }, Date.now()));
  assert.equal(recipients, 0, 'the push did not get through');
  assert.ok(Date.now() - started < 5_000, `publish returned ${Date.now() - started} ms after it began, past the push's 500 ms deadline`);
});

test('a revoked member whose link loses the revocation is told once the link carries it, then hung up on', { timeout: 60_000 }, async (t) => {
  const { net, a, b, conn } = await twoMembers(t, { pushTimeoutMs: 300, syncTimeoutMs: 30_000, revokedGraceMs: 200, revokedTellMs: 20_000 });

  // The link loses every push for now, as a lossy one may for seconds: the kick's own push cannot
  // get through, nor can the tries after the grace.
  const newStream = conn.newStream;
  conn.newStream = () => new Promise(() => {});
  assert.equal(await a.sync.publish(await net.signer.sign({ type: 'revoke', member: b.id, reason: 'kick' }, Date.now())), 0, 'the push with the kick was lost');
  await new Promise((r) => setTimeout(r, 1_500));
  assert.ok(!b.ledger.revoked(b.id), 'the member has not learnt it yet');
  assert.equal(conn.status, 'open', 'its connection stays while it has not been told');

  conn.newStream = newStream;
  await waitFor(() => b.ledger.revoked(b.id), 15_000, 'the member to learn of its kick');
  await waitFor(() => conn.status !== 'open', 15_000, 'the connection to the revoked member to close');
});
