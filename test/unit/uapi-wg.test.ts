// The UAPI socket against the real wireguard-tools (`wg`, 1.0.20210914 here) and against raw
// clients: what `wg show/showconf/set/setconf/syncconf` print and change through our socket, and
// how the server frames, bounds and guards its connections.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn } from 'node:child_process';
import { createConnection } from 'node:net';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import { UAPI_DIR, UapiServer, type UapiServerOptions } from '../../src/wg/uapi-server.js';
import {
  ConfigError, EADDRINUSE, type Configurable, type DeviceSet, type DeviceSnapshot, type PeerSnapshot,
} from '../../src/wg/config.js';
import { formatEndpoint } from '../../src/wg/endpoint.js';
import { formatPrefix, prefixEquals } from '../../src/wg/prefix.js';
import { staticKey } from '../../src/wg/crypto.js';
import { Device } from '../../src/wg/device.js';
import { NobleCipher } from '../../src/wg/cipher.js';
import { formatWgQuick } from '../../src/wg/wgquick.js';
import { addrFromString } from '../../src/wg/endpoint.js';
import { parsePrefix } from '../../src/wg/prefix.js';

const execFileAsync = promisify(execFile);

// ---- helpers ------------------------------------------------------------------------------------

/** Runs wg; must be asynchronous: the server answering it lives in this very process. */
async function wg(...args: string[]): Promise<string> {
  return (await execFileAsync('wg', args)).stdout;
}

/** Runs wg expecting failure; returns its exit code and stderr. */
async function wgFails(...args: string[]): Promise<{ code: number; stderr: string }> {
  try {
    await execFileAsync('wg', args);
  } catch (err) {
    const e = err as { code: number; stderr: string };
    return { code: e.code, stderr: e.stderr };
  }
  throw new assert.AssertionError({ message: `wg ${args.join(' ')} succeeded; expected failure` });
}

// Keys come from wg itself, so the test does not trust our own crypto for what wg will print.
const genkey = () => execFileSync('wg', ['genkey']).toString().trim();
const pubkey = (priv: string) => execFileSync('wg', ['pubkey'], { input: priv }).toString().trim();
const b64 = (s: string) => Buffer.from(s, 'base64');
const ifname = () => `mdu${randomBytes(4).toString('hex')}`; // 11 characters, unique per machine

const HANDSHAKE_MS = Date.now() - 42_000;
const RX = 1234; // wg prints 1.21 KiB
const TX = 5678; // 5.54 KiB

/**
 * A device as wireguard-go keeps its configuration, in memory: applies a DeviceSet the way
 * device/uapi.go applies the lines, with fixed counters and handshake time for every peer.
 */
class MemoryDevice implements Configurable {
  privateKey: Buffer | null = null;
  listenPort = 0;
  fwmark = 0;
  readonly peers = new Map<string, PeerSnapshot>();
  applied = 0;
  /** A port whose bind "fails", as a port in use fails in wireguard-go. */
  busyPort = -1;

  snapshot(): DeviceSnapshot {
    return {
      privateKey: this.privateKey, listenPort: this.listenPort, fwmark: this.fwmark,
      peers: [...this.peers.values()].map((p) => ({ ...p, allowedIps: [...p.allowedIps] })),
    };
  }

