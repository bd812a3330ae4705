// The daemon's decisions, without root (components.ts): two real Daemons in one process, each with
// its own state directory, an in-memory TUN (helpers/memory-tun.ts), a recording fake kernel
// (helpers/fake-kernel.ts), a UAPI directory of its own, no ICMP prober, and a libp2p node on
// 127.0.0.1 without mDNS. Real ledgers, real libp2p, real WireGuard over loopback UDP: A founds a
// network and invites, B joins; B's kernel is asked for its mesh address and a link up, each
// engine gets the other as a peer, a packet written into A's TUN comes out of B's, and status
// reports the peer; A kicks B, and B forgets the network and flushes its address.
import '../../src/util/polyfill.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Daemon } from '../../src/daemon/daemon.js';
import { createMeshNode } from '../../src/discovery/p2p.js';
import { createLogger, noopLogger, type Logger } from '../../src/util/log.js';
import type { DaemonComponents } from '../../src/daemon/components.js';
import { formatPrefix } from '../../src/wg/prefix.js';
import { FakeKernel } from './helpers/fake-kernel.js';
import { MemoryTuns } from './helpers/memory-tun.js';
import { ipv4 } from './wire.js';
import { PATIENT_MONITOR } from './helpers/mesh-fixture.js';

/** LOG=1 prints what the daemons log (debug and up). */
const log: Logger = process.env.LOG ? createLogger('daemon-test', 'debug') : noopLogger;

async function waitFor<T>(what: string, get: () => T | null | undefined | false, ms: number): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = get();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const ipOf = (b: Buffer, at: number) => [...b.subarray(at, at + 4)].join('.');

interface Node {
  daemon: Daemon;
  kernel: FakeKernel;
  tuns: MemoryTuns;
  ifname: string;
  dir: string;
}

async function startNode(name: string, ifname: string): Promise<Node> {
  const dir = await mkdtemp(join(tmpdir(), `meshd-daemon-${name}-`));
  const kernel = new FakeKernel();
  const tuns = new MemoryTuns();
  const components: Partial<DaemonComponents> = {
    kernel,
    openTun: tuns.open,
    uapiDir: join(dir, 'uapi'),
    prober: () => null,
    // Loopback only: no wildcard listener, no mDNS on the host's networks.
    libp2p: (o) => createMeshNode({ ...o, listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false, connectionMonitor: PATIENT_MONITOR }),
  };
  const daemon = await Daemon.start({
    stateDir: join(dir, 'state'), ifname, listenPort: 0, p2pPort: 0, name, datapath: 'native', settleMs: 100,
    // Where the other daemon reaches this one: the engine's UDP port and the libp2p port on loopback.
    announce: { hosts: ['127.0.0.1'], udp: [], tcp: [] },
    logger: log.child({ node: name }),
  }, components);
  return { daemon, kernel, tuns, ifname, dir };
}

