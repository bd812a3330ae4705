// Prometheus metrics (`meshd daemon --metrics ADDR:PORT`, off by default): GET /metrics over HTTP,
// in the text format, by prom-client.
//
// Every value is read at scrape time (prom-client collect() callbacks) from what `meshd status`
// shows and from the engine's own totals: no timer runs and nothing is counted twice. Totals the
// engine keeps (bytes, handshakes, drops) stay counters: collect() resets the series and sets them
// to the engine's absolute value, so peers that left disappear with their series.
//
//   Metrics.start({ listen, logger }): Promise<Metrics>   binds at once (a port in use fails here,
//                                                          before the daemon changes anything)
//                                                          and serves at most MAX_CONNECTIONS
//   metrics.serve(sources)                                 answers from then on (503 before)
//   metrics.stop(): Promise<void>
//   metricsRegistry(sources): Registry                     the metrics alone, for tests
//
// Conventions of node_exporter's and MindFlavor's wireguard exporters: the last handshake is a
// unix time in seconds (0: never), byte counters are per peer, named by the member's name.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { DropCounters } from '../wg/device.js';
import type { HostPort } from '../discovery/addresses.js';
import type { Logger } from '../util/log.js';

/** One member as `meshd status` shows it: what the per-peer metrics need. */
export interface PeerSample {
  name: string;
  /** null: no handshake within the last 180 s (status prints '-'); exported as path="none". */
  path: 'direct' | 'relay' | null;
  rxBytes: number;
  txBytes: number;
  /** Epoch ms of the latest handshake, null: never. */
  lastHandshake: number | null;
  latencyMs: number | null;
}

/** The engine's totals since it started. */
export interface EngineTotals {
  handshakes: number;
  /** Handshake messages under load without a valid mac2: answered with a cookie, not processed. */
  cookieReplies: number;
  drops: Readonly<DropCounters>;
}

/** Where the values come from, each read at scrape time. */
export interface MetricsSources {
  peers(): readonly PeerSample[];
  engine(): EngineTotals;
  /** Events in the network's ledger (0 outside a network). */
  ledgerEvents(): number;
}

/** The label of each of the engine's drop counters (meshd_packets_dropped_total{reason}). */
export const DROP_REASONS: Readonly<Record<keyof DropCounters, string>> = {
  malformed: 'malformed',
  noPeer: 'no_peer', // no allowed-ips entry for an outgoing packet's destination
  noEndpoint: 'no_endpoint',
  mac1: 'mac1',
  rateLimited: 'rate_limited',
  handshake: 'handshake',
  unknownIndex: 'unknown_index',
  expired: 'expired',
  decrypt: 'decrypt',
  replay: 'replay',
  sourceCheck: 'allowed_ips', // an incoming packet's source is not among the peer's allowed-ips
  staged: 'staged',
};

const PATHS = ['direct', 'relay', 'none'] as const;

/** A registry with meshd's metrics and the process's own (CPU, memory, event loop, GC). */
export function metricsRegistry(sources: MetricsSources): Registry {
  const registry = new Registry();
  const registers = [registry];
  // One snapshot per scrape, shared by the per-peer metrics (collect() runs for each of them).
  let cached: { at: number; peers: readonly PeerSample[] } | null = null;
  const peers = (): readonly PeerSample[] => {
    const now = performance.now();
    if (!cached || now - cached.at > 100) cached = { at: now, peers: sources.peers() };
    return cached.peers;
  };

  new Gauge({
    name: 'meshd_peers', help: 'Members of the network other than this node, by path as meshd status shows it (none: no handshake within 180 s).',
    labelNames: ['path'], registers,
    collect() {
      const counts = new Map<string, number>(PATHS.map((p) => [p, 0]));
      for (const p of peers()) counts.set(p.path ?? 'none', (counts.get(p.path ?? 'none') ?? 0) + 1);
      this.reset();
      for (const [path, n] of counts) this.set({ path }, n);
    },
  });
  for (const [dir, field, help] of [
    ['rx', 'rxBytes', 'Bytes received from a member through WireGuard (whole UDP payloads, as wg show).'],
    ['tx', 'txBytes', 'Bytes sent to a member through WireGuard (whole UDP payloads, as wg show).'],
  ] as const) {
    new Counter({
      name: `meshd_peer_${dir}_bytes_total`, help, labelNames: ['peer'], registers,
      collect() {
        this.reset();
        for (const p of peers()) this.inc({ peer: p.name }, p[field]);
      },
    });
  }
  new Gauge({
    name: 'meshd_peer_last_handshake_seconds', help: 'Unix time of the latest WireGuard handshake with a member (0: never).',
    labelNames: ['peer'], registers,
    collect() {
      this.reset();
      for (const p of peers()) this.set({ peer: p.name }, p.lastHandshake === null ? 0 : p.lastHandshake / 1000);
    },
  });
  new Gauge({
    name: 'meshd_peer_latency_seconds', help: 'Round trip of an ICMP echo to a member through the tunnel. Members are probed while they carry traffic, and for 5 minutes after meshd status or ping asked about them (absent: no recent answer).',
    labelNames: ['peer'], registers,
    collect() {
      this.reset();
      for (const p of peers()) if (p.latencyMs !== null) this.set({ peer: p.name }, p.latencyMs / 1000);
    },
  });
  new Counter({
    name: 'meshd_handshakes_total', help: 'WireGuard handshakes completed (sessions established, as initiator or responder).',
    registers,
    collect() {
      this.reset();
      this.inc(sources.engine().handshakes);
    },
  });
  new Counter({
    name: 'meshd_packets_dropped_total', help: 'Packets the WireGuard engine dropped, by reason (cookie: a handshake message under load answered with a cookie reply).',
    labelNames: ['reason'], registers,
    collect() {
      const e = sources.engine();
      this.reset();
      for (const [key, reason] of Object.entries(DROP_REASONS)) this.inc({ reason }, e.drops[key as keyof DropCounters]);
      this.inc({ reason: 'cookie' }, e.cookieReplies);
    },
  });
  new Gauge({
    name: 'meshd_ledger_events', help: 'Events in the network\'s ledger (0 outside a network).',
    registers,
    collect() {
      this.set(sources.ledgerEvents());
    },
  });
  // The event loop delay histogram samples on a timer: once a second, not prom-client's default
  // 100 times (about 0.6% of a core on an idle daemon). nodejs_eventloop_lag_seconds itself is
  // measured at each scrape.
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 1000 });
  return registry;
}