  apply(set: DeviceSet): void {
    if (set.listenPort === this.busyPort) throw new ConfigError(EADDRINUSE, `port ${set.listenPort} is in use`);
    this.applied++;
    if (set.privateKey !== undefined) this.privateKey = set.privateKey;
    if (set.listenPort !== undefined) this.listenPort = set.listenPort;
    if (set.fwmark !== undefined) this.fwmark = set.fwmark;
    if (set.replacePeers) this.peers.clear();
    const own = this.privateKey ? staticKey(this.privateKey).publicKey : null;
    for (const ps of set.peers) {
      if (own?.equals(ps.publicKey)) continue; // wireguard-go ignores a peer with the device's own key
      const id = ps.publicKey.toString('hex');
      if (ps.remove) {
        this.peers.delete(id);
        continue;
      }
      let peer = this.peers.get(id);
      if (!peer) {
        if (ps.updateOnly) continue;
        peer = {
          publicKey: ps.publicKey, presharedKey: null, endpoint: null, lastHandshakeMs: HANDSHAKE_MS,
          rxBytes: RX, txBytes: TX, persistentKeepalive: 0, allowedIps: [],
        };
        this.peers.set(id, peer);
      }
      if (ps.presharedKey !== undefined) peer.presharedKey = ps.presharedKey;
      if (ps.endpoint) peer.endpoint = ps.endpoint;
      if (ps.persistentKeepalive !== undefined) peer.persistentKeepalive = ps.persistentKeepalive;
      if (ps.replaceAllowedIps) peer.allowedIps = [];
      for (const { prefix, remove } of ps.allowedIps) {
        // A prefix belongs to one peer: inserting it moves it, as in the allowed-IPs trie.
        for (const other of this.peers.values()) other.allowedIps = other.allowedIps.filter((a) => !prefixEquals(a, prefix));
        if (!remove) peer.allowedIps.push(prefix);
      }
    }
  }

  peer(pub: string): PeerSnapshot | undefined {
    return this.peers.get(b64(pub).toString('hex'));
  }
}

async function serve(t: TestContext, target: Configurable, opts: UapiServerOptions = {}): Promise<{ name: string; server: UapiServer }> {
  const name = ifname();
  const server = await UapiServer.listen(name, target, opts);
  t.after(async () => {
    await server.close();
    rmSync(server.path, { force: true });
  });
  return { name, server };
}

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-uapi-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A raw client: sends the chunks (with a pause between them), collects everything until the server closes or timeout. */
function exchange(path: string, chunks: string[], opts: { halfClose?: boolean; waitMs?: number; replies?: number } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = createConnection(path);
    let got = '';
    const timer = setTimeout(() => {
      c.destroy();
      resolve(got);
    }, opts.waitMs ?? 400);
    c.setEncoding('latin1');
    c.on('data', (d: string) => {
      got += d;
      // Every reply ends with the only blank line in it: count them to stop early.
      if (opts.replies !== undefined && got.split('\n\n').length - 1 >= opts.replies) c.destroy();
    });
    c.on('close', () => {
      clearTimeout(timer);
      resolve(got);
    });
    c.on('error', (err: NodeJS.ErrnoException) => {
      // A server that closes on an error reply may reset a client still writing.
      if (err.code !== 'EPIPE' && err.code !== 'ECONNRESET') reject(err);
    });
    c.on('connect', async () => {
      for (const chunk of chunks) {
        c.write(chunk);
        await new Promise((r) => setTimeout(r, 5));
      }
      if (opts.halfClose) c.end();
    });
  });
}

// ---- wg against our socket ----------------------------------------------------------------------

