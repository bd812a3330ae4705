// meshd's engine against wireguard-go (Debian's, written by nobody here), in two network
// namespaces on a veth pair: handshakes both ways, exact counters, bulk TCP, roaming, preshared
// keys, rekeying, removing and re-adding peers, IPv6 inside and outside.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { Topology, genKey, ping, wgDump, wgSetup, waitFor, type Impl, MESHD } from './harness.js';

interface Pair {
  t: Topology;
  a: string;
  b: string;
  ifA: string;
  ifB: string;
  pubA: string;
  pubB: string;
}

async function pair(implA: Impl, implB: Impl, opts: { underlay6?: boolean; env?: NodeJS.ProcessEnv; psk?: [string?, string?] } = {}): Promise<Pair> {
  const t = new Topology();
  const a = await t.addNamespace('a');
  const b = await t.addNamespace('b');
  const [ulA, ulB] = opts.underlay6 ? ['fd01::1/64', 'fd01::2/64'] : ['192.168.241.1/24', '192.168.241.2/24'];
  await t.link(a, 'va', ulA, b, 'vb', ulB);
  const ifA = t.name('wa');
  const ifB = t.name('wb');
  await t.startWireguard(a, ifA, implA, opts.env);
  await t.startWireguard(b, ifB, implB, opts.env);
  const ka = await genKey();
  const kb = await genKey();
  const ep = (ul: string) => (opts.underlay6 ? `[${ul.split('/')[0]}]:51820` : `${ul.split('/')[0]}:51820`);
  await wgSetup(t, a, ifA, { priv: ka.priv, port: 51820, address: '10.0.0.1/24,fd00::1/64', peers: [{ pub: kb.pub, endpoint: ep(ulB), allowedIps: '10.0.0.2/32,fd00::2/128', psk: opts.psk?.[0] }] });
  await wgSetup(t, b, ifB, { priv: kb.priv, port: 51820, address: '10.0.0.2/24,fd00::2/64', peers: [{ pub: ka.pub, endpoint: ep(ulA), allowedIps: '10.0.0.1/32,fd00::1/128', psk: opts.psk?.[1] }] });
  return { t, a, b, ifA, ifB, pubA: ka.pub, pubB: kb.pub };
}

const PAIRS: [Impl, Impl][] = [
  ['wireguard-go', 'wireguard-go'], // the harness checks itself against the ground truth
  ['meshd', 'wireguard-go'],
  ['wireguard-go', 'meshd'],
  ['meshd', 'meshd'],
  ['meshd-reference', 'meshd'],
];

for (const [implA, implB] of PAIRS) {
  test(`${implA} (initiator) <-> ${implB}: handshake, exact counters, IPv6, TCP`, { timeout: 60_000 }, async (tc) => {
    const p = await pair(implA, implB);
    tc.after(() => p.t.cleanup());
    const r = await ping(p.t, p.a, '10.0.0.2', { count: 5, interval: 0.1 });
    assert.equal(r.received, 5, 'all pings answered');
    await new Promise((res) => setTimeout(res, 300));
    const [da] = await wgDump(p.t, p.a, p.ifA);
    const [db] = await wgDump(p.t, p.b, p.ifB);
    // 84-byte ICMP packets pad to 96: 16 + 96 + 16 = 128 bytes each; plus one initiation (148)
    // from a and one response (92) from b.
    assert.equal(da.tx, 148 + 5 * 128, 'initiator tx');
    assert.equal(db.tx, 92 + 5 * 128, 'responder tx');
    assert.equal(db.rx, da.tx, 'responder rx = initiator tx');
    assert.equal(da.rx, db.tx, 'initiator rx = responder tx');
    assert.ok(da.latestHandshake > 0 && db.latestHandshake > 0, 'latest handshake set');
    assert.ok(Math.abs(da.latestHandshake - Date.now() / 1000) < 30, 'handshake time is epoch seconds');

    const r6 = await ping(p.t, p.b, 'fd00::1', { count: 3, interval: 0.1 });
    assert.equal(r6.received, 3, 'IPv6 inside the tunnel');
    const big = await ping(p.t, p.a, '10.0.0.2', { count: 2, interval: 0.1, size: 1392 });
    assert.equal(big.received, 2, 'full-MTU packets');

    const srv = p.t.spawn(p.b, 'iperf3', ['-s', '-1', '-B', '10.0.0.2']);
    await waitFor(async () => (await p.t.exec(p.b, 'ss', ['-ltn'])).stdout.includes('10.0.0.2:5201'), 5000, 'iperf3 server');
    const { stdout } = await p.t.exec(p.a, 'iperf3', ['-c', '10.0.0.2', '-t', '2', '-J'], { timeout: 20_000 });
    const mbps = JSON.parse(stdout).end.sum_received.bits_per_second / 1e6;
    assert.ok(mbps > 10, `TCP throughput ${mbps.toFixed(0)} Mbit/s`);
    await srv.kill();
  });
}

