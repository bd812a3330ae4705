// meshd as a systemd service, without systemd running: `meshd service install` writes a unit that
// `systemd-analyze verify` accepts (its ExecStart binaries exist), uninstall removes it, failing
// commands change nothing; the unit template's paths; the sd_notify wrapper never throws; and the
// start-time port check names the option for a taken port.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { accessSync, constants, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSocket } from 'node:dgram';
import { createServer, type AddressInfo } from 'node:net';
import { run } from './helpers/run.js';
import { renderUnit, templatePath } from '../../src/service/unit.js';
import { packageRoot } from '../../src/util/package-root.js';
import { systemdRunning } from '../../src/service/systemctl.js';
import { sdNotify, sdWatchdog } from '../../src/daemon/sd-notify.js';
import { checkPorts, PortError } from '../../src/daemon/ports.js';
import { createLogger } from '../../src/util/log.js';

const MESHD = join(packageRoot(), 'dist', 'cmd', 'meshd.js');


test('meshd service install --unit-dir: a unit systemd-analyze verify accepts, with this node and meshd in ExecStart; uninstall removes it', { timeout: 60_000 }, async (tc) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-unit-'));
  tc.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'meshd.service');

  const out = await run(MESHD, ['service', 'install', '--unit-dir', dir]);
  assert.equal(out.code, 0, out.stderr);
  assert.match(out.stdout, new RegExp(`^installed ${file} `));
  // A temporary directory is not one systemd loads: it says why the unit was not loaded.
  if (!systemdRunning()) assert.match(out.stdout, /systemd is not running on this machine \(PID 1 is not systemd\), so the unit was not loaded\n$/);
  else assert.match(out.stdout, /systemd does not load units from/);

  const unit = readFileSync(file, 'utf8');
  const exec = /^ExecStart=(\S+) --max-semi-space-size=1 --expose-gc (\S+) --state-dir \/var\/lib\/meshd daemon$/m.exec(unit);
  assert.ok(exec, 'ExecStart runs node on meshd daemon with the default state dir');
  for (const bin of [exec[1], exec[2]]) accessSync(bin, constants.X_OK);
  assert.equal(exec[2], MESHD);
  // The unit runs node as meshd.js's shebang does: the same environment, the same flags.
  const shebang = /^#!\/usr\/bin\/env -S (.*)$/m.exec(readFileSync(MESHD, 'utf8'))![1].split(' ');
  const node = shebang.indexOf('node');
  assert.deepEqual(shebang.slice(0, node), ['MALLOC_ARENA_MAX=2']);
  for (const assignment of shebang.slice(0, node)) assert.match(unit, new RegExp(`^Environment=${assignment}$`, 'm'));
  assert.deepEqual(shebang.slice(node + 1), ['--max-semi-space-size=1', '--expose-gc']);
  assert.match(unit, /^Type=notify$/m);
  assert.match(unit, /^StateDirectory=meshd$/m);
  assert.match(unit, /^DeviceAllow=\/dev\/net\/tun rw$/m);
  assert.doesNotMatch(unit, /@[A-Z]+@|^MemoryDenyWriteExecute=|^PrivateDevices=/m, 'filled in; a JIT and /dev/net/tun allowed');

  // --man=no: no lookups of Documentation= man pages; no systemd PID 1 needed.
  const verify = await run('systemd-analyze', ['verify', '--man=no', file], { SYSTEMD_LOG_COLOR: '0' });
  assert.equal(verify.code, 0, verify.stderr);
  assert.equal(verify.stderr.trim(), '', 'no warnings (unknown keys, missing binaries)');

  // Installing again is the same unit; then uninstall removes it, and a second uninstall fails.
  assert.equal((await run(MESHD, ['service', 'install', '--unit-dir', dir])).code, 0);
  assert.equal(readFileSync(file, 'utf8'), unit);
  const removed = await run(MESHD, ['service', 'uninstall', '--unit-dir', dir, '--json']);
  assert.equal(removed.code, 0, removed.stderr);
  assert.deepEqual(JSON.parse(removed.stdout), { unit: file, removed: true, stopped: false });
  assert.deepEqual(readdirSync(dir), []);
  const again = await run(MESHD, ['service', 'uninstall', '--unit-dir', dir]);
  assert.equal(again.code, 1);
  assert.equal(again.stderr, `meshd: no meshd unit at ${file}\n`);
});

