// The pure part of plain WireGuard clients: the wg-quick config and the endpoint a device dials.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PRIVATE_KEY_PLACEHOLDER, clientConfig, hostEndpoint } from '../../src/daemon/clients.js';

const KEY = Buffer.alloc(32, 9).toString('base64');

test('clientConfig: a wg-quick config; without a private key a comment stands in its place', () => {
  const base = { address: '10.0.0.7', dns: '10.0.0.2', hostKey: KEY, endpoint: '198.51.100.7:51820', allowedIps: ['10.0.0.0/24', '192.168.50.0/24'] };
  assert.equal(clientConfig({ ...base, privateKey: KEY }), [
    '[Interface]', `PrivateKey = ${KEY}`, 'Address = 10.0.0.7/32', 'DNS = 10.0.0.2', '',
    '[Peer]', `PublicKey = ${KEY}`, 'Endpoint = 198.51.100.7:51820', 'AllowedIPs = 10.0.0.0/24, 192.168.50.0/24', 'PersistentKeepalive = 25', '',
  ].join('\n'));
  const noKey = clientConfig({ ...base, privateKey: null });
  assert.ok(noKey.includes(`\n${PRIVATE_KEY_PLACEHOLDER}\n`));
  assert.ok(!/^PrivateKey/m.test(noKey));
});

test('hostEndpoint: the first public endpoint, else the first one; none: null', () => {
  assert.equal(hostEndpoint(['192.168.1.5:51820', '203.0.113.9:40000', '198.51.100.1:51820']), '192.168.1.5:51820', 'documentation ranges are not public');
  assert.equal(hostEndpoint(['192.168.1.5:51820', '8.8.8.8:40000', '[2606:4700::1]:51820']), '8.8.8.8:40000');
  assert.equal(hostEndpoint(['10.1.2.3:51820', '[2606:4700::1]:51820']), '[2606:4700::1]:51820');
  assert.equal(hostEndpoint(['10.1.2.3:51820']), '10.1.2.3:51820');
  assert.equal(hostEndpoint([]), null);
});
