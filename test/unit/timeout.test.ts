// timeoutSignal (src/util/timeout.ts) aborts on time inside AbortSignal.any even when garbage
// collections run meanwhile, as they do in the daemon every few milliseconds. (Node 20's own
// AbortSignal.timeout does not, there: the composite never aborts once a collection ran.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';

const run = promisify(execFile);
const MODULE = fileURLToPath(new URL('../../src/util/timeout.js', import.meta.url));

test('a deadline made by timeoutSignal fires inside AbortSignal.any while collections run', async () => {
  const script = `
    const { timeoutSignal } = await import(${JSON.stringify(MODULE)});
    const signal = AbortSignal.any([new AbortController().signal, timeoutSignal(200)]);
    let at = null;
    const t0 = performance.now();
    signal.addEventListener('abort', () => (at = performance.now() - t0));
    const gcs = setInterval(() => globalThis.gc(), 20);
    setTimeout(() => { clearInterval(gcs); console.log(JSON.stringify({ aborted: signal.aborted, at, reason: signal.reason?.name })); }, 1000);`;
  const { stdout } = await run(process.execPath, ['--expose-gc', '--input-type=module', '-e', script]);
  const r = JSON.parse(stdout) as { aborted: boolean; at: number | null; reason?: string };
  assert.equal(r.aborted, true, 'the composite aborted');
  assert.equal(r.reason, 'TimeoutError');
  assert.ok(r.at !== null && r.at >= 190, `not before its time (${r.at} ms)`);
});

test('timeoutSignal(ms, parent): aborts with the parent, with its reason, or on time; an aborted parent aborts it at once', async () => {
  const { timeoutSignal } = (await import(MODULE)) as typeof import('../../src/util/timeout.js');
  const parent = new AbortController();
  const other = new AbortController();
  const s = timeoutSignal(60_000, other.signal, parent.signal);
  assert.equal(s.aborted, false);
  parent.abort(new Error('daemon stopping'));
  assert.equal(s.aborted, true);
  assert.equal((s.reason as Error).message, 'daemon stopping');
  assert.equal(timeoutSignal(60_000, parent.signal).aborted, true, 'a parent aborted already');
  const t0 = performance.now();
  const timed = timeoutSignal(100, other.signal);
  const alive = setTimeout(() => {}, 5000); // the deadline's timer is unref'd, as AbortSignal.timeout's
  await new Promise((r) => timed.addEventListener('abort', r, { once: true }));
  clearTimeout(alive);
  assert.ok(performance.now() - t0 >= 95);
  assert.equal((timed.reason as DOMException).name, 'TimeoutError');
  assert.equal(other.signal.aborted, false, 'a deadline never aborts its parent');
});

test('a long-lived parent keeps nothing of the deadlines that ended (AbortSignal.any keeps them all on Node 20), and no leak warning', async () => {
  // The daemon's sync, join service and dialer made one deadline per push, exchange, dial and
  // join request with their own lifetime's signal as the parent.
  const script = `
    const { timeoutSignal } = await import(${JSON.stringify(MODULE)});
    const { getEventListeners } = await import('node:events');
    const warnings = [];
    process.on('warning', (w) => warnings.push(w.name));
    const parent = new AbortController();
    const dependants = () => { const k = Object.getOwnPropertySymbols(parent.signal).find((s) => String(s) === 'Symbol(kDependantSignals)'); return k ? parent.signal[k]?.size ?? 0 : 0; };
    const inFlight = [];
    for (let i = 0; i < 20000; i++) {
      const s = timeoutSignal(i < 50 ? 60_000 : 5, parent.signal);
      s.addEventListener('abort', () => {}, { once: true }); // observed, as libp2p's streams do
      if (i < 50) inFlight.push(s);
    }
    const during = getEventListeners(parent.signal, 'abort').length;
    await new Promise((r) => setTimeout(r, 300));
    globalThis.gc();
    const after = getEventListeners(parent.signal, 'abort').length;
    const ours = dependants();
    for (let i = 0; i < 2000; i++) AbortSignal.any([parent.signal, timeoutSignal(5)]).addEventListener('abort', () => {});
    await new Promise((r) => setTimeout(r, 300));
    globalThis.gc();
    console.log(JSON.stringify({ during, after, ours, any: dependants(), warnings, inFlight: inFlight.filter((s) => !s.aborted).length }));`;
  const { stdout } = await run(process.execPath, ['--expose-gc', '--input-type=module', '-e', script]);
  const r = JSON.parse(stdout) as { during: number; after: number; ours: number; any: number; warnings: string[]; inFlight: number };
  assert.equal(r.during, 20000, 'one listener per deadline in flight');
  assert.equal(r.after, 50, 'those that ended left nothing; the 50 still in flight remain');
  assert.equal(r.inFlight, 50);
  assert.equal(r.ours, 0, 'no dependants of our making');
  assert.deepEqual(r.warnings, [], 'no MaxListenersExceededWarning');
  // What the helper replaces: on Node 20 every AbortSignal.any stays a dependant of the parent.
  if (process.versions.node.startsWith('20.')) assert.equal(r.any, 2000, 'AbortSignal.any on Node 20 keeps every composite');
});
