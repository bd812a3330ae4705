// The mesh where servers really are: each on its own public subnet with a default route (no shared
// LAN, no mDNS), IPv4 and IPv6, one of them IPv6 only; invites that work from elsewhere; joins that
// try every address at once and say why each failed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Internet, publicV4, publicV6, type MeshNode } from './mesh.js';
import { ping, waitFor, wgDump } from './harness.js';
import { parseInvite } from '../../src/discovery/invite.js';

const PUBLIC = /^(198\.20\.\d+\.2|\[2a0f:5e00:\d+::2\]):\d+$/;

function hostOf(endpoint: string): string {
  return endpoint.replace(/^\[?(.*?)\]?:\d+$/, '$1');
}

test('servers on public addresses only: init, joins (two over IPv6 only), full mesh, every WireGuard endpoint public, no keepalives', { timeout: 180_000 }, async (tc) => {
  const net = new Internet();
  tc.after(() => net.cleanup());
  await net.init();
  const a = await net.addServer('alpha');
  const b = await net.addServer('bravo');
  const c = await net.addServer('charlie');
  const d = await net.addServer('delta', { v4: false }); // IPv6 only
  const e = await net.addServer('echo', { v4: false }); // IPv6 only too: delta and echo have nothing but IPv6
  await Promise.all(net.nodes.map((n) => net.start(n)));

  assert.match(await net.cli(a, ['init', '--network', 'cloud']), /10\.0\.0\.1/);
  const token = await net.invite(a);
  const boot = parseInvite(token).bootstrap;
  assert.ok(boot.some((m) => m.startsWith(`/ip4/${publicV4(1)}/tcp/4001/p2p/`)), `the founder's public IPv4 address is in the invite: ${boot}`);
  assert.ok(boot.some((m) => m.startsWith(`/ip6/${publicV6(1)}/tcp/4001/p2p/`)), `and its public IPv6 address: ${boot}`);
  for (const m of boot) assert.doesNotMatch(m, /\/ip4\/127\.|\/ip6\/::1\/|\/ip4\/10\.0\.0\.|\/ip6\/fe80/, 'no loopback, mesh or link-local address');

  const t0 = Date.now();
  assert.match(await net.cli(b, ['join', token]), /joined network cloud as [a-z0-9-]+; this node is 10\.0\.0\.2/);
  const joinMs = Date.now() - t0;
  await net.cli(a, ['promote', 'bravo']);
  // A joiner reaches the member that invited it, and members that were not in its invite.
  assert.match(await net.cli(c, ['join', await net.invite(b)]), /this node is 10\.0\.0\.3/);
  assert.match(await net.cli(d, ['join', await net.invite(a)]), /this node is 10\.0\.0\.4/);
  assert.match(await net.cli(e, ['join', await net.invite(a)]), /this node is 10\.0\.0\.5/);

  await net.fullMesh(30_000);
  const byName = new Map(net.nodes.map((n, i) => [n.name, { n, i: i + 1 }]));
  for (const n of net.nodes) {
    const s = await net.status(n);
    assert.equal(s.peers.length, 4);
    for (const p of s.peers) {
      assert.equal(p.path, 'direct');
      assert.match(p.endpoint ?? '', PUBLIC, `${n.name} -> ${p.name} over a public endpoint`);
      const i = byName.get(p.name)!.i;
      // The IPv6-only member is reached over IPv6, by everyone; the others at one of their own
      // addresses (whichever answered the path probes first).
      const v6only = (name: string) => name === 'delta' || name === 'echo';
      const want = v6only(p.name) || v6only(n.name) ? [publicV6(i)] : [publicV4(i), publicV6(i)];
      assert.ok(want.includes(hostOf(p.endpoint!)), `${n.name} reaches ${p.name} at ${p.endpoint}, one of ${want}`);
      assert.equal((await ping(net.t, n.ns, p.meshIp, { count: 2, wait: 2 })).received, 2, `${n.name} pings ${p.name}`);
    }
    // wg show agrees: every peer's endpoint is public
    for (const peer of await wgDump(net.t, n.ns, n.ifname)) assert.match(peer.endpoint, PUBLIC);
  }
  // Nobody is behind a NAT: once members see each other at their own addresses, no keepalives.
  for (const n of net.nodes) {
    await waitFor(async () => (await net.t.exec(n.ns, 'wg', ['show', n.ifname, 'persistent-keepalive'])).stdout.trim().split('\n').every((l) => l.endsWith('\toff')), 40_000, `${n.name} without keepalives`);
  }
  process.stdout.write(`# public servers: first join took ${joinMs} ms\n`);
});

