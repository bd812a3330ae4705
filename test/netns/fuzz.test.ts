// Random and mutated datagrams at meshd's UDP port while a legitimate wireguard-go peer keeps
// pinging through the tunnel. The peer's traffic goes through a mutating relay (helpers/fuzzer.ts)
// in the peer's namespace, which also injects the fuzz, so the mutations start from live packets:
//
//   A: wireguard-go --> relay 127.0.0.1:40000 | relay 192.168.241.1:40001 (+ strangers) <veth> B: meshd :51820
//
// meshd must keep running, keep serving the peer (~0 loss), count only authenticated and fresh
// packets, and keep the peer's endpoint (unauthenticated or replayed packets must not roam it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { genKey, ping, twoHosts, wgDump, wgSetup, waitFor, ROOT, type Impl } from './harness.js';

const FUZZER = join(ROOT, 'dist', 'test', 'netns', 'helpers', 'fuzzer.js');
const SECONDS = 6;
const RELAY_OUTER = '192.168.241.1:40001';

// wireguard-go as the target is the self-check: the relay and every assertion hold for it too.
for (const impl of ['wireguard-go', 'meshd', 'meshd-reference'] as Impl[]) {
  test(`fuzzing ${impl}'s UDP port does not disturb a legitimate peer`, { timeout: 60_000 }, async (tc) => {
    const { t, a, b } = await twoHosts(tc);
    const ifA = t.name('wa');
    const ifB = t.name('wb');
    await t.startWireguard(a, ifA, 'wireguard-go');
    const target = await t.startWireguard(b, ifB, impl);
    const ka = await genKey();
    const kb = await genKey();
    await wgSetup(t, a, ifA, { priv: ka.priv, port: 51820, address: '10.0.0.1/24', peers: [{ pub: kb.pub, endpoint: '127.0.0.1:40000', allowedIps: '10.0.0.2/32' }] });
    await wgSetup(t, b, ifB, { priv: kb.priv, port: 51820, address: '10.0.0.2/24', peers: [{ pub: ka.pub, endpoint: RELAY_OUTER, allowedIps: '10.0.0.1/32' }] });

    const relay = t.spawn(a, process.execPath, [FUZZER, JSON.stringify({ inner: '127.0.0.1:40000', outer: RELAY_OUTER, target: '192.168.241.2:51820', targetPub: kb.pub, seconds: SECONDS, rate: 5000 })]);
    await waitFor(() => relay.output().includes('ready') || !relay.alive(), 5000, 'relay');
    assert.ok(relay.alive(), `relay: ${relay.output()}`);
    assert.equal((await ping(t, a, '10.0.0.2', { count: 3, interval: 0.1 })).received, 3, 'tunnel up through the relay');

    relay.child.kill('SIGUSR1'); // start fuzzing
    const during = await ping(t, a, '10.0.0.2', { count: SECONDS * 5, interval: 0.2 });
    await waitFor(() => relay.output().includes('"sent"') || !relay.alive(), 5000, 'fuzzer statistics');
    const stats = JSON.parse(relay.output().split('\n').find((l) => l.includes('"sent"')) ?? '{}') as { sent: number; byKind: Record<string, number>; repliesToStrangers: Record<string, number> };
    tc.diagnostic(`fuzzer sent ${stats.sent} datagrams: ${JSON.stringify(stats.byKind)}; answers by message type: ${JSON.stringify(stats.repliesToStrangers)}`);
    assert.ok(stats.sent > 10_000, `fuzzer sent ${stats.sent} datagrams`);
    assert.ok(Object.values(stats.byKind).every((n) => n > 0), 'every kind of datagram was sent');
    assert.equal(stats.repliesToStrangers[2] ?? 0, 0, 'no handshake response to a replayed or forged initiation');

    assert.ok(target.alive(), `${impl} still running: ${target.output()}`);
    assert.ok(during.received >= during.transmitted - 1, `legitimate pings during the fuzzing: ${during.received}/${during.transmitted}`);
    assert.equal((await ping(t, a, '10.0.0.2', { count: 5, interval: 0.1 })).received, 5, 'the peer reaches meshd after');
    assert.equal((await ping(t, b, '10.0.0.1', { count: 5, interval: 0.1 })).received, 5, 'meshd reaches the peer after');

    const [peerA] = await wgDump(t, a, ifA);
    const [peerB] = await wgDump(t, b, ifB);
    assert.equal(peerB.endpoint, RELAY_OUTER, 'no fuzzed or replayed datagram moved the endpoint');
    // Every legitimate datagram went through the relay exactly once; none of the fuzz may count.
    assert.equal(peerB.rx, peerA.tx, 'meshd rx = what wireguard-go sent');
    assert.equal(peerA.rx, peerB.tx, 'wireguard-go rx = what meshd sent');
    // pino's error and fatal levels, wireguard-go's "ERROR:" lines, Go panics, uncaught JS errors.
    assert.doesNotMatch(target.output(), /"level":(50|60)|ERROR|panic:|Error:/, `${impl} logged no error`);
  });
}
