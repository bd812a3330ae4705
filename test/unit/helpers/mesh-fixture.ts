// A loopback mesh for the libp2p tests: real nodes on 127.0.0.1, real ledgers, fast timers.
import '../../../src/util/polyfill.js';
import { randomBytes } from 'node:crypto';
import { generateKeyPair } from '@libp2p/crypto/keys';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import type { PrivateKey } from '@libp2p/interface';
import { Ledger } from '../../../src/discovery/ledger.js';
import { Signer, foundNetwork, record } from '../../../src/discovery/signer.js';
import { encodeInvite, inviteProof, type Invite } from '../../../src/discovery/invite.js';
import type { NetworkInfo } from '../../../src/discovery/records.js';
import type { SignedEnvelope } from '../../../src/discovery/signed.js';
import { createMeshNode, type MeshNode } from '../../../src/discovery/p2p.js';
import { LedgerSync, type LedgerSyncOptions } from '../../../src/discovery/sync.js';
import { serveJoin, type JoinServer } from '../../../src/discovery/join.js';
import type { Logger } from '../../../src/util/log.js';
import type { MeshTrace } from './mesh-trace.js';

export const LOOPBACK = ['/ip4/127.0.0.1/tcp/0'];

/**
 * libp2p aborts a connection whose ping takes longer than 5 s (adaptive): on a loaded machine a
 * starved test process would lose connections to that, not to what a test exercises. A minute.
 */
export const PATIENT_MONITOR = { pingTimeout: { minTimeout: 60_000, maxTimeout: 60_000 } };

/** Timers short enough for tests, long enough not to spin. */
export const FAST: LedgerSyncOptions = { meshIntervalMs: 100, yieldMs: 150, backoffMinMs: 100, backoffMaxMs: 1_000, dialTimeoutMs: 2_000, syncTimeoutMs: 5_000 };

/** LOG=1 prints what the discovery layer logs. */
export const testLog: Logger | undefined = process.env.LOG ? consoleLog({}) : undefined;

function consoleLog(bindings: Record<string, unknown>): Logger {
  const line = (level: string) => (o: object, m?: string) => console.error(level, m, JSON.stringify({ ...bindings, ...o }));
  return { debug: line('debug'), info: line('info'), warn: line('warn'), error: line('error'), child: (b) => consoleLog({ ...bindings, ...b }) };
}

export const newKey = (): Promise<PrivateKey> => generateKeyPair('Ed25519');
export const idOf = (k: PrivateKey): string => peerIdFromPrivateKey(k).toString();
export const wgKey = (): string => randomBytes(32).toString('base64');

export interface Net {
  network: NetworkInfo;
  founderKey: PrivateKey;
  /** genesis and the founder's admission */
  base: SignedEnvelope[];
  /**
   * The founder's own ledger and its one Signer: everything the founder signs (in the fixture
   * and in the founder's Peer) goes through these, so its chain never forks.
   */
  ledger: Ledger;
  signer: Signer;
}

export async function newNet(name = 'testnet'): Promise<Net> {
  const founderKey = await newKey();
  const { network, events } = await foundNetwork(founderKey, { name, memberName: 'founder' }, Date.now());
  const ledger = new Ledger(network);
  ledger.addAll(events);
  return { network, founderKey, base: events, ledger, signer: new Signer(founderKey, ledger) };
}

/** A new invite by the founder (its event is in net.ledger). */
export async function invite(net: Net, opts: { uses?: number; bootstrap?: string[]; ttlMs?: number } = {}): Promise<Invite> {
  const { envelope, secret } = await net.signer.issueInvite({ uses: opts.uses ?? 1, ttlMs: opts.ttlMs }, Date.now());
  return encodeInvite({ network: net.network, envelope, secret, bootstrap: opts.bootstrap ?? [] });
}

/** An admission of `key` by the founder, with a fresh invite: [invite event, admission]. */
export async function admission(net: Net, key: PrivateKey, name: string): Promise<SignedEnvelope[]> {
  const inv = await invite(net, { uses: 1 });
  const member = idOf(key);
  const proof = inviteProof(inv.secret, { network: net.network.id, invite: inv.id, member });
  const env = await net.signer.sign({ type: 'admit', member, name, invite: inv.id, proof }, Date.now());
  return [inv.envelope, env];
}

