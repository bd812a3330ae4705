// The control socket under abuse (issue 9): ten thousand malformed requests, connections that
// idle, trickle, hog buffers or never read, thousands of them at once, and a server out of file
// descriptors. Each time the server answers what it can, closes what it must with a reply that
// says why, never throws, keeps its memory bounded, and a real user's request is still answered.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createConnection, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { ControlServer } from '../../src/control/server.js';
import { ControlError, call } from '../../src/control/client.js';
import { MAX_REQUEST_LINE } from '../../src/control/protocol.js';
import { openFileLimit, type ControlLimits } from '../../src/control/limits.js';

const CHILD = fileURLToPath(new URL('./helpers/control-child.js', import.meta.url));

type TestContext = { after(fn: () => unknown): void; diagnostic(msg: string): void };
interface Reply {
  id: number | null;
  ok: boolean;
  result?: unknown;
  error?: { code: string; message: string };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, fn: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

async function socketPath(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'meshd-abuse-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return join(dir, 'meshd.sock');
}

/** An in-process server with echo and sleep handlers; its warn/error log lines are collected. */
async function serve(t: TestContext, limits: Partial<ControlLimits> = {}): Promise<{ path: string; server: ControlServer; logs: { level: number; msg: string }[] }> {
  const path = await socketPath(t);
  const logs: { level: number; msg: string }[] = [];
  const sink = new Writable({ write: (line, _enc, done) => (logs.push(JSON.parse(String(line))), done()) });
  const handlers = {
    echo: async (p: unknown) => p,
    sleep: async (p: unknown) => {
      await sleep((p as { ms: number }).ms);
      return 'slept';
    },
  };
  const server = await ControlServer.listen(path, handlers, pino({ level: 'warn' }, sink), limits);
  t.after(() => server.close());
  return { path, server, logs };
}

/** A raw client connection: parsed replies, and whether the server closed it. */
class Raw {
  readonly replies: Reply[] = [];
  closedByServer = false;
  readonly closed: Promise<void>;
  private buf = '';

  private constructor(readonly sock: Socket, read: boolean) {
    sock.on('error', () => {}); // resets and broken pipes are what these clients are for
    this.closed = new Promise((r) => sock.once('close', () => r()));
    sock.once('end', () => (this.closedByServer = true));
    if (read) this.read();
  }

  /**
   * Connects, retrying while the listen backlog is full (EAGAIN on a UNIX socket). A `halfOpen`
   * client does not close its end when the server closes its own, as a stuck or hostile one would.
   */
  static async open(path: string, opts: { read?: boolean; halfOpen?: boolean } = {}): Promise<Raw> {
    for (let attempt = 0; ; attempt++) {
      const sock = createConnection({ path, allowHalfOpen: opts.halfOpen ?? false });
      if (opts.read === false) sock.pause();
      try {
        await new Promise<void>((resolve, reject) => {
          sock.once('connect', resolve);
          sock.once('error', reject);
        });
        return new Raw(sock, opts.read !== false);
      } catch (err) {
        sock.destroy();
        if ((err as NodeJS.ErrnoException).code !== 'EAGAIN' || attempt >= 50) throw err;
        await sleep(20);
      }
    }
  }

  /** `n` connections, opened `batch` at a time. */
  static async many(path: string, n: number, batch = 200, opts: { halfOpen?: boolean } = {}): Promise<Raw[]> {
    const all: Raw[] = [];
    while (all.length < n) all.push(...(await Promise.all(Array.from({ length: Math.min(batch, n - all.length) }, () => Raw.open(path, opts)))));
    return all;
  }

  read(): void {
    this.sock.on('data', (d: Buffer) => {
      this.buf += d.toString('utf8');
      for (let nl = this.buf.indexOf('\n'); nl >= 0; nl = this.buf.indexOf('\n')) {
        this.replies.push(JSON.parse(this.buf.slice(0, nl)) as Reply);
        this.buf = this.buf.slice(nl + 1);
      }
    });
    this.sock.resume();
  }

