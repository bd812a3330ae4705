// The join protocol `/meshd/join/1`: a node holding an invite asks a member to admit it.
//
// One protocol id for every network (not one per network id): a node runs one network (its pnet
// key seals it), and the request carries the invite, which names the network. A member answers
// only for the network its ledger holds ('this invite is for another network' otherwise).
//
//   joiner -> member   { invite: token, record: the joiner's signed record (seq >= 1) }
//   member -> joiner   { ok: false, error: 'clear message' }
//                   or { ok: true, meshIp, count } then `count` frames, one envelope each (the
//                      whole ledger, our admission and the joiner's record included)
//
// Frames are length-prefixed JSON (FrameStream): the request is bounded to 128 KiB, each answer
// frame to 1 MiB, the answer to 10 000 envelopes. Unknown fields, garbage, oversized frames: an
// error answer or a reset stream, never a crash.
//
// Admission and the race between members. An invite's uses are decided by the ledger's fold
// (earliest admission by (at, id) wins), which a member can only know once the competing
// admissions have reached it. So the member that admits: checks the invite against its ledger,
// signs and adds the admission (and the joiner's record), publishes both, waits `settleMs` for a
// concurrent admission by another member to arrive by gossip, then reads the fold again: if the
// joiner is a member, it answers ok with the joiner's address; if our admission lost, it answers
// 'invite already used'. Two joiners with one single-use invite at two members at once: exactly
// one is told ok — provided the two members are connected and gossip crosses within settleMs.
// A member that was partitioned from the other can still answer ok to both; the fold then voids
// one admission everywhere once the ledgers meet, and that node loses its membership (the
// daemon sees itself removed). settleMs trades join latency for that window.
//
// A member that is the only member there has ever been (a new network's founder) has no one to
// race with and answers at once.
//
// Admissions made by one member are serialised, so two requests with the same single-use invite
// at the same member never both pass the check.
//
// A member asking again (its first answer was lost) is answered ok without a new admission.
//
// Exported API:
//   JOIN_PROTOCOL = '/meshd/join/1'
//   class JoinError extends Error { code: 'refused' | 'unreachable' | 'timeout' | 'protocol' }
//   join(node: Libp2p, invite: Invite, selfRecord: SignedEnvelope, opts?: { timeoutMs?: number })
//       : Promise<{ meshIp: string; envelopes: SignedEnvelope[]; via: string }>
//       dials invite.bootstrap concurrently, staggered (dialer.ts; loopback addresses last); the
//       first member that answers decides. Throws JoinError, whose message names every address
//       tried and why it failed.
//   serveJoin(node: Libp2p, opts: ServeJoinOptions): Promise<JoinServer>   never rejects
//   interface ServeJoinOptions { ledger, admitterKey, sync?: { publish(env) }, settleMs? (500),
//                                now?: () => number, logger?, onAdmit?(env), requestTimeoutMs? }
//   interface JoinServer { close(): Promise<void> }
import '../util/polyfill.js';
import type { Libp2p } from 'libp2p';
import type { Connection, PrivateKey, Stream } from '@libp2p/interface';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { eventId, type SignedEnvelope } from './signed.js';
import { EnvelopeError, parseEnvelope, type RecordBody } from './records.js';
import { InviteError, parseInvite, type Invite } from './invite.js';
import { admit, type Ledger } from './ledger.js';
import { ledgerSnapshot } from './gossip.js';
import { FrameError, FrameStream, dialOrder, noopLogger, peerOf, type MeshLogger } from './p2p.js';
import { DialFailedError, dialFirst } from './dialer.js';
import { hostPortOf } from './addresses.js';

export const JOIN_PROTOCOL = '/meshd/join/1';

const MAX_REQUEST_BYTES = 128 * 1024;
const MAX_REPLY_FRAME_BYTES = 1024 * 1024;
const MAX_REPLY_ENVELOPES = 10_000;
const WRITE_BATCH = 256;

export type JoinErrorCode = 'refused' | 'unreachable' | 'timeout' | 'protocol';

export class JoinError extends Error {
  override readonly name = 'JoinError';
  constructor(readonly code: JoinErrorCode, message: string) {
    super(message);
  }
}

