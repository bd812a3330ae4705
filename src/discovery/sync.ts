// LedgerSync: how signed ledger entries reach every member, and only members, and how members
// stay connected.
//
// Three mechanisms, each covering what the previous one misses:
//
// 1. Push. Every envelope new to this member (ours, or one that just reached us) is written to
//    connected members on a stream `/meshd/<netid>/push/2` (frames of envelopes, at most 256 a
//    stream). Ours go to every connected member; one that reached us is forwarded to up to
//    `fanout` (6) other connected members, chosen at random, as gossip would (ids already known
//    stop it); so do a few (up to 64) new to us that an exchange (2.) brought. A revocation also
//    goes to the member it removes: that is how it learns it is out.
//    Nothing else is ever pushed to a non-member: a node that has the network key but is not a
//    member (a joiner, a kicked node back with a new identity) learns nothing while it waits.
//    Envelopes pushed to us are judged by the ledger: an event whose history is missing is held
//    and an exchange (2.) with the sender fetches the rest.
//
// 2. Anti-entropy. On every new connection to a member (the side that dialled starts it; the
//    other side does if the dialler did not within a second, e.g. its ledger does not know us
//    yet), when LedgerSync starts, when a connected peer becomes a member, when a push leaves
//    events held, after a push to a member failed (that connection is exchanged on again, every
//    `syncRetryMs`, until an exchange completes), and every `entropyMs` (60 s) with one random
//    connected member, a stream
//    `/meshd/<netid>/sync/2` exchanges what the other side lacks:
//
//      both sides write  hello { v: 2, digest, heads: [event ids] | null, send }
//      (digest: Ledger.digest(), over the heads and the current records; heads: null when there
//       are more than 256, meaning "send everything")
//      equal digests: nothing more. Otherwise each side that said send: true writes the events
//      outside the causal past of the other's heads (Ledger.since), parents first, then the
//      current members' records, then { end: true }; both read the other's until its end.
//
//    No count cap: the only bounds are a frame (1 MiB), the bytes of one exchange (64 MiB) and
//    the time (60 s); what was read before a bound is kept (batches of 256 are added as they
//    come, parents first), and the next exchange starts from the heads reached. A side says
//    send: true only if the remote peer is a member in its own ledger. A non-member's envelopes
//    are still read and added: they carry their own signatures, and that is how a member whose
//    ledger is stale learns that the dialler was admitted (it then syncs back in full).
//
// 3. Full mesh. Every member's record carries its multiaddrs (and, with throughMesh, its mesh
//    address is tried last: the tunnel carries libp2p between members behind NATs); LedgerSync
//    keeps a connection to every member that has a record, dialling it with exponential backoff
//    (from 500 ms, each wait jittered to 50-100 %). To avoid two connections per pair, the smaller
//    peer id dials at once and the larger one waits `yieldMs` first.
//
//    Neighbours. Up to `fullMeshMax` (8) members, every member keeps a connection to every other.
//    Beyond that a member keeps connections to a few neighbours only, so that what an idle member
//    costs (connection upkeep, pings) does not grow with the mesh: the members sorted by peer id
//    form a ring, and each one wants the two members on either side of it and the one opposite
//    (both ends of a pair want each other, so each member has about five connections). Entries
//    still reach every member within a few pushes (each forwards to `fanout`), anti-entropy runs
//    over the same connections, and the WireGuard mesh is unchanged: it does not ride on these
//    connections. A wanted neighbour that cannot be reached is still dialled (with backoff), and
//    the next member along the ring is wanted in its place. A connection we dialled to a member
//    that is no neighbour (a joiner's connection to its inviter, a relay request, a stream link)
//    is closed once it has carried no stream for `idleUnwantedMs` (60 s); the other side's
//    connections are its own to close.
//
//    Partitions and heals. The backoff is capped at `backoffMaxMs` (8 s) for a member lost less
//    than `awayAfterMs` (10 min) ago: a partition that heals, a member that restarts, is dialled
//    again within seconds, and the exchange on the new connection (2.) brings whatever was pushed
//    while it was cut off at once, not at the next anti-entropy round. A member away longer (a
//    laptop that is shut) is dialled at most every `awayBackoffMaxMs` (60 s): what it costs an
//    idle daemon is a dial per unreachable member per cap, nothing per reachable one. Besides the
//    timer, signs of life cut a wait short:
//      - wake(peer, why): the daemon saw one (the member's tunnel answers again, it probed our
//        WireGuard socket): that member is dialled now (the larger id after `yieldMs`), its
//        backoff starting over;
//      - a connection opens to a member we had failed to reach (either side dialled): the
//        network that cut it off has probably healed, so every other member we are failing to
//        reach is dialled within a second (jittered; at most once per `backoffMaxMs`).
//    Connections to revoked peers (after `revokedGraceMs`, and once a push of the revocation got
//    through or `revokedTellMs` passed, so that the revocation reaches them first), or to peers
//    the gate denies, are closed (on every ledger change and every tick), and so are connections
//    to peers that stay non-members longer than `nonMemberGraceMs` (60 s: a joiner needs
//    seconds). A node that learns that it is itself revoked dials nobody any more (every member's
//    gate refuses it).
//
// Exported API:
//   pushProtocol(networkId): string;  syncProtocol(networkId): string
//   interface LedgerSyncOptions { logger?, gate?, maxFrameBytes?, maxSyncBytes?, syncTimeoutMs?, pushTimeoutMs?,
//                                 meshIntervalMs?, backoffMinMs?, backoffMaxMs?, awayAfterMs?,
//                                 awayBackoffMaxMs?, yieldMs?, dialTimeoutMs?, syncRetryMs?,
//                                 nonMemberGraceMs?, throughMesh?, revokedGraceMs?, revokedTellMs?, fanout?,
//                                 entropyMs?, fullMeshMax?, idleUnwantedMs?, discover? }
//   type EnvelopeSource = 'push' | 'sync'
//   interface SyncResult { peer, sent, received, added, inSync, refused }
//   class LedgerSync {
//     constructor(node: Host, ledger: Ledger, networkId: string, opts?: LedgerSyncOptions)
//     readonly protocol, pushProtocol
//     start(): Promise<void>; stop(): Promise<void>
//     publish(env): Promise<number>   adds env to the ledger if new (throws if invalid) and pushes
//                                      it to every connected member; resolves to how many took it
//     syncWith(peer: PeerId | string): Promise<SyncResult>   one exchange now
//     exchangeAll({ except? }): Promise<number>   an exchange started now with every connected
//                                      member; resolves once all have ended (how many completed)
//     wake(peer: string, why: string): boolean   a sign of life: dial that member now if we are
//                                      failing to reach it (true if a dial was brought forward)
//     missing(peer): boolean           a member we want a connection to and are failing to reach
//     connect(peer): Promise<Connection>   a connection to a member now (from its record's addresses)
//     onEnvelope(cb: (env, from: { peer, via }) => void): () => void
//         envelopes new to this ledger that came from the network (not those given to publish)
//   }
import '../util/polyfill.js';
import type { PeerId, Stream } from '@libp2p/interface';
import type { Host, HostConnection as Connection } from './host.js';
import { peerIdFromString } from '@libp2p/peer-id';
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr';
import { eventId, type SignedEnvelope } from './signed.js';
import { dialFirst } from './dialer.js';
import { raceSignal } from 'race-signal';
import type { Ledger } from './ledger.js';
import { FrameError, FrameStream, isLoopbackAddr, peerOf, type ConnectionGate } from './p2p.js';
import { noopLogger, type Logger } from '../util/log.js';
import { timeoutSignal } from '../util/timeout.js';

