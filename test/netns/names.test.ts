// Names with real daemons: every member answers DNS on its mesh address for
// `<member>.<network>.internal` (or the domain chosen at init), NXDOMAIN for unknown names under the
// domain, and forwards everything else to its own resolv.conf upstream: here a tiny DNS server in a
// namespace on the LAN (helpers/upstream-dns.ts), given to the members through
// /etc/netns/<ns>/resolv.conf, which `ip netns exec` bind-mounts over /etc/resolv.conf. The host's
// own resolver configuration is never touched.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Lan, type MeshNode } from './mesh.js';
import { ROOT, waitFor } from './harness.js';

const UPSTREAM = '192.168.77.250';
const UPSTREAM_JS = join(ROOT, 'dist', 'test', 'netns', 'helpers', 'upstream-dns.js');

/** An upstream DNS server on the LAN, and resolv.conf files pointing every node of `lan` at it. */
async function upstream(lan: Lan, tc: { after(fn: () => unknown): void }): Promise<string> {
  const ns = await lan.addHost('up', 250);
  const proc = lan.t.spawn(ns, process.execPath, [UPSTREAM_JS, UPSTREAM]);
  await waitFor(() => proc.output().includes('ready') || !proc.alive(), 10_000, 'the upstream DNS server');
  if (!proc.alive()) throw new Error(`upstream DNS server exited: ${proc.output()}`);
  const made = !existsSync('/etc/netns');
  const dirs = lan.nodes.map((n) => join('/etc/netns', n.ns));
  tc.after(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
    if (made && existsSync('/etc/netns') && readdirSync('/etc/netns').length === 0) rmdirSync('/etc/netns');
  });
  for (const dir of dirs) {
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'resolv.conf'), `nameserver ${UPSTREAM}\n`);
  }
  return ns;
}

async function dig(lan: Lan, from: MeshNode, server: string, args: string[]): Promise<string> {
  const { stdout } = await lan.t.exec(from.ns, 'dig', [`@${server}`, ...args, '+time=2', '+tries=1'], { timeout: 10_000 });
  return stdout.trim();
}

async function threeMembers(lan: Lan, tc: { after(fn: () => unknown): void }, initArgs: string[] = []): Promise<{ nodes: MeshNode[]; outsider: string }> {
  await lan.init();
  const nodes = [await lan.addNode('alpha'), await lan.addNode('bravo'), await lan.addNode('charlie')];
  const outsider = await upstream(lan, tc); // before the daemons start: ip netns exec mounts resolv.conf at exec
  await Promise.all(lan.nodes.map((n) => lan.start(n)));
  await lan.cli(nodes[0]!, ['init', ...initArgs]);
  for (const n of nodes.slice(1)) await lan.cli(n, ['join', await lan.invite(nodes[0]!)]);
  await lan.fullMesh(30_000);
  return { nodes, outsider };
}

