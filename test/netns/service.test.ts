// meshd daemon as a systemd service (issue 11): it tells the service manager READY=1 only once
// `meshd status` answers and its interface exists, STOPPING=1 when SIGTERM begins the shutdown (the
// interface is gone afterwards), WATCHDOG=1 every half WATCHDOG_USEC while it runs; and a port it needs that is taken at start is one line naming the
// option to change, with a non-zero exit and nothing left behind. The service manager's end of
// $NOTIFY_SOCKET is helpers/notify-listener.py (node has no unix datagram sockets): for READY=1 it
// asks the control socket for status at that very moment. And `meshd service install|uninstall`
// where systemd runs, in a mount namespace that looks so, with a stand-in systemctl.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lan, type MeshNode } from './mesh.js';
import { ROOT, waitFor, MESHD, type Proc, type Topology } from './harness.js';
import type { Status } from '../../src/daemon/daemon.js';

const LISTENER = join(ROOT, 'test', 'netns', 'helpers', 'notify-listener.py');

interface Notice {
  message: string;
  at: number;
  /** The status result the control socket gave at READY=1 (or why it gave none). */
  status?: Status | string;
  interface?: boolean;
}

/** The datagrams the listener has printed so far. */
function notices(listener: Proc): Notice[] {
  return listener.output().split('\n').filter((l) => l.startsWith('{"message"')).map((l) => JSON.parse(l) as Notice);
}

/** A notify socket listener in the node's namespace, for its control socket and interface. */
async function listen(t: Topology, node: MeshNode, addr: string): Promise<Proc> {
  const p = t.spawn(node.ns, 'python3', [LISTENER, addr, join(node.stateDir, 'meshd.sock'), node.ifname]);
  await waitFor(() => p.output().includes('"listening"') || !p.alive(), 10_000, 'the notify listener');
  assert.ok(p.alive(), p.output());
  return p;
}

/** Starts alpha's daemon with $NOTIFY_SOCKET; resolves with the READY=1 notice. */
async function startNotified(lan: Lan, node: MeshNode, listener: Proc, addr: string, env: NodeJS.ProcessEnv = {}): Promise<Notice> {
  node.proc = lan.t.spawn(node.ns, MESHD, ['--state-dir', node.stateDir, 'daemon', '--interface', node.ifname, '--name', node.name], { LOG_LEVEL: 'warn', NOTIFY_SOCKET: addr, ...env });
  lan.t.trackSocket(`/var/run/wireguard/${node.ifname}.sock`);
  const proc = node.proc;
  await waitFor(() => notices(listener).some((n) => n.message === 'READY=1') || !proc.alive(), 30_000, 'READY=1');
  assert.ok(proc.alive(), proc.output());
  const ready = notices(listener).filter((n) => n.message === 'READY=1');
  assert.equal(ready.length, 1, 'one READY=1');
  return ready[0];
}

/** SIGTERM: STOPPING=1 arrives, the daemon exits 0, its interface is gone. */
async function stopNotified(lan: Lan, node: MeshNode, listener: Proc): Promise<void> {
  const proc = node.proc!;
  const exited = new Promise<number | null>((resolve) => proc.child.once('exit', (code) => resolve(code)));
  process.kill(proc.pid, 'SIGTERM');
  assert.equal(await exited, 0, proc.output());
  await waitFor(() => notices(listener).some((n) => n.message === 'STOPPING=1'), 5_000, 'STOPPING=1');
  const link = await lan.t.exec(node.ns, 'ip', ['link', 'show', node.ifname]).then(() => 'present', () => 'gone');
  assert.equal(link, 'gone', `${node.ifname} is removed on shutdown`);
}

