// src/routes/overlap.ts: which local network a mesh range collides with, a free range to offer,
// the refusals' wording; kernel.ts networksFromIp on real `ip -j` output; and localNetworks and
// routesTo against the kernel, in a namespace made for the test.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import {
  OverlapError, candidateRanges, checkOverlap, findOverlap, freeRange, initRefusal, joinRefusal, networkOf, overlaps, type LocalNetwork,
} from '../../src/routes/overlap.js';
import { networksFromIp } from '../../src/routes/kernel.js';
import { cannotRunInNamespace, runInNamespace } from './helpers/netns-child.js';

const CHILD = fileURLToPath(new URL('./helpers/networks-child.js', import.meta.url));

const lan = (prefix: string, ifname = 'eth0'): LocalNetwork => ({ ifname, prefix, kind: 'address' });
const route = (prefix: string, ifname = 'eth0'): LocalNetwork => ({ ifname, prefix, kind: 'route' });

test('overlaps: one prefix contains the other, whichever is wider', () => {
  assert.equal(overlaps('10.0.0.0/24', '10.0.0.0/24'), true);
  assert.equal(overlaps('10.0.0.0/24', '10.0.0.128/25'), true);
  assert.equal(overlaps('10.0.0.128/25', '10.0.0.0/24'), true);
  assert.equal(overlaps('10.0.0.0/8', '10.200.3.0/24'), true);
  assert.equal(overlaps('10.0.0.0/24', '10.0.1.0/24'), false);
  assert.equal(overlaps('10.0.0.0/25', '10.0.0.128/25'), false);
  assert.equal(overlaps('192.168.0.0/16', '10.0.0.0/8'), false);
  assert.equal(overlaps('10.0.0.7/32', '10.0.0.0/24'), true);
  assert.equal(overlaps('255.255.255.0/24', '255.255.255.255/32'), true); // unsigned arithmetic at the top
  assert.equal(overlaps('128.0.0.0/1', '10.0.0.0/24'), false);
});

test('findOverlap: a network as specific as the range or more leaks; a wider one hides; leaks are reported first', () => {
  assert.equal(findOverlap('10.77.0.0/24', [lan('10.0.0.0/24'), route('192.168.1.0/24')]), null);
  assert.deepEqual(findOverlap('10.0.0.0/24', [lan('10.0.0.0/24')]), { cidr: '10.0.0.0/24', network: lan('10.0.0.0/24'), leaks: true });
  assert.deepEqual(findOverlap('10.0.0.0/16', [route('10.0.5.7/32', 'tun0')]), { cidr: '10.0.0.0/16', network: route('10.0.5.7/32', 'tun0'), leaks: true });
  assert.deepEqual(findOverlap('10.0.0.0/24', [lan('10.0.0.0/16')]), { cidr: '10.0.0.0/24', network: lan('10.0.0.0/16'), leaks: false });
  // the wider one comes first in the list, the leaking one is still the one named
  assert.equal(findOverlap('10.0.0.0/24', [route('10.0.0.0/8', 'vpn0'), lan('10.0.0.0/24', 'eth1')])?.network.ifname, 'eth1');
});

test('findOverlap: routes shorter than /8 split the default route and are not networks; addresses always count', () => {
  const def1 = [route('0.0.0.0/1', 'tun0'), route('128.0.0.0/1', 'tun0')];
  assert.equal(findOverlap('10.0.0.0/24', def1), null);
  assert.equal(findOverlap('10.0.0.0/24', [route('8.0.0.0/7')]), null);
  assert.equal(findOverlap('10.0.0.0/24', [route('10.0.0.0/8')])?.network.prefix, '10.0.0.0/8');
  assert.equal(findOverlap('10.0.0.0/24', [lan('0.0.0.0/4')])?.network.prefix, '0.0.0.0/4');
});

