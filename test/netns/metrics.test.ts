// `meshd daemon --metrics ADDR:PORT` with real daemons: Prometheus text at /metrics, scraped from
// inside each node's namespace (node's fetch, run there with `ip netns exec`), before and after
// traffic through the tunnel; the per-peer byte counters grow by at least what went through. Also:
// a --metrics value the daemon cannot use fails the start with one line and changes nothing, and
// the daemon's log lines carry one `name` key each, a voluntary leave no warning.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lan, type MeshNode } from './mesh.js';
import { MESHD, Topology, ping, waitFor } from './harness.js';

const PORT = 9464;

/** GET url from inside namespace ns: the status, the content type and the body. */
async function get(t: Topology, ns: string, url: string): Promise<{ status: number; type: string; body: string }> {
  const script = 'fetch(process.argv[1]).then(async (r) => process.stdout.write(JSON.stringify({ status: r.status, type: r.headers.get("content-type"), body: await r.text() })))';
  const { stdout } = await t.exec(ns, process.execPath, ['-e', script, url], { timeout: 10_000 });
  return JSON.parse(stdout) as { status: number; type: string; body: string };
}

/** Prometheus text format: `name{labels}` -> value, and `name` -> its TYPE. */
function parse(text: string): { values: Map<string, number>; types: Map<string, string> } {
  const values = new Map<string, number>();
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) types.set(type[1], type[2]);
    if (line === '' || line.startsWith('#')) continue;
    const cut = line.lastIndexOf(' ');
    values.set(line.slice(0, cut), Number(line.slice(cut + 1)));
  }
  return { values, types };
}

async function scrape(lan: Lan, node: MeshNode): Promise<Map<string, number>> {
  const r = await get(lan.t, node.ns, `http://${node.lanIp}:${PORT}/metrics`);
  assert.equal(r.status, 200, r.body);
  return parse(r.body).values;
}

/** The JSON log lines of a daemon's output. */
function logLines(node: MeshNode): string[] {
  return (node.proc?.output() ?? '').split('\n').filter((l) => l.startsWith('{'));
}

test('--metrics: peers by path, per-peer bytes that follow the traffic, handshakes, drops, latency, ledger, process', { timeout: 180_000 }, async (tc) => {
  const lan = new Lan();
  tc.after(() => lan.cleanup());
  await lan.init();
  const nodes = await lan.lanMesh(['alpha', 'bravo', 'charlie'], { args: (n) => ['--metrics', `${n.lanIp}:${PORT}`], env: { LOG_LEVEL: 'info' } });
  const [a, b, c] = nodes;
  const ipOf = new Map<string, string>();
  for (const n of nodes) ipOf.set(n.name, (await lan.status(n)).self.meshIp!);

  // The exposition itself: content type, counters typed as counters.
  const raw = await get(lan.t, a.ns, `http://${a.lanIp}:${PORT}/metrics`);
  assert.equal(raw.status, 200);
  assert.match(raw.type, /^text\/plain; version=0\.0\.4/);
  const { types } = parse(raw.body);
  for (const name of ['meshd_peer_rx_bytes_total', 'meshd_peer_tx_bytes_total', 'meshd_handshakes_total', 'meshd_packets_dropped_total']) assert.equal(types.get(name), 'counter', name);
  for (const name of ['meshd_peers', 'meshd_peer_last_handshake_seconds', 'meshd_peer_latency_seconds', 'meshd_ledger_events']) assert.equal(types.get(name), 'gauge', name);
  assert.equal((await get(lan.t, a.ns, `http://${a.lanIp}:${PORT}/`)).status, 404);

  // Latency: the prober's figure, once it has one (every 5 s).
  await waitFor(async () => (await scrape(lan, a)).has('meshd_peer_latency_seconds{peer="bravo"}'), 20_000, 'a latency figure for bravo');

  const a0 = await scrape(lan, a);
  const b0 = await scrape(lan, b);
  // 50 echo requests of 1000 bytes payload: 1028-byte IP packets, each one WireGuard datagram.
  const r = await ping(lan.t, a.ns, ipOf.get('bravo')!, { count: 50, interval: 0.02, size: 1000 });
  assert.ok(r.received >= 45, `pings answered: ${r.received}/${r.transmitted}`);
  const a1 = await scrape(lan, a);
  const b1 = await scrape(lan, b);
  const grew = (before: Map<string, number>, after: Map<string, number>, key: string) => (after.get(key) ?? NaN) - (before.get(key) ?? NaN);
  const ipBytes = 1000 + 8 + 20;
  assert.ok(grew(a0, a1, 'meshd_peer_tx_bytes_total{peer="bravo"}') >= r.transmitted * ipBytes, 'alpha sent to bravo at least the requests');
  assert.ok(grew(b0, b1, 'meshd_peer_rx_bytes_total{peer="alpha"}') >= r.transmitted * ipBytes, 'bravo received from alpha at least the requests');
  assert.ok(grew(b0, b1, 'meshd_peer_tx_bytes_total{peer="alpha"}') >= r.received * ipBytes, 'bravo sent the replies');
  assert.ok(grew(a0, a1, 'meshd_peer_rx_bytes_total{peer="bravo"}') >= r.received * ipBytes, 'alpha received the replies');
  // charlie saw none of it: its counters moved by keepalives and probes at most.
  assert.ok(grew(a0, a1, 'meshd_peer_tx_bytes_total{peer="charlie"}') < 10 * ipBytes);

  for (const [n, m] of [[a, a1], [b, b1]] as const) {
    assert.ok(m.get('meshd_handshakes_total')! >= 1, `${n.name}: handshakes`);
    assert.equal(m.get('meshd_peers{path="direct"}'), nodes.length - 1, `${n.name}: every other member direct`);
    assert.equal(m.get('meshd_peers{path="relay"}'), 0);
    assert.ok(m.get('meshd_ledger_events')! > 0, `${n.name}: ledger events`);
    for (const other of nodes.filter((o) => o !== n)) {
      const hs = m.get(`meshd_peer_last_handshake_seconds{peer="${other.name}"}`)!;
      assert.ok(Math.abs(Date.now() / 1000 - hs) < 200, `${n.name}: last handshake with ${other.name} is a recent unix time (${hs})`);
    }
    for (const reason of ['replay', 'decrypt', 'mac1', 'cookie', 'allowed_ips', 'no_peer']) assert.ok(m.has(`meshd_packets_dropped_total{reason="${reason}"}`), reason);
    for (const name of ['process_cpu_user_seconds_total', 'process_resident_memory_bytes', 'nodejs_eventloop_lag_seconds', 'nodejs_heap_size_used_bytes']) assert.ok(m.has(name), `${n.name}: ${name}`);
  }
  const lat = a1.get('meshd_peer_latency_seconds{peer="bravo"}')!;
  assert.ok(lat > 0 && lat < 1, `latency in seconds: ${lat}`);

  // charlie leaves on its own: gone from the others' metrics; nobody warns about it.
  const events = a1.get('meshd_ledger_events')!;
  await lan.cli(c, ['leave']);
  await waitFor(async () => {
    const m = await scrape(lan, a);
    return !m.has('meshd_peer_rx_bytes_total{peer="charlie"}') && m.get('meshd_peers{path="direct"}') === 1 && m.get('meshd_ledger_events')! > events;
  }, 15_000, 'charlie gone from alpha\'s metrics');
  await new Promise((r) => setTimeout(r, 1000));
  for (const n of nodes) {
    const lines = logLines(n);
    assert.ok(lines.length > 0, `${n.name} logs`);
    for (const line of lines) assert.equal(line.match(/"name":/g)?.length, 1, `one name key in ${line}`);
    const warnings = lines.filter((l) => (JSON.parse(l) as { level: number }).level >= 40);
    assert.deepEqual(warnings.filter((l) => /leav|left|remov|revok/i.test(l)), [], `${n.name}: no warning about the leave`);
  }
  const left = logLines(c).map((l) => JSON.parse(l) as { msg: string; level: number }).find((l) => l.msg === 'this node left the network');
  assert.equal(left?.level, 30, 'the member that left says so, at info');
  const up = logLines(a).map((l) => JSON.parse(l) as { msg: string; name: string; node?: string }).find((l) => l.msg === 'meshd daemon up');
  assert.deepEqual([up?.name, up?.node], ['meshd', 'alpha']);
});

