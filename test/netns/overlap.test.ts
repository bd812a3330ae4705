// Mesh traffic never leaves in clear, and a command that fails changes nothing (issue 8): real
// daemons in namespaces on a LAN that itself uses meshd's default range, 10.0.0.0/24.
//
// Without the overlap check, init and joins there succeed and pings work, yet nothing goes through
// WireGuard: the LAN's route and the mesh's are the same prefix, the LAN's wins, and members
// answer ARP for their mesh addresses on the LAN. These tests hold the refusals, the suggested
// range, WireGuard's counters, the runtime route check, and init/join failing cleanly on a
// libp2p port that is taken.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { Lan, type MeshNode } from './mesh.js';
import { ping, waitFor } from './harness.js';
import type { PeerStatus } from '../../src/daemon/daemon.js';

/** The CLI's error for a command that must fail. */
async function refused(lan: Lan, node: MeshNode, args: string[]): Promise<string> {
  const err = await lan.cli(node, args).then(() => null, (e: Error) => e);
  assert.ok(err, `meshd ${args[0]} should have failed`);
  assert.equal(err.message.split('\n').length, 1, `one line: ${err.message}`);
  return err.message;
}

/** A node's view of one member. */
async function peer(lan: Lan, node: MeshNode, name: string): Promise<PeerStatus> {
  const p = (await lan.status(node)).peers.find((x) => x.name === name);
  assert.ok(p, `${node.name} lists ${name}`);
  return p;
}

/** The device `ip route get` names for an address, inside a node's namespace. */
async function routeDev(lan: Lan, node: MeshNode, ip: string): Promise<string> {
  const [r] = JSON.parse((await lan.t.exec(node.ns, 'ip', ['-j', 'route', 'get', ip])).stdout) as { dev: string }[];
  return r.dev;
}

/** The TCP listeners on a port inside a node's namespace, as `ss` lists them (with their processes). */
async function listeners(lan: Lan, node: MeshNode, port: number): Promise<string[]> {
  const { stdout } = await lan.t.exec(node.ns, 'ss', ['-Hltnp', 'sport', `= :${port}`]);
  return stdout.split('\n').filter(Boolean);
}

/** Nothing of a network left on a node: no network, no address, no peers, no libp2p listener. */
async function noNetwork(lan: Lan, node: MeshNode, p2pPort = 4001): Promise<void> {
  const s = await lan.status(node);
  assert.equal(s.self.network, null, `${node.name} has no network`);
  assert.equal(s.self.meshIp, null);
  assert.deepEqual(s.peers, []);
  const { stdout } = await lan.t.exec(node.ns, 'ip', ['-4', '-o', 'addr', 'show', 'dev', node.ifname]);
  assert.equal(stdout.trim(), '', `${node.ifname} has no address`);
  const daemonPid = `pid=${node.proc!.pid},`;
  assert.deepEqual((await listeners(lan, node, p2pPort)).filter((l) => l.includes(daemonPid)), [], 'no libp2p listener of the daemon');
}

const PINGS = 20;
const PING_BYTES = 1000;
/** What PINGS echo requests of PING_BYTES put on the wire as IP packets (ICMP and IP headers). */
const PING_IP_BYTES = PINGS * (PING_BYTES + 8 + 20);

test('a LAN on 10.0.0.0/24: init refuses the default range and stores nothing; the suggested range works, and mesh traffic goes through WireGuard', { timeout: 120_000 }, async (tc) => {
  const lan = new Lan('10.0.0');
  tc.after(() => lan.cleanup());
  await lan.init();
  const a = await lan.addNode('alpha');
  const b = await lan.addNode('bravo');
  await Promise.all(lan.nodes.map((n) => lan.start(n)));
  const lanIf = lan.t.name('e1');

  const msg = await refused(lan, a, ['init']);
  assert.equal(msg, `meshd: 10.0.0.0/24 overlaps ${lanIf}'s network 10.0.0.0/24: mesh traffic would leave in clear on ${lanIf}. ` +
    'Pick another range, e.g. meshd init --cidr 10.77.0.0/24 (or --allow-overlap if you know why)');
  await noNetwork(lan, a);
  // a wider range that contains the LAN is refused too, and the suggestion keeps its size
  assert.match(await refused(lan, a, ['init', '--cidr', '10.0.0.0/16']), /^meshd: 10\.0\.0\.0\/16 overlaps .* e\.g\. meshd init --cidr 10\.77\.0\.0\/16 /);
  await noNetwork(lan, a);

  // The range it suggested: init works (nothing from the refusals is in the way).
  assert.equal(await lan.cli(a, ['init', '--cidr', '10.77.0.0/24']), 'founded network mesh; this node is 10.77.0.1');
  assert.equal(await lan.cli(b, ['join', await lan.invite(a)]), 'joined network mesh as bravo; this node is 10.77.0.2');
  assert.equal(await routeDev(lan, b, '10.77.0.1'), b.ifname, 'bravo routes alpha\'s mesh address into the mesh');
  assert.equal(await routeDev(lan, a, '10.77.0.2'), a.ifname);
  await lan.fullMesh();

  // Pings through the mesh show up in WireGuard's counters on both ends, at least byte for byte.
  const [bBefore, aBefore] = [await peer(lan, b, 'alpha'), await peer(lan, a, 'bravo')];
  const r = await ping(lan.t, b.ns, '10.77.0.1', { count: PINGS, interval: 0.05, size: PING_BYTES });
  assert.equal(r.received, PINGS);
  const [bAfter, aAfter] = [await peer(lan, b, 'alpha'), await peer(lan, a, 'bravo')];
  assert.ok(bAfter.txBytes - bBefore.txBytes >= PING_IP_BYTES, `bravo sent ${bAfter.txBytes - bBefore.txBytes} bytes through WireGuard, pings were ${PING_IP_BYTES}`);
  assert.ok(bAfter.rxBytes - bBefore.rxBytes >= PING_IP_BYTES, `bravo received ${bAfter.rxBytes - bBefore.rxBytes} bytes through WireGuard`);
  assert.ok(aAfter.rxBytes - aBefore.rxBytes >= PING_IP_BYTES, `alpha received ${aAfter.rxBytes - aBefore.rxBytes} bytes through WireGuard`);
  assert.equal(bAfter.leak, null);
  assert.equal(aAfter.leak, null);
});