test('daemon: init, invite, join over loopback; addresses, peers, a packet through the tunnel, status; kick', { timeout: 180_000 }, async (t) => {
  const a = await startNode('a', 'mtA');
  t.after(async () => {
    await a.daemon.stop().catch(() => {});
    await rm(a.dir, { recursive: true, force: true });
  });
  const b = await startNode('b', 'mtB');
  t.after(async () => {
    await b.daemon.stop().catch(() => {});
    await rm(b.dir, { recursive: true, force: true });
  });

  // A founds the network: its kernel is asked for the first address of the range, and a link up.
  const founded = await a.daemon.init({ network: 'home', cidr: '10.0.0.0/24' });
  assert.equal(founded.meshIp, '10.0.0.1');
  assert.deepEqual(a.kernel.addresses('mtA'), ['10.0.0.1/24']);
  assert.ok(a.kernel.isUp('mtA'));
  assert.deepEqual(a.kernel.callsOf('localNetworks'), [['mtA']], 'the overlap check asked the (fake) kernel');

  // B joins with A's invite.
  const { token } = await a.daemon.invite({});
  const joined = await b.daemon.join({ token });
  assert.equal(joined.network, 'home');
  assert.equal(joined.meshIp, '10.0.0.2');
  assert.deepEqual(b.kernel.callsOf('addAddress'), [['mtB', '10.0.0.2', 24]]);
  assert.deepEqual(b.kernel.addresses('mtB'), ['10.0.0.2/24']);
  assert.ok(b.kernel.isUp('mtB'));
  const ops = b.kernel.calls.map((c) => c.op);
  assert.ok(ops.indexOf('addAddress') < ops.lastIndexOf('setLinkUp'), 'the link comes up after the address is added');

  // Each engine has the other as a peer, with its mesh address as allowed IP.
  const keyA = a.daemon.status().self.publicKey;
  const keyB = b.daemon.status().self.publicKey;
  const peerIn = (d: Daemon, key: string) => d.engine.snapshot().peers.find((p) => p.publicKey.toString('base64') === key);
  const bInA = await waitFor('B as a peer of A', () => peerIn(a.daemon, keyB), 30_000);
  const aInB = await waitFor('A as a peer of B', () => peerIn(b.daemon, keyA), 30_000);
  assert.deepEqual(bInA.allowedIps.map(formatPrefix), ['10.0.0.2/32']);
  assert.deepEqual(aInB.allowedIps.map(formatPrefix), ['10.0.0.1/32']);

  // A packet into A's TUN for B's mesh address comes out of B's TUN: real WireGuard over loopback UDP.
  const marker = Buffer.from(`hello from a ${Date.now()}`);
  const arrived = b.tuns.get('mtB').next((p) => p.length >= 28 && ipOf(p, 16) === '10.0.0.2' && p.subarray(28).equals(marker), 30_000);
  const sender = setInterval(() => a.tuns.get('mtA').inject(ipv4('10.0.0.1', '10.0.0.2', marker)), 1_000);
  a.tuns.get('mtA').inject(ipv4('10.0.0.1', '10.0.0.2', marker));
  try {
    const packet = await arrived;
    assert.equal(ipOf(packet, 12), '10.0.0.1');
  } finally {
    clearInterval(sender);
  }

  // status reports the peer, with the handshake and the bytes.
  const status = await waitFor('a direct path in A\'s status', () => {
    const s = a.daemon.status();
    return s.peers[0]?.path === 'direct' ? s : null;
  }, 30_000);
  assert.equal(status.self.network?.name, 'home');
  assert.equal(status.self.meshIp, '10.0.0.1');
  assert.equal(status.peers.length, 1);
  const peer = status.peers[0];
  assert.equal(peer.name, 'b');
  assert.equal(peer.meshIp, '10.0.0.2');
  assert.equal(peer.publicKey, keyB);
  assert.equal(peer.peerId, b.daemon.peerId);
  assert.ok(peer.lastHandshake !== null && peer.txBytes > 0, JSON.stringify(peer));
  assert.match(peer.endpoint ?? '', /^127\.0\.0\.1:\d+$/);
  assert.equal(peer.online, true);

  // A kicks B: B learns it, forgets the network (new keys) and flushes its address; A drops B's peer.
  const peerIdB = b.daemon.peerId;
  const kicked = await a.daemon.kick({ target: 'b' });
  assert.deepEqual(kicked, { kicked: 'b', meshIp: '10.0.0.2' });
  // Forgetting ends with new node keys (the network is gone from status a moment before).
  await waitFor('B to forget the network and take new keys', () => b.daemon.status().self.network === null && b.daemon.peerId !== peerIdB, 60_000);
  assert.deepEqual(b.kernel.addresses('mtB'), []);
  assert.ok(ops.length < b.kernel.calls.length && b.kernel.calls.slice(ops.length).some((c) => c.op === 'flushAddresses' && c.args[0] === 'mtB'), 'the address was flushed after the kick');
  assert.notEqual(b.daemon.status().self.publicKey, keyB, 'a new WireGuard key too');
  assert.equal(b.daemon.engine.snapshot().peers.length, 0);
  await waitFor('A to drop B\'s peer after the grace', () => !peerIn(a.daemon, keyB), 30_000);
  assert.equal(a.daemon.status().peers.length, 0);
  assert.deepEqual(a.kernel.addresses('mtA'), ['10.0.0.1/24'], 'the kicker keeps its address');
});
