// Members on in-memory hosts (memory-host.ts): the same LedgerSync and join server as
// mesh-fixture.ts's startPeer runs on loopback libp2p nodes, without sockets, so a test can run a
// dozen members in one process and cut, refuse or slow the links between them.
import '../../../src/util/polyfill.js';
import type { PrivateKey } from '@libp2p/interface';
import type { Ledger } from '../../../src/discovery/ledger.js';
import { Signer } from '../../../src/discovery/signer.js';
import { LedgerSync, type LedgerSyncOptions } from '../../../src/discovery/sync.js';
import { serveJoin, type JoinServer } from '../../../src/discovery/join.js';
import type { SignedEnvelope } from '../../../src/discovery/signed.js';
import { MemoryNetwork, type MemoryHost } from './memory-host.js';
import { FAST, idOf, selfRecord, testLog, type Net } from './mesh-fixture.js';

export interface MemoryPeer {
  key: PrivateKey;
  id: string;
  name: string;
  host: MemoryHost;
  ledger: Ledger;
  signer: Signer;
  sync: LedgerSync;
  joins: JoinServer;
  /** Open connections, by remote peer id. */
  links(): Set<string>;
  stop(): Promise<void>;
}

export interface MemoryPeerOptions {
  sync?: LedgerSyncOptions;
  settleMs?: number;
  now?: () => number;
  /** Our own record, published at start (default: if we are a member and have none yet). */
  publishRecord?: boolean;
}

/** A host on `mnet` for `key` (its record addresses are the host's /memory/ address). */
export function memoryHost(mnet: MemoryNetwork, key: PrivateKey, name: string, ledger?: Ledger): Promise<MemoryHost> {
  return mnet.host(key, { name, gate: ledger ? (peer) => !ledger.revoked(peer) : undefined });
}

/** The record a member on `host` signs: its memory address. */
export function memoryRecord(net: Net, key: PrivateKey, name: string, host: MemoryHost): Promise<SignedEnvelope> {
  return selfRecord(net, key, name, host.addrs);
}

/** LedgerSync and serveJoin on a host, as the daemon runs them. */
export async function startMemoryPeer(net: Net, key: PrivateKey, name: string, ledger: Ledger, host: MemoryHost, opts: MemoryPeerOptions = {}): Promise<MemoryPeer> {
  if (key === net.founderKey && ledger !== net.ledger) throw new Error('the founder runs on net.ledger (one chain per identity)');
  const id = idOf(key);
  const log = testLog?.child({ member: name });
  const signer = key === net.founderKey ? net.signer : new Signer(key, ledger);
  const sync = new LedgerSync(host, ledger, net.network.id, { ...FAST, ...opts.sync, logger: log });
  await sync.start();
  const joins = await serveJoin(host, { ledger, signer, sync, settleMs: opts.settleMs ?? 300, logger: log, now: opts.now });
  if (opts.publishRecord ?? (ledger.isMember(id) && ledger.recordOf(id) === null)) {
    await sync.publish(await memoryRecord(net, key, name, host));
  }
  let stopped = false;
  return {
    key, id, name, host, ledger, signer, sync, joins,
    links: () => new Set(host.getConnections().filter((c) => c.status === 'open').map((c) => c.remotePeer.toString())),
    async stop() {
      if (stopped) return;
      stopped = true;
      await joins.close();
      await sync.stop();
      await host.stop();
    },
  };
}

export { MemoryNetwork };
