// The join protocol on loopback: admission, reused and forged invites, the race between two
// members admitting with one single-use invite, and hostile requests.
import '../../src/util/polyfill.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { peerIdFromString } from '@libp2p/peer-id';
import { lpStream } from '@libp2p/utils';
import { multiaddr } from '@multiformats/multiaddr';
import type { PrivateKey } from '@libp2p/interface';
import { Ledger } from '../../src/discovery/ledger.js';
import { encodeInvite, inviteProof, newInviteSecret, parseInvite, type Invite } from '../../src/discovery/invite.js';
import { Signer } from '../../src/discovery/signer.js';
import { createMeshNode, type MeshNode } from '../../src/discovery/p2p.js';
import { JOIN_PROTOCOL, JoinError, join } from '../../src/discovery/join.js';
import {
  LOOPBACK, admission, connected, idOf, invite, ledgerWith, ms, newKey, newNet, selfRecord, startPeer, testLog, waitFor,
  type Net, type Peer,
} from './helpers/mesh-fixture.js';

const figures: Record<string, number> = {};
process.on('exit', () => console.log('# figures (ms, loopback):', JSON.stringify(figures)));

/** A node for a would-be member: the invite's psk, nothing else yet. */
async function joinerNode(t: { after(fn: () => unknown): void }, net: Net, key?: PrivateKey): Promise<{ node: MeshNode; key: PrivateKey }> {
  const k = key ?? (await newKey());
  const node = await createMeshNode({ privateKey: k, psk: net.network.psk, listen: LOOPBACK, gate: { allow: () => true }, logger: testLog });
  t.after(() => node.stop());
  return { node, key: k };
}

async function tryJoin(net: Net, node: MeshNode, key: PrivateKey, inv: Invite, name = 'joiner') {
  const rec = await selfRecord(net, key, name, node.getMultiaddrs().map(String), 1);
  return join(node, inv, rec, { timeoutMs: 5_000 });
}

function refused(message: RegExp | string) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof JoinError, `a JoinError, not ${String(err)}`);
    assert.equal(err.code, 'refused');
    if (typeof message === 'string') assert.equal(err.message, message);
    else assert.match(err.message, message);
    return true;
  };
}

test('a valid invite admits; reusing it is refused; asking again is idempotent', async (t) => {
  const net = await newNet();
  const a = await startPeer(net, net.founderKey, 'founder', net.ledger, { settleMs: 200 });
  t.after(() => a.stop());
  const inv = await invite(net, { uses: 1, bootstrap: a.addrs });

  const j = await joinerNode(t, net);
  const t0 = performance.now();
  const r = await tryJoin(net, j.node, j.key, parseInvite(inv.token, Date.now()), 'node-j');
  figures.join = ms(performance.now() - t0);
  assert.equal(r.meshIp, '10.0.0.2');
  const ledger = new Ledger(net.network);
  ledger.addAll(r.envelopes);
  assert.ok(ledger.isMember(idOf(j.key)), 'the answer holds our admission');
  assert.equal(ledger.addressOf(idOf(j.key)), r.meshIp);
  assert.equal(ledger.digest(), a.ledger.digest(), 'the answer is the whole ledger');
  assert.equal(a.ledger.member(idOf(j.key))?.name, 'node-j');
  assert.ok(a.ledger.recordOf(idOf(j.key)), "the joiner's record is stored");

  // The same node asking again (its answer was lost): ok, same address, no second admission.
  const again = await tryJoin(net, j.node, j.key, inv, 'node-j');
  assert.equal(again.meshIp, r.meshIp);
  assert.equal(a.ledger.events().filter((e) => e.body.type === 'admit').length, 2);
  // ... with another invite too (the first is used up by its own admission): same answer, and
  // the new invite stays unused.
  const other = await invite(net, { uses: 1, bootstrap: a.addrs });
  assert.equal((await tryJoin(net, j.node, j.key, other, 'node-j')).meshIp, r.meshIp);
  assert.equal(a.ledger.events().filter((e) => e.body.type === 'admit').length, 2);
  assert.equal(a.ledger.inviteInfo(other.id, Date.now())?.used, 0);
  // The ledger holds the proof, never the secret: the admission does not let anyone else in.
  const adm = a.ledger.events().find((e) => e.body.type === 'admit' && e.body.member === idOf(j.key))!;
  assert.ok(!JSON.stringify(adm).includes(Buffer.from(inv.secret).toString('base64url')), 'no secret in the ledger');
  assert.ok(!JSON.stringify(a.ledger.events()).includes(Buffer.from(inv.secret).toString('base64url')));

  // Another node with the spent invite.
  const k = await joinerNode(t, net);
  await assert.rejects(tryJoin(net, k.node, k.key, inv), refused('invite already used'));
  assert.ok(!a.ledger.isMember(idOf(k.key)));
});

