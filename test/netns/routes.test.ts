// Subnet routes with real daemons: a LAN ("site", 192.168.50.0/24) behind one or two members, with
// a host on it (192.168.50.10) that has no route back to the mesh, only its own subnet. What a user
// checks: pings from other members to that host, `meshd routes`, and what happens on withdraw and
// when a router goes away.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Lan, type MeshNode } from './mesh.js';
import { ping, waitFor } from './harness.js';

const run = promisify(execFile);
const HOST = '192.168.50.10';
const SITE = '192.168.50.0/24';

interface RouteRow { member: string; prefix: string; approved: boolean; inUse: boolean }

/** A bridge namespace for the site LAN, the host on it, and the given members plugged in as .1, .2... */
async function site(lan: Lan, routers: MeshNode[]): Promise<string> {
  const sw = await lan.t.addNamespace('sw');
  await lan.t.exec(sw, 'ip', ['link', 'add', 'br1', 'type', 'bridge']);
  await lan.t.exec(sw, 'ip', ['link', 'set', 'br1', 'up']);
  const plug = async (ns: string, k: string, addr: string) => {
    const inside = lan.t.name(`s${k}`);
    const port = lan.t.name(`q${k}`);
    await run('ip', ['link', 'add', inside, 'netns', ns, 'type', 'veth', 'peer', 'name', port, 'netns', sw]);
    await lan.t.exec(sw, 'ip', ['link', 'set', port, 'master', 'br1', 'up']);
    await lan.t.exec(ns, 'ip', ['addr', 'add', addr, 'dev', inside]);
    await lan.t.exec(ns, 'ip', ['link', 'set', inside, 'up']);
  };
  const host = await lan.t.addNamespace('h');
  await plug(host, 'h', `${HOST}/24`);
  for (const [i, r] of routers.entries()) await plug(r.ns, String(i + 1), `192.168.50.${i + 1}/24`);
  return host;
}

const reaches = async (lan: Lan, from: MeshNode) => (await ping(lan.t, from.ns, HOST, { count: 1, wait: 1 })).received === 1;
const rows = async (lan: Lan, n: MeshNode) => (JSON.parse(await lan.cli(n, ['routes', '--json'])) as { routes: RouteRow[] }).routes;

test('a LAN behind a member: unreachable until an administrator approves it, then every member reaches it within 10 s; withdrawn, it is gone', { timeout: 180_000 }, async (tc) => {
  const lan = new Lan();
  tc.after(() => lan.cleanup());
  await lan.init();
  const [a, b, c] = await lan.lanMesh(['alpha', 'bravo', 'charlie']);
  await site(lan, [b]);

  // bravo offers its LAN: nothing changes until an administrator says so.
  assert.match(await lan.cli(b, ['routes', 'advertise', SITE]), /waiting for an administrator: meshd routes approve/);
  await assert.rejects(lan.cli(b, ['routes', 'approve', 'bravo', SITE]), /only an administrator can approve routes/);
  await assert.rejects(lan.cli(b, ['routes', 'advertise', '192.168.50.1/24']), /host bits set: did you mean 192\.168\.50\.0\/24/);
  await assert.rejects(lan.cli(b, ['routes', 'advertise', '10.0.0.0/16']), /overlaps the mesh range 10\.0\.0\.0\/24/);
  await waitFor(async () => (await rows(lan, a)).some((r) => r.prefix === SITE && r.member === 'bravo' && !r.approved), 10_000, 'alpha to see the offer');
  await new Promise((r) => setTimeout(r, 2000));
  for (const n of [a, c]) assert.equal(await reaches(lan, n), false, `${n.name} must not reach an unapproved LAN`);

  // Approved: every member reaches the host, which has no route back (bravo masquerades).
  const t0 = Date.now();
  assert.match(await lan.cli(a, ['routes', 'approve', 'bravo', SITE]), /approved for bravo/);
  await waitFor(async () => (await reaches(lan, a)) && (await reaches(lan, c)), 10_000, 'alpha and charlie to reach the LAN behind bravo');
  tc.diagnostic(`approved -> reachable from every member in ${Date.now() - t0} ms`);
  assert.deepEqual((await rows(lan, c)).map((r) => [r.prefix, r.member, r.approved, r.inUse]), [[SITE, 'bravo', true, true]]);
  const table = await lan.cli(c, ['routes']);
  assert.match(table, /^PREFIX\s+MEMBER\s+MESH IP\s+APPROVED\s+IN USE/);
  assert.match(table, /192\.168\.50\.0\/24\s+bravo\s+10\.0\.0\.2\s+yes\s+yes/);

  // Withdrawn: gone everywhere; the approval stays for a later advertise.
  await lan.cli(b, ['routes', 'withdraw', SITE]);
  await waitFor(async () => !(await reaches(lan, a)) && !(await reaches(lan, c)), 10_000, 'the LAN to be gone after the withdraw');
  assert.deepEqual(await rows(lan, a), []);
  // Unapproved while advertised: gone too.
  await lan.cli(b, ['routes', 'advertise', SITE]);
  await waitFor(async () => reaches(lan, c), 10_000, 'back after advertising again (still approved)');
  await lan.cli(a, ['routes', 'unapprove', 'bravo', SITE]);
  await waitFor(async () => !(await reaches(lan, c)), 10_000, 'gone once unapproved');
});

