// The mesh daemon: one process that owns a node's identity, its WireGuard engine (in-process), its
// libp2p node and its view of the network's ledger, and keeps the engine's peers equal to the
// network's members. The command line talks to it over the control socket (STATE_DIR/meshd.sock).
// What it uses of the machine (the TUN, `ip` and friends, the UAPI directory, the ICMP prober, the
// libp2p node) comes in as components (components.ts), the real ones unless a test passes others;
// which peers it wants is desired-peers.ts, and how the engine gets there reconcile.ts.
import '../util/polyfill.js';
import { hostname } from 'node:os';
import { join as joinPath } from 'node:path';
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import type { PrivateKey } from '@libp2p/interface';
import type { Libp2p } from 'libp2p';
import type { Logger } from '../util/log.js';
import { Engine, type Datapath } from '../wg/engine.js';
import { UapiServer } from '../wg/uapi-server.js';
import { ConfigError, type Configurable, type DeviceSet } from '../wg/config.js';
import { fromBase64, generatePrivateKey, staticKey, toBase64 } from '../wg/crypto.js';
import { addrFromString, formatEndpoint, parseEndpoint, type Endpoint } from '../wg/endpoint.js';
import type { Timings } from '../wg/constants.js';
import { Store } from '../store/store.js';
import { ControlServer } from '../control/server.js';
import { StartupSteps } from './startup.js';
import { checkPorts } from './ports.js';
import { checkedHandlers, type MethodHandlers } from '../control/methods.js';
import { isLinkLocal } from '../routes/kernel.js';
import { checkOverlap } from '../routes/overlap.js';
import { LEAK_CHECK_MS, LeakWatch } from './leaks.js';
import type { RouteWatch, ExitRules, HostKernel } from './host-kernel.js';
import { defaultComponents, type DaemonComponents } from './components.js';
import { LEDGER_VERSION, Ledger } from '../discovery/ledger.js';
import { Signer, foundNetwork, record, type Draft } from '../discovery/signer.js';
import { encodeInvite, parseInvite } from '../discovery/invite.js';
import { MAX_ROUTES, NAME_RE, meshRange, type NetworkInfo } from '../discovery/records.js';
import type { SignedEnvelope } from '../discovery/signed.js';
import { eventId } from '../discovery/signed.js';
import { isLoopbackAddr, peerOf, type MeshNode } from '../discovery/p2p.js';
import { LedgerSync } from '../discovery/sync.js';
import { NOTABLE_SKEW_MS, describeSkew, join as joinNetwork, serveJoin, type JoinServer } from '../discovery/join.js';
import { reconcile, type DesiredPeer } from './reconcile.js';
import { desiredPeers, recentHandshake } from './desired-peers.js';
import { endpointRank } from '../routes/endpoints.js';
import { DaemonError } from './errors.js';
import { NO_ANNOUNCE, advertisedEndpoints, advertisedMultiaddrs, resolveAnnounce, type Announce, type HostPort } from '../discovery/addresses.js';
import { Paths, type PathStats } from '../discovery/paths.js';
import { discoverReflexive, stunTargets, type ReflexiveReport } from '../discovery/reflexive.js';
import { requestRelay, serveRelay } from '../discovery/relay-service.js';
import { openStreamLink, serveStreamLinks, type StreamLinkHost } from '../discovery/stream-link.js';
import { idNumber } from '../discovery/relay.js';
import { PathFinder } from './pathfinder.js';
import { udpBindFactory } from '../wg/bind.js';
import { MonotonicStamps } from '../wg/tai64n.js';
import type { TunnelProber } from './prober.js';
import { ProbeSchedule } from './probe-schedule.js';
import { SubnetRoutes, type AdvertisedRoute, type RouteRow } from './subnet-routes.js';
import { isDefaultRoute, overlaps } from '../routes/subnets.js';
import { EXIT_TABLE } from '../routes/exit-node.js';
import { formatPrefix, parsePrefix } from '../wg/prefix.js';
import { NameServer, domainError, meshSources, networkDomain } from './names.js';
import { clientConfig, hostEndpoint } from './clients.js';
import type { Device } from '../discovery/ledger.js';
import type { MetricsSources } from './metrics.js';

/** What the host keeps of a client it added (settings 'clients', by public key; the store is 0700). */
interface StoredClient {
  /** null: added with --public-key, the user has it. */
  privateKey: string | null;
  exitNode: boolean;
}

export interface ClientRow {
  name: string;
  ip: string;
  host: string;
  hostedHere: boolean;
  publicKey: string;
  /** Epoch ms of the latest handshake (only where it is hosted). */
  lastHandshake: number | null;
}

/** How often latency is measured, for the members probe-schedule.ts picks: an ICMP echo through the tunnel. */
const PROBE_INTERVAL_MS = 5_000;
/** How long a joiner tries to connect to a member of its invite, then waits for the answer. */
const JOIN_CONNECT_MS = 20_000;
const JOIN_ANSWER_MS = 30_000;
/** How long the first `meshd status` after a quiet spell waits for fresh latency figures. */
const FRESH_WAIT_MS = 500;

export interface DaemonOptions {
  stateDir: string;
  ifname: string;
  listenPort: number;
  p2pPort: number;
  name?: string;
  datapath: Datapath;
  timings?: Timings;
  logger: Logger;
  /** How long an admitting member waits for a competing admission before answering. */
  settleMs?: number;
  /**
   * Seconds between keepalives that hold NAT mappings open (default 25, below Linux's 30 s UDP
   * conntrack timeout; 0: never). Sent only while this node may be behind a NAT: once members on
   * public addresses see our socket at our own address, we need none (a peer behind NAT keeps its
   * own mapping open with its keepalives).
   */
  persistentKeepalive?: number;
  /** Addresses where this node is reachable that it cannot see itself (floating IPs, forwards). */
  announce?: Announce;
  /** STUN servers to learn our reflexive endpoint from, besides members on public addresses. */
  stunServers?: HostPort[];
  /** Relay other members' WireGuard datagrams when they have no direct path (default true). */
  relay?: boolean;
  /** The WireGuard interface was deleted under the daemon; the engine is closed by then. */
  onInterfaceGone?: (ifname: string) => void;
}

export interface PeerStatus {
  name: string;
  meshIp: string;
  publicKey: string | null;
  peerId: string;
  /** Where WireGuard sends: the member's own endpoint, or the relay's when relayed. */
  endpoint: string | null;
  /** null: no handshake within the last 180 s. */
  path: 'direct' | 'relay' | null;
  /** The relaying member's name when relayed. */
  relay: string | null;
  lastHandshake: number | null; // epoch ms
  rxBytes: number;
  txBytes: number;
  latencyMs: number | null;
  online: boolean;
  admin: boolean;
  /** Traffic to this member's mesh address leaves outside the tunnel: why (e.g. "routes via eth0"). */
  leak: string | null;
}

export interface PingResult {
  name: string;
  meshIp: string;
  /** null: no answer within the timeout. */
  rttMs: number | null;
  endpoint: string | null;
  path: 'direct' | 'relay' | null;
  relay: string | null;
}

export interface NetcheckReport {
  /** UDP from the WireGuard socket gets out and back; null: nobody to ask (no member on a public address, no --stun). */
  udp: boolean | null;
  asked: { to: string; saw: string | null }[];
  reflexive: string[];
  behindNat: boolean | null;
  variesByDestination: boolean | null;
  relays: { name: string; endpoint: string | null; latencyMs: number | null }[];
  /** Whether this node relays for others. */
  relaying: boolean;
  counters: PathStats;
}

export interface Status {
  self: {
    name: string;
    meshIp: string | null;
    publicKey: string;
    peerId: string;
    network: { id: string; name: string; cidr: string } | null;
    admin: boolean;
    interface: string;
    listenPort: number;
    /** Our WireGuard socket as members on public addresses see it, when that differs (NAT). */
    reflexive: string[];
    /** The member all our traffic leaves through (`meshd exit-node use`), or null. */
    exitNode: string | null;
    /** The DNS domain of the mesh names (names.ts), or null outside a network. */
    domain?: string | null;
  };
  peers: PeerStatus[];
}

/** The daemon owns the peer list: `wg set` against its interface is refused, `wg show` works. */
class ReadOnly implements Configurable {
  constructor(private readonly engine: Engine) {}
  snapshot() {
    return this.engine.snapshot();
  }
  apply(_: DeviceSet): void {
    throw new ConfigError(1, 'meshd owns this interface; change the mesh with meshd commands');
  }
}

function sanitizeName(text: string): string {
  const n = text.toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^-+/, '').slice(0, 63) || 'node';
  return NAME_RE.test(n) ? n : 'node';
}

