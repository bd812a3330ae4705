// src/daemon/leaks.ts: which members' mesh addresses route outside the mesh interface, warned once
// per member per change; and how `meshd status` shows it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { LeakWatch, leakOf, type MemberAddress } from '../../src/daemon/leaks.js';
import type { RouteTo } from '../../src/routes/kernel.js';
import { render } from '../../cmd/status.js';
import type { PeerStatus, Status } from '../../src/daemon/daemon.js';

test('leakOf: into the mesh interface is fine, anything else says where it goes', () => {
  assert.equal(leakOf({ dev: 'meshd0', type: 'unicast' }, 'meshd0'), null);
  assert.equal(leakOf(undefined, 'meshd0'), null, 'no route: nothing leaves');
  assert.equal(leakOf({ dev: 'eth0', type: 'unicast' }, 'meshd0'), 'routes via eth0');
  assert.equal(leakOf({ dev: 'lo', type: 'local' }, 'meshd0'), 'routes via lo (an address of this machine)');
  assert.equal(leakOf({ dev: null, type: 'unicast' }, 'meshd0'), 'routes outside meshd0');
});

function logged() {
  const lines: { level: number; msg: string; member?: string; leak?: string }[] = [];
  const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  return { logger, lines, warnings: () => lines.filter((l) => l.level === 40), infos: () => lines.filter((l) => l.level === 30) };
}

const members: MemberAddress[] = [
  { peerId: 'p1', name: 'alpha', meshIp: '10.77.0.1' },
  { peerId: 'p2', name: 'bravo', meshIp: '10.77.0.2' },
];

test('LeakWatch: reports per member, warns once per change, clears, forgets departed members', async () => {
  const table = new Map<string, RouteTo>([['10.77.0.1', { dev: 'meshd0', type: 'unicast' }], ['10.77.0.2', { dev: 'meshd0', type: 'unicast' }]]);
  let present = members;
  const asked: string[][] = [];
  const log = logged();
  const watch = new LeakWatch({
    ifname: 'meshd0',
    members: () => present,
    lookup: async (ips) => {
      asked.push([...ips]);
      return new Map(table);
    },
    logger: log.logger,
  });

  await watch.check();
  assert.deepEqual(asked, [['10.77.0.1', '10.77.0.2']], 'one lookup for every member');
  assert.equal(watch.leak('p1'), null);
  assert.equal(log.lines.length, 0, 'nothing to say while all is well');

  table.set('10.77.0.2', { dev: 'eth0', type: 'unicast' });
  for (let i = 0; i < 3; i++) await watch.check();
  assert.equal(watch.leak('p2'), 'routes via eth0');
  assert.equal(watch.leak('p1'), null);
  assert.equal(log.warnings().length, 1, 'one warning however many checks see it');
  assert.equal(log.warnings()[0].member, 'bravo');
  assert.match(log.warnings()[0].msg, /bravo \(10\.77\.0\.2\) routes via eth0, not through meshd0: it is not encrypted/);

  table.set('10.77.0.2', { dev: 'eth1', type: 'unicast' });
  await watch.check();
  assert.equal(watch.leak('p2'), 'routes via eth1');
  assert.equal(log.warnings().length, 2, 'a different leak is a change');

  table.set('10.77.0.2', { dev: 'meshd0', type: 'unicast' });
  await watch.check();
  await watch.check();
  assert.equal(watch.leak('p2'), null);
  assert.equal(log.infos().length, 1, 'told once that it is fixed');
  assert.match(log.infos()[0].msg, /goes through meshd0 again/);

  table.set('10.77.0.1', { dev: 'eth0', type: 'unicast' });
  await watch.check();
  assert.equal(watch.leak('p1'), 'routes via eth0');
  present = [members[1]];
  await watch.check();
  assert.equal(watch.leak('p1'), null, 'a member that left is forgotten');
});

test('LeakWatch: a check under way is not doubled, and one that ends after stop() changes nothing', async () => {
  let release: (m: Map<string, RouteTo>) => void = () => {};
  let lookups = 0;
  const log = logged();
  const watch = new LeakWatch({
    ifname: 'meshd0',
    members: () => members,
    lookup: () => {
      lookups++;
      return new Promise((resolve) => (release = resolve));
    },
    logger: log.logger,
  });
  const first = watch.check();
  await watch.check(); // returns at once: the first is still waiting for the kernel
  assert.equal(lookups, 1);
  watch.stop();
  release(new Map([['10.77.0.1', { dev: 'eth0', type: 'unicast' }]]));
  await first;
  assert.equal(watch.leak('p1'), null);
  assert.equal(log.lines.length, 0);
  await watch.check();
  assert.equal(lookups, 1, 'no checks after stop');
});

test('status prints a leaking member loudly, in its row and in a warning line', () => {
  const peer = (name: string, meshIp: string, leak: string | null): PeerStatus => ({
    name, meshIp, publicKey: 'k', peerId: name, endpoint: '10.0.0.2:51820', path: 'direct', relay: null, lastHandshake: Date.now(),
    rxBytes: 1000, txBytes: 1000, latencyMs: 1, online: true, admin: false, leak,
  });
  const s: Status = {
    self: { name: 'alpha', meshIp: '10.77.0.1', publicKey: 'k', peerId: 'a', network: { id: 'n', name: 'mesh', cidr: '10.77.0.0/24' }, admin: true, interface: 'meshd0', listenPort: 51820, reflexive: [], exitNode: null },
    peers: [peer('bravo', '10.77.0.2', 'routes via eth0'), peer('charlie', '10.77.0.3', null)],
  };
  const text = render(s);
  assert.match(text, /^bravo .* online, NOT ENCRYPTED$/m);
  assert.match(text, /^charlie .* online$/m);
  assert.match(text, /^WARNING: mesh traffic to bravo \(10\.77\.0\.2\) routes via eth0, not through meshd0: it is not encrypted\. Remove the route or address that captures it \(ip route get 10\.77\.0\.2\)\.$/m);
  assert.doesNotMatch(text, /charlie \(10\.77\.0\.3\)/);
  assert.doesNotMatch(render({ ...s, peers: [peer('charlie', '10.77.0.3', null)] }), /WARNING/);
});