test("a new network's founder, the only member there has been, answers without the settle wait", async (t) => {
  const settleMs = 3000;
  const net = await newNet();
  const a = await startPeer(net, net.founderKey, 'founder', net.ledger, { settleMs });
  t.after(() => a.stop());
  // no one else could be admitting with this invite: the answer comes at once
  const j = await joinerNode(t, net);
  let t0 = performance.now();
  const first = await tryJoin(net, j.node, j.key, parseInvite((await invite(net, { bootstrap: a.addrs })).token, Date.now()), 'node-j');
  const alone = performance.now() - t0;
  assert.equal(first.meshIp, '10.0.0.2');
  assert.ok(alone < settleMs / 3, `answered in ${Math.round(alone)} ms`);
  // now node-j could admit too (with an invite of its own, say): the founder waits
  const k = await joinerNode(t, net);
  t0 = performance.now();
  const second = await tryJoin(net, k.node, k.key, parseInvite((await invite(net, { bootstrap: a.addrs })).token, Date.now()), 'node-k');
  assert.equal(second.meshIp, '10.0.0.3');
  assert.ok(performance.now() - t0 >= settleMs, 'waited for competing admissions');
});

test('forged, foreign, expired, cancelled and non-administrator invites are refused with a clear error', async (t) => {
  const net = await newNet();
  const kb = await newKey();
  await admission(net, kb, 'node-b');
  const a = await startPeer(net, net.founderKey, 'founder', net.ledger, { settleMs: 0 });
  t.after(() => a.stop());
  const j = await joinerNode(t, net);
  const good = await invite(net, { uses: 5, bootstrap: a.addrs });

  // Forged: the event changed after signing (more uses), the signature kept.
  const tampered = { ...good.envelope, body: { ...good.envelope.body, uses: 1000 } };
  await assert.rejects(tryJoin(net, j.node, j.key, { ...good, envelope: tampered }), refused(/^not a meshd invite: bad signature/));
  // A token whose secret is not the invite's (the proof does not verify).
  await assert.rejects(tryJoin(net, j.node, j.key, { ...good, secret: newInviteSecret().secret }), refused(/^forged invite: the joiner does not hold its secret/));

  // Issued by a member that is not an administrator (its own chain, on its own ledger).
  const bSigner = new Signer(kb, ledgerWith(net, net.ledger.events()));
  const notAdmin = await bSigner.issueInvite({ uses: 1 }, Date.now());
  const byMember = encodeInvite({ network: net.network, ...notAdmin, bootstrap: a.addrs });
  await assert.rejects(tryJoin(net, j.node, j.key, byMember), refused(/not issued by an administrator/));

  // For another network (same psk, to get through pnet: only the ledger can tell).
  const other = await newNet('othernet');
  const o = await other.signer.issueInvite({ uses: 1 }, Date.now());
  const foreign = encodeInvite({ network: { ...other.network, psk: net.network.psk }, ...o, bootstrap: a.addrs });
  const foreignRec = await selfRecord(other, j.key, 'joiner', [], 1);
  await assert.rejects(join(j.node, foreign, foreignRec, { timeoutMs: 5_000 }), refused('this invite is for another network'));

  // Expired.
  const short = await invite(net, { uses: 1, ttlMs: 1, bootstrap: a.addrs });
  await new Promise((r) => setTimeout(r, 10));
  await assert.rejects(tryJoin(net, j.node, j.key, short), refused(/^invite expired/));

  // Cancelled.
  const cancelled = await invite(net, { uses: 1, bootstrap: a.addrs });
  await net.signer.sign({ type: 'cancel', invite: cancelled.id }, Date.now());
  await assert.rejects(tryJoin(net, j.node, j.key, cancelled), refused(/cancelled/));

  // A record signed by someone else than the dialling node.
  const someone = await newKey();
  const notMine = await selfRecord(net, someone, 'someone', [], 1);
  const { node } = j;
  const stream = await node.dialProtocol(peerIdFromString(a.id), JOIN_PROTOCOL);
  const lp = lpStream(stream);
  await lp.write(new TextEncoder().encode(JSON.stringify({ invite: good.envelope, proof: 'x', record: notMine })));
  const answer = JSON.parse(new TextDecoder().decode((await lp.read()).subarray())) as { ok: boolean; error: string; now: number };
  assert.deepEqual([answer.ok, answer.error], [false, 'forged invite: the joiner does not hold its secret']);
  assert.ok(Math.abs(answer.now - Date.now()) < 10_000, "the answer carries the member's clock");
  await stream.close();

  assert.equal(a.ledger.members().length, 2, 'nobody was admitted');
  // and the good invite still works (this server does not settle: the protocol's own cost)
  const t0 = performance.now();
  assert.equal((await tryJoin(net, j.node, j.key, good)).meshIp, '10.0.0.3');
  figures.joinWithoutSettle = ms(performance.now() - t0);
});

