// The libp2p layer on loopback: pnet sealing, full mesh from member records, push, anti-entropy,
// hanging up on revoked members, and the sync protocol's refusal and bounds.
import '../../src/util/polyfill.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr';
import type { Libp2p } from 'libp2p';
import type { Connection } from '@libp2p/interface';
import { peerIdFromString } from '@libp2p/peer-id';
import { lpStream } from '@libp2p/utils';
import { createMeshNode, dialOrder, isLoopbackAddr, mdnsServiceTag, swarmKey } from '../../src/discovery/p2p.js';
import { pushProtocol, syncProtocol, type SyncResult } from '../../src/discovery/sync.js';
import { eventId, type SignedEnvelope } from '../../src/discovery/signed.js';
import {
  LOOPBACK, admission, connected, idOf, ledgerWith, ms, newKey, newNet, selfRecord, startPeer, waitFor, type Peer,
} from './helpers/mesh-fixture.js';
import { MeshTrace, explainFailure } from './helpers/mesh-trace.js';

const figures: Record<string, number> = {};
process.on('exit', () => console.log('# figures (ms, loopback):', JSON.stringify(figures)));

/**
 * The dial must end without a connection: refused, or torn down by the remote. The remote's gate
 * denies after encryption, so the dialler may see its dial resolve (its side finished the upgrade
 * first) and the connection torn down right after. Only the connection this dial returned is
 * judged: the dialler's own mesh maintenance may be dialling that peer too. The deadlines are
 * generous (what must happen, not how fast): a dial that neither fails nor is torn down fails.
 */
async function assertDialDenied(node: Libp2p, addr: Multiaddr, what: string): Promise<void> {
  const signal = AbortSignal.timeout(30_000);
  let conn: Connection;
  try {
    conn = await node.dial(addr, { signal });
  } catch (err) {
    if (signal.aborted) throw new Error(`${what}: the dial neither failed nor connected within 30 s`, { cause: err });
    return; // refused or reset
  }
  await waitFor(() => conn.status !== 'open', 30_000, `${what}: the remote to tear the connection down`);
}

test('swarm key file format and mDNS tag', () => {
  const psk = 'ab'.repeat(32);
  assert.equal(new TextDecoder().decode(swarmKey(psk)), `/key/swarm/psk/1.0.0/\n/base16/\n${psk}`);
  assert.throws(() => swarmKey('xyz'), /64 lower-case hex/);
  assert.match(mdnsServiceTag(psk), /^_meshd-[0-9a-f]{16}\._udp\.local$/);
  assert.notEqual(mdnsServiceTag(psk), mdnsServiceTag('cd'.repeat(32)));
  assert.ok(!mdnsServiceTag(psk).includes(psk.slice(0, 16)));
  assert.ok(isLoopbackAddr('/ip4/127.0.0.1/tcp/4001') && isLoopbackAddr('/ip6/::1/tcp/4001'));
  assert.ok(!isLoopbackAddr('/ip4/192.168.1.2/tcp/4001') && !isLoopbackAddr('garbage'));
  assert.deepEqual(dialOrder(['/ip4/127.0.0.1/tcp/1', '/ip4/10.1.1.1/tcp/1', '/ip6/::1/tcp/1']), ['/ip4/10.1.1.1/tcp/1', '/ip4/127.0.0.1/tcp/1', '/ip6/::1/tcp/1']);
});

test('two nodes with the same psk connect; a node with another psk cannot', async (t) => {
  const psk = randomBytes(32).toString('hex');
  const gate = { allow: () => true };
  const a = await createMeshNode({ privateKey: await newKey(), psk, listen: LOOPBACK, gate });
  t.after(() => a.stop());
  const b = await createMeshNode({ privateKey: await newKey(), psk, listen: LOOPBACK, gate });
  t.after(() => b.stop());
  const other = await createMeshNode({ privateKey: await newKey(), psk: randomBytes(32).toString('hex'), listen: LOOPBACK, gate });
  t.after(() => other.stop());

  const t0 = performance.now();
  await b.dial(a.getMultiaddrs()[0]);
  figures.connect = ms(performance.now() - t0);
  const rtt = await b.services.ping.ping(a.peerId);
  assert.ok(rtt >= 0);

  const t1 = performance.now();
  await assert.rejects(other.dial(a.getMultiaddrs()[0], { signal: AbortSignal.timeout(3_000) }));
  figures.wrongPskFails = ms(performance.now() - t1);
  assert.equal(other.getConnections().length, 0);
  assert.equal(a.getConnections(other.peerId).length, 0);
});

