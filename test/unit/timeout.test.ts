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