test('a joiner whose name is taken gets a unique one, and says which', async (t) => {
  const net = await newNet();
  const a = await startPeer(net, net.founderKey, 'founder', net.ledger, { settleMs: 0 });
  t.after(() => a.stop());
  const inv = await invite(net, { uses: 3, bootstrap: a.addrs });
  const names: string[] = [];
  for (let i = 0; i < 3; i++) {
    const j = await joinerNode(t, net);
    names.push((await tryJoin(net, j.node, j.key, inv, 'vm')).name);
  }
  assert.deepEqual(names, ['vm', 'vm-2', 'vm-3']);
  assert.deepEqual(a.ledger.members().map((m) => m.name), ['founder', 'vm', 'vm-2', 'vm-3']);
});

test("only the member's clock judges an invite; a joiner whose clock is far off is told so in words", async (t) => {
  const net = await newNet();
  const HOUR = 3_600_000;
  // The member's clock is 2 h behind the joiner's (the joiner: a fresh VM before NTP).
  const memberNow = () => Date.now() - 2 * HOUR;
  const a = await startPeer(net, net.founderKey, 'founder', net.ledger, { settleMs: 0, now: memberNow });
  t.after(() => a.stop());
  const issue = async (ttlMs: number) => {
    const { envelope, secret } = await net.signer.issueInvite({ uses: 1, ttlMs }, memberNow());
    return encodeInvite({ network: net.network, envelope, secret, bootstrap: a.addrs });
  };
  // A fresh 1-hour invite has "expired" an hour ago by the joiner's clock: it still works.
  const fresh = await issue(HOUR);
  assert.ok(fresh.expires < Date.now(), 'expired by the joiner\'s clock');
  const j = await joinerNode(t, net);
  const r = await tryJoin(net, j.node, j.key, fresh, 'node-j');
  assert.equal(r.meshIp, '10.0.0.2');
  assert.ok(r.skewMs !== null && Math.abs(r.skewMs - 2 * HOUR) < 60_000, `skew reported: ${r.skewMs}`);
  // An invite that did expire, by the member's clock: the refusal says whose clock is off.
  const old = await issue(1);
  await new Promise((r) => setTimeout(r, 5));
  const k = await joinerNode(t, net);
  await assert.rejects(tryJoin(net, k.node, k.key, old), refused(/^invite expired; ask an administrator for a new one \(this machine's clock is 2 h ahead of the member's; the member judges invites by its own clock\)$/));
});

test('two joiners with one single-use invite at two members at once: exactly one gets in', async (t) => {
  const net = await newNet();
  const kb = await newKey();
  await admission(net, kb, 'node-b');
  const events = net.ledger.events();
  const peers: Peer[] = [];
  t.after(() => Promise.all(peers.map((p) => p.stop())));
  const a = await startPeer(net, net.founderKey, 'founder', net.ledger, { settleMs: 300 });
  peers.push(a);
  const b = await startPeer(net, kb, 'node-b', ledgerWith(net, events), { settleMs: 300, bootstrap: a.addrs });
  peers.push(b);
  await waitFor(() => connected(a, b) && a.ledger.digest() === b.ledger.digest(), 5_000, 'A and B connected and in sync');

  const rounds = 3;
  for (let round = 0; round < rounds; round++) {
    const inv = await invite(net, { uses: 1 });
    const j1 = await joinerNode(t, net);
    const j2 = await joinerNode(t, net);
    // The same token; each joiner is pointed at a different member.
    const viaA: Invite = { ...inv, bootstrap: [a.addrs[0]] };
    const viaB: Invite = { ...inv, bootstrap: [b.addrs[0]] };
    const results = await Promise.allSettled([
      tryJoin(net, j1.node, j1.key, viaA, `j1-${round}`),
      tryJoin(net, j2.node, j2.key, viaB, `j2-${round}`),
    ]);
    const ok = results.filter((r) => r.status === 'fulfilled');
    const bad = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    assert.equal(ok.length, 1, `round ${round}: exactly one joiner admitted (${results.map((r) => r.status === 'rejected' ? (r.reason as Error).message : 'ok').join(', ')})`);
    assert.ok(refused('invite already used')(bad[0].reason));
    const winner = results[0].status === 'fulfilled' ? j1 : j2;
    const loser = winner === j1 ? j2 : j1;
    for (const p of peers) {
      await waitFor(() => p.ledger.isMember(idOf(winner.key)), 2_000, `${p.name} to see the winner`);
      assert.ok(!p.ledger.isMember(idOf(loser.key)), `${p.name}: the loser is not a member`);
    }
    assert.equal(a.ledger.digest(), b.ledger.digest());
  }
  assert.equal(a.ledger.members().length, 2 + rounds);
});

