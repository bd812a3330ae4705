// The UAPI text protocol as pure functions: formatGet writes what wireguard-tools reads, parseSet
// accepts what wireguard-go accepts and refuses the rest with EINVAL. Interop with the real `wg`
// is in uapi-wg.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatErrno, formatGet, parseSet } from '../../src/wg/uapi.js';
import { ConfigError, EINVAL, type DeviceSnapshot } from '../../src/wg/config.js';
import { addrFromString } from '../../src/wg/endpoint.js';
import { formatPrefix, parsePrefix } from '../../src/wg/prefix.js';

const hex = (byte: number) => byte.toString(16).padStart(2, '0').repeat(32);
const PUB = hex(0x11);
const ZERO = hex(0);

/** A set with one peer: the peer's lines after its public_key line. */
const peerSet = (...lines: string[]) => parseSet([`public_key=${PUB}`, ...lines].join('\n'));

test('parseSet reads every device and peer key wg sends', () => {
  const psk = hex(0x33);
  const s = parseSet([
    'set=1', `private_key=${hex(0x22)}`, 'listen_port=51820', 'fwmark=4294967295', 'replace_peers=true',
    `public_key=${PUB}`, 'update_only=true', `preshared_key=${psk}`, 'endpoint=192.0.2.1:9',
    'persistent_keepalive_interval=25', 'replace_allowed_ips=true', 'allowed_ip=10.0.0.0/24',
    'allowed_ip=-10.1.0.0/16', 'allowed_ip=fd00::/64', 'protocol_version=1',
    `public_key=${hex(0x44)}`, 'remove=true',
    '', '',
  ].join('\n'));
  assert.equal(s.privateKey!.toString('hex'), hex(0x22));
  assert.equal(s.listenPort, 51820);
  assert.equal(s.fwmark, 0xffffffff);
  assert.equal(s.replacePeers, true);
  assert.equal(s.peers.length, 2);
  const [p, q] = s.peers;
  assert.equal(p.publicKey.toString('hex'), PUB);
  assert.equal(p.updateOnly, true);
  assert.equal(p.remove, false);
  assert.equal(p.presharedKey!.toString('hex'), psk);
  assert.deepEqual(p.endpoint, { addr: addrFromString('192.0.2.1'), port: 9 });
  assert.equal(p.persistentKeepalive, 25);
  assert.equal(p.replaceAllowedIps, true);
  assert.deepEqual(p.allowedIps.map((a) => [formatPrefix(a.prefix), a.remove]), [
    ['10.0.0.0/24', false], ['10.1.0.0/16', true], ['fd00::/64', false],
  ]);
  assert.equal(q.publicKey.toString('hex'), hex(0x44));
  assert.equal(q.remove, true);
  assert.equal(q.presharedKey, undefined, 'untouched keys stay undefined');
  assert.equal(q.endpoint, undefined);
  assert.equal(q.persistentKeepalive, undefined);
});

test('parseSet: an empty set changes nothing', () => {
  assert.deepEqual(parseSet(''), { replacePeers: false, peers: [] });
  assert.deepEqual(parseSet('set=1\n\n'), { replacePeers: false, peers: [] });
  const s = parseSet('listen_port=0');
  assert.equal(s.listenPort, 0, 'port 0 means pick one');
  assert.equal(s.privateKey, undefined);
  assert.equal(s.fwmark, undefined);
});

test('parseSet: zero keys remove the private key and mean "no preshared key"', () => {
  assert.equal(parseSet(`private_key=${ZERO}`).privateKey, null);
  assert.equal(peerSet(`preshared_key=${ZERO}`).peers[0].presharedKey, null);
  assert.equal(parseSet(`private_key=${'AB'.repeat(32)}`).privateKey!.toString('hex'), 'ab'.repeat(32), 'upper-case hex is hex');
  // A zero public key is a key like any other (wireguard-go creates the peer).
  assert.equal(parseSet(`public_key=${ZERO}`).peers[0].publicKey.toString('hex'), ZERO);
});

