// An idle daemon hands back what a burst left (src/daemon/memory-upkeep.ts, src/wg/native/memory.cc):
// the addon's trim really lowers a process's RSS, a full collection really frees a burst's garbage,
// and the daemon's timer collects only when its loop was quiet, trims, says what it freed, and
// stops when told or when a step fails.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { startMemoryUpkeep } from '../../src/daemon/memory-upkeep.js';
import { nativeFunction, type OptionalNative } from '../../src/wg/native.js';

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

test('the daemon collects and trims on its timer, logs what was freed, and stops when told', async () => {
  let trims = 0;
  let collects = 0;
  let rss = 100e6;
  const logs: Array<{ obj: Record<string, unknown>; msg?: string }> = [];
  const logger = { debug: (obj: object, msg?: string) => logs.push({ obj: obj as Record<string, unknown>, msg }), error: () => assert.fail('no error expected') };
  const stop = startMemoryUpkeep({ trim: () => ((trims += 1), (rss -= 5e6), true), collect: () => ((collects += 1), (rss -= 1e6)), load: () => 0.001, rss: () => rss, heapSize: () => 100e6 + trims * 5e6 }, logger, 20);
  await new Promise((r) => setTimeout(r, 150));
  stop();
  const seen = trims;
  assert.ok(seen >= 3, `trimmed ${seen} times in 150 ms at one every 20 ms`);
  assert.equal(collects, seen, 'a quiet loop and a heap 5 MB larger each tick: a full collection before each trim');
  assert.equal(logs[0].obj.freedMB, 6, 'the first tick freed 6 MB of RSS');
  assert.equal(logs[0].obj.collected, true);
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(trims, seen, 'no trim after stop');
});

test('a busy event loop is not paused for a full collection; the trim still runs', async () => {
  let trims = 0;
  let collects = 0;
  const loads = [0.5, 0.03, 0.01, 0.9];
  const logs: Array<Record<string, unknown>> = [];
  const logger = { debug: (obj: object) => logs.push(obj as Record<string, unknown>), error: () => assert.fail('no error expected') };
  const stop = startMemoryUpkeep({ trim: () => ((trims += 1), false), collect: () => void (collects += 1), load: () => loads.shift() ?? 1, rss: () => 1, heapSize: () => 50e6 }, logger, 15);
  await new Promise((r) => setTimeout(r, 200));
  stop();
  assert.ok(trims >= 4, `trimmed ${trims} times`);
  assert.equal(collects, 1, 'collected only on the tick after a quiet interval (load 1%), not at 50%, 3% or 90%');
  assert.equal(logs.length, 1, 'one line: the tick that collected (the trims freed nothing)');
  assert.equal(logs[0].collected, true);
});

test('a heap that has not grown by 4 MB since the last full collection is not collected again', async () => {
  let collects = 0;
  let heap = 30e6;
  const stop = startMemoryUpkeep({ trim: null, collect: () => void (collects += 1), load: () => 0, rss: () => 1, heapSize: () => heap }, { debug: () => {}, error: () => assert.fail('no error expected') }, 10);
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(collects, 1, 'the first quiet tick collects; an idle heap that stays put is not collected again');
  heap += 3e6;
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(collects, 1, '3 MB more: still not worth a pause');
  heap += 2e6;
  await new Promise((r) => setTimeout(r, 60));
  stop();
  assert.equal(collects, 2, '5 MB more than after the last one: collected again');
});

test('V8 gives back a burst\'s garbage at the first quiet tick: heap used falls by most of it (gc exposed)', async () => {
  // A fresh process with gc exposed, as the meshd executable runs: 40 MB of small objects promoted
  // to the old generation, then dropped. With nothing allocating afterwards, V8 collects nothing
  // by itself; the upkeep's first tick (its loop was quiet) must.
  const UPKEEP = fileURLToPath(new URL('../../src/daemon/memory-upkeep.js', import.meta.url));
  const script = `
    const { startMemoryUpkeep, exposedGc } = await import(${JSON.stringify(UPKEEP)});
    let burst = [];
    for (let i = 0; i < 400000; i++) burst.push({ i, s: 'x'.repeat(40) + i });
    await new Promise((r) => setTimeout(r, 300));
    burst = null;
    await new Promise((r) => setTimeout(r, 300));
    const before = process.memoryUsage().heapUsed;
    const stop = startMemoryUpkeep({ trim: null, collect: exposedGc() }, { debug: () => {}, error: (o) => console.error(o) }, 200);
    await new Promise((r) => setTimeout(r, 500));
    stop();
    console.log(JSON.stringify({ before, after: process.memoryUsage().heapUsed }));`;
  const { stdout } = await run(process.execPath, ['--max-semi-space-size=1', '--expose-gc', '--input-type=module', '-e', script]);
  const r = JSON.parse(stdout) as { before: number; after: number };
  const freedMB = (r.before - r.after) / 2 ** 20;
  assert.ok(freedMB > 25, `heap used fell by ${freedMB.toFixed(1)} MB (${(r.before / 2 ** 20).toFixed(0)} -> ${(r.after / 2 ** 20).toFixed(0)} MB)`);
});

