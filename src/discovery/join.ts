// The join protocol `/meshd/join/2`: a node holding an invite asks a member to admit it.
//
// One protocol id for every network (not one per network id): a node runs one network (its pnet
// key seals it), and the request names the network. A member answers only for the network its
// ledger holds ('this invite is for another network' otherwise).
//
//   joiner -> member   { invite: the signed invite event (from the token), proof, record }
//                      proof: the joiner's peer id signed with the invite's secret (invite.ts);
//                      the secret itself never leaves the joiner, so the member cannot reuse it
//   member -> joiner   { ok: false, error: 'clear message', now }
//                   or { ok: true, meshIp, name, now } then the whole ledger (events parents
//                      first, then records), one envelope a frame, then { end: true }
//                      (now: the member's clock, ms)
//
// Clocks. Only the admitting member's clock judges the invite's expiry; the joiner's clock plays
// no part (a fresh VM before NTP, a board without a clock: its joins work). The answer carries the
// member's clock, so a joiner far off (more than 5 minutes) is told so in words: an 'invite
// expired' refusal says "this machine's clock is 2 h ahead of the member's", and a successful
// join reports the skew (JoinResult.skewMs) for the daemon to log.
//
// Frames are length-prefixed JSON (FrameStream): the request is bounded to 128 KiB, each answer
// frame to 1 MiB, the whole answer to 64 MiB (no count cap). Unknown fields, garbage, oversized
// frames: an error answer or a reset stream, never a crash.
//
// The invite event travels in the request because the member asked may not have it yet (it was
// issued a moment ago at another administrator): the member adds it to its ledger first. If its
// history has not reached this member either, the answer says to try again.
//
// Admission and the race between members. An invite's uses are decided by the ledger's fold
// (of concurrent admissions, the first in the fold's order wins), which a member can only know
// once the competing admissions have reached it. So the member that admits: checks the invite
// against its ledger, signs and adds the admission (and the joiner's record), publishes both,
// then waits for two things: `settleMs`, and an anti-entropy exchange started after the
// admission with every connected member (LedgerSync.exchangeAll, at most `confirmMs`). Then it
// reads the fold again: if the joiner is a member, it answers ok with the joiner's address; if
// our admission lost, it answers 'invite already used'.
// Why the exchange: the exchange is two-way, so when it ends each connected member has our
// admission and we have whatever admission it had made by the time it answered. Two members
// admitting with one invite at once each see the other's admission before answering, and the
// fold gives both the same winner. A fixed wait alone (as before) does not hold: under CPU load,
// or on a slow link, a push takes longer than settleMs, and both joiners were admitted
// (test/unit/join-memory.test.ts makes that deterministic with a slow link).
// What is left: a member that was partitioned from the other (or, beyond fullMeshMax, not
// connected to it and not reached within settleMs) can still answer ok to both; the fold then
// voids one admission everywhere once the ledgers meet, and that node loses its membership (the
// daemon sees itself removed). A member that is the only member there has ever been (a new
// network's founder) has no one to race with and answers at once.
//
// A name another member already has is made unique (name-2, ...): the answer carries the name
// the joiner got. A node asking again (its first answer was lost: the joiner, or this member, was
// killed mid-join) is answered ok without a new admission, with the same address, whichever
// invite it holds now (the first one may be used up by its own admission).
//
// Crashes. The admission is persisted before it is published or answered (Signer), so a member
// killed mid-join comes back with it, and the joiner's retry is answered from it. The joiner
// stores nothing until the answer is in, then the network and its ledger in one batch (the
// daemon): killed before that it is not a member in its own eyes, and asks again.
//
// Exported API:
//   JOIN_PROTOCOL = '/meshd/join/2'
//   class JoinError extends Error { code: 'refused' | 'unreachable' | 'timeout' | 'protocol' }
//   join(node: Host, invite: Invite, selfRecord: SignedEnvelope, opts?: { timeoutMs?, answerMs? })
//       : Promise<{ meshIp, name, envelopes, via }>
//       dials invite.bootstrap concurrently, staggered (dialer.ts; loopback addresses last); the
//       first member that answers decides. Throws JoinError, whose message names every address
//       tried and why it failed.
//   serveJoin(node: Host, opts: ServeJoinOptions): Promise<JoinServer>   never rejects
//   interface ServeJoinOptions { ledger, signer: Signer (this member's chain),
//                                sync?: { publish(env), exchangeAll?({ except }) } (LedgerSync),
//                                settleMs? (500), confirmMs? (5 s), now?: () => number, logger?,
//                                onAdmit?(env), requestTimeoutMs? }
//   interface JoinServer { close(): Promise<void> }
import '../util/polyfill.js';
import type { Stream } from '@libp2p/interface';
import type { Host, HostConnection as Connection } from './host.js';
import { eventId, type SignedEnvelope } from './signed.js';
import { EnvelopeError, parseEnvelope, type InviteBody, type RecordBody } from './records.js';
import { inviteProof, verifyInviteProof, type Invite } from './invite.js';
import type { Ledger } from './ledger.js';
import type { Signer } from './signer.js';
import { ledgerDelta } from './sync.js';
import { FrameError, FrameStream, dialOrder, peerOf } from './p2p.js';
import { DialFailedError, dialFirst } from './dialer.js';
import { hostPortOf } from './addresses.js';
import { noopLogger, type Logger } from '../util/log.js';
import { timeoutSignal } from '../util/timeout.js';