export class Daemon {
  private node: Libp2p | null = null;
  private sync: LedgerSync | null = null;
  private ledger: Ledger | null = null;
  /** This node's chain of ledger events: everything it signs goes through it, one at a time. */
  private signer: Signer | null = null;
  private network: NetworkInfo | null = null;
  private meshIp: string | null = null;
  private seq = 0;
  /** ICMP echo through the tunnel, for status's latency; null without a raw socket. */
  private prober: TunnelProber | null = null;
  /** While the daemon starts: the step it is in (startup.ts); null once up. */
  private startup: StartupSteps | null = null;
  private peerIdOf: { identity: PrivateKey; id: string } | null = null;
  private readonly probes = new ProbeSchedule();
  private timers: NodeJS.Timeout[] = [];
  private stopping = false;
  private leaving = false;
  /** What members (and STUN servers) last saw of our WireGuard socket. */
  private reflexive: ReflexiveReport | null = null;
  /** Direct or relayed, per member (null outside a network). */
  private finder: PathFinder | null = null;
  private relayService: { close(): Promise<void> } | null = null;
  private streamService: { close(): Promise<void> } | null = null;
  /** Nobody we asked answered STUN: our UDP gets nowhere, WireGuard goes over libp2p streams. */
  private udpBlocked = false;
  /** Members whose mesh address the kernel routes elsewhere (null outside a network). */
  private leaks: LeakWatch | null = null;
  private routeMonitor: RouteWatch | null = null;
  private joinServer: JoinServer | null = null;
  private checkedMeshIps = '';
  /** Subnet routes: who holds which prefix, kernel routes, forwarding (null outside a network). */
  private subnets: SubnetRoutes | null = null;
  /** DNS for `<member>.<domain>` on our mesh address (null outside a network). */
  private names: NameServer | null = null;
  /** Prefixes this node offers to route (`meshd routes advertise`), kept in the store. */
  private advertisedRoutes: AdvertisedRoute[] = [];
  /** The member our traffic leaves through (`meshd exit-node use`), kept in the store. */
  private exitNode: { peerId: string; allowLan: boolean } | null = null;
  private exitRouting: ExitRules | null = null;
  private exitUnusable = false;
  /** Public keys of the clients hosted here at the last ledger change (their private keys go when they do). */
  private hostedKeys = new Set<string>();
  /** Changes of the stored clients, one at a time (read, change, write). */
  private clientsQueue: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly opts: DaemonOptions,
    private readonly store: Store,
    private identity: PrivateKey,
    readonly engine: Engine,
    private readonly paths: Paths,
    private readonly uapi: UapiServer,
    readonly name: string,
    private readonly components: DaemonComponents,
    private control: ControlServer | null = null,
  ) {}

  /** Addresses, routes and the rest the daemon asks of the host (host-kernel.ts). */
  private get kernel(): HostKernel {
    return this.components.kernel;
  }

  get log(): Logger {
    return this.opts.logger;
  }

  /** Our peer id (derived once per identity: it is asked for per member in loops). */
  get peerId(): string {
    if (this.peerIdOf?.identity !== this.identity) this.peerIdOf = { identity: this.identity, id: peerIdFromPrivateKey(this.identity).toString() };
    return this.peerIdOf.id;
  }

  /** Starts the daemon; `components` replace the real TUN, kernel, UAPI directory... (components.ts). */
  static async start(opts: DaemonOptions, given: Partial<DaemonComponents> = {}): Promise<Daemon> {
    const components: DaemonComponents = { ...defaultComponents(), ...given };
    const steps = new StartupSteps(opts.logger);
    steps.at('checking the ports');
    await checkPorts(opts); // a taken port: one line naming its option, before anything is set up
    steps.at('opening the store');
    const store = await Store.open(opts.stateDir, { logger: opts.logger.child({ component: 'store' }) });
    try {
      let raw = await store.getIdentity();
      if (!raw) {
        raw = privateKeyToProtobuf(await generateKeyPair('Ed25519'));
        await store.setIdentity(raw);
      }
      const identity = privateKeyFromProtobuf(raw);
      let wgKey = await store.getWgKey();
      if (!wgKey) {
        wgKey = generatePrivateKey();
        await store.setWgKey(wgKey);
      }
      // The path layer sits beneath the device on its UDP socket (STUN now; relays next).
      let device: Engine['device'] | null = null;
      const paths = new Paths({ logger: opts.logger.child({ component: 'paths' }), relay: opts.relay ?? true, endpointOf: (hex) => device?.peers.get(hex)?.endpoint ?? null });
      const bind = paths.bindFactory(udpBindFactory(opts.datapath === 'native' ? 'native' : 'dgram'));
      // Initiation timestamps only go up, across clock jumps and restarts (tai64n.ts): the floor
      // a restart begins above lives in the store.
      const floor = (await store.getSettings<{ tai64nFloor: string }>()).tai64nFloor;
      const stamps = new MonotonicStamps({
        floor: typeof floor === 'string' ? Buffer.from(floor, 'base64') : null,
        reserve: (f) => void store.setSettings({ tai64nFloor: f.toString('base64') }).catch((err: Error) => opts.logger.error({ err: err.message }, 'cannot store the handshake timestamp floor')),
      });
      steps.at('opening the WireGuard interface');
      const engine = await Engine.open({ ifname: opts.ifname, datapath: opts.datapath, timings: opts.timings, listenPort: opts.listenPort, logger: opts.logger.child({ component: 'wg' }), onInterfaceGone: opts.onInterfaceGone, bind, stamps, openTun: components.openTun });
      device = engine.device;
      paths.setIdentity(Buffer.from(wgKey));
      await engine.apply({ privateKey: Buffer.from(wgKey), replacePeers: false, peers: [] });
      steps.at('listening on the UAPI socket');
      const uapi = await UapiServer.listen(opts.ifname, new ReadOnly(engine), { logger: opts.logger.child({ component: 'uapi' }), dir: components.uapiDir });
      const name = sanitizeName(opts.name ?? hostname());
      const daemon = new Daemon(opts, store, identity, engine, paths, uapi, name, components);
      daemon.startup = steps;
      const routes = (await store.getSettings<{ advertisedRoutes: AdvertisedRoute[] }>()).advertisedRoutes;
      daemon.advertisedRoutes = Array.isArray(routes) ? routes.filter((r) => typeof r?.prefix === 'string').map((r) => ({ prefix: r.prefix, snat: r.snat !== false })) : [];
      const exit = (await store.getSettings<{ exitNode: { peerId: string; allowLan: boolean } | null }>()).exitNode;
      daemon.exitNode = exit && typeof exit.peerId === 'string' ? { peerId: exit.peerId, allowLan: exit.allowLan !== false } : null;
      daemon.exitRouting = components.kernel.exitRouting({ ifname: opts.ifname, logger: opts.logger.child({ component: 'exit-node' }) });
      try {
        daemon.prober = components.prober();
      } catch (err) {
        opts.logger.warn({ err: (err as Error).message }, 'no raw ICMP socket: status shows no latency');
      }
      const network = await store.getNetwork();
      if (network) await daemon.resume(network);
      steps.at('listening on the control socket');
      daemon.control = await ControlServer.listen(joinPath(opts.stateDir, 'meshd.sock'), checkedHandlers(daemon.handlers()), opts.logger.child({ component: 'control' }));
      daemon.startup = null;
      opts.logger.info({ peerId: daemon.peerId, node: name, network: network?.name ?? null, meshIp: daemon.meshIp, ms: steps.done() }, 'meshd daemon up');
      return daemon;
    } catch (err) {
      steps.done();
      await store.close();
      throw err;
    }
  }

  /** The control methods (methods.ts checks their params first). */
  handlers(): MethodHandlers {
    return {
      status: async () => {
        await this.freshLatency();
        return this.status();
      },
      init: async (p) => this.init(p),
      invite: async (p) => this.invite(p),
      invites: async () => this.invites(),
      cancelInvite: async (p) => this.cancelInvite(p),
      join: async (p) => this.join(p),
      leave: async () => this.leave(),
      kick: async (p) => this.kick(p),
      promote: async (p) => this.promote(p),
      ping: async (p) => this.ping(p),
      netcheck: async () => this.netcheck(),
      routes: async () => this.routes(),
      routesAdvertise: async (p) => this.routesAdvertise(p),
      routesWithdraw: async (p) => this.routesWithdraw(p),
      routesApprove: async (p) => this.routesApprove(p, true),
      routesUnapprove: async (p) => this.routesApprove(p, false),
      exitNodeUse: async (p) => this.exitNodeUse(p),
      exitNodeOff: async () => this.exitNodeOff(),
      clientAdd: async (p) => this.clientAdd(p),
      clients: async () => this.clients(),
      clientShow: async (p) => this.clientShow(p),
      clientRemove: async (p) => this.clientRemove(p),
    };
  }

  // ------------------------------------------------------------------ commands

  async init(p: { network?: string; cidr?: string; allowOverlap?: boolean; domain?: string }): Promise<{ meshIp: string; network: string }> {
    if (this.network) throw new DaemonError('EEXIST', `already a member of network ${this.network.name}; run meshd leave first`);
    const cidr = p.cidr ?? '10.0.0.0/24';
    if (!meshRange(cidr)) throw new DaemonError('EINVAL', `invalid network range ${cidr}: give an IPv4 CIDR such as 10.0.0.0/24`);
    if (p.allowOverlap !== true) checkOverlap(cidr, await this.kernel.localNetworks(this.opts.ifname), 'init');
    const domain = p.domain === undefined ? undefined : String(p.domain).toLowerCase().replace(/\.$/, '');
    const why = domain === undefined ? null : domainError(domain);
    if (why) throw new DaemonError('EINVAL', `invalid domain ${String(p.domain)}: ${why}`);
    const { network, events } = await foundNetwork(this.identity, { name: sanitizeName(p.network ?? 'mesh'), memberName: this.name, cidr, ...(domain ? { domain } : {}) }, Date.now());
    const ledger = new Ledger(network);
    ledger.addAll(events);
    try {
      await this.store.setMembership(network, ledger.events().map((e) => ({ id: eventId(e), value: e })), { ledgerFormat: LEDGER_VERSION });
      await this.startNetwork(network, ledger, null);
    } catch (err) {
      await this.undoMembership();
      throw err;
    }
    return { meshIp: this.meshIp!, network: network.name };
  }

  async invite(p: { ttlMs?: number; uses?: number }): Promise<{ token: string; id: string; expires: number; uses: number }> {
    const { network, ledger } = this.requireNetwork();
    if (!ledger.isAdmin(this.peerId)) throw new DaemonError('EPERM', 'only an administrator can create invites');
    const bootstrap = this.inviteBootstrap((await this.advertised()).multiaddrs);
    if (bootstrap.length === 0) {
      throw new DaemonError('EADDRNOTAVAIL', 'this node has no address another machine could reach (only loopback): give meshd daemon --announce HOST');
    }
    const uses = p.uses ?? 1;
    if (!Number.isSafeInteger(uses) || uses < 1 || uses > 65535) throw new DaemonError('EINVAL', `uses must be 1..65535, not ${p.uses}`);
    if (p.ttlMs !== undefined && (!Number.isSafeInteger(p.ttlMs) || p.ttlMs <= 0)) throw new DaemonError('EINVAL', `the ttl must be a positive number of ms, not ${p.ttlMs}`);
    // The invite event is persisted and in our ledger before the token exists, and pushed to the
    // members we are connected to: every administrator sees it (meshd invites) and can cancel it;
    // the secret goes into the token only. The token does not wait for the pushes: a joiner
    // carries the invite event to whichever member it asks (join.ts), and a member a push misses
    // gets it by anti-entropy. (Waiting, `meshd invite` took 30 s and more at a founder whose
    // pushes were timing out in a 50-daemon join storm.)
    const { envelope, secret } = await this.signer!.issueInvite({ ttlMs: p.ttlMs, uses }, Date.now());
    if (this.sync) this.inBackground('pushing the invite', this.sync.publish(envelope));
    const inv = encodeInvite({ network, envelope, secret, bootstrap });
    return { token: inv.token, id: inv.id, expires: inv.expires, uses: inv.uses };
  }

  /** Open invites, as every administrator sees them (`meshd invites`). */
  async invites(): Promise<{ invites: Array<{ id: string; issuer: string; expires: number; uses: number; used: number; issued: number }> }> {
    const { ledger } = this.requireNetwork();
    if (!ledger.isAdmin(this.peerId)) throw new DaemonError('EPERM', 'only an administrator can list invites');
    const nameOf = (peerId: string) => ledger.member(peerId)?.name ?? peerId;
    return {
      invites: ledger.invites(Date.now()).map((i) => ({ id: i.id, issuer: nameOf(i.issuer), expires: i.expires, uses: i.uses, used: i.used, issued: i.at })),
    };
  }

  /** `meshd invite --cancel ID`: no admission with it counts unless made before the cancel was seen. */
  async cancelInvite(p: { id: string }): Promise<{ cancelled: string }> {
    const { ledger } = this.requireNetwork();
    if (!ledger.isAdmin(this.peerId)) throw new DaemonError('EPERM', 'only an administrator can cancel invites');
    const id = String(p.id ?? '').toLowerCase();
    if (!/^[0-9a-f]{6,64}$/.test(id)) throw new DaemonError('EINVAL', `an invite id is 6 to 64 hex characters (see meshd invites), not ${p.id}`);
    const info = ledger.inviteInfo(id, Date.now());
    if (!info) throw new DaemonError('ENOENT', `no invite ${id} (or the prefix names several): see meshd invites`);
    if (!info.open && info.reason !== 'expired' && info.reason !== 'used up') throw new DaemonError('EINVAL', `invite ${info.id.slice(0, 12)} is already ${info.reason}`);
    await this.signAndPublish({ type: 'cancel', invite: info.id });
    return { cancelled: info.id };
  }

  // ------------------------------------------------------------------ subnet routes

  /** Every prefix members advertise: who, approved or not, in use here or not (`meshd routes`). */
  async routes(): Promise<{ routes: RouteRow[]; advertisedHere: AdvertisedRoute[] }> {
    const { ledger } = this.requireNetwork();
    return { routes: this.subnets?.rows(ledger.members()) ?? [], advertisedHere: this.advertisedRoutes };
  }

  /** A prefix as the ledger writes it, or a DaemonError saying what is wrong with it. */
  private routePrefix(text: unknown, cidr: string): string {
    let prefix: string;
    try {
      if (typeof text !== 'string' || !text.includes('/')) throw new Error();
      prefix = formatPrefix(parsePrefix(text));
    } catch {
      throw new DaemonError('EINVAL', `${String(text)} is not a prefix: give one like 192.168.1.0/24 (or 0.0.0.0/0 for an exit node)`);
    }
    if (prefix !== text) throw new DaemonError('EINVAL', `${text} has host bits set: did you mean ${prefix}?`);
    if (!isDefaultRoute(prefix) && overlaps(prefix, cidr)) {
      throw new DaemonError('EINVAL', `${prefix} overlaps the mesh range ${cidr}: members' own addresses cannot be routed elsewhere`);
    }
    return prefix;
  }

  private routeList(p: { prefixes?: unknown }, cidr: string): string[] {
    const list = Array.isArray(p.prefixes) ? p.prefixes : [];
    if (list.length === 0) throw new DaemonError('EINVAL', 'give at least one prefix');
    return [...new Set(list.map((t) => this.routePrefix(t, cidr)))];
  }

  /** `meshd routes advertise`: offers to route prefixes; used once an administrator approves them. */
  async routesAdvertise(p: { prefixes: string[]; snat?: boolean }): Promise<{ advertised: string[]; approved: string[]; pending: string[] }> {
    const { network, ledger } = this.requireNetwork();
    const prefixes = this.routeList(p, network.cidr);
    const next = [...this.advertisedRoutes.filter((r) => !prefixes.includes(r.prefix)), ...prefixes.map((prefix) => ({ prefix, snat: p.snat !== false }))];
    if (next.length > MAX_ROUTES) throw new DaemonError('EINVAL', `a member advertises at most ${MAX_ROUTES} prefixes`);
    await this.setAdvertisedRoutes(next);
    const approved = new Set(ledger.member(this.peerId)?.routes ?? []);
    return { advertised: prefixes, approved: prefixes.filter((x) => approved.has(x)), pending: prefixes.filter((x) => !approved.has(x)) };
  }

  /** `meshd routes withdraw`: no longer offers them (an approval stays, for a later advertise). */
  async routesWithdraw(p: { prefixes: string[] }): Promise<{ withdrawn: string[] }> {
    const { network } = this.requireNetwork();
    const prefixes = this.routeList(p, network.cidr);
    const missing = prefixes.filter((x) => !this.advertisedRoutes.some((r) => r.prefix === x));
    if (missing.length) throw new DaemonError('ENOENT', `this node does not advertise ${missing.join(', ')}`);
    await this.setAdvertisedRoutes(this.advertisedRoutes.filter((r) => !prefixes.includes(r.prefix)));
    return { withdrawn: prefixes };
  }

  /** Stored first (a full disk fails the command and changes nothing), then in our record. */
  private async setAdvertisedRoutes(next: AdvertisedRoute[]): Promise<void> {
    await this.store.setSettings({ advertisedRoutes: next });
    this.advertisedRoutes = next;
    await this.publishRecord();
    await this.onLedgerChange();
  }

  /** `meshd routes approve|unapprove MEMBER PREFIX...` (administrators): a routes event. */
  async routesApprove(p: { target: string; prefixes: string[] }, approve: boolean): Promise<{ member: string; approved: string[] }> {
    const { network, ledger } = this.requireNetwork();
    if (!ledger.isAdmin(this.peerId)) throw new DaemonError('EPERM', 'only an administrator can approve routes');
    const target = this.findMember(String(p.target ?? ''));
    const prefixes = this.routeList(p, network.cidr);
    const have = ledger.member(target.peerId)!.routes;
    const next = approve ? [...new Set([...have, ...prefixes])] : have.filter((x) => !prefixes.includes(x));
    if (next.length > MAX_ROUTES) throw new DaemonError('EINVAL', `a member is approved for at most ${MAX_ROUTES} prefixes`);
    if (!approve) {
      const missing = prefixes.filter((x) => !have.includes(x));
      if (missing.length) throw new DaemonError('ENOENT', `${target.name} is not approved for ${missing.join(', ')}`);
    }
    if (next.length !== have.length || next.some((x, i) => x !== have[i])) {
      await this.signAndPublish({ type: 'routes', member: target.peerId, approved: next });
    }
    return { member: target.name, approved: next };
  }

  // ------------------------------------------------------------------ plain WireGuard clients

  private async storedClients(): Promise<Record<string, StoredClient>> {
    const c = (await this.store.getSettings<{ clients: Record<string, StoredClient> }>()).clients;
    return c && typeof c === 'object' ? { ...c } : {};
  }

  /** Reads the stored clients, lets `change` edit them (false: nothing to write), writes them; one at a time. */
  private updateClients(change: (clients: Record<string, StoredClient>) => boolean | void): Promise<void> {
    const run = async (): Promise<void> => {
      const clients = await this.storedClients();
      if (change(clients) === false) return;
      await this.store.setSettings({ clients });
    };
    const p = this.clientsQueue.then(run, run);
    this.clientsQueue = p.catch(() => {});
    return p;
  }

  /** `meshd client add NAME`: a device hosted here, admitted by a device event (administrators). */
  async clientAdd(p: { name: string; publicKey?: string; exitNode?: boolean }): Promise<{ name: string; ip: string; config: string }> {
    const { ledger } = this.requireNetwork();
    if (!ledger.isAdmin(this.peerId)) throw new DaemonError('EPERM', 'only an administrator can add clients');
    const name = String(p.name ?? '');
    if (!NAME_RE.test(name)) throw new DaemonError('EINVAL', `${name} is not a valid name: 1-63 lower-case letters, digits or '-', not starting with '-' (like a hostname)`);
    if (ledger.freeName(name) !== name) throw new DaemonError('EEXIST', `the name ${name} is taken by a member or a client`);
    let privateKey: string | null = null;
    let publicKey: string;
    if (p.publicKey !== undefined) {
      try {
        publicKey = toBase64(fromBase64(String(p.publicKey)));
      } catch {
        throw new DaemonError('EINVAL', `${String(p.publicKey)} is not a WireGuard public key (44 characters of base64, as wg pubkey prints)`);
      }
    } else {
      const key = generatePrivateKey();
      privateKey = toBase64(key);
      publicKey = toBase64(staticKey(key).publicKey);
    }
    const inUse = ledger.members().find((m) => m.record?.wgPublicKey === publicKey)?.name ?? ledger.devices().find((d) => d.wgPublicKey === publicKey)?.name;
    if (inUse !== undefined) throw new DaemonError('EEXIST', `that public key is already ${inUse}'s`);
    const exitNode = p.exitNode === true;
    if (exitNode && !this.isExitNode(this.peerId)) {
      throw new DaemonError('EINVAL', `${this.name} is not an exit node: advertise 0.0.0.0/0 here (meshd routes advertise 0.0.0.0/0) and have an administrator approve it (meshd routes approve ${this.name} 0.0.0.0/0), or leave out --exit-node`);
    }
    if (ledger.nextAddress() === null) throw new DaemonError('ENOSPC', 'the mesh range is full: no address for another client');
    this.clientEndpoint(); // fails before anything changes when a device could not reach us
    // The private key is on disk before the device counts: `client show` can always print it.
    await this.updateClients((c) => {
      c[publicKey] = { privateKey, exitNode };
    });
    let env: SignedEnvelope;
    try {
      env = await this.signer!.sign({ type: 'device', member: this.peerId, name, wgPublicKey: publicKey }, Date.now());
      const why = ledger.reasonOf(eventId(env));
      if (why !== null) throw new DaemonError('EINVAL', `the ledger does not take this client: ${why}`);
    } catch (err) {
      await this.updateClients((c) => {
        delete c[publicKey];
      }).catch(() => {});
      throw err;
    }
    await this.sync?.publish(env);
    const device = ledger.device(eventId(env))!;
    return { name: device.name, ip: device.ip, config: this.clientConfigOf(device, { privateKey, exitNode }) };
  }

  /** The stored private keys of clients that are gone (removed anywhere, or with their host). */
  private async forgetClientKeys(keys: readonly string[]): Promise<void> {
    await this.updateClients((c) => {
      if (!keys.some((k) => k in c)) return false;
      for (const k of keys) delete c[k];
      return true;
    });
  }

  /** Where a device dials this node: its record's endpoints (reflexive ones among them). */
  private clientEndpoint(): string {
    const endpoint = hostEndpoint(this.ledger?.member(this.peerId)?.record?.endpoints ?? []);
    if (endpoint === null) throw new DaemonError('EADDRNOTAVAIL', 'this node advertises no WireGuard endpoint a device could dial: give meshd daemon --announce HOST');
    return endpoint;
  }

  private clientConfigOf(device: Device, stored: StoredClient): string {
    const { network, ledger } = this.requireNetwork();
    const inUse = (this.subnets?.rows(ledger.members()) ?? []).filter((r) => r.approved && r.inUse && !r.exitNode).map((r) => r.prefix);
    const allowedIps = [...new Set([network.cidr, ...inUse.filter((x) => !x.includes(':'))])];
    if (stored.exitNode && this.isExitNode(this.peerId)) allowedIps.push('0.0.0.0/0');
    return clientConfig({
      address: device.ip, privateKey: stored.privateKey, dns: this.meshIp ?? ledger.addressOf(this.peerId)!,
      hostKey: toBase64(this.engine.device.publicKey!), endpoint: this.clientEndpoint(), allowedIps,
    });
  }

  private findClient(name: string): Device {
    const device = this.ledger!.devices().find((d) => d.name === name || d.ip === name);
    if (!device) throw new DaemonError('ENOENT', `no client named or addressed ${name} (see meshd client list)`);
    return device;
  }

  /** `meshd client list`: every client in the network, and which member hosts it. */
  async clients(): Promise<{ clients: ClientRow[] }> {
    const { ledger } = this.requireNetwork();
    const handshakes = new Map(this.engine.snapshot().peers.map((p) => [p.publicKey.toString('base64'), p.lastHandshakeMs]));
    return {
      clients: ledger.devices().map((d) => ({
        name: d.name, ip: d.ip, host: ledger.member(d.host)?.name ?? d.host, hostedHere: d.host === this.peerId, publicKey: d.wgPublicKey,
        lastHandshake: d.host === this.peerId ? (handshakes.get(d.wgPublicKey) || null) : null,
      })),
    };
  }

  /** `meshd client show NAME`: its config again, on its host (with a placeholder for a key it never had). */
  async clientShow(p: { name: string }): Promise<{ name: string; ip: string; config: string }> {
    const { ledger } = this.requireNetwork();
    const device = this.findClient(String(p.name ?? ''));
    if (device.host !== this.peerId) {
      throw new DaemonError('EINVAL', `${device.name} is hosted by ${ledger.member(device.host)?.name ?? device.host}: run meshd client show there`);
    }
    const stored = (await this.storedClients())[device.wgPublicKey] ?? { privateKey: null, exitNode: false };
    return { name: device.name, ip: device.ip, config: this.clientConfigOf(device, stored) };
  }

  /** `meshd client remove NAME` (administrators): an undevice event; every member drops it. */
  async clientRemove(p: { name: string }): Promise<{ removed: string; ip: string }> {
    const { ledger } = this.requireNetwork();
    if (!ledger.isAdmin(this.peerId)) throw new DaemonError('EPERM', 'only an administrator can remove clients');
    const device = this.findClient(String(p.name ?? ''));
    await this.signAndPublish({ type: 'undevice', device: device.id });
    await this.forgetClientKeys([device.wgPublicKey]).catch((err: Error) => this.log.warn({ err: err.message }, 'cannot forget a removed client\'s key'));
    return { removed: device.name, ip: device.ip };
  }

  // ------------------------------------------------------------------ exit nodes

  /** Whether a member may carry our traffic: it advertises 0.0.0.0/0 and is approved for it. */
  private isExitNode(peerId: string): boolean {
    const m = this.ledger?.member(peerId);
    return !!m && m.routes.includes('0.0.0.0/0') && (m.record?.routes ?? []).includes('0.0.0.0/0');
  }

  /** `meshd exit-node use MEMBER`: all this node's traffic leaves through that member. */
  async exitNodeUse(p: { target: string; allowLan?: boolean }): Promise<{ exitNode: string; allowLan: boolean }> {
    this.requireNetwork();
    const target = this.findMember(String(p.target ?? ''));
    if (target.peerId === this.peerId) throw new DaemonError('EINVAL', `${target.name} is this node`);
    if (!this.isExitNode(target.peerId)) {
      throw new DaemonError('EINVAL', `${target.name} is not an exit node: it must advertise 0.0.0.0/0 (meshd routes advertise 0.0.0.0/0 on it) and an administrator approve it (meshd routes approve ${target.name} 0.0.0.0/0)`);
    }
    const next = { peerId: target.peerId, allowLan: p.allowLan !== false };
    await this.store.setSettings({ exitNode: next });
    this.exitNode = next;
    await this.onLedgerChange();
    return { exitNode: target.name, allowLan: next.allowLan };
  }

  /** `meshd exit-node off`: the routes as they were before `use`. */
  async exitNodeOff(): Promise<{ exitNode: null; was: string | null }> {
    const was = this.exitNode ? (this.ledger?.member(this.exitNode.peerId)?.name ?? this.exitNode.peerId) : null;
    await this.store.setSettings({ exitNode: null });
    this.exitNode = null;
    await this.stopExit();
    if (this.network) await this.onLedgerChange();
    return { exitNode: null, was };
  }

  private async stopExit(): Promise<void> {
    await this.exitRouting?.off();
    if (this.engine.device.fwmark === EXIT_TABLE) await this.engine.apply({ fwmark: 0, replacePeers: false, peers: [] });
  }

  /** Where members are on the underlay: meshd's own connections to them bypass the exit node. */
  private memberAddresses(): string[] {
    const out = new Set<string>();
    const add = (ip: string) => {
      if (ip && !ip.startsWith('127.') && ip !== '::1' && !(this.network && !ip.includes(':') && overlaps(`${ip}/32`, this.network.cidr))) out.add(ip);
    };
    for (const m of this.ledger?.members() ?? []) {
      if (m.peerId === this.peerId || !m.record) continue;
      for (const e of m.record.endpoints) {
        try {
          const ep = parseEndpoint(e);
          add(formatEndpoint(ep).replace(/:\d+$/, '').replace(/^\[|\]$/g, ''));
        } catch { /* skip */ }
      }
      for (const a of m.record.multiaddrs) {
        const hit = /^\/(ip4|ip6)\/([^/]+)/.exec(a);
        if (hit) add(hit[2]);
      }
    }
    for (const p of this.engine.snapshot().peers) {
      if (p.endpoint && !this.paths.isVirtual(p.endpoint)) add(formatEndpoint(p.endpoint).replace(/:\d+$/, '').replace(/^\[|\]$/g, ''));
    }
    return [...out].sort();
  }

  /** After the peers: policy routing through the exit node, failing closed when it is unusable. */
  private async applyExit(): Promise<void> {
    if (!this.exitNode || !this.exitRouting) return;
    const usable = this.isExitNode(this.exitNode.peerId);
    if (!usable && !this.exitUnusable) this.log.warn({ exitNode: this.exitNode.peerId }, 'the exit node no longer routes for the mesh: traffic to the internet is dropped until it does, or until meshd exit-node off');
    this.exitUnusable = !usable;
    if (this.engine.device.fwmark !== EXIT_TABLE) await this.engine.apply({ fwmark: EXIT_TABLE, replacePeers: false, peers: [] });
    await this.exitRouting.apply({ allowLan: this.exitNode.allowLan, keep: this.memberAddresses() });
  }

  /**
   * Signs an event of ours (the Signer persists it first: a full disk fails the command and
   * changes nothing: nothing we said is lost by a crash), then waits for its pushes, each of which
   * ends by its own deadline (sync.ts): a command answers within it even when a member was cut off.
   * A member a push misses gets the event by anti-entropy.
   */
  private async signAndPublish(draft: Draft): Promise<SignedEnvelope> {
    const env = await this.signer!.sign(draft, Date.now());
    await this.sync?.publish(env);
    return env;
  }

  async join(p: { token: string; allowOverlap?: boolean }): Promise<{ meshIp: string; network: string; name: string }> {
    if (this.network) {
      // A join asked again for the network we are in (its answer was lost: the daemon or the
      // command was killed after the admission): it did succeed.
      const again = (() => {
        try {
          return parseInvite(p.token).network.id === this.network!.id;
        } catch {
          return false;
        }
      })();
      if (again && this.meshIp) return { meshIp: this.meshIp, network: this.network.name, name: this.ledger?.member(this.peerId)?.name ?? this.name };
      throw new DaemonError('EEXIST', `already a member of network ${this.network.name}; run meshd leave first`);
    }
    // No expiry check here: the admitting member judges it by its clock (ours may be wrong).
    const invite = parseInvite(p.token);
    if (p.allowOverlap !== true) checkOverlap(invite.network.cidr, await this.kernel.localNetworks(this.opts.ifname), 'join');
    const network = invite.network;
    const t0 = performance.now();
    const node = await this.createNode(network, invite.bootstrap);
    try {
      const t1 = performance.now();
      const self = await this.selfRecord(network);
      // Connecting gets 20 s (libp2p's own dial limits are as long: p2p.ts); the answer 30 s: an
      // admitting member answers after a two-way exchange with every member it is connected to
      // (join.ts), which in a large mesh during a join storm took over 15 s here. The CLI waits
      // 60 s for the whole join.
      const result = await joinNetwork(node, invite, self, { timeoutMs: JOIN_CONNECT_MS, answerMs: JOIN_ANSWER_MS });
      const t2 = performance.now();
      const ledger = new Ledger(network);
      ledger.addAll(result.envelopes);
      if (!ledger.isMember(this.peerId)) throw new DaemonError('EJOIN', 'the member that answered did not admit us');
      if (result.skewMs !== null && Math.abs(result.skewMs) > NOTABLE_SKEW_MS) {
        this.log.warn({ skewMs: result.skewMs }, `this machine's clock is ${describeSkew(result.skewMs)} the admitting member's: check NTP`);
      }
      if (result.name !== this.name) this.log.warn({ asked: this.name, got: result.name }, `another member is named ${this.name}: this node is ${result.name}`);
      // One batch: a kill -9 here leaves this node either a member with its ledger, or as it was
      // (and then the same invite, asked again, is answered with the same admission).
      await this.store.setMembership(network, [...ledger.events(), ...ledger.records()].map((e) => ({ id: eventId(e), value: e })), { ledgerFormat: LEDGER_VERSION });
      await this.startNetwork(network, ledger, node);
      const ms = (a: number, b: number) => Math.round(b - a);
      this.log.info({ network: network.name, meshIp: this.meshIp, via: result.via, ms: { node: ms(t0, t1), admission: ms(t1, t2), start: ms(t2, performance.now()) } }, 'joined');
      return { meshIp: this.meshIp!, network: network.name, name: result.name };
    } catch (err) {
      if (!this.node) await Promise.resolve(node.stop()).catch(() => {});
      if (!this.network) await this.undoMembership(); // nothing of a join that failed stays stored
      throw err;
    }
  }

  async leave(): Promise<{ left: string }> {
    const { network } = this.requireNetwork();
    // Our own leave makes the ledger say we are out at once: the push must go before we forget.
    this.leaving = true;
    try {
      await this.signAndPublish({ type: 'revoke', member: this.peerId, reason: 'leave' });
      await new Promise((r) => setTimeout(r, 300)); // let the revocation reach connected members
      await this.forgetNetwork();
    } finally {
      this.leaving = false;
    }
    this.log.info({ network: network.name, why: 'leave' }, 'this node left the network');
    return { left: network.name };
  }

  async kick(p: { target: string }): Promise<{ kicked: string; meshIp: string }> {
    const { ledger } = this.requireNetwork();
    if (!ledger.isAdmin(this.peerId)) throw new DaemonError('EPERM', 'only an administrator can kick members');
    const target = this.findMember(p.target);
    if (target.peerId === this.peerId) throw new DaemonError('EINVAL', 'use meshd leave to remove this node');
    if (target.peerId === this.network!.founder) throw new DaemonError('EPERM', 'nobody can kick the founder (the founder can leave)');
    const them = ledger.member(target.peerId)!;
    if (them.admin && this.peerId !== this.network!.founder && !this.outranks(target.peerId)) {
      throw new DaemonError('EPERM', `${target.name} is a more senior administrator: only the founder or an administrator granted before it can kick it`);
    }
    await this.signAndPublish({ type: 'revoke', member: target.peerId, reason: 'kick' });
    return { kicked: target.name, meshIp: target.meshIp };
  }

  async promote(p: { target: string }): Promise<{ promoted: string }> {
    const { network, ledger } = this.requireNetwork();
    if (network.founder !== this.peerId) throw new DaemonError('EPERM', 'only the founder can make administrators');
    const target = this.findMember(p.target);
    if (ledger.isAdmin(target.peerId)) throw new DaemonError('EEXIST', `${target.name} is already an administrator`);
    await this.signAndPublish({ type: 'grant', member: target.peerId });
    return { promoted: target.name };
  }

  /** One ICMP echo through the tunnel to a member, and the path it took (`meshd ping`). */
  async ping(p: { target: string; timeoutMs?: number }): Promise<PingResult> {
    this.requireNetwork();
    const m = this.findMember(p.target);
    if (m.peerId === this.peerId) throw new DaemonError('EINVAL', `${m.name} is this node`);
    if (!this.prober) throw new DaemonError('EPERM', 'no raw ICMP socket (CAP_NET_RAW): cannot ping through the tunnel');
    const timeoutMs = Math.min(Math.max(Number(p.timeoutMs) || 2000, 100), 10_000);
    this.probes.ask([m.peerId]);
    const rttMs = await this.prober.echo(m.meshIp, timeoutMs);
    const key = this.wgKeyOf(m.peerId);
    const wg = key ? this.engine.device.peers.get(key.toString('hex')) : undefined;
    const path = this.pathOf(wg?.endpoint ?? null, rttMs !== null);
    return { name: m.name, meshIp: m.meshIp, rttMs, ...path };
  }

  /**
   * What the network looks like from here (`meshd netcheck`): whether UDP gets out, our socket as
   * members see it, whether the mapping varies by destination, and which relays answer how fast.
   */
  async netcheck(): Promise<NetcheckReport> {
    this.requireNetwork();
    const r = await this.refreshReflexive();
    const nameOf = (hex: string) => this.ledger?.members().find((m) => this.wgKeyOf(m.peerId)?.toString('hex') === hex)?.name ?? hex.slice(0, 8);
    const relays = await Promise.all(this.relayCandidates().map(async (c) => {
      const endpoint = this.engine.device.peers.get(c.hex)?.endpoint ?? null;
      const answer = endpoint ? await this.paths.probe(c.hex, endpoint, 1500) : null;
      return { name: nameOf(c.hex), endpoint: endpoint ? formatEndpoint(endpoint) : null, latencyMs: answer ? Math.round(answer.rttMs * 100) / 100 : null };
    }));
    return {
      udp: r === null || r.asked.length === 0 ? null : r.behindNat !== null,
      asked: r?.asked ?? [],
      reflexive: r?.mapped ?? [],
      behindNat: r?.behindNat ?? null,
      variesByDestination: r?.variesByDestination ?? null,
      relays,
      relaying: this.paths.relay,
      counters: { ...this.paths.stats },
    };
  }

  status(): Status {
    const snap = this.engine.snapshot();
    const byKey = new Map(snap.peers.map((p) => [p.publicKey.toString('base64'), p]));
    const ledger = this.ledger;
    const connected = new Set(this.node?.getConnections().map((c) => c.remotePeer.toString()) ?? []);
    const peers: PeerStatus[] = [];
    for (const m of ledger?.members() ?? []) {
      if (m.peerId === this.peerId) continue;
      const key = m.record?.wgPublicKey ?? null;
      const wg = key ? byKey.get(key) : undefined;
      const lastHandshake = wg && wg.lastHandshakeMs > 0 ? wg.lastHandshakeMs : null;
      const fresh = wg !== undefined && recentHandshake(wg.lastHandshakeMs, Date.now());
      peers.push({
        name: m.name,
        meshIp: m.meshIp,
        publicKey: key,
        peerId: m.peerId,
        ...this.pathOf(wg?.endpoint ?? null, fresh),
        lastHandshake,
        rxBytes: wg?.rxBytes ?? 0,
        txBytes: wg?.txBytes ?? 0,
        latencyMs: this.prober?.rtt(m.peerId) ?? null,
        online: connected.has(m.peerId) || fresh,
        admin: m.admin,
        leak: this.leaks?.leak(m.peerId) ?? null,
      });
    }
    const network = this.network;
    return {
      self: {
        name: ledger?.member(this.peerId)?.name ?? this.name,
        meshIp: this.meshIp,
        publicKey: toBase64(this.engine.device.publicKey!),
        peerId: this.peerId,
        network: network ? { id: network.id, name: network.name, cidr: network.cidr } : null,
        admin: ledger?.isAdmin(this.peerId) ?? false,
        interface: this.engine.ifname,
        listenPort: this.engine.listenPort,
        reflexive: this.reflexive?.mapped ?? [],
        exitNode: this.exitNode ? (this.ledger?.member(this.exitNode.peerId)?.name ?? this.exitNode.peerId) : null,
        domain: network ? networkDomain(network) : null,
      },
      peers,
    };
  }

  /** What `meshd daemon --metrics` reads at each scrape (metrics.ts): status's peers, the engine's totals. */
  metricsSources(): MetricsSources {
    const device = this.engine.device;
    return {
      peers: () => this.status().peers,
      engine: () => ({ handshakes: device.handshakes, cookieReplies: device.cookieReplies, drops: device.drops }),
      ledgerEvents: () => this.ledger?.size() ?? 0,
    };
  }

  /** Where WireGuard sends for status: the real endpoint (the relay's when relayed) and the path. */
  private pathOf(endpoint: Endpoint | null, fresh: boolean): Pick<PeerStatus, 'endpoint' | 'path' | 'relay'> {
    if (!endpoint) return { endpoint: null, path: null, relay: null };
    const relayHex = this.paths.relayOf(endpoint);
    if (relayHex === null) return { endpoint: formatEndpoint(endpoint), path: fresh ? 'direct' : null, relay: null };
    const relay = this.ledger?.members().find((m) => this.wgKeyOf(m.peerId)?.toString('hex') === relayHex) ?? null;
    const real = this.engine.device.peers.get(relayHex)?.endpoint ?? null;
    return { endpoint: real ? formatEndpoint(real) : null, path: fresh ? 'relay' : null, relay: relay?.name ?? null };
  }

  // ------------------------------------------------------------------ network life

  private requireNetwork(): { network: NetworkInfo; ledger: Ledger } {
    if (!this.network || !this.ledger) throw new DaemonError('ENONET', 'not a member of any network: run meshd init or meshd join <invite>');
    return { network: this.network, ledger: this.ledger };
  }

  private findMember(target: string): { peerId: string; name: string; meshIp: string } {
    const members = this.ledger!.members().filter((m) => m.name === target || m.meshIp === target || m.peerId === target);
    if (members.length === 0) throw new DaemonError('ENOENT', `no member named or addressed ${target}`);
    if (members.length > 1) throw new DaemonError('EINVAL', `${target} names ${members.length} members; use the mesh address`);
    return members[0];
  }

  /** Comes back into the stored network after a restart. */
  private async resume(network: NetworkInfo): Promise<void> {
    const format = (await this.store.getSettings<{ ledgerFormat: number }>()).ledgerFormat;
    if (format !== LEDGER_VERSION) {
      throw new DaemonError('EVERSION', `the state in ${this.opts.stateDir} belongs to a network made by an older meshd (ledger format ${format ?? 1}); this meshd reads format ${LEDGER_VERSION} and cannot join it. Keep that directory for the older meshd, or move it away and make a new network (meshd init) or join one with a new invite`);
    }
    const ledger = new Ledger(network);
    ledger.addAll(await this.store.allEnvelopes());
    if (!ledger.isMember(this.peerId)) {
      const why = ledger.removal(this.peerId);
      if (why === 'leave') this.log.info({ network: network.name, why }, 'this node left the stored network; forgetting it');
      else this.log.warn({ network: network.name, why }, 'no longer a member of the stored network; forgetting it');
      await this.forgetNetwork();
      return;
    }
    await this.startNetwork(network, ledger, null);
  }

  private async createNode(network: NetworkInfo, bootstrap: readonly string[]): Promise<Libp2p> {
    return this.components.libp2p({
      privateKey: this.identity,
      psk: network.psk,
      // IPv6 too (libp2p carries on with IPv4 alone on a host without IPv6).
      listen: [`/ip4/0.0.0.0/tcp/${this.opts.p2pPort}`, `/ip6/::/tcp/${this.opts.p2pPort}`],
      bootstrap: [...bootstrap],
      mdns: true,
      // Found on the LAN: worth a dial only if it is a member the sync is failing to reach.
      mdnsWanted: (peerId) => this.ledger?.isMember(peerId) === true && (this.sync?.missing(peerId) ?? true),
      gate: { allow: (peerId: string) => !(this.ledger?.revoked(peerId) ?? false) },
      logger: this.log.child({ component: 'p2p' }),
    });
  }

  private async startNetwork(network: NetworkInfo, ledger: Ledger, node: Libp2p | null): Promise<void> {
    this.network = network;
    this.ledger = ledger;
    // Our own events are on disk before they count here, and before anyone sees them.
    this.signer = new Signer(this.identity, ledger, (env) => this.persist([env], true));
    // Record sequence numbers come from a stored counter (never the clock), and never go below
    // what the members already hold of ours.
    const stored = Number((await this.store.getSettings<{ recordSeq: number }>()).recordSeq ?? 0);
    this.seq = Math.max(Number.isSafeInteger(stored) ? stored : 0, ledger.recordOf(this.peerId)?.body.seq ?? 0);
    const bootstrap = ledger.members().flatMap((m) => (m.peerId === this.peerId ? [] : (m.record?.multiaddrs ?? [])));
    const joined = node !== null;
    try {
      this.startup?.at('starting the libp2p node');
      this.node = node ?? (await this.createNode(network, bootstrap));
      this.finder = this.createPathFinder();
      this.paths.onProbe = (hex) => {
        this.finder?.hint(hex);
        const m = this.memberByWgHex(hex);
        if (m) this.sync?.wake(m, 'it probed our WireGuard socket');
      };
      // Signs of life: a member we cannot reach over libp2p (a partition that healed) is dialled
      // at once when its tunnel answers again, not when its dial backoff runs out (sync.ts).
      if (this.prober) this.prober.onAlive = (peerId) => void this.sync?.wake(peerId, 'its tunnel answers');
      this.subnets = new SubnetRoutes({
        ifname: this.opts.ifname, meshCidr: network.cidr, self: this.peerId, logger: this.log.child({ component: 'routes' }), prober: this.prober,
        onChange: () => this.inBackground('moving a subnet route', this.onLedgerChange()),
        kernel: this.kernel,
      });
      this.names = this.createNameServer(network);
      // Address and WireGuard peers first: that is what a joiner waits for, and starting the sync
      // sets off connections to every member, which then compete for the CPU.
      this.startup?.at('setting the address and the WireGuard peers');
      await this.onLedgerChange();
      if (this.network !== network) return; // the ledger says we are not a member: forgotten
      this.startup?.at('checking the multicast route');
      await this.ensureMulticast();
      const lan = (this.node as MeshNode).services.lan;
      this.sync = new LedgerSync(this.node, ledger, network.id, { logger: this.log.child({ component: 'sync' }), throughMesh: true, discover: () => void lan?.query() });
      this.sync.onEnvelope((env) => void this.persist([env]));
      this.startup?.at('starting the ledger sync and the join, relay and stream services');
      await this.sync.start();
      this.joinServer = await serveJoin(this.node, { ledger, signer: this.signer!, sync: this.sync, settleMs: this.opts.settleMs ?? 500, logger: this.log.child({ component: 'join' }) });
      ledger.onChange(() => this.inBackground('applying a ledger change', this.onLedgerChange()));
      this.relayService = await serveRelay(this.node, {
        enabled: () => this.paths.relay,
        member: (peerId) => this.wgKeyOf(peerId),
        reaches: (peerId) => this.reachesDirectly(peerId) || this.paths.hasStream(this.wgKeyOf(peerId)?.toString('hex') ?? ''),
        allow: (a, b, ttlMs) => this.paths.allocations.allow(idNumber(a, 0), idNumber(b, 0), ttlMs),
      }, this.log.child({ component: 'relay' }));
      this.streamService = await serveStreamLinks(this.node, this.streamHost(), this.log.child({ component: 'stream-link' }));
      this.timers.push(setInterval(() => {
        this.finder?.tick();
        this.paths.allocations.prune();
      }, 1000));
      // A joiner's record went out with its admission; after a restart the endpoints may be new.
      this.startup?.at('publishing our record');
      if (!joined) await this.publishRecord();
      this.startup?.at('starting the probes and monitors');
      this.probeMembers();
      this.timers.push(setInterval(() => this.probeMembers(), PROBE_INTERVAL_MS));
      this.timers.push(setInterval(() => this.inBackground('publishing our record', this.refreshRecord()), 30_000));
      this.lastLocal = this.localFingerprint();
      // On address and link changes (the route monitor below), with a slow backstop.
      this.timers.push(setInterval(() => this.inBackground('following a network change', this.followNetworkChange()), 30_000));
      this.leaks = this.createLeakWatch();
      this.checkLeaks();
      // When the routing table changes (and on membership changes, onLedgerChange), with a slow
      // backstop: an idle daemon spawns no `ip` every few seconds.
      this.routeMonitor = this.kernel.routeMonitor({
        onChange: () => {
          this.checkLeaks();
          this.inBackground('following a network change', this.followNetworkChange());
        },
        logger: this.log,
      });
      this.routeMonitor.start();
      this.timers.push(setInterval(() => this.checkLeaks(), LEAK_CHECK_MS));
      // Our reflexive endpoint, as soon as members are known: a joiner behind NAT advertises its
      // mapping seconds after joining, not 30 s later.
      this.inBackground('learning our reflexive endpoint', this.refreshRecord());
    } catch (err) {
      await this.stopNetwork();
      throw err;
    }
  }

  /** DNS on our mesh address: members by name under the network's domain, the rest forwarded. */
  private createNameServer(network: NetworkInfo): NameServer {
    return new NameServer({
      domain: () => networkDomain(network),
      names: () => this.memberNames(),
      allow: meshSources(network.cidr),
      logger: this.log.child({ component: 'dns' }),
    });
  }

  /** name -> mesh address of every member and device: what the name server answers. */
  private memberNames(): Map<string, string> {
    const names = new Map<string, string>();
    for (const m of this.ledger?.members() ?? []) if (!names.has(m.name)) names.set(m.name, m.meshIp);
    for (const d of this.ledger?.devices() ?? []) if (!names.has(d.name)) names.set(d.name, d.ip);
    return names;
  }

  private checkLeaks(): void {
    if (this.leaks) this.inBackground('checking routes to members', this.leaks.check());
  }

  /** Checks that every member's mesh address routes into the mesh interface (leaks.ts). */
  private createLeakWatch(): LeakWatch {
    return new LeakWatch({
      ifname: this.opts.ifname,
      members: () => (this.ledger?.members() ?? []).filter((m) => m.peerId !== this.peerId).map((m) => ({ peerId: m.peerId, name: m.name, meshIp: m.meshIp })),
      lookup: (ips) => this.kernel.routesTo(ips),
      logger: this.log.child({ component: 'leaks' }),
    });
  }

  /**
   * A failed init, or a join whose network did not start after admission: back to no network, in
   * memory (startNetwork undid itself) and in the store. The keys stay: nothing was revoked, and a
   * retried join with the same invite is answered again with the same address.
   */
  private async undoMembership(): Promise<void> {
    if (this.network) await this.stopNetwork();
    await this.store.wipeMembership().catch((err: Error) => this.log.error({ err: err.message }, 'cannot forget the network that did not start'));
  }

  /**
   * mDNS needs a route for 224.0.0.0/4. Hosts with a default route have one; a LAN without a
   * gateway (and a network namespace) does not, and then every mDNS send fails silently.
   */
  private async ensureMulticast(): Promise<void> {
    if (await this.kernel.multicastRouted()) return;
    // no route: add one through the first LAN interface
    const lan = this.kernel.localAddresses(this.opts.ifname).find((a) => a.family === 'IPv4');
    if (!lan) return;
    await this.kernel.ensureMulticastRoute(lan.ifname).catch((err: Error) => this.log.warn({ err: err.message }, 'no multicast route: mDNS discovery is off'));
  }

  private async stopNetwork(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    this.lastDesired.clear();
    this.departing.clear();
    this.finder?.stop();
    this.finder = null;
    this.routeMonitor?.stop();
    this.routeMonitor = null;
    this.leaks?.stop();
    this.leaks = null;
    await this.subnets?.stop();
    this.subnets = null;
    if (this.names) {
      await this.names.close();
      this.names = null;
      await this.kernel.revertResolved(this.opts.ifname, this.log.child({ component: 'dns' }));
    }
    await this.stopExit().catch((err: Error) => this.log.warn({ err: err.message }, 'cannot remove the exit node routes'));
    this.paths.onProbe = null;
    if (this.prober) this.prober.onAlive = null;
    this.paths.setMembers([]);
    await this.joinServer?.close();
    this.joinServer = null;
    await this.relayService?.close();
    this.relayService = null;
    await this.streamService?.close();
    this.streamService = null;
    this.udpBlocked = false;
    await this.sync?.stop();
    await Promise.resolve(this.node?.stop()).catch(() => {});
    this.node = null;
    this.sync = null;
    this.ledger = null;
    this.signer = null;
    this.network = null;
    this.meshIp = null;
    await Promise.resolve(this.engine.apply({ replacePeers: true, peers: [] }));
    await this.kernel.flushAddresses(this.opts.ifname).catch(() => {});
  }

  /**
   * Out of the network for good (left, kicked, or admission voided): forget it and take new keys.
   * A revocation is forever for the identity it names: members refuse it at the connection gate.
   * With new keys this machine is a stranger again, which a new invite admits as a new member.
   * The keys change first: a crash in between leaves a stored network we are not a member of,
   * which the next start forgets.
   */
  private async forgetNetwork(): Promise<void> {
    await this.stopNetwork();
    if (this.exitNode) {
      this.exitNode = null;
      await this.store.setSettings({ exitNode: null }).catch(() => {});
    }
    // Our clients went with us (ledger.ts): their private keys too.
    this.hostedKeys.clear();
    await this.updateClients((c) => {
      for (const k of Object.keys(c)) delete c[k];
    }).catch(() => {});
    const identity = await generateKeyPair('Ed25519');
    const wgKey = generatePrivateKey();
    await this.store.setIdentity(privateKeyToProtobuf(identity));
    await this.store.setWgKey(wgKey);
    this.identity = identity;
    this.seq = 0;
    await this.engine.apply({ privateKey: Buffer.from(wgKey), replacePeers: true, peers: [] });
    this.paths.setIdentity(Buffer.from(wgKey));
    await this.store.wipeMembership();
    this.log.info({ peerId: this.peerId }, 'new node keys');
  }

  /**
   * Work nobody awaits (event handlers, timers): a failure is logged and the daemon goes on. A
   * later ledger change or timer tries again; what failed (an `ip` command, a full disk) is in
   * the log line.
   */
  private inBackground(what: string, work: Promise<unknown>): void {
    work.catch((err: Error) => this.log.error({ err: err.message }, `failed: ${what}`));
  }

  private accept(env: SignedEnvelope): void {
    if (this.ledger?.add(env) === 'new') void this.persist([env]);
  }

  /** Stores envelopes; `strict` (our own events, before they are published) throws on failure. */
  private async persist(envs: readonly SignedEnvelope[], strict = false): Promise<void> {
    try {
      await this.store.putEnvelopes(envs.map((e) => ({ id: eventId(e), value: e })));
    } catch (err) {
      if (strict) throw err;
      this.log.error({ err: (err as Error).message }, 'cannot persist ledger entries; they stay in memory');
    }
  }

  /** Whether the revocation of `peerId` that counts is one this node signed. */
  private revokedByUs(ledger: Ledger, peerId: string): boolean {
    return ledger.events().some((e) => e.body.type === 'revoke' && e.body.member === peerId && e.by === this.peerId && ledger.reasonOf(eventId(e)) === null);
  }

  /** Seniority among administrators: the founder first, then by the founder's grants, in order. */
  private rankOf(peerId: string): number {
    const ledger = this.ledger!;
    if (peerId === this.network?.founder) return 0;
    const grant = ledger.events().find((e) => e.body.type === 'grant' && e.body.member === peerId && ledger.reasonOf(eventId(e)) === null);
    return grant ? grant.body.seq : Number.POSITIVE_INFINITY;
  }

  private outranks(peerId: string): boolean {
    return this.rankOf(this.peerId) < this.rankOf(peerId);
  }

  /** What our last record said about where to reach us, to republish only when it changes. */
  private lastAdvertised = '';

  /**
   * Where others reach this node (addresses.ts): announced addresses, then every public and
   * private interface address; never loopback, link-local or the mesh's own.
   */
  private async advertised(meshCidr = this.network?.cidr ?? null): Promise<{ endpoints: string[]; multiaddrs: string[] }> {
    const resolved = await resolveAnnounce(this.opts.announce ?? NO_ANNOUNCE);
    if (resolved.unresolved.length > 0) this.log.warn({ names: resolved.unresolved }, 'announced names do not resolve; left out of the record');
    const input = {
      local: this.kernel.localAddresses(this.opts.ifname),
      meshCidr,
      udpPort: this.engine.listenPort,
      tcpPort: this.p2pPort(),
      peerId: this.peerId,
      announce: resolved,
      // A mapping that varies by destination is of use to no one else: not advertised.
      reflexive: this.reflexive?.variesByDestination ? [] : (this.reflexive?.mapped ?? []),
    };
    return { endpoints: advertisedEndpoints(input), multiaddrs: advertisedMultiaddrs(input) };
  }

  /** The libp2p TCP port: the one asked for, or the one the listener got for --p2p-port 0. */
  private p2pPort(): number {
    if (this.opts.p2pPort !== 0) return this.opts.p2pPort;
    const tcp = this.node?.getMultiaddrs().flatMap((m) => m.getComponents()).find((c) => c.name === 'tcp');
    return Number(tcp?.value ?? 0);
  }

  /**
   * An invite's bootstrap list: our own addresses first, then other members' (so the join works
   * while we are away), at most 16 (records.ts), taking in turn from each member.
   */
  private inviteBootstrap(own: readonly string[]): string[] {
    const others = (this.ledger?.members() ?? [])
      .filter((m) => m.peerId !== this.peerId && m.record)
      .map((m) => m.record!.multiaddrs.filter((a) => peerOf(a) === m.peerId && !isLoopbackAddr(a)));
    const out = own.slice(0, 8);
    for (let i = 0; out.length < 16 && others.some((list) => i < list.length); i++) {
      for (const list of others) if (i < list.length && out.length < 16) out.push(list[i]);
    }
    return out;
  }

  private async selfRecord(network: NetworkInfo): Promise<SignedEnvelope> {
    this.seq += 1;
    await this.store.setSettings({ recordSeq: this.seq });
    const { endpoints, multiaddrs } = await this.advertised(network.cidr);
    this.lastAdvertised = JSON.stringify([endpoints, multiaddrs]);
    return record(this.identity, {
      network,
      wgPublicKey: toBase64(this.engine.device.publicKey!),
      name: this.name,
      endpoints,
      multiaddrs,
      routes: this.advertisedRoutes.map((r) => r.prefix),
      seq: this.seq,
    }, Date.now());
  }

  /**
   * Asks members on public addresses (and --stun servers) what they see of our WireGuard socket.
   * A few STUN requests per run, whatever the mesh's size (at most 3 targets).
   */
  private async refreshReflexive(): Promise<ReflexiveReport | null> {
    if (!this.network) return null;
    // Where WireGuard reaches members now, then what they advertise (a relayed member's endpoint
    // is virtual; with our UDP blocked every one is, and only their records say where to ask).
    const peers = [
      ...this.engine.snapshot().peers.flatMap((p) => (p.endpoint && !this.paths.isVirtual(p.endpoint) ? [p.endpoint] : [])),
      ...(this.ledger?.members() ?? []).filter((m) => m.peerId !== this.peerId).flatMap((m) => (m.record?.endpoints ?? []).flatMap((e) => {
        try {
          return [parseEndpoint(e)];
        } catch {
          return [];
        }
      })),
    ];
    const servers = (await resolveAnnounce({ hosts: [], tcp: [], udp: this.opts.stunServers ?? [] })).udp.flatMap((hp) => {
      try {
        return [parseEndpoint(hp.host.includes(':') ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`)];
      } catch {
        return [];
      }
    });
    const targets = stunTargets(peers, servers);
    if (targets.length === 0) return null;
    // Our own sockets' endpoints (not what we advertise: that includes the last mapping).
    const port = this.engine.listenPort;
    const local = this.kernel.localAddresses(this.opts.ifname).map((a) => formatEndpoint({ addr: addrFromString(a.address), port }));
    const report = await discoverReflexive(this.paths, targets, local);
    if (report.variesByDestination && !this.reflexive?.variesByDestination) {
      this.log.warn({ asked: report.asked }, 'this node is behind a NAT that maps per destination (symmetric): members behind NAT will reach it only through a relay');
    }
    // Keep the last mapping we had when nobody answered this time (a member restarting).
    if (report.behindNat !== null || this.reflexive === null) this.reflexive = report;
    const blocked = report.behindNat === null;
    if (blocked !== this.udpBlocked) {
      this.udpBlocked = blocked;
      if (blocked) this.log.warn({ asked: report.asked.map((a) => a.to) }, 'no STUN answer from anyone asked: UDP looks blocked; WireGuard goes over libp2p (TCP) through members');
      else this.log.info({}, 'UDP works again');
      this.finder?.reevaluateAll(blocked ? 'UDP is blocked' : 'UDP works again');
    }
    return report;
  }

  private lastLocal = '';
  /** The peers the last reconcile asked for, by peer id; and members revoked since, until when they stay. */
  private lastDesired = new Map<string, DesiredPeer>();
  private departing = new Map<string, number>();

  private localFingerprint(): string {
    return this.kernel.localAddresses(this.opts.ifname).filter((a) => !isLinkLocal(a)).map((a) => a.address).sort().join(',');
  }

  /**
   * This machine moved (another network, another address): libp2p connections from the old
   * address are dead, so they are closed (the sync dials again from the new one), and our record
   * is refreshed at once (new interface addresses, a new mapping), so that members behind NATs
   * probe us at the new address within seconds, not at the next 30 s refresh. Every peer with a
   * live session gets a keepalive from the new address, so that those that can hear it (members
   * on public addresses, stock WireGuard peers) roam to it at once; again once the record is out,
   * in case the route came a moment after the address.
   */
  private async followNetworkChange(): Promise<void> {
    const now = this.localFingerprint();
    if (now === this.lastLocal) return;
    const was = this.lastLocal;
    this.lastLocal = now;
    const keepalives = this.engine.device.sendKeepalivesToPeersWithCurrentKeypair();
    this.log.info({ was, now, keepalives }, 'network changed');
    await Promise.all((this.node?.getConnections() ?? []).map((c) => c.close().catch(() => {})));
    await this.refreshRecord();
    this.engine.device.sendKeepalivesToPeersWithCurrentKeypair();
  }

  /** Keepalives only where a NAT may need them: unless members saw us at our own address. */
  private keepalive(): number {
    return this.reflexive?.behindNat === false ? 0 : (this.opts.persistentKeepalive ?? 25);
  }

  /** Learns our reflexive endpoint, then republishes our record if anything in it changed. */
  private async refreshRecord(): Promise<void> {
    const keepalive = this.keepalive();
    await this.refreshReflexive();
    await this.publishRecordIfChanged();
    if (this.keepalive() !== keepalive) await this.onLedgerChange();
  }

  private async publishRecord(): Promise<void> {
    if (!this.network || !this.node || !this.sync) return;
    const env = await this.selfRecord(this.network);
    this.accept(env);
    await this.sync.publish(env);
  }

  private async publishRecordIfChanged(): Promise<void> {
    const now = await this.advertised();
    if (JSON.stringify([now.endpoints, now.multiaddrs]) !== this.lastAdvertised) await this.publishRecord();
  }

  /** A member's WireGuard public key, or null for anyone else (ourselves included). */
  private wgKeyOf(peerId: string): Buffer | null {
    const m = peerId === this.peerId ? null : this.ledger?.member(peerId);
    if (!m?.record) return null;
    try {
      return fromBase64(m.record.wgPublicKey);
    } catch {
      return null;
    }
  }

  /** The member whose WireGuard key this is (hex), or null. */
  private memberByWgHex(hex: string): string | null {
    return this.ledger?.members().find((m) => m.peerId !== this.peerId && this.wgKeyOf(m.peerId)?.toString('hex') === hex)?.peerId ?? null;
  }

  /** We reach this member without a relay: a recent handshake on a real endpoint. */
  private reachesDirectly(peerId: string): boolean {
    const key = this.wgKeyOf(peerId);
    const p = key ? this.engine.device.peers.get(key.toString('hex')) : undefined;
    return p !== undefined && p.endpoint !== null && !this.paths.isVirtual(p.endpoint) && recentHandshake(p.lastHandshakeWall, Date.now());
  }

  /** Members that could relay for us: reached directly, public endpoints first. */
  private relayCandidates(): { peerId: string; hex: string }[] {
    const rank = endpointRank(this.kernel.localAddresses(this.opts.ifname));
    return (this.ledger?.members() ?? [])
      .filter((m) => m.peerId !== this.peerId && this.reachesDirectly(m.peerId))
      .map((m) => ({ peerId: m.peerId, hex: this.wgKeyOf(m.peerId)!.toString('hex') }))
      .sort((a, b) => rank(this.engine.device.peers.get(a.hex)!.endpoint!) - rank(this.engine.device.peers.get(b.hex)!.endpoint!));
  }

  /** Where WireGuard streams (stream-link.ts) meet the path layer. */
  private streamHost(): StreamLinkHost {
    return {
      member: (peerId) => this.wgKeyOf(peerId)?.toString('hex') ?? null,
      attach: (hex, link) => this.paths.attach(hex, link),
      detach: (hex, link) => this.paths.detach(hex, link),
      receive: (hex, frame) => this.paths.receive(hex, frame),
    };
  }

  private createPathFinder(): PathFinder {
    return new PathFinder({
      probe: (hex, to, t) => this.paths.probe(hex, to, t),
      virtualEndpoint: (relay, peer) => this.paths.virtualEndpoint(relay, peer),
      isVirtual: (e) => this.paths.isVirtual(e),
      view: (hex) => {
        const p = this.engine.device.peers.get(hex);
        return p ? { endpoint: p.endpoint, rxBytes: p.rxBytes, txBytes: p.txBytes, lastHandshakeMs: p.lastHandshakeWall } : null;
      },
      setEndpoint: async (hex, endpoint) => {
        await this.engine.apply({ replacePeers: false, peers: [{ publicKey: Buffer.from(hex, 'hex'), remove: false, updateOnly: true, replaceAllowedIps: false, allowedIps: [], endpoint }] });
      },
      relays: () => this.relayCandidates(),
      requestRelay: async (relay, to) => {
        if (!this.node) throw new Error('not in a network');
        await this.sync?.connect(relay); // beyond a few members we keep connections to neighbours only
        await requestRelay(this.node, relay, to);
      },
      udpBlocked: () => this.udpBlocked,
      streamRelays: () => {
        const connected = new Set(this.node?.getConnections().filter((c) => c.status === 'open').map((c) => c.remotePeer.toString()) ?? []);
        return (this.ledger?.members() ?? []).filter((m) => m.peerId !== this.peerId && connected.has(m.peerId) && this.wgKeyOf(m.peerId))
          .map((m) => ({ peerId: m.peerId, hex: this.wgKeyOf(m.peerId)!.toString('hex') }));
      },
      openStream: async (peerId) => {
        const key = this.wgKeyOf(peerId);
        if (!this.node || !key) throw new Error('not a member');
        if (this.paths.hasStream(key.toString('hex'))) return;
        await this.sync?.connect(peerId);
        await openStreamLink(this.node, peerId, this.streamHost(), this.log.child({ component: 'stream-link' }));
      },
      hasStream: (hex) => this.paths.hasStream(hex),
      rank: endpointRank(this.kernel.localAddresses(this.opts.ifname)),
      logger: this.log.child({ component: 'pathfinder' }),
    });
  }

  /** After any ledger change: our own address, our membership, the engine's peers. */
  private async onLedgerChange(): Promise<void> {
    const ledger = this.ledger;
    const network = this.network;
    if (!ledger || !network || this.stopping) return;
    if (!ledger.isMember(this.peerId)) {
      if (this.leaving) return; // leave() forgets the network once its revocation is out
      const removal = ledger.removal(this.peerId);
      const admission = ledger.events().find((e) => e.body.type === 'admit' && e.body.member === this.peerId);
      const voided = removal === null && admission ? ledger.reasonOf(eventId(admission)) : null;
      if (voided) this.log.warn({ network: network.name, why: voided }, 'the admission of this node does not count: ask an administrator for a new invite');
      else if (removal === 'leave') this.log.info({ network: network.name, why: removal }, 'this node left the network'); // its own choice: no warning
      else this.log.warn({ network: network.name, why: removal }, 'this node was removed from the network');
      await this.forgetNetwork();
      return;
    }
    const ip = ledger.addressOf(this.peerId);
    if (ip && ip !== this.meshIp) {
      const bits = Number(network.cidr.split('/')[1]);
      await this.kernel.flushAddresses(this.opts.ifname).catch(() => {});
      await this.kernel.addAddress(this.opts.ifname, ip, bits);
      await this.kernel.setLinkUp(this.opts.ifname);
      this.meshIp = ip;
      this.log.info({ meshIp: ip }, 'mesh address assigned');
      if (this.names) {
        await this.names.listen(ip);
        // Not bound (port 53 taken): resolved would send the domain to whoever holds it.
        if (this.names.address) this.inBackground('pointing systemd-resolved at the mesh names', this.kernel.systemdResolved(this.opts.ifname, ip, networkDomain(network), this.log.child({ component: 'dns' })).then(() => {}));
      }
    }
    // Subnet routes first: which member holds which prefix goes into the peers below.
    const devices = ledger.devices();
    const hosted = devices.filter((d) => d.host === this.peerId);
    const hostedKeys = new Set(hosted.map((d) => d.wgPublicKey));
    const gone = [...this.hostedKeys].filter((k) => !hostedKeys.has(k));
    this.hostedKeys = hostedKeys;
    if (gone.length > 0) this.inBackground('forgetting removed clients\' keys', this.forgetClientKeys(gone));
    await this.subnets?.update(ledger.members(), this.advertisedRoutes, hosted.map((d) => d.ip));
    // Members that are gone are hung up on by the sync, once the revocation has reached them.
    const snapshot = this.engine.snapshot();
    const exitNode = this.exitNode?.peerId ?? null;
    const wanted = desiredPeers({
      self: this.peerId,
      selfWgKey: toBase64(this.engine.device.publicKey!),
      members: ledger.members(),
      devices,
      routesOf: (peerId) => this.subnets?.routesOf(peerId) ?? [],
      exitNode: exitNode !== null && this.isExitNode(exitNode) ? exitNode : null,
      handshakes: new Map(snapshot.peers.map((p) => [p.publicKey.toString('base64'), p.lastHandshakeMs])),
      decided: (key) => this.finder?.decision(fromBase64(key).toString('hex')) ?? null,
      now: Date.now(),
      last: this.lastDesired,
      departing: this.departing,
      revoked: (peerId) => ledger.revoked(peerId),
      revokedByUs: (peerId) => this.revokedByUs(ledger, peerId),
    });
    const desired = wanted.peers;
    this.departing = wanted.departing;
    if (wanted.recheckInMs !== null) setTimeout(() => this.inBackground('removing a revoked member', this.onLedgerChange()), wanted.recheckInMs + 50).unref();
    this.lastDesired = desired;
    const members = ledger.members().filter((m) => m.peerId !== this.peerId && m.record);
    this.paths.setMembers(members.flatMap((m) => {
      const key = this.wgKeyOf(m.peerId);
      return key ? [key] : [];
    }));
    const endpointRankNow = endpointRank(this.kernel.localAddresses(this.opts.ifname));
    const keepalive = this.keepalive();
    const change = reconcile([...desired.values()], snapshot, {
      // No NAT sits between us and a member on one of our own subnets: no keepalives for it.
      persistentKeepalive: (endpoint) => (endpoint !== null && endpointRankNow(endpoint) === 0 ? 0 : keepalive),
      rank: endpointRankNow,
    });
    if (change.peers.length > 0) {
      await this.engine.apply(change);
      this.log.debug({ changes: change.peers.length }, 'peers reconciled');
    }
    await this.applyExit();
    // New members' addresses: the routes to them are checked now, not at the next backstop.
    const meshIps = members.map((m) => m.meshIp).join(' ');
    if (meshIps !== this.checkedMeshIps) {
      this.checkedMeshIps = meshIps;
      this.checkLeaks();
    }
    const rank = endpointRank(this.kernel.localAddresses(this.opts.ifname));
    this.finder?.setPeers(members.flatMap((m) => {
      const key = this.wgKeyOf(m.peerId);
      if (!key) return [];
      const candidates = m.record!.endpoints.flatMap((e) => {
        try {
          return [parseEndpoint(e)];
        } catch {
          return [];
        }
      }).sort((a, b) => rank(a) - rank(b));
      return [{ hex: key.toString('hex'), peerId: m.peerId, candidates }];
    }));
  }

  /**
   * One ICMP echo through the tunnel to the members worth one this round (probe-schedule.ts):
   * those asked about, those carrying traffic, and one more in turn.
   */
  private probeMembers(): void {
    if (!this.prober || !this.ledger) return;
    const peers = this.engine.device.peers;
    this.prober.probe(this.probes.round(this.ledger.members().filter((m) => m.peerId !== this.peerId).map((m) => {
      const key = this.wgKeyOf(m.peerId);
      const p = key ? peers.get(key.toString('hex')) : undefined;
      return { key: m.peerId, ip: m.meshIp, bytes: p ? p.rxBytes + p.txBytes : 0, lost: this.sync?.missing(m.peerId) ?? false };
    })));
  }

  /**
   * `meshd status` asks about every member: from now on they are probed every round for a while.
   * The first status after a quiet spell probes the members without a figure at once and waits
   * for their answers (at most FRESH_WAIT_MS); later ones answer at once.
   */
  private async freshLatency(): Promise<void> {
    const prober = this.prober;
    if (!prober || !this.ledger) return;
    const others = this.ledger.members().filter((m) => m.peerId !== this.peerId);
    const missing = others.filter((m) => prober.rtt(m.peerId) === null && !this.probes.askedRecently(m.peerId));
    this.probes.ask(others.map((m) => m.peerId));
    if (missing.length === 0) return;
    prober.probe(missing.map((m) => ({ key: m.peerId, ip: m.meshIp })));
    const until = performance.now() + FRESH_WAIT_MS;
    while (performance.now() < until && missing.some((m) => prober.rtt(m.peerId) === null)) await new Promise((r) => setTimeout(r, 20));
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.prober?.close();
    this.paths.close();
    for (const t of this.timers) clearInterval(t);
    await this.control?.close();
    await this.subnets?.stop(); // forwarding rules and the sysctl as they were found
    await this.names?.close();
    await this.exitRouting?.off().catch(() => {}); // policy rules as they were found
    await this.sync?.stop();
    await Promise.resolve(this.node?.stop()).catch(() => {});
    await this.uapi.close();
    this.engine.close();
    await this.store.close();
  }
}