test('meshd service install -- <daemon options>: they end ExecStart, checked by meshd daemon\'s own parser first', { timeout: 60_000 }, async (tc) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-unit-'));
  tc.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'meshd.service');
  for (const [options, error] of [
    [['--bogus'], "meshd: not for meshd daemon: unknown option '--bogus'\n"],
    [['--listen-port', '99999'], 'meshd: not for meshd daemon: invalid port 99999\n'],
    [['--state-dir', '/x'], "meshd: not for meshd daemon: unknown option '--state-dir'\n"],
    [['--name', 'a b'], 'meshd: cannot put "a b" in a systemd unit: daemon options must be plain words (letters, digits, _@+=:,./-)\n'],
    [['--name', '%H'], 'meshd: cannot put "%H" in a systemd unit: daemon options must be plain words (letters, digits, _@+=:,./-)\n'],
  ] as const) {
    const r = await run(MESHD, ['service', 'install', '--unit-dir', dir, '--', ...options]);
    assert.deepEqual([r.code, r.stderr], [1, error], options.join(' '));
    assert.deepEqual(readdirSync(dir), [], 'nothing written');
  }
  const ok = await run(MESHD, ['service', 'install', '--unit-dir', dir, '--', '--listen-port', '51821', '--p2p-port', '4101', '--name', 'web1', '--no-relay']);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(readFileSync(file, 'utf8'), / --state-dir \/var\/lib\/meshd daemon --listen-port 51821 --p2p-port 4101 --name web1 --no-relay\n/);
  const verify = await run('systemd-analyze', ['verify', '--man=no', file]);
  assert.deepEqual([verify.code, verify.stderr.trim()], [0, '']);
});

test('meshd service install that cannot do what it was asked changes nothing', { timeout: 30_000 }, async (tc) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-unit-'));
  tc.after(() => rmSync(dir, { recursive: true, force: true }));
  const missing = await run(MESHD, ['service', 'install', '--unit-dir', join(dir, 'nope')]);
  assert.equal(missing.code, 1);
  assert.equal(missing.stderr, `meshd: unit directory ${join(dir, 'nope')} does not exist\n`);
  assert.equal(existsSync(join(dir, 'nope')), false);
  // --now where it cannot start: refused before anything is written.
  const now = await run(MESHD, ['service', 'install', '--unit-dir', dir, '--now']);
  assert.equal(now.code, 1);
  assert.match(now.stderr, /^meshd: cannot start meshd now: .*; install without --now to write the unit only\n$/);
  assert.deepEqual(readdirSync(dir), []);
});

test('renderUnit: both paths in ExecStart; ProtectHome=read-only for a node under a home directory; no path that would split', () => {
  const template = readFileSync(templatePath(), 'utf8');
  const unit = renderUnit(template, { node: '/usr/bin/node', meshd: '/opt/meshd/dist/cmd/meshd.js' });
  assert.match(unit, /^ExecStart=\/usr\/bin\/node --max-semi-space-size=1 --expose-gc \/opt\/meshd\/dist\/cmd\/meshd\.js --state-dir \/var\/lib\/meshd daemon$/m);
  assert.match(unit, /^ProtectHome=yes$/m);
  const home = renderUnit(template, { node: '/root/.nvm/versions/node/v22/bin/node', meshd: '/opt/meshd/dist/cmd/meshd.js' });
  assert.match(home, /^ProtectHome=read-only$/m);
  assert.throws(() => renderUnit(template, { node: '/usr/bin/node', meshd: '/opt/my meshd/meshd.js' }), /without spaces/);
  assert.throws(() => renderUnit(template, { node: 'node', meshd: '/opt/meshd.js' }), /absolute path/);
  assert.throws(() => renderUnit(`${template}\nX=@OTHER@\n`, { node: '/usr/bin/node', meshd: '/opt/meshd.js' }), /@OTHER@/);
});

test('sdNotify: nothing without NOTIFY_SOCKET; a failing send is false, never a throw', () => {
  const logger = createLogger('test', 'silent');
  const sent: [string, string][] = [];
  const send = (s: string, m: string) => (sent.push([s, m]), 0);
  assert.equal(sdNotify('READY=1', logger, {}, send), false);
  assert.deepEqual(sent, []);
  assert.equal(sdNotify('READY=1', logger, { NOTIFY_SOCKET: '@x' }, send), true);
  assert.deepEqual(sent, [['@x', 'READY=1']]);
  assert.equal(sdNotify('READY=1', logger, { NOTIFY_SOCKET: '/nonexistent/notify' }, () => -2), false);
  assert.equal(sdNotify('READY=1', logger, { NOTIFY_SOCKET: '/x' }, () => { throw new Error('boom'); }), false);
});