export const JOIN_PROTOCOL = '/meshd/join/2';

const MAX_REQUEST_BYTES = 128 * 1024;
const MAX_REPLY_FRAME_BYTES = 1024 * 1024;
const MAX_REPLY_BYTES = 64 * 1024 * 1024;
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
  /** The name the joiner was admitted with (its own, or made unique). */
  name: string;
  /** The whole ledger (verified envelopes; events and records): add them to a Ledger. */
  envelopes: SignedEnvelope[];
  /** The multiaddr of the member that admitted us. */
  via: string;
  /** Our clock minus the member's, when the answer said (ms; positive: we are ahead). */
  skewMs: number | null;
}

/** Clocks further apart than this are worth a word to the user. */
export const NOTABLE_SKEW_MS = 5 * 60_000;

/** "2 h ahead of", "15 min behind": how far this machine's clock is from another's. */
export function describeSkew(skewMs: number): string {
  const abs = Math.abs(skewMs);
  const amount = abs >= 36 * 3_600_000 ? `${Math.round(abs / 86_400_000)} days`
    : abs >= 90 * 60_000 ? `${Math.round(abs / 3_600_000)} h`
    : abs >= 90_000 ? `${Math.round(abs / 60_000)} min` : `${Math.round(abs / 1000)} s`;
  return `${amount} ${skewMs > 0 ? 'ahead of' : 'behind'}`;
}

// ---- client -------------------------------------------------------------------------------------

export async function join(
  node: Host,
  invite: Invite,
  selfRecord: SignedEnvelope,
  opts: { timeoutMs?: number; answerMs?: number } = {},
): Promise<JoinResult> {
  const timeoutMs = opts.timeoutMs ?? 15_000;
  const answerMs = opts.answerMs ?? timeoutMs;
  const self = node.peerId.toString();
  if (selfRecord.by !== self) throw new JoinError('protocol', 'the record must be signed by this node');
  const targets = dialOrder(invite.bootstrap.filter((a) => peerOf(a) !== self));
  if (targets.length === 0) throw new JoinError('unreachable', 'the invite lists no member to ask (no bootstrap addresses)');

  // Every address at once, staggered (dialer.ts): an unreachable one costs only its own attempt.
  let dialled;
  try {
    dialled = await dialFirst(node, targets, { timeoutMs });
  } catch (err) {
    if (err instanceof DialFailedError) {
      throw new JoinError('unreachable', `no member of the network could be reached; tried ${err.tried}`);
    }
    throw err;
  }
  const addr = dialled.addr;
  // Connected: the member now has answerMs to take the join and answer it.
  const signal = timeoutSignal(answerMs);
  let stream: Stream;
  try {
    stream = await dialled.conn.newStream(JOIN_PROTOCOL, { signal });
  } catch (err) {
    if (signal.aborted) throw new JoinError('timeout', `${hostPortOf(addr)} connected but did not answer within ${answerMs} ms`);
    throw new JoinError('protocol', `${hostPortOf(addr)} does not take joins: ${(err as Error).message}`);
  }
  // A member answered: its answer decides (another member would judge the invite the same).
  const frames = new FrameStream(stream, MAX_REPLY_FRAME_BYTES);
  try {
    const proof = inviteProof(invite.secret, { network: invite.network.id, invite: invite.id, member: self });
    await frames.write({ invite: invite.envelope, proof, record: selfRecord }, signal);
    const sent = Date.now();
    const result = await readReply(frames, signal, sent);
    await frames.close(signal);
    return { ...result, via: addr };
  } catch (err) {
    frames.abort(err as Error);
    if (err instanceof JoinError) throw err;
    if (signal.aborted) throw new JoinError('timeout', `no answer from ${hostPortOf(addr)} within ${answerMs} ms`);
    throw new JoinError('protocol', `bad answer from ${hostPortOf(addr)}: ${(err as Error).message}`);
  }
}