test('two members route one LAN: one is used, the other takes over within 10 s when it goes offline', { timeout: 180_000 }, async (tc) => {
  const lan = new Lan();
  tc.after(() => lan.cleanup());
  await lan.init();
  const [a, b, c] = await lan.lanMesh(['alpha', 'bravo', 'charlie']);
  await site(lan, [b, c]);
  for (const n of [b, c]) {
    await lan.cli(n, ['routes', 'advertise', SITE]);
    await lan.cli(a, ['routes', 'approve', n.name, SITE]);
  }
  await waitFor(async () => reaches(lan, a), 15_000, 'alpha to reach the LAN');
  const holder = (await rows(lan, a)).find((r) => r.inUse)!.member;
  const [gone, other] = holder === 'bravo' ? [b, c] : [c, b];
  tc.diagnostic(`alpha routes ${SITE} through ${holder}`);
  assert.equal((await rows(lan, a)).filter((r) => r.inUse).length, 1, 'one member holds the prefix');

  await gone.proc!.kill('SIGKILL');
  const t0 = Date.now();
  await waitFor(async () => reaches(lan, a), 20_000, `alpha to reach the LAN through ${other.name}`);
  const took = Date.now() - t0;
  tc.diagnostic(`${holder} killed -> the LAN reachable through ${other.name} in ${took} ms`);
  assert.ok(took < 10_000, `failover took ${took} ms`);
  assert.equal((await rows(lan, a)).find((r) => r.inUse)?.member, other.name);
});

test('--no-snat keeps mesh source addresses: the LAN host sees the member itself, given a route back', { timeout: 180_000 }, async (tc) => {
  const lan = new Lan();
  tc.after(() => lan.cleanup());
  await lan.init();
  const [a, b] = await lan.lanMesh(['alpha', 'bravo']);
  const host = await site(lan, [b]);
  // A TCP server on the LAN host that answers with the address each connection came from.
  const server = lan.t.spawn(host, process.execPath, ['-e', `require('net').createServer((s) => s.end(s.remoteAddress + '\\n')).listen(8080, '${HOST}', () => console.log('ready'))`]);
  await waitFor(() => server.output().includes('ready'), 10_000, 'the LAN server');
  const seenFrom = async () => (await lan.t.exec(a.ns, process.execPath, ['-e',
    `const s = require('net').connect(8080, '${HOST}'); let d = ''; s.on('data', (c) => (d += c)); s.on('end', () => console.log(d.trim())); s.on('error', (e) => console.log('error ' + e.code)); s.setTimeout(3000, () => { console.log('timeout'); s.destroy(); });`])).stdout.trim();

  // Masqueraded (the default): the host sees bravo's LAN address.
  await lan.cli(b, ['routes', 'advertise', SITE]);
  await lan.cli(a, ['routes', 'approve', 'bravo', SITE]);
  await waitFor(async () => reaches(lan, a), 10_000, 'alpha to reach the LAN');
  assert.match(await seenFrom(), /^(::ffff:)?192\.168\.50\.1$/);
  // --no-snat: without a route back the host cannot answer; with one, it sees alpha's mesh address.
  await lan.cli(b, ['routes', 'advertise', '--no-snat', SITE]);
  await waitFor(async () => !(await reaches(lan, a)), 10_000, 'no answer without a route back');
  await lan.t.exec(host, 'ip', ['route', 'add', '10.0.0.0/24', 'via', '192.168.50.1']);
  await waitFor(async () => reaches(lan, a), 10_000, 'answers with a route back');
  assert.match(await seenFrom(), /^(::ffff:)?10\.0\.0\.1$/, 'the source is alpha\'s mesh address');
});
