// The join protocol on in-memory hosts (helpers/memory-host.ts): an invite admits a joiner;
// forged and expired invites are refused in words; and the single-use invite race, made
// deterministic: two joiners use one single-use invite at two members at the same moment, while
// the link between those members is slow (each message waits 100 ms, so an admission pushed from
// one to the other takes longer than the 300 ms settle wait). Exactly one joiner may get in.
import '../../src/util/polyfill.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { PrivateKey } from '@libp2p/interface';
import { Ledger } from '../../src/discovery/ledger.js';
import { newInviteSecret, type Invite } from '../../src/discovery/invite.js';
import { JoinError, join } from '../../src/discovery/join.js';
import { admission, idOf, invite, ledgerWith, newKey, newNet, selfRecord, waitFor, type Net } from './helpers/mesh-fixture.js';
import { MemoryNetwork, memoryHost, startMemoryPeer, type MemoryPeer } from './helpers/memory-mesh.js';
import type { MemoryHost } from './helpers/memory-host.js';

interface Joiner { key: PrivateKey; host: MemoryHost }

async function joiner(mnet: MemoryNetwork, name: string): Promise<Joiner> {
  const key = await newKey();
  return { key, host: await memoryHost(mnet, key, name) };
}

async function tryJoin(net: Net, j: Joiner, inv: Invite, name: string) {
  const rec = await selfRecord(net, j.key, name, j.host.addrs, 1);
  return join(j.host, inv, rec, { timeoutMs: 10_000 });
}

function refused(message: RegExp) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof JoinError, `a JoinError, not ${String(err)}`);
    assert.equal(err.code, 'refused');
    assert.match(err.message, message);
    return true;
  };
}

/** The founder and node-b, connected; `delayMs` on the link between them. */
async function twoMembers(t: { after(fn: () => unknown): void }, delayMs = 0): Promise<{ net: Net; mnet: MemoryNetwork; a: MemoryPeer; b: MemoryPeer }> {
  const net = await newNet();
  const kb = await newKey();
  await admission(net, kb, 'node-b');
  const mnet = new MemoryNetwork();
  t.after(() => mnet.stop());
  const ha = await memoryHost(mnet, net.founderKey, 'founder', net.ledger);
  const bLedger = ledgerWith(net, net.ledger.events());
  const hb = await memoryHost(mnet, kb, 'node-b', bLedger);
  mnet.setDelay(ha, hb, delayMs);
  const a = await startMemoryPeer(net, net.founderKey, 'founder', net.ledger, ha);
  const b = await startMemoryPeer(net, kb, 'node-b', bLedger, hb);
  t.after(() => Promise.all([a.stop(), b.stop()]));
  await hb.dial(ha.peerId); // B's bootstrap: from there on they know each other's records
  await waitFor(() => a.links().has(b.id) && a.ledger.digest() === b.ledger.digest(), 20_000, 'A and B connected and in sync');
  return { net, mnet, a, b };
}

test('an invite admits the joiner, and every member learns of it', async (t) => {
  const { net, mnet, a, b } = await twoMembers(t);
  const inv = await invite(net, { uses: 1, bootstrap: b.host.addrs });
  const j = await joiner(mnet, 'joiner');
  const r = await tryJoin(net, j, inv, 'node-j');
  const ledger = new Ledger(net.network);
  ledger.addAll(r.envelopes);
  assert.ok(ledger.isMember(idOf(j.key)), 'the answer holds our admission');
  assert.equal(ledger.addressOf(idOf(j.key)), r.meshIp);
  assert.equal(r.name, 'node-j');
  assert.equal(r.via, b.host.addrs[0]);
  await waitFor(() => a.ledger.isMember(idOf(j.key)), 5_000, 'the founder to learn of the admission');
  assert.equal(a.ledger.addressOf(idOf(j.key)), r.meshIp);
});