async function readReply(frames: FrameStream, signal: AbortSignal, sent: number): Promise<{ meshIp: string; name: string; envelopes: SignedEnvelope[]; skewMs: number | null }> {
  const head = await frames.read(signal);
  if (head === null || typeof head !== 'object') throw new FrameError('answer is not an object');
  const h = head as Record<string, unknown>;
  // The member's clock, against ours halfway through the exchange (the answer took that long).
  const skewMs = Number.isSafeInteger(h.now) ? Math.round((sent + Date.now()) / 2 - (h.now as number)) : null;
  if (h.ok === false) {
    let msg = typeof h.error === 'string' && h.error.length > 0 ? h.error.slice(0, 500) : 'refused without a reason';
    if (skewMs !== null && Math.abs(skewMs) > NOTABLE_SKEW_MS) {
      msg += ` (this machine's clock is ${describeSkew(skewMs)} the member's; the member judges invites by its own clock)`;
    }
    throw new JoinError('refused', msg);
  }
  if (h.ok !== true || typeof h.meshIp !== 'string' || typeof h.name !== 'string') throw new FrameError('malformed answer');
  const envelopes: SignedEnvelope[] = [];
  for (;;) {
    const value = await frames.read(signal);
    if (frames.bytesRead > MAX_REPLY_BYTES) throw new FrameError(`answer larger than ${MAX_REPLY_BYTES} bytes`);
    if (value !== null && typeof value === 'object' && (value as { end?: unknown }).end === true) break;
    try {
      envelopes.push(parseEnvelope(value));
    } catch {
      // One bad envelope does not spoil the others; the caller's ledger decides what counts.
    }
  }
  return { meshIp: h.meshIp, name: h.name, envelopes, skewMs };
}

// ---- server -------------------------------------------------------------------------------------

export interface ServeJoinOptions {
  ledger: Ledger;
  /** This member's chain: it signs the admissions (shared with everything else this node signs). */
  signer: Signer;
  /**
   * Where admissions and the joiner's record are published (LedgerSync), and the exchange with
   * every connected member that an admission waits for before it is answered.
   */
  sync?: { publish(env: SignedEnvelope): Promise<unknown>; exchangeAll?(opts: { except?: string }): Promise<unknown> };
  /** How long to wait at least for a competing admission before answering; default 500 ms. */
  settleMs?: number;
  /** How long to wait at most for the exchange with the connected members; default 5 s (the joiner gives up after 15 s). */
  confirmMs?: number;
  now?: () => number;
  logger?: Logger;
  /** Called with each admission this member signs, before it is published (the daemon persists it). */
  onAdmit?: (env: SignedEnvelope) => Promise<void> | void;
  /** How long a joiner may take to send its request; default 10 s. */
  requestTimeoutMs?: number;
}

export interface JoinServer {
  close(): Promise<void>;
}

const REQUEST_KEYS = new Set(['invite', 'proof', 'record']);

/** Texts from ledger.checkAdmission and the fold, as a joiner should read them. */
function explain(reason: string): string {
  switch (reason) {
    case 'invite already used': return 'invite already used';
    case 'other network': return 'this invite is for another network';
    case 'expired': return 'invite expired; ask an administrator for a new one';
    case 'revoked': return 'this node was removed from the network; it comes back only as a new identity (meshd leave takes new keys) with a new invite';
    case 'range full': return 'the network address range is full';
    case 'unknown invite': return 'this member does not know that invite (yet): try again in a few seconds, or ask for a new invite';
    default:
      if (reason.startsWith('invite cancelled')) return 'this invite was cancelled; ask an administrator for a new one';
      if (reason.startsWith('invite dead')) return 'the administrator who issued this invite was removed; ask for a new invite';
      if (reason === 'invite not valid: not an administrator') return 'the invite was not issued by an administrator of this network';
      return `admission refused: ${reason}`;
  }
}

class Refusal extends Error {}

