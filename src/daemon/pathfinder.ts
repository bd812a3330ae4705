// The path finder: for each member, the path WireGuard uses to reach it, direct or through a
// relay, and keeping it working. It decides; the path layer (discovery/paths.ts) carries.
//
// A path is evaluated by probing every direct candidate the member advertises (its interface
// addresses, its reflexive endpoint) at once, from the WireGuard socket (probe.ts). Both members
// do it (the one probed probes back at once), so their NATs open for each other. The answer that
// comes back on the best-ranked address (a LAN we share first, then public), then the fastest,
// becomes the WireGuard endpoint. No answer at all: a relay, the first member we reach directly
// that agrees to relay (relay-service.ts), and the endpoint becomes a virtual one through it.
//
// When it evaluates (a few probes each time, and only for members that need it: idle members cost
// nothing):
//   - a member appears, or advertises other candidates;
//   - a member we never had a handshake with: after 10 s, then twice as long each time, up to
//     every 10 minutes (most pairs in a large mesh never exchange a packet);
//   - traffic goes to a member and nothing comes back for 2 s (a path that died): at most every
//     3 s. This is what moves a dead direct path to a relay within 5 s;
//   - a relayed member, every 30 s (every 3 s in its first 20 s: probes to a member that has not
//     learnt of us yet are refused), and when it probes us: back to direct as soon as one works;
//   - a member on a direct path that probes us while we have no recent handshake with it, unless
//     we evaluated it in the last 30 s (two idle members would otherwise probe each other for ever:
//     each probe is a hint to the other side); a member we reach through a relay (also one our
//     endpoint roamed onto: its packets came through a relay), whenever it probes us;
//   - a relay allocation is renewed every 5 minutes while in use.
//
// Exported API:
//   interface PathPeer { hex, peerId, candidates: Endpoint[] }   candidates best first
//   interface PeerView { endpoint: Endpoint | null; rxBytes; txBytes; lastHandshakeMs }
//   interface PathFinderDeps { probe, virtualEndpoint, isVirtual, relayOf, view(hex), setEndpoint(hex, e),
//                              relays(): { hex, peerId }[], requestRelay(relayPeerId, toPeerId),
//                              rank(e), logger, now? }
//   class PathFinder { setPeers(peers); decision(hex): Endpoint | null; hint(hex); reevaluateAll(why); tick(); stop() }
//
// With no UDP at all (a router that blocks it), every member is reached over a libp2p stream
// (stream-link.ts): to the member itself when we hold a libp2p connection to it, else through a
// member we are connected to.
import { formatEndpoint, type Endpoint } from '../wg/endpoint.js';
import type { Logger } from '../util/log.js';

export interface PathPeer {
  hex: string;
  peerId: string;
  /** Direct candidates, best first. */
  candidates: Endpoint[];
}

export interface PeerView {
  endpoint: Endpoint | null;
  rxBytes: number;
  txBytes: number;
  lastHandshakeMs: number;
}

export interface PathFinderDeps {
  probe(hex: string, to: Endpoint, timeoutMs?: number): Promise<{ from: Endpoint; rttMs: number } | null>;
  virtualEndpoint(relayHex: string, peerHex: string): Endpoint | null;
  isVirtual(e: Endpoint): boolean;
  /** The WireGuard peer as the device has it now. */
  view(hex: string): PeerView | null;
  setEndpoint(hex: string, e: Endpoint): Promise<void>;
  /** Members that could relay for us: reached directly, best first. */
  relays(): { hex: string; peerId: string }[];
  requestRelay(relayPeerId: string, toPeerId: string): Promise<void>;
  /** Our UDP gets nowhere (no STUN answer from anyone asked): WireGuard goes over libp2p streams. */
  udpBlocked(): boolean;
  /** Members we have a libp2p connection to: where a stream can go. */
  streamRelays(): { hex: string; peerId: string }[];
  /** A WireGuard stream to this member (stream-link.ts), opened if there is none. */
  openStream(peerId: string): Promise<void>;
  hasStream(hex: string): boolean;
  rank(e: Endpoint): number;
  logger: Logger;
  now?: () => number;
}