/** A --metrics listen error as one line: what to change. */
function listenError(err: NodeJS.ErrnoException, where: string): Error {
  const why: Record<string, string> = {
    EADDRINUSE: 'the port is in use',
    EADDRNOTAVAIL: 'that address is not one of this machine\'s',
    EACCES: 'permission denied',
    ENOTFOUND: 'the name does not resolve',
    EAI_AGAIN: 'the name does not resolve',
  };
  return new Error(`--metrics ${where}: cannot listen: ${why[err.code ?? ''] ?? err.message}`);
}

/**
 * Scrapers are few. Past this many connections a newcomer is closed at once, so that a flood of
 * connections to the metrics port cannot take the file descriptors the mesh and the control
 * socket need (at the open-file limit libuv closes every newcomer unanswered, theirs too).
 */
export const MAX_CONNECTIONS = 32;
/** A client has this long to send its whole request (Node's default is 5 minutes). */
const REQUEST_TIMEOUT_MS = 10_000;

export class Metrics {
  private registry: Registry | null = null;

  private constructor(private readonly server: Server, private readonly logger?: Logger) {}

  /**
   * Listens on `listen`; scrapes get 503 until serve(). Rejects with one line when it cannot.
   * A connection that has not sent its request in `requestTimeoutMs` (10 s) is answered 408 and
   * closed (Node looks for them every half of that).
   */
  static async start(opts: { listen: HostPort; logger?: Logger; requestTimeoutMs?: number }): Promise<Metrics> {
    const timeout = opts.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
    const server = createServer({ requestTimeout: timeout, headersTimeout: timeout, connectionsCheckingInterval: Math.ceil(timeout / 2) });
    server.maxConnections = MAX_CONNECTIONS;
    const metrics = new Metrics(server, opts.logger);
    server.on('request', (req, res) => void metrics.answer(req.method ?? '', req.url ?? '', res));
    const where = opts.listen.host.includes(':') ? `[${opts.listen.host}]:${opts.listen.port}` : `${opts.listen.host}:${opts.listen.port}`;
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) => reject(listenError(err as NodeJS.ErrnoException, where)));
      server.listen({ host: opts.listen.host, port: opts.listen.port }, () => resolve());
    });
    server.on('error', (err) => opts.logger?.error({ err: err.message }, 'metrics server error'));
    opts.logger?.info({ listen: where }, 'serving metrics at /metrics');
    return metrics;
  }

  /** Where it listens (the port the system chose for port 0). */
  get address(): AddressInfo {
    return this.server.address() as AddressInfo;
  }

  serve(sources: MetricsSources): void {
    this.registry = metricsRegistry(sources);
  }

  private async answer(method: string, url: string, res: import('node:http').ServerResponse): Promise<void> {
    const path = url.split('?')[0];
    if (path !== '/metrics') return void res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: metrics are at /metrics\n');
    if (method !== 'GET' && method !== 'HEAD') return void res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed\n');
    if (!this.registry) return void res.writeHead(503, { 'content-type': 'text/plain' }).end('starting\n');
    try {
      const body = await this.registry.metrics();
      res.writeHead(200, { 'content-type': this.registry.contentType }).end(method === 'HEAD' ? undefined : body);
    } catch (err) {
      this.logger?.error({ err: (err as Error).message }, 'cannot collect metrics');
      res.writeHead(500, { 'content-type': 'text/plain' }).end('cannot collect metrics\n');
    }
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