test('exposedGc compacts: a fragmented heap hands its emptied pages back, where a plain gc() keeps them (Node 20 and 24)', async () => {
  // 80 MB of small objects promoted, one in 16 kept: every page keeps a few live objects, so a
  // collection that frees without moving them leaves the pages committed and resident.
  const UPKEEP = fileURLToPath(new URL('../../src/daemon/memory-upkeep.js', import.meta.url));
  const script = (collect: string) => `
    const { exposedGc } = await import(${JSON.stringify(UPKEEP)});
    const keep = [];
    let burst = [];
    for (let i = 0; i < 400000; i++) { const o = { i, s: 'x'.repeat(40) + i }; burst.push(o); if (i % 16 === 0) keep.push(o); }
    await new Promise((r) => setTimeout(r, 200));
    burst = null;
    ${collect};
    await new Promise((r) => setTimeout(r, 1000)); // V8 unmaps freed pages on a background thread
    const m = process.memoryUsage();
    console.log(JSON.stringify({ used: m.heapUsed, total: m.heapTotal, rss: m.rss, kept: keep.length }));`;
  const measure = async (collect: string) => {
    const { stdout } = await run(process.execPath, ['--max-semi-space-size=1', '--expose-gc', '--input-type=module', '-e', script(collect)]);
    const r = JSON.parse(stdout) as { used: number; total: number; rss: number; kept: number };
    assert.equal(r.kept, 25000);
    return { usedMB: r.used / 2 ** 20, slackMB: (r.total - r.used) / 2 ** 20, rssMB: r.rss / 2 ** 20 };
  };
  const plain = await measure('globalThis.gc()');
  const compacted = await measure('exposedGc()()');
  const what = `plain gc(): ${plain.usedMB.toFixed(0)} MB used, ${plain.slackMB.toFixed(0)} MB committed beyond, RSS ${plain.rssMB.toFixed(0)} MB; exposedGc(): ${compacted.usedMB.toFixed(0)}, ${compacted.slackMB.toFixed(0)}, ${compacted.rssMB.toFixed(0)} MB`;
  assert.ok(plain.slackMB > 40, `the fragmented heap a plain collection leaves (the case this is for): ${what}`);
  assert.ok(compacted.slackMB < 8, `compacted, little is committed beyond what is used: ${what}`);
  assert.ok(plain.rssMB - compacted.rssMB > 40, `and the process is smaller by most of it: ${what}`);
});

test('exposedGc: null without --expose-gc, so the daemon only trims (and says why)', async () => {
  const UPKEEP = fileURLToPath(new URL('../../src/daemon/memory-upkeep.js', import.meta.url));
  const script = `const { exposedGc } = await import(${JSON.stringify(UPKEEP)}); console.log(exposedGc() === null ? 'none' : 'gc');`;
  assert.equal((await run(process.execPath, ['--input-type=module', '-e', script])).stdout.trim(), 'none');
  assert.equal((await run(process.execPath, ['--expose-gc', '--input-type=module', '-e', script])).stdout.trim(), 'gc');
});

test('a trim that throws stops the timer with one error line; nothing is thrown into the daemon', async () => {
  let calls = 0;
  const errors: string[] = [];
  const logger = { debug: () => {}, error: (obj: object, msg?: string) => errors.push(`${msg} ${(obj as { err: string }).err}`) };
  startMemoryUpkeep({
    trim: () => {
      calls += 1;
      throw new Error('no malloc here');
    },
    collect: null,
  }, logger, 10);
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(calls, 1, 'tried once');
  assert.equal(errors.length, 1);
  assert.match(errors[0], /no longer trying no malloc here/);
});

test('nativeFunction: the built addon has trimMemory and notifySend; a function it lacks is a clear error', () => {
  assert.equal(typeof nativeFunction('trimMemory'), 'function');
  assert.equal(typeof nativeFunction('notifySend'), 'function');
  // An addon built from older sources lacks the newer functions: the error says what to do.
  assert.throws(() => nativeFunction('compactEverything' as OptionalNative), /the native addon has no compactEverything: rebuild it \(npm run install\)/);
});