test('freeRange: the size asked for, 10.77.0.0 first, skipping every overlap, then other pools', () => {
  assert.equal(freeRange([]), '10.77.0.0/24');
  assert.equal(freeRange([lan('10.0.0.0/24')]), '10.77.0.0/24');
  assert.equal(freeRange([lan('10.77.0.0/24'), route('10.78.0.0/16')]), '10.79.0.0/24');
  assert.equal(freeRange([], 16), '10.77.0.0/16');
  assert.equal(freeRange([], 12), '10.64.0.0/12');
  assert.equal(freeRange([], 30), '10.77.0.0/30');
  // all of 10/8 taken: the shared address space next, then 172.16/12
  assert.equal(freeRange([route('10.0.0.0/8', 'vpn0')]), '100.64.0.0/24');
  assert.equal(freeRange([route('10.0.0.0/8'), route('100.64.0.0/10')]), '172.16.0.0/24');
  assert.equal(freeRange([route('10.0.0.0/8'), route('100.64.0.0/10'), route('172.16.0.0/12')]), null);
  // /8: only 10.0.0.0/8 fits the pools
  assert.equal(freeRange([], 8), '10.0.0.0/8');
  assert.equal(freeRange([lan('10.1.2.0/24')], 8), null);
  // whatever it offers overlaps nothing, and is a real range of that size
  const busy = [lan('10.77.0.0/24'), lan('10.79.1.0/24'), route('10.80.0.0/13')];
  const got = freeRange(busy, 20)!;
  assert.match(got, /\/20$/);
  assert.equal(findOverlap(got, busy), null);
});

test('candidateRanges: aligned, distinct, inside the pools', () => {
  const all = [...candidateRanges(24)];
  assert.equal(all.length, 256 + 64 + 16);
  assert.equal(new Set(all).size, all.length);
  assert.equal(all[0], '10.77.0.0/24');
  assert.equal(all[255], '10.76.0.0/24'); // wrapped around 10/8
  assert.ok(all.every((c) => ['10.0.0.0/8', '100.64.0.0/10', '172.16.0.0/12'].some((p) => overlaps(p, c))));
  assert.deepEqual([...candidateRanges(10)], ['10.64.0.0/10', '10.128.0.0/10', '10.192.0.0/10', '10.0.0.0/10', '100.64.0.0/10']);
});

