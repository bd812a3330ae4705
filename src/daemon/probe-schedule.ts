// Which members get a latency probe (prober.ts: an ICMP echo through the tunnel) each round.
//
// Probing every member every round costs an idle daemon work per member: the echoes, and the
// WireGuard sessions they keep alive (a handshake per member every two minutes). So a round
// probes only:
//   - members someone asked about: `meshd status` asks about all of them, `meshd ping` about one;
//     they are probed every round for `interestMs` (5 min) after the question;
//   - members that carry traffic: their WireGuard byte counters moved by more than
//     `trafficBytes` since the last round (a probe and its answer are about 200 bytes, so probes
//     alone never count as traffic);
//   - and `spread` (1) member the sync wants a connection to and cannot reach (`lost`), in turn:
//     its tunnel answering is a sign of life that brings the next dial forward (sync.wake).
// An idle member in a healthy mesh probes nobody. Probing every member in turn (as before) cost a
// WireGuard handshake per probe once the mesh was larger than a session lasts (180 s / 5 s: 36
// members), and so grew with the mesh (issue 11). `meshd status` gets its figures on demand.
//
//   new ProbeSchedule({ trafficBytes?, interestMs?, spread?, now? })
//   schedule.ask(keys: string[]): void        mark members as asked about (now)
//   schedule.askedRecently(key): boolean      asked about within interestMs
//   schedule.round(members: { key, ip, bytes, lost? }[]): ProbeTarget[]   whom to probe this round
import type { ProbeTarget } from './prober.js';

export interface ProbeScheduleOptions {
  /** Counters that moved by more than this between rounds: the member carries traffic. Default 1024. */
  trafficBytes?: number;
  /** How long a member asked about stays probed every round; default 5 min. */
  interestMs?: number;
  /** Lost members probed per round, in turn; default 1. */
  spread?: number;
  now?: () => number;
}

export interface ScheduledMember extends ProbeTarget {
  /** The member's WireGuard rx + tx bytes now (0 without a peer). */
  bytes: number;
  /** The sync wants a connection to this member and is failing to reach it. */
  lost?: boolean;
}

export class ProbeSchedule {
  private readonly asked = new Map<string, number>();
  private readonly lastBytes = new Map<string, number>();
  private next = 0;
  private readonly trafficBytes: number;
  private readonly interestMs: number;
  private readonly spread: number;
  private readonly now: () => number;

  constructor(opts: ProbeScheduleOptions = {}) {
    this.trafficBytes = opts.trafficBytes ?? 1024;
    this.interestMs = opts.interestMs ?? 300_000;
    this.spread = opts.spread ?? 1;
    this.now = opts.now ?? (() => performance.now());
  }

  ask(keys: readonly string[]): void {
    const now = this.now();
    for (const k of keys) this.asked.set(k, now);
  }

  /** Asked about within interestMs. */
  askedRecently(key: string): boolean {
    const at = this.asked.get(key);
    return at !== undefined && this.now() - at <= this.interestMs;
  }

  round(members: readonly ScheduledMember[]): ProbeTarget[] {
    const now = this.now();
    const out: ProbeTarget[] = [];
    const lost: ScheduledMember[] = [];
    for (const m of members) {
      const before = this.lastBytes.get(m.key);
      this.lastBytes.set(m.key, m.bytes);
      const askedAt = this.asked.get(m.key);
      const interested = askedAt !== undefined && now - askedAt <= this.interestMs;
      if (askedAt !== undefined && !interested) this.asked.delete(m.key);
      const traffic = before !== undefined && m.bytes - before > this.trafficBytes;
      if (interested || traffic) out.push({ key: m.key, ip: m.ip });
      else if (m.lost) lost.push(m);
    }
    for (let i = 0; i < Math.min(this.spread, lost.length); i++) {
      const m = lost[(this.next + i) % lost.length];
      out.push({ key: m.key, ip: m.ip });
    }
    this.next = lost.length === 0 ? 0 : (this.next + this.spread) % lost.length;
    const present = new Set(members.map((m) => m.key));
    for (const k of this.lastBytes.keys()) if (!present.has(k)) this.lastBytes.delete(k);
    for (const k of this.asked.keys()) if (!present.has(k)) this.asked.delete(k);
    return out;
  }
}
