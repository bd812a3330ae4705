// What a member advertises: announced first, public before private, never loopback, link-local or
// the mesh's own range; announce flags parsed with clear errors; DNS names resolved for UDP.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  AddressError, advertisedEndpoints, advertisedMultiaddrs, hostPortOf, isPublicIp, parseAnnounce, parseHostPort, resolveAnnounce,
  type AdvertiseInput,
} from '../../src/discovery/addresses.js';
import type { LocalAddress } from '../../src/routes/kernel.js';

const PEER = '12D3KooWGRUVh2rydZvGvwsnj1WXkqbJcQ5aXuzQaTzC2VTPYAbM';
const addr = (ifname: string, address: string, prefixlen: number): LocalAddress =>
  ({ ifname, address, family: address.includes(':') ? 'IPv6' : 'IPv4', prefixlen });

const LOCAL: LocalAddress[] = [
  addr('docker0', '172.17.0.1', 16),
  addr('eth0', '192.168.1.20', 24),
  addr('eth0', 'fe80::1', 64),
  addr('eth1', '198.20.1.2', 24),
  addr('eth1', '2a0f:5e00:1::2', 64),
  addr('lo', '127.0.0.1', 8),
  addr('lo', '::1', 128),
  addr('wg9', '10.0.0.3', 24), // an address inside the mesh range on some other interface
  addr('eth2', 'fd00::5', 64),
];

function input(over: Partial<AdvertiseInput> = {}): AdvertiseInput {
  return {
    local: LOCAL, meshCidr: '10.0.0.0/24', udpPort: 51820, tcpPort: 4001, peerId: PEER,
    announce: { udpHosts: [], udp: [], hosts: [], tcp: [] }, ...over,
  };
}

test('interface addresses: public first, then private; never loopback, link-local or the mesh range', () => {
  assert.deepEqual(advertisedEndpoints(input()), [
    '198.20.1.2:51820', '[2a0f:5e00:1::2]:51820', '172.17.0.1:51820', '192.168.1.20:51820', '[fd00::5]:51820',
  ]);
  assert.deepEqual(advertisedMultiaddrs(input()), [
    `/ip4/198.20.1.2/tcp/4001/p2p/${PEER}`, `/ip6/2a0f:5e00:1::2/tcp/4001/p2p/${PEER}`,
    `/ip4/172.17.0.1/tcp/4001/p2p/${PEER}`, `/ip4/192.168.1.20/tcp/4001/p2p/${PEER}`, `/ip6/fd00::5/tcp/4001/p2p/${PEER}`,
  ]);
  // Before joining there is no mesh range to leave out.
  assert.ok(advertisedEndpoints(input({ meshCidr: null })).includes('10.0.0.3:51820'));
});

test('announced addresses go first, then reflexive ones; duplicates are dropped', () => {
  const announce = { udpHosts: ['203.0.113.9'], udp: [{ host: '198.20.9.9', port: 40000 }], hosts: ['vpn.example.net', '203.0.113.9'], tcp: [{ host: '198.20.9.9', port: 14001 }] };
  const e = advertisedEndpoints(input({ announce, reflexive: ['198.20.7.7:6000', '198.20.1.2:51820'] }));
  assert.deepEqual(e.slice(0, 4), ['198.20.9.9:40000', '203.0.113.9:51820', '198.20.7.7:6000', '198.20.1.2:51820']);
  assert.equal(e.filter((x) => x === '198.20.1.2:51820').length, 1);
  const m = advertisedMultiaddrs(input({ announce }));
  assert.deepEqual(m.slice(0, 3), [
    `/ip4/198.20.9.9/tcp/14001/p2p/${PEER}`, `/dns/vpn.example.net/tcp/4001/p2p/${PEER}`, `/ip4/203.0.113.9/tcp/4001/p2p/${PEER}`,
  ]);
  assert.equal(advertisedEndpoints(input(), 2).length, 2, 'capped');
});

test('announce flags: parsed and canonical, with one clear line for a bad one', () => {
  assert.deepEqual(parseAnnounce({ hosts: ['198.51.100.7', 'Vpn.Example.NET.', '2001:DB8::1'], udp: ['[2001:db8::1]:51820'], tcp: ['h.example:14001'] }), {
    hosts: ['198.51.100.7', 'vpn.example.net', '2001:db8::1'],
    udp: [{ host: '2001:db8::1', port: 51820 }],
    tcp: [{ host: 'h.example', port: 14001 }],
  });
  assert.throws(() => parseAnnounce({ hosts: ['not a host!'] }), (e: unknown) => e instanceof AddressError && /--announce: "not a host!" is neither/.test(e.message));
  assert.throws(() => parseHostPort('198.51.100.7', '--announce-udp'), /is not HOST:PORT/);
  assert.throws(() => parseHostPort('2001:db8::1:51820', '--announce-udp'), /in brackets/);
  assert.throws(() => parseHostPort('198.51.100.7:70000', '--announce-tcp'), /port 70000 is not 1-65535/);
  assert.throws(() => parseHostPort('[198.51.100.7]:1'), /not an IPv6 address/);
});

test('announced DNS names are resolved for UDP endpoints; one that does not resolve is reported and left out', async () => {
  const lookup = async (host: string) => {
    if (host === 'vpn.example.net') return ['198.20.3.3', '2a0f::3'];
    throw Object.assign(new Error('not found'), { code: 'ENOTFOUND' });
  };
  const r = await resolveAnnounce(parseAnnounce({ hosts: ['vpn.example.net', 'gone.example.net', '198.20.4.4'], udp: ['vpn.example.net:9999'] }), lookup);
  assert.deepEqual(r.udpHosts, ['198.20.3.3', '2a0f::3', '198.20.4.4']);
  assert.deepEqual(r.udp, [{ host: '198.20.3.3', port: 9999 }, { host: '2a0f::3', port: 9999 }]);
  assert.deepEqual(r.unresolved, ['gone.example.net']);
  assert.deepEqual(r.hosts, ['vpn.example.net', 'gone.example.net', '198.20.4.4'], 'names stay names for libp2p');
});

test('what counts as public', () => {
  for (const ip of ['198.20.1.2', '8.8.8.8', '2a0f:5e00::1', '::ffff:198.20.1.2']) assert.ok(isPublicIp(ip), ip);
  for (const ip of ['10.1.1.1', '172.31.0.1', '192.168.0.1', '100.64.0.1', '127.0.0.1', '169.254.1.1', '198.18.0.1', '198.51.100.1', '203.0.113.5', '192.0.2.1', '224.0.0.251', 'fd00::1', 'fe80::1', '::1', '2001:db8::1', '::ffff:10.0.0.1', 'nonsense']) {
    assert.ok(!isPublicIp(ip), ip);
  }
});

test('multiaddrs as people write addresses', () => {
  assert.equal(hostPortOf(`/ip4/198.20.1.2/tcp/4001/p2p/${PEER}`), '198.20.1.2:4001');
  assert.equal(hostPortOf('/ip6/2a0f::1/tcp/4001'), '[2a0f::1]:4001');
  assert.equal(hostPortOf('/dns/vpn.example.net/tcp/4001'), 'vpn.example.net:4001');
  assert.equal(hostPortOf('garbage'), 'garbage');
});