  async waitFor(n: number, ms = 30_000): Promise<Reply[]> {
    await until(`${n} replies (got ${this.replies.length})`, () => this.replies.length >= n, ms);
    return this.replies;
  }
}

/** A line the server must reject, and the reply it must give (id, code). */
interface Bad {
  line: Buffer | string;
  id: number | null;
  code: string;
}

/** The i-th malformed request: every kind in turn, a few huge ones among them. */
function malformed(i: number): Bad {
  const proto = (line: string | Buffer, id: number | null = null): Bad => ({ line, id, code: 'EPROTO' });
  if (i % 500 === 499) {
    // huge, but under the line limit
    const junk = 'x'.repeat(900 * 1024);
    return [proto(junk), proto(`{"id":${i},"method":"echo","junk":"${junk}"}`, i), { line: `{"id":${i},"method":"nope","params":{"a":"${junk}"}}`, id: i, code: 'EUNKNOWN' }][i % 3];
  }
  const deep = `${'['.repeat(10_000)}${']'.repeat(10_000)}`;
  const kinds: (() => Bad)[] = [
    // not JSON
    () => proto(`not json ${i}`),
    () => proto('{'),
    () => proto(`{"id":${i},"method":"echo"`),
    () => proto(`{id:${i},method:'echo'}`),
    () => proto(`{"id":${i},"method":"echo"}}`),
    // binary garbage: no newline inside, invalid UTF-8 first
    () => proto(Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(randomBytes(1 + (i % 300)).map((b) => (b === 0x0a ? 0 : b)))])),
    // JSON, but not an object
    () => proto('[]'),
    () => proto(`[${i},"echo"]`),
    () => proto(String(i)),
    () => proto('null'),
    () => proto(`"{\\"id\\":${i}}"`),
    () => proto('true'),
    () => proto(deep),
    // id missing or of the wrong type
    () => proto('{"method":"echo","params":{}}'),
    () => proto(`{"id":"${i}","method":"echo"}`),
    () => proto(`{"id":-${i + 1},"method":"echo"}`),
    () => proto(`{"id":${i}.5,"method":"echo"}`),
    () => proto('{"id":null,"method":"echo"}'),
    () => proto('{"id":1e300,"method":"echo"}'),
    () => proto(`{"id":{"n":${i}},"method":"echo"}`),
    () => proto(`{"id":[${i}],"method":"echo"}`),
    () => proto('{"id":true,"method":"echo"}'),
    // method missing or of the wrong type
    () => proto(`{"id":${i}}`, i),
    () => proto(`{"id":${i},"method":5}`, i),
    () => proto(`{"id":${i},"method":""}`, i),
    () => proto(`{"id":${i},"method":null}`, i),
    () => proto(`{"id":${i},"method":"${'m'.repeat(129)}"}`, i),
    () => proto(`{"id":${i},"method":["echo"]}`, i),
    () => proto(`{"id":${i},"method":${deep}}`, i),
    // params of the wrong type
    () => proto(`{"id":${i},"method":"echo","params":[1,2]}`, i),
    () => proto(`{"id":${i},"method":"echo","params":"x"}`, i),
    () => proto(`{"id":${i},"method":"echo","params":null}`, i),
    () => proto(`{"id":${i},"method":"echo","params":3}`, i),
    () => proto(`{"id":${i},"method":"echo","params":${deep}}`, i),
    // unknown keys (a thousand of them: the message stays short), a repeated id
    () => proto(`{"id":${i},"method":"echo","extra":1}`, i),
    () => proto(`{"id":${i},"method":"echo",${Array.from({ length: 1000 }, (_, k) => `"key${k}":${k}`).join(',')}}`, i),
    () => proto(`{"id":"x","id":${i},"method":"echo","params":[]}`, i),
    // well-formed, but no such method
    () => ({ line: `{"id":${i},"method":"nope${i}"}`, id: i, code: 'EUNKNOWN' }),
    () => ({ line: `{"id":${i},"method":"__proto__"}`, id: i, code: 'EUNKNOWN' }),
    () => ({ line: `{"id":${i},"method":"constructor","params":{}}`, id: i, code: 'EUNKNOWN' }),
  ];
  return kinds[i % kinds.length]();
}

const key = (r: { id: number | null; code?: string }) => `${r.id}|${r.code}`;

