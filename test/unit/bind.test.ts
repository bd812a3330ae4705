// UDP on loopback only (127.0.0.1 and ::1): batches through recvmmsg/sendmmsg and through node
// dgram, errors that must not stop the reader, and the socket options the native bind sets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { fileURLToPath } from 'node:url';
import { openBind, type Bind } from '../../src/wg/bind.js';
import { SLOT_SIZE } from '../../src/wg/batch.js';
import { addrToString } from '../../src/wg/endpoint.js';
import { batchTo, until } from './helpers/bind-suite.js';

interface Received { bytes: Buffer; length: number; from: string; port: number }

function collect(bind: Bind): { got: Received[] } {
  const out = { got: [] as Received[] };
  bind.start((b) => {
    for (let i = 0; i < b.count; i++) {
      out.got.push({
        bytes: b.length[i] >= 0 ? Buffer.from(b.packet(i)) : Buffer.alloc(0),
        length: b.length[i],
        from: addrToString(b.addr, i * 16),
        port: b.port[i],
      });
    }
  });
  return out;
}

for (const [ka, kb] of [['native', 'native'], ['native', 'dgram'], ['dgram', 'native']] as const) {
  test(`${ka} -> ${kb}: a batch of 64 distinct datagrams arrives whole, with its source`, async () => {
    const a = await openBind(0, ka);
    const b = await openBind(0, kb);
    try {
      assert.ok(a.port > 0 && b.port > 0 && a.port !== b.port, 'port 0 reports the ephemeral port');
      const rx = collect(b);
      collect(a);
      // distinct sizes (1..1261) and contents; a slot with length 0 in the middle is not sent
      const payloads = Array.from({ length: 64 }, (_, i) => Buffer.alloc(1 + i * 20, i));
      const batch = batchTo('127.0.0.1', b.port, [...payloads.slice(0, 32), Buffer.alloc(0), ...payloads.slice(32)]);
      a.send(batch);
      await until(() => rx.got.length >= 64);
      await new Promise((r) => setTimeout(r, 20));
      assert.equal(rx.got.length, 64);
      const sorted = rx.got.map((g) => g.bytes).sort((x, y) => x.length - y.length);
      assert.deepEqual(sorted, payloads);
      assert.ok(rx.got.every((g) => g.from === '127.0.0.1' && g.port === a.port));
      // IPv6 loopback on the same dual-stack socket
      a.send(batchTo('::1', b.port, [Buffer.from('six')]));
      await until(() => rx.got.length === 65);
      assert.equal(rx.got[64]?.from, '::1');
      assert.equal(rx.got[64]?.port, a.port);
      assert.equal(rx.got[64]?.bytes.toString(), 'six');
    } finally {
      a.close();
      b.close();
    }
  });
}

test('sending to a closed port does not stop later receives, on either bind', async () => {
  for (const kind of ['native', 'dgram'] as const) {
    const a = await openBind(0, kind);
    const gone = await openBind(0, 'native');
    const deadPort = gone.port;
    gone.close();
    const b = await openBind(0, 'native');
    try {
      const rx = collect(a);
      // The kernel answers with ICMP port unreachable. Linux queues that error only on connected
      // (or IP_RECVERR) sockets, which ours are not; either way a's reader must carry on.
      for (let i = 0; i < 5; i++) a.send(batchTo(i % 2 ? '::1' : '127.0.0.1', deadPort, [Buffer.from('x')]));
      await new Promise((r) => setTimeout(r, 100));
      b.send(batchTo('127.0.0.1', a.port, [Buffer.from('still here')]));
      await until(() => rx.got.length === 1);
      assert.equal(rx.got[0]?.bytes.toString(), 'still here', kind);
    } finally {
      a.close();
      b.close();
    }
  }
});

test('a port in use is a clear EADDRINUSE, on both binds', async () => {
  const b = await openBind(0, 'native');
  try {
    await assert.rejects(openBind(b.port, 'native'), (e: NodeJS.ErrnoException) => e.code === 'EADDRINUSE' && e.message.includes(String(b.port)));
    await assert.rejects(openBind(b.port, 'dgram'), (e: NodeJS.ErrnoException) => e.code === 'EADDRINUSE');
    await assert.rejects(openBind(65536, 'native'), RangeError);
  } finally {
    b.close();
  }
});

test('a datagram larger than a slot is flagged (length -1), and the ones after it arrive', async () => {
  const a = await openBind(0, 'dgram');
  const b = await openBind(0, 'native');
  try {
    const rx = collect(b);
    a.send(batchTo('127.0.0.1', b.port, [Buffer.alloc(1)])); // warm up: dgram's first send resolves the host
    await until(() => rx.got.length === 1);
    // a PacketBatch slot cannot hold it: send it through a plain socket
    const probe = Buffer.alloc(SLOT_SIZE + 100, 7);
    const raw = createSocket('udp4');
    await new Promise<void>((r) => raw.send(probe, b.port, '127.0.0.1', () => r()));
    raw.close();
    a.send(batchTo('127.0.0.1', b.port, [Buffer.from('after')]));
    await until(() => rx.got.length === 3);
    assert.equal(rx.got[1]?.length, -1);
    assert.equal(rx.got[2]?.bytes.toString(), 'after');
  } finally {
    a.close();
    b.close();
  }
});

test('the native socket is dual-stack and takes an fwmark', async () => {
  const b = await openBind(0, 'native');
  try {
    b.setMark?.(0x2a);
    const line = execFileSync('ss', ['-uaen', 'sport', '=', `:${b.port}`]).toString();
    assert.match(line, /fwmark:0x2a/);
    assert.match(line, /v6only:0/);
  } finally {
    b.close();
  }
});

// In a child process: node:test would claim an uncaught exception for itself.
test('a throw in onBatch is an uncaughtException, and a closed bind lets the process exit', async () => {
  const bindJs = fileURLToPath(new URL('../../src/wg/bind.js', import.meta.url));
  const endpointJs = fileURLToPath(new URL('../../src/wg/endpoint.js', import.meta.url));
  const batchJs = fileURLToPath(new URL('../../src/wg/batch.js', import.meta.url));
  const script = `
    import { openBind } from ${JSON.stringify(bindJs)};
    import { PacketBatch } from ${JSON.stringify(batchJs)};
    import { addrFromString } from ${JSON.stringify(endpointJs)};
    const bind = await openBind(0, 'native');
    process.on('uncaughtException', (e) => { console.log('caught ' + e.message); bind.close(); });
    bind.start(() => { throw new Error('boom'); });
    const b = new PacketBatch(1);
    b.length[0] = 1; addrFromString('127.0.0.1').copy(b.addr, 0); b.port[0] = bind.port; b.count = 1;
    bind.send(b);
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  const [code, signal] = await new Promise<[number | null, string | null]>((r) => child.on('close', (c, s) => r([c, s])));
  clearTimeout(timer);
  assert.equal(signal, null, `child hung after close(): ${out}`);
  assert.equal(code, 0, out);
  assert.match(out, /caught boom/);
});