test('hostile join requests get an error or a closed stream, and the server keeps serving', async (t) => {
  const net = await newNet();
  const a = await startPeer(net, net.founderKey, 'founder', net.ledger, { settleMs: 0 });
  t.after(() => a.stop());
  const j = await joinerNode(t, net);
  const good = await invite(net, { uses: 1, bootstrap: a.addrs });
  const rec = await selfRecord(net, j.key, 'joiner', [], 1);
  const proof = inviteProof(good.secret, { network: net.network.id, invite: good.id, member: idOf(j.key) });

  async function ask(payload: Uint8Array | 'raw-huge' | 'nothing'): Promise<unknown> {
    const stream = await j.node.dialProtocol(multiaddr(a.addrs[0]), JOIN_PROTOCOL);
    const lp = lpStream(stream);
    if (payload === 'raw-huge') stream.send(Uint8Array.from([0x80, 0x80, 0x80, 0x80, 0x01])); // varint 256 MiB
    else if (payload === 'nothing') await stream.close(); // end of stream before any frame
    else await lp.write(payload);
    try {
      return JSON.parse(new TextDecoder().decode((await lp.read({ signal: AbortSignal.timeout(2_000) })).subarray()));
    } catch {
      return 'closed';
    } finally {
      stream.abort(new Error('done'));
    }
  }
  const json = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
  const cases: Array<[string, Uint8Array | 'raw-huge' | 'nothing', RegExp]> = [
    ['garbage', new TextEncoder().encode('\u0000\u0001 not json'), /^malformed join request/],
    ['not an object', json([1, 2, 3]), /not an object/],
    ['unknown field', json({ invite: good.envelope, proof, record: rec, admin: true }), /unknown field admin/],
    ['no invite', json({ record: rec, proof }), /not a meshd invite/],
    ['a token instead of the event', json({ invite: good.token, proof, record: rec }), /not a meshd invite/],
    ['no proof', json({ invite: good.envelope, record: rec }), /no proof/],
    ['not a record', json({ invite: good.envelope, proof, record: good.envelope }), /bad record/],
    ['huge frame', json({ invite: good.envelope, proof, record: rec, pad: 'x'.repeat(200_000) }), /^malformed join request/],
    ['huge length prefix', 'raw-huge', /^malformed join request/],
    ['nothing', 'nothing', /^malformed join request/],
  ];
  let answered = 0;
  for (const [what, payload, expect] of cases) {
    const answer = await ask(payload);
    if (answer === 'closed') continue; // a reset stream is an acceptable answer too
    answered++;
    assert.equal((answer as { ok: unknown }).ok, false, what);
    assert.match((answer as { error: string }).error, expect as RegExp, what);
  }
  assert.ok(answered >= cases.length - 2, 'most hostile requests get an explicit error');
  assert.equal(a.ledger.members().length, 1);
  assert.equal((await tryJoin(net, j.node, j.key, good)).meshIp, '10.0.0.2', 'still serving');
});

test('unreachable members and silent members end in a JoinError', async (t) => {
  const net = await newNet();
  const j = await joinerNode(t, net);
  // A member address where nothing listens.
  const gone = await joinerNode(t, net);
  const goneAddr = gone.node.getMultiaddrs()[0].toString();
  await gone.node.stop();
  const inv = await invite(net, { uses: 1, bootstrap: [goneAddr] });
  await assert.rejects(tryJoin(net, j.node, j.key, inv), (err: unknown) => err instanceof JoinError && err.code === 'unreachable' && /could be reached/.test(err.message));

  // A node that accepts the join stream and never answers.
  const silent = await joinerNode(t, net);
  await silent.node.handle(JOIN_PROTOCOL, () => { /* never answers */ });
  const inv2 = await invite(net, { uses: 1, bootstrap: [goneAddr, silent.node.getMultiaddrs()[0].toString()] });
  const rec = await selfRecord(net, j.key, 'joiner', [], 1);
  const t0 = performance.now();
  await assert.rejects(join(j.node, inv2, rec, { timeoutMs: 1_000 }), (err: unknown) => err instanceof JoinError && err.code === 'timeout');
  assert.ok(performance.now() - t0 < 2_500);
});