test('READY=1 once status answers and the interface is up; STOPPING=1 on SIGTERM, the interface gone after; a path and an abstract socket', { timeout: 120_000 }, async (tc) => {
  const lan = new Lan();
  tc.after(() => lan.cleanup());
  await lan.init();
  const a = await lan.addNode('alpha');
  const dir = mkdtempSync(join(tmpdir(), 'meshd-notify-'));
  tc.after(() => rmSync(dir, { recursive: true, force: true }));

  // A fresh node (no network), on a socket path as systemd gives it (/run/systemd/notify).
  const path = join(dir, 'notify');
  const byPath = await listen(lan.t, a, path);
  // With a watchdog as WatchdogSec=0.4s asks for it: WATCHDOG=1 every 200 ms.
  const ready = await startNotified(lan, a, byPath, path, { WATCHDOG_USEC: '400000' });
  assert.equal(typeof ready.status, 'object', `status answers at READY=1: ${ready.status}`);
  assert.equal((ready.status as Status).self.network, null);
  assert.equal(ready.interface, true, `${a.ifname} exists at READY=1`);
  const pings = () => notices(byPath).filter((n) => n.message === 'WATCHDOG=1').length;
  await waitFor(() => pings() >= 3, 10_000, 'WATCHDOG=1 again and again');
  // A daemon that does not run (stopped here, as a hung main thread would be) sends none.
  process.kill(a.proc!.pid, 'SIGSTOP');
  await new Promise((r) => setTimeout(r, 300));
  const before = pings();
  await new Promise((r) => setTimeout(r, 1_000));
  assert.equal(pings(), before, 'no WATCHDOG=1 while the daemon is stopped');
  process.kill(a.proc!.pid, 'SIGCONT');
  await waitFor(() => pings() > before, 10_000, 'WATCHDOG=1 once it runs again');
  await stopNotified(lan, a, byPath);

  // Again, a member of a network this time (libp2p up too), on an abstract socket ('@...').
  await lan.start(a);
  await lan.cli(a, ['init', '--network', 'svc']);
  await a.proc!.kill();
  const abstract = `@${lan.t.prefix}-notify`;
  const byName = await listen(lan.t, a, abstract);
  const again = await startNotified(lan, a, byName, abstract);
  assert.equal(typeof again.status, 'object', `status answers at READY=1: ${again.status}`);
  assert.equal(again.interface, true);
  const atReady = (again.status as Status).self;
  assert.equal(atReady.network?.name, 'svc', 'READY=1 comes after the stored network was resumed');
  assert.equal(atReady.meshIp, '10.0.0.1');
  await stopNotified(lan, a, byName);
  assert.deepEqual(notices(byName).map((n) => n.message), ['READY=1', 'STOPPING=1'], 'nothing else was sent');
});

/** Starts `meshd daemon` expecting it to refuse: its exit code and stderr. */
async function refusedStart(lan: Lan, node: MeshNode, args: string[] = []): Promise<{ code: number; stderr: string }> {
  const r = await lan.t.exec(node.ns, MESHD, ['--state-dir', node.stateDir, 'daemon', '--interface', node.ifname, ...args], { env: { LOG_LEVEL: 'info' } })
    .then(() => null, (e: { code?: number; stderr?: string }) => ({ code: e.code ?? 0, stderr: e.stderr ?? '' }));
  assert.ok(r, 'the daemon should not have started');
  return r;
}

/** A holder of `port` (udp or tcp, on the wildcard IPv4 address) in the node's namespace. */
async function hold(lan: Lan, node: MeshNode, proto: 'udp' | 'tcp', port: number): Promise<Proc> {
  const code = proto === 'udp'
    ? `require('node:dgram').createSocket('udp4').bind(${port}, '0.0.0.0', () => console.log('holding'))`
    : `require('node:net').createServer().listen(${port}, '0.0.0.0', () => console.log('holding'))`;
  const p = lan.t.spawn(node.ns, process.execPath, ['-e', code]);
  await waitFor(() => p.output().includes('holding') || !p.alive(), 10_000, `the ${proto} port holder`);
  assert.ok(p.alive(), p.output());
  return p;
}