test('every member answers <member>.<network>.internal for every member; NXDOMAIN for unknown names; the rest forwarded upstream', { timeout: 180_000 }, async (tc) => {
  const lan = new Lan();
  tc.after(() => lan.cleanup());
  const { nodes, outsider } = await threeMembers(lan, tc, ['--network', 'office']);
  const ips = new Map<string, string>();
  for (const n of nodes) {
    const s = await lan.status(n);
    ips.set(n.name, s.self.meshIp!);
    assert.equal(s.self.domain, 'office.internal');
  }

  // From every member's namespace, ask every member (itself too) for every member's name.
  for (const from of nodes) {
    for (const server of nodes) {
      for (const target of nodes) {
        const want = ips.get(target.name)!;
        await waitFor(async () => (await dig(lan, from, ips.get(server.name)!, [`${target.name}.office.internal`, '+short']).catch(() => '')) === want,
          10_000, `${from.name} asking ${server.name} for ${target.name}`);
      }
    }
  }
  // Case does not matter; A only (AAAA: no data).
  assert.equal(await dig(lan, nodes[2]!, ips.get('alpha')!, ['BRAVO.Office.Internal', '+short']), ips.get('bravo'));
  assert.equal(await dig(lan, nodes[2]!, ips.get('alpha')!, ['bravo.office.internal', 'AAAA', '+short']), '');

  // Unknown under the domain: NXDOMAIN, answered by the member (the upstream never sees it).
  const nx = await dig(lan, nodes[1]!, ips.get('charlie')!, ['nobody.office.internal', '+noall', '+comments']);
  assert.match(nx, /status: NXDOMAIN/);
  assert.match(nx, /flags: qr aa/);

  // Anything else goes to the member's own resolver: the upstream in its resolv.conf.
  for (const server of nodes) {
    assert.equal(await dig(lan, nodes[0]!, ips.get(server.name)!, ['example.test', '+short']), '192.0.2.53', `forwarded by ${server.name}`);
  }
  assert.match(await dig(lan, nodes[0]!, ips.get('bravo')!, ['missing.test', '+noall', '+comments']), /status: NXDOMAIN/);
  // Over TCP too.
  assert.equal(await dig(lan, nodes[1]!, ips.get('alpha')!, ['charlie.office.internal', '+short', '+tcp']), ips.get('charlie'));

  // Garbage at port 53 does not stop it.
  await lan.t.exec(nodes[0]!.ns, process.execPath, ['-e', `const s=require('dgram').createSocket('udp4');let n=0;const go=()=>{if(n++>=200)return s.close();s.send(require('crypto').randomBytes(1+n%80),53,'${ips.get('bravo')}',go)};go()`]);
  assert.equal(await dig(lan, nodes[0]!, ips.get('bravo')!, ['alpha.office.internal', '+short']), ips.get('alpha'));
  assert.ok(nodes.every((n) => n.proc!.alive()), 'every daemon still runs');

  // A host on the LAN that routes the mesh range to alpha is no member: no open resolver for it.
  await lan.t.exec(outsider, 'ip', ['route', 'add', '10.0.0.0/24', 'via', nodes[0]!.lanIp]);
  const outside = await lan.t.exec(outsider, 'dig', [`@${ips.get('alpha')}`, 'example.test', '+time=1', '+tries=1'], { timeout: 10_000 }).then((r) => r.stdout, (e: { stdout?: string }) => e.stdout ?? '');
  assert.match(outside, /no servers could be reached|timed out/, 'unanswered from outside the mesh');
  assert.doesNotMatch(outside, /192\.0\.2\.53/);
});

test('meshd init --domain: the domain travels with the network; a joiner answers under it', { timeout: 180_000 }, async (tc) => {
  const lan = new Lan();
  tc.after(() => lan.cleanup());
  await lan.init();
  const [a, b] = [await lan.addNode('alpha'), await lan.addNode('bravo')];
  await upstream(lan, tc);
  await Promise.all(lan.nodes.map((n) => lan.start(n)));
  await assert.rejects(lan.cli(a, ['init', '--domain', 'bad..domain']), /invalid domain bad\.\.domain: must be dot-separated/);
  await lan.cli(a, ['init', '--domain', 'Corp.Internal.']);
  await lan.cli(b, ['join', await lan.invite(a)]);
  await lan.fullMesh(30_000);
  const [sa, sb] = [await lan.status(a), await lan.status(b)];
  assert.equal(sa.self.domain, 'corp.internal');
  assert.equal(sb.self.domain, 'corp.internal', 'the joiner has it from the genesis');
  await waitFor(async () => (await dig(lan, a, sb.self.meshIp!, ['alpha.corp.internal', '+short']).catch(() => '')) === sa.self.meshIp, 10_000, 'bravo to answer alpha.corp.internal');
  // <network>.internal is not ours then: forwarded, and the upstream knows nothing of it.
  assert.match(await dig(lan, a, sb.self.meshIp!, ['alpha.mesh.internal', '+noall', '+comments']), /status: NXDOMAIN(?![\s\S]*flags: qr aa)/);

  // Both restarted: still members of the network with its domain (the store keeps the field the
  // genesis pins), and bravo answers again once its address is back (the port is bound after it).
  for (const n of [a, b]) await n.proc!.kill('SIGTERM');
  await Promise.all([lan.start(a), lan.start(b)]);
  assert.equal((await lan.status(b)).self.network?.id, sb.self.network?.id, 'still a member after a restart (the stored network keeps its domain)');
  await lan.fullMesh(30_000); // the tunnel again: bravo's new sessions
  await waitFor(async () => (await dig(lan, a, sb.self.meshIp!, ['alpha.corp.internal', '+short']).catch(() => '')) === sa.self.meshIp, 15_000, 'bravo to answer after a restart');
  assert.equal((await lan.status(b)).self.domain, 'corp.internal');
});