test('wg set, show, dump, showconf and show all dump against our socket', async (t) => {
  const dev = new MemoryDevice();
  const { name, server } = await serve(t, dev);
  assert.equal(server.path, `${UAPI_DIR}/${name}.sock`);
  const dir = tempDir(t);
  const priv = genkey();
  const pub = pubkey(priv);
  const peer = pubkey(genkey());
  const psk = execFileSync('wg', ['genpsk']).toString().trim();
  writeFileSync(join(dir, 'key'), priv, { mode: 0o600 });
  writeFileSync(join(dir, 'psk'), psk, { mode: 0o600 });

  await wg('set', name, 'private-key', join(dir, 'key'), 'listen-port', '51999', 'fwmark', '0x10',
    'peer', peer, 'endpoint', '1.2.3.4:5', 'allowed-ips', '10.0.0.2/32,fd00::2/128', 'persistent-keepalive', '25',
    'preshared-key', join(dir, 'psk'));
  // The state wg asked for, exactly.
  assert.deepEqual(dev.privateKey, b64(priv));
  assert.equal(dev.listenPort, 51999);
  assert.equal(dev.fwmark, 16);
  assert.equal(dev.peers.size, 1);
  const p = dev.peer(peer)!;
  assert.ok(p, 'the peer exists');
  assert.deepEqual(p.presharedKey, b64(psk));
  assert.equal(formatEndpoint(p.endpoint!), '1.2.3.4:5');
  assert.equal(p.persistentKeepalive, 25);
  assert.deepEqual(p.allowedIps.map(formatPrefix), ['10.0.0.2/32', 'fd00::2/128']);

  const show = await wg('show', name);
  const handshake = /^ {2}latest handshake: (\d+) seconds ago$/m.exec(show);
  assert.ok(handshake, show);
  const ago = Number(handshake[1]);
  assert.ok(ago >= 42 && ago <= 42 + 60, `an age computed by wg from an epoch time, not 55 years: ${ago}`);
  assert.equal(show, [
    `interface: ${name}`,
    `  public key: ${pub}`, // derived by wg from the private_key line
    '  private key: (hidden)',
    '  listening port: 51999',
    '  fwmark: 0x10',
    '',
    `peer: ${peer}`,
    '  preshared key: (hidden)',
    '  endpoint: 1.2.3.4:5',
    '  allowed ips: 10.0.0.2/32, fd00::2/128',
    `  latest handshake: ${ago} seconds ago`,
    '  transfer: 1.21 KiB received, 5.54 KiB sent',
    '  persistent keepalive: every 25 seconds',
    '',
  ].join('\n'));
  assert.equal(await wg('show', name, 'public-key'), `${pub}\n`);
  assert.equal(await wg('show', name, 'latest-handshakes'), `${peer}\t${Math.floor(HANDSHAKE_MS / 1000)}\n`);

  const dumpLines = [
    [priv, pub, '51999', '0x10'],
    [peer, psk, '1.2.3.4:5', '10.0.0.2/32,fd00::2/128', String(Math.floor(HANDSHAKE_MS / 1000)), String(RX), String(TX), '25'],
  ];
  assert.equal(await wg('show', name, 'dump'), dumpLines.map((l) => `${l.join('\t')}\n`).join(''));
  const all = (await wg('show', 'all', 'dump')).split('\n').filter((l) => l.startsWith(`${name}\t`));
  assert.deepEqual(all, dumpLines.map((l) => [name, ...l].join('\t')), 'show all finds our socket among the others');

  assert.equal(await wg('showconf', name), [
    '[Interface]', 'ListenPort = 51999', 'FwMark = 0x10', `PrivateKey = ${priv}`, '',
    '[Peer]', `PublicKey = ${peer}`, `PresharedKey = ${psk}`, 'AllowedIPs = 10.0.0.2/32, fd00::2/128',
    'Endpoint = 1.2.3.4:5', 'PersistentKeepalive = 25', '',
  ].join('\n'));

  await wg('set', name, 'peer', peer, 'remove');
  assert.equal(dev.peers.size, 0);
  assert.equal(await wg('show', name, 'peers'), '');
});