test('parseSet: IPv6 endpoints and prefixes, host bits cleared as the allowed-IPs table stores them', () => {
  const p = peerSet(
    'endpoint=[fd00::1]:51820', 'allowed_ip=fd00:1:2:3::5/64', 'allowed_ip=10.9.8.7/8',
    'allowed_ip=::ffff:10.0.0.1/128', 'allowed_ip=::/0', 'allowed_ip=0.0.0.0/0',
  ).peers[0];
  assert.deepEqual(p.endpoint, { addr: addrFromString('fd00::1'), port: 51820 });
  assert.deepEqual(p.allowedIps.map((a) => formatPrefix(a.prefix)), [
    'fd00:1:2:3::/64', '10.0.0.0/8', '::ffff:10.0.0.1/128', '::/0', '0.0.0.0/0',
  ]);
  assert.equal(p.allowedIps[2].prefix.addr.length, 16, 'a v4-mapped prefix stays IPv6');
  // A zone is allowed on an endpoint (netip.ParseAddrPort) and dropped.
  assert.deepEqual(peerSet('endpoint=[fe80::1%eth0]:7').peers[0].endpoint, { addr: addrFromString('fe80::1'), port: 7 });
});

test('parseSet: replace_allowed_ips drops the allowed_ip lines before it, as wireguard-go clears at that line', () => {
  const p = peerSet('allowed_ip=10.0.0.1/32', 'replace_allowed_ips=true', 'allowed_ip=10.0.0.2/32').peers[0];
  assert.equal(p.replaceAllowedIps, true);
  assert.deepEqual(p.allowedIps.map((a) => formatPrefix(a.prefix)), ['10.0.0.2/32']);
});

test('parseSet: after remove=true a peer\'s lines are checked but not kept; the next public_key starts afresh', () => {
  const s = parseSet([`public_key=${PUB}`, 'remove=true', 'endpoint=192.0.2.1:1', 'allowed_ip=10.0.0.1/32',
    `public_key=${PUB}`, 'endpoint=192.0.2.2:2'].join('\n'));
  assert.equal(s.peers.length, 2, 'each public_key line is a step, applied in order');
  assert.equal(s.peers[0].remove, true);
  assert.equal(s.peers[0].endpoint, undefined);
  assert.deepEqual(s.peers[0].allowedIps, []);
  assert.equal(s.peers[1].remove, false);
  assert.equal(s.peers[1].endpoint!.port, 2);
  assert.throws(() => parseSet([`public_key=${PUB}`, 'remove=true', 'endpoint=bad'].join('\n')), ConfigError);
});