test('the gate refuses a denied peer on inbound and outbound connections', async (t) => {
  const psk = randomBytes(32).toString('hex');
  const [ka, kb] = [await newKey(), await newKey()];
  const denied = new Set([idOf(kb)]);
  const a = await createMeshNode({ privateKey: ka, psk, listen: LOOPBACK, gate: { allow: (p) => !denied.has(p) } });
  t.after(() => a.stop());
  const b = await createMeshNode({ privateKey: kb, psk, listen: LOOPBACK, gate: { allow: () => true } });
  t.after(() => b.stop());
  // inbound at a: b dials, a's gate refuses once the connection is encrypted
  await assertDialDenied(b, a.getMultiaddrs()[0], 'a refuses b inbound');
  // outbound from a: a refuses to dial b at all
  await assert.rejects(a.dial(b.getMultiaddrs()[0], { signal: AbortSignal.timeout(3_000) }), /gater/);
  assert.equal(a.getConnections().length, 0);
  denied.clear();
  await b.dial(a.getMultiaddrs()[0]); // the gate is consulted live
  await waitFor(() => a.getConnections(b.peerId).length === 1, 2_000, 'a to accept b once allowed');
});

/** A, B, C members (C admitted, no records known yet); A founder. */
async function threeMembers() {
  const net = await newNet();
  const [kb, kc] = [await newKey(), await newKey()];
  await admission(net, kb, 'node-b');
  await admission(net, kc, 'node-c');
  return { net, kb, kc, events: net.ledger.events() };
}

test('full mesh from records, push to every member, anti-entropy after an absence', async (t) => {
  const { net, kb, kc, events } = await threeMembers();
  const peers: Peer[] = [];
  t.after(() => Promise.all(peers.map((p) => p.stop())));

  const a = await startPeer(net, net.founderKey, 'founder', net.ledger);
  peers.push(a);
  const b = await startPeer(net, kb, 'node-b', ledgerWith(net, events), { bootstrap: a.addrs });
  peers.push(b);
  await waitFor(() => a.ledger.recordOf(b.id) !== null, 30_000, "A to learn B's record");

  // C knows only A. It must end up connected to B: it learns B's record from A (anti-entropy)
  // and dials it, or B learns C's record and dials C.
  const t0 = performance.now();
  const c = await startPeer(net, kc, 'node-c', ledgerWith(net, events), { bootstrap: [a.addrs[0]] });
  peers.push(c);
  await waitFor(() => connected(c, a), 30_000, 'C connected to A');
  figures.bootstrapConnect = ms(performance.now() - t0);
  await waitFor(() => c.ledger.recordOf(b.id) !== null, 30_000, "C to learn B's record");
  figures.firstSync = ms(performance.now() - t0);
  await waitFor(() => connected(c, b) && connected(b, c), 30_000, 'C and B connected (full mesh via records)');
  figures.fullMesh = ms(performance.now() - t0);
  // One connection per pair: the smaller peer id dials, the larger waits.
  await new Promise((r) => setTimeout(r, 400));
  for (const [x, y] of [[a, b], [a, c], [b, c]] as const) {
    assert.equal(x.node.getConnections(y.node.peerId).length, 1, `${x.name}-${y.name} have one connection`);
  }
  for (const p of peers) assert.equal(p.ledger.digest(), a.ledger.digest(), `${p.name} converged`);

  // Push: an envelope published at A reaches C by push (not by a sync).
  const seen = new Promise<{ env: SignedEnvelope; via: string; at: number }>((resolve) => {
    c.sync.onEnvelope((env, from) => resolve({ env, via: from.via, at: performance.now() }));
  });
  const g = await net.signer.sign({ type: 'grant', member: b.id }, Date.now());
  const t1 = performance.now();
  const recipients = await a.sync.publish(g);
  assert.equal(recipients, 2, 'pushed to both members at once');
  const got = await seen;
  figures.push = ms(got.at - t1);
  assert.equal(got.via, 'push');
  assert.deepEqual(got.env, g);
  assert.ok(c.ledger.isAdmin(b.id));
  await waitFor(() => b.ledger.isAdmin(b.id), 2_000, 'B to get the grant too');

  // Anti-entropy: B goes away; A learns new events (published while B is offline); B comes back
  // with its old ledger and gets them on reconnection.
  const bLedger = b.ledger;
  await b.stop();
  await waitFor(() => !connected(a, b) && !connected(c, b), 30_000, 'B gone');
  const kd = await newKey();
  const late = [...await admission(net, kd, 'node-d'), await selfRecord(net, net.founderKey, 'founder', a.addrs)];
  for (const e of late) await a.sync.publish(e);
  assert.ok(!bLedger.isMember(idOf(kd)));
  const t2 = performance.now();
  const b2 = await startPeer(net, kb, 'node-b', bLedger, { bootstrap: [a.addrs[0]], publishRecord: false, listen: LOOPBACK });
  peers.push(b2);
  await waitFor(() => bLedger.isMember(idOf(kd)) && bLedger.digest() === a.ledger.digest(), 30_000, 'B to catch up by anti-entropy');
  figures.antiEntropyCatchUp = ms(performance.now() - t2);
  // B's new addresses reach A and C; C reconnects to B through B's new record.
  await b2.sync.publish(await selfRecord(net, kb, 'node-b', b2.addrs));
  await waitFor(() => connected(c, b2), 30_000, 'C reconnected to B at its new address');
});

