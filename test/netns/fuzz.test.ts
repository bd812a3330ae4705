// Random and mutated packets at meshd's UDP port while a legitimate wireguard-go peer keeps
// pinging through the tunnel: the engine must keep running and keep serving the peer.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Topology, genKey, ping, wgSetup, ROOT } from './harness.js';

test('fuzzing the UDP port does not disturb a legitimate peer', { timeout: 90_000 }, async (tc) => {
  const t = new Topology();
  tc.after(() => t.cleanup());
  const a = await t.addNamespace('a');
  const b = await t.addNamespace('b');
  const x = await t.addNamespace('x'); // the attacker
  await t.link(a, 'va', '192.168.241.1/24', b, 'vb', '192.168.241.2/24');
  await t.link(x, 'vx', '192.168.242.1/24', b, 'vy', '192.168.242.2/24');
  const ifA = t.name('wa');
  const ifB = t.name('wb');
  await t.startWireguard(a, ifA, 'wireguard-go');
  const meshd = await t.startWireguard(b, ifB, 'meshd');
  const ka = await genKey();
  const kb = await genKey();
  await wgSetup(t, a, ifA, { priv: ka.priv, port: 51820, address: '10.0.0.1/24', peers: [{ pub: kb.pub, endpoint: '192.168.241.2:51820', allowedIps: '10.0.0.2/32' }] });
  await wgSetup(t, b, ifB, { priv: kb.priv, port: 51820, address: '10.0.0.2/24', peers: [{ pub: ka.pub, endpoint: '192.168.241.1:51820', allowedIps: '10.0.0.1/32' }] });
  assert.equal((await ping(t, a, '10.0.0.2', { count: 1 })).received, 1);

  const fuzzer = t.exec(x, process.execPath, [join(ROOT, 'dist', 'test', 'netns', 'helpers', 'fuzzer.js'), '192.168.242.2', '51820', '6'], { timeout: 30_000 });
  const during = await ping(t, a, '10.0.0.2', { count: 25, interval: 0.2 });
  const sent = Number((await fuzzer).stdout.trim());
  assert.ok(sent > 10_000, `fuzzer sent ${sent} datagrams`);
  assert.ok(meshd.alive(), 'meshd still running');
  assert.ok(during.received >= 24, `legitimate pings during the fuzzing: ${during.received}/25`);
  const after = await ping(t, a, '10.0.0.2', { count: 5, interval: 0.1 });
  assert.equal(after.received, 5, 'tunnel works after');
});