test('a forged or expired invite is refused with a clear error, and admits nobody', async (t) => {
  const { net, mnet, a } = await twoMembers(t);
  const j = await joiner(mnet, 'joiner');
  const good = await invite(net, { uses: 1, bootstrap: a.host.addrs });
  await assert.rejects(tryJoin(net, j, { ...good, secret: newInviteSecret().secret }, 'j'), refused(/^forged invite: the joiner does not hold its secret/));
  const tampered = { ...good.envelope, body: { ...good.envelope.body, uses: 1000 } };
  await assert.rejects(tryJoin(net, j, { ...good, envelope: tampered }, 'j'), refused(/^not a meshd invite: bad signature/));
  const short = await invite(net, { uses: 1, ttlMs: 1, bootstrap: a.host.addrs });
  await new Promise((r) => setTimeout(r, 10));
  await assert.rejects(tryJoin(net, j, short, 'j'), refused(/^invite expired; ask an administrator for a new one/));
  assert.ok(!a.ledger.isMember(idOf(j.key)));
  // The good one still works.
  await tryJoin(net, j, good, 'j');
  assert.ok(a.ledger.isMember(idOf(j.key)));
});

test('two joiners with one single-use invite at two members at once, over a slow link: exactly one gets in', { timeout: 120_000 }, async (t) => {
  const { net, mnet, a, b } = await twoMembers(t, 100);
  const rounds = 3;
  for (let round = 0; round < rounds; round++) {
    const inv = await invite(net, { uses: 1 });
    // The founder's ledger has the invite; node-b gets it in the request.
    const j1 = await joiner(mnet, `j1-${round}`);
    const j2 = await joiner(mnet, `j2-${round}`);
    const results = await Promise.allSettled([
      tryJoin(net, j1, { ...inv, bootstrap: a.host.addrs }, `j1-${round}`),
      tryJoin(net, j2, { ...inv, bootstrap: b.host.addrs }, `j2-${round}`),
    ]);
    const ok = results.filter((r) => r.status === 'fulfilled');
    const bad = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    assert.equal(ok.length, 1, `round ${round}: exactly one joiner admitted (${results.map((r) => r.status === 'rejected' ? (r.reason as Error).message : 'ok').join(', ')})`);
    assert.ok(refused(/^invite already used$/)(bad[0].reason));
    const winner = results[0].status === 'fulfilled' ? j1 : j2;
    const loser = winner === j1 ? j2 : j1;
    for (const p of [a, b]) {
      await waitFor(() => p.ledger.isMember(idOf(winner.key)), 10_000, `${p.name} to see the winner`);
      assert.ok(!p.ledger.isMember(idOf(loser.key)), `${p.name}: the loser is not a member`);
    }
    await waitFor(() => a.ledger.digest() === b.ledger.digest(), 10_000, 'A and B in sync');
  }
  assert.equal(a.ledger.members().length, 2 + rounds);
});

test('connecting and the answer have their own time limits: a slow answer is waited for', { timeout: 60_000 }, async (t) => {
  const net = await newNet();
  const mnet = new MemoryNetwork();
  t.after(() => mnet.stop());
  const ha = await memoryHost(mnet, net.founderKey, 'founder', net.ledger);
  const a = await startMemoryPeer(net, net.founderKey, 'founder', net.ledger, ha);
  t.after(() => a.stop());
  const inv = await invite(net, { uses: 1, bootstrap: ha.addrs });
  const j = await joiner(mnet, 'joiner');
  const rec = await selfRecord(net, j.key, 'joiner', j.host.addrs, 1);
  // Each message on the link takes 300 ms: connecting takes 300 ms, the answer (the protocol's
  // negotiation, the request, the reply) well over a second, as from a member under load.
  mnet.setDelay(ha, j.host, 300);

  await assert.rejects(join(j.host, inv, rec, { timeoutMs: 800 }), (err: unknown) => err instanceof JoinError && err.code === 'timeout' && /within 800 ms/.test(err.message));
  // Connecting gets 800 ms, the answer 10 s: the same invite gets the admission made meanwhile.
  const r = await join(j.host, inv, rec, { timeoutMs: 800, answerMs: 10_000 });
  assert.equal(r.meshIp, a.ledger.member(idOf(j.key))!.meshIp);
  assert.equal(a.ledger.members().length, 2, 'one admission, not two');
});
