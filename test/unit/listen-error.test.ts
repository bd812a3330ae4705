// A libp2p node that cannot listen: one line naming the port (src/discovery/listen-error.ts), from
// libp2p's real error on loopback; and the port is free again afterwards (nothing half-started).
import '../../src/util/polyfill.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { listenError } from '../../src/discovery/listen-error.js';
import { createMeshNode } from '../../src/discovery/p2p.js';
import { newKey } from './helpers/mesh-fixture.js';

test('listenError: a port in use or refused is one line with the port; anything else is left as it is', () => {
  // libp2p 3's UnsupportedListenAddressesError text, trimmed
  const inUse = new Error('Some configured addresses failed to be listened on, you may need to remove one or more listen addresses from your configuration or set `transportManager.faultTolerance` to NO_FATAL:\n\n' +
    '  /ip4/0.0.0.0/tcp/4001: Error: listen EADDRINUSE: address already in use 0.0.0.0:4001\n      at Server.setupListenHandle [as _listen2] (node:net:1908:16)\n\n' +
    '  /ip6/::/tcp/4001: Error: listen EADDRINUSE: address already in use :::4001\n');
  const e = listenError(inUse) as Error & { code?: string };
  assert.equal(e.message, 'TCP port 4001 is in use: another program (another meshd daemon?) listens on it; stop it, or start meshd daemon with another --p2p-port');
  assert.equal(e.code, 'EADDRINUSE');
  const denied = listenError(new Error('\n  /ip4/0.0.0.0/tcp/80: Error: listen EACCES: permission denied 0.0.0.0:80\n')) as Error & { code?: string };
  assert.match(denied.message, /^TCP port 80 cannot be listened on \(permission denied\)/);
  assert.equal(denied.code, 'EACCES');
  const other = new Error('something else');
  assert.equal(listenError(other), other);
  assert.equal(listenError('text').message, 'text');
});

test('createMeshNode on a taken port fails with that line, and leaves the port to the next node once it is free', async () => {
  const holder = createServer();
  await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
  const port = (holder.address() as AddressInfo).port;
  const opts = async () => ({ privateKey: await newKey(), psk: randomBytes(32).toString('hex'), listen: [`/ip4/127.0.0.1/tcp/${port}`], gate: { allow: () => true } });
  await assert.rejects(createMeshNode(await opts()), (e: Error & { code?: string }) =>
    e.code === 'EADDRINUSE' && e.message === `TCP port ${port} is in use: another program (another meshd daemon?) listens on it; stop it, or start meshd daemon with another --p2p-port`);
  await new Promise<void>((resolve) => holder.close(() => resolve()));
  const node = await createMeshNode(await opts());
  try {
    assert.ok(node.getMultiaddrs().some((a) => a.toString().includes(`/tcp/${port}/`)));
  } finally {
    await node.stop();
  }
});