test('10,000 malformed requests on four connections: each gets its error reply; partial lines and oversized ones end in a hang-up; users are still served', { timeout: 120_000 }, async (t) => {
  const { path, server, logs } = await serve(t);
  const N = 10_000;
  const CONNS = 4;
  const bad = Array.from({ length: N }, (_, i) => malformed(i));
  const clients = await Raw.many(path, CONNS);
  t.after(() => clients.forEach((c) => c.sock.destroy()));
  // all pipelined: each connection's share in one go (the server reads with backpressure)
  clients.forEach((c, k) => c.sock.write(Buffer.concat(bad.filter((_, i) => i % CONNS === k).flatMap((b) => [Buffer.from(b.line), Buffer.from('\n')]))));

  // meanwhile: partial lines and hang-ups (no reply possible), and lines over the limit
  const partial = await Raw.many(path, 200);
  partial.forEach((c, i) => (i % 2 ? c.sock.end('{"id":1,"method":"ec') : c.sock.write('{"id":1,"method":"ec', () => c.sock.destroy())));
  const oversized = await Raw.many(path, 4);
  for (const c of oversized) c.sock.write(Buffer.alloc(MAX_REQUEST_LINE + 1 + randomBytes(1)[0] * 1000, '{'));

  for (const [k, c] of clients.entries()) {
    const mine = bad.filter((_, i) => i % CONNS === k);
    const replies = await c.waitFor(mine.length, 60_000);
    await sleep(100);
    assert.equal(replies.length, mine.length, `connection ${k}: one reply per malformed line`);
    assert.ok(replies.every((r) => r.ok === false && typeof r.error?.message === 'string'), `connection ${k}: every reply is an error`);
    assert.deepEqual(replies.map((r) => key({ id: r.id, code: r.error?.code })).sort(), mine.map(key).sort(), `connection ${k}: the right id and code for each`);
    assert.ok(replies.every((r) => r.error!.message.length <= 200 && !r.error!.message.includes('\n')), 'error messages are one short line');
    assert.ok(!c.closedByServer, 'the connection stays usable after malformed requests');
  }
  for (const c of oversized) {
    await c.closed;
    assert.ok(c.closedByServer);
    assert.deepEqual(c.replies.map((r) => r.error?.code), ['EPROTO_LINE'], 'an oversized line gets one reply and a hang-up');
  }
  for (const c of partial) {
    await c.closed;
    assert.equal(c.replies.length, 0, 'a partial line then a hang-up: nothing to answer');
  }

  // the connections that did their work are still answered; a fresh one too
  clients[0].sock.write('{"id":424242,"method":"echo","params":{"still":"here"}}\n');
  const last = await clients[0].waitFor(N / CONNS + 1);
  assert.deepEqual(last.at(-1), { id: 424242, ok: true, result: { still: 'here' } });
  assert.deepEqual(await call(path, 'echo', { fresh: true }), { fresh: true });
  clients.forEach((c) => c.sock.destroy());
  await until('every connection to be released', () => server.connections === 0);
  assert.deepEqual(logs.filter((l) => l.level >= 50), [], 'nothing logged as an error');
});

test('idle connections are closed with EIDLE: silent ones, trickled unfinished lines, unread replies; a slow request in flight is not idle', { timeout: 60_000 }, async (t) => {
  const idleMs = 500;
  const { path, server } = await serve(t, { idleMs });
  const silent = await Raw.open(path);
  const unfinished = await Raw.open(path);
  unfinished.sock.write('{"id":1,"method":"echo"');
  // a slowloris: one byte of a line every 100 ms, never finishing
  const trickle = await Raw.open(path);
  const dribble = setInterval(() => trickle.sock.write(' '), 100);
  t.after(() => clearInterval(dribble));
  const slow = await Raw.open(path);
  slow.sock.write('{"id":2,"method":"sleep","params":{"ms":1500}}\n');
  // asks, never reads the answers
  const deaf = await Raw.open(path, { read: false });
  deaf.sock.write('{"id":3,"method":"echo"}\n');

  await Promise.all([silent.closed, unfinished.closed, trickle.closed]);
  const eidle = { id: null, ok: false, error: { code: 'EIDLE', message: `closing a control connection idle for ${idleMs / 1000} s` } };
  for (const c of [silent, unfinished, trickle]) {
    assert.ok(c.closedByServer);
    assert.deepEqual(c.replies, [eidle]);
  }
  deaf.read(); // what it would have read: its answer, then why it was closed
  await deaf.closed;
  assert.deepEqual(deaf.replies, [{ id: 3, ok: true, result: {} }, eidle]);
  // the slow request was in flight for three idle periods: it got its answer, then idled out
  await slow.closed;
  assert.deepEqual(slow.replies.map((r) => r.id ?? r.error?.code), [2, 'EIDLE']);
  assert.equal(server.connections, 0);
});