test('wg set with IPv6 endpoint, allowed-ips replacement, removal of the private key and preshared key', async (t) => {
  const dev = new MemoryDevice();
  const { name } = await serve(t, dev);
  const dir = tempDir(t);
  const peer = pubkey(genkey());
  writeFileSync(join(dir, 'key'), genkey());
  writeFileSync(join(dir, 'psk'), execFileSync('wg', ['genpsk']));
  await wg('set', name, 'private-key', join(dir, 'key'), 'peer', peer, 'endpoint', '[fd00::1]:51820', 'allowed-ips', '10.1.0.0/16', 'preshared-key', join(dir, 'psk'));
  assert.equal(formatEndpoint(dev.peer(peer)!.endpoint!), '[fd00::1]:51820');
  assert.match(await wg('show', name, 'endpoints'), new RegExp(`\\[fd00::1\\]:51820\n$`));

  // allowed-ips replaces the list (replace_allowed_ips=true), an empty value clears it.
  await wg('set', name, 'peer', peer, 'allowed-ips', 'fd00::/64,0.0.0.0/0');
  assert.deepEqual(dev.peer(peer)!.allowedIps.map(formatPrefix), ['fd00::/64', '0.0.0.0/0']);
  await wg('set', name, 'peer', peer, 'allowed-ips', '');
  assert.deepEqual(dev.peer(peer)!.allowedIps, []);

  // /dev/null as a key file is wg's spelling of "remove": a zero key on the wire.
  await wg('set', name, 'peer', peer, 'preshared-key', '/dev/null');
  assert.equal(dev.peer(peer)!.presharedKey, null);
  await wg('set', name, 'private-key', '/dev/null');
  assert.equal(dev.privateKey, null);
  const show = await wg('show', name);
  assert.ok(!show.includes('public key:') && !show.includes('preshared key:'), show);

  // This wg predates `allowed-ips -prefix`; wireguard-go's `allowed_ip=-prefix` is tested raw below.
  const { stderr } = await wgFails('set', name, 'peer', peer, 'allowed-ips', '-10.0.0.1/32');
  assert.match(stderr, /Unable to parse IP address/);
});

test('wg setconf replaces the configuration; wg syncconf reconciles it without touching unchanged peers', async (t) => {
  const dev = new MemoryDevice();
  const { name } = await serve(t, dev);
  const dir = tempDir(t);
  const priv = genkey();
  const [a, b, c] = [genkey(), genkey(), genkey()].map(pubkey);
  writeFileSync(join(dir, 'old.conf'), `[Interface]\nListenPort = 1000\n\n[Peer]\nPublicKey = ${pubkey(genkey())}\nAllowedIPs = 10.9.9.9/32\n`);
  await wg('setconf', name, join(dir, 'old.conf'));
  assert.equal(dev.peers.size, 1);

  writeFileSync(join(dir, 'wg.conf'), [
    '[Interface]', `PrivateKey = ${priv}`, 'ListenPort = 51998', 'FwMark = 7', '',
    '[Peer]', `PublicKey = ${a}`, 'AllowedIPs = 10.0.0.1/32, fd00::1/128', 'Endpoint = [2001:db8::1]:443', '',
    '[Peer]', `PublicKey = ${b}`, 'AllowedIPs = 10.0.0.2/32', 'PersistentKeepalive = 10', '',
  ].join('\n'));
  await wg('setconf', name, join(dir, 'wg.conf'));
  assert.deepEqual(dev.privateKey, b64(priv));
  assert.equal(dev.listenPort, 51998);
  assert.equal(dev.fwmark, 7);
  assert.deepEqual([...dev.peers.values()].map((p) => p.publicKey.toString('base64')), [a, b], 'setconf replaced the peers');
  assert.deepEqual(dev.peer(a)!.allowedIps.map(formatPrefix), ['10.0.0.1/32', 'fd00::1/128']);
  assert.equal(formatEndpoint(dev.peer(a)!.endpoint!), '[2001:db8::1]:443');
  assert.equal(dev.peer(b)!.persistentKeepalive, 10);
  // showconf round-trips through setconf.
  const conf = await wg('showconf', name);
  writeFileSync(join(dir, 'again.conf'), conf);
  await wg('setconf', name, join(dir, 'again.conf'));
  assert.equal(await wg('showconf', name), conf);

  // syncconf: b is dropped, a changes its allowed IPs, c is new. wg reads the state first (get)
  // and sends only the difference, so a keeps its session (here: the same object, same counters).
  const aBefore = dev.peer(a);
  writeFileSync(join(dir, 'sync.conf'), [
    '[Interface]', `PrivateKey = ${priv}`, 'ListenPort = 51998', '',
    '[Peer]', `PublicKey = ${a}`, 'AllowedIPs = 10.0.0.11/32', '',
    '[Peer]', `PublicKey = ${c}`, 'AllowedIPs = 10.0.0.3/32', 'Endpoint = 192.0.2.3:3', '',
  ].join('\n'));
  await wg('syncconf', name, join(dir, 'sync.conf'));
  assert.deepEqual([...dev.peers.keys()].map((k) => Buffer.from(k, 'hex').toString('base64')), [a, c]);
  assert.equal(dev.peer(a), aBefore, 'syncconf did not remove and re-add an unchanged peer');
  assert.deepEqual(dev.peer(a)!.allowedIps.map(formatPrefix), ['10.0.0.11/32']);
  assert.equal(formatEndpoint(dev.peer(a)!.endpoint!), '[2001:db8::1]:443', 'syncconf keeps what the file does not mention');
  assert.equal(formatEndpoint(dev.peer(c)!.endpoint!), '192.0.2.3:3');
});

