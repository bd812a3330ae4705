// The control socket end to end in a temporary directory: client and server, pipelining over one
// raw connection, error replies, limits, stale and live sockets, and the client's message when no
// daemon runs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createConnection, createServer, type Socket } from 'node:net';
import { link, lstat, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ControlServer, ControlServerError } from '../../src/control/server.js';
import { ControlError, DaemonNotRunningError, call } from '../../src/control/client.js';
import { MAX_REQUEST_LINE, ResponseSchema } from '../../src/control/protocol.js';

class CodedError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
  }
}

async function tempDir(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'meshd-ctl-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

const handlers = {
  echo: async (p: unknown) => p,
  sleep: async (p: unknown) => {
    const { ms, tag } = p as { ms: number; tag: string };
    await new Promise((r) => setTimeout(r, ms));
    return tag;
  },
  nothing: async () => undefined,
  fail: async () => {
    throw new CodedError('ENONET', 'not a member of any network: run meshd init');
  },
  crash: async () => {
    throw new TypeError('boom');
  },
  cyclic: async () => {
    const o: Record<string, unknown> = {};
    o.o = o;
    return o;
  },
};

async function start(t: { after(fn: () => Promise<void>): void }): Promise<{ path: string; server: ControlServer }> {
  const dir = await tempDir(t);
  const path = join(dir, 'meshd.sock');
  const server = await ControlServer.listen(path, handlers);
  t.after(() => server.close());
  return { path, server };
}

/** A raw connection: write lines, collect parsed response lines. */
function raw(path: string): Promise<{ sock: Socket; responses: unknown[]; closed: Promise<void>; waitFor(n: number): Promise<unknown[]> }> {
  return new Promise((resolve, reject) => {
    const sock = createConnection(path);
    const responses: unknown[] = [];
    let buf = '';
    const waiters: (() => void)[] = [];
    sock.on('data', (d) => {
      buf += d;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        responses.push(JSON.parse(buf.slice(0, nl)));
        buf = buf.slice(nl + 1);
      }
      waiters.forEach((w) => w());
    });
    sock.on('error', () => {});
    const closed = new Promise<void>((r) => sock.on('close', () => r()));
    const waitFor = (n: number) => new Promise<unknown[]>((r) => {
      const check = () => (responses.length >= n ? r(responses) : waiters.push(check));
      check();
    });
    sock.once('connect', () => resolve({ sock, responses, closed, waitFor }));
    sock.once('error', reject);
  });
}

test('round trip, and the socket is root-only (0600)', async (t) => {
  const { path } = await start(t);
  assert.equal((await stat(path)).mode & 0o777, 0o600);
  assert.deepEqual(await call(path, 'echo', { a: 1, b: ['x'] }), { a: 1, b: ['x'] });
  assert.deepEqual(await call(path, 'echo'), {}, 'handlers get {} when there are no params');
  assert.equal(await call(path, 'nothing'), null);
  // many clients at once
  const results = await Promise.all(Array.from({ length: 50 }, (_, i) => call(path, 'echo', { i })));
  assert.deepEqual(results, Array.from({ length: 50 }, (_, i) => ({ i })));
});

test('pipelined requests on one connection are all answered, by id', async (t) => {
  const { path } = await start(t);
  const c = await raw(path);
  t.after(async () => void c.sock.destroy());
  // a slow request first, then fast ones, all in one write; plus a blank line (ignored)
  c.sock.write([
    { id: 1, method: 'sleep', params: { ms: 100, tag: 'slow' } },
    { id: 2, method: 'echo', params: { n: 2 } },
    { id: 3, method: 'fail' },
  ].map((m) => JSON.stringify(m)).join('\n') + '\n\n' + JSON.stringify({ id: 4, method: 'echo', params: { n: 4 } }).slice(0, 10));
  c.sock.write(JSON.stringify({ id: 4, method: 'echo', params: { n: 4 } }).slice(10) + '\n');
  const res = await c.waitFor(4);
  for (const r of res) assert.ok(ResponseSchema.safeParse(r).success, JSON.stringify(r));
  const byId = new Map(res.map((r) => [(r as { id: number }).id, r]));
  assert.deepEqual(byId.get(1), { id: 1, ok: true, result: 'slow' });
  assert.deepEqual(byId.get(2), { id: 2, ok: true, result: { n: 2 } });
  assert.deepEqual(byId.get(3), { id: 3, ok: false, error: { code: 'ENONET', message: 'not a member of any network: run meshd init' } });
  assert.deepEqual(byId.get(4), { id: 4, ok: true, result: { n: 4 } });
  assert.equal((res[res.length - 1] as { id: number }).id, 1, 'the slow one did not hold up the others');
});

test('error codes: a handler error keeps its code; no code is EINTERNAL; the server survives', async (t) => {
  const { path } = await start(t);
  await assert.rejects(call(path, 'fail'), (e: unknown) => {
    assert.ok(e instanceof ControlError && e instanceof Error);
    assert.equal(e.code, 'ENONET');
    assert.equal(e.message, 'not a member of any network: run meshd init');
    return true;
  });
  await assert.rejects(call(path, 'crash'), (e: unknown) => e instanceof ControlError && e.code === 'EINTERNAL' && e.message === 'boom');
  await assert.rejects(call(path, 'cyclic'), (e: unknown) => e instanceof ControlError && e.code === 'EINTERNAL');
  assert.deepEqual(await call(path, 'echo', { still: 'alive' }), { still: 'alive' });
});