interface State {
  peer: PathPeer;
  key: string; // candidates, to notice a change
  decided: Endpoint | null;
  relay: string | null; // relay's hex while relayed
  renewedAt: number;
  evaluating: boolean;
  /** Asked to evaluate while an evaluation ran: once more when it ends (with this reason). */
  again: string | null;
  lastEval: number;
  /** How long until the next "no handshake yet" try: doubles each time, to NEVER_MET_MAX_MS. */
  neverMetEvery: number;
  since: number; // when we first knew the member
  tx: number[]; // last three samples, one per tick
  rx: number[];
}

const DEAD_AFTER_TICKS = 2;
/** Probes answer in a round trip; a second is generous on any path worth taking directly. */
const PROBE_TIMEOUT_MS = 1_000;
const EVAL_MIN_MS = 3_000;
/** A probe from a member on a direct path within this long of our last evaluation is no news. */
const HINT_QUIET_MS = 30_000;
const NEVER_MET_RETRY_MS = 10_000;
const NEVER_MET_MAX_MS = 10 * 60_000;
const UPGRADE_MS = 30_000;
/** A member this recent, relayed, is tried direct every EVAL_MIN_MS. */
const NEW_MEMBER_MS = 20_000;
const RENEW_MS = 5 * 60_000;
/** A keepalive is 32 bytes: more than that sent without anything back is traffic unanswered. */
const UNANSWERED_BYTES = 96;

export class PathFinder {
  private readonly states = new Map<string, State>();
  private readonly now: () => number;
  private stopped = false;

  constructor(private readonly deps: PathFinderDeps) {
    this.now = deps.now ?? (() => performance.now());
  }

  setPeers(peers: readonly PathPeer[]): void {
    const seen = new Set<string>();
    for (const peer of peers) {
      seen.add(peer.hex);
      const key = peer.candidates.map(formatEndpoint).join(',');
      const st = this.states.get(peer.hex);
      if (!st) {
        this.states.set(peer.hex, { peer, key, decided: null, relay: null, renewedAt: 0, evaluating: false, again: null, lastEval: -Infinity, neverMetEvery: NEVER_MET_RETRY_MS, since: this.now(), tx: [], rx: [] });
        this.evaluate(peer.hex, 'new member');
      } else {
        st.peer = peer;
        if (st.key !== key) {
          st.key = key;
          st.lastEval = -Infinity;
          st.neverMetEvery = NEVER_MET_RETRY_MS;
          this.evaluate(peer.hex, 'new candidates');
        }
      }
    }
    for (const hex of [...this.states.keys()]) if (!seen.has(hex)) this.states.delete(hex);
  }

  /** The endpoint decided for a member (the reconciler keeps it), or null: not decided. */
  decision(hex: string): Endpoint | null {
    return this.states.get(hex)?.decided ?? null;
  }

  /** The member probed us: if it is not reached directly, try now (it is punching toward us). */
  hint(hex: string): void {
    const st = this.states.get(hex);
    const v = this.deps.view(hex);
    const direct = v?.endpoint != null && !this.deps.isVirtual(v.endpoint);
    if (!st || (direct && recent(v!.lastHandshakeMs))) return;
    // A member on a direct path we evaluated moments ago: its probe is most likely its answer to
    // ours (or ours to its). Evaluating again would probe it again, and two idle members (no
    // recent handshake, nothing wrong) would go on probing each other for ever. "Direct" is where
    // WireGuard sends now, not what we decided: a member whose packets came through a relay has
    // our endpoint roamed onto that relay, and its probe (it found direct again) must be heard,
    // also mid-evaluation (queued), or both ends stay relayed until the next upgrade try.
    // And only a path we found: a member we have no path to yet (its first probes refused us: it
    // did not know us yet) is evaluated as soon as it probes us.
    if (direct && st.relay === null && st.decided !== null && (st.evaluating || this.now() - st.lastEval < HINT_QUIET_MS)) return;
    this.evaluate(hex, 'probed by it');
  }

