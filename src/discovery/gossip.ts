// LedgerSync: how signed ledger entries reach every member, and how members stay connected.
//
// Three mechanisms, each covering what the previous one misses:
//
// 1. Gossip. Every envelope new to this member that the daemon makes (its record, admissions,
//    revocations, grants) is published on the gossipsub topic `/meshd/<netid>/ledger/1`; with
//    floodPublish it goes to every connected subscriber at once, and gossipsub forwards it from
//    there. Received messages are judged by a topic validator that adds them to the ledger:
//    'new' -> Accept (delivered and forwarded by gossipsub; we never re-publish), 'known' ->
//    Ignore (not forwarded again), 'invalid' -> Reject (gossipsub scores the sender down).
//
// 2. Anti-entropy. Gossip only reaches who is connected and subscribed at that moment. On every
//    new connection to a member (the side that dialled starts it), when LedgerSync starts, and
//    when a connected peer becomes a member, a stream `/meshd/<netid>/sync/1` exchanges the full
//    set of stored envelopes (events and records) both ways:
//
//      both sides write  hello { v: 1, digest, count, send }   (digest: Ledger.digest())
//      both sides read the other's hello; if the digests are equal nothing more is sent
//      otherwise each side that said send: true writes `count` frames, one envelope each,
//      while reading the other's; then both close.
//
//    Frames are length-prefixed JSON (FrameStream), bounded (1 MiB a frame, 10k envelopes and
//    64 MiB an exchange by default). A side says send: true only if the remote peer is a member
//    in its own ledger: non-members never get the ledger (it holds invite tokens). A non-member's
//    envelopes are still read and added, exactly as gossip would: they carry their own
//    signatures, and that is how a member whose ledger is stale learns that the dialler was
//    admitted (it then syncs back in full, because its ledger changed).
//
// 3. Full mesh. Every member's record carries its multiaddrs (and, with throughMesh, its mesh
//    address is tried last: the tunnel carries libp2p between members behind NATs); LedgerSync
//    keeps a connection to every member that has a record, dialling it with exponential backoff (500 ms .. 30 s,
//    jittered). To avoid two connections per pair, the smaller peer id dials at once and the
//    larger one waits `yieldMs` first. Connections to revoked peers (after `revokedGraceMs`, so
//    that the revocation reaches them first), or to peers the gate denies, are closed (on every ledger change and every tick), and so are connections to peers that
//    stay non-members longer than `nonMemberGraceMs` (60 s: a joiner needs seconds).
//
// Exported API:
//   ledgerTopic(networkId): string;  syncProtocol(networkId): string
//   interface LedgerSyncOptions { logger?, gate?, maxFrameBytes?, maxEnvelopes?, maxSyncBytes?,
//                                 syncTimeoutMs?, meshIntervalMs?, backoffMinMs?, backoffMaxMs?,
//                                 yieldMs?, dialTimeoutMs?, syncRetryMs?, nonMemberGraceMs? }
//   type EnvelopeSource = 'gossip' | 'sync'
//   interface SyncResult { peer, sent, received, added, inSync, refused }
//   class LedgerSync {
//     constructor(node: Libp2p, ledger: Ledger, networkId: string, opts?: LedgerSyncOptions)
//     readonly topic, protocol
//     start(): Promise<void>; stop(): Promise<void>
//     publish(env): Promise<number>   adds env to the ledger (throws if invalid), publishes it;
//                                      resolves to the number of peers it was sent to
//     syncWith(peer: PeerId | string): Promise<SyncResult>   one exchange now
//     onEnvelope(cb: (env, from: { peer, via }) => void): () => void
//         envelopes new to this ledger that came from the network (not those given to publish)
//   }
import '../util/polyfill.js';
import type { Libp2p } from 'libp2p';
import type { Connection, PeerId, Stream } from '@libp2p/interface';
import { peerIdFromString } from '@libp2p/peer-id';
import { TopicValidatorResult, type GossipSub, type Message } from '@libp2p/gossipsub';
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr';
import { eventId, type SignedEnvelope } from './signed.js';
import { dialFirst } from './dialer.js';
import type { Ledger } from './ledger.js';
import { FrameError, FrameStream, isLoopbackAddr, noopLogger, peerOf, pubsubOf, type ConnectionGate, type MeshLogger } from './p2p.js';