test('unknown methods, including Object.prototype names, are EUNKNOWN', async (t) => {
  const { path } = await start(t);
  for (const m of ['nope', 'toString', '__proto__', 'constructor', 'hasOwnProperty']) {
    await assert.rejects(call(path, m), (e: unknown) => e instanceof ControlError && e.code === 'EUNKNOWN' && e.message.includes(m), m);
  }
});

test('malformed requests get EPROTO and the connection stays usable', async (t) => {
  const { path } = await start(t);
  const c = await raw(path);
  t.after(async () => void c.sock.destroy());
  c.sock.write('this is not json\n');
  c.sock.write('{"id": 7, "method": 5}\n');
  c.sock.write('{"id": 8, "method": "echo", "params": [1, 2]}\n');
  c.sock.write('{"method": "echo"}\n');
  c.sock.write('{"id": 9, "method": "echo", "params": {"ok": true}}\n');
  const res = await c.waitFor(5) as { id: number | null; ok: boolean; error?: { code: string } }[];
  assert.deepEqual(res.map((r) => [r.id, r.ok, r.error?.code ?? null]), [
    [null, false, 'EPROTO'], [7, false, 'EPROTO'], [8, false, 'EPROTO'], [null, false, 'EPROTO'], [9, true, null],
  ]);
});

test('a line over 1 MiB gets an error reply and a hang-up; others are unaffected', async (t) => {
  const { path } = await start(t);
  const c = await raw(path);
  // no newline: the server must not wait for one forever nor buffer without bound
  const big = Buffer.alloc(MAX_REQUEST_LINE + 1, 'a');
  c.sock.write(big);
  await c.closed;
  assert.equal(c.responses.length, 1);
  assert.deepEqual(c.responses[0], { id: null, ok: false, error: { code: 'EPROTO_LINE', message: `request line longer than ${MAX_REQUEST_LINE} bytes` } });
  // exactly at the limit is still fine (a valid request padded with spaces)
  const ok = JSON.stringify({ id: 1, method: 'echo', params: { x: 1 } });
  const c2 = await raw(path);
  t.after(async () => void c2.sock.destroy());
  c2.sock.write(ok + ' '.repeat(MAX_REQUEST_LINE - ok.length) + '\n');
  assert.deepEqual(await c2.waitFor(1), [{ id: 1, ok: true, result: { x: 1 } }]);
  assert.deepEqual(await call(path, 'echo', { after: true }), { after: true });
});

test('a stale socket file is replaced; a file that is not a socket is left alone', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'meshd.sock');
  // A socket file nobody listens on: what a killed daemon leaves behind.
  // Closing a server unlinks its socket, so keep a second name (a hard link) for the inode.
  const dead = createServer();
  const first = join(dir, 'first.sock');
  await new Promise<void>((r) => dead.listen(first, r));
  await link(first, path);
  await new Promise<void>((r) => dead.close(() => r()));
  assert.ok((await lstat(path)).isSocket());
  await assert.rejects(call(path, 'echo'), DaemonNotRunningError);

  const server = await ControlServer.listen(path, handlers);
  t.after(() => server.close());
  assert.deepEqual(await call(path, 'echo', { fresh: 1 }), { fresh: 1 });

  const file = join(dir, 'not-a-socket');
  await writeFile(file, 'keep me');
  await assert.rejects(ControlServer.listen(file, handlers), (e: unknown) => e instanceof ControlServerError && e.code === 'EEXIST' && /is not a socket/.test(e.message));
  assert.ok(existsSync(file));
});

test('a second server on a live socket is refused and the first keeps working', async (t) => {
  const { path, server } = await start(t);
  const second = await ControlServer.listen(path, handlers).catch((e: unknown) => e);
  if (second instanceof ControlServer) await second.close(); // a bug: do not leave it listening
  assert.ok(second instanceof ControlServerError, `second listen must fail, got ${String(second)}`);
  assert.equal(second.code, 'EADDRINUSE');
  assert.match(second.message, /another meshd daemon is already running on .*meshd\.sock/);
  assert.deepEqual(await call(path, 'echo', { first: true }), { first: true });
  await server.close();
  assert.equal(existsSync(path), false, 'close removes the socket file');
  await server.close(); // twice is fine
});

test('client against no daemon: the one-line how-to-start message', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'meshd.sock');
  await assert.rejects(call(path, 'status', undefined, { timeoutMs: 2000 }), (e: unknown) => {
    assert.ok(e instanceof DaemonNotRunningError);
    assert.equal(e.message, `meshd daemon is not running (no socket at ${path}); start it with: meshd daemon  (or: systemctl start meshd)`);
    assert.ok(!e.message.includes('\n'));
    return true;
  });
});

test('client timeout when the daemon never answers', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'meshd.sock');
  const mute = createServer((s) => s.on('data', () => {}));
  await new Promise<void>((r) => mute.listen(path, r));
  t.after(() => new Promise<void>((r) => mute.close(() => r())));
  await assert.rejects(call(path, 'status', {}, { timeoutMs: 200 }), (e: unknown) => e instanceof ControlError && e.code === 'ETIMEDOUT' && /did not answer status within 200 ms/.test(e.message));
});