  /** Once a second: notices dead paths, retries, upgrades and renewals. */
  tick(): void {
    const now = this.now();
    for (const [hex, st] of this.states) {
      const v = this.deps.view(hex);
      if (!v) continue;
      push(st.tx, v.txBytes);
      push(st.rx, v.rxBytes);
      const relayed = v.endpoint !== null && this.deps.isVirtual(v.endpoint);
      const sent = st.tx.length > DEAD_AFTER_TICKS ? st.tx[st.tx.length - 1] - st.tx[0] : 0;
      const got = st.rx.length > DEAD_AFTER_TICKS ? st.rx[st.rx.length - 1] - st.rx[0] : 1;
      if (sent > UNANSWERED_BYTES && got === 0 && now - st.lastEval >= EVAL_MIN_MS) {
        this.evaluate(hex, 'traffic unanswered');
      } else if (v.lastHandshakeMs === 0 && now - st.since >= EVAL_MIN_MS && now - st.lastEval >= st.neverMetEvery) {
        // Most pairs in a large mesh never exchange a packet: trying them every 10 s for ever
        // would make idle work grow with the mesh. Each try waits twice as long as the last.
        st.neverMetEvery = Math.min(st.neverMetEvery * 2, NEVER_MET_MAX_MS);
        this.evaluate(hex, 'no handshake yet');
      } else if (relayed && now - st.since < NEW_MEMBER_MS && now - st.lastEval >= EVAL_MIN_MS) {
        // Probes to a member that has only just learnt of us are refused (it has no key for us
        // yet): a new member is tried again soon, not in 30 s.
        this.evaluate(hex, 'relayed: new member, trying direct again');
      } else if (relayed && now - st.lastEval >= UPGRADE_MS) {
        this.evaluate(hex, 'relayed: trying direct');
      } else if (relayed && st.relay && st.relay !== hex && now - st.renewedAt >= RENEW_MS) {
        st.renewedAt = now;
        void this.deps.requestRelay(this.peerIdOf(st.relay), st.peer.peerId).catch(() => this.evaluate(hex, 'relay renewal refused'));
      }
    }
  }

  private peerIdOf(hex: string): string {
    return this.deps.relays().find((r) => r.hex === hex)?.peerId ?? this.states.get(hex)?.peer.peerId ?? '';
  }

  private evaluate(hex: string, why: string): void {
    const st = this.states.get(hex);
    if (!st || this.stopped) return;
    if (st.evaluating) {
      st.again = why; // what it learns now (new candidates, a probe from it) must not be lost
      this.deps.logger.debug({ peer: st.peer.peerId, why }, 'path evaluation queued');
      return;
    }
    st.evaluating = true;
    st.lastEval = this.now();
    this.run(st, why).catch((err: Error) => this.deps.logger.warn({ peer: st.peer.peerId, err: err.message }, 'path evaluation failed'))
      .finally(() => {
        st.evaluating = false;
        const again = st.again;
        st.again = null;
        if (again !== null) this.evaluate(hex, again);
      });
  }

  /** Every member again (our UDP was found blocked, or working again). */
  reevaluateAll(why: string): void {
    for (const hex of this.states.keys()) this.evaluate(hex, why);
  }