test('a set the target refuses makes wg fail with the errno the target chose, and changes nothing', async (t) => {
  const dev = new MemoryDevice();
  dev.busyPort = 4242;
  const { name } = await serve(t, dev);
  const { code, stderr } = await wgFails('set', name, 'listen-port', '4242');
  assert.equal(code, 1);
  // Only a negative errno on the wire gives wg the right message (a positive one prints "Unknown error -98").
  assert.match(stderr, /Unable to modify interface: Address already in use/);
  assert.equal(dev.listenPort, 0);
  assert.equal(dev.applied, 0);

  const readOnly: Configurable = {
    snapshot: () => ({ privateKey: null, listenPort: 0, fwmark: 0, peers: [] }),
    apply: () => { throw new ConfigError(1, 'meshd owns this interface'); },
  };
  const ro = await serve(t, readOnly);
  assert.match((await wgFails('set', ro.name, 'fwmark', '1')).stderr, /Operation not permitted/);
  assert.equal(await wg('show', ro.name), `interface: ${ro.name}\n`, 'get still works');
});

test('a get the target cannot answer fails wg with that errno', async (t) => {
  const broken: Configurable = {
    snapshot: () => { throw new ConfigError(5, 'engine is shutting down'); },
    apply: () => undefined,
  };
  const { name } = await serve(t, broken);
  const { stderr } = await wgFails('show', name);
  assert.match(stderr, /Input\/output error/, 'a positive errno after a get is what wg reads');
});

test('the real Device behind the socket: wg set, show and setconf', async (t) => {
  const device = new Device({ cipher: new NobleCipher(), output: { send() {}, write() {} } });
  const { name } = await serve(t, device);
  const dir = tempDir(t);
  const priv = genkey();
  const peer = pubkey(genkey());
  writeFileSync(join(dir, 'key'), priv);
  await wg('set', name, 'private-key', join(dir, 'key'), 'listen-port', '51997',
    'peer', peer, 'endpoint', '192.0.2.1:5', 'allowed-ips', '10.0.0.2/32,fd00::2/128', 'persistent-keepalive', '25');
  const dump = (await wg('show', name, 'dump')).trim().split('\n').map((l) => l.split('\t'));
  assert.deepEqual(dump[0], [priv, pubkey(priv), '51997', 'off']);
  const [tx] = dump[1].splice(6, 1);
  assert.deepEqual(dump[1], [peer, '(none)', '192.0.2.1:5', '10.0.0.2/32,fd00::2/128', '0', '0', '25']);
  // Turning on persistent keepalive starts a handshake at once (as in wireguard-go): 148 bytes sent.
  assert.ok(tx === '0' || tx === '148', `tx ${tx}`);
  const other = pubkey(genkey());
  writeFileSync(join(dir, 'wg.conf'), `[Interface]\nPrivateKey = ${priv}\n\n[Peer]\nPublicKey = ${other}\nAllowedIPs = 10.0.0.3/32\n`);
  await wg('setconf', name, join(dir, 'wg.conf'));
  assert.equal(await wg('show', name, 'allowed-ips'), `${other}\t10.0.0.3/32\n`);
});

// ---- the socket itself --------------------------------------------------------------------------