export const pushProtocol = (networkId: string): string => `/meshd/${networkId}/push/2`;
export const syncProtocol = (networkId: string): string => `/meshd/${networkId}/sync/2`;

export interface LedgerSyncOptions {
  logger?: Logger;
  /** Extra hang-up rule (the node's gate). Revoked peers are hung up on regardless. */
  gate?: ConnectionGate;
  /** Largest frame of the sync and push protocols; default 1 MiB. */
  maxFrameBytes?: number;
  /** Most bytes read in one exchange; default 64 MiB. */
  maxSyncBytes?: number;
  /** A whole exchange; default 60 s. */
  syncTimeoutMs?: number;
  /** A push to one member; default 10 s. A push or exchange that times out closes its connection. */
  pushTimeoutMs?: number;
  /** How often the full-mesh check runs (it also runs on every ledger change); default 1 s. */
  meshIntervalMs?: number;
  /** The first wait after a failed dial; default 500 ms (it doubles with each failure). */
  backoffMinMs?: number;
  /** The longest wait between dials to a member lost less than awayAfterMs ago; default 8 s. */
  backoffMaxMs?: number;
  /** A member unreachable this long is away; default 10 min. */
  awayAfterMs?: number;
  /** The longest wait between dials to a member that is away; default 60 s. */
  awayBackoffMaxMs?: number;
  /** How long the larger peer id waits for the smaller one to dial; default 1.5 s. */
  yieldMs?: number;
  dialTimeoutMs?: number;
  /** Least time between two exchanges we start on one connection after a partial one; 5 s. */
  syncRetryMs?: number;
  /** How long a connected peer may stay without being a member (a joiner); default 60 s. */
  nonMemberGraceMs?: number;
  /**
   * Also dial a member at its mesh address, last: through the WireGuard tunnel, which works when
   * nothing else does (two members behind NATs cannot accept TCP, but their tunnel is up). Only
   * where the mesh interface carries those addresses (the daemon); default false.
   */
  throughMesh?: boolean;
  /**
   * How long an open connection to a member just revoked stays, at least (2 s) and at most (30 s
   * more), for the revocation to reach it: it is pushed there until one push gets through.
   */
  revokedGraceMs?: number;
  revokedTellMs?: number;
  /** How many members an envelope that reached us is forwarded to; default 6. */
  fanout?: number;
  /** How often we compare ledgers with one random connected member; default 60 s. */
  entropyMs?: number;
  /** Up to this many members (ourselves included) everyone connects to everyone; default 8. */
  fullMeshMax?: number;
  /** A connection we dialled to a member that is no neighbour closes after this long without streams; 60 s. */
  idleUnwantedMs?: number;
  /** Called when a dial to a member failed: look for it another way (mDNS on the LAN). */
  discover?: () => void;
}

export type EnvelopeSource = 'push' | 'sync';

export interface SyncResult {
  peer: string;
  /** Envelopes we sent / read. */
  sent: number;
  received: number;
  /** Of those read, how many were new to our ledger. */
  added: number;
  /** The digests were equal: nothing had to move. */
  inSync: boolean;
  /** The remote would not send us its envelopes (we are not a member in its ledger). */
  refused: boolean;
}

type EnvelopeListener = (env: SignedEnvelope, from: { peer: string; via: EnvelopeSource }) => void;

interface Hello {
  digest: string;
  heads: string[] | null;
  send: boolean;
}

interface DialState {
  attempts: number;
  nextAt: number;
  dialing: boolean;
  /** When we noticed we have no connection to it (or started). */
  since: number;
  /** When the last dial started (0: never). */
  lastDialAt: number;
  /** A dial to it has failed since we lost it: we are failing to reach it. */
  failed: boolean;
}

const HELLO_KEYS = new Set(['v', 'digest', 'heads', 'send']);
const MAX_HEADS = 256;
const PUSH_MAX = 256;
const BATCH = 256;
/** Entries new to us from one exchange that are forwarded like pushed ones (more: a catch-up). */
const FORWARD_FROM_SYNC_MAX = 64;
/** How long the side that accepted a connection waits for the dialler to start the exchange. */
const INBOUND_WAIT_MS = 1_000;
/** Signs of life dial a member at most this often. */
const WAKE_MIN_INTERVAL_MS = 1_000;

