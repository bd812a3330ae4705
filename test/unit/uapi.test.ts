// The UAPI text protocol, and `wg` itself talking to our socket.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import { formatGet, parseSet } from '../../src/wg/uapi.js';
import { UapiServer } from '../../src/wg/uapi-server.js';
import { ConfigError, EINVAL, type Configurable, type DeviceSet, type DeviceSnapshot } from '../../src/wg/config.js';
import { Device } from '../../src/wg/device.js';
import { NobleCipher } from '../../src/wg/cipher.js';
import { generatePrivateKey, staticKey, toBase64 } from '../../src/wg/crypto.js';

const run = promisify(execFile);

test('parseSet reads every key wg sends', () => {
  const pub = randomBytes(32).toString('hex');
  const psk = randomBytes(32).toString('hex');
  const s = parseSet([
    `private_key=${'11'.repeat(32)}`, 'listen_port=51820', 'fwmark=7', 'replace_peers=true',
    `public_key=${pub}`, 'update_only=true', `preshared_key=${psk}`, 'endpoint=[fd00::1]:9',
    'persistent_keepalive_interval=25', 'replace_allowed_ips=true', 'allowed_ip=10.0.0.0/24',
    'allowed_ip=-10.1.0.0/16', 'allowed_ip=fd00::/64', 'protocol_version=1',
    `public_key=${'22'.repeat(32)}`, 'remove=true', `preshared_key=${'00'.repeat(32)}`,
  ].join('\n'));
  assert.equal(s.listenPort, 51820);
  assert.equal(s.fwmark, 7);
  assert.equal(s.replacePeers, true);
  assert.equal(s.peers.length, 2);
  const [p, q] = s.peers;
  assert.equal(p.publicKey.toString('hex'), pub);
  assert.equal(p.updateOnly, true);
  assert.equal(p.presharedKey!.toString('hex'), psk);
  assert.equal(p.endpoint!.port, 9);
  assert.equal(p.persistentKeepalive, 25);
  assert.deepEqual(p.allowedIps.map((a) => a.remove), [false, true, false]);
  assert.equal(q.remove, true);
  assert.equal(q.presharedKey, null, 'a zero key means none');
  assert.equal(parseSet(`private_key=${'00'.repeat(32)}`).privateKey, null, 'a zero private key removes it');
});

test('parseSet refuses malformed input with EINVAL and a clear message', () => {
  const bad = [
    'garbage', '=x', 'private_key=abc', `private_key=${'zz'.repeat(32)}`, 'listen_port=70000', 'listen_port=-1',
    'remove=true', 'unknown=1', `public_key=${'11'.repeat(32)}\nendpoint=nonsense`, `public_key=${'11'.repeat(32)}\nallowed_ip=10.0.0.0/33`,
    `public_key=${'11'.repeat(32)}\nprotocol_version=2`, `public_key=${'11'.repeat(32)}\nremove=yes`, `public_key=${'11'.repeat(31)}`,
  ];
  for (const text of bad) {
    assert.throws(() => parseSet(text), (e: unknown) => e instanceof ConfigError && e.errno === EINVAL && e.message.length > 0, text);
  }
});

test('formatGet writes epoch handshake times, hex keys and errno last', () => {
  const text = formatGet({
    privateKey: Buffer.alloc(32, 1), listenPort: 5, fwmark: 0,
    peers: [{ publicKey: Buffer.alloc(32, 2), presharedKey: null, endpoint: null, lastHandshakeMs: 1_700_000_000_250, rxBytes: 10, txBytes: 20, persistentKeepalive: 0, allowedIps: [] }],
  });
  assert.match(text, /^private_key=(01){32}\nlisten_port=5\npublic_key=(02){32}\npreshared_key=(00){32}\nprotocol_version=1\n/);
  assert.match(text, /last_handshake_time_sec=1700000000\nlast_handshake_time_nsec=250000000\ntx_bytes=20\nrx_bytes=10\n/);
  assert.ok(text.endsWith('errno=0\n\n'));
  assert.ok(!text.includes('fwmark'));
});