test('parseSet refuses malformed input of every kind with EINVAL, naming the line', () => {
  const device: string[] = [
    'garbage', '=x', '=', 'private_key', 'private_key=abc', `private_key=${'zz'.repeat(32)}`, `private_key=${'11'.repeat(33)}`,
    `private_key=${'11'.repeat(31)}1`, `private_key= ${'11'.repeat(32)}`,
    'listen_port=70000', 'listen_port=65536', 'listen_port=-1', 'listen_port=', 'listen_port=+5', 'listen_port= 5', 'listen_port=0x10',
    'listen_port=5\r', 'fwmark=4294967296', 'fwmark=0x10', 'replace_peers=false', 'replace_peers=', 'replace_peers=TRUE',
    'remove=true', 'allowed_ip=10.0.0.0/8', `preshared_key=${ZERO}`, 'unknown=1', 'get=1', 'errno=0', 'public_key=',
    `public_key=${'11'.repeat(31)}`, `public_key=${PUB}x`, 'listen_port=1\n\nfwmark=2',
  ];
  const peer: string[] = [
    'endpoint=nonsense', 'endpoint=', 'endpoint=192.0.2.1', 'endpoint=192.0.2.1:', 'endpoint=192.0.2.1:70000', 'endpoint=fd00::1:5',
    'endpoint=[fd00::1]', 'endpoint=example.com:51820', 'endpoint=[192.0.2.1]:5', 'endpoint=192.0.2.256:5', 'endpoint=192.0.2.1:-5',
    'allowed_ip=10.0.0.0/33', 'allowed_ip=fd00::/129', 'allowed_ip=10.0.0.1', 'allowed_ip=-', 'allowed_ip=', 'allowed_ip=--10.0.0.0/8',
    'allowed_ip=10.0.0.0/08', 'allowed_ip= 10.0.0.0/8', 'allowed_ip=10.0.0.0/8 ', 'allowed_ip=fe80::1%eth0/64', 'allowed_ip=10.0.0.0/',
    'allowed_ip=10.0.0/8', 'allowed_ip=10.0.0.0/8/8', 'allowed_ip=gggg::/16', 'allowed_ip=10.0.0.0/-1',
    'protocol_version=2', 'protocol_version=', 'remove=yes', 'remove=false', 'update_only=false', 'replace_allowed_ips=1',
    'persistent_keepalive_interval=65536', 'persistent_keepalive_interval=-1', 'persistent_keepalive_interval=off',
    'preshared_key=short', `preshared_key=${'g'.repeat(64)}`, 'listen_port=1', `private_key=${hex(1)}`, 'fwmark=1', 'replace_peers=true',
    'last_handshake_time_sec=0', 'tx_bytes=1', 'bogus', 'bogus=1',
  ];
  const cases = [...device, ...peer.map((l) => `public_key=${PUB}\n${l}`)];
  for (const text of cases) {
    assert.throws(() => parseSet(text), (e: unknown) => {
      assert.ok(e instanceof ConfigError, `${JSON.stringify(text)}: a ConfigError, got ${String(e)}`);
      assert.equal(e.errno, EINVAL, text);
      assert.match(e.message, /^set line \d+ ".*": \S/, `${JSON.stringify(text)}: the message names the line and the problem`);
      return true;
    }, JSON.stringify(text));
  }
});

test('parseSet error messages are clear about key order and never repeat a secret', () => {
  assert.throws(() => parseSet('remove=true'), /set line 1 "remove=true": remove is a peer key: it must follow a public_key line/);
  assert.throws(() => peerSet('listen_port=1'), /set line 2 "listen_port=1": listen_port is a device key/);
  assert.throws(() => parseSet('bogus=1'), /unknown device key/);
  assert.throws(() => peerSet('bogus=1'), /unknown peer key/);
  const secret = 'ab'.repeat(31) + 'zz';
  for (const text of [`private_key=${secret}`, `public_key=${PUB}\npreshared_key=${secret}`]) {
    assert.throws(() => parseSet(text), (e: Error) => !e.message.includes(secret) && /must be 64 hex digits/.test(e.message), text);
  }
});

test('parseSet never throws anything but ConfigError, whatever the bytes', () => {
  const alphabet = ['=', '\n', '-', ':', '/', '[', ']', '.', '%', '0', '1', 'f', 'true', 'public_key', 'allowed_ip', 'endpoint', '\u0000', 'é', PUB];
  let seed = 7;
  const rnd = (n: number) => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n;
  for (let i = 0; i < 3000; i++) {
    let text = '';
    for (let j = rnd(12); j > 0; j--) text += alphabet[rnd(alphabet.length)];
    try {
      parseSet(text);
    } catch (e) {
      assert.ok(e instanceof ConfigError && e.errno === EINVAL, `${JSON.stringify(text)} threw ${String(e)}`);
    }
  }
});

const SNAPSHOT: DeviceSnapshot = {
  privateKey: Buffer.alloc(32, 1), listenPort: 51820, fwmark: 0x10,
  peers: [
    {
      publicKey: Buffer.alloc(32, 2), presharedKey: Buffer.alloc(32, 3),
      endpoint: { addr: addrFromString('192.0.2.1'), port: 5 }, lastHandshakeMs: 1_700_000_000_250,
      rxBytes: 10, txBytes: 2 ** 40, persistentKeepalive: 25,
      allowedIps: [parsePrefix('10.0.0.2/32'), parsePrefix('fd00::/64'), parsePrefix('::ffff:10.0.0.0/104')],
    },
    {
      publicKey: Buffer.alloc(32, 4), presharedKey: null, endpoint: { addr: addrFromString('fd00::1'), port: 51820 },
      lastHandshakeMs: 0, rxBytes: 0, txBytes: 0, persistentKeepalive: 0, allowedIps: [],
    },
  ],
};