test('a --metrics value the daemon cannot use: one line, exit 1, no interface', { timeout: 60_000 }, async (tc) => {
  const t = new Topology();
  tc.after(() => t.cleanup());
  const ns = await t.addNamespace('x');
  const state = mkdtempSync(join(tmpdir(), 'meshd-metrics-'));
  tc.after(() => rmSync(state, { recursive: true, force: true }));
  const ifname = t.name('m1');
  // Something else holds the port.
  const holder = t.spawn(ns, process.execPath, ['-e', `require("http").createServer().listen(${PORT}, "127.0.0.1", () => console.log("ready"))`]);
  await waitFor(() => holder.output().includes('ready') || !holder.alive(), 10_000, 'the port holder');
  const cases: [string, RegExp][] = [
    ['nonsense', /^meshd: --metrics: "nonsense" is not HOST:PORT/],
    ['127.0.0.1:99999', /^meshd: --metrics: port 99999 is not 1-65535$/],
    [`127.0.0.1:${PORT}`, new RegExp(`^meshd: --metrics 127\\.0\\.0\\.1:${PORT}: cannot listen: the port is in use$`)],
    [`10.9.9.9:${PORT}`, /^meshd: --metrics 10\.9\.9\.9:9464: cannot listen: that address is not one of this machine's$/],
  ];
  for (const [value, want] of cases) {
    const err = await t.exec(ns, MESHD, ['--state-dir', state, 'daemon', '--interface', ifname, '--metrics', value], { timeout: 20_000 })
      .then(() => null, (e: { code?: number; stderr?: string }) => e);
    assert.ok(err, `${value}: the daemon must not start`);
    assert.equal(err.code, 1, value);
    const lines = (err.stderr ?? '').trim().split('\n');
    assert.equal(lines.length, 1, `${value}: one line, not ${err.stderr}`);
    assert.match(lines[0], want);
    await assert.rejects(t.exec(ns, 'ip', ['link', 'show', ifname]), `${value}: no interface made`);
    assert.deepEqual(readdirSync(state), [], `${value}: nothing stored`);
  }
});