interface JoinRequest {
  invite: SignedEnvelope<InviteBody>;
  inviteId: string;
  proof: string;
  record: SignedEnvelope<RecordBody>;
}

export async function serveJoin(node: Host, opts: ServeJoinOptions): Promise<JoinServer> {
  const log = opts.logger ?? noopLogger;
  const now = opts.now ?? Date.now;
  const settleMs = opts.settleMs ?? 500;
  const confirmMs = opts.confirmMs ?? 5_000;
  const requestTimeoutMs = opts.requestTimeoutMs ?? 10_000;
  const ledger = opts.ledger;
  const admitter = opts.signer.peerId;
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
    const signal = timeoutSignal(requestTimeoutMs + settleMs + 30_000, closed.signal);
    try {
      let request: JoinRequest;
      try {
        request = parseRequest(await readRequest(frames, requestTimeoutMs, closed.signal), joiner, ledger);
      } catch (err) {
        if (!(err instanceof Refusal)) throw err;
        log.info({ joiner, error: err.message }, 'join refused');
        await frames.write({ ok: false, error: err.message, now: now() }, signal);
        await frames.close(signal);
        return;
      }
      const outcome = await admitJoiner(request, joiner);
      if ('error' in outcome) {
        log.info({ joiner, error: outcome.error }, 'join refused');
        await frames.write({ ok: false, error: outcome.error, now: now() }, signal);
      } else {
        const envelopes = ledgerDelta(ledger, null);
        await frames.write({ ok: true, meshIp: outcome.meshIp, name: outcome.name, now: now() }, signal);
        for (let i = 0; i < envelopes.length; i += WRITE_BATCH) {
          await frames.writeMany(envelopes.slice(i, i + WRITE_BATCH), signal);
        }
        await frames.write({ end: true }, signal);
        log.info({ joiner, meshIp: outcome.meshIp, member: outcome.name, envelopes: envelopes.length, ms: Math.round(performance.now() - started) }, 'admitted a new member');
      }
      await frames.close(signal);
    } catch (err) {
      log.debug({ joiner, err: (err as Error).message }, 'join stream failed');
      frames.abort(err as Error);
    }
  };

  /** Checks, admits, waits for the fold to settle, and says whether the joiner got in. */
  const admitJoiner = async (req: JoinRequest, joiner: string): Promise<{ meshIp: string; name: string } | { error: string }> => {
    const made = await serially(async (): Promise<{ error: string } | { id: string | null; alone?: boolean }> => {
      const t = now();
      // The invite may be newer than anything that reached us: take it from the request.
      const added = ledger.ingest(req.invite);
      if (added.status === 'invalid') return { error: `bad invite: ${added.reason ?? 'invalid'}` };
      if (added.status === 'pending') return { error: explain('unknown invite') };
      const why = ledger.checkAdmission({ invite: req.inviteId, member: joiner }, t);
      // A member asking again, with this invite or another (its first answer was lost: it or we
      // were killed mid-join), is answered as a member: no second admission, same address.
      if (why !== null && !(why === 'already a member' && ledger.isMember(joiner))) return { error: explain(why) };
      if (ledger.isMember(joiner)) {
        // Asked again (the first answer was lost): no second admission.
        safeAdd(ledger, req.record, log);
        return { id: null };
      }
      if (ledger.nextAddress() === null) return { error: explain('range full') };
      const alone = noOtherAdmitter(ledger, admitter);
      let env: SignedEnvelope;
      try {
        env = await opts.signer.sign({
          type: 'admit', member: joiner, name: ledger.freeName(req.record.body.name), invite: req.inviteId, proof: req.proof,
        }, t);
      } catch (err) {
        return { error: `admission refused: ${(err as Error).message}` };
      }
      safeAdd(ledger, req.record, log);
      try {
        await opts.onAdmit?.(env);
      } catch (err) {
        log.error({ err: (err as Error).message }, 'onAdmit failed');
      }
      // Publish after adding: a competing member learns of our admission as early as possible.
      // Not awaited: on a lossy link a push can take seconds, and the joiner need not wait for
      // it (the settle wait below is what gives a competing admission time to arrive).
      void Promise.all([env, req.record].map((e) => opts.sync?.publish(e).catch((err: Error) => {
        log.warn({ err: err.message }, 'cannot publish an admission; anti-entropy will carry it');
      })));
      return { id: eventId(env), alone };
    });
    if ('error' in made) return made;
    if (made.id !== null && !made.alone) {
      // A competing admission reaches us by now, or through the exchange (see the header).
      const exchanged = opts.sync?.exchangeAll?.({ except: joiner }).catch(() => {});
      const done = new AbortController(); // ends the confirmMs timer once the exchange is over
      await Promise.all([
        settleMs > 0 ? sleep(settleMs, closed.signal) : null,
        exchanged ? Promise.race([exchanged, sleep(confirmMs, closed.signal, done.signal)]).finally(() => done.abort()) : null,
      ]);
    }
    const member = ledger.member(joiner);
    if (member) return { meshIp: member.meshIp, name: member.name };
    const lost = made.id === null ? null : ledger.reasonOf(made.id);
    return { error: explain(lost ?? 'invite already used') };
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
    return await frames.read(timeoutSignal(timeoutMs, closed));
  } catch (err) {
    // An oversized or garbage frame: answer it if the stream still lets us.
    throw new Refusal(`malformed join request: ${(err as Error).message}`);
  }
}

