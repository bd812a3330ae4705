// The daemon's latency probe (src/daemon/prober.ts): ICMP echo over a raw socket, inside a
// network namespace made for the test (helpers/prober-child.js), so probes go to loopback only.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { cannotRunInNamespace, runInNamespace } from './helpers/netns-child.js';

const CHILD = fileURLToPath(new URL('./helpers/prober-child.js', import.meta.url));

test('ICMP probes: answered addresses get a round trip, others none, stale figures expire', { skip: cannotRunInNamespace() }, async (t) => {
  const { report: r, code } = await runInNamespace(t, 'mdp', CHILD, { timeoutMs: 20_000 });
  assert.equal(code, 0);
  for (const key of ['one', 'two', 'again']) {
    assert.equal(typeof r[key], 'number', `${key} answered`);
    assert.ok(r[key] >= 0 && r[key] < 500, `${key}: ${r[key]} ms`);
  }
  assert.equal(r.unroutable, null);
  assert.equal(r.bad, null);
  assert.equal(r.unknown, null);
  assert.equal(r.stale, null, 'a figure older than maxAgeMs is no figure');
});
