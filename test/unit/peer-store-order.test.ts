// libp2p's peer store sorts a peer's addresses, protocols, metadata and tags so that the same peer
// always encodes to the same bytes. Upstream sorts with String.prototype.localeCompare, and the
// first call loads ICU's collation data into the process: about 3 MB of every daemon's RSS, for an
// order that only has to be stable. patches/ (applied by `npm ci`, patch-package) makes libp2p
// compare UTF-16 code units instead. This test fails if that patch is missing or stops covering
// what the daemon runs: two mesh nodes connect, identify each other and record a peer, with
// localeCompare counting its callers.
import '../../src/util/polyfill.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createMeshNode } from '../../src/discovery/p2p.js';
import { LOOPBACK, newKey, waitFor } from './helpers/mesh-fixture.js';

test("libp2p's peer store keeps a stable order without calling localeCompare (no ICU collation in the daemon)", async (t) => {
  const callers: string[] = [];
  const localeCompare = Object.getOwnPropertyDescriptor(String.prototype, 'localeCompare')!;
  Object.defineProperty(String.prototype, 'localeCompare', {
    ...localeCompare,
    value: function (this: string, ...args: unknown[]) {
      callers.push(new Error().stack?.split('\n')[2]?.trim() ?? '?');
      return (localeCompare.value as (...a: unknown[]) => number).apply(this, args);
    },
  });
  t.after(() => Object.defineProperty(String.prototype, 'localeCompare', localeCompare));

  const psk = randomBytes(32).toString('hex');
  const gate = { allow: () => true };
  // Two listen addresses each, so that there is something to sort.
  const listen = [...LOOPBACK, '/ip4/127.0.0.2/tcp/0'];
  const a = await createMeshNode({ privateKey: await newKey(), psk, listen, gate });
  t.after(() => a.stop());
  const b = await createMeshNode({ privateKey: await newKey(), psk, listen, gate });
  t.after(() => b.stop());

  await a.dial(b.getMultiaddrs()[0]);
  // identify: each side records the other's addresses and protocols in its peer store
  await waitFor(() => a.getConnections(b.peerId).length > 0 && b.getConnections(a.peerId).length > 0, 30_000, 'the connection');
  let seen = await a.peerStore.get(b.peerId);
  const deadline = Date.now() + 30_000;
  while (seen.protocols.length === 0 || seen.addresses.length < 2) {
    if (Date.now() > deadline) throw new Error(`identify did not record b: ${JSON.stringify(seen.protocols)}`);
    await new Promise((r) => setTimeout(r, 20));
    seen = await a.peerStore.get(b.peerId);
  }
  await a.peerStore.merge(b.peerId, {
    metadata: { beta: Uint8Array.of(1), Zeta: Uint8Array.of(2), alpha: Uint8Array.of(3) },
    tags: { 'a-tag': { value: 1 }, 'B-tag': { value: 2 } },
  });
  seen = await a.peerStore.get(b.peerId);

  assert.deepEqual(callers, [], 'nothing in the peer store calls localeCompare');
  const inCodeUnitOrder = (xs: string[]): void => assert.deepEqual(xs, [...xs].sort(), `in code-unit order: ${xs.join(' ')}`);
  inCodeUnitOrder(seen.addresses.map((x) => x.multiaddr.toString()));
  inCodeUnitOrder(seen.protocols);
  // identify adds metadata of its own; code units put capitals first, a collation would not
  // (alpha, beta, Zeta)
  const metadata = [...seen.metadata.keys()];
  inCodeUnitOrder(metadata);
  assert.deepEqual(metadata.filter((k) => ['alpha', 'beta', 'Zeta'].includes(k)), ['Zeta', 'alpha', 'beta']);
  const tags = [...seen.tags.keys()];
  inCodeUnitOrder(tags);
  assert.deepEqual(tags.filter((k) => k.endsWith('-tag')), ['B-tag', 'a-tag']);
});
