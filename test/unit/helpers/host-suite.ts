// A compliance suite for Host (src/discovery/host.ts), in the style of js-libp2p's
// interface-compliance-tests: the same few tests run against every implementation, so that what
// the in-memory host (memory-host.ts) lets a test observe is what a real libp2p node does.
// Covered: dialling by address, the connection on both sides (direction, peer, events), a
// protocol handler and a stream round trip in JSON frames, a protocol nobody handles, unhandle,
// and closing (both sides see it).
import '../../../src/util/polyfill.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { multiaddr } from '@multiformats/multiaddr';
import type { Host, HostConnection } from '../../../src/discovery/host.js';
import { FrameStream } from '../../../src/discovery/p2p.js';

export interface SuiteHost {
  host: Host;
  /** An address another host dials it at (ending in /p2p/<id>). */
  addr: string;
}

export interface HostFactory {
  /** Two hosts that can reach each other. */
  pair(): Promise<[SuiteHost, SuiteHost]>;
  stop(): Promise<void>;
}

const PROTO = '/meshd/test/echo/1';

function until<T>(host: Host, type: 'connection:open' | 'connection:close', match: (c: HostConnection) => boolean): Promise<HostConnection> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no ${type} within 10 s`)), 10_000);
    const on = (evt: CustomEvent<HostConnection>): void => {
      if (!match(evt.detail)) return;
      clearTimeout(t);
      host.removeEventListener(type, on);
      resolve(evt.detail);
    };
    host.addEventListener(type, on);
  });
}

export function hostCompliance(name: string, make: () => HostFactory): void {
  test(`${name}: a dial opens one connection, seen on both sides with its direction`, async (t) => {
    const f = make();
    t.after(() => f.stop());
    const [a, b] = await f.pair();
    const seenByB = until(b.host, 'connection:open', (c) => c.remotePeer.equals(a.host.peerId));
    const seenByA = until(a.host, 'connection:open', (c) => c.remotePeer.equals(b.host.peerId));
    const conn = await a.host.dial(multiaddr(b.addr));
    assert.equal(conn.remotePeer.toString(), b.host.peerId.toString());
    assert.equal(conn.direction, 'outbound');
    assert.equal(conn.status, 'open');
    assert.ok(conn.timeline.open <= Date.now());
    assert.equal((await seenByA).id, conn.id);
    const inbound = await seenByB;
    assert.equal(inbound.direction, 'inbound');
    assert.ok(b.host.getConnections().some((c) => c.id === inbound.id && c.status === 'open'));
    // Dialling the peer again (by id) gives the open connection.
    assert.equal((await a.host.dial(b.host.peerId)).id, conn.id);
  });

  test(`${name}: a handled protocol carries frames both ways; an unhandled one is refused`, async (t) => {
    const f = make();
    t.after(() => f.stop());
    const [a, b] = await f.pair();
    const from: string[] = [];
    await b.host.handle(PROTO, async (stream, conn) => {
      from.push(conn.remotePeer.toString());
      const frames = new FrameStream(stream, 1024);
      const v = await frames.read() as { n: number };
      await frames.write({ n: v.n + 1, by: 'b' });
      await frames.close();
    }, { maxInboundStreams: 2 });
    const conn = await a.host.dial(multiaddr(b.addr));
    for (const n of [1, 41]) {
      const frames = new FrameStream(await conn.newStream(PROTO, { signal: AbortSignal.timeout(5_000) }), 1024);
      await frames.write({ n });
      assert.deepEqual(await frames.read(AbortSignal.timeout(5_000)), { n: n + 1, by: 'b' });
      await frames.close();
    }
    assert.deepEqual(from, [a.host.peerId.toString(), a.host.peerId.toString()]);
    await assert.rejects(conn.newStream('/meshd/test/nobody/1', { signal: AbortSignal.timeout(5_000) }));
    await b.host.unhandle(PROTO);
    await assert.rejects(conn.newStream(PROTO, { signal: AbortSignal.timeout(5_000) }));
  });

  test(`${name}: closing a connection is seen on both sides`, async (t) => {
    const f = make();
    t.after(() => f.stop());
    const [a, b] = await f.pair();
    const conn = await a.host.dial(multiaddr(b.addr));
    const closedAtA = until(a.host, 'connection:close', (c) => c.id === conn.id);
    const closedAtB = until(b.host, 'connection:close', (c) => c.remotePeer.equals(a.host.peerId));
    await conn.close();
    await closedAtA;
    const remote = await closedAtB;
    assert.notEqual(conn.status, 'open');
    assert.notEqual(remote.status, 'open');
    assert.ok(!a.host.getConnections().some((c) => c.status === 'open' && c.remotePeer.equals(b.host.peerId)));
    await assert.rejects(conn.newStream(PROTO, { signal: AbortSignal.timeout(5_000) }));
  });
}
