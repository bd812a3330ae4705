// A member under abuse from its own LAN and its own machine (issue 9): a stranger throws 100,000
// random and mutated datagrams at bravo's WireGuard port while, on bravo's machine, ten thousand
// malformed requests and 2,000 idle connections hit its control socket. Meanwhile alpha pings
// bravo through the tunnel. Bravo must keep serving its peer and its users, and its memory must
// stay bounded.
//
//   stranger 192.168.77.200 --(datagrams)--> bravo 192.168.77.2:<port> <--(tunnel)-- alpha .1
//   alpha's datagrams to bravo are copied to the stranger (iptables TEE), to be mutated and replayed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Lan } from './mesh.js';
import { ping, waitFor } from './harness.js';

const DATAGRAMS = fileURLToPath(new URL('./helpers/datagrams.js', import.meta.url));
const SUBNET = '192.168.77';
const STRANGER_IP = `${SUBNET}.200`;
const CAPTURE_PORT = 40000;
const run = promisify(execFile);

const rssKiB = (pid: number) => Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);

/** A namespace on the LAN's bridge that runs no daemon, at `ip`. */
async function stranger(lan: Lan, ip: string): Promise<string> {
  const ns = await lan.t.addNamespace('x');
  const [host, port] = [lan.t.name('xe'), lan.t.name('xp')];
  await run('ip', ['link', 'add', host, 'netns', ns, 'type', 'veth', 'peer', 'name', port, 'netns', lan.t.name('hub')]);
  await lan.t.exec(lan.t.name('hub'), 'ip', ['link', 'set', port, 'master', 'br0', 'up']);
  await lan.t.exec(ns, 'ip', ['addr', 'add', `${ip}/24`, 'dev', host]);
  await lan.t.exec(ns, 'ip', ['link', 'set', host, 'up']);
  return ns;
}

