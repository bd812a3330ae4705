import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { StartupSteps } from '../../src/daemon/startup.js';

test('a start that takes long says which step it is in, until it is done', async () => {
  const warned: Array<{ step: string; ms: number }> = [];
  const steps = new StartupSteps({ warn: (obj: unknown) => void warned.push(obj as { step: string; ms: number }) } as never, 20);
  steps.at('opening the store');
  await sleep(70);
  steps.at('publishing our record');
  await sleep(70);
  const ms = steps.done();
  const n = warned.length;
  await sleep(70);
  assert.equal(warned.length, n, 'nothing more once done');
  assert.ok(warned.some((w) => w.step === 'opening the store'), JSON.stringify(warned));
  assert.equal(warned.at(-1)!.step, 'publishing our record');
  assert.ok(warned.every((w, i) => i === 0 || w.ms >= warned[i - 1].ms), 'elapsed time only grows');
  assert.ok(ms >= 140, `done() returns the whole start's time (${ms} ms)`);
});
