// Partition and heal (issue 9): a member cut off from the LAN while the membership changes without
// it, then back. What a user checks after the heal: its member list is everyone else's, and the
// new member and it reach each other through the tunnel, within 10 s.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Lan, type MeshNode } from './mesh.js';
import { ping, waitFor } from './harness.js';

const HEAL_DEADLINE_MS = 10_000;

/** The member names a node lists (itself excluded), sorted. */
async function memberNames(lan: Lan, node: MeshNode): Promise<string[]> {
  return (await lan.status(node)).peers.map((p) => p.name).sort();
}

/**
 * Cuts a node off its LAN link, both directions (its own namespace's filter; loopback, the
 * control socket and the CLI keep working); returns how to heal it.
 */
async function cutOff(lan: Lan, node: MeshNode, dev: string): Promise<() => Promise<void>> {
  const rules = [['INPUT', '-i'], ['OUTPUT', '-o']] as const;
  for (const [chain, dir] of rules) await lan.t.exec(node.ns, 'iptables', ['-I', chain, dir, dev, '-j', 'DROP']);
  return async () => {
    for (const [chain, dir] of rules) await lan.t.exec(node.ns, 'iptables', ['-D', chain, dir, dev, '-j', 'DROP']);
  };
}

/**
 * What else dials a member that is cut off, besides the sync (measured before the sync's fix):
 *   - mDNS finds members on a LAN again within its 10 s query interval; many networks filter
 *     multicast (Wi-Fi with client isolation, cloud VPCs), and across the internet there is none.
 *     `multicast: false` drops it in every namespace.
 *   - the path finder asks members it still has a fresh handshake with (180 s) to relay for it,
 *     which dials them every few seconds. A partition longer than that leaves only the sync's
 *     own dialling (backoff, signs of life) to bring the member back.
 */
async function partitionAndHeal(tc: { after(fn: () => unknown): void }, opts: { multicast: boolean; partitionMs: number }): Promise<void> {
  const lan = new Lan();
  tc.after(() => lan.cleanup());
  await lan.init();
  const before = opts.multicast ? undefined : async (ns: string) => {
    for (const chain of ['INPUT', 'OUTPUT']) await lan.t.exec(ns, 'iptables', ['-A', chain, '-p', 'udp', '--dport', '5353', '-j', 'DROP']);
  };
  const add = (name: string) => lan.addNode(name, { before });
  const [a, b, c, d, e] = [await add('alpha'), await add('bravo'), await add('charlie'), await add('delta'), await add('echo')];
  await Promise.all(lan.nodes.map((n) => lan.start(n)));
  await lan.cli(a, ['init', '--network', 'heal']);
  for (const n of [b, c, d]) await lan.cli(n, ['join', await lan.invite(a)]);
  await lan.fullMesh(30_000, [a, b, c, d]);
  assert.deepEqual(await memberNames(lan, c), ['alpha', 'bravo', 'delta']);

  // charlie's LAN link goes dark (its interface is number 3 on the bridge).
  const heal = await cutOff(lan, c, lan.t.name('e3'));
  const cutAt = Date.now();
  // Long enough for every dial backoff to charlie, and charlie's to everyone, to reach its cap.
  // The connections to charlie stay open (nothing is sent) until the kick's push to it times out
  // and closes them (sync.ts), or the connection monitor's ping (every 2 minutes) fails.
  await new Promise((r) => setTimeout(r, 15_000));
  await lan.cli(a, ['kick', 'bravo']);
  await waitFor(async () => (await lan.status(b)).self.meshIp === null, 15_000, 'bravo to learn it was kicked');
  const joined = await lan.cli(e, ['join', await lan.invite(a)]);
  const echoIp = /this node is (\S+)/.exec(joined)![1];
  await waitFor(async () => JSON.stringify(await memberNames(lan, d)) === JSON.stringify(['alpha', 'charlie', 'echo']), 15_000, 'delta to see the kick and the join');
  assert.deepEqual(await memberNames(lan, e), ['alpha', 'charlie', 'delta'], 'echo lists charlie (from the ledger) though it never met it');
  await new Promise((r) => setTimeout(r, Math.max(0, cutAt + opts.partitionMs - Date.now())));
  // The cut was real: charlie heard of neither change.
  assert.deepEqual(await memberNames(lan, c), ['alpha', 'bravo', 'delta'], 'charlie, cut off, still has the old list');
  assert.equal((await ping(lan.t, c.ns, '10.0.0.1', { count: 1, wait: 1 })).received, 0, 'charlie cannot reach alpha while cut off');

  await heal();
  const healedAt = Date.now();
  const deadline = healedAt + HEAL_DEADLINE_MS;
  await waitFor(async () => JSON.stringify(await memberNames(lan, c)) === JSON.stringify(['alpha', 'delta', 'echo']), deadline - Date.now(), "charlie's member list to become alpha, delta, echo");
  const listMs = Date.now() - healedAt;
  const charlieIp = (await lan.status(c)).self.meshIp!;
  const reaches = (from: MeshNode, ip: string) => ping(lan.t, from.ns, ip, { count: 1, wait: 1 }).then((r) => r.received === 1);
  await waitFor(async () => (await reaches(c, echoIp)) && (await reaches(e, charlieIp)), Math.max(0, deadline - Date.now()), 'charlie and echo to ping each other');
  const pingMs = Date.now() - healedAt;

  // Everyone agrees, and no address is held twice.
  const statuses = await Promise.all([a, c, d, e].map((n) => lan.status(n)));
  for (const s of statuses) assert.equal(s.peers.length, 3, `${s.self.name} lists three others`);
  const ips = statuses.map((s) => s.self.meshIp);
  assert.equal(new Set(ips).size, 4, `four distinct mesh addresses: ${ips.join(', ')}`);
  assert.ok(!(await memberNames(lan, c)).includes('bravo'));
}

test('a member cut off while another is kicked and a third joins: after the heal it converges within 10 s', { timeout: 240_000 }, async (tc) => {
  await partitionAndHeal(tc, { multicast: true, partitionMs: 55_000 });
});

test('the same for 200 s without multicast (no mDNS): the sync itself redials within 10 s', { timeout: 400_000 }, async (tc) => {
  await partitionAndHeal(tc, { multicast: false, partitionMs: 200_000 });
});
