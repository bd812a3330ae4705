import { test } from 'node:test';
import assert from 'node:assert/strict';
import { reconcile, type DesiredPeer } from '../../src/daemon/reconcile.js';
import { generatePrivateKey, staticKey, toBase64 } from '../../src/wg/crypto.js';
import { parseEndpoint } from '../../src/wg/endpoint.js';
import { parsePrefix } from '../../src/wg/prefix.js';
import { endpointRank } from '../../src/routes/endpoints.js';
import type { DeviceSnapshot } from '../../src/wg/config.js';

const key = () => staticKey(generatePrivateKey()).publicKey;

function applyTo(snapshot: DeviceSnapshot, set: ReturnType<typeof reconcile>): DeviceSnapshot {
  let peers = [...snapshot.peers];
  for (const ps of set.peers) {
    const i = peers.findIndex((p) => p.publicKey.equals(ps.publicKey));
    if (ps.remove) { peers = peers.filter((_, j) => j !== i); continue; }
    const p = i >= 0 ? { ...peers[i] } : { publicKey: ps.publicKey, presharedKey: null, endpoint: null, lastHandshakeMs: 0, rxBytes: 0, txBytes: 0, persistentKeepalive: 0, allowedIps: [] };
    if (ps.endpoint) p.endpoint = ps.endpoint;
    if (ps.persistentKeepalive !== undefined) p.persistentKeepalive = ps.persistentKeepalive;
    if (ps.replaceAllowedIps) p.allowedIps = ps.allowedIps.map((a) => a.prefix);
    if (i >= 0) peers[i] = p; else peers.push(p);
  }
  return { ...snapshot, peers };
}

test('adds members, then is a no-op, then removes a member that left', () => {
  const a = key(), b = key();
  const desired: DesiredPeer[] = [
    { wgPublicKey: toBase64(a), meshIp: '10.0.0.2', endpoints: ['192.168.1.2:51820'] },
    { wgPublicKey: toBase64(b), meshIp: '10.0.0.3', endpoints: ['192.168.1.3:51820'] },
  ];
  let snap: DeviceSnapshot = { privateKey: null, listenPort: 51820, fwmark: 0, peers: [] };
  const first = reconcile(desired, snap, { persistentKeepalive: 25 });
  assert.equal(first.peers.length, 2);
  snap = applyTo(snap, first);
  assert.deepEqual(snap.peers[0].allowedIps, [parsePrefix('10.0.0.2/32')]);
  assert.equal(reconcile(desired, snap, { persistentKeepalive: 25 }).peers.length, 0, 'idempotent');
  const after = reconcile(desired.slice(1), snap, { persistentKeepalive: 25 });
  assert.deepEqual(after.peers.map((p) => [p.publicKey.equals(a), p.remove]), [[true, true]]);
});

test('a working endpoint stays; a silent one gives way to a better candidate the member advertises later', () => {
  const a = key();
  const rank = (e: { addr: Buffer }) => (e.addr[12] === 192 ? 2 : 1); // 198.20.x public, 192.168.x private
  const desired = (endpoints: string[], working = false): DesiredPeer[] => [{ wgPublicKey: toBase64(a), meshIp: '10.0.0.2', endpoints, working }];
  const empty: DeviceSnapshot = { privateKey: null, listenPort: 1, fwmark: 0, peers: [] };
  // joined behind a NAT: only its private address is known
  const snap = applyTo(empty, reconcile(desired(['192.168.2.2:51820']), empty, { persistentKeepalive: 0, rank }));
  assert.deepEqual(snap.peers[0].endpoint, parseEndpoint('192.168.2.2:51820'));
  assert.equal(reconcile(desired(['192.168.2.2:51820']), snap, { persistentKeepalive: 0, rank }).peers.length, 0, 'idempotent');
  // then it advertises its reflexive endpoint: the silent private one is replaced
  const later = desired(['198.20.2.2:51820', '192.168.2.2:51820']);
  assert.deepEqual(reconcile(later, snap, { persistentKeepalive: 0, rank }).peers[0].endpoint, parseEndpoint('198.20.2.2:51820'));
  // but not while handshakes flow over the current one
  assert.equal(reconcile(desired(later[0].endpoints, true), snap, { persistentKeepalive: 0, rank }).peers.length, 0);
  // among equally ranked candidates the current one stays (no churn)
  snap.peers[0].endpoint = parseEndpoint('198.20.9.9:1');
  assert.equal(reconcile(desired(['198.20.2.2:51820', '198.20.9.9:1']), snap, { persistentKeepalive: 0, rank }).peers.length, 0);
});

