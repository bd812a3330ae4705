// Members behind NAT routers (shared/testbed/nat.sh's, in namespaces): they learn their mapping
// from a member on a public address by STUN on the WireGuard socket, advertise it, and reach each
// other directly through both NATs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Internet, publicV4 } from './mesh.js';
import { ping, wgDump } from './harness.js';

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
  process.stdout.write(`# NAT (preserve, firewall): join -> first ping ${firstPingMs} ms; both online -> direct ${directMs} ms\n`);
});
