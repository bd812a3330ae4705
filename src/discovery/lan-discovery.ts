// LAN discovery by mDNS, asked for rather than running on a timer.
//
// @libp2p/mdns as a plain peerDiscovery module queries the LAN every 10 s, every node answers
// every query by multicast, and every node parses every answer and writes it to its peer store:
// on a LAN of N members that is N^2 answers per round for each node to handle, the largest part
// of an idle member's CPU at 10 members and more (bench/mesh.sh). The members' records already
// say where each member is; mDNS only helps when a record is stale (a member came back on
// another address). So this service keeps @libp2p/mdns for the wire format and the answers, with
// its timer stretched out, and queries when asked: `query()` is called when a dial to a member
// failed, and runs at most every `minIntervalMs` (10 s), doubling up to `maxIntervalMs` (5 min)
// while it keeps being asked, back to 10 s after a quiet spell. Answering others' queries costs
// nothing while nobody asks.
//
// A peer found is written to the peer store and dialled only if `wanted(peerId)` says so (the
// daemon: a member it is failing to reach), so an answer from every other member of a large LAN
// costs a parse each, not a peer-store write and a connection each.
//
//   lanDiscovery(init: { serviceTag, wanted?, minIntervalMs?, maxIntervalMs?, now? })
//     (components: { addressManager, logger, peerStore, connectionManager? }): LanDiscovery
//   class LanDiscovery { start(); stop(); query(): boolean  (true if a query went out);
//                        onPeer: ((peer: PeerId, addrs: Multiaddr[]) => void) | null }
import { mdns, type MulticastDNSComponents } from '@libp2p/mdns';
import type { PeerDiscovery, PeerId, PeerInfo, PeerStore, Startable } from '@libp2p/interface';
import type { Multiaddr } from '@multiformats/multiaddr';

export interface LanDiscoveryInit {
  /** The mDNS service name (p2p.ts mdnsServiceTag: per network). */
  serviceTag: string;
  /** Whether a peer found on the LAN is worth a peer-store write and a dial; default: all. */
  wanted?: (peerId: string) => boolean;
  minIntervalMs?: number;
  maxIntervalMs?: number;
  now?: () => number;
}

export interface LanDiscoveryComponents extends MulticastDNSComponents {
  peerStore: PeerStore;
}

/** setInterval's longest delay: the library's own timer, in effect never. */
const NEVER_MS = 2 ** 31 - 1;

export class LanDiscovery implements Startable {
  #inner: (PeerDiscovery & Startable) | null = null;
  #running = false;
  #lastQuery = -Infinity;
  #gap: number;
  readonly #min: number;
  readonly #max: number;
  readonly #now: () => number;
  /** A peer found and wanted (its addresses are in the peer store by then): the node dials it. */
  onPeer: ((peer: PeerId, addrs: Multiaddr[]) => void) | null = null;

  constructor(private readonly components: LanDiscoveryComponents, private readonly init: LanDiscoveryInit) {
    this.#min = init.minIntervalMs ?? 10_000;
    this.#max = Math.max(this.#min, init.maxIntervalMs ?? 300_000);
    this.#gap = this.#min;
    this.#now = init.now ?? (() => performance.now());
  }

  readonly [Symbol.toStringTag] = 'meshd/lan-discovery';

  async start(): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    await this.#open();
  }

  async stop(): Promise<void> {
    this.#running = false;
    await this.#close();
  }

  /**
   * Asks the LAN who is there (at most every minIntervalMs, stretching to maxIntervalMs while
   * asked without pause). Returns true if a query went out.
   */
  query(): boolean {
    if (!this.#running) return false;
    const now = this.#now();
    const since = now - this.#lastQuery;
    if (since < this.#gap) return false;
    // Asked again soon after the last query: the member is still missing, ask less often. A
    // quiet spell (nothing asked for twice the gap) starts over at the minimum.
    this.#gap = since > 2 * this.#gap ? this.#min : Math.min(this.#max, this.#gap * 2);
    this.#lastQuery = now;
    // The library queries when it starts: a restart is a query (and nothing else is lost: it
    // keeps no state between answers).
    void this.#close().then(() => (this.#running ? this.#open() : undefined));
    return true;
  }

  async #open(): Promise<void> {
    const inner = mdns({ serviceTag: this.init.serviceTag, interval: NEVER_MS })(this.components) as PeerDiscovery & Startable;
    inner.addEventListener('peer', this.#found);
    this.#inner = inner;
    this.#lastQuery = this.#now();
    await inner.start();
  }

  async #close(): Promise<void> {
    const inner = this.#inner;
    this.#inner = null;
    if (!inner) return;
    inner.removeEventListener('peer', this.#found);
    await inner.stop();
  }

  readonly #found = (evt: CustomEvent<PeerInfo>): void => {
    const { id, multiaddrs } = evt.detail;
    if (this.init.wanted && !this.init.wanted(id.toString())) return;
    this.components.peerStore.merge(id, { multiaddrs }).then(
      () => this.onPeer?.(id, multiaddrs),
      () => {},
    );
  };
}

export function lanDiscovery(init: LanDiscoveryInit): (components: LanDiscoveryComponents) => LanDiscovery {
  return (components) => new LanDiscovery(components, init);
}
