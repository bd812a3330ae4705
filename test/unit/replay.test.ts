import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ReplayFilter, REPLAY_WINDOW } from '../../src/wg/replay.js';
import { REJECT_AFTER_MESSAGES } from '../../src/wg/constants.js';

const W = REPLAY_WINDOW; // the kernel's COUNTER_WINDOW_SIZE
const T_LIM = W + 1;

/** Runs [counter, expected] steps on a fresh filter, naming the failing step like the kernel does. */
function run(name: string, steps: [number, boolean][], limit: number): void {
  const f = new ReplayFilter();
  steps.forEach(([n, ok], i) => assert.equal(f.validateCounter(n, limit), ok, `${name}, step ${i + 1}: counter ${n}`));
}

const range = (from: number, to: number, step = 1): number[] => {
  const out: number[] = [];
  for (let i = from; step > 0 ? i <= to : i >= to; i += step) out.push(i);
  return out;
};

test('the window is the documented size, above the paper\'s minimum of 2048', () => {
  assert.equal(W, 8160);
});

// wireguard selftest/counter.c, with R standing in for REJECT_AFTER_MESSAGES. Counters are JS
// numbers, so R is taken where R + 2 is still exact, and again as the project's constant.
for (const R of [Number.MAX_SAFE_INTEGER - 2, REJECT_AFTER_MESSAGES, 2 ** 32 + 5]) {
  test(`kernel counter selftest, sequence 1 (34 steps), limit ${R}`, () => {
    run('sequence 1', [
      /*  1 */ [0, true], /*  2 */ [1, true], /*  3 */ [1, false], /*  4 */ [9, true],
      /*  5 */ [8, true], /*  6 */ [7, true], /*  7 */ [7, false], /*  8 */ [T_LIM, true],
      /*  9 */ [T_LIM - 1, true], /* 10 */ [T_LIM - 1, false], /* 11 */ [T_LIM - 2, true],
      /* 12 */ [2, true], /* 13 */ [2, false], /* 14 */ [T_LIM + 16, true], /* 15 */ [3, false],
      /* 16 */ [T_LIM + 16, false], /* 17 */ [T_LIM * 4, true], /* 18 */ [T_LIM * 4 - (T_LIM - 1), true],
      /* 19 */ [10, false], /* 20 */ [T_LIM * 4 - T_LIM, false], /* 21 */ [T_LIM * 4 - (T_LIM + 1), false],
      /* 22 */ [T_LIM * 4 - (T_LIM - 2), true], /* 23 */ [T_LIM * 4 + 1 - T_LIM, false], /* 24 */ [0, false],
      /* 25 */ [R, false], /* 26 */ [R - 1, true], /* 27 */ [R, false], /* 28 */ [R - 1, false],
      /* 29 */ [R - 2, true], /* 30 */ [R + 1, false], /* 31 */ [R + 2, false], /* 32 */ [R - 2, false],
      /* 33 */ [R - 3, true], /* 34 */ [0, false],
    ], R);
  });
}

test('kernel counter selftest, sequences 2 to 7: the edges of the window', () => {
  const R = REJECT_AFTER_MESSAGES;
  const t = (ns: number[], ok: boolean): [number, boolean][] => ns.map((n) => [n, ok]);
  // 1..W in order, then 0 is still exactly inside the window
  run('sequence 2', [...t(range(1, W), true), [0, true], [0, false]], R);
  // 2..W+1 in order, then 1 is at the edge and 0 just beyond it
  run('sequence 3', [...t(range(2, W + 1), true), [1, true], [0, false]], R);
  // W..0 in reverse: every counter of the window once
  run('sequence 4', t(range(W, 0, -1), true), R);
  // W+1..1 in reverse, then 0 is beyond the window
  run('sequence 5', [...t(range(W + 1, 1, -1), true), [0, false]], R);
  // W..1 in reverse, then W+1 moves the window, leaving 0 just beyond it
  run('sequence 6', [...t(range(W, 1, -1), true), [W + 1, true], [0, false]], R);
  // W..1 in reverse, 0 while still inside, then W+1
  run('sequence 7', [...t(range(W, 1, -1), true), [0, true], [W + 1, true]], R);
});

test('in order, out of order within the window, replays of each, and the first packet replayed', () => {
  const f = new ReplayFilter();
  const L = REJECT_AFTER_MESSAGES;
  for (let i = 0; i < 100; i++) assert.ok(f.validateCounter(i, L), `in order ${i}`);
  for (let i = 0; i < 100; i++) assert.ok(!f.validateCounter(i, L), `replay ${i}`);
  assert.ok(f.validateCounter(200, L));
  for (let i = 199; i >= 100; i -= 3) assert.ok(f.validateCounter(i, L), `late ${i}`);
  for (let i = 199; i >= 100; i -= 3) assert.ok(!f.validateCounter(i, L), `late replay ${i}`);
  assert.ok(f.validateCounter(198, L), 'a late counter not yet seen');
  assert.ok(!f.validateCounter(0, L), 'the first packet, replayed');
});

test('a huge jump clears the whole ring; reset forgets everything', () => {
  const f = new ReplayFilter();
  const L = REJECT_AFTER_MESSAGES;
  for (let i = 0; i < 3 * W; i++) f.validateCounter(i, L); // every bit of the ring set
  const far = 1e12 + 7;
  assert.ok(f.validateCounter(far, L));
  for (let i = far - W; i < far; i++) assert.ok(f.validateCounter(i, L), `slot of ${i} was cleared`);
  assert.ok(!f.validateCounter(far - W - 1, L), 'beyond the window');
  assert.ok(!f.validateCounter(far, L));
  f.reset();
  assert.ok(f.validateCounter(0, L), 'counter 0 after a reset');
  assert.ok(f.validateCounter(far, L), 'and the old highest counter is new again');
});

test('the window advances by less than a ring without losing marks still inside it', () => {
  const f = new ReplayFilter();
  const L = REJECT_AFTER_MESSAGES;
  assert.ok(f.validateCounter(W, L));
  assert.ok(f.validateCounter(W + 100, L), 'moves the window by 100');
  assert.ok(!f.validateCounter(W, L), 'still remembered');
  assert.ok(f.validateCounter(100, L), 'the oldest counter inside the window');
  assert.ok(!f.validateCounter(99, L), 'one older is beyond it');
});

test('limits, and counters that are not integers in [0, 2^53), are refused', () => {
  const f = new ReplayFilter();
  assert.ok(!f.validateCounter(5, 5), 'at the limit');
  assert.ok(!f.validateCounter(6, 5), 'above the limit');
  assert.ok(f.validateCounter(4, 5), 'just below it');
  assert.ok(!f.validateCounter(2 ** 53, Infinity), '2^53 is not a safe integer');
  assert.ok(!f.validateCounter(2 ** 64, Infinity));
  assert.ok(!f.validateCounter(-1, 10));
  assert.ok(!f.validateCounter(1.5, 10));
  assert.ok(!f.validateCounter(Number.NaN, 10));
  assert.ok(!f.validateCounter(3, Number.NaN), 'no limit is no pass');
  assert.ok(f.validateCounter(3, 10), 'the refusals marked nothing');
});