test('sdWatchdog: WATCHDOG=1 every half WATCHDOG_USEC until stopped; nothing without a watchdog, or for another pid', async () => {
  const logger = createLogger('test', 'silent');
  const sent: string[] = [];
  const send = (_s: string, m: string) => (sent.push(m), 0);
  const stop = sdWatchdog(logger, { NOTIFY_SOCKET: '@x', WATCHDOG_USEC: '40000', WATCHDOG_PID: String(process.pid) }, send);
  await new Promise((r) => setTimeout(r, 200));
  stop();
  const n = sent.length;
  assert.ok(n >= 3, `every 20 ms for 200 ms: ${n}`);
  assert.ok(sent.every((m) => m === 'WATCHDOG=1'));
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(sent.length, n, 'nothing once stopped');
  for (const env of [{ NOTIFY_SOCKET: '@x' }, { WATCHDOG_USEC: '40000' }, { NOTIFY_SOCKET: '@x', WATCHDOG_USEC: '40000', WATCHDOG_PID: '1' }, { NOTIFY_SOCKET: '@x', WATCHDOG_USEC: 'soon' }]) {
    sdWatchdog(logger, env, send)();
  }
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(sent.length, n, 'no watchdog asked of this process: nothing sent');
});

/** python3 receiving one datagram on `addr` (a path, or '@name' abstract); resolves with it. */
async function receiveOne(addr: string): Promise<{ ready: Promise<void>; message: Promise<string> }> {
  const { spawn } = await import('node:child_process');
  const py = 'import socket,sys\na=sys.argv[1]\ns=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM)\ns.bind("\\0"+a[1:] if a[0]=="@" else a)\nprint("bound",flush=True)\nprint(s.recv(4096).decode(),flush=True)\n';
  const child = spawn('python3', ['-c', py, addr], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  let bound: () => void;
  const ready = new Promise<void>((resolve) => (bound = resolve));
  const message = new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (d) => { out += d; if (out.startsWith('bound\n')) bound(); });
    child.on('exit', (code) => (code === 0 ? resolve(out.slice('bound\n'.length).trimEnd()) : reject(new Error(`python3 exited ${code}`))));
  });
  return { ready, message };
}

test('sdNotify through the addon: the datagram reaches a path socket and an abstract one; a socket nobody listens on is false, not a throw', { timeout: 30_000 }, async () => {
  const logger = createLogger('test', 'silent');
  const dir = mkdtempSync(join(tmpdir(), 'meshd-notify-'));
  try {
    const path = join(dir, 'notify');
    const byPath = await receiveOne(path);
    await byPath.ready;
    assert.equal(sdNotify('READY=1\nSTATUS=up', logger, { NOTIFY_SOCKET: path }), true);
    assert.equal(await byPath.message, 'READY=1\nSTATUS=up');
    const name = `@meshd-test-${process.pid}-${Date.now()}`;
    const byName = await receiveOne(name);
    await byName.ready;
    assert.equal(sdNotify('STOPPING=1', logger, { NOTIFY_SOCKET: name }), true);
    assert.equal(await byName.message, 'STOPPING=1');

    assert.equal(sdNotify('READY=1', logger, { NOTIFY_SOCKET: join(dir, 'none') }), false);
    assert.equal(sdNotify('READY=1', logger, { NOTIFY_SOCKET: 'relative' }), false);
    assert.equal(sdNotify('READY=1', logger, { NOTIFY_SOCKET: `/${'x'.repeat(200)}` }), false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('checkPorts: a taken UDP or TCP port is a PortError naming --listen-port or --p2p-port; free ports pass', async () => {
  const udp = createSocket('udp4');
  await new Promise<void>((resolve) => udp.bind(0, '127.0.0.1', resolve));
  const tcp = createServer();
  await new Promise<void>((resolve) => tcp.listen(0, '127.0.0.1', resolve));
  const u = udp.address().port;
  const t = (tcp.address() as AddressInfo).port;
  try {
    await assert.rejects(checkPorts({ listenPort: u, p2pPort: 0 }), (e: PortError) =>
      e instanceof PortError && e.code === 'EADDRINUSE' && e.message === `UDP port ${u} is in use (WireGuard): another program (another meshd daemon?) has it; stop it, or start meshd daemon with another --listen-port`);
    await assert.rejects(checkPorts({ listenPort: 0, p2pPort: t }), (e: PortError) =>
      e instanceof PortError && e.code === 'EADDRINUSE' && e.message === `TCP port ${t} is in use (libp2p): another program (another meshd daemon?) has it; stop it, or start meshd daemon with another --p2p-port`);
  } finally {
    udp.close();
    await new Promise<void>((resolve) => tcp.close(() => resolve()));
  }
  // Freed, both pass (and the probe left them free: a second check passes too).
  await checkPorts({ listenPort: u, p2pPort: t });
  await checkPorts({ listenPort: u, p2pPort: t });
});