  private async run(st: State, why: string): Promise<void> {
    const { peer } = st;
    const d = this.deps;
    const current = d.view(peer.hex)?.endpoint ?? null;
    if (d.udpBlocked()) return this.overStream(st, current, why);
    const targets = [...peer.candidates];
    if (current && !d.isVirtual(current) && !targets.some((c) => formatEndpoint(c) === formatEndpoint(current))) targets.push(current);
    const answers = (await Promise.all(targets.slice(0, 8).map((t) => d.probe(peer.hex, t, PROBE_TIMEOUT_MS)))).filter((a) => a !== null);
    if (this.stopped || !this.states.has(peer.hex)) return;
    d.logger.debug({ peer: peer.peerId, why, probed: targets.slice(0, 8).map(formatEndpoint), answered: answers.map((a) => formatEndpoint(a.from)) }, 'path evaluated');
    if (answers.length > 0) {
      answers.sort((a, b) => d.rank(a.from) - d.rank(b.from) || a.rttMs - b.rttMs);
      const best = answers[0].from;
      st.decided = best;
      st.relay = null;
      if (!current || formatEndpoint(current) !== formatEndpoint(best)) {
        d.logger.info({ peer: peer.peerId, endpoint: formatEndpoint(best), rttMs: Math.round(answers[0].rttMs * 10) / 10, why }, 'direct path');
        await d.setEndpoint(peer.hex, best);
      }
      return;
    }
    // No direct path: through the first member that relays for us and reaches the other end. A
    // relay we use is kept, unless traffic through it goes unanswered: then the others go first.
    const relayed = current !== null && d.isVirtual(current) && st.relay !== null;
    if (relayed && why !== 'traffic unanswered') return;
    const relays = d.relays().filter((r) => r.hex !== peer.hex);
    relays.sort((a, b) => Number(a.hex === st.relay) - Number(b.hex === st.relay));
    if (!(await this.throughFirst(st, relays, (relay) => d.requestRelay(relay.peerId, peer.peerId), why, 'relayed path'))) {
      d.logger.debug({ peer: peer.peerId, why }, 'no path answers, and no relay');
    }
  }

  /**
   * Takes the first of `relays` for which `prepare` succeeds: the member's WireGuard endpoint
   * becomes the virtual one through it. False when none would.
   */
  private async throughFirst(st: State, relays: readonly { hex: string; peerId: string }[], prepare: (relay: { hex: string; peerId: string }) => Promise<void>, why: string, what: string): Promise<boolean> {
    const { peer } = st;
    const d = this.deps;
    for (const relay of relays) {
      try {
        await prepare(relay);
      } catch (err) {
        d.logger.debug({ peer: peer.peerId, relay: relay.peerId, err: (err as Error).message }, 'relay refused');
        continue;
      }
      const v = d.virtualEndpoint(relay.hex, peer.hex);
      if (!v || this.stopped || !this.states.has(peer.hex)) return true;
      st.decided = v;
      st.relay = relay.hex;
      st.renewedAt = this.now();
      d.logger.info({ peer: peer.peerId, relay: relay.peerId, why }, what);
      await d.setEndpoint(peer.hex, v);
      return true;
    }
    return false;
  }

  /**
   * No UDP at all: WireGuard over a libp2p stream, straight to the member if we are connected to
   * it, else through a member we are connected to that relays for us.
   */
  private async overStream(st: State, current: Endpoint | null, why: string): Promise<void> {
    const { peer } = st;
    const d = this.deps;
    if (current && d.isVirtual(current) && st.relay && d.hasStream(st.relay) && why !== 'traffic unanswered') return;
    const relays = d.streamRelays();
    relays.sort((a, b) => Number(b.hex === peer.hex) - Number(a.hex === peer.hex));
    const prepare = async (relay: { hex: string; peerId: string }) => {
      await d.openStream(relay.peerId); // first: the relay reaches us by this stream
      if (relay.hex !== peer.hex) await d.requestRelay(relay.peerId, peer.peerId);
    };
    if (!(await this.throughFirst(st, relays, prepare, why, 'path over libp2p (TCP): UDP is blocked'))) {
      d.logger.debug({ peer: peer.peerId, why }, 'UDP is blocked and no member carries WireGuard over libp2p for us');
    }
  }

  stop(): void {
    this.stopped = true;
    this.states.clear();
  }
}

function push(samples: number[], v: number): void {
  samples.push(v);
  if (samples.length > DEAD_AFTER_TICKS + 1) samples.shift();
}

function recent(lastHandshakeMs: number): boolean {
  return lastHandshakeMs > 0 && Date.now() - lastHandshakeMs < 180_000;
}
