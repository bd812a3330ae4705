// Latency through the tunnel: an ICMP echo to each member's mesh address every few seconds, so
// `meshd status` shows the round trip that mesh traffic really takes (WireGuard, and whatever
// path its endpoint is), not that of the libp2p connection. The peer's kernel answers, so any
// WireGuard peer can be measured. A raw socket needs CAP_NET_RAW; without it there is no figure.
//
//   TunnelProber.open(opts?): TunnelProber         throws (code EPERM...) without a raw socket
//   prober.probe(targets: { key, ip }[]): void     one echo to each IPv4 address
//   prober.rtt(key): number | null                 the latest round trip (ms), if fresh
//   prober.answeredWithin(key, ms): boolean        an answer that recent (liveness)
//   prober.onAlive: ((key) => void) | null         a member answers for the first time, or
//                                                  again after aliveAfterMs without an answer
//   prober.echo(ip, timeoutMs?): Promise<number | null>   one echo now: its round trip, or null
//   prober.close(): void
import { randomInt } from 'node:crypto';
import { native, type Poller } from '../wg/native.js';

export interface ProbeTarget {
  /** Whose figure it is (the member's peer id). */
  key: string;
  /** The member's mesh address (IPv4). */
  ip: string;
}

export interface ProberOptions {
  /** A figure older than this is no figure: the member stopped answering. Default 15 s. */
  maxAgeMs?: number;
  /** A request unanswered this long is forgotten. Default 10 s. */
  timeoutMs?: number;
  /** An answer after this long without one is news (onAlive). Default 7 s: a missed 5 s round. */
  aliveAfterMs?: number;
  now?: () => number;
}

const ECHO_REPLY = 0;

export class TunnelProber {
  /** Our ICMP identifier: replies to other processes' pings carry theirs. */
  private readonly id = randomInt(1, 0xffff);
  private seq = 0;
  private readonly pending = new Map<number, { key: string; ip: string; sent: number; resolve?: (rtt: number | null) => void }>();
  private readonly results = new Map<string, { rtt: number; at: number }>();
  private readonly buf = Buffer.alloc(64);
  private readonly from = Buffer.alloc(4);
  private readonly payload = Buffer.from('meshd-probe');
  private readonly poller: Poller;
  private readonly now: () => number;
  private readonly maxAgeMs: number;
  private readonly timeoutMs: number;
  private readonly aliveAfterMs: number;
  private closed = false;
  /** A member's tunnel works again (or for the first time): a sign of life the sync can use. */
  onAlive: ((key: string) => void) | null = null;

  private constructor(private readonly fd: number, opts: ProberOptions) {
    this.now = opts.now ?? (() => performance.now());
    this.maxAgeMs = opts.maxAgeMs ?? 15_000;
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    this.aliveAfterMs = opts.aliveAfterMs ?? 7_000;
    this.poller = new (native().Poller)(fd, () => this.drain());
    this.poller.start();
  }

  static open(opts: ProberOptions = {}): TunnelProber {
    return new TunnelProber(native().icmpOpen(), opts);
  }

  probe(targets: readonly ProbeTarget[]): void {
    if (this.closed) return;
    const now = this.now();
    for (const [seq, p] of this.pending) if (now - p.sent > this.timeoutMs) this.pending.delete(seq);
    for (const t of targets) {
      const addr = ipv4Bytes(t.ip);
      if (!addr) continue;
      this.seq = (this.seq + 1) & 0xffff;
      this.pending.set(this.seq, { key: t.key, ip: t.ip, sent: now });
      native().icmpEcho(this.fd, addr, this.id, this.seq, this.payload); // a failure: no answer, no figure
    }
  }

  /** One echo to `ip` now (for `meshd ping`): its round trip in ms, or null without an answer. */
  echo(ip: string, timeoutMs = 2000): Promise<number | null> {
    const addr = ipv4Bytes(ip);
    if (this.closed || !addr) return Promise.resolve(null);
    this.seq = (this.seq + 1) & 0xffff;
    const seq = this.seq;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        if (this.pending.get(seq)?.resolve === done) this.pending.delete(seq);
        resolve(null);
      }, timeoutMs);
      const done = (rtt: number | null) => {
        clearTimeout(timer);
        resolve(rtt);
      };
      this.pending.set(seq, { key: `echo:${ip}`, ip, sent: this.now(), resolve: done });
      native().icmpEcho(this.fd, addr, this.id, seq, this.payload);
    });
  }

  rtt(key: string): number | null {
    const r = this.results.get(key);
    if (!r || this.now() - r.at > this.maxAgeMs) return null;
    return r.rtt;
  }

  /** Whether `key` answered an echo within the last `ms` milliseconds. */
  answeredWithin(key: string, ms: number): boolean {
    const r = this.results.get(key);
    return r !== undefined && this.now() - r.at <= ms;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.poller.close();
    native().closeFd(this.fd);
  }

  private drain(): void {
    const addon = native();
    for (let i = 0; i < 64 && !this.closed; i++) {
      const n = addon.icmpRecv(this.fd, this.buf, this.from);
      if (n === 0) return;
      if (n < 8 || this.buf[0] !== ECHO_REPLY || this.buf.readUInt16BE(4) !== this.id) continue;
      const seq = this.buf.readUInt16BE(6);
      const p = this.pending.get(seq);
      if (!p || p.ip !== [...this.from].join('.')) continue;
      this.pending.delete(seq);
      const now = this.now();
      const rtt = Math.round((now - p.sent) * 100) / 100;
      if (p.resolve) {
        p.resolve(rtt);
        continue;
      }
      const last = this.results.get(p.key);
      this.results.set(p.key, { rtt, at: now });
      if (last === undefined || now - last.at > this.aliveAfterMs) this.onAlive?.(p.key);
    }
  }
}

function ipv4Bytes(ip: string): Buffer | null {
  const parts = ip.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) return null;
  return Buffer.from(parts);
}