test('a revoked member is hung up on and cannot come back', async (t) => {
  const { net, kb, kc, events } = await threeMembers();
  const peers: Peer[] = [];
  t.after(() => Promise.all(peers.map((p) => p.stop())));
  // On failure: every peer's log, connections and ledger (the waits below are generous: when one
  // times out, something did not happen, and this says what).
  const trace = new MeshTrace();
  await explainFailure(trace, peers, async () => {
    const a = await startPeer(net, net.founderKey, 'founder', net.ledger, { trace });
    peers.push(a);
    // B and C know A's record (as a member that joined or restarted does): they dial A until it
    // answers, so a bootstrap dial that fails (libp2p makes one) does not leave them out.
    const known = [...events, ...net.ledger.records()];
    const b = await startPeer(net, kb, 'node-b', ledgerWith(net, known), { bootstrap: a.addrs, trace });
    peers.push(b);
    const c = await startPeer(net, kc, 'node-c', ledgerWith(net, known), { bootstrap: a.addrs, trace });
    peers.push(c);
    await waitFor(() => connected(b, c) && connected(a, b) && connected(a, c), 60_000, 'full mesh of three');

    const kick = await net.signer.sign({ type: 'revoke', member: c.id, reason: 'kick' }, Date.now());
    const t0 = performance.now();
    c.sync.onEnvelope((env, from) => {
      if (eventId(env) !== eventId(kick)) return;
      figures.revocationReachesRevoked = ms(performance.now() - t0);
      trace.note('node-c', 'learnt of its kick', from);
    });
    trace.note('test', 'publishing the revocation of node-c');
    await a.sync.publish(kick);
    // The revocation reaches B, and A and B hang up on C (after revokedGraceMs, 2 s).
    await waitFor(() => b.ledger.revoked(c.id) && !connected(a, c) && !connected(b, c), 60_000, 'the revocation to reach B, and A and B to hang up on C');
    figures.hangUpRevoked = ms(performance.now() - t0);
    trace.note('test', 'A and B hung up on C');
    assert.ok(c.ledger.revoked(c.id), 'C learnt of its kick before the hang-up');

    // C knows it is out: it dials nobody by itself (each dial would only cost A and B a handshake).
    const before = [a.refusals(c.id), b.refusals(c.id)];
    await new Promise((r) => setTimeout(r, 1_000));
    assert.deepEqual([a.refusals(c.id), b.refusals(c.id)], before, 'C, revoked, dials nobody by itself');

    // C cannot reconnect: A's and B's gates refuse it, and nothing stays open.
    await assertDialDenied(c.node, multiaddr(a.addrs[0]), 'A refuses C');
    assert.ok(a.refusals(c.id) > before[0], "A's gate refused C");
    await assertDialDenied(c.node, multiaddr(b.addrs[0]), 'B refuses C');
    assert.ok(b.refusals(c.id) > before[1], "B's gate refused C");
    await new Promise((r) => setTimeout(r, 300));
    assert.ok(!connected(a, c) && !connected(b, c));
  });
});

