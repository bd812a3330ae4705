// An exit node with real daemons: alpha stands in front of an "internet" namespace (198.51.100.0/24,
// a documentation range: it exists only here) that only alpha can reach. bravo sends all its
// traffic through alpha: it reaches the internet host, seen there as alpha's address; its mesh
// peers, its own LAN and meshd's own libp2p connections keep working; IPv6 to the internet is
// blocked meanwhile; `off` puts every rule and route back as it was.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Lan, type MeshNode } from './mesh.js';
import { ping, waitFor } from './harness.js';

const NET_HOST = '198.51.100.10';

/** The policy rules and every routing table, IPv4 and IPv6: what `off` must give back. */
async function routing(lan: Lan, n: MeshNode): Promise<string> {
  const out: string[] = [];
  for (const args of [['-4', 'rule'], ['-6', 'rule'], ['-4', 'route', 'show', 'table', 'all'], ['-6', 'route', 'show', 'table', 'all']]) {
    out.push((await lan.t.exec(n.ns, 'ip', args)).stdout.split('\n').filter((l) => !/ proto kernel .*(fe80|ff00)|^local |^multicast |^broadcast /.test(l)).join('\n'));
  }
  return out.join('\n--\n');
}

async function routeGet(lan: Lan, n: MeshNode, ip: string): Promise<string> {
  return lan.t.exec(n.ns, 'ip', ['route', 'get', ip]).then((r) => r.stdout.trim(), (e: { stderr?: string }) => (e.stderr ?? '').trim());
}

/** A TCP server in the internet namespace that answers each connection with the address it came from. */
const SERVER = `require('net').createServer((s) => s.end(s.remoteAddress + '\\n')).listen(8080, '${NET_HOST}', () => console.log('ready'))`;
const CLIENT = `const s = require('net').connect(8080, '${NET_HOST}'); let d = ''; s.on('data', (c) => (d += c)); s.on('end', () => console.log(d.trim())); s.on('error', (e) => { console.log('error ' + e.code); }); s.setTimeout(3000, () => { console.log('timeout'); s.destroy(); });`;

test('an exit node: all of a member\'s traffic leaves through it, the mesh, the LAN and libp2p stay direct, IPv6 is blocked, off restores every route', { timeout: 180_000 }, async (tc) => {
  const lan = new Lan();
  tc.after(() => lan.cleanup());
  await lan.init();
  const [a, b, c] = await lan.lanMesh(['alpha', 'bravo', 'charlie']);
  // The internet, behind alpha only.
  const inet = await lan.t.addNamespace('inet');
  await lan.t.link(a.ns, 'xa', '198.51.100.1/24', inet, 'xi', `${NET_HOST}/24`);
  const server = lan.t.spawn(inet, process.execPath, ['-e', SERVER]);
  await waitFor(() => server.output().includes('ready'), 10_000, 'the internet server');
  // A LAN host that is not a member, and IPv6 on bravo's LAN with a default route.
  await lan.addHost('o', 100);
  const lanIf = (await lan.t.exec(b.ns, 'ip', ['-o', '-4', 'addr', 'show'])).stdout.split('\n').find((l) => l.includes(b.lanIp))!.split(/\s+/)[1];
  await lan.t.exec(b.ns, 'ip', ['-6', 'addr', 'add', '2001:db8:77::2/64', 'dev', lanIf, 'nodad']);
  await lan.t.exec(b.ns, 'ip', ['-6', 'route', 'add', 'default', 'via', '2001:db8:77::1', 'dev', lanIf]);
  const before = await routing(lan, b);
  assert.equal((await ping(lan.t, b.ns, NET_HOST, { count: 1, wait: 1 })).received, 0, 'bravo cannot reach the internet by itself');

  // Not an exit node yet: refused, nothing changes.
  await assert.rejects(lan.cli(b, ['exit-node', 'use', 'alpha']), /alpha is not an exit node: it must advertise 0\.0\.0\.0\/0/);
  assert.equal(await routing(lan, b), before);
  await lan.cli(a, ['routes', 'advertise', '0.0.0.0/0']);
  await lan.cli(a, ['routes', 'approve', 'alpha', '0.0.0.0/0']);
  await waitFor(async () => (await lan.cli(b, ['exit-node', 'use', 'alpha']).then(() => true, () => false)), 10_000, 'bravo to learn that alpha is an exit node');
  assert.equal((JSON.parse(await lan.cli(b, ['status', '--json'])) as { self: { exitNode: string } }).self.exitNode, 'alpha');

  // The internet through alpha, seen there as alpha.
  await waitFor(async () => (await ping(lan.t, b.ns, NET_HOST, { count: 1, wait: 1 })).received === 1, 10_000, 'bravo to reach the internet through alpha');
  const seen = (await lan.t.exec(b.ns, process.execPath, ['-e', CLIENT])).stdout.trim();
  assert.match(seen, /^(::ffff:)?198\.51\.100\.1$/, `the internet host sees alpha's address, not bravo's: ${seen}`);
  // The mesh and the LAN stay direct; IPv6 to the internet is blocked.
  assert.equal((await ping(lan.t, b.ns, '10.0.0.3', { count: 2, wait: 2 })).received, 2, 'bravo still reaches charlie over the mesh');
  assert.match(await routeGet(lan, b, '10.0.0.3'), new RegExp(`dev ${b.ifname}`));
  assert.match(await routeGet(lan, b, '192.168.77.100'), new RegExp(`dev ${lanIf}`), 'the LAN stays direct');
  assert.equal((await ping(lan.t, b.ns, '192.168.77.100', { count: 1, wait: 2 })).received, 1);
  assert.match(await routeGet(lan, b, '2001:db8:99::1'), /unreachable|Network is unreachable|No route to host/, 'IPv6 to the internet is blocked');
  assert.match(await routeGet(lan, b, '2001:db8:77::5'), new RegExp(`dev ${lanIf}`), 'the LAN\'s own IPv6 stays');
  // meshd's own connections keep working: a new member's admission reaches bravo.
  const d = await lan.addNode('delta');
  await lan.start(d);
  await lan.cli(d, ['join', await lan.invite(a)]);
  await waitFor(async () => (await lan.status(b)).peers.some((p) => p.name === 'delta'), 10_000, 'bravo to learn of delta');

  // Without the LAN exception, the LAN goes through the exit node too (members stay direct).
  await lan.cli(b, ['exit-node', 'use', 'alpha', '--no-allow-lan']);
  assert.match(await routeGet(lan, b, '192.168.77.100'), new RegExp(`dev ${b.ifname}`), 'the LAN through the exit node');
  assert.match(await routeGet(lan, b, c.lanIp), new RegExp(`dev ${lanIf}`), 'a member stays direct');
  await waitFor(async () => (await ping(lan.t, b.ns, NET_HOST, { count: 1, wait: 1 })).received === 1, 10_000, 'the internet still through alpha');

  // Off: every rule and route as it was.
  assert.match(await lan.cli(b, ['exit-node', 'off']), /no longer using alpha as exit node/);
  assert.equal(await routing(lan, b), before, 'the routes as they were');
  assert.equal((await ping(lan.t, b.ns, NET_HOST, { count: 1, wait: 1 })).received, 0, 'no internet without the exit node');
  assert.equal((JSON.parse(await lan.cli(b, ['status', '--json'])) as { self: { exitNode: string | null } }).self.exitNode, null);
  assert.equal((await lan.t.exec(b.ns, 'wg', ['show', b.ifname, 'fwmark'])).stdout.trim(), 'off');
});