test('a record with a malformed key or endpoint is skipped, not fatal', () => {
  const set = reconcile([
    { wgPublicKey: 'not-a-key', meshIp: '10.0.0.2', endpoints: [] },
    { wgPublicKey: toBase64(key()), meshIp: '10.0.0.3', endpoints: ['nonsense', '10.1.1.1:5'] },
  ], { privateKey: null, listenPort: 1, fwmark: 0, peers: [] }, { persistentKeepalive: 0 });
  assert.equal(set.peers.length, 1);
  assert.deepEqual(set.peers[0].endpoint, parseEndpoint('10.1.1.1:5'));
});

test('a working endpoint the member does not advertise (roamed through a NAT) is kept; a silent one is replaced', () => {
  const a = key();
  const desired = (working: boolean): DesiredPeer[] => [{ wgPublicKey: toBase64(a), meshIp: '10.0.0.2', endpoints: ['192.168.1.2:51820'], working }];
  const snap = applyTo({ privateKey: null, listenPort: 1, fwmark: 0, peers: [] }, reconcile(desired(false), { privateKey: null, listenPort: 1, fwmark: 0, peers: [] }, { persistentKeepalive: 0 }));
  snap.peers[0].endpoint = parseEndpoint('198.51.100.7:40000'); // where its packets came from
  assert.equal(reconcile(desired(true), snap, { persistentKeepalive: 0 }).peers.length, 0, 'kept while handshakes flow');
  assert.deepEqual(reconcile(desired(false), snap, { persistentKeepalive: 0 }).peers[0].endpoint, parseEndpoint('192.168.1.2:51820'));
});

test('endpoint rank: a shared subnet first, then public, then private, then a family we lack', () => {
  const rank = endpointRank([
    { ifname: 'eth0', address: '192.168.77.5', family: 'IPv4', prefixlen: 24 },
    { ifname: 'eth0', address: 'fe80::1', family: 'IPv6', prefixlen: 64 }, // link-local: no IPv6 reach
  ]);
  const r = (e: string) => rank(parseEndpoint(e));
  assert.equal(r('192.168.77.9:51820'), 0);
  assert.equal(r('203.0.113.5:51820'), 1);
  for (const e of ['10.1.2.3:1', '172.17.0.1:1', '192.168.1.2:1', '100.64.0.1:1', '169.254.1.1:1']) assert.equal(r(e), 2, e);
  assert.equal(r('[2001:db8::1]:51820'), 3, 'no IPv6 address of our own but link-local');
  const v6 = endpointRank([{ ifname: 'eth0', address: '2001:db8:1::5', family: 'IPv6', prefixlen: 64 }]);
  assert.equal(v6(parseEndpoint('[2001:db8:1::9]:1')), 0);
  assert.equal(v6(parseEndpoint('[2001:db8:2::9]:1')), 1);
  assert.equal(v6(parseEndpoint('[fd00::9]:1')), 2);
  assert.equal(v6(parseEndpoint('10.0.0.1:1')), 3);
  // in the daemon: a multi-homed member's unreachable first address loses to the shared LAN
  const set = reconcile([{ wgPublicKey: toBase64(key()), meshIp: '10.0.0.2', endpoints: ['172.18.0.1:51820', '192.168.77.6:51820'] }],
    { privateKey: null, listenPort: 1, fwmark: 0, peers: [] }, { persistentKeepalive: 0, rank });
  assert.deepEqual(set.peers[0].endpoint, parseEndpoint('192.168.77.6:51820'));
});
