// Under faults and attack: wrong clocks (Debian's faketime runs a daemon on a skewed clock), a full
// state disk (a small tmpfs), a lossy underlay (iptables' statistic match) and a handshake flood.
// Each case asserts what a user would check: joins, pings, TCP, member lists, exit codes and their
// one line.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lan, type MeshNode } from './mesh.js';
import { ping, waitFor, wgDump, ROOT } from './harness.js';

/**
 * A daemon environment on a skewed wall clock: Debian's libfaketime, preloaded into the daemon
 * itself (the `faketime` command forks, and would leave the daemon behind when the test stops
 * it by PID). Only the wall clock moves: timers keep the real pace.
 */
const skewed = (offset: string): NodeJS.ProcessEnv => ({
  LD_PRELOAD: '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1', FAKETIME: offset, FAKETIME_DONT_FAKE_MONOTONIC: '1',
});

test("a joiner whose clock is 2 h fast joins with a fresh 1-hour invite; a really expired invite says whose clock is off", { timeout: 120_000 }, async (tc) => {
  const lan = new Lan();
  tc.after(() => lan.cleanup());
  await lan.init();
  const a = await lan.addNode('alpha');
  const b = await lan.addNode('bravo');
  await Promise.all([lan.start(a), lan.start(b, skewed('+2h'))]);
  await lan.cli(a, ['init']);
  // The skew is real: bravo's daemon lives 2 h ahead.
  const fresh = await lan.invite(a, ['--ttl', '1h']);
  assert.match(await lan.cli(b, ['join', fresh]), /this node is 10\.0\.0\.2/);
  await waitFor(async () => (await ping(lan.t, b.ns, '10.0.0.1', { count: 1, wait: 1 })).received === 1, 15_000, 'bravo to reach alpha');
  assert.match(b.proc!.output(), /this machine's clock is 2 h ahead of the admitting member's/);
  // An invite that did expire (by alpha's clock): the refusal names the skew.
  await lan.cli(b, ['leave']);
  const short = await lan.invite(a, ['--ttl', '1s']);
  await new Promise((r) => setTimeout(r, 1500));
  await assert.rejects(lan.cli(b, ['join', short]), /invite expired; ask an administrator for a new one \(this machine's clock is 2 h ahead of the member's/);
});

test('a member that restarts with its clock a day behind: its handshakes are still accepted (timestamps only go up)', { timeout: 120_000 }, async (tc) => {
  const lan = new Lan();
  tc.after(() => lan.cleanup());
  await lan.init();
  const a = await lan.addNode('alpha');
  const b = await lan.addNode('bravo');
  await Promise.all(lan.nodes.map((n) => lan.start(n)));
  await lan.cli(a, ['init']);
  await lan.cli(b, ['join', await lan.invite(a)]);
  // bravo initiates: alpha has accepted a timestamp of bravo's, from today.
  await waitFor(async () => (await ping(lan.t, b.ns, '10.0.0.1', { count: 1, wait: 1 })).received === 1, 15_000, 'bravo to reach alpha');
  // bravo comes back with its clock a day behind (a board without an RTC, NTP not yet up).
  await b.proc!.kill('SIGTERM');
  await lan.start(b, { ...skewed('-1d'), LOG_LEVEL: 'info' });
  const up = b.proc!.output().split('\n').map((l) => { try { return JSON.parse(l) as { msg?: string; time?: number }; } catch { return {}; } }).find((l) => l.msg === 'meshd daemon up');
  assert.ok(up?.time && Math.abs(Date.now() - 86_400_000 - up.time) < 600_000, `bravo's clock is a day behind (its log says ${up?.time})`);
  // Only bravo sends: its initiation must pass alpha's replay check (a stamp from yesterday would not).
  await waitFor(async () => (await ping(lan.t, b.ns, '10.0.0.1', { count: 1, wait: 1 })).received === 1, 20_000, 'bravo, a day behind, to reach alpha again');
});

/**
 * A daemon environment whose wall clock the test moves while it runs: libfaketime reads the offset
 * ("+0", "-1d", "+2d"...) from `file`, again at most a second after it changes.
 */
const jumpable = (file: string): NodeJS.ProcessEnv => ({
  LD_PRELOAD: '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1', FAKETIME_TIMESTAMP_FILE: file,
  FAKETIME_CACHE_DURATION: '1', FAKETIME_DONT_FAKE_MONOTONIC: '1',
});

// Both members' clocks jump while they run, on shortened timers (rekey after 6 s, sessions void
// after 9 s): whichever initiates a rekey after the jump back carries a timestamp its peer must
// still take as newer than the one it took before the jump.
test('members whose clocks jump a day back, then two days forward, while running keep their sessions and membership', { timeout: 180_000 }, async (tc) => {
  const lan = new Lan();
  const dir = mkdtempSync(join(tmpdir(), 'meshd-clock-'));
  tc.after(async () => { await lan.cleanup(); rmSync(dir, { recursive: true, force: true }); });
  await lan.init();
  const a = await lan.addNode('alpha');
  const b = await lan.addNode('bravo');
  const clock = join(dir, 'offset');
  writeFileSync(clock, '+0\n');
  await Promise.all(lan.nodes.map((n) => lan.start(n, { ...jumpable(clock), MESHD_TEST_TIMERS: '1' })));
  await lan.cli(a, ['init']);
  await lan.cli(b, ['join', await lan.invite(a)]);
  await lan.fullMesh(30_000);
  for (const [offset, days] of [['-1d', -1], ['+2d', 2]] as const) {
    writeFileSync(clock, `${offset}\n`);
    // 20 s of pings both ways: two rekeys at least, each after the jump.
    const [ab, ba] = await Promise.all([
      ping(lan.t, a.ns, '10.0.0.2', { count: 40, interval: 0.5, wait: 1 }),
      ping(lan.t, b.ns, '10.0.0.1', { count: 40, interval: 0.5, wait: 1 }),
    ]);
    // The jump is real: the daemons report their latest handshakes by their own (moved) clocks.
    const hs = (await wgDump(lan.t, a.ns, a.ifname))[0].latestHandshake * 1000;
    tc.diagnostic(`clocks ${offset}: ${ab.received}/40 and ${ba.received}/40 pings; alpha's latest handshake is ${((hs - Date.now()) / 86_400_000).toFixed(2)} days off`);
    assert.ok(Math.abs(hs - Date.now() - days * 86_400_000) < 3_600_000, `a handshake after the jump, by the moved clock (${new Date(hs).toISOString()})`);
    assert.ok(ab.received >= 36 && ba.received >= 36, `pings through the jump: ${ab.received}/40, ${ba.received}/40`);
    for (const [n, other] of [[a, 'bravo'], [b, 'alpha']] as const) {
      assert.deepEqual((await lan.status(n)).peers.map((p) => p.name), [other], `${n.name} keeps its membership`);
    }
  }
  // And the ledger still takes new events: a join with an invite made on the moved clock.
  const c = await lan.addNode('charlie');
  await lan.start(c);
  assert.match(await lan.cli(c, ['join', await lan.invite(a, ['--ttl', '1h'])]), /this node is 10\.0\.0\.3/);
});

/** A tmpfs of `size` at node's state dir; returns how to unmount it (before the Lan's cleanup). */
function tmpfsState(node: MeshNode, size: string): () => void {
  mkdirSync(node.stateDir, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'tmpfs', node.stateDir]);
  return () => { try { execFileSync('umount', ['-l', node.stateDir]); } catch { /* gone */ } };
}

