// One logger interface (util/log.ts) for every component: pino's child loggers fit it, a component
// given one writes its lines with the { component } it was scoped to and its message unchanged,
// and noopLogger (children included) writes nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { noopLogger, type Logger } from '../../src/util/log.js';
import { UapiServer } from '../../src/wg/uapi-server.js';
import type { Configurable } from '../../src/wg/config.js';

function recording(): { root: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const root: Logger = pino({ name: 'meshd', level: 'debug', base: {} }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  return { root, lines };
}

test('a component scoped with child({ component }) logs under it, message unchanged', async (t) => {
  const { root, lines } = recording();
  const dir = mkdtempSync(join(tmpdir(), 'meshd-log-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const server = await UapiServer.listen('log0', {} as Configurable, { dir, logger: root.child({ component: 'uapi' }) });
  await server.close();
  const listening = lines.find((l) => l.msg === 'UAPI socket listening');
  assert.ok(listening, JSON.stringify(lines));
  assert.equal(listening.component, 'uapi');
  assert.equal(listening.name, 'meshd');
  assert.equal(listening.path, join(dir, 'log0.sock'));
});

test('children nest their bindings; the root logs without a component', () => {
  const { root, lines } = recording();
  root.child({ component: 'p2p' }).child({ peer: 'abc' }).warn({ n: 1 }, 'nested');
  root.info({}, 'plain');
  assert.deepEqual(lines.map(({ time: _t, ...l }) => l), [
    { level: 40, name: 'meshd', component: 'p2p', peer: 'abc', n: 1, msg: 'nested' },
    { level: 30, name: 'meshd', msg: 'plain' },
  ]);
});

test('noopLogger and its children log nothing and do not throw', () => {
  const child = noopLogger.child({ component: 'wg' });
  assert.equal(child, noopLogger);
  for (const l of [noopLogger, child]) {
    l.debug({}, 'x');
    l.info({}, 'x');
    l.warn({}, 'x');
    l.error({ err: 'e' }, 'x');
  }
});