test('preshared key: both sides agree and connect; a mismatch never handshakes', { timeout: 60_000 }, async (tc) => {
  const psk = (await genKey()).priv;
  const ok = await pair('meshd', 'wireguard-go', { psk: [psk, psk] });
  tc.after(() => ok.t.cleanup());
  assert.equal((await ping(ok.t, ok.a, '10.0.0.2', { count: 2 })).received, 2);
  const other = (await genKey()).priv;
  const bad = await pair('wireguard-go', 'meshd', { psk: [psk, other] });
  tc.after(() => bad.t.cleanup());
  assert.equal((await ping(bad.t, bad.a, '10.0.0.2', { count: 2, wait: 1 })).received, 0);
  const [d] = await wgDump(bad.t, bad.b, bad.ifB);
  assert.equal(d.latestHandshake, 0);
});

for (const [mover, follower] of [['wireguard-go', 'meshd'], ['meshd', 'wireguard-go']] as [Impl, Impl][]) {
  test(`roaming: ${follower} follows ${mover} to a new address and port`, { timeout: 60_000 }, async (tc) => {
    const p = await pair(follower, mover);
    tc.after(() => p.t.cleanup());
    assert.equal((await ping(p.t, p.a, '10.0.0.2', { count: 2 })).received, 2);
    const vb = p.t.name('vb');
    await p.t.exec(p.b, 'ip', ['addr', 'del', '192.168.241.2/24', 'dev', vb]);
    await p.t.exec(p.b, 'ip', ['addr', 'add', '192.168.241.3/24', 'dev', vb]);
    await p.t.exec(p.b, 'wg', ['set', p.ifB, 'listen-port', '51999']);
    assert.equal((await ping(p.t, p.b, '10.0.0.1', { count: 3 })).received, 3, 'the mover reaches the follower');
    const [d] = await wgDump(p.t, p.a, p.ifA);
    assert.equal(d.endpoint, '192.168.241.3:51999');
    assert.equal((await ping(p.t, p.a, '10.0.0.2', { count: 2 })).received, 2, 'and back to its new endpoint');
  });
}

test('rekey: meshd with shortened timers renews the session under traffic without loss', { timeout: 60_000 }, async (tc) => {
  const p = await pair('meshd', 'wireguard-go', { env: { MESHD_TEST_TIMERS: '1' } });
  tc.after(() => p.t.cleanup());
  assert.equal((await ping(p.t, p.a, '10.0.0.2', { count: 1 })).received, 1);
  const [before] = await wgDump(p.t, p.a, p.ifA);
  const r = await ping(p.t, p.a, '10.0.0.2', { count: 40, interval: 0.2 });
  const [after] = await wgDump(p.t, p.a, p.ifA);
  assert.ok(after.latestHandshake > before.latestHandshake, `a new handshake happened (${before.latestHandshake} -> ${after.latestHandshake})`);
  assert.ok(r.received >= 39, `received ${r.received}/40 across the rekey`);
});

test('a removed peer gets no traffic; re-added, it works again', { timeout: 60_000 }, async (tc) => {
  const p = await pair('wireguard-go', 'meshd');
  tc.after(() => p.t.cleanup());
  assert.equal((await ping(p.t, p.a, '10.0.0.2', { count: 2 })).received, 2);
  await p.t.exec(p.b, 'wg', ['set', p.ifB, 'peer', p.pubA, 'remove']);
  assert.equal((await wgDump(p.t, p.b, p.ifB)).length, 0);
  assert.equal((await ping(p.t, p.a, '10.0.0.2', { count: 2, wait: 1 })).received, 0);
  await p.t.exec(p.b, 'wg', ['set', p.ifB, 'peer', p.pubA, 'allowed-ips', '10.0.0.1/32', 'endpoint', '192.168.241.1:51820']);
  // wireguard-go keeps its old session for a while; the next handshake it starts must succeed.
  await waitFor(async () => (await ping(p.t, p.a, '10.0.0.2', { count: 1, wait: 1 })).received === 1, 30_000, 'traffic after re-adding');
});

test('IPv6 underlay: meshd and wireguard-go over [fd01::]:51820', { timeout: 60_000 }, async (tc) => {
  const p = await pair('meshd', 'wireguard-go', { underlay6: true });
  tc.after(() => p.t.cleanup());
  assert.equal((await ping(p.t, p.a, '10.0.0.2', { count: 3 })).received, 3);
  const [d] = await wgDump(p.t, p.b, p.ifB);
  assert.equal(d.endpoint, '[fd01::1]:51820');
});

test('engine lifecycle: a busy interface name is a clear error; deleting the socket stops it and removes the interface', { timeout: 30_000 }, async (tc) => {
  const t = new Topology();
  tc.after(() => t.cleanup());
  const ns = await t.addNamespace('a');
  const ifname = t.name('wa');
  const engine = await t.startWireguard(ns, ifname, 'meshd');
  const second = t.spawn(ns, process.execPath, [MESHD, 'engine', ifname]);
  await waitFor(() => !second.alive(), 10_000, 'second engine to exit');
  assert.notEqual(second.child.exitCode, 0);
  assert.match(second.output(), /in use|busy/i);
  assert.equal(second.output().trim().split('\n').length, 1, 'one line');
  const { rmSync } = await import('node:fs');
  rmSync(`/var/run/wireguard/${ifname}.sock`);
  await waitFor(() => !engine.alive(), 5000, 'engine to exit after its socket was deleted');
  assert.equal(engine.child.exitCode, 0);
  const links = (await t.exec(ns, 'ip', ['-o', 'link'])).stdout;
  assert.ok(!links.includes(ifname), 'interface removed');
  assert.ok(!existsSync(`/var/run/wireguard/${ifname}.sock`));
});
