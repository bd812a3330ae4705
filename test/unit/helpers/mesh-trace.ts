// What a loopback mesh test prints when it fails: the discovery layer's log of every peer, kept
// in memory (bounded), and a snapshot of each peer's connections and ledger. A test that waits
// for the mesh to do something (connect, hang up) cannot say why it did not from a timeout
// alone; this says who was connected to whom, in which state, what each ledger held, and what
// each gate refused, in the order it happened.
//
// Exported API:
//   class MeshTrace { logger(who): Logger; note(who, msg, obj?); dump(): string }
//   meshState(peers): string    connections, ledger heads and digests, membership as each peer sees it
//   explainFailure(trace, peers, fn): Promise<T>   runs fn; on a throw prints trace and state, rethrows
import type { Logger } from '../../../src/util/log.js';
import type { Ledger } from '../../../src/discovery/ledger.js';
import type { MeshNode } from '../../../src/discovery/p2p.js';

interface Entry {
  at: number;
  who: string;
  level: string;
  msg: string;
  obj: object;
}

const MAX_ENTRIES = 5_000;

export class MeshTrace {
  readonly #entries: Entry[] = [];
  readonly #t0 = performance.now();
  /** Names for peer ids in the dump (filled by whoever knows them, e.g. the fixture). */
  readonly names = new Map<string, string>();

  /** A Logger that records into this trace under `who` (and prints too when `echo` is given). */
  logger(who: string, echo?: Logger, bindings: object = {}): Logger {
    const rec = (level: 'debug' | 'info' | 'warn' | 'error') => (obj: object, msg?: string): void => {
      this.#push(who, level, msg ?? '', { ...bindings, ...obj });
      echo?.[level](obj, msg);
    };
    return {
      debug: rec('debug'), info: rec('info'), warn: rec('warn'), error: rec('error'),
      child: (more) => this.logger(who, echo?.child(more), { ...bindings, ...more }),
    };
  }

  /** Something the test itself did (published, started waiting...). */
  note(who: string, msg: string, obj: object = {}): void {
    this.#push(who, 'test', msg, obj);
  }

  #push(who: string, level: string, msg: string, obj: object): void {
    if (this.#entries.length >= MAX_ENTRIES) this.#entries.splice(0, MAX_ENTRIES / 10);
    this.#entries.push({ at: performance.now() - this.#t0, who, level, msg, obj });
  }

  /** Peer ids replaced by names where known. */
  name(s: string): string {
    let out = s;
    for (const [id, n] of this.names) out = out.split(id).join(`<${n}>`);
    return out;
  }

  dump(): string {
    return this.#entries
      .map((e) => `${e.at.toFixed(0).padStart(7)} ms ${e.who.padEnd(8)} ${e.level.padEnd(5)} ${e.msg} ${this.name(JSON.stringify(e.obj))}`)
      .join('\n');
  }
}

/** The parts of a fixture peer the snapshot reads. */
export interface TracedPeer {
  id: string;
  name: string;
  node: MeshNode;
  ledger: Ledger;
}

/** Every peer's view: its connections (to whom, direction, status, age) and its ledger. */
export function meshState(peers: readonly TracedPeer[], trace?: MeshTrace): string {
  const now = Date.now();
  const nameOf = (id: string): string => peers.find((p) => p.id === id)?.name ?? id.slice(-8);
  const lines: string[] = [];
  for (const p of peers) {
    const conns = p.node.getConnections().map((c) =>
      `${nameOf(c.remotePeer.toString())}:${c.direction}:${c.status}:${now - c.timeline.open}ms`);
    const views = peers.filter((q) => q !== p).map((q) =>
      `${q.name}=${p.ledger.revoked(q.id) ? 'revoked' : p.ledger.isMember(q.id) ? (p.ledger.recordOf(q.id) ? 'member+record' : 'member') : 'stranger'}`);
    lines.push(`${p.name} [${p.node.status}] conns: ${conns.join(' ') || '-'}; sees ${views.join(' ')}; self ${p.ledger.revoked(p.id) ? 'revoked' : p.ledger.isMember(p.id) ? 'member' : 'stranger'}; ` +
      `size ${p.ledger.size()} digest ${p.ledger.digest().slice(0, 12)} heads ${p.ledger.heads().map((h) => h.slice(0, 8)).join(',')}`);
  }
  const text = lines.join('\n');
  return trace ? trace.name(text) : text;
}

/** Runs fn; if it throws, prints the mesh state and the trace (to stderr, kept in the TAP output), then rethrows. */
export async function explainFailure<T>(trace: MeshTrace, peers: readonly TracedPeer[], fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    console.error(`---- mesh state at failure (${(err as Error).message})\n${meshState(peers, trace)}\n---- discovery log (ms since the trace began)\n${trace.dump()}\n----`);
    throw err;
  }
}