test('sync: a non-member gets nothing, its envelopes are still read; garbage is survived', async (t) => {
  const { net, kb, events } = await threeMembers();
  const peers: Peer[] = [];
  t.after(() => Promise.all(peers.map((p) => p.stop())));
  const a = await startPeer(net, net.founderKey, 'founder', net.ledger);
  peers.push(a);
  // A stranger with the psk (it has an invite, say) but not admitted.
  const ks = await newKey();
  const s = await startPeer(net, ks, 'stranger', ledgerWith(net, net.base), { bootstrap: a.addrs, publishRecord: false });
  peers.push(s);
  await waitFor(() => connected(s, a), 30_000, 'stranger connected');
  const r: SyncResult = await s.sync.syncWith(a.id);
  assert.equal(r.refused, true, 'A refuses to send its ledger to a non-member');
  assert.equal(r.received, 0);
  assert.ok(!s.ledger.isMember(idOf(kb)) && s.ledger.members().length === 1, 'the stranger learned nothing');
  // A reads the stranger's envelopes but holds its record until an admission names it (a joiner
  // whose admission has not reached A yet); a stranger never admitted cannot fill A's store.
  const rec = await selfRecord(net, ks, 'stranger', s.addrs);
  assert.equal(s.ledger.add(rec), 'pending', 'its own ledger holds it too: it was never admitted');
  const pushed = s.node.dialProtocol(peerIdFromString(a.id), pushProtocol(net.network.id));
  const plp = lpStream(await pushed);
  await plp.writeV([new TextEncoder().encode(JSON.stringify(rec)), new TextEncoder().encode(JSON.stringify({ end: true }))]);
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(a.ledger.recordOf(s.id), null, 'a record of a non-member does not count');
  // A pushes to members only: a grant published while the stranger is connected never reaches it.
  const g = await net.signer.sign({ type: 'grant', member: idOf(kb) }, Date.now());
  assert.equal(await a.sync.publish(g), 0, 'no member is connected to A but the stranger: nobody to push to');
  await new Promise((r) => setTimeout(r, 300));
  assert.ok(!s.ledger.has(eventId(g)) && s.ledger.size() === net.base.length, 'nothing reached the stranger');
  await admission(net, ks, 'stranger');
  assert.equal(a.ledger.recordOf(s.id)?.body.name, 'stranger', 'its admission releases the held record');

  // Hostile sync streams: garbage, a huge length prefix, an absurd count. A survives all three.
  const proto = syncProtocol(net.network.id);
  const attempts: Array<(lp: ReturnType<typeof lpStream>) => Promise<void>> = [
    async (lp) => lp.write(new TextEncoder().encode('not json at all')),
    async (lp) => { lp.unwrap().send(Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0x0f])); }, // varint: 4 GiB
    async (lp) => lp.write(new TextEncoder().encode(JSON.stringify({ v: 2, digest: '0'.repeat(64), heads: Array(1e5).fill('0'.repeat(64)), send: true }))),
    async (lp) => lp.write(new TextEncoder().encode(JSON.stringify({ v: 1, digest: '0'.repeat(64), count: 1e9, send: true }))),
  ];
  for (const attack of attempts) {
    const stream = await s.node.dialProtocol(peerIdFromString(a.id), proto);
    const lp = lpStream(stream);
    await attack(lp);
    // A answers with its hello (or nothing) and drops the stream; it must not crash.
    await Promise.race([(async () => { try { for await (const _ of stream) { /* drain */ } } catch { /* reset */ } })(), new Promise((r) => setTimeout(r, 1_000))]);
    stream.abort(new Error('done'));
  }
  assert.ok(a.node.status === 'started');
  const ok = await s.sync.syncWith(a.id);
  assert.equal(ok.refused, false, 'A still serves syncs (the stranger is a member now)');
  assert.ok(s.ledger.isMember(s.id), 'and sends its ledger to a member');
});

