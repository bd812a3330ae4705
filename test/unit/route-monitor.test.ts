// src/routes/route-monitor.ts: output of the monitor process is a change (bursts coalesced into
// one call); a monitor that exits is started again; stop() stops it. The real `ip monitor` is
// exercised by test/netns/overlap.test.ts (a leak shows within seconds of the route appearing).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RouteMonitor } from '../../src/routes/route-monitor.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('a burst of lines is one change; a monitor that exits comes back; stop() ends it', async () => {
  let changes = 0;
  // Three lines at once, then exit: restarted after restartMs, the next burst is another change.
  const m = new RouteMonitor({ onChange: () => changes++, debounceMs: 100, restartMs: 300, command: ['sh', '-c', 'echo a; echo b; sleep 0.02; echo c; sleep 0.2'] });
  m.start();
  await sleep(250);
  assert.equal(changes, 1, 'one call for the burst');
  await sleep(600);
  assert.ok(changes >= 2, `restarted and seen again (${changes})`);
  m.stop();
  const after = changes;
  await sleep(800);
  assert.equal(changes, after, 'nothing after stop()');
});

test('nothing printed: no call', async () => {
  let changes = 0;
  const m = new RouteMonitor({ onChange: () => changes++, debounceMs: 50, command: ['sleep', '5'] });
  m.start();
  await sleep(300);
  m.stop();
  assert.equal(changes, 0);
});