export interface JoinResult {
  /** The joiner's address in the mesh, as the admitting member's ledger folds it. */
  meshIp: string;
  /** The whole ledger (verified envelopes; events and records): add them to a Ledger. */
  envelopes: SignedEnvelope[];
  /** The multiaddr of the member that admitted us. */
  via: string;
}

// ---- client -------------------------------------------------------------------------------------

export async function join(
  node: Libp2p,
  invite: Invite,
  selfRecord: SignedEnvelope,
  opts: { timeoutMs?: number } = {},
): Promise<JoinResult> {
  const timeoutMs = opts.timeoutMs ?? 15_000;
  const self = node.peerId.toString();
  if (selfRecord.by !== self) throw new JoinError('protocol', 'the record must be signed by this node');
  const targets = dialOrder(invite.bootstrap.filter((a) => peerOf(a) !== self));
  if (targets.length === 0) throw new JoinError('unreachable', 'the invite lists no member to ask (no bootstrap addresses)');

  // Every address at once, staggered (dialer.ts): an unreachable one costs only its own attempt.
  const signal = AbortSignal.timeout(timeoutMs);
  let dialled;
  try {
    dialled = await dialFirst(node, targets, { timeoutMs, signal });
  } catch (err) {
    if (err instanceof DialFailedError) {
      throw new JoinError('unreachable', `no member of the network could be reached; tried ${err.tried}`);
    }
    throw err;
  }
  const addr = dialled.addr;
  let stream: Stream;
  try {
    stream = await dialled.conn.newStream(JOIN_PROTOCOL, { signal });
  } catch (err) {
    if (signal.aborted) throw new JoinError('timeout', `${hostPortOf(addr)} connected but did not answer within ${timeoutMs} ms`);
    throw new JoinError('protocol', `${hostPortOf(addr)} does not take joins: ${(err as Error).message}`);
  }
  // A member answered: its answer decides (another member would judge the invite the same).
  const frames = new FrameStream(stream, MAX_REPLY_FRAME_BYTES);
  try {
    await frames.write({ invite: invite.token, record: selfRecord }, signal);
    const result = await readReply(frames, signal);
    await frames.close();
    return { ...result, via: addr };
  } catch (err) {
    frames.abort(err as Error);
    if (err instanceof JoinError) throw err;
    if (signal.aborted) throw new JoinError('timeout', `no answer from ${hostPortOf(addr)} within ${timeoutMs} ms`);
    throw new JoinError('protocol', `bad answer from ${hostPortOf(addr)}: ${(err as Error).message}`);
  }
}

async function readReply(frames: FrameStream, signal: AbortSignal): Promise<{ meshIp: string; envelopes: SignedEnvelope[] }> {
  const head = await frames.read(signal);
  if (head === null || typeof head !== 'object') throw new FrameError('answer is not an object');
  const h = head as Record<string, unknown>;
  if (h.ok === false) {
    const msg = typeof h.error === 'string' && h.error.length > 0 ? h.error.slice(0, 500) : 'refused without a reason';
    throw new JoinError('refused', msg);
  }
  if (h.ok !== true || typeof h.meshIp !== 'string' || !Number.isSafeInteger(h.count)) throw new FrameError('malformed answer');
  const count = h.count as number;
  if (count < 0 || count > MAX_REPLY_ENVELOPES) throw new FrameError(`answer announces ${count} envelopes`);
  const envelopes: SignedEnvelope[] = [];
  for (let i = 0; i < count; i++) {
    const value = await frames.read(signal);
    try {
      envelopes.push(parseEnvelope(value));
    } catch {
      // One bad envelope does not spoil the others; the caller's ledger decides what counts.
    }
  }
  return { meshIp: h.meshIp, envelopes };
}

// ---- server -------------------------------------------------------------------------------------

export interface ServeJoinOptions {
  ledger: Ledger;
  /** This member's identity: it signs the admissions. */
  admitterKey: PrivateKey;
  /** Where admissions and the joiner's record are published (LedgerSync). */
  sync?: { publish(env: SignedEnvelope): Promise<unknown> };
  /** How long to wait for a competing admission before answering; default 500 ms. */
  settleMs?: number;
  now?: () => number;
  logger?: MeshLogger;
  /** Called with each admission this member signs (the daemon persists it). */
  onAdmit?: (env: SignedEnvelope) => void;
  /** How long a joiner may take to send its request; default 10 s. */
  requestTimeoutMs?: number;
}

