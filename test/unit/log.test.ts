// The daemon's logger (src/util/log.ts): one `name` key per line, the logger's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createLogger } from '../../src/util/log.js';

function capture(): { lines: string[]; stream: { write(s: string): void } } {
  const lines: string[] = [];
  return { lines, stream: { write: (s: string) => void lines.push(...s.split('\n').filter(Boolean)) } };
}

test('a log call\'s own name becomes member: every line has exactly one name key, the logger\'s', () => {
  const { lines, stream } = capture();
  const log = createLogger('meshd', 'info', stream);
  log.info({ peerId: 'p1', name: 'alpha', meshIp: '10.0.0.1' }, 'meshd daemon up');
  log.warn({ err: 'boom' }, 'no name here');
  log.info('a message alone');
  assert.equal(lines.length, 3);
  for (const line of lines) assert.equal(line.match(/"name":/g)?.length, 1, line);
  const first = JSON.parse(lines[0]);
  assert.equal(first.name, 'meshd');
  assert.equal(first.member, 'alpha');
  assert.equal(first.peerId, 'p1');
  assert.equal(JSON.parse(lines[1]).err, 'boom');
  assert.equal(JSON.parse(lines[2]).msg, 'a message alone');
});

test('LOG_LEVEL: an unknown level is info', () => {
  const { lines, stream } = capture();
  const log = createLogger('meshd', 'loud', stream);
  log.debug('hidden');
  log.info('shown');
  assert.deepEqual(lines.map((l) => JSON.parse(l).msg), ['shown']);
});
