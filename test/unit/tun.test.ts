// The TUN device, end to end against the kernel. Creating interfaces happens only inside a network
// namespace made for this test (helpers/tun-child.js runs there), so nothing touches the host's
// network; the namespace is removed afterwards, also after a failure.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { HEADROOM } from '../../src/wg/batch.js';
import { openTun } from '../../src/wg/tun.js';
import { cannotRunInNamespace, runInNamespace } from './helpers/netns-child.js';

const CHILD = fileURLToPath(new URL('./helpers/tun-child.js', import.meta.url));

const cannotRun = () => cannotRunInNamespace({ tun: true });

test('bad arguments fail before any interface exists', () => {
  assert.throws(() => openTun('mdt-name-too-long-for-linux'), /1-15 characters/);
  assert.throws(() => openTun('mdt:0'), /invalid interface name/);
  assert.throws(() => openTun('mdtx', { mtu: 100 }), /MTU must be between/);
});

test('a TUN in a private namespace: MTU, batch at HEADROOM, ping answered through it, clean close', { skip: cannotRun() }, async (t) => {
  const { report: r, code } = await runInNamespace(t, 'mdt', CHILD, { timeoutMs: 20000, env: (ns) => ({ MDT_NETNS: ns }) });
  assert.match(r.link, /\bmtu 1420\b/);
  assert.match(r.link, /\bqlen 1000\b/);
  assert.equal(r.mtu, 1420);
  assert.equal(r.busyCode, 'EBUSY');
  assert.ok(r.requests >= 3, `echo requests read from the TUN: ${r.requests}`);
  assert.ok(r.offsets.length > 0 && r.offsets.every((o: number) => o === HEADROOM), 'packets land at HEADROOM');
  assert.equal(r.ping, true, 'ping got the replies written into the TUN');
  assert.equal(r.removedOnClose, true, 'close() removes the interface');
  assert.ok(r.cpuAfterDeleteMs >= 0 && r.cpuAfterDeleteMs < 100, `reader spun after its interface was deleted: ${r.cpuAfterDeleteMs} ms CPU in 300 ms`);
  assert.equal(code, 0);
});