function parseRequest(value: unknown, joiner: string, ledger: Ledger): JoinRequest {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Refusal('malformed join request: not an object');
  const req = value as Record<string, unknown>;
  for (const k of Object.keys(req)) if (!REQUEST_KEYS.has(k)) throw new Refusal(`malformed join request: unknown field ${k}`);
  let invite;
  try {
    invite = parseEnvelope(req.invite);
  } catch (err) {
    if (err instanceof EnvelopeError && err.code === 'version') throw new Refusal(`this invite is from an older meshd: ${err.message}`);
    throw new Refusal(`not a meshd invite: ${err instanceof EnvelopeError ? err.message : 'malformed'}`);
  }
  if (invite.body.type !== 'invite') throw new Refusal(`not a meshd invite: it is a signed ${invite.body.type}`);
  if (invite.body.network !== ledger.network()?.id) throw new Refusal(explain('other network'));
  if (typeof req.proof !== 'string' || req.proof.length > 100) throw new Refusal('malformed join request: no proof of the invite');
  const inviteId = eventId(invite);
  if (!verifyInviteProof(invite.body.key, req.proof, { network: invite.body.network, invite: inviteId, member: joiner })) {
    throw new Refusal('forged invite: the joiner does not hold its secret');
  }
  let record;
  try {
    record = parseEnvelope(req.record);
  } catch (err) {
    throw new Refusal(`bad record: ${err instanceof EnvelopeError ? err.message : 'malformed'}`);
  }
  if (record.body.type !== 'record') throw new Refusal(`bad record: it is a signed ${record.body.type}, not a member record`);
  if (record.by !== joiner) throw new Refusal('bad record: it must be signed by the joining node');
  if (record.body.network !== invite.body.network) throw new Refusal('bad record: it is for another network than the invite');
  return { invite: invite as SignedEnvelope<InviteBody>, inviteId, proof: req.proof, record: record as SignedEnvelope<RecordBody> };
}

function safeAdd(ledger: Ledger, env: SignedEnvelope, log: Logger): void {
  try {
    ledger.add(env);
  } catch (err) {
    log.error({ err: (err as Error).message }, 'a ledger listener failed');
  }
}

/**
 * True when no other node can be admitting anyone right now, so there is no competing admission
 * to wait for: we are the only member and no member was ever removed (a removed member may have
 * admitted a node whose admission has not reached us yet). The common case of a new network's
 * founder admitting its second node: that join skips the settle wait.
 */
function noOtherAdmitter(ledger: Ledger, admitter: string): boolean {
  return ledger.members().every((m) => m.peerId === admitter) && !ledger.events().some((e) => e.body.type === 'revoke');
}

/** Resolves after `ms`, or sooner when one of `signals` aborts; leaves no listener on them. */
function sleep(ms: number, ...signals: AbortSignal[]): Promise<void> {
  return new Promise((resolve) => {
    // timeoutSignal's timer is unref'd; this one keeps the process up while an answer waits, and
    // resolves too: node stamps each timer with the clock as it is made, so the two may expire a
    // millisecond apart, and if only this one ended the wait, the process could exit in between
    // (a loaded machine did, in test/unit/join-memory.test.ts).
    const alive = setTimeout(resolve, ms);
    timeoutSignal(ms, ...signals).addEventListener('abort', () => {
      clearTimeout(alive);
      resolve();
    }, { once: true });
  });
}