test('a client that never reads its replies is not read from (the server holds ~1 MiB for it, not what it sent)', { timeout: 60_000 }, async (t) => {
  const { path } = await serve(t);
  const deaf = await Raw.open(path, { read: false });
  t.after(() => deaf.sock.destroy());
  const payload = 'y'.repeat(32 * 1024);
  const N = 2000; // 64 MiB of requests, 64 MiB of replies
  const requests = Array.from({ length: N }, (_, i) => `{"id":${i},"method":"echo","params":{"p":"${payload}"}}\n`);
  const total = requests.reduce((n, r) => n + r.length, 0);
  for (const r of requests) deaf.sock.write(r);
  let last = -1;
  await until('the client to stop getting rid of its requests', async () => {
    const now = deaf.sock.writableLength;
    await sleep(300);
    const settled = now === last && now === deaf.sock.writableLength;
    last = now;
    return settled;
  });
  const taken = total - deaf.sock.writableLength;
  t.diagnostic(`the server took ${taken >> 10} KiB of ${total >> 10} KiB of requests while its replies went unread`);
  assert.ok(taken < 8 * 1024 * 1024, `the server stopped reading (it took ${taken} bytes)`);
  deaf.read();
  const replies = await deaf.waitFor(N, 60_000);
  assert.equal(replies.length, N);
  assert.ok(replies.every((r, i) => r.ok && r.id === i));
});

test('unfinished lines are bounded in total: the connection holding the most is closed with EBUSY', { timeout: 60_000 }, async (t) => {
  const maxBufferedBytes = 4 * 1024 * 1024;
  const { path, server } = await serve(t, { maxBufferedBytes });
  const hogs = await Raw.many(path, 10);
  for (const c of hogs) {
    c.sock.write(Buffer.alloc(900 * 1024, ' '));
    await sleep(50);
  }
  await until('the hogs to be trimmed', () => hogs.filter((c) => c.closedByServer).length >= 6);
  await sleep(200);
  const closed = hogs.filter((c) => c.closedByServer);
  assert.equal(closed.length, 6, '4 of 900 KiB fit in 4 MiB');
  for (const c of closed) {
    assert.equal(c.replies.length, 1);
    assert.equal(c.replies[0].error?.code, 'EBUSY');
    assert.match(c.replies[0].error!.message, /^meshd daemon holds 4194304 bytes of unfinished requests; closing the largest \(\d+ bytes\)$/);
  }
  assert.equal(server.connections, 4);
  assert.deepEqual(await call(path, 'echo', { user: 1 }), { user: 1 });
});

test('at the connection cap the longest-idle connection makes room; when every one is busy a newcomer is refused with EBUSY', { timeout: 60_000 }, async (t) => {
  const { path, server } = await serve(t, { maxConnections: 8 });
  const idle = await Raw.many(path, 8, 1);
  // a user gets through: the oldest idle connection is closed for it, with the reason
  assert.deepEqual(await call(path, 'echo', { user: 1 }), { user: 1 });
  await idle[0].closed;
  assert.deepEqual(idle[0].replies, [{ id: null, ok: false, error: { code: 'EBUSY', message: 'meshd daemon has 8 control connections open; closing this idle one' } }]);
  assert.ok(idle.slice(1).every((c) => !c.closedByServer), 'only the oldest');
  // every connection waiting for an answer: nothing can be closed, the newcomer is told to retry
  const busy = await Raw.many(path, 8);
  busy.forEach((c, i) => c.sock.write(`{"id":${i},"method":"sleep","params":{"ms":1500}}\n`));
  await until('eight busy connections', () => server.connections === 8 && idle.every((c) => c.closedByServer));
  await assert.rejects(call(path, 'echo', {}, { timeoutMs: 400 }), (e: unknown) => e instanceof ControlError && e.code === 'EBUSY' && e.message === 'meshd daemon has 8 control connections open, all busy; try again');
  // A user with time to wait is not told to retry: the client asks again until a slot frees.
  const patient = call(path, 'echo', { user: 3 });
  for (const [i, c] of busy.entries()) assert.deepEqual(await c.waitFor(1), [{ id: i, ok: true, result: 'slept' }]);
  assert.deepEqual(await patient, { user: 3 });
  assert.deepEqual(await call(path, 'echo', { user: 2 }), { user: 2 });
  busy.forEach((c) => c.sock.destroy());
});