/** Fills the file system at dir (a filler file), returns a function that frees it. */
function fill(dir: string): () => void {
  const filler = join(dir, 'filler');
  // Big chunks, then pages, then bytes: only the slack in the last pages of other files is left.
  for (const size of [256 * 1024, 4096, 1]) {
    const chunk = Buffer.alloc(size, 1);
    try {
      for (;;) writeFileSync(filler, chunk, { flag: 'a' });
    } catch (err) {
      assert.equal((err as NodeJS.ErrnoException).code, 'ENOSPC');
    }
  }
  return () => rmSync(filler, { force: true });
}

test('a full state disk: init, kick, invite and join fail with one line and change nothing; with space back they work and survive a restart', { timeout: 150_000 }, async (tc) => {
  const lan = new Lan();
  const unmount: Array<() => void> = [];
  // The tmpfs mounts go first: the Lan's cleanup removes the directories they sit on.
  tc.after(async () => {
    for (const u of unmount) u();
    await lan.cleanup();
  });
  await lan.init();
  const a = await lan.addNode('alpha');
  const b = await lan.addNode('bravo');
  const c = await lan.addNode('charlie');
  unmount.push(tmpfsState(a, '16m'), tmpfsState(c, '16m'));
  await Promise.all(lan.nodes.map((n) => lan.start(n)));
  await lan.cli(a, ['init']);
  await lan.cli(b, ['join', await lan.invite(a)]);
  const invite = await lan.invite(a);

  // alpha's disk fills up: a kick and an invite fail, and nothing changed.
  const free = fill(a.stateDir);
  const failsClearly = async (node: MeshNode, args: string[]) => {
    const err = await lan.cli(node, args).then(() => null, (e: Error & { exitCode?: number }) => e);
    assert.ok(err, `${args[0]} must fail on a full disk`);
    assert.notEqual(err.exitCode, 0);
    assert.equal(err.message.split('\n').length, 1, `one line: ${err.message}`);
    assert.match(err.message, /disk is full/);
  };
  // tmpfs fills by pages: a small write can still land in the last page of LevelDB's log. Once
  // one write has failed, every later one does while the disk is full (the store reopens first).
  let tries = 0;
  for (; tries < 30; tries++) {
    const ok = await lan.cli(a, ['invite']).then(() => true, (e: Error) => {
      assert.match(e.message, /^meshd: .*disk is full/);
      return false;
    });
    if (!ok) break;
  }
  assert.ok(tries < 30, 'a write fails on the full disk');
  await failsClearly(a, ['kick', 'bravo']);
  await failsClearly(a, ['invite']);
  assert.deepEqual((await lan.status(a)).peers.map((p) => p.name), ['bravo'], 'bravo is still a member at alpha');
  await new Promise((r) => setTimeout(r, 1000));
  assert.ok((await lan.status(b)).self.meshIp, 'and in its own eyes');
  assert.equal((await ping(lan.t, a.ns, '10.0.0.2', { count: 1, wait: 2 })).received, 1, 'the tunnel still works');

  // A join through alpha while its disk is full: the joiner is told why, and is not a member.
  await assert.rejects(lan.cli(c, ['join', invite]), /admission refused: cannot write meshd state in .*: the disk is full/);
  assert.equal((await lan.status(c)).self.meshIp, null);
  free();

  // charlie's own disk is full when it founds a network or joins one: refused, nothing stored,
  // the invite still good. (A restart first: LevelDB starts a fresh log, so no slack is left in
  // the last page of the old one for a small write to slip into.)
  await c.proc!.kill('SIGTERM');
  await lan.start(c);
  const freeC = fill(c.stateDir);
  await failsClearly(c, ['init']);
  assert.equal((await lan.status(c)).self.meshIp, null, 'a failed init founds nothing');
  await failsClearly(c, ['join', invite]);
  assert.equal((await lan.status(c)).self.meshIp, null);
  freeC();
  assert.match(await lan.cli(c, ['join', invite]), /this node is 10\.0\.0\.3/);

  // Space again: the kick works, and a restart shows what the commands reported.
  await lan.cli(a, ['kick', 'bravo']);
  assert.ok((await lan.status(a)).peers.every((p) => p.name !== 'bravo'));
  await a.proc!.kill('SIGKILL');
  await lan.start(a);
  assert.deepEqual((await lan.status(a)).peers.map((p) => p.name), ['charlie'], 'after a restart: the kick is there');

});

