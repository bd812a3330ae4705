// UDP on loopback only: batches through recvmmsg/sendmmsg and through node dgram.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openBind, type Bind } from '../../src/wg/bind.js';
import { PacketBatch, SLOT_SIZE } from '../../src/wg/batch.js';
import { addrFromString, addrToString } from '../../src/wg/endpoint.js';

function collect(bind: Bind): { got: { bytes: Buffer; from: string; port: number }[] } {
  const out = { got: [] as { bytes: Buffer; from: string; port: number }[] };
  bind.start((b) => {
    for (let i = 0; i < b.count; i++) out.got.push({ bytes: Buffer.from(b.packet(i)), from: addrToString(b.addr, i * 16), port: b.port[i] });
  });
  return out;
}

function batchTo(ip: string, port: number, payloads: Buffer[]): PacketBatch {
  const b = new PacketBatch(payloads.length);
  payloads.forEach((p, i) => {
    p.copy(b.data, i * SLOT_SIZE);
    b.offset[i] = 0;
    b.length[i] = p.length;
    addrFromString(ip).copy(b.addr, i * 16);
    b.port[i] = port;
  });
  b.count = payloads.length;
  return b;
}

const until = async (fn: () => boolean, ms = 3000) => {
  const end = Date.now() + ms;
  while (!fn() && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
};

for (const [ka, kb] of [['native', 'native'], ['native', 'dgram'], ['dgram', 'native']] as const) {
  test(`${ka} -> ${kb}: a batch of 64 distinct datagrams arrives whole, with its source`, async () => {
    const a = await openBind(0, ka);
    const b = await openBind(0, kb);
    try {
      const rx = collect(b);
      collect(a);
      const payloads = Array.from({ length: 64 }, (_, i) => Buffer.alloc(1 + i * 20, i));
      a.send(batchTo('127.0.0.1', b.port, payloads));
      await until(() => rx.got.length === 64);
      assert.equal(rx.got.length, 64);
      const sorted = rx.got.map((g) => g.bytes).sort((x, y) => x.length - y.length);
      assert.deepEqual(sorted, payloads);
      assert.ok(rx.got.every((g) => g.from === '127.0.0.1' && g.port === a.port));
      // IPv6 loopback too
      a.send(batchTo('::1', b.port, [Buffer.from('six')]));
      await until(() => rx.got.length === 65);
      assert.equal(rx.got[64].from, '::1');
    } finally {
      a.close();
      b.close();
    }
  });
}

test('sending to a closed port does not stop later receives; a busy port is a clear error', async () => {
  const a = await openBind(0, 'native');
  const closed = await openBind(0, 'native');
  const deadPort = closed.port;
  closed.close();
  const b = await openBind(0, 'native');
  try {
    const rx = collect(a);
    for (let i = 0; i < 5; i++) a.send(batchTo('127.0.0.1', deadPort, [Buffer.from('x')])); // ICMP unreachable back
    await new Promise((r) => setTimeout(r, 100));
    b.send(batchTo('127.0.0.1', a.port, [Buffer.from('still here')]));
    await until(() => rx.got.length === 1);
    assert.equal(rx.got[0]?.bytes.toString(), 'still here');
    await assert.rejects(openBind(b.port, 'native'), (e: NodeJS.ErrnoException) => e.code === 'EADDRINUSE' && /51820|port/.test(e.message));
    await assert.rejects(openBind(b.port, 'dgram'), (e: NodeJS.ErrnoException) => e.code === 'EADDRINUSE');
  } finally {
    a.close();
    b.close();
  }
});
