// The C heap's free pages go back to the kernel (src/daemon/memory-trim.ts, src/wg/native/memory.cc):
// the addon's trim really lowers a process's RSS after a burst, and the daemon's timer calls it,
// says what it freed, and stops when told or when the trim fails.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { startMemoryTrim } from '../../src/daemon/memory-trim.js';

const run = promisify(execFile);
const NATIVE = fileURLToPath(new URL('../../src/wg/native.js', import.meta.url));

test('trimMemory gives back what a burst left in the C heap: RSS falls by most of the freed buffers', async () => {
  // 20,000 buffers of 4 KB (malloc'd, not mmap'd), one in a hundred kept so that the heap's top
  // cannot simply shrink; the rest collected. A fresh process, so that nothing else moves RSS.
  const script = `
    const { native } = await import(${JSON.stringify(NATIVE)});
    const addon = native();
    const keep = []; let all = [];
    for (let i = 0; i < 20000; i++) { const b = Buffer.allocUnsafeSlow(4000); b.fill(i & 255); all.push(b); if (i % 100 === 99) keep.push(b); }
    all = null;
    for (let i = 0; i < 3; i++) { globalThis.gc(); await new Promise((r) => setTimeout(r, 200)); }
    const before = process.memoryUsage.rss();
    const trimmed = addon.trimMemory();
    console.log(JSON.stringify({ before, after: process.memoryUsage.rss(), trimmed, kept: keep.length }));`;
  const { stdout } = await run(process.execPath, ['--expose-gc', '--input-type=module', '-e', script]);
  const r = JSON.parse(stdout) as { before: number; after: number; trimmed: boolean; kept: number };
  assert.equal(r.trimmed, true, 'malloc_trim reports memory given back');
  const freedMB = (r.before - r.after) / 2 ** 20;
  assert.ok(freedMB > 40, `RSS fell by ${freedMB.toFixed(1)} MB of about 78 MB freed (${(r.before / 2 ** 20).toFixed(0)} -> ${(r.after / 2 ** 20).toFixed(0)} MB)`);
});

test('the daemon trims on its timer, logs what was freed, and stops when told', async () => {
  let calls = 0;
  let rss = 100e6;
  const logs: Array<{ obj: Record<string, unknown>; msg?: string }> = [];
  const logger = { debug: (obj: object, msg?: string) => logs.push({ obj: obj as Record<string, unknown>, msg }), error: () => assert.fail('no error expected') };
  const stop = startMemoryTrim(() => ((calls += 1), (rss -= 5e6), true), logger, 20, () => rss);
  await new Promise((r) => setTimeout(r, 150));
  stop();
  const seen = calls;
  assert.ok(seen >= 3, `trimmed ${seen} times in 150 ms at one every 20 ms`);
  assert.equal(logs[0].obj.freedMB, 5, 'the first trim freed 5 MB of RSS');
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(calls, seen, 'no trim after stop');
});

test('a trim that throws stops the timer with one error line; nothing is thrown into the daemon', async () => {
  let calls = 0;
  const errors: string[] = [];
  const logger = { debug: () => {}, error: (obj: object, msg?: string) => errors.push(`${msg} ${(obj as { err: string }).err}`) };
  startMemoryTrim(() => {
    calls += 1;
    throw new Error('no malloc here');
  }, logger, 10);
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(calls, 1, 'tried once');
  assert.equal(errors.length, 1);
  assert.match(errors[0], /no longer trying no malloc here/);
});