function parseHello(value: unknown): Hello {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new FrameError('sync hello is not an object');
  const h = value as Record<string, unknown>;
  for (const k of Object.keys(h)) if (!HELLO_KEYS.has(k)) throw new FrameError(`sync hello has an unknown field ${k}`);
  if (h.v !== 2) throw new FrameError(`sync version ${String(h.v)} is not 2 (an older meshd?)`);
  if (typeof h.digest !== 'string' || !/^[0-9a-f]{64}$/.test(h.digest)) throw new FrameError('sync hello has no digest');
  if (typeof h.send !== 'boolean') throw new FrameError('sync hello has no send flag');
  let heads: string[] | null = null;
  if (h.heads !== null) {
    if (!Array.isArray(h.heads) || h.heads.length > MAX_HEADS || !h.heads.every((x) => typeof x === 'string' && /^[0-9a-f]{64}$/.test(x))) {
      throw new FrameError('sync hello has bad heads');
    }
    heads = h.heads as string[];
  }
  return { digest: h.digest, heads, send: h.send };
}

/** What a member sends a peer whose ledger ends at `heads`: missing events, parents first, then records. */
export function ledgerDelta(ledger: Ledger, heads: readonly string[] | null): SignedEnvelope[] {
  return [...ledger.since(heads ?? []), ...ledger.records()];
}

/** The member an entry revokes, or null when it is no revocation. */
function revokedMember(env: SignedEnvelope): string | null {
  const body = env.body as { type?: string; member?: unknown };
  return body.type === 'revoke' && typeof body.member === 'string' ? body.member : null;
}

const isEnd = (v: unknown): boolean => v !== null && typeof v === 'object' && (v as { end?: unknown }).end === true && Object.keys(v).length === 1;

export class LedgerSync {
  readonly protocol: string;
  readonly pushProtocol: string;
  readonly #node: Host;
  readonly #ledger: Ledger;
  readonly #log: Logger;
  readonly #gate: ConnectionGate | undefined;
  readonly #maxFrameBytes: number;
  readonly #maxSyncBytes: number;
  readonly #syncTimeoutMs: number;
  readonly #meshIntervalMs: number;
  readonly #pushTimeoutMs: number;
  readonly #backoffMinMs: number;
  readonly #backoffMaxMs: number;
  readonly #awayAfterMs: number;
  readonly #awayBackoffMaxMs: number;
  readonly #yieldMs: number;
  readonly #dialTimeoutMs: number;
  readonly #throughMesh: boolean;
  readonly #revokedGraceMs: number;
  readonly #revokedTellMs: number;
  readonly #revokedSeen = new Map<string, number>();
  /** Connections (by id) to revoked members being told of their revocation (#tellRevoked). */
  readonly #telling = new Set<string>();
  readonly #syncRetryMs: number;
  readonly #nonMemberGraceMs: number;
  readonly #fanout: number;
  readonly #entropyMs: number;
  readonly #fullMeshMax: number;
  readonly #idleUnwantedMs: number;
  readonly #discover: (() => void) | undefined;
  readonly #self: string;
  /** Connections we dialled to members that are no neighbours: since when (conn id -> ms). */
  readonly #unwantedSince = new Map<string, number>();

  readonly #listeners = new Set<EnvelopeListener>();
  /** Connections on which a full two-way exchange completed. */
  readonly #synced = new Set<string>();
  /** Exchanges we started, by connection id. */
  readonly #syncing = new Map<string, Promise<SyncResult>>();
  /** When we last started an exchange on a connection. */
  readonly #attempted = new Map<string, number>();
  readonly #dials = new Map<string, DialState>();
  #running = false;
  #timer: NodeJS.Timeout | null = null;
  #entropyTimer: NodeJS.Timeout | null = null;
  #tickQueued = false;
  /** When a member came back and we brought every other dial forward (see #wakeAll). */
  #lastWakeAll = 0;
  #stopLedger: (() => void) | null = null;
  #abort = new AbortController();

  constructor(node: Host, ledger: Ledger, networkId: string, opts: LedgerSyncOptions = {}) {
    if (!/^[0-9a-f]{32}$/.test(networkId)) throw new TypeError(`network id must be 32 lower-case hex characters, not ${networkId}`);
    this.#node = node;
    this.#ledger = ledger;
    this.protocol = syncProtocol(networkId);
    this.pushProtocol = pushProtocol(networkId);
    this.#log = opts.logger ?? noopLogger;
    this.#gate = opts.gate;
    this.#maxFrameBytes = opts.maxFrameBytes ?? 1024 * 1024;
    this.#maxSyncBytes = opts.maxSyncBytes ?? 64 * 1024 * 1024;
    this.#syncTimeoutMs = opts.syncTimeoutMs ?? 60_000;
    this.#pushTimeoutMs = opts.pushTimeoutMs ?? 10_000;
    this.#meshIntervalMs = opts.meshIntervalMs ?? 1_000;
    this.#backoffMinMs = opts.backoffMinMs ?? 500;
    this.#backoffMaxMs = opts.backoffMaxMs ?? 8_000;
    this.#awayAfterMs = opts.awayAfterMs ?? 10 * 60_000;
    this.#awayBackoffMaxMs = Math.max(this.#backoffMaxMs, opts.awayBackoffMaxMs ?? 60_000);
    this.#yieldMs = opts.yieldMs ?? 1_500;
    this.#dialTimeoutMs = opts.dialTimeoutMs ?? 5_000;
    this.#throughMesh = opts.throughMesh ?? false;
    this.#revokedGraceMs = opts.revokedGraceMs ?? 2_000;
    this.#revokedTellMs = opts.revokedTellMs ?? 30_000;
    this.#syncRetryMs = opts.syncRetryMs ?? 5_000;
    this.#nonMemberGraceMs = opts.nonMemberGraceMs ?? 60_000;
    this.#fanout = opts.fanout ?? 6;
    this.#entropyMs = opts.entropyMs ?? 60_000;
    this.#fullMeshMax = opts.fullMeshMax ?? 8;
    this.#idleUnwantedMs = opts.idleUnwantedMs ?? 60_000;
    this.#discover = opts.discover;
    this.#self = node.peerId.toString();
  }

  onEnvelope(cb: EnvelopeListener): () => void {
    this.#listeners.add(cb);
    return () => this.#listeners.delete(cb);
  }

