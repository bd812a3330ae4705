import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ReplayFilter, REPLAY_WINDOW } from '../../src/wg/replay.js';

const LIMIT = 2 ** 53;

test('the kernel selftest sequence (wireguard selftest/counter.c) on our window', () => {
  const T = REPLAY_WINDOW + 1; // T_LIM of the kernel's test
  const R = 1_000_000_000; // the limit, standing in for REJECT_AFTER_MESSAGES
  const f = new ReplayFilter();
  const steps: [number, boolean][] = [
    [0, true], [1, true], [1, false], [9, true], [8, true], [7, true], [7, false],
    [T, true], [T - 1, true], [T - 1, false], [T - 2, true], [2, true], [2, false],
    [T + 16, true], [3, false], [T + 16, false], [T * 4, true], [T * 4 - (T - 1), true],
    [10, false], [T * 4 - T, false], [T * 4 - (T + 1), false], [T * 4 - (T - 2), true],
    [T * 4 + 1 - T, false], [0, false], [R, false], [R - 1, true], [R, false], [R - 1, false],
    [R - 2, true], [R + 1, false], [R + 2, false], [R - 2, false], [R - 3, true], [0, false],
  ];
  steps.forEach(([n, ok], i) => assert.equal(f.validateCounter(n, R), ok, `step ${i + 1}: counter ${n}`));
});

test('every counter of a window, in reverse, is accepted once', () => {
  const f = new ReplayFilter();
  assert.ok(f.validateCounter(REPLAY_WINDOW + 1, LIMIT));
  for (let i = REPLAY_WINDOW; i >= 1; i--) assert.ok(f.validateCounter(i, LIMIT), `counter ${i}`);
  for (let i = REPLAY_WINDOW + 1; i >= 1; i--) assert.ok(!f.validateCounter(i, LIMIT));
  assert.ok(!f.validateCounter(0, LIMIT), 'just beyond the window');
});

test('a huge jump clears the ring; reset forgets everything', () => {
  const f = new ReplayFilter();
  for (let i = 0; i < 100; i++) f.validateCounter(i, LIMIT);
  assert.ok(f.validateCounter(1e12, LIMIT));
  assert.ok(f.validateCounter(1e12 - 5, LIMIT), 'ring slots from before the jump are clear');
  assert.ok(!f.validateCounter(1e12, LIMIT));
  f.reset();
  assert.ok(f.validateCounter(0, LIMIT));
  assert.ok(f.validateCounter(5, 5) === false, 'at the limit');
});