test('wg set, show, showconf, dump and setconf against a device behind our socket', async (t) => {
  const ifname = `mdu${randomBytes(3).toString('hex')}`;
  const device = new Device({ cipher: new NobleCipher(), output: { send() {}, write() {} } });
  const server = await UapiServer.listen(ifname, device);
  const dir = mkdtempSync(join(tmpdir(), 'meshd-uapi-'));
  t.after(() => {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const priv = generatePrivateKey();
  const pub = toBase64(staticKey(priv).publicKey);
  const peer = toBase64(staticKey(generatePrivateKey()).publicKey);
  writeFileSync(join(dir, 'key'), toBase64(priv), { mode: 0o600 });
  writeFileSync(join(dir, 'psk'), toBase64(randomBytes(32)), { mode: 0o600 });
  await run('wg', ['set', ifname, 'private-key', join(dir, 'key'), 'listen-port', '51999', 'fwmark', '0x10',
    'peer', peer, 'endpoint', '192.0.2.1:5', 'allowed-ips', '10.0.0.2/32,fd00::2/128', 'persistent-keepalive', '25', 'preshared-key', join(dir, 'psk')]);
  const { stdout: show } = await run('wg', ['show', ifname]);
  assert.match(show, new RegExp(`public key: ${pub.replace(/[+/]/g, '\\$&')}`));
  assert.match(show, /listening port: 51999/);
  assert.match(show, /fwmark: 0x10/);
  assert.match(show, /endpoint: 192\.0\.2\.1:5/);
  assert.match(show, /allowed ips: 10\.0\.0\.2\/32, fd00::2\/128/);
  assert.match(show, /preshared key: \(hidden\)/);
  assert.match(show, /persistent keepalive: every 25 seconds/);
  const { stdout: dump } = await run('wg', ['show', ifname, 'dump']);
  const peerLine = dump.trim().split('\n')[1].split('\t');
  assert.equal(peerLine[0], peer);
  assert.equal(peerLine[4], '0', 'never handshaked');
  const { stdout: all } = await run('wg', ['show', 'all', 'dump']);
  assert.ok(all.split('\n').some((l) => l.startsWith(`${ifname}\t${peer}`)));

  const { stdout: conf } = await run('wg', ['showconf', ifname]);
  assert.match(conf, /ListenPort = 51999/);
  const other = toBase64(staticKey(generatePrivateKey()).publicKey);
  writeFileSync(join(dir, 'wg.conf'), `[Interface]\nPrivateKey = ${toBase64(priv)}\nListenPort = 51998\n\n[Peer]\nPublicKey = ${other}\nAllowedIPs = 10.0.0.3/32\n`);
  await run('wg', ['setconf', ifname, join(dir, 'wg.conf')]);
  const snap = device.snapshot();
  assert.equal(snap.peers.length, 1, 'setconf replaced the peers');
  assert.equal(toBase64(snap.peers[0].publicKey), other);
  assert.equal(device.listenPort, 51998);

  await run('wg', ['set', ifname, 'peer', other, 'remove']);
  assert.equal(device.snapshot().peers.length, 0);
});

test('a set the target refuses makes wg fail; a second server on the same name is refused; close removes the socket', async (t) => {
  const ifname = `mdu${randomBytes(3).toString('hex')}`;
  const refusing: Configurable = {
    snapshot: (): DeviceSnapshot => ({ privateKey: null, listenPort: 0, fwmark: 0, peers: [] }),
    apply: (_: DeviceSet) => { throw new ConfigError(EINVAL, 'read-only'); },
  };
  const server = await UapiServer.listen(ifname, refusing);
  t.after(() => server.close());
  await assert.rejects(run('wg', ['set', ifname, 'listen-port', '1']), /Invalid argument|Unable/);
  await assert.rejects(UapiServer.listen(ifname, refusing), (e: NodeJS.ErrnoException) => e.code === 'EADDRINUSE');
  server.close();
  assert.ok(!existsSync(`/var/run/wireguard/${ifname}.sock`), 'close removes the socket');
});