/** A copy of the given history (for members other than the founder: the founder uses net.ledger). */
export function ledgerWith(net: Net, envs: readonly SignedEnvelope[]): Ledger {
  const l = new Ledger(net.network);
  for (const e of envs) if (l.add(e) === 'invalid') throw new Error('fixture envelope is invalid');
  return l;
}

export interface Peer {
  key: PrivateKey;
  id: string;
  name: string;
  ledger: Ledger;
  node: MeshNode;
  sync: LedgerSync;
  signer: Signer;
  joins: JoinServer;
  addrs: string[];
  /** How many times this node's gate refused `peer` (inbound, outbound or a dial): what it decided, not what the dialler saw. */
  refusals(peer: string): number;
  stop(): Promise<void>;
}

export interface PeerOptions {
  bootstrap?: string[];
  settleMs?: number;
  /** Publish the member's own record at start (default true if it is a member). */
  publishRecord?: boolean;
  sync?: LedgerSyncOptions;
  listen?: string[];
  /** The member's clock (serveJoin's `now`). */
  now?: () => number;
  /** Records this peer's discovery log and its gate's refusals (printed when a test fails). */
  trace?: MeshTrace;
}

/** A member (or a would-be member) with its node, sync and join server running. */
export async function startPeer(net: Net, key: PrivateKey, name: string, ledger: Ledger, opts: PeerOptions = {}): Promise<Peer> {
  opts.trace?.names.set(idOf(key), name);
  const log = opts.trace ? opts.trace.logger(name, testLog) : testLog;
  const refused = new Map<string, number>();
  const node = await createMeshNode({
    privateKey: key,
    psk: net.network.psk,
    listen: opts.listen ?? LOOPBACK,
    bootstrap: opts.bootstrap,
    gate: {
      allow: (peer) => {
        const ok = !ledger.revoked(peer);
        if (!ok) {
          refused.set(peer, (refused.get(peer) ?? 0) + 1);
          log?.debug({ peer }, 'gate refuses');
        }
        return ok;
      },
    },
    logger: log,
    connectionMonitor: PATIENT_MONITOR,
  });
  if (opts.trace) {
    const trace = opts.trace;
    for (const evt of ['connection:open', 'connection:close'] as const) {
      node.addEventListener(evt, ({ detail: c }) => trace.note(name, evt, { peer: c.remotePeer.toString(), id: c.id, direction: c.direction, status: c.status }));
    }
  }
  if (key === net.founderKey && ledger !== net.ledger) throw new Error('the founder runs on net.ledger (one chain per identity)');
  const signer = key === net.founderKey ? net.signer : new Signer(key, ledger);
  const sync = new LedgerSync(node, ledger, net.network.id, { ...FAST, ...opts.sync, logger: log });
  await sync.start();
  const joins = await serveJoin(node, { ledger, signer, sync, settleMs: opts.settleMs ?? 300, logger: log, now: opts.now });
  const addrs = node.getMultiaddrs().map(String);
  const id = idOf(key);
  if (opts.publishRecord ?? ledger.isMember(id)) {
    await sync.publish(await selfRecord(net, key, name, addrs));
  }
  let stopped = false;
  return {
    key, id, name, ledger, node, sync, signer, joins, addrs,
    refusals: (peer) => refused.get(peer) ?? 0,
    async stop() {
      if (stopped) return;
      stopped = true;
      await joins.close();
      await sync.stop();
      await node.stop();
    },
  };
}

let seqs = 0;
export function selfRecord(net: Net, key: PrivateKey, name: string, multiaddrs: string[], seq = ++seqs): Promise<SignedEnvelope> {
  return record(key, { network: net.network, wgPublicKey: wgKey(), name, endpoints: ['127.0.0.1:51820'], multiaddrs, seq }, Date.now());
}

export function connected(a: Peer, b: Peer): boolean {
  return a.node.getConnections().some((c) => c.remotePeer.toString() === b.id && c.status === 'open');
}

export async function waitFor(cond: () => boolean, timeoutMs: number, what: string): Promise<number> {
  const start = performance.now();
  while (!cond()) {
    if (performance.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  return performance.now() - start;
}

export function ms(n: number): number {
  return Math.round(n);
}