test('a join whose network range overlaps the joiner\'s LAN is refused and changes nothing; --allow-overlap joins, and status shows the leak until the LAN goes', { timeout: 120_000 }, async (tc) => {
  const lan = new Lan();
  tc.after(() => lan.cleanup());
  await lan.init();
  // bravo's home LAN is 10.0.0.0/24 (a veth pair inside its namespace), the network's default range
  const home = lan.t.name('h2');
  const a = await lan.addNode('alpha');
  const b = await lan.addNode('bravo', {
    before: async (ns) => {
      await lan.t.exec(ns, 'ip', ['link', 'add', home, 'type', 'veth', 'peer', 'name', lan.t.name('k2')]);
      await lan.t.exec(ns, 'ip', ['addr', 'add', '10.0.0.9/24', 'dev', home]);
      for (const d of [home, lan.t.name('k2')]) await lan.t.exec(ns, 'ip', ['link', 'set', d, 'up']);
    },
  });
  await Promise.all(lan.nodes.map((n) => lan.start(n)));
  assert.equal(await lan.cli(a, ['init']), 'founded network mesh; this node is 10.0.0.1');
  const invite = await lan.invite(a, ['--uses', '1']);

  const msg = await refused(lan, b, ['join', invite]);
  assert.match(msg, new RegExp(`^meshd: the network's range 10\\.0\\.0\\.0/24 overlaps ${home}'s network 10\\.0\\.0\\.0/24: mesh traffic would leave in clear on ${home}\\. This node did not join\\.`));
  assert.match(msg, /10\.77\.0\.0\/24 is free here/);
  assert.match(msg, /meshd join --allow-overlap <invite>/);
  await noNetwork(lan, b);
  assert.deepEqual((await lan.status(a)).peers, [], 'alpha admitted no one');

  // The same single-use invite still works (it was never presented), with the override.
  assert.equal(await lan.cli(b, ['join', '--allow-overlap', invite]), 'joined network mesh as bravo; this node is 10.0.0.2');
  // This is the reported bug: alpha's mesh address routes out of the home LAN. Status says so.
  assert.equal(await routeDev(lan, b, '10.0.0.1'), home);
  await waitFor(async () => (await peer(lan, b, 'alpha')).leak === `routes via ${home}`, 15_000, 'bravo\'s status to show the leak to alpha');
  const text = await lan.cli(b, ['status']);
  assert.match(text, new RegExp(`^WARNING: mesh traffic to alpha \\(10\\.0\\.0\\.1\\) routes via ${home}, not through ${b.ifname}: it is not encrypted\\.`, 'm'));

  // The home LAN goes: the mesh's own route is left, the leak clears, pings go through WireGuard.
  await lan.t.exec(b.ns, 'ip', ['link', 'del', home]);
  await waitFor(async () => (await peer(lan, b, 'alpha')).leak === null, 15_000, 'the leak to clear');
  assert.doesNotMatch(await lan.cli(b, ['status']), /WARNING/);
  await waitFor(async () => (await ping(lan.t, b.ns, '10.0.0.1', { count: 1, wait: 1 })).received === 1, 15_000, 'bravo to reach alpha through the mesh');
  const before = await peer(lan, b, 'alpha');
  assert.equal((await ping(lan.t, b.ns, '10.0.0.1', { count: PINGS, interval: 0.05, size: PING_BYTES })).received, PINGS);
  assert.ok((await peer(lan, b, 'alpha')).txBytes - before.txBytes >= PING_IP_BYTES, 'through WireGuard now');
});

