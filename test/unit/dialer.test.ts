// Dialling a member at several addresses at once: a black hole listed first costs nothing, a
// different node at an address is not taken for the member, and every failure says why in words.
import '../../src/util/polyfill.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { createMeshNode } from '../../src/discovery/p2p.js';
import { DialFailedError, dialFirst, explainDialError } from '../../src/discovery/dialer.js';
import { LOOPBACK, newKey } from './helpers/mesh-fixture.js';

const gate = { allow: () => true };

/** A TCP port that accepts and then never says a word: a member behind a dead link looks so. */
async function blackHole(t: { after(fn: () => unknown): void }): Promise<number> {
  const sockets: Socket[] = [];
  const server: Server = createServer((s) => sockets.push(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return (server.address() as { port: number }).port;
}

async function node(t: { after(fn: () => unknown): void }, psk: string) {
  const n = await createMeshNode({ privateKey: await newKey(), psk, listen: LOOPBACK, gate });
  t.after(() => n.stop());
  return n;
}

test('a silent address listed first costs only its own attempt: the next one connects at once', async (t) => {
  const psk = randomBytes(32).toString('hex');
  const [a, b] = [await node(t, psk), await node(t, psk)];
  const hole = `/ip4/127.0.0.1/tcp/${await blackHole(t)}/p2p/${a.peerId}`;
  const real = a.getMultiaddrs()[0].toString();
  const t0 = performance.now();
  const r = await dialFirst(b, [hole, real], { timeoutMs: 10_000, staggerMs: 200 });
  const took = performance.now() - t0;
  assert.equal(r.conn.remotePeer.toString(), a.peerId.toString());
  assert.equal(r.addr, real);
  assert.ok(took < 3_000, `connected in ${Math.round(took)} ms, not after the silent address's 10 s`);
  // An open connection is reused, not dialled again.
  const again = await dialFirst(b, [hole, real], { timeoutMs: 10_000 });
  assert.equal(again.conn, r.conn);
});

test('a different node at the address is not the member; every failure is named in words', async (t) => {
  const psk = randomBytes(32).toString('hex');
  const [a, imposter, b] = [await node(t, psk), await node(t, psk), await node(t, psk)];
  const foreign = await node(t, randomBytes(32).toString('hex'));
  // imposter's address, labelled as a's
  const wrong = imposter.getMultiaddrs()[0].decapsulateCode(421).encapsulate(`/p2p/${a.peerId}`).toString();
  const otherNet = foreign.getMultiaddrs()[0].decapsulateCode(421).encapsulate(`/p2p/${a.peerId}`).toString();
  const closedPort = a.getMultiaddrs()[0].toString().replace(/\/tcp\/\d+/, '/tcp/1');
  const hole = `/ip4/127.0.0.1/tcp/${await blackHole(t)}/p2p/${a.peerId}`;
  const err = await dialFirst(b, [wrong, closedPort, otherNet, hole], { timeoutMs: 2_500, staggerMs: 50 }).then(
    () => assert.fail('no address leads to a'), (e: unknown) => e as DialFailedError);
  assert.ok(err instanceof DialFailedError, String(err));
  const why = Object.fromEntries(err.failures.map((f) => [f.addr, f.reason]));
  assert.equal(err.failures.length, 4, JSON.stringify(why));
  assert.match(why[wrong], /a different node answers at that address/);
  assert.match(why[closedPort], /connection refused: nothing listens on that port/);
  assert.match(why[otherNet], /another network|cut during the handshake|no answer within/);
  assert.match(why[hole], /no answer within 3 s/);
  assert.match(err.message, /127\.0\.0\.1:1 \(connection refused/);
  assert.equal(b.getConnections(imposter.peerId).length, 0, 'the imposter connection is closed');
});

test('dial errors explained', () => {
  assert.match(explainDialError(Object.assign(new Error('connect EHOSTUNREACH 198.20.1.2:4001'), { code: 'EHOSTUNREACH' }), 5000), /no route/);
  assert.match(explainDialError(new AggregateError([Object.assign(new Error('x'), { code: 'ECONNRESET' })]), 5000), /another network/);
  assert.match(explainDialError(new DOMException('The operation was aborted', 'AbortError'), 15_000), /no answer within 15 s/);
  assert.match(explainDialError(Object.assign(new Error('getaddrinfo ENOTFOUND x'), { code: 'ENOTFOUND' }), 5000), /does not resolve/);
});

test('an invite\'s sixteen addresses dialled at once: no "possible memory leak" warning from Node', async (t) => {
  const psk = randomBytes(32).toString('hex');
  const [a, b] = [await node(t, psk), await node(t, psk)];
  const warnings: string[] = [];
  const onWarning = (w: Error): void => void warnings.push(`${w.name}: ${w.message}`);
  process.on('warning', onWarning);
  t.after(() => process.off('warning', onWarning));
  // Sixteen silent addresses, all still waiting when the member's answers.
  const holes: string[] = [];
  for (let i = 0; i < 16; i++) holes.push(`/ip4/127.0.0.1/tcp/${await blackHole(t)}/p2p/${a.peerId}`);
  const r = await dialFirst(b, [...holes, a.getMultiaddrs()[0].toString()], { timeoutMs: 10_000, staggerMs: 5 });
  assert.equal(r.conn.remotePeer.toString(), a.peerId.toString());
  await new Promise((resolve) => setImmediate(resolve)); // warnings are emitted on the next tick
  assert.deepEqual(warnings.filter((w) => /MaxListeners/.test(w)), []);
});
