// The compliance suite every Bind passes (as js-libp2p's interface suites): the real sockets, the
// in-memory ones, and the path layer wrapped around either. What the device relies on: a batch
// arrives whole with each datagram's source, skipped slots are not sent, port 0 gets a real port,
// a closed bind is quiet and closing twice is harmless.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PacketBatch, SLOT_SIZE } from '../../../src/wg/batch.js';
import type { Bind, BindFactory } from '../../../src/wg/bind.js';
import { addrFromString, addrToString } from '../../../src/wg/endpoint.js';

export interface BindEnv {
  /** Opens binds that can reach each other at `ip`. */
  open: BindFactory;
  ip: string;
}

interface Received { bytes: Buffer; from: string; port: number }

export function collect(bind: Bind): Received[] {
  const got: Received[] = [];
  bind.start((b) => {
    for (let i = 0; i < b.count; i++) {
      if (b.length[i] < 0) continue;
      got.push({ bytes: Buffer.from(b.packet(i)), from: addrToString(b.addr, i * 16), port: b.port[i] });
    }
  });
  return got;
}

export function batchTo(ip: string, port: number, payloads: Buffer[]): PacketBatch {
  const b = new PacketBatch(Math.max(1, payloads.length));
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

export async function until(fn: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!fn() && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
}

export function bindSuite(name: string, env: () => Promise<BindEnv>): void {
  test(`${name}: a batch of 64 distinct datagrams arrives whole, with its source; empty slots are not sent`, async () => {
    const { open, ip } = await env();
    const [a, b] = [await open(0), await open(0)];
    try {
      assert.ok(a.port > 0 && b.port > 0 && a.port !== b.port, 'port 0 reports the port it got');
      const rx = collect(b);
      collect(a);
      // WireGuard-shaped first bytes, distinct sizes and contents
      const payloads = Array.from({ length: 64 }, (_, i) => {
        const p = Buffer.alloc(32 + i * 20, i);
        p.writeUInt32LE(4, 0);
        return p;
      });
      const batch = batchTo(ip, b.port, [...payloads.slice(0, 32), Buffer.alloc(0), ...payloads.slice(32)]);
      batch.length[32] = 0;
      a.send(batch);
      await until(() => rx.length >= 64);
      await new Promise((r) => setTimeout(r, 20));
      assert.equal(rx.length, 64, 'every datagram, and nothing for the empty slot');
      assert.deepEqual(rx.map((g) => g.bytes).sort((x, y) => x.length - y.length), payloads);
      assert.ok(rx.every((g) => g.from === addrToString(addrFromString(ip)) && g.port === a.port));
    } finally {
      a.close();
      b.close();
    }
  });

  test(`${name}: a closed bind receives nothing, sending on it is a no-op, closing twice is harmless`, async () => {
    const { open, ip } = await env();
    const [a, b] = [await open(0), await open(0)];
    const rx = collect(b);
    const rxA = collect(a);
    b.close();
    b.close();
    a.send(batchTo(ip, b.port, [Buffer.from('after close')]));
    b.send(batchTo(ip, a.port, [Buffer.from('from a closed bind')]));
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(rx.length, 0);
    assert.equal(rxA.length, 0);
    a.close();
  });
}