test('a peer that stays a non-member is hung up on after the grace period', async (t) => {
  const net = await newNet();
  const a = await startPeer(net, net.founderKey, 'founder', net.ledger, { sync: { nonMemberGraceMs: 300 } });
  t.after(() => a.stop());
  const ks = await newKey();
  const s = await startPeer(net, ks, 'stranger', ledgerWith(net, net.base), { bootstrap: a.addrs, publishRecord: false });
  t.after(() => s.stop());
  await waitFor(() => connected(a, s), 30_000, 'stranger connected');
  await new Promise((r) => setTimeout(r, 150));
  assert.ok(connected(a, s), 'still connected within the grace period');
  await waitFor(() => !connected(a, s), 2_000, 'A to hang up on the stranger');
});

test('backoff and signs of life: a member back after failed dials is dialled on wake(), and the others at once with it', async (t) => {
  const { net, kb, kc, events } = await threeMembers();
  const nodes: Array<{ stop(): unknown }> = [];
  t.after(() => Promise.all(nodes.map((n) => n.stop())));
  // A waits 10-20 s after each failed dial: without a sign of life, nothing would happen for seconds.
  const a = await startPeer(net, net.founderKey, 'founder', net.ledger, { sync: { backoffMinMs: 20_000, backoffMaxMs: 20_000, dialTimeoutMs: 1_000 } });
  nodes.push(a);
  const b = await startPeer(net, kb, 'node-b', ledgerWith(net, events), { bootstrap: a.addrs });
  const c = await startPeer(net, kc, 'node-c', ledgerWith(net, events), { bootstrap: a.addrs });
  nodes.push(b, c);
  await waitFor(() => connected(a, b) && connected(a, c) && a.ledger.recordOf(b.id) !== null && a.ledger.recordOf(c.id) !== null, 30_000, 'A connected to B and C with their records');
  const ports = [b, c].map((p) => /\/tcp\/(\d+)/.exec(p.addrs[0])![1]);
  await b.stop();
  await c.stop();
  await waitFor(() => !connected(a, b) && !connected(a, c), 30_000, 'B and C gone');
  // A's dials to both fail (nothing listens: refused at once), and it backs off for 10-20 s.
  await new Promise((r) => setTimeout(r, 1_500));

  // B and C come back at the same addresses: bare libp2p nodes that never dial A themselves.
  const back = await Promise.all([kb, kc].map((key, i) => createMeshNode({ privateKey: key, psk: net.network.psk, listen: [`/ip4/127.0.0.1/tcp/${ports[i]}`], gate: { allow: () => true } })));
  nodes.push(...back);
  const t0 = performance.now();
  assert.equal(a.sync.wake(b.id, 'its tunnel answers'), true, 'a dial to B is brought forward');
  assert.equal(a.sync.wake(b.id, 'its tunnel answers'), false, 'once: it is due already');
  await waitFor(() => connected(a, b), 3_000, 'A to dial B at once');
  figures.wakeToConnected = ms(performance.now() - t0);
  // B being back is a sign the network healed: C is dialled within a second, not after its backoff.
  await waitFor(() => connected(a, c), 2_500, 'A to dial C, woken by B coming back');
  figures.healSpreads = ms(performance.now() - t0);
});