export const ledgerTopic = (networkId: string): string => `/meshd/${networkId}/ledger/1`;
export const syncProtocol = (networkId: string): string => `/meshd/${networkId}/sync/1`;

export interface LedgerSyncOptions {
  logger?: MeshLogger;
  /** Extra hang-up rule (the node's gate). Revoked peers are hung up on regardless. */
  gate?: ConnectionGate;
  /** Largest frame of the sync protocol; default 1 MiB. */
  maxFrameBytes?: number;
  /** Most envelopes one side may announce in one exchange; default 10 000. */
  maxEnvelopes?: number;
  /** Most bytes read in one exchange; default 64 MiB. */
  maxSyncBytes?: number;
  /** A whole exchange; default 15 s. */
  syncTimeoutMs?: number;
  /** How often the full-mesh check runs (it also runs on every ledger change); default 1 s. */
  meshIntervalMs?: number;
  backoffMinMs?: number;
  backoffMaxMs?: number;
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
  /** How long an open connection to a member just revoked stays, for the revocation to reach it; 2 s. */
  revokedGraceMs?: number;
}

export type EnvelopeSource = 'gossip' | 'sync';

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
  count: number;
  send: boolean;
}

interface DialState {
  attempts: number;
  nextAt: number;
  dialing: boolean;
}

const HELLO_KEYS = new Set(['v', 'digest', 'count', 'send']);

function parseHello(value: unknown, maxEnvelopes: number): Hello {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new FrameError('sync hello is not an object');
  const h = value as Record<string, unknown>;
  for (const k of Object.keys(h)) if (!HELLO_KEYS.has(k)) throw new FrameError(`sync hello has an unknown field ${k}`);
  if (h.v !== 1) throw new FrameError(`sync version ${String(h.v)} is not 1`);
  if (typeof h.digest !== 'string' || !/^[0-9a-f]{64}$/.test(h.digest)) throw new FrameError('sync hello has no digest');
  if (typeof h.send !== 'boolean') throw new FrameError('sync hello has no send flag');
  if (!Number.isSafeInteger(h.count) || (h.count as number) < 0) throw new FrameError('sync hello has a bad count');
  if ((h.count as number) > maxEnvelopes) throw new FrameError(`peer announces ${h.count as number} envelopes; the limit is ${maxEnvelopes}`);
  return { digest: h.digest, count: h.count as number, send: h.send };
}

/** Every stored envelope (events valid or not, latest record per peer): what digest() covers. */
export function ledgerSnapshot(ledger: Ledger): { digest: string; envelopes: SignedEnvelope[] } {
  const ids = ledger.ids();
  const envelopes: SignedEnvelope[] = [];
  for (const id of ids) {
    const env = ledger.get(id);
    if (env) envelopes.push(env);
  }
  return { digest: ledger.digest(), envelopes };
}

const WRITE_BATCH = 256;

export class LedgerSync {
  readonly topic: string;
  readonly protocol: string;
  readonly #node: Libp2p;
  readonly #ledger: Ledger;
  readonly #pubsub: GossipSub;
  readonly #log: MeshLogger;
  readonly #gate: ConnectionGate | undefined;
  readonly #maxFrameBytes: number;
  readonly #maxEnvelopes: number;
  readonly #maxSyncBytes: number;
  readonly #syncTimeoutMs: number;
  readonly #meshIntervalMs: number;
  readonly #backoffMinMs: number;
  readonly #backoffMaxMs: number;
  readonly #yieldMs: number;
  readonly #dialTimeoutMs: number;
  readonly #throughMesh: boolean;
  readonly #revokedGraceMs: number;
  readonly #revokedSeen = new Map<string, number>();
  readonly #syncRetryMs: number;
  readonly #nonMemberGraceMs: number;
  readonly #self: string;

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
  #tickQueued = false;
  #stopLedger: (() => void) | null = null;
  #abort = new AbortController();

