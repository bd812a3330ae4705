// The Prometheus metrics of `meshd daemon --metrics` (src/daemon/metrics.ts): values read at
// scrape time from narrow sources, engine totals as counters, the HTTP side on loopback.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { DROP_REASONS, MAX_CONNECTIONS, Metrics, metricsRegistry, type EngineTotals, type MetricsSources, type PeerSample } from '../../src/daemon/metrics.js';

const zeroDrops = () => Object.fromEntries(Object.keys(DROP_REASONS).map((k) => [k, 0])) as unknown as EngineTotals['drops'];

function fake() {
  const state = {
    peers: [] as PeerSample[],
    engine: { handshakes: 0, cookieReplies: 0, drops: zeroDrops() } as EngineTotals,
    events: 0,
    reads: 0,
  };
  const sources: MetricsSources = {
    peers: () => {
      state.reads++;
      return state.peers;
    },
    engine: () => state.engine,
    ledgerEvents: () => state.events,
  };
  return { state, sources };
}

function values(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const cut = line.lastIndexOf(' ');
    out.set(line.slice(0, cut), Number(line.slice(cut + 1)));
  }
  return out;
}

test('values are read at scrape time; engine totals are counters set to their absolute value; gone peers disappear', async () => {
  const { state, sources } = fake();
  const registry = metricsRegistry(sources);
  assert.equal(state.reads, 0, 'nothing read before a scrape');
  const now = Date.now();
  state.peers = [
    { name: 'alpha', path: 'direct', rxBytes: 1000, txBytes: 2000, lastHandshake: now, latencyMs: 1.5 },
    { name: 'bravo', path: 'relay', rxBytes: 10, txBytes: 20, lastHandshake: null, latencyMs: null },
    { name: 'charlie', path: null, rxBytes: 0, txBytes: 0, lastHandshake: null, latencyMs: null },
  ];
  state.engine = { handshakes: 3, cookieReplies: 4, drops: { ...zeroDrops(), replay: 2, sourceCheck: 5 } };
  state.events = 7;
  let text = await registry.metrics();
  let v = values(text);
  assert.ok(state.reads >= 1 && state.reads <= 2, `one peer snapshot per scrape, not one per metric (${state.reads})`);
  assert.equal(v.get('meshd_peers{path="direct"}'), 1);
  assert.equal(v.get('meshd_peers{path="relay"}'), 1);
  assert.equal(v.get('meshd_peers{path="none"}'), 1);
  assert.equal(v.get('meshd_peer_rx_bytes_total{peer="alpha"}'), 1000);
  assert.equal(v.get('meshd_peer_tx_bytes_total{peer="alpha"}'), 2000);
  assert.equal(v.get('meshd_peer_last_handshake_seconds{peer="alpha"}'), now / 1000);
  assert.equal(v.get('meshd_peer_last_handshake_seconds{peer="bravo"}'), 0, 'never: 0');
  assert.equal(v.get('meshd_peer_latency_seconds{peer="alpha"}'), 0.0015);
  assert.equal(v.has('meshd_peer_latency_seconds{peer="bravo"}'), false, 'no figure, no series');
  assert.equal(v.get('meshd_handshakes_total'), 3);
  assert.equal(v.get('meshd_packets_dropped_total{reason="replay"}'), 2);
  assert.equal(v.get('meshd_packets_dropped_total{reason="allowed_ips"}'), 5);
  assert.equal(v.get('meshd_packets_dropped_total{reason="cookie"}'), 4);
  assert.equal(v.get('meshd_packets_dropped_total{reason="decrypt"}'), 0);
  assert.equal(v.get('meshd_ledger_events'), 7);
  assert.match(text, /# TYPE meshd_peer_rx_bytes_total counter/);
  assert.match(text, /# TYPE meshd_handshakes_total counter/);
  assert.match(text, /# TYPE meshd_packets_dropped_total counter/);
  for (const name of ['process_cpu_user_seconds_total', 'process_resident_memory_bytes', 'nodejs_eventloop_lag_seconds', 'nodejs_heap_size_used_bytes']) assert.ok(v.has(name), name);

  // Totals move on, bravo leaves: a later scrape shows the new absolute values, no sum of both.
  state.peers = [{ ...state.peers[0], rxBytes: 5000 }];
  state.engine = { ...state.engine, handshakes: 4 };
  await new Promise((r) => setTimeout(r, 150));
  text = await registry.metrics();
  v = values(text);
  assert.equal(v.get('meshd_peer_rx_bytes_total{peer="alpha"}'), 5000);
  assert.equal(v.get('meshd_handshakes_total'), 4);
  assert.equal(v.has('meshd_peer_rx_bytes_total{peer="bravo"}'), false);
  assert.equal(v.get('meshd_peers{path="relay"}'), 0);
});

test('HTTP: 503 until served, then GET /metrics; 404 elsewhere, 405 for POST; a port in use is one line', async (tc) => {
  const m = await Metrics.start({ listen: { host: '127.0.0.1', port: 0 } });
  tc.after(() => m.stop());
  const url = `http://127.0.0.1:${m.address.port}`;
  assert.equal((await fetch(`${url}/metrics`)).status, 503);
  const { sources } = fake();
  m.serve(sources);
  const r = await fetch(`${url}/metrics`);
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  assert.match(await r.text(), /^meshd_ledger_events 0$/m);
  assert.equal((await fetch(`${url}/`)).status, 404);
  assert.equal((await fetch(`${url}/metrics`, { method: 'POST' })).status, 405);
  await assert.rejects(Metrics.start({ listen: { host: '127.0.0.1', port: m.address.port } }),
    new RegExp(`^Error: --metrics 127\\.0\\.0\\.1:${m.address.port}: cannot listen: the port is in use$`));
});

test('stop closes the port (and open keep-alive connections)', async () => {
  const m = await Metrics.start({ listen: { host: '127.0.0.1', port: 0 } });
  m.serve(fake().sources);
  const port = m.address.port;
  assert.equal((await fetch(`http://127.0.0.1:${port}/metrics`)).status, 200);
  await m.stop();
  await assert.rejects(fetch(`http://127.0.0.1:${port}/metrics`));
  const again = await Metrics.start({ listen: { host: '127.0.0.1', port } });
  await again.stop();
});

test('a flood of connections that send half a request: the metrics server keeps MAX_CONNECTIONS, closes the rest at once, answers the kept ones 408 in time; scrapes work after', async (tc) => {
  const m = await Metrics.start({ listen: { host: '127.0.0.1', port: 0 }, requestTimeoutMs: 1000 });
  tc.after(() => m.stop());
  m.serve(fake().sources);
  const port = m.address.port;
  const flood = await Promise.all(Array.from({ length: 100 }, () => new Promise<{ sock: Socket; got: string; closed: boolean }>((resolve, reject) => {
    const c = { sock: connect(port, '127.0.0.1'), got: '', closed: false };
    c.sock.once('connect', () => {
      c.sock.on('error', () => {}); // resets from the server are expected
      c.sock.write('GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n'); // and never the blank line
      resolve(c);
    });
    c.sock.once('error', reject);
    c.sock.on('data', (d: Buffer) => (c.got += d.toString('latin1')));
    c.sock.once('close', () => (c.closed = true));
  })));
  tc.after(() => flood.forEach((c) => c.sock.destroy()));
  for (const deadline = Date.now() + 20_000; !flood.every((c) => c.closed); ) {
    assert.ok(Date.now() < deadline, `${flood.filter((c) => !c.closed).length} connections still open after 20 s`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const timedOut = flood.filter((c) => /^HTTP\/1\.1 408 /.test(c.got));
  const refused = flood.filter((c) => c.got === '');
  assert.equal(timedOut.length, MAX_CONNECTIONS, 'the connections kept were answered 408 Request Timeout');
  assert.equal(refused.length, 100 - MAX_CONNECTIONS, 'the rest were closed without an answer');
  const r = await fetch(`http://127.0.0.1:${port}/metrics`);
  assert.equal(r.status, 200);
  assert.match(await r.text(), /^meshd_ledger_events 0$/m);
});