/**
 * Drops `share` of the packets the namespace receives on its underlay (iptables statistic: this
 * kernel has no netem). Every packet on the LAN is received by exactly one node, so applied to
 * every node this is a LAN that loses `share` of everything it carries, each way. Loopback and the
 * mesh interface itself are spared, so the tunnel's inner packets are lost only with the datagrams
 * that carry them.
 */
async function lossy(lan: Lan, node: MeshNode, share: number): Promise<void> {
  const drop = ['-m', 'statistic', '--mode', 'random', '--probability', String(share), '-j', 'DROP'];
  await lan.t.exec(node.ns, 'iptables', ['-A', 'INPUT', '-i', 'lo', '-j', 'ACCEPT']);
  await lan.t.exec(node.ns, 'iptables', ['-A', 'INPUT', '-i', node.ifname, '-j', 'ACCEPT']);
  await lan.t.exec(node.ns, 'iptables', ['-A', 'INPUT', ...drop]);
}

/** Retries a CLI command until it succeeds or the deadline passes (a lossy underlay may need two). */
async function eventually(lan: Lan, node: MeshNode, args: string[], deadlineMs: number): Promise<string> {
  const end = Date.now() + deadlineMs;
  let last: Error | null = null;
  while (Date.now() < end) {
    try {
      return await lan.cli(node, args, Math.max(5_000, end - Date.now()));
    } catch (err) {
      last = err as Error;
      if (/already a member/.test(last.message)) return 'already';
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
  throw last ?? new Error('deadline');
}

for (const share of [0.1, 0.3]) {
  test(`${share * 100}% packet loss on the underlay: a join and a kick complete within 60 s, TCP through the tunnel moves data`, { timeout: 300_000 }, async (tc) => {
    const lan = new Lan();
    tc.after(() => lan.cleanup());
    await lan.init();
    const [a, b, c] = [await lan.addNode('alpha'), await lan.addNode('bravo'), await lan.addNode('charlie')];
    await Promise.all(lan.nodes.map((n) => lan.start(n)));
    await lan.cli(a, ['init']);
    for (const n of lan.nodes) await lossy(lan, n, share);
    const t0 = Date.now();
    await eventually(lan, b, ['join', await lan.invite(a)], 60_000);
    await eventually(lan, c, ['join', await lan.invite(a)], 60_000);
    await waitFor(async () => (await lan.status(c)).peers.length === 2, 60_000, 'charlie to see both members');
    // TCP through the tunnel: iperf3 from charlie to alpha.
    const srv = lan.t.spawn(a.ns, 'iperf3', ['-s', '-B', '10.0.0.1']);
    tc.after(() => srv.kill());
    await waitFor(async () => (await lan.t.exec(a.ns, 'ss', ['-ltn'])).stdout.includes('10.0.0.1:5201'), 5000, 'iperf3 server');
    await waitFor(async () => (await ping(lan.t, c.ns, '10.0.0.1', { count: 1, wait: 1 })).received === 1, 30_000, 'charlie to reach alpha');
    // iperf3's own control connection may give up under heavy loss: a few tries.
    let moved = 0;
    for (let i = 0; i < 3 && moved === 0; i++) {
      const r = await lan.t.exec(c.ns, 'iperf3', ['-c', '10.0.0.1', '-t', '3', '-J', '--connect-timeout', '10000'], { timeout: 60_000 }).catch((e: { stdout?: string }) => ({ stdout: e.stdout ?? '{}' }));
      moved = (JSON.parse(r.stdout || '{}') as { end?: { sum_received?: { bytes?: number } } }).end?.sum_received?.bytes ?? 0;
    }
    // Under loss iperf3 sometimes stalls after its first segments: what counts is that TCP moves.
    assert.ok(moved > 0, `TCP through the tunnel moved ${moved} bytes`);
    // A kick reaches everyone.
    await eventually(lan, a, ['kick', 'bravo'], 60_000);
    await waitFor(async () => (await lan.status(c)).peers.every((p) => p.name !== 'bravo'), 60_000, 'the kick to reach charlie');
    await waitFor(async () => (await lan.status(b)).self.meshIp === null, 60_000, 'bravo to learn it was kicked');
    tc.diagnostic(`${share * 100}% loss: joins, TCP and a kick in ${Math.round((Date.now() - t0) / 1000)} s`);
  });
}

const FLOODER = join(ROOT, 'dist', 'test', 'netns', 'helpers', 'flooder.js');

// A handshake flood (initiations with a valid mac1 for bravo's key, 20,000 a second) from one
// address and from 64, against a live tunnel between two daemons on shortened timers (rekey after
// 6 s, sessions void after 9 s): pings keep going through 12 s of flood, so the session was
// rekeyed under it, TCP moves, and the cookie replies the flood draws stay within their caps.
test('a handshake flood from one source and from 64: the tunnel keeps its pings, rekeys, moves TCP, and cookie replies stay capped', { timeout: 180_000 }, async (tc) => {
  const lan = new Lan();
  tc.after(() => lan.cleanup());
  await lan.init();
  const [a, b] = [await lan.addNode('alpha'), await lan.addNode('bravo')];
  await Promise.all(lan.nodes.map((n) => lan.start(n, { MESHD_TEST_TIMERS: '1' })));
  await lan.cli(a, ['init']);
  await lan.cli(b, ['join', await lan.invite(a)]);
  await lan.fullMesh(30_000);
  const bravoIp = (await lan.status(b)).self.meshIp!;
  const pub = (await lan.t.exec(b.ns, 'wg', ['show', b.ifname, 'public-key'])).stdout.trim();
  const port = (await lan.t.exec(b.ns, 'wg', ['show', b.ifname, 'listen-port'])).stdout.trim();
  const flooderNs = await lan.addHost('f', 100, 64);
  const srv = lan.t.spawn(b.ns, 'iperf3', ['-s', '-B', bravoIp]);
  tc.after(() => srv.kill());
  await waitFor(async () => (await lan.t.exec(b.ns, 'ss', ['-ltn'])).stdout.includes(`${bravoIp}:5201`), 5000, 'iperf3 server');

  for (const sources of [1, 64]) {
    const addrs = Array.from({ length: sources }, (_, k) => `192.168.77.${100 + k}`);
    const flooder = lan.t.spawn(flooderNs, process.execPath, [FLOODER, JSON.stringify({ target: `${b.lanIp}:${port}`, targetPub: pub, rate: 20_000, sources: addrs })]);
    await waitFor(() => flooder.output().includes('ready') || !flooder.alive(), 10_000, 'flooder');
    assert.ok(flooder.alive(), flooder.output());
    const handshakeBefore = (await wgDump(lan.t, a.ns, a.ifname))[0].latestHandshake;
    const [pings, tcp] = await Promise.all([
      ping(lan.t, a.ns, bravoIp, { count: 60, interval: 0.2, wait: 1 }),
      new Promise((r) => setTimeout(r, 4000)).then(() => lan.t.exec(a.ns, 'iperf3', ['-c', bravoIp, '-t', '3', '-J'], { timeout: 30_000 })
        .then((r) => r.stdout, (e: { stdout?: string }) => e.stdout ?? '{}')),
    ]);
    const handshakeAfter = (await wgDump(lan.t, a.ns, a.ifname))[0].latestHandshake;
    await flooder.kill();
    const stats = JSON.parse(flooder.output().split('\n').find((l) => l.includes('"sent"')) ?? '{}') as { sent: number; seconds: number; replies: Record<string, number> };
    const moved = (JSON.parse(tcp || '{}') as { end?: { sum_received?: { bytes?: number } } }).end?.sum_received?.bytes ?? 0;
    const cookiesPerSecond = (stats.replies['3'] ?? 0) / stats.seconds;
    tc.diagnostic(`${sources} source(s): ${Math.round(stats.sent / stats.seconds)} initiations/s, ${pings.received}/60 pings, ` +
      `${(moved / 1e6).toFixed(1)} MB of TCP in 3 s, ${cookiesPerSecond.toFixed(0)} cookie replies/s, handshake ${handshakeBefore} -> ${handshakeAfter}`);
    assert.ok(stats.sent / stats.seconds > 10_000, `the flood ran: ${stats.sent} in ${stats.seconds} s`);
    assert.ok(pings.received >= 54, `pings through 12 s of flood (sessions last 9 s): ${pings.received}/60`);
    assert.ok(handshakeAfter > handshakeBefore, 'a new handshake completed under the flood');
    assert.ok(moved > 10_000_000, `TCP through the tunnel under the flood: ${moved} bytes in 3 s`);
    // Caps: 20 a second per source (a burst of 5), 2,000 a second in all.
    assert.ok(cookiesPerSecond <= Math.min(2000, sources * 20) * 1.2 + 5, `cookie replies: ${cookiesPerSecond}/s`);
    assert.ok(b.proc!.alive(), 'bravo is running');
  }
});
