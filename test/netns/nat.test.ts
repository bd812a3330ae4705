// Members behind NAT routers (shared/testbed/nat.sh's, in namespaces): they learn their mapping
// from a member on a public address by STUN on the WireGuard socket, advertise it, and reach each
// other directly through both NATs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Internet, publicV4, type MeshNode, type NatOptions } from './mesh.js';
import { ping, waitFor, wgDump } from './harness.js';

test('a public founder and members behind port-preserving NATs with firewalls: full mesh, the members reach each other directly', { timeout: 180_000 }, async (tc) => {
  const net = new Internet();
  tc.after(() => net.cleanup());
  await net.init();
  const a = await net.addServer('alpha');
  const b = await net.addBehindNat('bravo', { nat: 'preserve', firewall: true });
  const c = await net.addBehindNat('charlie', { nat: 'preserve', firewall: true });
  await Promise.all(net.nodes.map((n) => net.start(n)));
  await net.cli(a, ['init']);
  const t0 = Date.now();
  assert.match(await net.cli(b, ['join', await net.invite(a)]), /this node is 10\.0\.0\.2/);
  assert.equal((await ping(net.t, b.ns, '10.0.0.1', { count: 1, wait: 3 })).received, 1, 'b reaches the founder through its NAT');
  const firstPingMs = Date.now() - t0;
  assert.match(await net.cli(c, ['join', await net.invite(a)]), /this node is 10\.0\.0\.3/);

  const t1 = Date.now();
  await net.fullMesh(60_000);
  // Possibly through the founder at first (each probed the other before it knew it); then direct.
  await waitFor(async () => {
    for (const [x, y] of [[b, c], [c, b]]) if ((await net.status(x)).peers.find((p) => p.name === y.name)?.path !== 'direct') return false;
    return true;
  }, 10_000, 'direct paths between the members behind NAT');
  const directMs = Date.now() - t1;
  // Each learnt its mapping (the router's WAN address, port preserved) from the founder.
  assert.deepEqual((await net.status(b)).self.reflexive, [`${publicV4(2)}:51820`]);
  assert.deepEqual((await net.status(c)).self.reflexive, [`${publicV4(3)}:51820`]);
  for (const [x, y, yRouter] of [[b, c, publicV4(3)], [c, b, publicV4(2)]] as const) {
    const peer = (await net.status(x)).peers.find((p) => p.name === y.name)!;
    assert.equal(peer.path, 'direct');
    assert.equal(peer.endpoint, `${yRouter}:51820`, `${x.name} sends to ${y.name}'s router, not through the founder`);
    assert.equal((await ping(net.t, x.ns, peer.meshIp, { count: 3, wait: 2 })).received, 3, `${x.name} pings ${y.name}`);
    const dump = await wgDump(net.t, x.ns, x.ifname);
    assert.ok(dump.some((p) => p.endpoint === `${yRouter}:51820` && p.latestHandshake > 0), 'wg show agrees');
  }
  assert.match(await net.cli(b, ['ping', 'charlie', '--until-direct']), new RegExp(`^pong from charlie \\(10\\.0\\.0\\.3\\) via ${publicV4(3).replace(/\./g, '\\.')}:51820 in`, 'm'));
  const nc = JSON.parse(await net.cli(b, ['netcheck', '--json']));
  assert.deepEqual([nc.udp, nc.behindNat, nc.reflexive], [true, true, [`${publicV4(2)}:51820`]]);
  assert.match(await net.cli(a, ['netcheck']), /Behind NAT: no/);
  process.stdout.write(`# NAT (preserve, firewall): join -> first ping ${firstPingMs} ms; both online -> direct ${directMs} ms\n`);
});

