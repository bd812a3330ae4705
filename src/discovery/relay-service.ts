// The relay allocation protocol `/meshd/relay/1`: a member asks another to relay its WireGuard
// datagrams to and from a third (relay.ts forwards them). Over libp2p, so the relay knows who asks
// (the connection's peer id, proven by noise) without a handshake of its own.
//
//   asker -> relay   { to: <peer id> }
//   relay -> asker   { ok: true, ttlMs }  or  { ok: false, error: 'clear message' }
//
// The relay says yes only if it relays at all (`--no-relay` says no), both are members, and it has
// a working WireGuard path to both (it forwards to where WireGuard reaches them, nowhere else).
// A yes allocates the pair, both directions, for ALLOCATION_MS; the asker renews it while in use.
//
// Exported API:
//   RELAY_PROTOCOL = '/meshd/relay/1'
//   interface RelayPolicy { enabled(): boolean; member(peerId): Buffer | null (its WireGuard key);
//                           reaches(peerId): boolean; allow(askerKey, toKey, ttlMs) }
//   serveRelay(node, policy, logger?): Promise<{ close(): Promise<void> }>
//   requestRelay(node, relay: string, to: string, timeoutMs?): Promise<number>  ttlMs; throws Error(reason)
import type { Libp2p } from 'libp2p';
import type { Connection, Stream } from '@libp2p/interface';
import { peerIdFromString } from '@libp2p/peer-id';
import { FrameStream } from './p2p.js';
import { ALLOCATION_MS } from './relay.js';
import { noopLogger, type Logger } from '../util/log.js';
import { timeoutSignal } from '../util/timeout.js';

export const RELAY_PROTOCOL = '/meshd/relay/1';
const MAX_FRAME = 1024;

export interface RelayPolicy {
  enabled(): boolean;
  /** A member's WireGuard public key, or null for a non-member. */
  member(peerId: string): Buffer | null;
  /** We have a working WireGuard path to this member. */
  reaches(peerId: string): boolean;
  allow(askerKey: Buffer, toKey: Buffer, ttlMs: number): void;
}

export async function serveRelay(node: Libp2p, policy: RelayPolicy, logger: Logger = noopLogger): Promise<{ close(): Promise<void> }> {
  const answer = (asker: string, req: unknown): { ok: true; ttlMs: number } | { ok: false; error: string } => {
    if (!policy.enabled()) return { ok: false, error: 'this member does not relay (--no-relay)' };
    const to = req !== null && typeof req === 'object' && typeof (req as { to?: unknown }).to === 'string' ? (req as { to: string }).to : null;
    if (to === null) return { ok: false, error: 'malformed relay request' };
    const askerKey = policy.member(asker);
    const toKey = policy.member(to);
    if (!askerKey) return { ok: false, error: 'only members may use a relay' };
    if (!toKey || to === asker) return { ok: false, error: 'the other end is not a member' };
    if (!policy.reaches(asker) || !policy.reaches(to)) return { ok: false, error: 'this member has no working path to both ends' };
    policy.allow(askerKey, toKey, ALLOCATION_MS);
    return { ok: true, ttlMs: ALLOCATION_MS };
  };
  const handle = async (stream: Stream, conn: Connection): Promise<void> => {
    const frames = new FrameStream(stream, MAX_FRAME);
    const asker = conn.remotePeer.toString();
    const signal = timeoutSignal(5_000);
    try {
      const reply = answer(asker, await frames.read(signal));
      logger.debug({ asker, reply }, 'relay request');
      await frames.write(reply, signal);
      await frames.close(signal);
    } catch (err) {
      frames.abort(err as Error);
    }
  };
  await node.handle(RELAY_PROTOCOL, (stream, conn) => void handle(stream, conn), { force: true, maxInboundStreams: 8 });
  return { close: () => node.unhandle(RELAY_PROTOCOL).catch(() => {}) };
}

export async function requestRelay(node: Libp2p, relay: string, to: string, timeoutMs = 5_000): Promise<number> {
  const signal = timeoutSignal(timeoutMs);
  const stream = await node.dialProtocol(peerIdFromString(relay), RELAY_PROTOCOL, { signal });
  const frames = new FrameStream(stream, MAX_FRAME);
  try {
    await frames.write({ to }, signal);
    const reply = (await frames.read(signal)) as { ok?: unknown; ttlMs?: unknown; error?: unknown } | null;
    await frames.close(signal);
    if (reply?.ok === true && typeof reply.ttlMs === 'number') return reply.ttlMs;
    throw new Error(typeof reply?.error === 'string' ? reply.error.slice(0, 200) : 'malformed answer');
  } catch (err) {
    frames.abort(err as Error);
    throw err;
  }
}