test('a route that appears later and captures a member\'s mesh address: status shows the leak for that member (warned once in the log), and it clears when the route goes', { timeout: 120_000 }, async (tc) => {
  const lan = new Lan('10.0.0');
  tc.after(() => lan.cleanup());
  await lan.init();
  const a = await lan.addNode('alpha');
  const b = await lan.addNode('bravo');
  const c = await lan.addNode('charlie');
  await Promise.all(lan.nodes.map((n) => lan.start(n)));
  await lan.cli(a, ['init', '--cidr', '10.77.0.0/24']);
  for (const n of [b, c]) await lan.cli(n, ['join', await lan.invite(a)]);
  await lan.fullMesh();
  const bLan = lan.t.name('e2');
  assert.equal((await peer(lan, b, 'alpha')).leak, null);

  // A more specific route on bravo sends alpha's mesh address out of the LAN interface. alpha's
  // kernel answers ARP for it there, so pings still work: in clear, past WireGuard.
  await lan.t.exec(b.ns, 'ip', ['route', 'add', '10.77.0.1/32', 'dev', bLan]);
  await waitFor(async () => (await peer(lan, b, 'alpha')).leak === `routes via ${bLan}`, 15_000, 'bravo\'s status to show the leak to alpha');
  assert.equal((await peer(lan, b, 'charlie')).leak, null, 'only alpha is captured');
  const before = await peer(lan, b, 'alpha');
  assert.equal((await ping(lan.t, b.ns, '10.77.0.1', { count: PINGS, interval: 0.05, size: PING_BYTES })).received, PINGS, 'pings work, over the LAN');
  assert.ok((await peer(lan, b, 'alpha')).txBytes - before.txBytes < PING_IP_BYTES, 'and not through WireGuard: this is the leak');
  // several checks later (each change to the routing table is one), still one warning
  for (let i = 0; i < 3; i++) {
    await lan.t.exec(b.ns, 'ip', ['route', 'add', '192.0.2.77/32', 'dev', bLan]);
    await sleep(1_000);
    await lan.t.exec(b.ns, 'ip', ['route', 'del', '192.0.2.77/32', 'dev', bLan]);
    await sleep(1_000);
  }
  const warnings = b.proc!.output().split('\n').filter((l) => l.includes('"leak":') && l.includes('"member":"alpha"') && l.includes('not encrypted'));
  assert.equal(warnings.length, 1, `one warning for alpha: ${warnings.join('\n')}`);
  assert.equal((await peer(lan, b, 'alpha')).leak, `routes via ${bLan}`);

  await lan.t.exec(b.ns, 'ip', ['route', 'del', '10.77.0.1/32', 'dev', bLan]);
  await waitFor(async () => (await peer(lan, b, 'alpha')).leak === null, 15_000, 'the leak to clear');
  const after = await peer(lan, b, 'alpha');
  assert.equal((await ping(lan.t, b.ns, '10.77.0.1', { count: PINGS, interval: 0.05, size: PING_BYTES })).received, PINGS);
  assert.ok((await peer(lan, b, 'alpha')).txBytes - after.txBytes >= PING_IP_BYTES, 'through WireGuard again');
});

test('init on a taken libp2p port fails with one clear line and leaves nothing; a join fails the same way; once the port is free the same invite joins', { timeout: 120_000 }, async (tc) => {
  const lan = new Lan();
  tc.after(() => lan.cleanup());
  await lan.init();
  const a = await lan.addNode('alpha');
  const b = await lan.addNode('bravo');
  await Promise.all(lan.nodes.map((n) => lan.start(n)));
  // Our own listener takes alpha's libp2p port (4001) after alpha's daemon checked it at start
  // (service.test.ts: taken then, the daemon does not start) and before alpha's libp2p needs it.
  const holder = lan.t.spawn(a.ns, process.execPath, ['-e', "require('node:net').createServer().listen(4001, '0.0.0.0', () => console.log('listening'))"]);
  await waitFor(() => holder.output().includes('listening') || !holder.alive(), 10_000, 'the port holder');
  assert.ok(holder.alive(), holder.output());

  const msg = await refused(lan, a, ['init']);
  assert.match(msg, /^meshd: TCP port 4001 is in use: another program \(another meshd daemon\?\) listens on it; stop it, or start meshd daemon with another --p2p-port$/);
  await noNetwork(lan, a);
  assert.ok((await listeners(lan, a, 4001)).every((l) => l.includes(`pid=${holder.pid},`)), 'only the holder listens');
  // Not "already a member": the failed init left nothing behind, so a second one fails the same way.
  assert.equal(await refused(lan, a, ['init']), msg);

  assert.equal(await lan.cli(b, ['init']), 'founded network mesh; this node is 10.0.0.1');
  const invite = await lan.invite(b, ['--uses', '1']);
  assert.equal(await refused(lan, a, ['join', invite]), msg);
  await noNetwork(lan, a);

  await holder.kill();
  assert.equal(await lan.cli(a, ['join', invite]), 'joined network mesh as alpha; this node is 10.0.0.2');
  await waitFor(async () => (await ping(lan.t, a.ns, '10.0.0.1', { count: 1, wait: 1 })).received === 1, 15_000, 'alpha to reach bravo');
  assert.deepEqual((await lan.status(b)).peers.map((p) => p.name), ['alpha']);
});