test('the socket file is 0600 in a 0755 directory; a second server on the name is refused; close removes it', async (t) => {
  const dev = new MemoryDevice();
  const parent = tempDir(t);
  const dir = join(parent, 'wireguard');
  const { name, server } = await serve(t, dev, { dir });
  assert.equal(statSync(dir).mode & 0o777, 0o755);
  assert.ok(statSync(server.path).isSocket());
  assert.equal(statSync(server.path).mode & 0o777, 0o600);
  await assert.rejects(UapiServer.listen(name, dev, { dir }), (e: NodeJS.ErrnoException) =>
    e.code === 'EADDRINUSE' && e.message.includes('in use'));
  assert.equal(await exchange(server.path, ['get=1\n\n']), 'errno=0\n\n', 'the refused second server left the first alone');
  await server.close();
  assert.ok(!existsSync(server.path), 'close removes the socket');
  await assert.rejects(UapiServer.listen('a/b', dev, { dir }), /invalid interface name/);
  await assert.rejects(UapiServer.listen('abcdefghijklmnop', dev, { dir }), /invalid interface name/);
});

test('a stale socket left by a killed process is replaced', async (t) => {
  const dir = tempDir(t);
  const name = ifname();
  const path = join(dir, `${name}.sock`);
  const child = spawn(process.execPath, ['-e',
    `require('net').createServer().listen(${JSON.stringify(path)}, () => console.log('up'))`], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((resolve) => child.stdout!.once('data', resolve));
  child.kill('SIGKILL');
  await new Promise((resolve) => child.once('exit', resolve));
  assert.ok(statSync(path).isSocket(), 'the dead process left its socket file behind');
  const server = await UapiServer.listen(name, new MemoryDevice(), { dir });
  t.after(() => server.close());
  assert.equal(await exchange(path, ['get=1\n\n']), 'errno=0\n\n');
});

test('several requests per connection, split anywhere, answered in order; errors keep the connection', async (t) => {
  const dev = new MemoryDevice();
  const { server } = await serve(t, dev, { dir: tempDir(t) });
  const pub = 'ab'.repeat(32);
  const script = `get=1\n\nset=1\nlisten_port=7\npublic_key=${pub}\nallowed_ip=10.0.0.1/32\nallowed_ip=10.0.0.2/32\n\n`
    + 'set=1\nlisten_port=nope\n\n'
    + `set=1\npublic_key=${pub}\nallowed_ip=-10.0.0.1/32\n\nget=1\n\n`;
  // One byte per write: every boundary, including between the two newlines that end a request.
  const reply = await exchange(server.path, [...script], { waitMs: 10_000, replies: 5 });
  assert.equal(reply, [
    'errno=0\n\n',
    'errno=0\n\n',
    'errno=-22\n\n',
    'errno=0\n\n',
    `listen_port=7\npublic_key=${pub}\npreshared_key=${'00'.repeat(32)}\nprotocol_version=1\n`
      + `last_handshake_time_sec=${Math.floor(HANDSHAKE_MS / 1000)}\nlast_handshake_time_nsec=${(HANDSHAKE_MS % 1000) * 1e6}\n`
      + `tx_bytes=${TX}\nrx_bytes=${RX}\npersistent_keepalive_interval=0\nallowed_ip=10.0.0.2/32\nerrno=0\n\n`,
  ].join(''));
  assert.equal(dev.listenPort, 7, 'the malformed set changed nothing');
  // All at once, in one write, works the same.
  assert.equal(await exchange(server.path, ['get=1\n\nget=1\n\n']), `${formatGetOf(dev)}${formatGetOf(dev)}`);
});

function formatGetOf(dev: MemoryDevice): string {
  // What a get must return for the state; only used where formatGet itself is not under test.
  const s = dev.snapshot();
  const lines = [`listen_port=${s.listenPort}`];
  for (const p of s.peers) {
    lines.push(`public_key=${p.publicKey.toString('hex')}`, `preshared_key=${'00'.repeat(32)}`, 'protocol_version=1',
      `last_handshake_time_sec=${Math.floor(HANDSHAKE_MS / 1000)}`, `last_handshake_time_nsec=${(HANDSHAKE_MS % 1000) * 1e6}`,
      `tx_bytes=${TX}`, `rx_bytes=${RX}`, 'persistent_keepalive_interval=0', ...p.allowedIps.map((a) => `allowed_ip=${formatPrefix(a)}`));
  }
  return `${lines.join('\n')}\nerrno=0\n\n`;
}

test('a set cut short by end of input is applied, as wireguard-go does; a probe that only connects is harmless', async (t) => {
  const dev = new MemoryDevice();
  const { server } = await serve(t, dev, { dir: tempDir(t) });
  assert.equal(await exchange(server.path, [], { halfClose: true }), '', 'connect and close: no reply, no error');
  assert.equal(await exchange(server.path, ['set=1\nlisten_port=9\n'], { halfClose: true }), 'errno=0\n\n');
  assert.equal(dev.listenPort, 9);
  assert.equal(await exchange(server.path, ['get=1\n'], { halfClose: true }), '', 'a get cut short gets nothing');
});

test('protocol errors end the connection with an errno; an oversized request is refused, the server lives on', async (t) => {
  const dev = new MemoryDevice();
  const { server } = await serve(t, dev, { dir: tempDir(t), maxRequestBytes: 4096 });
  assert.equal(await exchange(server.path, ['hello\nget=1\n\n']), 'errno=-71\n\n', 'unknown operation: EPROTO, then close');
  assert.equal(await exchange(server.path, ['x'.repeat(100)]), 'errno=-71\n\n', 'an endless operation line');
  assert.equal(await exchange(server.path, ['get=1\nget=1\n\n']), 'errno=22\n\n', 'get=1 must be followed by a blank line');
  const big = `set=1\n${'fwmark=1\n'.repeat(1000)}`;
  assert.equal(await exchange(server.path, [big]), 'errno=-90\n\n', 'EMSGSIZE before the request is even complete');
  assert.equal(await exchange(server.path, [`${big}\n`]), 'errno=-90\n\n', 'EMSGSIZE for a complete one too');
  assert.equal(await exchange(server.path, [`set=1\n${'fwmark=1\n'.repeat(400)}\n`]), 'errno=0\n\n', 'just under the bound is fine');
  assert.equal(dev.fwmark, 1);
  assert.equal(await exchange(server.path, ['\u0000\u00ff\n\n']), 'errno=-71\n\n');
  assert.equal(await exchange(server.path, ['get=1\n\n']), `fwmark=1\nerrno=0\n\n`, 'still serving');
});

test('onSocketRemoved fires when the socket file is deleted, and close then leaves a new owner\'s file alone', async (t) => {
  const dir = tempDir(t);
  const { server } = await serve(t, new MemoryDevice(), { dir, watchIntervalMs: 20 });
  const removed = new Promise<void>((resolve) => server.onSocketRemoved(resolve));
  let early = false;
  server.onSocketRemoved(() => (early = true));
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(early, false, 'not while the socket is in place');
  rmSync(server.path);
  await removed;
  assert.equal(early, true, 'every callback is called');
  writeFileSync(server.path, 'someone else');
  await server.close();
  assert.ok(existsSync(server.path), 'close removes only its own socket');
});

// ---- wg-quick files -----------------------------------------------------------------------------

test('formatWgQuick writes a wg-quick file whose `wg-quick strip` form wg setconf applies', async (t) => {
  const dev = new MemoryDevice();
  const { name } = await serve(t, dev);
  const dir = tempDir(t);
  const priv = genkey();
  const [a, b] = [pubkey(genkey()), pubkey(genkey())];
  const psk = execFileSync('wg', ['genpsk']).toString().trim();
  const text = formatWgQuick({
    privateKey: b64(priv), addresses: ['10.0.0.2/24', 'fd00::2/64'], listenPort: 51820, dns: ['10.0.0.1', 'mesh.example'], mtu: 1380,
    peers: [
      { publicKey: b64(a), presharedKey: b64(psk), allowedIps: [parsePrefix('10.0.0.0/24'), parsePrefix('fd00::/64')],
        endpoint: 'vpn.example.com:51820', persistentKeepalive: 25, comment: 'hub\nPostUp = touch /tmp/pwned' },
      { publicKey: b64(b), allowedIps: [], endpoint: { addr: addrFromString('2001:db8::1'), port: 443 } },
    ],
  });
  assert.equal(text, [
    '[Interface]', `PrivateKey = ${priv}`, 'Address = 10.0.0.2/24, fd00::2/64', 'ListenPort = 51820',
    'DNS = 10.0.0.1, mesh.example', 'MTU = 1380', '',
    '[Peer]', '# hub PostUp = touch /tmp/pwned', `PublicKey = ${a}`, `PresharedKey = ${psk}`,
    'AllowedIPs = 10.0.0.0/24, fd00::/64', 'Endpoint = vpn.example.com:51820', 'PersistentKeepalive = 25', '',
    '[Peer]', `PublicKey = ${b}`, 'Endpoint = [2001:db8::1]:443', '',
  ].join('\n'));
  const file = join(dir, `${name}.conf`); // wg-quick takes the interface name from the file name
  writeFileSync(file, text, { mode: 0o600 });
  const stripped = execFileSync('wg-quick', ['strip', file]).toString();
  assert.ok(!/^(Address|DNS|MTU|PostUp)/m.test(stripped), stripped);
  // The endpoint is a DNS name: wg resolves it, so give it one that resolves without a network.
  writeFileSync(join(dir, 'stripped.conf'), stripped.replace('vpn.example.com', 'localhost'));
  await wg('setconf', name, join(dir, 'stripped.conf'));
  assert.deepEqual(dev.privateKey, b64(priv));
  assert.equal(dev.listenPort, 51820);
  assert.deepEqual(dev.peer(a)!.presharedKey, b64(psk));
  assert.deepEqual(dev.peer(a)!.allowedIps.map(formatPrefix), ['10.0.0.0/24', 'fd00::/64']);
  assert.equal(dev.peer(a)!.persistentKeepalive, 25);
  assert.match(formatEndpoint(dev.peer(a)!.endpoint!), /^(127\.0\.0\.1|\[::1\]):51820$/);
  assert.equal(formatEndpoint(dev.peer(b)!.endpoint!), '[2001:db8::1]:443');
});

test('formatWgQuick refuses values wg-quick could misread (it runs PostUp lines as root)', () => {
  const base = { privateKey: Buffer.alloc(32, 1), addresses: ['10.0.0.2/24'], peers: [] };
  const peer = { publicKey: Buffer.alloc(32, 2), allowedIps: [] };
  const bad: Array<[string, () => string]> = [
    ['endpoint with a newline', () => formatWgQuick({ ...base, peers: [{ ...peer, endpoint: 'a.example:1\nPostUp = id' }] })],
    ['endpoint without port', () => formatWgQuick({ ...base, peers: [{ ...peer, endpoint: 'a.example' }] })],
    ['unbracketed IPv6 endpoint', () => formatWgQuick({ ...base, peers: [{ ...peer, endpoint: 'fd00::1:5' }] })],
    ['address without length', () => formatWgQuick({ ...base, addresses: ['10.0.0.2'] })],
    ['address with a newline', () => formatWgQuick({ ...base, addresses: ['10.0.0.2/24\nPostUp = id'] })],
    ['DNS entry with a space', () => formatWgQuick({ ...base, dns: ['1.1.1.1; id'] })],
    ['short key', () => formatWgQuick({ ...base, privateKey: Buffer.alloc(31) })],
    ['port out of range', () => formatWgQuick({ ...base, listenPort: 70000 })],
  ];
  for (const [what, f] of bad) assert.throws(f, /invalid|must be/, what);
});