test('the refusals name the range, the interface and its prefix, what would happen, and what to type', () => {
  const leak = findOverlap('10.0.0.0/24', [lan('10.0.0.0/24')])!;
  assert.equal(initRefusal(leak, '10.77.0.0/24'),
    "10.0.0.0/24 overlaps eth0's network 10.0.0.0/24: mesh traffic would leave in clear on eth0. Pick another range, e.g. meshd init --cidr 10.77.0.0/24 (or --allow-overlap if you know why)");
  assert.match(initRefusal(leak, null), /Pick another range with --cidr \(or --allow-overlap/);
  const viaRoute = findOverlap('10.0.0.0/24', [route('10.0.0.0/8', 'vpn0')])!;
  assert.match(initRefusal(viaRoute, '10.77.0.0/24'), /^10\.0\.0\.0\/24 overlaps the route to 10\.0\.0\.0\/8 via vpn0: the mesh would hide the part of 10\.0\.0\.0\/8 it covers/);
  const j = joinRefusal(leak, '10.77.0.0/24');
  assert.match(j, /^the network's range 10\.0\.0\.0\/24 overlaps eth0's network 10\.0\.0\.0\/24: mesh traffic would leave in clear on eth0\. This node did not join\./);
  assert.match(j, /10\.77\.0\.0\/24 is free here/);
  assert.match(j, /meshd join --allow-overlap <invite>/);
});

test('checkOverlap throws an OverlapError (code EOVERLAP) with the refusal for the command, and passes a free range', () => {
  const nets = [lan('10.0.0.0/24', 'wlan0')];
  assert.doesNotThrow(() => checkOverlap('10.77.0.0/24', nets, 'init'));
  assert.doesNotThrow(() => checkOverlap('10.0.0.0/24', [], 'join'));
  assert.throws(() => checkOverlap('10.0.0.0/24', nets, 'init'), (e: unknown) =>
    e instanceof OverlapError && e.code === 'EOVERLAP' && e.overlap.network.ifname === 'wlan0' && /meshd init --cidr 10\.77\.0\.0\/24/.test(e.message));
  assert.throws(() => checkOverlap('10.0.0.0/16', nets, 'join'), (e: unknown) =>
    e instanceof OverlapError && /^the network's range 10\.0\.0\.0\/16 overlaps wlan0's network/.test(e.message) && /10\.77\.0\.0\/16 is free here/.test(e.message));
});

test('networkOf: an address and its prefix length give its network', () => {
  assert.equal(networkOf('10.0.0.5', 24), '10.0.0.0/24');
  assert.equal(networkOf('172.20.19.254', 12), '172.16.0.0/12');
  assert.equal(networkOf('192.0.2.9', 32), '192.0.2.9/32');
  assert.throws(() => networkOf('fe80::1', 64));
});

test('networksFromIp: addresses and unicast routes of every table; not the default, local, broadcast, blackhole, or the mesh interface', () => {
  // Captured from iproute2 6.1 (`ip -j -4 addr show`, `ip -j -4 route show table all`), trimmed.
  const addrs = [
    { ifname: 'lo', addr_info: [{ family: 'inet', local: '127.0.0.1', prefixlen: 8 }] },
    { ifname: 'eth0', addr_info: [{ family: 'inet', local: '10.0.0.5', prefixlen: 24 }, { family: 'inet6', local: 'fe80::1', prefixlen: 64 }] },
    { ifname: 'meshd0', addr_info: [{ family: 'inet', local: '10.77.0.1', prefixlen: 24 }] },
  ];
  const routes = [
    { dst: 'default', gateway: '10.0.0.1', dev: 'eth0' },
    { dst: '10.0.0.0/24', dev: 'eth0', protocol: 'kernel', scope: 'link', prefsrc: '10.0.0.5' },
    { dst: '10.3.0.0/16', gateway: '10.0.0.1', dev: 'eth0' },
    { type: 'blackhole', dst: '10.4.0.0/24' },
    { dst: '10.5.0.7', dev: 'eth1', scope: 'link' },
    { type: 'unreachable', dst: '10.9.0.0/24' },
    { dst: '100.64.0.7', dev: 'tailscale0', table: '52' },
    { dst: '10.77.0.0/24', dev: 'meshd0', protocol: 'kernel' },
    { type: 'local', dst: '10.0.0.5', dev: 'eth0', table: 'local' },
    { type: 'broadcast', dst: '10.0.0.255', dev: 'eth0', table: 'local' },
    { type: 'multicast', dst: '224.0.0.0/4', dev: 'eth0' },
  ];
  assert.deepEqual(networksFromIp(addrs, routes, 'meshd0'), [
    lan('127.0.0.0/8', 'lo'),
    lan('10.0.0.0/24'),
    route('10.3.0.0/16'),
    route('10.5.0.7/32', 'eth1'),
    route('100.64.0.7/32', 'tailscale0'),
  ]);
  assert.ok(networksFromIp(addrs, routes).some((n) => n.ifname === 'meshd0'), 'without a mesh interface to skip, its networks count');
  assert.deepEqual(networksFromIp(null, 'garbage'), []);
});

test('localNetworks and routesTo against the kernel, in a private namespace', { skip: cannotRunInNamespace() }, async (t) => {
  const { report: r, code } = await runInNamespace(t, 'mdov', CHILD, { timeoutMs: 30_000 });
  assert.equal(code, 0);
  const has = (list: LocalNetwork[], n: LocalNetwork) => list.some((x) => x.ifname === n.ifname && x.prefix === n.prefix && x.kind === n.kind);
  const nets = r.networks as LocalNetwork[];
  assert.ok(has(nets, lan('10.0.0.0/24', 'v0')), JSON.stringify(nets));
  assert.ok(has(nets, route('10.3.0.0/16', 'v0')));
  assert.ok(has(nets, route('10.5.0.7/32', 'v1')));
  assert.ok(!nets.some((n) => n.ifname === 'm0'), 'the skipped (mesh) interface is left out');
  assert.ok(!nets.some((n) => n.prefix === '10.4.0.0/24'), 'a blackhole route has no interface');
  // the kernel's answers, one ip process for all of them
  assert.deepEqual(r.routes['10.0.0.7'], { dev: 'v0', type: 'unicast' });
  assert.deepEqual(r.routes['10.5.0.7'], { dev: 'v1', type: 'unicast' });
  assert.deepEqual(r.routes['10.66.0.9'], { dev: 'm0', type: 'unicast' });
  assert.deepEqual(r.routes['10.0.0.5'], { dev: 'lo', type: 'local' });
  assert.equal(r.routes['10.9.0.1'], undefined, 'unreachable: no answer');
  assert.equal(r.routes['10.4.0.1'], undefined, 'blackhole: no answer');
  assert.deepEqual(r.empty, {});
});