test('a join tries every address of the invite at once: a dead one listed first costs nothing, other members stand in for the issuer, and when none answers each is named with why', { timeout: 180_000 }, async (tc) => {
  const net = new Internet();
  tc.after(() => net.cleanup());
  await net.init();
  // alpha announces an address that drops everything (a stale floating IP): it goes first.
  const a = await net.addServer('alpha', { args: ['--announce', '198.20.250.1'] });
  const b = await net.addServer('bravo');
  const c = await net.addServer('charlie');
  const d = await net.addServer('delta');
  await net.t.exec(net.core, 'ip', ['route', 'add', 'blackhole', '198.20.250.0/24']);
  await Promise.all(net.nodes.map((n) => net.start(n)));
  await net.cli(a, ['init']);

  const token = await net.invite(a);
  assert.match(parseInvite(token).bootstrap[0], /^\/ip4\/198\.20\.250\.1\/tcp\/4001\/p2p\//, 'announced address first');
  const t0 = Date.now();
  assert.match(await net.cli(b, ['join', token]), /this node is 10\.0\.0\.2/);
  const took = Date.now() - t0;
  assert.ok(took < 8_000, `join took ${took} ms: the dead address must not hold it up`);
  const s = await net.status(b);
  assert.equal(s.peers[0].name, 'alpha');
  // alpha advertises the announced address too; WireGuard still ends up at its real one.
  await net.fullMesh(20_000, [a, b]);
  assert.ok([publicV4(1), publicV6(1)].includes(hostOf((await net.status(b)).peers[0].endpoint!)), 'one of its real addresses');

  // The invite carries the other members' addresses too: with its issuer down, a join goes
  // through another member.
  const [token2, token3] = [await net.invite(a), await net.invite(a)];
  await a.proc!.kill();
  assert.match(await net.cli(c, ['join', token2]), /this node is 10\.0\.0\.3/);
  assert.equal((await net.status(c)).peers.find((p) => p.name === 'bravo')?.online, true);

  // No member answers: the join fails, names every address and why, and changes nothing.
  await b.proc!.kill();
  await c.proc!.kill();
  const err = await net.cli(d, ['join', token3]).then(() => assert.fail('join must fail'), (e: Error & { exitCode?: number }) => e);
  assert.notEqual(err.exitCode, 0);
  assert.match(err.message, /no member of the network could be reached/);
  assert.match(err.message, /198\.20\.250\.1:4001 \(no answer within \d+ s/);
  assert.match(err.message, /198\.20\.1\.2:4001 \(connection refused/);
  assert.match(err.message, /\[2a0f:5e00:1::2\]:4001 \(connection refused/);
  assert.match(err.message, /198\.20\.2\.2:4001 \(connection refused/, 'bravo, from the invite, was tried too');
  assert.doesNotMatch(err.message, /payload identity|Error:|at async/, 'no raw library text or stack');
  process.stdout.write(`# a failed join says: ${err.message}\n`);
  const after = await net.status(d);
  assert.equal(after.self.meshIp, null, 'a failed join changes nothing');
  assert.deepEqual(after.peers, []);
});

test('a member behind a port forward that changes its ports: --announce-tcp and --announce-udp', { timeout: 180_000 }, async (tc) => {
  const net = new Internet();
  tc.after(() => net.cleanup());
  await net.init();
  // alpha sits on a private subnet behind the core router, which forwards 198.20.99.1:14001/tcp
  // and :15182/udp to it and masquerades its traffic out: alpha's own addresses are of no use
  // to anyone else.
  const a = await forwarded(net, 'alpha', ['--announce-tcp', '198.20.99.1:14001', '--announce-udp', '198.20.99.1:15182']);
  const b = await net.addServer('bravo');
  await Promise.all(net.nodes.map((n) => net.start(n)));
  await net.cli(a, ['init']);
  const boot = parseInvite(await net.invite(a)).bootstrap;
  assert.match(boot[0], /^\/ip4\/198\.20\.99\.1\/tcp\/14001\/p2p\//);
  assert.match(await net.cli(b, ['join', await net.invite(a)]), /this node is 10\.0\.0\.2/);
  await net.fullMesh();
  const peer = (await net.status(b)).peers[0];
  assert.equal(peer.endpoint, '198.20.99.1:15182', 'bravo sends WireGuard to the forwarded port');
  assert.equal((await ping(net.t, b.ns, peer.meshIp, { count: 3, wait: 2 })).received, 3);
  assert.equal((await ping(net.t, a.ns, '10.0.0.2', { count: 3, wait: 2 })).received, 3);
});

/** A node on 192.168.99.2/24 behind the core router, which port-forwards to it and masquerades it. */
async function forwarded(net: Internet, name: string, args: string[]): Promise<MeshNode> {
  const i = net.nodes.length + 1;
  const ns = await net.t.addNamespace(`n${i}`);
  await net.t.link(ns, `e${i}`, '192.168.99.2/24', net.core, `g${i}`, '192.168.99.1/24');
  await net.t.exec(ns, 'ip', ['route', 'add', 'default', 'via', '192.168.99.1']);
  // the forwarded public address lives on the core router's loopback
  await net.t.exec(net.core, 'ip', ['addr', 'add', '198.20.99.1/32', 'dev', 'lo']);
  const ipt = (...a: string[]) => net.t.exec(net.core, 'iptables', ['-t', 'nat', ...a]);
  await ipt('-A', 'PREROUTING', '-d', '198.20.99.1', '-p', 'tcp', '--dport', '14001', '-j', 'DNAT', '--to-destination', '192.168.99.2:4001');
  await ipt('-A', 'PREROUTING', '-d', '198.20.99.1', '-p', 'udp', '--dport', '15182', '-j', 'DNAT', '--to-destination', '192.168.99.2:51820');
  await ipt('-A', 'POSTROUTING', '-s', '192.168.99.0/24', '-j', 'SNAT', '--to-source', '198.20.99.1');
  // Only what is forwarded gets in; and the node cannot open UDP flows of its own (a strict
  // firewall), so every WireGuard packet it sends answers one that came through the forward.
  const fw = (...a: string[]) => net.t.exec(net.core, 'iptables', ['-A', 'FORWARD', ...a]);
  await fw('-d', '192.168.99.0/24', '-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED,DNAT', '-j', 'ACCEPT');
  await fw('-d', '192.168.99.0/24', '-j', 'DROP');
  await fw('-s', '192.168.99.0/24', '-p', 'udp', '-m', 'conntrack', '--ctstate', 'NEW', '-j', 'DROP');
  return net.node(name, ns, i, '192.168.99.2', args);
}
test('strangers on the internet sending STUN, forged probes and relay frames to a member: nothing moves, nothing is forwarded, all is counted', { timeout: 120_000 }, async (tc) => {
  const net = new Internet();
  tc.after(() => net.cleanup());
  await net.init();
  const a = await net.addServer('alpha');
  const b = await net.addServer('bravo');
  const c = await net.addServer('charlie');
  await Promise.all(net.nodes.map((n) => net.start(n)));
  await net.cli(a, ['init']);
  for (const n of [b, c]) await net.cli(n, ['join', await net.invite(a)]);
  await net.fullMesh(30_000);
  // Three public servers: every path is direct before the strangers come.
  await waitFor(async () => (await net.status(a)).peers.every((p) => p.path === 'direct'), 30_000, 'direct paths from alpha');
  const before = await wgDump(net.t, a.ns, a.ifname);
  const keys = before.map((p) => p.publicKey);
  // A stranger on its own public subnet, sending from its own address.
  const s = await net.addServer('stranger');
  const script = `
    const dgram = require('node:dgram');
    const sock = dgram.createSocket('udp4');
    const keys = ${JSON.stringify(keys)}.map((k) => Buffer.from(k, 'base64'));
    const out = [];
    for (let i = 0; i < 100; i++) {
      const stun = Buffer.alloc(20); stun.writeUInt16BE(1, 0); stun.writeUInt32BE(0x2112a442, 4); require('node:crypto').randomFillSync(stun, 8, 12);
      const probe = Buffer.alloc(44); probe.writeUInt32BE(0x6d505242, 0); keys[i % keys.length].copy(probe, 4, 0, 8); require('node:crypto').randomFillSync(probe, 12);
      const relay = Buffer.alloc(20 + 148); relay.writeUInt32BE(0x6d524c59, 0); keys[i % keys.length].copy(relay, 4, 0, 8); keys[(i + 1) % keys.length].copy(relay, 12, 0, 8); relay.writeUInt32LE(1, 20);
      out.push(stun, probe, relay);
    }
    let n = 0;
    const next = () => { if (n === out.length) return sock.close(); sock.send(out[n++], 51820, '198.20.1.2', () => setTimeout(next, 1)); };
    next();
  `;
  await net.t.exec(s.ns, process.execPath, ['-e', script], { timeout: 30_000 });
  await new Promise((r) => setTimeout(r, 500));
  const nc = JSON.parse(await net.cli(a, ['netcheck', '--json']));
  assert.ok(nc.counters.stunRequests >= 100, `STUN requests counted: ${nc.counters.stunRequests}`);
  assert.ok(nc.counters.probesRefused >= 100, `forged probes refused: ${nc.counters.probesRefused}`);
  assert.ok(nc.counters.relayRefused >= 100, `relay frames refused: ${nc.counters.relayRefused}`);
  assert.equal(nc.counters.relayForwarded, 0, 'nothing forwarded');
  const after = await wgDump(net.t, a.ns, a.ifname);
  assert.deepEqual(after.map((p) => [p.publicKey, p.endpoint]), before.map((p) => [p.publicKey, p.endpoint]), 'no endpoint moved');
  for (const n of [b, c]) assert.equal((await ping(net.t, a.ns, (await net.status(a)).peers.find((p) => p.name === n.name)!.meshIp, { count: 2, wait: 2 })).received, 2);
});