  async start(): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    this.#abort = new AbortController();
    await this.#node.handle(this.protocol, (stream, conn) => this.#serveSync(stream, conn), { maxInboundStreams: 2, force: true });
    await this.#node.handle(this.pushProtocol, (stream, conn) => this.#servePush(stream, conn), { maxInboundStreams: 8, force: true });
    this.#node.addEventListener('connection:open', this.#onOpen);
    this.#node.addEventListener('connection:close', this.#onClose);
    this.#stopLedger = this.#ledger.onChange(() => this.#queueTick());
    this.#timer = setInterval(() => this.#queueTick(), this.#meshIntervalMs);
    this.#timer.unref();
    this.#entropyTimer = setInterval(() => this.#entropy(), this.#entropyMs);
    this.#entropyTimer.unref();
    // Connections made before we started (a joiner's bootstrap connection) get their sync now.
    this.#queueTick();
  }

  async stop(): Promise<void> {
    if (!this.#running) return;
    this.#running = false;
    this.#abort.abort();
    if (this.#timer) clearInterval(this.#timer);
    if (this.#entropyTimer) clearInterval(this.#entropyTimer);
    this.#timer = null;
    this.#entropyTimer = null;
    this.#stopLedger?.();
    this.#stopLedger = null;
    this.#node.removeEventListener('connection:open', this.#onOpen);
    this.#node.removeEventListener('connection:close', this.#onClose);
    try {
      await this.#node.unhandle(this.protocol);
      await this.#node.unhandle(this.pushProtocol);
    } catch {
      // the node may already be stopping
    }
    await Promise.allSettled([...this.#syncing.values()]);
  }

  /** Adds our own envelope to the ledger (if it is not there yet) and pushes it to every connected member. */
  async publish(env: SignedEnvelope): Promise<number> {
    let status;
    try {
      status = this.#ledger.add(env);
    } catch (err) {
      // A ledger listener threw; the envelope is stored (listeners run after the add).
      this.#log.error({ err: (err as Error).message }, 'a ledger listener failed');
      status = 'new';
    }
    if (status === 'invalid') throw new TypeError(`refusing to publish an envelope the ledger rejects (${(env.body as { type?: string })?.type ?? '?'} by ${env.by})`);
    const targets = this.#memberConnections().concat(this.#revokedTargets([env]));
    const results = await Promise.all(targets.map((conn) => this.#push(conn, [env])));
    const recipients = results.filter(Boolean).length;
    this.#log.debug({ type: (env.body as { type?: string }).type, recipients }, 'pushed a ledger entry');
    return recipients;
  }

  // ---- push ---------------------------------------------------------------------------------

  /** One open connection per connected member (not us, not revoked). */
  #memberConnections(except?: string): Connection[] {
    const seen = new Set<string>();
    const out: Connection[] = [];
    for (const conn of this.#node.getConnections()) {
      const peer = conn.remotePeer.toString();
      if (conn.status !== 'open' || seen.has(peer) || peer === except || peer === this.#self) continue;
      if (!this.#ledger.isMember(peer)) continue;
      seen.add(peer);
      out.push(conn);
    }
    return out;
  }

  /** A revocation also goes to the member it removes, if connected: that is how it learns. */
  #revokedTargets(envs: readonly SignedEnvelope[]): Connection[] {
    const out: Connection[] = [];
    for (const env of envs) {
      const member = revokedMember(env);
      if (member === null || member === this.#self) continue;
      const conn = this.#node.getConnections().find((c) => c.remotePeer.toString() === member && c.status === 'open');
      if (conn) out.push(conn);
    }
    return out;
  }

  /** Pushes `envs` on `conn`; false once the push fails or its deadline passes, whatever libp2p still awaits. */
  async #push(conn: Connection, envs: readonly SignedEnvelope[]): Promise<boolean> {
    const signal = timeoutSignal(this.#pushTimeoutMs, this.#abort.signal);
    let frames = null as FrameStream | null;
    const attempt = async (): Promise<void> => {
      frames = new FrameStream(await this.#newStream(conn, this.pushProtocol, signal), this.#maxFrameBytes);
      await frames.writeMany([...envs.slice(0, PUSH_MAX), { end: true }], signal);
      await frames.close(signal);
    };
    try {
      await raceSignal(attempt(), signal);
      return true;
    } catch (err) {
      frames?.abort(err as Error);
      this.#log.debug({ peer: conn.remotePeer.toString(), err: (err as Error).message }, 'cannot push to a member');
      // (A revoked member's connection stays until it is told: #tellRevoked closes it.)
      if (!this.#ledger.revoked(conn.remotePeer.toString())) this.#closeIfTimedOut(conn, signal, 'a push');
      // The member may have missed it: this connection gets an exchange again, not now (it is
      // struggling) but every syncRetryMs from now until one completes (#tick).
      this.#synced.delete(conn.id);
      this.#attempted.set(conn.id, Date.now());
      return false;
    }
  }

  /**
   * A connection that could not carry a push or a sync within its time limit is dead or nearly so
   * (a link gone dark drops no TCP connection by itself): it is closed, so that the sync dials the
   * member again (with backoff) instead of waiting for the connection monitor's next ping
   * (CONNECTION_PING_MS in p2p.ts, minutes apart so that idle connections cost next to nothing).
   */
  #closeIfTimedOut(conn: Connection, signal: AbortSignal, what: string): void {
    if (!signal.aborted || this.#abort.signal.aborted || conn.status !== 'open') return;
    this.#log.info({ peer: conn.remotePeer.toString(), what }, 'a connection timed out; closing it');
    conn.abort(new Error(`${what} timed out`));
  }

  async #servePush(stream: Stream, conn: Connection): Promise<void> {
    const peer = conn.remotePeer.toString();
    const frames = new FrameStream(stream, this.#maxFrameBytes);
    const signal = timeoutSignal(10_000, this.#abort.signal);
    try {
      if (this.#mustHangUp(peer)) throw new FrameError('peer is revoked');
      const got: unknown[] = [];
      for (;;) {
        const value = await frames.read(signal);
        if (isEnd(value)) break;
        got.push(value);
        if (got.length > PUSH_MAX) throw new FrameError(`more than ${PUSH_MAX} envelopes in one push`);
      }
      await frames.close(signal);
      const { fresh, held } = this.#ingest(got, peer, 'push');
      if (fresh.length > 0) this.#forward(fresh, peer);
      // History we lack: the sender has it (it stored these events).
      if (held && this.#ledger.isMember(peer)) void this.syncWith(peer).catch(() => {});
    } catch (err) {
      frames.abort(err as Error);
      this.#log.debug({ peer, err: (err as Error).message }, 'bad push');
    }
  }

  /** Gossip-style: what reached us goes on to a few other members (and a revocation to its target). */
  #forward(envs: SignedEnvelope[], from: string): void {
    const conns = this.#memberConnections(from);
    for (let i = conns.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [conns[i], conns[j]] = [conns[j], conns[i]];
    }
    const targets = conns.slice(0, this.#fanout).concat(this.#revokedTargets(envs).filter((c) => c.remotePeer.toString() !== from));
    for (const conn of targets) void this.#push(conn, envs);
  }

  #emit(envs: SignedEnvelope[], peer: string, via: EnvelopeSource): void {
    for (const env of envs) {
      for (const cb of [...this.#listeners]) {
        try {
          cb(env, { peer, via });
        } catch (err) {
          this.#log.error({ err: (err as Error).message }, 'an onEnvelope listener failed');
        }
      }
    }
  }

  // ---- anti-entropy ---------------------------------------------------------------------------

  readonly #onOpen = (evt: CustomEvent<Connection>): void => {
    const conn = evt.detail;
    const peer = conn.remotePeer.toString();
    if (this.#mustHangUp(peer)) {
      void this.#hangUp(conn, 'revoked or denied');
      return;
    }
    // Its dial state stays until #tick sees the connection still open (a connection the other
    // side refuses at once must not reset the backoff: a member kicked while offline, not knowing
    // it, would redial everyone every tick).
    const st = this.#dials.get(peer);
    // A member we had failed to reach is back: whatever cut it off has probably healed for others.
    if (st?.failed === true && this.#ledger.isMember(peer)) this.#wakeAll(`${peer} is reachable again`);
    // One exchange per connection is enough, and it is bidirectional: the dialler starts it. If
    // the dialler does not (its ledger does not know us as a member yet), #tick starts one here
    // INBOUND_WAIT_MS after the connection opened; an exchange it starts (#serveSync) cancels that.
    if (!this.#ledger.isMember(peer)) return;
    if (conn.direction === 'outbound') void this.#syncOn(conn);
    else this.#attempted.set(conn.id, Date.now() - this.#syncRetryMs + Math.min(this.#syncRetryMs, INBOUND_WAIT_MS));
  };

  readonly #onClose = (evt: CustomEvent<Connection>): void => {
    this.#synced.delete(evt.detail.id);
    this.#attempted.delete(evt.detail.id);
    this.#unwantedSince.delete(evt.detail.id);
    this.#queueTick();
  };

  /** Compares ledgers with one random connected member: catches whatever push missed. */
  #entropy(): void {
    if (!this.#running) return;
    const conns = this.#memberConnections();
    if (conns.length === 0) return;
    const conn = conns[Math.floor(Math.random() * conns.length)];
    void this.#syncOn(conn);
  }

  /** One exchange with a peer now, on an existing connection or a new one. */
  async syncWith(peer: PeerId | string): Promise<SyncResult> {
    const id = peer.toString();
    const conn = this.#node.getConnections().find((c) => c.remotePeer.toString() === id && c.status === 'open');
    if (conn) return this.#syncOn(conn);
    const target = typeof peer === 'string' ? peerIdFromString(peer) : peer;
    const dialled = await this.#node.dial(target, { signal: timeoutSignal(this.#dialTimeoutMs) });
    return this.#syncOn(dialled);
  }

  /**
   * An exchange started now with every connected member (except `except`), after any running one
   * on the same connection: once it resolves, each of them has what we hold now, and we have what
   * each of them held when it answered. The join server waits for it before it trusts the fold
   * (join.ts). Resolves to how many exchanges completed; failed ones are left out.
   */
  async exchangeAll(opts: { except?: string } = {}): Promise<number> {
    if (!this.#running) return 0;
    const results = await Promise.allSettled(this.#memberConnections(opts.except).map(async (conn) => {
      await this.#syncing.get(conn.id)?.catch(() => {});
      return this.#syncOn(conn);
    }));
    return results.filter((r) => r.status === 'fulfilled').length;
  }

  /**
   * A sign of life from a member (its tunnel answers again, it probed us): if we are failing to
   * reach it, dial it now, its backoff starting over. The larger id of the pair waits yieldMs, so
   * that two members seeing each other at once end with one connection. Cheap to call often: a
   * member we are connected to, or dialled less than WAKE_MIN_INTERVAL_MS ago, is left alone.
   */
  wake(peer: string, why: string): boolean {
    if (!this.#running || peer === this.#self || !this.#ledger.isMember(peer) || this.#mustHangUp(peer)) return false;
    const st = this.#dials.get(peer);
    // No dial state: connected, or not yet noticed (the next tick dials it).
    if (st === undefined || !st.failed || st.dialing) return false;
    const now = Date.now();
    if (now - st.lastDialAt < WAKE_MIN_INTERVAL_MS) return false;
    const at = now + (this.#self < peer ? 0 : this.#yieldMs);
    if (st.nextAt <= at) return false;
    st.attempts = 0;
    st.nextAt = at;
    this.#log.info({ peer, why, inMs: at - now }, 'a member shows signs of life: dialling it');
    if (at === now) this.#queueTick();
    return true;
  }

  /** A member we want a connection to, and fail to reach (a dial to it failed since we lost it). */
  missing(peer: string): boolean {
    return this.#dials.get(peer)?.failed === true;
  }

  /**
   * A connection to a member now, for a protocol that needs one (a stream link, a relay request):
   * the open one, or a dial to the addresses in its record. Beyond fullMeshMax members we are not
   * connected to every member; an unused connection we dialled closes again after idleUnwantedMs.
   */
  async connect(peer: string): Promise<Connection> {
    const open = this.#node.getConnections().find((c) => c.remotePeer.toString() === peer && c.status === 'open');
    if (open) return open;
    const m = this.#ledger.member(peer);
    if (!m || this.#mustHangUp(peer)) throw new Error(`${peer} is not a member`);
    const addrs = dialAddrs(peer, m.record?.multiaddrs ?? [], this.#throughMesh ? m.meshIp : null);
    return (await dialFirst(this.#node, addrs.map(String), { timeoutMs: this.#dialTimeoutMs, signal: this.#abort.signal })).conn;
  }

  /**
   * The members we keep a connection to: all of them up to fullMeshMax, else our neighbours on
   * the ring of members sorted by peer id (see the header). Members we are failing to reach stay
   * wanted (they are dialled with backoff) and the next one along the ring is wanted as well.
   */
  #wanted(members: readonly { peerId: string; record?: { multiaddrs: readonly string[] } | null }[]): Set<string> {
    const ids = members.map((m) => m.peerId).filter((p) => !this.#mustHangUp(p) || p === this.#self);
    if (!ids.includes(this.#self)) ids.push(this.#self);
    if (ids.length <= this.#fullMeshMax) return new Set(ids.filter((p) => p !== this.#self));
    ids.sort();
    const n = ids.length;
    const at = ids.indexOf(this.#self);
    const out = new Set<string>();
    for (const dir of [1, -1]) {
      // The first two members reachable (or not yet tried) in this direction, and the failing ones before them.
      let found = 0;
      for (let step = 1; step < n && found < 2; step++) {
        const p = ids[(at + dir * step + n) % n];
        out.add(p);
        if (!this.missing(p)) found++;
      }
    }
    out.add(ids[(at + Math.floor(n / 2)) % n]);
    out.delete(this.#self);
    // Neighbours whose records we do not have yet cannot be dialled: until two can, the next
    // members along the ring that can are wanted as well (a member that came in through one
    // connection, now closed, would otherwise have no way back).
    const dialable = new Set(members.filter((m) => (m.record?.multiaddrs.length ?? 0) > 0).map((m) => m.peerId));
    let reachable = [...out].filter((p) => dialable.has(p) && !this.missing(p)).length;
    for (let step = 1; step < n && reachable < 2; step++) {
      const p = ids[(at + step) % n];
      if (p === this.#self || out.has(p) || !dialable.has(p)) continue;
      out.add(p);
      if (!this.missing(p)) reachable++;
    }
    return out;
  }

  /**
   * A member we could not reach is back: dial every other member we are failing to reach within
   * a second (jittered, so that members do not all dial at one instant), their backoffs starting
   * over. At most once per backoffMaxMs: a flapping link does not turn into a dial storm.
   */
  #wakeAll(why: string): void {
    const now = Date.now();
    if (now - this.#lastWakeAll < this.#backoffMaxMs) return;
    this.#lastWakeAll = now;
    let woken = 0;
    for (const [peer, st] of this.#dials) {
      if (!st.failed || st.dialing) continue;
      const at = now + Math.random() * 1_000 + (this.#self < peer ? 0 : this.#yieldMs);
      if (st.nextAt <= at) continue;
      st.attempts = 0;
      st.nextAt = at;
      woken++;
    }
    if (woken > 0) this.#log.info({ why, members: woken }, 'the network may have healed: dialling the members we could not reach');
  }

  #syncOn(conn: Connection): Promise<SyncResult> {
    const running = this.#syncing.get(conn.id);
    if (running) return running;
    this.#attempted.set(conn.id, Date.now());
    const p = this.#initiate(conn).finally(() => this.#syncing.delete(conn.id));
    this.#syncing.set(conn.id, p);
    // Callers that fire and forget (connection events) must not leave a rejection unhandled.
    p.catch(() => {});
    return p;
  }

  /**
   * A stream for `protocol` by the deadline `signal` sets, or an error. libp2p's newStream can
   * outlast its signal: after the protocol is negotiated it records it in the peer store, an await
   * the signal does not reach (behind other peer-store writes on a busy node). So the wait is raced
   * against the signal, and a stream that arrives after the deadline is aborted.
   */
  #newStream(conn: Connection, protocol: string, signal: AbortSignal): Promise<Stream> {
    const opening = conn.newStream(protocol, { signal });
    opening.then((stream) => signal.aborted && stream.abort(new Error(`opening a ${protocol} stream timed out`)), () => {});
    return raceSignal(opening, signal);
  }

  async #initiate(conn: Connection): Promise<SyncResult> {
    const peer = conn.remotePeer.toString();
    const signal = timeoutSignal(this.#syncTimeoutMs, this.#abort.signal);
    const started = performance.now();
    let stream: Stream;
    try {
      stream = await this.#newStream(conn, this.protocol, signal);
    } catch (err) {
      this.#log.debug({ peer, err: (err as Error).message }, 'cannot open a sync stream');
      throw err;
    }
    try {
      const r = await raceSignal(this.#exchange(new FrameStream(stream, this.#maxFrameBytes), conn, signal), signal);
      this.#log.debug({ ...r, ms: Math.round(performance.now() - started) }, 'ledger sync done');
      return r;
    } catch (err) {
      if (signal.aborted) stream.abort(err as Error);
      this.#log.debug({ peer, err: (err as Error).message }, 'ledger sync failed');
      this.#closeIfTimedOut(conn, signal, 'a sync');
      throw err;
    }
  }

  async #serveSync(stream: Stream, conn: Connection): Promise<void> {
    // The peer started an exchange on this connection: ours (#tick) need not start another.
    this.#attempted.set(conn.id, Date.now());
    const signal = timeoutSignal(this.#syncTimeoutMs, this.#abort.signal);
    try {
      const r = await this.#exchange(new FrameStream(stream, this.#maxFrameBytes), conn, signal);
      this.#log.debug({ ...r }, 'ledger sync served');
    } catch (err) {
      this.#log.debug({ peer: conn.remotePeer.toString(), err: (err as Error).message }, 'ledger sync (served) failed');
    }
  }

  /** The symmetric exchange both sides run (see the header). Aborts the stream on any error. */
  async #exchange(frames: FrameStream, conn: Connection, signal: AbortSignal): Promise<SyncResult> {
    const peer = conn.remotePeer.toString();
    try {
      if (this.#mustHangUp(peer)) throw new FrameError('peer is revoked');
      const digest = this.#ledger.digest();
      const heads = this.#ledger.heads();
      const send = this.#ledger.isMember(peer);
      await frames.write({ v: 2, digest, heads: heads.length > MAX_HEADS ? null : heads, send }, signal);
      const hello = parseHello(await frames.read(signal));
      const inSync = hello.digest === digest;
      // What the other side lacks, from the same moment as the hello we wrote.
      const out = send && !inSync ? ledgerDelta(this.#ledger, hello.heads) : [];
      const expecting = hello.send && !inSync;

      const writer = async (): Promise<void> => {
        if (!send || inSync) return;
        for (let i = 0; i < out.length; i += BATCH) await frames.writeMany(out.slice(i, i + BATCH), signal);
        await frames.write({ end: true }, signal);
      };
      let received = 0;
      let added = 0;
      const fresh: SignedEnvelope[] = [];
      const take = (batch: unknown[]): number => {
        const got = this.#ingest(batch, peer, 'sync').fresh;
        if (fresh.length <= FORWARD_FROM_SYNC_MAX) fresh.push(...got);
        return got.length;
      };
      const reader = async (): Promise<void> => {
        if (!expecting) return;
        let batch: unknown[] = [];
        for (;;) {
          const value = await frames.read(signal);
          if (isEnd(value)) break;
          batch.push(value);
          received++;
          if (frames.bytesRead > this.#maxSyncBytes) throw new FrameError(`peer sent more than ${this.#maxSyncBytes} bytes`);
          if (batch.length >= BATCH) {
            added += take(batch);
            batch = [];
          }
        }
        added += take(batch);
      };
      await Promise.all([writer(), reader()]);
      await frames.close(signal);
      // A few entries new to us (a member's new record, an event made while we were apart) go on
      // as pushed ones do: beyond fullMeshMax the other side's neighbours are not all ours. A
      // long catch-up is history the others have already.
      if (fresh.length > 0 && fresh.length <= FORWARD_FROM_SYNC_MAX) this.#forward(fresh, peer);
      // Both directions done (or nothing to do): this connection needs no further exchange.
      if (send && (hello.send || inSync)) this.#synced.add(conn.id);
      return { peer, sent: out.length, received, added, inSync, refused: !hello.send };
    } catch (err) {
      frames.abort(err as Error);
      throw err;
    }
  }

  /** Adds a batch with one ledger notification; reports the new ones to onEnvelope listeners. */
  #ingest(values: unknown[], peer: string, via: EnvelopeSource): { fresh: SignedEnvelope[]; held: boolean } {
    if (values.length === 0) return { fresh: [], held: false };
    const ids: Array<string | null> = values.map((v) => {
      try {
        return eventId(v as SignedEnvelope);
      } catch {
        return null; // not even JSON-able as an envelope: the ledger will call it invalid
      }
    });
    const before = new Set(ids.filter((id): id is string => id !== null && this.#ledger.has(id)));
    try {
      // Only a member's events may wait for their history here: a stranger cannot fill the buffer.
      this.#ledger.addAll(values, { hold: this.#ledger.isMember(peer) });
    } catch (err) {
      this.#log.error({ err: (err as Error).message }, 'a ledger listener failed');
    }
    const freshIds = [...new Set(ids.filter((id): id is string => id !== null && !before.has(id) && this.#ledger.has(id)))];
    const fresh = freshIds.map((id) => this.#ledger.get(id)!).filter(Boolean);
    this.#emit(fresh, peer, via);
    return { fresh, held: this.#ledger.held() > 0 };
  }

  // ---- full mesh ----------------------------------------------------------------------------

  /** When we first saw this peer revoked (now, if this is the first time). */
  #revokedAt(peer: string, now: number): number {
    let at = this.#revokedSeen.get(peer);
    if (at === undefined) {
      at = now;
      this.#revokedSeen.set(peer, at);
      setTimeout(() => this.#queueTick(), this.#revokedGraceMs + 10).unref?.();
    }
    return at;
  }

  #mustHangUp(peer: string): boolean {
    if (this.#ledger.revoked(peer)) return true;
    try {
      return this.#gate !== undefined && !this.#gate.allow(peer);
    } catch {
      return true;
    }
  }

  /**
   * Hangs up on a revoked member once it has its revocation. The pushes made with the revocation
   * may all have been lost (a lossy link): from the end of the grace on, the revocation is pushed
   * on this connection until a push gets through or revokedTellMs passes, then the connection
   * closes. It is the only way the member can learn: every member's gate refuses it from now on.
   */
  #tellRevoked(conn: Connection, peer: string): void {
    if (this.#telling.has(conn.id)) return;
    this.#telling.add(conn.id);
    const revocations = this.#ledger.events().filter((e) => revokedMember(e) === peer);
    const until = Date.now() + this.#revokedTellMs;
    void (async () => {
      let told = false;
      while (!told && this.#running && conn.status === 'open' && Date.now() < until) {
        told = await this.#push(conn, revocations);
        if (!told) await new Promise((r) => setTimeout(r, 500));
      }
      this.#log.debug({ peer, told }, 'told a revoked member');
      await this.#hangUp(conn, 'revoked');
    })().finally(() => this.#telling.delete(conn.id));
  }

  async #hangUp(conn: Connection, why: string, level: 'info' | 'debug' = 'info'): Promise<void> {
    this.#log[level]({ peer: conn.remotePeer.toString(), why }, 'hanging up');
    await conn.close().catch(() => conn.abort(new Error(why)));
  }

  /** Coalesces ledger changes, connection events and the timer into one tick per turn. */
  #queueTick(): void {
    if (this.#tickQueued || !this.#running) return;
    this.#tickQueued = true;
    setImmediate(() => {
      this.#tickQueued = false;
      if (!this.#running) return;
      try {
        this.#tick();
      } catch (err) {
        this.#log.error({ err: (err as Error).message }, 'mesh maintenance failed');
      }
    });
  }

  #tick(): void {
    const now = Date.now();
    const members = this.#ledger.members();
    const wanted = this.#wanted(members);
    // Connections to non-neighbours are closed only once we reach at least two neighbours: a
    // member whose neighbours' records it does not know yet keeps its way in (the inviter).
    let neighbours = 0;
    for (const conn of this.#node.getConnections()) if (conn.status === 'open' && wanted.has(conn.remotePeer.toString())) neighbours++;
    const trim = neighbours >= Math.min(2, wanted.size);
    const connected = new Set<string>();
    for (const conn of this.#node.getConnections()) {
      const peer = conn.remotePeer.toString();
      if (this.#mustHangUp(peer)) {
        // A member just revoked keeps its connection for a moment: the revocation (published
        // pushed to it as it was made) must reach it, or it goes on believing it is a member. It is
        // the only way it can learn: sync serves no ledger to non-members.
        if (this.#ledger.revoked(peer) && now - this.#revokedAt(peer, now) < this.#revokedGraceMs) continue;
        if (this.#ledger.revoked(peer)) this.#tellRevoked(conn, peer);
        else void this.#hangUp(conn, 'revoked or denied');
        continue;
      }
      const member = this.#ledger.isMember(peer);
      if (!member && now - conn.timeline.open > this.#nonMemberGraceMs) {
        // A joiner gets its answer in seconds; a peer that stays a non-member is only holding the
        // psk. (A member we have not heard of yet pushes its admission on connecting, so it is
        // not one of these.)
        void this.#hangUp(conn, 'not a member');
        continue;
      }
      connected.add(peer);
      if (trim && member && conn.direction === 'outbound' && !wanted.has(peer) && conn.streams.length === 0) {
        // We dialled it for something else (a join, a relay request) and it is no neighbour.
        const since = this.#unwantedSince.get(conn.id) ?? now;
        this.#unwantedSince.set(conn.id, since);
        if (now - since >= this.#idleUnwantedMs) {
          this.#unwantedSince.delete(conn.id);
          void this.#hangUp(conn, 'no neighbour, idle', 'debug');
          continue;
        }
      } else {
        this.#unwantedSince.delete(conn.id);
      }
      // A member we have not fully exchanged with on this connection: it became a member after
      // the connection opened (at once), or it refused us while its ledger was behind (retry).
      const last = this.#attempted.get(conn.id);
      if (member && conn.status === 'open' && !this.#synced.has(conn.id) && !this.#syncing.has(conn.id) &&
          (last === undefined || now - last >= this.#syncRetryMs)) {
        void this.#syncOn(conn);
      }
    }
    for (const m of members) {
      if (m.peerId === this.#self) continue;
      if (connected.has(m.peerId) || !wanted.has(m.peerId)) {
        this.#dials.delete(m.peerId);
        continue;
      }
      // A node that is itself revoked (kicked, left) dials nobody: every member refuses it at the
      // gate, so each dial would only cost them a handshake (and its backoff would not hold: the
      // dial opens on our side before their gate refuses, which resets the dial state).
      if (this.#mustHangUp(m.peerId) || this.#ledger.revoked(this.#self)) continue;
      const addrs = dialAddrs(m.peerId, m.record?.multiaddrs ?? [], this.#throughMesh ? m.meshIp : null);
      if (addrs.length === 0) continue;
      let st = this.#dials.get(m.peerId);
      if (!st) {
        // The smaller id dials first; the larger waits so that the pair ends with one connection.
        st = { attempts: 0, nextAt: this.#self < m.peerId ? now : now + this.#yieldMs, dialing: false, since: now, lastDialAt: 0, failed: false };
        this.#dials.set(m.peerId, st);
      }
      if (st.dialing || now < st.nextAt) continue;
      st.dialing = true;
      st.lastDialAt = now;
      void this.#dial(m.peerId, addrs, st);
    }
    // Forget peers that are no longer members.
    for (const peer of this.#dials.keys()) if (!this.#ledger.isMember(peer)) this.#dials.delete(peer);
  }

  /** The next dial after this one, exponentially later (jittered). Returns now. */
  #backOff(st: DialState): number {
    st.attempts++;
    const now = Date.now();
    // A member lost a while ago (shut down, moved away) is dialled less often; signs of life
    // (wake, #wakeAll) bring it back sooner.
    const cap = now - st.since >= this.#awayAfterMs ? this.#awayBackoffMaxMs : this.#backoffMaxMs;
    const base = Math.min(cap, this.#backoffMinMs * 2 ** Math.min(st.attempts - 1, 30));
    st.nextAt = now + base * (0.5 + Math.random() / 2);
    return now;
  }

  async #dial(peer: string, addrs: Multiaddr[], st: DialState): Promise<void> {
    const started = performance.now();
    try {
      // All of its addresses at once, staggered: the first one listed may be unreachable from here.
      await dialFirst(this.#node, addrs.map(String), { timeoutMs: this.#dialTimeoutMs, signal: this.#abort.signal });
      this.#log.debug({ peer, ms: Math.round(performance.now() - started) }, 'connected to a member');
      // #tick forgets the dial state once it sees the connection open; if the other side closes it
      // at once (its gate refuses us), the next dial waits like after a failure.
      this.#backOff(st);
    } catch (err) {
      st.failed = true;
      const now = this.#backOff(st);
      this.#discover?.();
      this.#log.debug({ peer, attempts: st.attempts, retryInMs: Math.round(st.nextAt - now), err: (err as Error).message }, 'cannot reach a member');
    } finally {
      st.dialing = false;
    }
  }
}

/**
 * A member's record multiaddrs, each ending in its /p2p/ id (those naming another peer dropped).
 * Loopback addresses only when the record has nothing else: from another host they lead to the
 * dialler's own machine (members on one host, as in tests, still list only loopback).
 */
function dialAddrs(peer: string, addrs: readonly string[], meshIp: string | null): Multiaddr[] {
  const routable = addrs.filter((a) => !isLoopbackAddr(a));
  const out: Multiaddr[] = [];
  const port = addrs.map((a) => /\/tcp\/(\d+)/.exec(a)?.[1]).find((p) => p !== undefined);
  if (meshIp !== null && port !== undefined) routable.push(`/ip4/${meshIp}/tcp/${port}/p2p/${peer}`);
  for (const a of routable.length > 0 ? routable : addrs) {
    const owner = peerOf(a);
    if (owner !== null && owner !== peer) continue;
    try {
      out.push(owner === null ? multiaddr(`${a}/p2p/${peer}`) : multiaddr(a));
    } catch {
      // not a multiaddr; records.ts validates them, so only a future format would land here
    }
  }
  return out;
}