/** Connects to a UNIX socket; the listen backlog may be full for a moment (EAGAIN). */
async function connect(path: string): Promise<Socket> {
  for (let attempt = 0; ; attempt++) {
    const sock = createConnection(path);
    sock.on('error', () => {}); // the daemon may close it, and should
    sock.resume(); // read, so that its hang-up is seen
    try {
      await new Promise<void>((resolve, reject) => {
        sock.once('connect', resolve);
        sock.once('error', reject);
      });
      return sock;
    } catch (err) {
      sock.destroy();
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN' || attempt >= 50) throw err;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

/** The i-th malformed request line, of many kinds (control-abuse.test.ts has them all). */
function malformed(i: number): Buffer {
  const lines = [
    `not json ${i}`,
    `{"id":${i},"method":"status"`,
    `[${i}]`,
    'null',
    `{"method":"status"}`,
    `{"id":"${i}","method":"status"}`,
    `{"id":${i},"method":5}`,
    `{"id":${i}}`,
    `{"id":${i},"method":"join","params":"x"}`,
    `{"id":${i},"method":"kick","params":[1]}`,
    `{"id":${i},"method":"nope"}`,
    `{"id":${i},"method":"status","extra":true}`,
    `{"id":${i},"method":${'['.repeat(5000)}${']'.repeat(5000)}}`,
    i % 1000 === 0 ? `{"id":${i},"method":"${'x'.repeat(900_000)}"}` : `{"id":${i},"method":"x"}`,
  ];
  const line = i % (lines.length + 1) === lines.length ? Buffer.from([0xff, 0xfe, ...Array.from({ length: 64 }, (_, k) => (i * 31 + k * 7) % 256).filter((b) => b !== 0x0a)]) : Buffer.from(lines[i % (lines.length + 1)]);
  return Buffer.concat([line, Buffer.from('\n')]);
}

/** Malformed requests pipelined over a few connections; resolves with the replies they got. */
async function malformedFlood(path: string, n = 10_000, conns = 4): Promise<{ answered: number; errors: number }> {
  const replies = await Promise.all(Array.from({ length: conns }, async (_, k) => {
    const sock = await connect(path);
    const mine = Array.from({ length: n / conns }, (_, j) => malformed(j * conns + k));
    const got: { ok: boolean }[] = [];
    let buf = '';
    const done = new Promise<void>((resolve) => {
      sock.on('data', (d: Buffer) => {
        buf += d.toString('utf8');
        for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
          got.push(JSON.parse(buf.slice(0, nl)) as { ok: boolean });
          buf = buf.slice(nl + 1);
        }
        if (got.length >= mine.length) resolve();
      });
      sock.on('close', () => resolve());
    });
    sock.write(Buffer.concat(mine));
    await done;
    sock.destroy();
    return got;
  }));
  return { answered: replies.flat().length, errors: replies.flat().filter((r) => !r.ok).length };
}

test('100,000 datagrams at a member\'s WireGuard port and a flood of bad control requests: it keeps serving its peer and its users, memory bounded', { timeout: 240_000 }, async (tc) => {
  const lan = new Lan(SUBNET);
  tc.after(() => lan.cleanup());
  await lan.init();
  const a = await lan.addNode('alpha');
  const b = await lan.addNode('bravo');
  const x = await stranger(lan, STRANGER_IP);
  await Promise.all([lan.start(a), lan.start(b)]);
  await lan.cli(a, ['init']);
  await lan.cli(b, ['join', await lan.invite(a)]);
  await lan.fullMesh();
  const bravo = await lan.status(b);
  const port = bravo.self.listenPort;
  assert.equal((await lan.t.exec(b.ns, 'wg', ['show', b.ifname, 'listen-port'])).stdout.trim(), String(port));
  const bravoIp = bravo.self.meshIp!;
  const alpha = await lan.status(a);
  const endpointBefore = bravo.peers.find((p) => p.name === 'alpha')?.endpoint;
  assert.equal(endpointBefore, `${a.lanIp}:${alpha.self.listenPort}`);

  // alpha's datagrams to bravo are copied to the stranger, which receives them on CAPTURE_PORT
  await lan.t.exec(a.ns, 'iptables', ['-t', 'mangle', '-A', 'POSTROUTING', '-p', 'udp', '-d', b.lanIp, '--dport', String(port), '-j', 'TEE', '--gateway', STRANGER_IP]);
  await lan.t.exec(x, 'iptables', ['-t', 'nat', '-A', 'PREROUTING', '-p', 'udp', '-d', b.lanIp, '--dport', String(port), '-j', 'DNAT', '--to-destination', `${STRANGER_IP}:${CAPTURE_PORT}`]);

  assert.equal((await ping(lan.t, a.ns, bravoIp, { count: 5, interval: 0.2 })).received, 5, 'tunnel up before');
  const pid = b.proc!.pid;
  const rssBefore = rssKiB(pid);

  // the abuse, all at once, while alpha pings bravo through the tunnel
  const pings = ping(lan.t, a.ns, bravoIp, { count: 150, interval: 0.2, wait: 2 });
  const flood = lan.t.spawn(x, process.execPath, [DATAGRAMS, JSON.stringify({ target: `${b.lanIp}:${port}`, targetPub: bravo.self.publicKey, capture: `${STRANGER_IP}:${CAPTURE_PORT}`, count: 100_000, rate: 5000 })]);
  const sockPath = join(b.stateDir, 'meshd.sock');
  const idle: Socket[] = [];
  tc.after(() => idle.forEach((s) => s.destroy()));
  for (let k = 0; k < 10; k++) idle.push(...(await Promise.all(Array.from({ length: 200 }, () => connect(sockPath)))));
  const bad = await malformedFlood(sockPath);
  const statusDuring = await lan.status(b); // a user, through 2,000 idle connections and the flood
  await waitFor(() => !flood.alive(), 120_000, 'the datagram flood to end');
  const during = await pings;

  const stats = JSON.parse(flood.output().split('\n').find((l) => l.startsWith('{')) ?? '{}') as { sent: number; byKind: Record<string, number>; captured: number; replies: Record<string, number> };
  const closedIdle = idle.filter((s) => s.readableEnded).length;
  const rssAfter = rssKiB(pid);
  tc.diagnostic(`datagrams: ${stats.sent} sent ${JSON.stringify(stats.byKind)}, ${stats.captured} real ones captured, answers by type ${JSON.stringify(stats.replies)}`);
  tc.diagnostic(`control: ${bad.answered} malformed requests answered (${bad.errors} errors); ${closedIdle} of ${idle.length} idle connections closed by bravo`);
  const logged = new Map<string, number>();
  for (const line of b.proc!.output().split('\n')) {
    try {
      const { level, msg } = JSON.parse(line) as { level: number; msg: string };
      if (level >= 40) logged.set(`${level} ${msg}`, (logged.get(`${level} ${msg}`) ?? 0) + 1);
    } catch {
      // not a log line
    }
  }
  tc.diagnostic(`bravo's warnings and errors: ${JSON.stringify(Object.fromEntries(logged))}`);
  tc.diagnostic(`pings during: ${during.received}/${during.transmitted}; bravo RSS ${rssBefore >> 10} MiB before, ${rssAfter >> 10} MiB after`);

  assert.ok(b.proc!.alive(), `bravo is alive: ${b.proc!.output().slice(-2000)}`);
  assert.ok(stats.sent !== undefined, `the flood's report: ${flood.output().slice(-2000)}`);
  assert.equal(stats.sent, 100_000, 'the flood was sent in full');
  assert.ok(stats.captured > 0 && stats.byKind.replay > 0, 'real datagrams were mutated and replayed');
  assert.equal(stats.replies[2] ?? 0, 0, 'no handshake response to a stranger');
  assert.equal(bad.answered, 10_000, 'every malformed request answered');
  assert.equal(bad.errors, 10_000, '... with an error');
  assert.ok(statusDuring.peers.some((p) => p.name === 'alpha'), 'meshd status answered during the abuse');
  assert.ok(closedIdle >= 2000 - 1024, 'idle connections beyond the cap were closed');
  assert.ok(during.received >= during.transmitted * 0.9, `pings through the tunnel during the abuse: ${during.received}/${during.transmitted}`);
  assert.equal((await ping(lan.t, a.ns, bravoIp, { count: 5, interval: 0.2 })).received, 5, 'alpha reaches bravo after');
  assert.equal((await ping(lan.t, b.ns, alpha.self.meshIp!, { count: 5, interval: 0.2 })).received, 5, 'bravo reaches alpha after');
  const after = await lan.status(b);
  assert.equal(after.peers.find((p) => p.name === 'alpha')?.endpoint, endpointBefore, 'no stranger moved alpha\'s endpoint');
  assert.ok(rssAfter < 2 * rssBefore + 50 * 1024, `bravo's RSS ${rssAfter} KiB after, ${rssBefore} KiB before`);
});