export interface JoinServer {
  close(): Promise<void>;
}

const REQUEST_KEYS = new Set(['invite', 'record']);

/** Texts from ledger.checkInvite and the fold, as a joiner should read them. */
function explain(reason: string): string {
  switch (reason) {
    case 'invite already used': return 'invite already used';
    case 'other network': return 'this invite is for another network';
    case 'expired': return 'invite expired; ask an administrator for a new one';
    case 'issuer is not an administrator': return 'the invite was not issued by an administrator of this network';
    case 'revoked': return 'this node was removed from the network; it cannot use this invite again';
    case 'range full': return 'the network address range is full';
    default: return `admission refused: ${reason}`;
  }
}

class Refusal extends Error {}

export async function serveJoin(node: Libp2p, opts: ServeJoinOptions): Promise<JoinServer> {
  const log = opts.logger ?? noopLogger;
  const now = opts.now ?? Date.now;
  const settleMs = opts.settleMs ?? 500;
  const requestTimeoutMs = opts.requestTimeoutMs ?? 10_000;
  const ledger = opts.ledger;
  const admitter = peerIdFromPrivateKey(opts.admitterKey).toString();
  let queue: Promise<unknown> = Promise.resolve();
  const closed = new AbortController();

  /** Runs admissions one at a time: check-then-add must not interleave. */
  const serially = <T>(fn: () => Promise<T>): Promise<T> => {
    const p = queue.then(fn, fn);
    queue = p.catch(() => {});
    return p;
  };

  const handle = async (stream: Stream, conn: Connection): Promise<void> => {
    const joiner = conn.remotePeer.toString();
    const started = performance.now();
    // One FrameStream per stream (each wraps the stream's incoming bytes): requests are bounded
    // to MAX_REQUEST_BYTES, our answer frames to MAX_REPLY_FRAME_BYTES.
    const frames = new FrameStream(stream, MAX_REQUEST_BYTES, MAX_REPLY_FRAME_BYTES);
    const signal = AbortSignal.any([closed.signal, AbortSignal.timeout(requestTimeoutMs + settleMs + 10_000)]);
    try {
      let request: { invite: Invite; record: SignedEnvelope<RecordBody> };
      try {
        request = parseRequest(await readRequest(frames, requestTimeoutMs, closed.signal), joiner, now());
      } catch (err) {
        if (!(err instanceof Refusal)) throw err;
        log.info({ joiner, error: err.message }, 'join refused');
        await frames.write({ ok: false, error: err.message }, signal);
        await frames.close();
        return;
      }
      const outcome = await admitJoiner(request, joiner);
      if ('error' in outcome) {
        log.info({ joiner, error: outcome.error }, 'join refused');
        await frames.write({ ok: false, error: outcome.error }, signal);
      } else {
        const snap = ledgerSnapshot(ledger);
        await frames.write({ ok: true, meshIp: outcome.meshIp, count: snap.envelopes.length }, signal);
        for (let i = 0; i < snap.envelopes.length; i += WRITE_BATCH) {
          await frames.writeMany(snap.envelopes.slice(i, i + WRITE_BATCH), signal);
        }
        log.info({ joiner, meshIp: outcome.meshIp, envelopes: snap.envelopes.length, ms: Math.round(performance.now() - started) }, 'admitted a new member');
      }
      await frames.close();
    } catch (err) {
      log.debug({ joiner, err: (err as Error).message }, 'join stream failed');
      frames.abort(err as Error);
    }
  };

  /** Checks, admits, waits for the fold to settle, and says whether the joiner got in. */
  const admitJoiner = async (
    req: { invite: Invite; record: SignedEnvelope<RecordBody> },
    joiner: string,
  ): Promise<{ meshIp: string } | { error: string }> => {
    const made = await serially(async (): Promise<{ error: string } | { id: string | null; alone?: boolean }> => {
      const t = now();
      const why = ledger.checkInvite(req.invite, t, joiner);
      if (why !== null) return { error: explain(why) };
      const network = ledger.network();
      if (network === null) return { error: 'this member has no network' };
      if (ledger.isMember(joiner)) {
        // Asked again (the first answer was lost): no second admission.
        safeAdd(ledger, req.record, log);
        return { id: null };
      }
      if (ledger.nextAddress() === null) return { error: explain('range full') };
      const alone = noOtherAdmitter(ledger, admitter);
      const env = await admit(opts.admitterKey, { network, member: joiner, name: req.record.body.name, invite: req.invite }, t);
      safeAdd(ledger, env, log);
      safeAdd(ledger, req.record, log);
      try {
        opts.onAdmit?.(env);
      } catch (err) {
        log.error({ err: (err as Error).message }, 'onAdmit failed');
      }
      // Publish after adding: a competing member learns of our admission as early as possible.
      await Promise.all([env, req.record].map((e) => opts.sync?.publish(e).catch((err: Error) => {
        log.warn({ err: err.message }, 'cannot publish an admission; anti-entropy will carry it');
      })));
      return { id: eventId(env), alone };
    });
    if ('error' in made) return made;
    if (made.id !== null && !made.alone && settleMs > 0) await sleep(settleMs, closed.signal);
    const member = ledger.member(joiner);
    if (member) return { meshIp: member.meshIp };
    const lost = ledger.rejected().find((r) => r.id === made.id);
    return { error: explain(lost?.reason ?? 'invite already used') };
  };

  await node.handle(JOIN_PROTOCOL, (stream, conn) => handle(stream, conn).catch(() => {}), {
    maxInboundStreams: 4,
    force: true, // a restarted network on the same node replaces the old handler
  }).catch((err: Error) => log.error({ err: err.message }, 'cannot serve joins'));
  log.debug({ admitter }, 'serving joins');

  return {
    async close() {
      closed.abort();
      await node.unhandle(JOIN_PROTOCOL).catch(() => {});
    },
  };
}