test('symmetric NATs on both sides: full mesh through a relay; status says relay and names it', { timeout: 180_000 }, async (tc) => {
  const net = new Internet();
  tc.after(() => net.cleanup());
  await net.init();
  const a = await net.addServer('alpha');
  const b = await net.addBehindNat('bravo', { nat: 'random', firewall: true });
  const c = await net.addBehindNat('charlie', { nat: 'random', firewall: true });
  const e = await net.addServer('echo', { args: ['--no-relay'] }); // a second public member, to compare mappings
  await Promise.all(net.nodes.map((n) => net.start(n)));
  await net.cli(a, ['init']);
  await net.cli(e, ['join', await net.invite(a)]);
  await net.cli(b, ['join', await net.invite(a)]);
  await net.cli(c, ['join', await net.invite(a)]);
  const t0 = Date.now();
  await net.fullMesh(60_000);
  const meshMs = Date.now() - t0;
  for (const [x, y] of [[b, c], [c, b]] as const) {
    const peer = (await net.status(x)).peers.find((p) => p.name === y.name)!;
    assert.equal(peer.path, 'relay', `${x.name} -> ${y.name}`);
    assert.equal(peer.relay, 'alpha');
    assert.equal(peer.endpoint, '198.20.1.2:51820', 'the relay\'s endpoint');
    assert.equal((await ping(net.t, x.ns, peer.meshIp, { count: 5, interval: 0.2, wait: 2 })).received, 5, `${x.name} pings ${y.name} through alpha`);
    const dump = await wgDump(net.t, x.ns, x.ifname);
    assert.ok(dump.some((p) => p.endpoint.startsWith('[fd7a:6d65:7368:')), `wg show prints the virtual endpoint: ${dump.map((p) => p.endpoint)}`);
  }
  // The public members are reached directly by both; echo does not relay.
  await waitFor(async () => {
    for (const x of [b, c]) {
      for (const y of ['alpha', 'echo']) if ((await net.status(x)).peers.find((p) => p.name === y)!.path !== 'direct') return false;
    }
    return true;
  }, 15_000, 'direct paths to the public members');
  // meshd ping says which path each answer took; --until-direct fails while relayed.
  assert.match(await net.cli(b, ['ping', 'charlie', '-c', '2']), /^pong from charlie \(10\.0\.0\.\d\) via relay alpha \(198\.20\.1\.2:51820\) in [\d.]+ ms$/m);
  await assert.rejects(net.cli(b, ['ping', 'charlie', '-c', '2', '--until-direct']), /no direct path to charlie after 2 pings \(answers came through a relay\)/);
  assert.match(await net.cli(b, ['ping', 'alpha', '--until-direct']), /^pong from alpha \(10\.0\.0\.1\) via 198\.20\.1\.2:51820 in/);
  // netcheck: the mapping varies by destination, and the relay answers.
  const nc = JSON.parse(await net.cli(b, ['netcheck', '--json']));
  assert.equal(nc.udp, true);
  assert.equal(nc.behindNat, true);
  assert.equal(nc.variesByDestination, true, JSON.stringify(nc.asked));
  assert.ok(nc.relays.some((r: { name: string; latencyMs: number | null }) => r.name === 'alpha' && typeof r.latencyMs === 'number'));
  assert.match(await net.cli(b, ['netcheck']), /Mapping varies by destination: yes \(a symmetric NAT/);
  assert.ok((JSON.parse(await net.cli(a, ['netcheck', '--json'])).counters.relayForwarded as number) > 0, 'alpha counts what it forwarded');
  process.stdout.write(`# NAT (random, random): full mesh through a relay in ${meshMs} ms\n`);
});

/** Pings x -> y once every 250 ms until one is answered; the time that took. */
async function untilPingable(net: Internet, x: MeshNode, ip: string, timeoutMs: number): Promise<number> {
  const t0 = Date.now();
  await waitFor(async () => (await ping(net.t, x.ns, ip, { count: 1, wait: 0.25 })).received === 1, timeoutMs, `${x.name} reaching ${ip}`);
  return Date.now() - t0;
}

async function pathOf(net: Internet, x: MeshNode, y: MeshNode): Promise<string | null> {
  return (await net.status(x)).peers.find((p) => p.name === y.name)?.path ?? null;
}

/**
 * A founder on a public address (alpha) and two members behind NAT routers (bravo, charlie;
 * port-preserving with firewalls unless `nat` says otherwise), joined, in a full mesh, with a
 * direct path between the two.
 */
async function foundedBehindNats(tc: { after(fn: () => unknown): void }, nat: NatOptions & { args?: string[] } = {}) {
  const net = new Internet();
  tc.after(() => net.cleanup());
  await net.init();
  const a = await net.addServer('alpha');
  const b = await net.addBehindNat('bravo', { nat: 'preserve', firewall: true, ...nat });
  const c = await net.addBehindNat('charlie', { nat: 'preserve', firewall: true, ...nat });
  await Promise.all(net.nodes.map((n) => net.start(n)));
  await net.cli(a, ['init']);
  await net.cli(b, ['join', await net.invite(a)]);
  await net.cli(c, ['join', await net.invite(a)]);
  await net.fullMesh(60_000);
  await waitFor(async () => (await pathOf(net, b, c)) === 'direct' && (await pathOf(net, c, b)) === 'direct', 15_000, 'direct paths');
  return { net, a, b, c };
}

test('a direct path that dies falls back to a relay within 5 s, comes back when it works again; with the introducer gone, paths and membership still flow', { timeout: 240_000 }, async (tc) => {
  const { net, a, b, c } = await foundedBehindNats(tc);

  // Cut the direct path between the two NATs (the founder still reaches both).
  const block = (op: '-I' | '-D') => Promise.all([['198.20.2.2', '198.20.3.2'], ['198.20.3.2', '198.20.2.2']].map(([s, d]) =>
    net.t.exec(net.core, 'iptables', [op, 'FORWARD', '-s', s, '-d', d, '-p', 'udp', '-j', 'DROP'])));
  await block('-I');
  const failoverMs = await untilPingable(net, b, '10.0.0.3', 15_000);
  assert.ok(failoverMs < 5_000, `traffic went on through a relay after ${failoverMs} ms`);
  assert.equal(await pathOf(net, b, c), 'relay');
  assert.equal((await net.status(b)).peers.find((p) => p.name === 'charlie')!.relay, 'alpha');
  assert.equal((await ping(net.t, c.ns, '10.0.0.2', { count: 3, wait: 2 })).received, 3, 'and back');

  // Unblocked: back to direct (relayed paths try direct every 30 s).
  await block('-D');
  const t0 = Date.now();
  await waitFor(async () => {
    await ping(net.t, b.ns, '10.0.0.3', { count: 1, wait: 1 });
    return (await pathOf(net, b, c)) === 'direct';
  }, 45_000, 'direct again');
  const backMs = Date.now() - t0;

  // The founder (who introduced them) goes away: the direct path stays, and a kick by the other
  // administrator reaches the kicked member through the tunnel (libp2p through the mesh).
  await net.cli(a, ['promote', 'bravo']);
  await waitFor(async () => (await net.status(b)).self.admin, 10_000, 'bravo is an administrator');
  await waitFor(async () => (await net.status(c)).peers.find((p) => p.name === 'bravo')?.admin === true, 10_000, 'charlie knows it');
  // Both ends direct (each side decides its own path; charlie may still have been relayed).
  await waitFor(async () => {
    await ping(net.t, c.ns, '10.0.0.2', { count: 1, wait: 1 });
    return (await pathOf(net, c, b)) === 'direct' && (await pathOf(net, b, c)) === 'direct';
  }, 45_000, 'direct both ways');
  await a.proc!.kill('SIGKILL');
  const still = await ping(net.t, b.ns, '10.0.0.3', { count: 5, interval: 0.2, wait: 2 });
  if (still.received !== 5) {
    // Once seen in CI (0 of 5) and never reproduced: say what both ends thought.
    const views = await Promise.all([b, c].map(async (n) => `${n.name}: ${JSON.stringify((await net.status(n)).peers.map((p) => [p.name, p.path, p.endpoint, p.lastHandshake]))}\n${n.proc!.output().split('\n').slice(-40).join('\n')}`));
    assert.fail(`b and c still talk directly: ${still.received} of 5 answered\n${views.join('\n')}`);
  }
  await net.cli(b, ['kick', 'charlie']);
  await waitFor(async () => (await net.status(c)).self.meshIp === null, 15_000, 'charlie learns it was kicked, with the founder down');
  process.stdout.write(`# NAT: direct -> relay failover ${failoverMs} ms; relay -> direct ${backMs} ms after unblocking\n`);
});

test('Linux-default NAT routers (open INPUT) and a symmetric NAT against a port-preserving one: full mesh', { timeout: 180_000 }, async (tc) => {
  const net = new Internet();
  tc.after(() => net.cleanup());
  await net.init();
  const a = await net.addServer('alpha');
  const b = await net.addBehindNat('bravo', { nat: 'preserve', firewall: false });
  const c = await net.addBehindNat('charlie', { nat: 'preserve', firewall: false });
  const d = await net.addBehindNat('delta', { nat: 'random', firewall: true });
  await Promise.all(net.nodes.map((n) => net.start(n)));
  await net.cli(a, ['init']);
  for (const n of [b, c, d]) await net.cli(n, ['join', await net.invite(a)]);
  await net.fullMesh(60_000);
  const paths: string[] = [];
  for (const [x, y] of [[b, c], [c, b], [b, d], [d, c]] as const) {
    const peer = (await net.status(x)).peers.find((p) => p.name === y.name)!;
    assert.ok(peer.path === 'direct' || peer.path === 'relay', `${x.name} -> ${y.name}: ${peer.path}`);
    assert.equal((await ping(net.t, x.ns, peer.meshIp, { count: 3, wait: 2 })).received, 3, `${x.name} pings ${y.name}`);
    paths.push(`${x.name}->${y.name} ${peer.path}${peer.relay ? ` via ${peer.relay}` : ''}`);
  }
  // Against a symmetric NAT the other side's mapping is unknown: only a relay works.
  assert.equal(await pathOf(net, b, d), 'relay');
  process.stdout.write(`# NAT paths: ${paths.join('; ')}\n`);
});

test('a 5 s conntrack timeout, a 2 s keepalive, a minute idle: everyone still reaches everyone', { timeout: 180_000 }, async (tc) => {
  const { net, a, b, c } = await foundedBehindNats(tc, { udpTimeout: 5, args: ['--keepalive', '2'] });
  // Keepalives only where a NAT needs them: the founder on its public address sends none.
  const keepalives = async (n: MeshNode) => (await net.t.exec(n.ns, 'wg', ['show', n.ifname, 'persistent-keepalive'])).stdout.trim().split('\n').map((l) => l.split('\t')[1]);
  await waitFor(async () => (await keepalives(a)).every((k) => k === 'off'), 40_000, 'the founder stops sending keepalives once it knows it is public');
  assert.deepEqual(await keepalives(b), ['2', '2']);
  await new Promise((r) => setTimeout(r, 60_000));
  // The founder reaches b without b speaking first: b's keepalives held its mapping open.
  assert.equal((await ping(net.t, a.ns, '10.0.0.2', { count: 1, wait: 2 })).received, 1, 'founder -> bravo after a minute idle');
  assert.equal((await ping(net.t, c.ns, '10.0.0.2', { count: 1, wait: 2 })).received, 1, 'charlie -> bravo directly after a minute idle');
  assert.equal(await pathOf(net, c, b), 'direct');
});

test('a member that moves to another network is back on direct paths within 10 s', { timeout: 180_000 }, async (tc) => {
  const { net, a, b, c } = await foundedBehindNats(tc);

  await net.moveBehindNat(b, 9, { nat: 'preserve', firewall: true });
  const t0 = Date.now();
  await waitFor(async () => {
    void ping(net.t, b.ns, '10.0.0.3', { count: 1, wait: 0.5 });
    void ping(net.t, c.ns, '10.0.0.2', { count: 1, wait: 0.5 });
    const [bc, cb, ab] = await Promise.all([net.status(b), net.status(c), net.status(a)]);
    const atNew = (s: typeof ab) => s.peers.find((p) => p.name === 'bravo')?.endpoint === `${publicV4(9)}:51820` && s.peers.find((p) => p.name === 'bravo')?.path === 'direct';
    return bc.peers.find((p) => p.name === 'charlie')?.path === 'direct' && atNew(cb) && atNew(ab);
  }, 20_000, 'direct paths from the new network, the founder\'s too');
  const backMs = Date.now() - t0;
  assert.ok(backMs < 10_000, `back on direct paths after ${backMs} ms`);
  assert.deepEqual((await net.status(b)).self.reflexive, [`${publicV4(9)}:51820`]);
  assert.equal((await ping(net.t, c.ns, '10.0.0.2', { count: 3, wait: 2 })).received, 3);
  assert.equal((await ping(net.t, a.ns, '10.0.0.2', { count: 3, wait: 2 })).received, 3, 'the founder follows too');
  process.stdout.write(`# NAT: moved to another network -> direct again in ${backMs} ms\n`);
});

test('a member whose UDP is blocked at its router still reaches every member: WireGuard over libp2p (TCP) through a member', { timeout: 180_000 }, async (tc) => {
  const net = new Internet();
  tc.after(() => net.cleanup());
  await net.init();
  const a = await net.addServer('alpha');
  const b = await net.addBehindNat('bravo', { nat: 'preserve', firewall: true });
  const d = await net.addBehindNat('delta', { nat: 'preserve', firewall: true });
  await net.t.exec(net.t.name('r3'), 'iptables', ['-I', 'FORWARD', '-p', 'udp', '-j', 'DROP']);
  await Promise.all(net.nodes.map((n) => net.start(n)));
  await net.cli(a, ['init']);
  await net.cli(b, ['join', await net.invite(a)]);
  await net.cli(d, ['join', await net.invite(a)]);
  await net.fullMesh(60_000);
  for (const [x, y] of [[d, a], [d, b], [a, d], [b, d]] as const) {
    const peer = (await net.status(x)).peers.find((p) => p.name === y.name)!;
    assert.equal(peer.path, 'relay', `${x.name} -> ${y.name}`);
    assert.equal((await ping(net.t, x.ns, peer.meshIp, { count: 3, wait: 2 })).received, 3, `${x.name} pings ${y.name}`);
  }
  const nc = JSON.parse(await net.cli(d, ['netcheck', '--json']));
  assert.equal(nc.udp, false);
  assert.match(await net.cli(d, ['netcheck']), /UDP: no answer from anyone asked/);
  // the two that have UDP keep their direct path
  await waitFor(async () => (await pathOf(net, b, a)) === 'direct', 10_000, 'bravo direct to alpha');
});