test('a taken port at start: one line naming --listen-port or --p2p-port, exit 1, no interface; the other port free, it starts', { timeout: 90_000 }, async (tc) => {
  const lan = new Lan();
  tc.after(() => lan.cleanup());
  await lan.init();
  const a = await lan.addNode('alpha');
  const gone = async () => assert.equal(await lan.t.exec(a.ns, 'ip', ['link', 'show', a.ifname]).then(() => 'present', () => 'gone'), 'gone', 'no interface left');

  const udp = await hold(lan, a, 'udp', 51820);
  let r = await refusedStart(lan, a);
  assert.equal(r.code, 1);
  assert.equal(r.stderr, 'meshd: UDP port 51820 is in use (WireGuard): another program (another meshd daemon?) has it; stop it, or start meshd daemon with another --listen-port\n');
  await gone();
  await udp.kill();

  const tcp = await hold(lan, a, 'tcp', 4001);
  r = await refusedStart(lan, a);
  assert.equal(r.code, 1);
  assert.equal(r.stderr, 'meshd: TCP port 4001 is in use (libp2p): another program (another meshd daemon?) has it; stop it, or start meshd daemon with another --p2p-port\n');
  await gone();
  // The way out the line names works.
  a.args = ['--p2p-port', '4002'];
  await lan.start(a);
  await lan.cli(a, ['init']);
  const { stdout } = await lan.t.exec(a.ns, 'ss', ['-Hltnp', 'sport', '= :4002']);
  assert.ok(stdout.includes(`pid=${a.proc!.pid},`), `libp2p listens on 4002: ${stdout}`);
  await tcp.kill();
});

test('the CLI without a daemon: the hint to start one repeats the --state-dir it was given', { timeout: 30_000 }, async (tc) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-nodaemon-'));
  tc.after(() => rmSync(dir, { recursive: true, force: true }));
  const { execFile } = await import('node:child_process');
  const err = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
    execFile(MESHD, ['--state-dir', dir, 'status'], (e, _out, stderr) => resolve({ code: e ? (e as { code?: number }).code ?? null : 0, stderr }));
  });
  assert.equal(err.code, 1);
  assert.equal(err.stderr, `meshd: meshd daemon is not running (no socket at ${dir}/meshd.sock); start it with: meshd --state-dir ${dir} daemon\n`);
});

/**
 * A mount namespace of our own where systemd looks as if it ran (/run a fresh tmpfs holding
 * /run/systemd/system, sd_booted's test) and `systemctl` is a stand-in that logs its arguments,
 * keeps "enabled" in a file and fails the command $SYSTEMCTL_FAIL starts with. Nothing of it
 * reaches the host's /run or /etc: the unit directory is /run/systemd/system inside it.
 */
async function fakeSystemd(tc: { after(fn: () => unknown): void }) {
  const { execFile, spawn } = await import('node:child_process');
  const { writeFileSync, chmodSync, readFileSync: read, existsSync } = await import('node:fs');
  const dir = mkdtempSync(join(tmpdir(), 'meshd-systemctl-'));
  const log = join(dir, 'log');
  writeFileSync(join(dir, 'systemctl'), [
    '#!/bin/sh',
    `echo "$*" >> ${log}`,
    'if [ -n "$SYSTEMCTL_FAIL" ]; then case "$*" in "$SYSTEMCTL_FAIL"*) echo "Failed to $1 meshd.service: stand-in failure" >&2; exit 1;; esac; fi',
    'case "$1" in',
    `  is-enabled) [ -f ${dir}/enabled ] ;;`,
    `  enable) touch ${dir}/enabled ;;`,
    `  disable) rm -f ${dir}/enabled ;;`,
    'esac',
  ].join('\n') + '\n');
  chmodSync(join(dir, 'systemctl'), 0o755);
  const holder = spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', 'mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/system && echo ready && exec sleep 600'], { stdio: ['ignore', 'pipe', 'inherit'] });
  tc.after(() => {
    holder.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  await new Promise<void>((resolve, reject) => {
    holder.stdout!.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
    holder.once('exit', (code) => reject(new Error(`unshare exited ${code}`)));
  });
  return {
    unit: '/run/systemd/system/meshd.service',
    /** Runs meshd in that namespace; the stand-in systemctl fails commands starting with `fail`. */
    meshd: (args: string[], fail = '') => new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile('nsenter', ['-t', String(holder.pid), '-m', MESHD, ...args], { env: { ...process.env, PATH: `${dir}:${process.env.PATH}`, SYSTEMCTL_FAIL: fail } },
        (err, stdout, stderr) => resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }));
    }),
    /** The unit's text in that namespace, or null. */
    unitText: () => new Promise<string | null>((resolve) => {
      execFile('nsenter', ['-t', String(holder.pid), '-m', 'cat', '/run/systemd/system/meshd.service'], (err, stdout) => resolve(err ? null : stdout));
    }),
    /** The systemctl calls since the last look. */
    calls: () => {
      const text = existsSync(log) ? read(log, 'utf8') : '';
      rmSync(log, { force: true });
      return text.split('\n').filter(Boolean);
    },
  };
}