  constructor(node: Libp2p, ledger: Ledger, networkId: string, opts: LedgerSyncOptions = {}) {
    if (!/^[0-9a-f]{32}$/.test(networkId)) throw new TypeError(`network id must be 32 lower-case hex characters, not ${networkId}`);
    this.#node = node;
    this.#ledger = ledger;
    this.#pubsub = pubsubOf(node);
    this.topic = ledgerTopic(networkId);
    this.protocol = syncProtocol(networkId);
    this.#log = opts.logger ?? noopLogger;
    this.#gate = opts.gate;
    this.#maxFrameBytes = opts.maxFrameBytes ?? 1024 * 1024;
    this.#maxEnvelopes = opts.maxEnvelopes ?? 10_000;
    this.#maxSyncBytes = opts.maxSyncBytes ?? 64 * 1024 * 1024;
    this.#syncTimeoutMs = opts.syncTimeoutMs ?? 15_000;
    this.#meshIntervalMs = opts.meshIntervalMs ?? 1_000;
    this.#backoffMinMs = opts.backoffMinMs ?? 500;
    this.#backoffMaxMs = opts.backoffMaxMs ?? 30_000;
    this.#yieldMs = opts.yieldMs ?? 1_500;
    this.#dialTimeoutMs = opts.dialTimeoutMs ?? 5_000;
    this.#throughMesh = opts.throughMesh ?? false;
    this.#revokedGraceMs = opts.revokedGraceMs ?? 2_000;
    this.#syncRetryMs = opts.syncRetryMs ?? 5_000;
    this.#nonMemberGraceMs = opts.nonMemberGraceMs ?? 60_000;
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
    this.#pubsub.topicValidators.set(this.topic, (peer, msg) => this.#onGossip(peer, msg));
    this.#pubsub.subscribe(this.topic);
    await this.#node.handle(this.protocol, (stream, conn) => this.#serveSync(stream, conn), { maxInboundStreams: 2, force: true });
    this.#node.addEventListener('connection:open', this.#onOpen);
    this.#node.addEventListener('connection:close', this.#onClose);
    this.#stopLedger = this.#ledger.onChange(() => this.#queueTick());
    this.#timer = setInterval(() => this.#queueTick(), this.#meshIntervalMs);
    this.#timer.unref();
    // Connections made before we started (a joiner's bootstrap connection) get their sync now.
    this.#queueTick();
  }

