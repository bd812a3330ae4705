// Dialling a member at one of several addresses, happy-eyeballs style (RFC 8305's idea): the first
// address is tried at once, each next one `staggerMs` later or as soon as every running attempt
// has failed, and the first connection to the right peer wins. An unreachable address (a LAN
// address seen from the internet, a filtered port) costs nothing but its own attempt.
//
// libp2p cannot do this itself: its dial queue merges every dial to one peer id into one job and
// tries that job's addresses one after another, each for up to 6 s. So each attempt here dials
// the address without its /p2p/ suffix (distinct jobs, run in parallel), and the peer the noise
// handshake proves is compared with the one the address names afterwards: a different node
// answering there is a failure like any other (and its connection is closed).
//
// Failures are explained in words a user can act on (explainDialError), per address.
//
// Exported API:
//   interface DialFailure { addr: string; reason: string }
//   class DialFailedError extends Error { failures: DialFailure[]; tried: string }   every address and why
//   dialFirst(node, addrs, { timeoutMs, staggerMs? (250), signal? }): Promise<{ conn, addr, failures }>
//       addrs end in /p2p/<peer id>; an open connection to one of those peers is returned at once
//   explainDialError(err, timeoutMs): string
import { setMaxListeners } from 'node:events';
import type { Host, HostConnection as Connection } from './host.js';
import { multiaddr } from '@multiformats/multiaddr';
import { hostPortOf } from './addresses.js';
import { peerOf } from './p2p.js';
import { timeoutSignal } from '../util/timeout.js';

const CODE_P2P = 421;

export interface DialFailure {
  addr: string;
  reason: string;
}

export class DialFailedError extends Error {
  override readonly name = 'DialFailedError';
  /** Every address tried and why, as people write addresses: '198.51.100.7:4001 (reason); ...'. */
  readonly tried: string;
  constructor(readonly failures: DialFailure[], lead: string) {
    const tried = failures.map((f) => `${hostPortOf(f.addr)} (${f.reason})`).join('; ');
    super(`${lead}: ${tried}`);
    this.tried = tried;
  }
}

/** The codes and names found anywhere in an error, its causes and aggregated errors. */
function collect(err: unknown, out: { codes: Set<string>; names: Set<string>; messages: string[] }, depth = 0): void {
  if (err === null || typeof err !== 'object' || depth > 4) return;
  const e = err as { code?: unknown; name?: unknown; message?: unknown; cause?: unknown; errors?: unknown };
  if (typeof e.code === 'string') out.codes.add(e.code);
  if (typeof e.name === 'string') out.names.add(e.name);
  if (typeof e.message === 'string') out.messages.push(e.message);
  collect(e.cause, out, depth + 1);
  if (Array.isArray(e.errors)) for (const inner of e.errors) collect(inner, out, depth + 1);
}

/** Why a dial failed, in words: what it means and what to check. */
export function explainDialError(err: unknown, timeoutMs: number): string {
  const found = { codes: new Set<string>(), names: new Set<string>(), messages: [] as string[] };
  collect(err, found);
  const text = found.messages.join(' | ');
  const has = (...codes: string[]) => codes.some((c) => found.codes.has(c) || text.includes(c));
  if (found.names.has('UnexpectedPeerError') || /identity key does not match|unexpected peer/i.test(text)) {
    return 'a different node answers at that address';
  }
  if (has('ECONNREFUSED')) return 'connection refused: nothing listens on that port (is meshd running there, on that --p2p-port?)';
  if (has('EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL')) return 'no route from this machine to that address';
  if (has('ENOTFOUND', 'EAI_AGAIN')) return 'the name does not resolve';
  if (found.names.has('TimeoutError') || found.names.has('AbortError') || has('ETIMEDOUT') || /aborted|timed out/i.test(text)) {
    return `no answer within ${Math.round(timeoutMs / 1000)} s: a firewall drops it, or the address is not reachable from here`;
  }
  if (has('ECONNRESET', 'EPIPE') || found.names.has('EncryptionFailedError') || found.names.has('InvalidCryptoExchangeError') ||
      /pnet|nonce|decrypt|unexpected end/i.test(text)) {
    return 'the connection was cut during the handshake: the node there is in another network (another network key), or it refused this node';
  }
  return (found.messages[0] ?? String(err)).slice(0, 200);
}

export interface DialFirstOptions {
  /** The whole race's budget. */
  timeoutMs: number;
  /** Head start of each address over the next one; default 250 ms. */
  staggerMs?: number;
  signal?: AbortSignal;
}

export async function dialFirst(
  node: Pick<Host, 'dial' | 'getConnections'>,
  addrs: readonly string[],
  opts: DialFirstOptions,
): Promise<{ conn: Connection; addr: string; failures: DialFailure[] }> {
  const failures: DialFailure[] = [];
  for (const addr of addrs) {
    const peer = peerOf(addr);
    const open = node.getConnections().find((c) => c.remotePeer.toString() === peer && c.status === 'open');
    if (open) return { conn: open, addr, failures };
  }
  if (addrs.length === 0) throw new DialFailedError([], 'no address to dial');
  const staggerMs = opts.staggerMs ?? 250;
  const race = new AbortController();
  const signal = timeoutSignal(opts.timeoutMs, race.signal, ...(opts.signal ? [opts.signal] : []));
  // One listener per dial and more inside libp2p: an invite lists up to 16 members, beyond Node's
  // default of 10 listeners, which would print a "possible memory leak" warning on every join.
  setMaxListeners(Infinity, signal);

  return new Promise((resolve, reject) => {
    let next = 0;
    let running = 0;
    let won: Connection | null = null;
    let timer: NodeJS.Timeout | null = null;

    const finish = (): void => {
      if (timer) clearTimeout(timer);
      if (won === null && running === 0 && next >= addrs.length) {
        race.abort();
        reject(new DialFailedError(failures, 'no address answered'));
      }
    };

    const attempt = (addr: string): void => {
      running++;
      const expected = peerOf(addr);
      let target;
      try {
        target = multiaddr(addr).decapsulateCode(CODE_P2P);
      } catch (err) {
        running--;
        failures.push({ addr, reason: `not a multiaddr: ${(err as Error).message}` });
        return;
      }
      node.dial(target, { signal }).then((conn) => {
        running--;
        if (won !== null) {
          if (conn !== won) void conn.close().catch(() => {});
          return;
        }
        if (expected !== null && conn.remotePeer.toString() !== expected) {
          void conn.close().catch(() => {});
          failures.push({ addr, reason: 'a different node answers at that address' });
          startNextIfIdle();
          return;
        }
        won = conn;
        if (timer) clearTimeout(timer);
        race.abort();
        resolve({ conn, addr, failures });
      }, (err: unknown) => {
        running--;
        if (won !== null) return;
        failures.push({ addr, reason: explainDialError(err, opts.timeoutMs) });
        startNextIfIdle();
      });
    };

    const startNext = (): void => {
      if (won !== null) return;
      if (signal.aborted) {
        // The budget is spent (or the caller gave up): the addresses not tried fail the same way.
        const reason = explainDialError(new DOMException('timed out', 'TimeoutError'), opts.timeoutMs);
        while (next < addrs.length) failures.push({ addr: addrs[next++], reason });
        return finish();
      }
      if (next < addrs.length) attempt(addrs[next++]);
      if (timer) clearTimeout(timer);
      if (next < addrs.length) timer = setTimeout(startNext, staggerMs);
      else finish();
    };
    // When everything running has failed, the next address need not wait for its turn.
    const startNextIfIdle = (): void => {
      if (running === 0) startNext();
    };
    startNext();
  });
}