async function readRequest(frames: FrameStream, timeoutMs: number, closed: AbortSignal): Promise<unknown> {
  try {
    return await frames.read(AbortSignal.any([closed, AbortSignal.timeout(timeoutMs)]));
  } catch (err) {
    // An oversized or garbage frame: answer it if the stream still lets us.
    throw new Refusal(`malformed join request: ${(err as Error).message}`);
  }
}

function parseRequest(value: unknown, joiner: string, now: number): { invite: Invite; record: SignedEnvelope<RecordBody> } {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Refusal('malformed join request: not an object');
  const req = value as Record<string, unknown>;
  for (const k of Object.keys(req)) if (!REQUEST_KEYS.has(k)) throw new Refusal(`malformed join request: unknown field ${k}`);
  let invite: Invite;
  try {
    invite = parseInvite(req.invite, now);
  } catch (err) {
    throw new Refusal(err instanceof InviteError ? err.message : 'not a meshd invite');
  }
  let record;
  try {
    record = parseEnvelope(req.record);
  } catch (err) {
    throw new Refusal(`bad record: ${err instanceof EnvelopeError ? err.message : 'malformed'}`);
  }
  if (record.body.type !== 'record') throw new Refusal(`bad record: it is a signed ${record.body.type}, not a member record`);
  if (record.by !== joiner) throw new Refusal('bad record: it must be signed by the joining node');
  if (record.body.network !== invite.network.id) throw new Refusal('bad record: it is for another network than the invite');
  return { invite, record: record as SignedEnvelope<RecordBody> };
}

function safeAdd(ledger: Ledger, env: SignedEnvelope, log: MeshLogger): void {
  try {
    ledger.add(env);
  } catch (err) {
    log.error({ err: (err as Error).message }, 'a ledger listener failed');
  }
}

/**
 * True when no other node can be admitting anyone right now, so there is no competing admission
 * to wait for: we are the only member and no member was ever revoked (a revoked member may have
 * admitted a node whose admission has not reached us yet). The common case of a new network's
 * founder admitting its second node: that join skips the settle wait.
 */
function noOtherAdmitter(ledger: Ledger, admitter: string): boolean {
  return ledger.members().every((m) => m.peerId === admitter) && !ledger.events().some((e) => e.body.type === 'revoke');
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
  });
}