  async stop(): Promise<void> {
    if (!this.#running) return;
    this.#running = false;
    this.#abort.abort();
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    this.#stopLedger?.();
    this.#stopLedger = null;
    this.#node.removeEventListener('connection:open', this.#onOpen);
    this.#node.removeEventListener('connection:close', this.#onClose);
    this.#pubsub.topicValidators.delete(this.topic);
    try {
      this.#pubsub.unsubscribe(this.topic);
      await this.#node.unhandle(this.protocol);
    } catch {
      // the node may already be stopping
    }
    await Promise.allSettled([...this.#syncing.values()]);
  }

  /** Adds our own envelope to the ledger and publishes it to every connected member. */
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
    const r = await this.#pubsub.publish(this.topic, new TextEncoder().encode(JSON.stringify(env)));
    this.#log.debug({ type: (env.body as { type?: string }).type, recipients: r.recipients.length }, 'published a ledger entry');
    return r.recipients.length;
  }

  // ---- gossip -------------------------------------------------------------------------------

  #onGossip(peer: PeerId, msg: Message): TopicValidatorResult {
    let raw: unknown;
    let id: string;
    try {
      raw = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(msg.data));
      id = eventId(raw as SignedEnvelope);
    } catch {
      return TopicValidatorResult.Reject;
    }
    if (this.#ledger.has(id)) return TopicValidatorResult.Ignore;
    let status;
    try {
      status = this.#ledger.add(raw);
    } catch (err) {
      this.#log.error({ err: (err as Error).message }, 'a ledger listener failed');
      status = this.#ledger.has(id) ? 'new' : 'invalid';
    }
    if (status === 'invalid') {
      this.#log.debug({ peer: peer.toString() }, 'rejected an invalid gossiped envelope');
      return TopicValidatorResult.Reject;
    }
    if (status === 'known') return TopicValidatorResult.Ignore;
    this.#emit([id], peer.toString(), 'gossip');
    return TopicValidatorResult.Accept;
  }

  #emit(ids: string[], peer: string, via: EnvelopeSource): void {
    for (const id of ids) {
      const env = this.#ledger.get(id);
      if (!env) continue;
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
    this.#dials.delete(peer);
    // One exchange per connection is enough, and it is bidirectional: the dialler starts it.
    if (conn.direction === 'outbound' && this.#ledger.isMember(peer)) void this.#syncOn(conn);
  };

  readonly #onClose = (evt: CustomEvent<Connection>): void => {
    this.#synced.delete(evt.detail.id);
    this.#attempted.delete(evt.detail.id);
    this.#queueTick();
  };

  /** One exchange with a peer now, on an existing connection or a new one. */
  async syncWith(peer: PeerId | string): Promise<SyncResult> {
    const id = peer.toString();
    const conn = this.#node.getConnections().find((c) => c.remotePeer.toString() === id && c.status === 'open');
    if (conn) return this.#syncOn(conn);
    const target = typeof peer === 'string' ? peerIdFromString(peer) : peer;
    const dialled = await this.#node.dial(target, { signal: AbortSignal.timeout(this.#dialTimeoutMs) });
    return this.#syncOn(dialled);
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

  async #initiate(conn: Connection): Promise<SyncResult> {
    const peer = conn.remotePeer.toString();
    const signal = AbortSignal.any([this.#abort.signal, AbortSignal.timeout(this.#syncTimeoutMs)]);
    const started = performance.now();
    let stream: Stream;
    try {
      stream = await conn.newStream(this.protocol, { signal });
    } catch (err) {
      this.#log.debug({ peer, err: (err as Error).message }, 'cannot open a sync stream');
      throw err;
    }
    try {
      const r = await this.#exchange(new FrameStream(stream, this.#maxFrameBytes), conn, signal);
      this.#log.debug({ ...r, ms: Math.round(performance.now() - started) }, 'ledger sync done');
      return r;
    } catch (err) {
      this.#log.debug({ peer, err: (err as Error).message }, 'ledger sync failed');
      throw err;
    }
  }

  async #serveSync(stream: Stream, conn: Connection): Promise<void> {
    const signal = AbortSignal.any([this.#abort.signal, AbortSignal.timeout(this.#syncTimeoutMs)]);
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
      // Digest and envelopes from the same synchronous moment, so they describe the same set.
      const snap = ledgerSnapshot(this.#ledger);
      const send = this.#ledger.isMember(peer);
      await frames.write({ v: 1, digest: snap.digest, count: send ? snap.envelopes.length : 0, send }, signal);
      const hello = parseHello(await frames.read(signal), this.#maxEnvelopes);
      const inSync = hello.digest === snap.digest;
      const sending = send && !inSync;
      const expecting = hello.send && !inSync ? hello.count : 0;

      const writer = async (): Promise<void> => {
        if (!sending) return;
        for (let i = 0; i < snap.envelopes.length; i += WRITE_BATCH) {
          await frames.writeMany(snap.envelopes.slice(i, i + WRITE_BATCH), signal);
        }
      };
      const reader = async (): Promise<unknown[]> => {
        const got: unknown[] = [];
        for (let i = 0; i < expecting; i++) {
          got.push(await frames.read(signal));
          if (frames.bytesRead > this.#maxSyncBytes) throw new FrameError(`peer sent more than ${this.#maxSyncBytes} bytes`);
        }
        return got;
      };
      const [, received] = await Promise.all([writer(), reader()]);
      const added = this.#ingest(received, peer);
      await frames.close();
      // Both directions done (or nothing to do): this connection needs no further exchange.
      if (send && (hello.send || inSync)) this.#synced.add(conn.id);
      return { peer, sent: sending ? snap.envelopes.length : 0, received: received.length, added, inSync, refused: !hello.send };
    } catch (err) {
      frames.abort(err as Error);
      throw err;
    }
  }

  /** Adds a batch with one ledger notification; reports the new ones to onEnvelope listeners. */
  #ingest(values: unknown[], peer: string): number {
    if (values.length === 0) return 0;
    const ids: Array<string | null> = values.map((v) => {
      try {
        return eventId(v as SignedEnvelope);
      } catch {
        return null; // not even JSON-able as an envelope: the ledger will call it invalid
      }
    });
    const before = new Set(ids.filter((id): id is string => id !== null && this.#ledger.has(id)));
    try {
      this.#ledger.addAll(values);
    } catch (err) {
      this.#log.error({ err: (err as Error).message }, 'a ledger listener failed');
    }
    const fresh = [...new Set(ids.filter((id): id is string => id !== null && !before.has(id) && this.#ledger.has(id)))];
    this.#emit(fresh, peer, 'sync');
    return fresh.length;
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

  async #hangUp(conn: Connection, why: string): Promise<void> {
    this.#log.info({ peer: conn.remotePeer.toString(), why }, 'hanging up');
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
    const connected = new Set<string>();
    for (const conn of this.#node.getConnections()) {
      const peer = conn.remotePeer.toString();
      if (this.#mustHangUp(peer)) {
        // A member just revoked keeps its connection for a moment: the revocation (published
        // on gossip as it was made) must reach it, or it goes on believing it is a member. It is
        // the only way it can learn: sync serves no ledger to non-members.
        if (this.#ledger.revoked(peer) && now - this.#revokedAt(peer, now) < this.#revokedGraceMs) continue;
        void this.#hangUp(conn, 'revoked or denied');
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
      // A member we have not fully exchanged with on this connection: it became a member after
      // the connection opened (at once), or it refused us while its ledger was behind (retry).
      const last = this.#attempted.get(conn.id);
      if (member && conn.status === 'open' && !this.#synced.has(conn.id) && !this.#syncing.has(conn.id) &&
          (last === undefined || now - last >= this.#syncRetryMs)) {
        void this.#syncOn(conn);
      }
    }
    for (const m of this.#ledger.members()) {
      if (m.peerId === this.#self) continue;
      if (connected.has(m.peerId)) {
        this.#dials.delete(m.peerId);
        continue;
      }
      if (this.#mustHangUp(m.peerId)) continue;
      const addrs = dialAddrs(m.peerId, m.record?.multiaddrs ?? [], this.#throughMesh ? m.meshIp : null);
      if (addrs.length === 0) continue;
      let st = this.#dials.get(m.peerId);
      if (!st) {
        // The smaller id dials first; the larger waits so that the pair ends with one connection.
        st = { attempts: 0, nextAt: this.#self < m.peerId ? now : now + this.#yieldMs, dialing: false };
        this.#dials.set(m.peerId, st);
      }
      if (st.dialing || now < st.nextAt) continue;
      st.dialing = true;
      void this.#dial(m.peerId, addrs, st);
    }
    // Forget peers that are no longer members.
    for (const peer of this.#dials.keys()) if (!this.#ledger.isMember(peer)) this.#dials.delete(peer);
  }

  async #dial(peer: string, addrs: Multiaddr[], st: DialState): Promise<void> {
    const started = performance.now();
    try {
      // All of its addresses at once, staggered: the first one listed may be unreachable from here.
      await dialFirst(this.#node, addrs.map(String), { timeoutMs: this.#dialTimeoutMs, signal: this.#abort.signal });
      this.#log.debug({ peer, ms: Math.round(performance.now() - started) }, 'connected to a member');
      this.#dials.delete(peer);
    } catch (err) {
      st.attempts++;
      const base = Math.min(this.#backoffMaxMs, this.#backoffMinMs * 2 ** (st.attempts - 1));
      st.nextAt = Date.now() + base * (0.5 + Math.random() / 2);
      this.#log.debug({ peer, attempts: st.attempts, retryInMs: Math.round(st.nextAt - Date.now()), err: (err as Error).message }, 'cannot reach a member');
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