/** A control server in a child process (started by bash, after `ulimit -n fds` if given). */
async function child(t: TestContext, opts: { fds?: number; limits?: Partial<ControlLimits> } = {}) {
  const path = await socketPath(t);
  const cmd = `${opts.fds ? `ulimit -n ${opts.fds} && ` : ''}exec "$0" "$@"`;
  const proc = spawn('bash', ['-c', cmd, process.execPath, CHILD, path, JSON.stringify(opts.limits ?? {})], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout.on('data', (d) => (out += d));
  proc.stderr.on('data', (d) => (err += d));
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  t.after(async () => {
    if (proc.exitCode === null) proc.kill('SIGTERM');
    await exited;
  });
  await until('the child server', () => out.includes('\n') || proc.exitCode !== null, 10_000);
  assert.equal(proc.exitCode, null, `child server exited: ${err}`);
  const { limits } = JSON.parse(out) as { limits: ControlLimits };
  const rssKiB = () => Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${proc.pid}/status`, 'utf8'))?.[1]);
  const fds = () => readdirSync(`/proc/${proc.pid}/fd`).length;
  return { path, limits, rssKiB, fds, alive: () => proc.exitCode === null, stderr: () => err };
}

/** What the test process itself needs: its clients' sockets. */
function needFds(t: { skip(msg: string): void }, n: number): boolean {
  const have = openFileLimit();
  if (have !== null && have < n) {
    t.skip(`needs ${n} open files, RLIMIT_NOFILE is ${have}`);
    return false;
  }
  return true;
}

test('3,000 idle connections and 300 unfinished 64 KiB lines: users are answered, the server holds at most its cap, its memory stays bounded', { timeout: 120_000 }, async (t) => {
  if (!needFds(t, 4000)) return;
  const srv = await child(t);
  const cap = srv.limits.maxConnections;
  const before = srv.rssKiB();
  const idle = await Raw.many(srv.path, 3000);
  const unfinished = await Raw.many(srv.path, 300);
  for (const c of unfinished) c.sock.write(Buffer.alloc(64 * 1024, ' '));
  const all = [...idle, ...unfinished];
  t.after(() => all.forEach((c) => c.sock.destroy()));
  await until('the server to trim to its cap', () => all.filter((c) => c.closedByServer).length >= all.length - cap);

  const users = await Promise.all(Array.from({ length: 20 }, (_, i) => call(srv.path, 'echo', { user: i })));
  assert.deepEqual(users, Array.from({ length: 20 }, (_, i) => ({ user: i })));
  const serving = await call<number>(srv.path, 'connections');
  assert.ok(serving <= cap, `serving ${serving} connections, cap ${cap}`);
  await until('closed connections to get their reply', () => all.every((c) => !c.closedByServer || c.replies.length > 0), 5000);
  const closed = all.filter((c) => c.closedByServer);
  assert.ok(closed.length >= all.length - cap, `${closed.length} closed to stay under the cap of ${cap}`);
  assert.ok(closed.every((c) => c.replies.length === 1 && c.replies[0].error?.code === 'EBUSY'), 'each closed connection was told why (EBUSY)');
  const after = srv.rssKiB();
  t.diagnostic(`cap ${cap}, ${closed.length} of ${all.length} connections closed; server RSS ${before >> 10} MiB before, ${after >> 10} MiB after`);
  assert.ok(after < before * 2 + 100 * 1024, `server RSS ${after} KiB after, ${before} KiB before`);
  assert.ok(srv.alive());
});

test('a server with only 256 file descriptors (EMFILE territory) under 1,000 connections that never close: it stays below the limit and users are answered', { timeout: 120_000 }, async (t) => {
  if (!needFds(t, 2500)) return;
  const srv = await child(t, { fds: 256 });
  assert.equal(srv.limits.maxConnections, 64, 'a quarter of the open-file limit');
  // The flood keeps its end open when the server closes, so every connection the server closes
  // lingers for the whole grace, and 200 newcomers at once close 200 of them.
  const base = srv.fds(); // the process's own, before any client (21 on Node 20 here)
  const idle = await Raw.many(srv.path, 1000, 200, { halfOpen: true });
  t.after(() => idle.forEach((c) => c.sock.destroy()));
  let mostFds = srv.fds();
  await until('the server to trim to its cap', () => {
    mostFds = Math.max(mostFds, srv.fds());
    return idle.filter((c) => c.closedByServer).length >= 1000 - 64;
  });
  for (let round = 0; round < 5; round++) {
    const users = await Promise.all(Array.from({ length: 10 }, (_, i) => call(srv.path, 'echo', { round, user: i })));
    assert.deepEqual(users, Array.from({ length: 10 }, (_, i) => ({ round, user: i })));
    idle.push(...(await Raw.many(srv.path, 200, 200, { halfOpen: true }))); // and the flood goes on
    mostFds = Math.max(mostFds, srv.fds());
  }
  t.diagnostic(`at most ${mostFds} file descriptors open of 256, ${base} before any client`);
  // Its connections and those closing are each capped at 64; a few more are mid-accept.
  assert.ok(mostFds - base <= 2 * 64 + 8, `the server held ${mostFds - base} file descriptors for clients, more than its caps allow`);
  assert.ok(srv.alive());
  assert.doesNotMatch(srv.stderr(), /EMFILE|"level":(50|60)/, 'no accept failures or errors logged');
});