test('formatGet writes exactly the lines wg reads: hex keys, epoch handshake time, errno=0 and a blank line', () => {
  assert.equal(formatGet(SNAPSHOT), [
    `private_key=${hex(1)}`, 'listen_port=51820', 'fwmark=16',
    `public_key=${hex(2)}`, `preshared_key=${hex(3)}`, 'protocol_version=1', 'endpoint=192.0.2.1:5',
    'last_handshake_time_sec=1700000000', 'last_handshake_time_nsec=250000000', 'tx_bytes=1099511627776', 'rx_bytes=10',
    'persistent_keepalive_interval=25', 'allowed_ip=10.0.0.2/32', 'allowed_ip=fd00::/64', 'allowed_ip=::ffff:10.0.0.0/104',
    `public_key=${hex(4)}`, `preshared_key=${ZERO}`, 'protocol_version=1', 'endpoint=[fd00::1]:51820',
    'last_handshake_time_sec=0', 'last_handshake_time_nsec=0', 'tx_bytes=0', 'rx_bytes=0', 'persistent_keepalive_interval=0',
    'errno=0', '', '',
  ].join('\n'));
});

test('formatGet leaves out what is unset: no private key, port 0, fwmark 0, no endpoint, no peers', () => {
  assert.equal(formatGet({ privateKey: null, listenPort: 0, fwmark: 0, peers: [] }), 'errno=0\n\n');
  assert.equal(formatGet({ privateKey: Buffer.alloc(32), listenPort: 0, fwmark: 0, peers: [] }), 'errno=0\n\n', 'a zero private key is no key');
  const text = formatGet({ ...SNAPSHOT, peers: [{ ...SNAPSHOT.peers[1], endpoint: null }] });
  assert.ok(!text.includes('endpoint='));
  assert.equal(text.indexOf('\n\n'), text.length - 2, 'the only blank line ends the reply');
});

test('formatGet writes digits only, even for odd numbers from the engine', () => {
  const text = formatGet({ ...SNAPSHOT, peers: [{ ...SNAPSHOT.peers[1], lastHandshakeMs: 1_700_000_000_999.75, rxBytes: 12.7, txBytes: NaN, persistentKeepalive: -1 }] });
  assert.match(text, /last_handshake_time_sec=1700000000\nlast_handshake_time_nsec=999750000\n/);
  assert.match(text, /tx_bytes=0\nrx_bytes=12\npersistent_keepalive_interval=0\n/);
  assert.ok(!/=-|e\+|NaN|\./.test(text.replace(/allowed_ip=.*|endpoint=.*/g, '')), text);
});

test('what formatGet writes, parseSet reads back (endpoints and prefixes)', () => {
  const lines = formatGet(SNAPSHOT).split('\n').filter((l) => /^(public_key|endpoint|allowed_ip|persistent_keepalive_interval)=/.test(l));
  const s = parseSet(lines.join('\n'));
  assert.deepEqual(s.peers.map((p) => p.endpoint), SNAPSHOT.peers.map((p) => p.endpoint));
  assert.deepEqual(s.peers.map((p) => p.allowedIps.map((a) => a.prefix)), SNAPSHOT.peers.map((p) => p.allowedIps));
});

test('formatErrno: negative after a set (wg negates it), digits only after a get (wg reads digits only)', () => {
  assert.equal(formatErrno(EINVAL, 'set'), 'errno=-22\n\n');
  assert.equal(formatErrno(-EINVAL, 'set'), 'errno=-22\n\n');
  assert.equal(formatErrno(EINVAL, 'get'), 'errno=22\n\n');
  assert.equal(formatErrno(-EINVAL, 'get'), 'errno=22\n\n');
  assert.equal(formatErrno(0, 'set'), 'errno=0\n\n');
});