test('beyond fullMeshMax a member connects to its ring neighbours only; entries still reach everyone, also with a member gone', { timeout: 90_000 }, async (t) => {
  const net = await newNet();
  const keys = [net.founderKey];
  for (let i = 1; i < 10; i++) {
    const k = await newKey();
    await admission(net, k, `node-${i}`);
    keys.push(k);
  }
  const events = net.ledger.events();
  const sync = { fullMeshMax: 4, idleUnwantedMs: 1_500 };
  const peers: Peer[] = [];
  t.after(() => Promise.all(peers.map((p) => p.stop())));
  const a = await startPeer(net, net.founderKey, 'founder', net.ledger, { sync });
  peers.push(a);
  // Everyone comes in through the founder, one after another, as joiners do through their inviter
  // (libp2p also refuses more than 5 inbound connections a second from one address: loopback here).
  for (let i = 1; i < keys.length; i++) {
    // It knows what a joiner learns at its admission: the events and the records so far.
    const p = await startPeer(net, keys[i], `node-${i}`, ledgerWith(net, [...events, ...net.ledger.records()]), { bootstrap: a.addrs, sync });
    peers.push(p);
    await waitFor(() => a.ledger.recordOf(p.id) !== null, 10_000, `the founder to learn node-${i}'s record`);
  }

  // The ring: members sorted by peer id; each wants the two on either side and the one opposite.
  const ring = peers.map((p) => p.id).sort();
  const wanted = (id: string): Set<string> => {
    const i = ring.indexOf(id);
    const n = ring.length;
    return new Set([1, 2, -1, -2, n / 2].map((d) => ring[(i + d + n) % n]));
  };
  const links = (p: Peer): Set<string> => new Set(p.node.getConnections().filter((c) => c.status === 'open').map((c) => c.remotePeer.toString()));
  const same = (x: Set<string>, y: Set<string>): boolean => x.size === y.size && [...x].every((v) => y.has(v));
  await waitFor(() => peers.every((p) => same(links(p), wanted(p.id))), 30_000,
    'every member connected to exactly its neighbours (the bootstrap connections to the founder closed)').catch((err) => {
    for (const p of peers) {
      const l = links(p);
      const w = wanted(p.id);
      console.log(`# ${p.name}: extra ${[...l].filter((x) => !w.has(x)).map((x) => ring.indexOf(x))} missing ${[...w].filter((x) => !l.has(x)).map((x) => ring.indexOf(x))} (at ${ring.indexOf(p.id)}) records ${p.ledger.members().filter((m) => m.record).length} missing() ${[...w].filter((x) => p.sync.missing(x)).map((x) => ring.indexOf(x))}`);
    }
    throw err;
  });
  for (const p of peers) assert.equal(links(p).size, 5, `${p.name}: five connections of nine members`);

  // An entry published by one member reaches all of them through the neighbours.
  const g = await net.signer.sign({ type: 'grant', member: peers[3].id }, Date.now());
  await a.sync.publish(g);
  await waitFor(() => peers.every((p) => p.ledger.isAdmin(peers[3].id)), 30_000, 'the grant to reach every member');

  // A member goes away: its neighbours want the next one along the ring, and entries still reach everyone.
  const gone = peers.find((p) => p !== a && wanted(a.id).has(p.id))!;
  await gone.stop();
  const rest = peers.filter((p) => p !== gone);
  const g2 = await net.signer.sign({ type: 'grant', member: peers[5].id }, Date.now());
  await a.sync.publish(g2);
  await waitFor(() => rest.every((p) => p.ledger.isAdmin(peers[5].id)), 10_000, 'the second grant to reach every member left');
  await waitFor(() => rest.every((p) => p.sync.missing(gone.id) === wanted(p.id).has(gone.id)), 10_000, 'the gone member missed by its neighbours (and only by them)');
});

test('a member kicked while it was away, not knowing it, backs off its dials like failed ones', { timeout: 60_000 }, async (t) => {
  const { net, kb, kc, events } = await threeMembers();
  const peers: Peer[] = [];
  t.after(() => Promise.all(peers.map((p) => p.stop())));
  const a = await startPeer(net, net.founderKey, 'founder', net.ledger);
  peers.push(a);
  const b = await startPeer(net, kb, 'node-b', ledgerWith(net, [...events, ...net.ledger.records()]), { bootstrap: a.addrs });
  peers.push(b);
  await waitFor(() => connected(a, b) && b.ledger.recordOf(a.id) !== null && a.ledger.recordOf(b.id) !== null, 30_000, 'A and B connected');
  // C, offline, is kicked; it comes back with its old ledger (A's and B's records in it): every
  // dial of its opens on its side and is refused by the other side's gate at once.
  const old = [...events, ...net.ledger.records()];
  await a.sync.publish(await net.signer.sign({ type: 'revoke', member: idOf(kc), reason: 'kick' }, Date.now()));
  await waitFor(() => b.ledger.revoked(idOf(kc)), 10_000, 'B to learn of the kick');
  const c = await startPeer(net, kc, 'node-c', ledgerWith(net, old), { publishRecord: false });
  peers.push(c);
  await waitFor(() => a.refusals(c.id) + b.refusals(c.id) > 0, 10_000, 'C to dial');
  const before = a.refusals(c.id) + b.refusals(c.id);
  await new Promise((r) => setTimeout(r, 5_000));
  const dials = a.refusals(c.id) + b.refusals(c.id) - before;
  // FAST: a tick every 100 ms, backoff from 100 ms to 1 s: about 6 dials to each in 5 s with the
  // backoff, 50 to each without it.
  assert.ok(dials <= 24, `C dialled ${dials} times in 5 s`);
  assert.ok(!connected(a, c) && !connected(b, c));
});