test('where systemd runs: install reloads and enables (--now restarts); a failing systemctl puts the unit and its enablement back; uninstall disables --now and removes', { timeout: 60_000 }, async (tc) => {
  const sd = await fakeSystemd(tc);

  let r = await sd.meshd(['service', 'install', '--unit-dir', '/run/systemd/system', '--', '--name', 'web1'], 'enable');
  assert.deepEqual([r.code, r.stderr], [1, 'meshd: systemctl enable meshd.service failed: Failed to enable meshd.service: stand-in failure\n']);
  assert.deepEqual(sd.calls(), ['is-enabled --quiet meshd.service', 'daemon-reload', 'enable meshd.service', 'disable meshd.service', 'daemon-reload']);
  assert.equal(await sd.unitText(), null, 'no unit left behind');

  r = await sd.meshd(['service', 'install', '--unit-dir', '/run/systemd/system']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^installed \/run\/systemd\/system\/meshd\.service \(.*\); enabled; start it with: systemctl start meshd\n$/);
  assert.deepEqual(sd.calls(), ['is-enabled --quiet meshd.service', 'daemon-reload', 'enable meshd.service']);
  const first = await sd.unitText();
  assert.match(first!, / daemon\n/);

  // A new unit whose start fails: the old unit is back, still enabled (it was before).
  r = await sd.meshd(['service', 'install', '--unit-dir', '/run/systemd/system', '--now', '--', '--listen-port', '51821'], 'restart');
  assert.deepEqual([r.code, r.stderr], [1, 'meshd: systemctl restart meshd.service failed: Failed to restart meshd.service: stand-in failure\n']);
  assert.deepEqual(sd.calls(), ['is-enabled --quiet meshd.service', 'daemon-reload', 'enable meshd.service', 'restart meshd.service', 'daemon-reload']);
  assert.equal(await sd.unitText(), first, 'the previous unit is back');

  r = await sd.meshd(['service', 'install', '--unit-dir', '/run/systemd/system', '--now', '--json', '--', '--listen-port', '51821']);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual((({ systemd, loaded, enabled, started }) => ({ systemd, loaded, enabled, started }))(JSON.parse(r.stdout)), { systemd: true, loaded: true, enabled: true, started: true });
  sd.calls();
  assert.match((await sd.unitText())!, / daemon --listen-port 51821\n/);

  // Uninstall: a failing disable leaves the unit; then it goes.
  r = await sd.meshd(['service', 'uninstall', '--unit-dir', '/run/systemd/system'], 'disable');
  assert.equal(r.code, 1);
  assert.notEqual(await sd.unitText(), null, 'still there');
  sd.calls();
  r = await sd.meshd(['service', 'uninstall', '--unit-dir', '/run/systemd/system']);
  assert.deepEqual([r.code, r.stdout], [0, 'removed /run/systemd/system/meshd.service (stopped and disabled); the state in /var/lib/meshd is kept\n']);
  assert.deepEqual(sd.calls(), ['disable --now meshd.service', 'daemon-reload']);
  assert.equal(await sd.unitText(), null);
});
