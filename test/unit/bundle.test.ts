// The executables `npm run build` makes (scripts/bundle.mjs): dist/cmd/meshd.js and
// dist/cmd/meshd-engine.js are each one file that node loads as the only module of meshd's, with
// no module from node_modules beside it (the memory a daemon saves, bench/memory.ts), and each
// still runs; node's own modules are loaded with require(), so that importing them loads nothing
// the daemon does not use. The daemon inside the bundle is what every test in test/netns starts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { run } from './helpers/run.js';
import { packageRoot } from '../../src/util/package-root.js';

const CMD = join(packageRoot(), 'dist', 'cmd');

/** A loader hook that writes every file: URL node loads as an ES module to stderr. */
const HOOK = `data:text/javascript,${encodeURIComponent(`
import { register } from 'node:module';
register('data:text/javascript,' + encodeURIComponent("export async function load(url, context, next) { if (url.startsWith('file:')) process._rawDebug('LOADED ' + url); return next(url, context); }"));
`)}`;

for (const exe of ['meshd.js', 'meshd-engine.js']) {
  test(`dist/cmd/${exe} is one module: node loads nothing else of meshd's or of node_modules as a module`, { timeout: 30_000 }, async () => {
    const r = await run(join(CMD, exe), ['--version'], { NODE_OPTIONS: `--import=${HOOK}` });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), '0.1.0');
    const loaded = r.stderr.split('\n').filter((l) => l.startsWith('LOADED ')).map((l) => l.slice('LOADED '.length));
    assert.deepEqual(loaded, [pathToFileURL(join(CMD, exe)).href]);
  });
}

/** Every node: module imported as an ES module, and at exit whether undici (fetch's client) was loaded. */
const BUILTIN_HOOK = `data:text/javascript,${encodeURIComponent(`
import { register } from 'node:module';
register('data:text/javascript,' + encodeURIComponent("export async function resolve(s, c, next) { const r = await next(s, c); if (r.url.startsWith('node:')) process._rawDebug('IMPORTED ' + r.url); return r; }"));
process.on('exit', () => process._rawDebug('UNDICI ' + process.moduleLoadList.some((m) => m.includes('undici'))));
`)}`;

for (const exe of ['meshd.js', 'meshd-engine.js']) {
  test(`dist/cmd/${exe} requires node's modules rather than importing them (an ES import of node:http loads undici on Node 22+)`, { timeout: 30_000 }, async () => {
    const r = await run(join(CMD, exe), ['--version'], { NODE_OPTIONS: `--import=${BUILTIN_HOOK}` });
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stderr.split('\n');
    assert.deepEqual(lines.filter((l) => l.startsWith('IMPORTED ')), ['IMPORTED node:module'], 'only the banner\'s createRequire is imported');
    assert.deepEqual(lines.filter((l) => l.startsWith('UNDICI ')), ['UNDICI false']);
  });
}

test('the bundled meshd runs a command to its end: status without a daemon names the state dir', { timeout: 30_000 }, async (tc) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-bundle-'));
  tc.after(() => rmSync(dir, { recursive: true, force: true }));
  const r = await run(join(CMD, 'meshd.js'), ['--state-dir', dir, 'status']);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, new RegExp(`meshd --state-dir ${dir} daemon`));
});
