// Signing ledger events: a member's own chain. Every event a node signs names its previous event
// and the heads it has seen (records.ts); two events at one chain position would be equivocation
// (ledger.ts removes a member for it). So a node signs through one Signer, which signs one event
// at a time, hands it to `persist` (the daemon's store: a failure, a full disk, throws and the
// event is dropped: nothing changed, and the next event takes its place in the chain), and only
// then adds it to the ledger. The caller publishes it after that: a crash at any point loses only
// an event nobody has seen.
//
// Exported API:
//   newNetwork({ name, founder, cidr? }): NetworkInfo           random id and pnet key
//   foundNetwork(key, { name, memberName, cidr?, domain? }, now)
//       : Promise<{ network, events: [genesis, admit] }>   a new network with its founder admitted
//   record(key, { network, wgPublicKey, name, endpoints, multiaddrs, routes?, seq }, now)
//       : Promise<SignedEnvelope<RecordBody>>     records are not chained; seq: a persisted counter
//   type Draft = { type: 'admit', member, name, ip?, invite: string | null, proof: string | null }
//              | { type: 'revoke', member, reason? } | { type: 'grant', member }
//              | { type: 'invite', key, expires, uses } | { type: 'cancel', invite }
//              | { type: 'routes', member, approved: prefixes }
//              | { type: 'device', member, name, wgPublicKey, ip? } | { type: 'undevice', device: event id }
//   class Signer {
//     constructor(key: PrivateKey, ledger: Ledger, persist?: (env) => Promise<void>)
//     readonly peerId: string
//     sign(draft: Draft, now: number): Promise<SignedEnvelope<EventBody>>
//         fills network, seq, prev, deps and at, validates, signs, persists, adds to the ledger (so
//         the next event follows it) and returns it; throws EnvelopeError for a body no peer would
//         accept, or what persist threw (and then nothing changed)
//     issueInvite({ ttlMs?, uses? }, now): Promise<{ envelope, secret }>
//   }
import { randomBytes } from 'node:crypto';
import type { PrivateKey } from '@libp2p/interface';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { eventId, signEnvelope, type SignedEnvelope } from './signed.js';
import {
  AdmitBodySchema, CancelBodySchema, EnvelopeError, GenesisBodySchema, GrantBodySchema, InviteBodySchema,
  LEDGER_VERSION, NetworkInfoSchema, RecordBodySchema, RevokeBodySchema, RoutesBodySchema, DeviceBodySchema, UndeviceBodySchema, checkBody, intToIp, meshRange, parseEnvelope,
  type AdmitBody, type EventBody, type GenesisBody, type InviteBody, type LedgerBody, type NetworkInfo, type RecordBody,
} from './records.js';
import { DEFAULT_INVITE_TTL_MS, newInviteSecret } from './invite.js';
import { DEFAULT_CIDR, type Ledger } from './ledger.js';

/** Signs a body after checking it, then reads it back as a peer would: what we emit, peers accept. */
async function build<B extends LedgerBody>(key: PrivateKey, body: B): Promise<SignedEnvelope<B>> {
  const env = await signEnvelope(key, body);
  return parseEnvelope(env) as SignedEnvelope<B>;
}

export function newNetwork(opts: { name: string; founder: string; cidr?: string; domain?: string }): NetworkInfo {
  return checkBody(NetworkInfoSchema, {
    id: randomBytes(16).toString('hex'),
    name: opts.name,
    cidr: opts.cidr ?? DEFAULT_CIDR,
    psk: randomBytes(32).toString('hex'),
    founder: opts.founder,
    ...(opts.domain !== undefined ? { domain: opts.domain } : {}),
  }, 'network');
}

/** A new network with its founder admitted at the first host: what `meshd init` stores. */
export async function foundNetwork(
  key: PrivateKey,
  opts: { name: string; memberName: string; cidr?: string; domain?: string },
  now: number,
): Promise<{ network: NetworkInfo; events: [SignedEnvelope<GenesisBody>, SignedEnvelope<AdmitBody>] }> {
  const founder = peerIdFromPrivateKey(key).toString();
  const network = newNetwork({ name: opts.name, founder, cidr: opts.cidr, ...(opts.domain !== undefined ? { domain: opts.domain } : {}) });
  const g = await build(key, checkBody(GenesisBodySchema, {
    type: 'genesis', v: LEDGER_VERSION, network, seq: 1, prev: null, deps: [], at: now,
  }, 'genesis'));
  const a = await build(key, checkBody(AdmitBodySchema, {
    type: 'admit', network: network.id, member: founder, name: opts.memberName, ip: intToIp(meshRange(network.cidr)!.base + 1),
    invite: null, proof: null, seq: 2, prev: eventId(g), deps: [], at: now,
  }, 'admission'));
  return { network, events: [g, a] };
}

export async function record(
  key: PrivateKey,
  opts: {
    network: NetworkInfo | string; wgPublicKey: string; name: string;
    endpoints: readonly string[]; multiaddrs: readonly string[]; seq: number;
    /** Prefixes this member advertises (`meshd routes advertise`); none: the field is left out. */
    routes?: readonly string[];
  },
  now: number,
): Promise<SignedEnvelope<RecordBody>> {
  return build(key, checkBody(RecordBodySchema, {
    type: 'record', network: typeof opts.network === 'string' ? opts.network : opts.network.id,
    member: peerIdFromPrivateKey(key).toString(), wgPublicKey: opts.wgPublicKey, name: opts.name,
    endpoints: [...opts.endpoints], multiaddrs: [...opts.multiaddrs],
    ...(opts.routes?.length ? { routes: [...opts.routes] } : {}), seq: opts.seq, at: now,
  }, 'record'));
}

export type Draft =
  | { type: 'admit'; member: string; name: string; ip?: string; invite: string | null; proof: string | null }
  | { type: 'revoke'; member: string; reason?: 'kick' | 'leave' }
  | { type: 'grant'; member: string }
  | { type: 'invite'; key: string; expires: number; uses: number }
  | { type: 'cancel'; invite: string }
  | { type: 'routes'; member: string; approved: string[] }
  | { type: 'device'; member: string; name: string; wgPublicKey: string; ip?: string }
  | { type: 'undevice'; device: string };

const SCHEMAS = {
  admit: [AdmitBodySchema, 'admission'],
  revoke: [RevokeBodySchema, 'revocation'],
  grant: [GrantBodySchema, 'grant'],
  invite: [InviteBodySchema, 'invite'],
  cancel: [CancelBodySchema, 'cancel'],
  routes: [RoutesBodySchema, 'route approval'],
  device: [DeviceBodySchema, 'device'],
  undevice: [UndeviceBodySchema, 'device removal'],
} as const;

export class Signer {
  readonly peerId: string;
  #queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly key: PrivateKey,
    private readonly ledger: Ledger,
    private readonly persist: (env: SignedEnvelope<EventBody>) => Promise<void> = async () => {},
  ) {
    this.peerId = peerIdFromPrivateKey(key).toString();
  }

  /** Signs one event after the previous one has been added: the chain never forks. */
  sign(draft: Draft, now: number): Promise<SignedEnvelope<EventBody>> {
    const run = async (): Promise<SignedEnvelope<EventBody>> => {
      const network = this.ledger.network();
      if (network === null) throw new EnvelopeError('malformed', 'no network to sign for');
      const body: Record<string, unknown> = { ...draft, network: network.id, ...this.ledger.nextLink(this.peerId), at: now };
      if (draft.type === 'revoke') body.reason = draft.reason ?? (draft.member === this.peerId ? 'leave' : 'kick');
      if (draft.type === 'admit' || draft.type === 'device') body.ip = draft.ip ?? this.ledger.nextAddress() ?? intToIp(meshRange(network.cidr)!.base + 1);
      const [schema, what] = SCHEMAS[draft.type];
      const env = await build(this.key, checkBody(schema, body, what) as EventBody);
      await this.persist(env);
      const r = this.ledger.ingest(env);
      if (r.status !== 'new') throw new EnvelopeError('malformed', `the ledger does not take this ${what}: ${r.reason ?? r.status}`);
      return env;
    };
    const p = this.#queue.then(run, run);
    this.#queue = p.catch(() => {});
    return p;
  }

  /** A new invite: its event (signed and added) and the secret that goes into the token only. */
  async issueInvite(opts: { ttlMs?: number; uses?: number }, now: number): Promise<{ envelope: SignedEnvelope<InviteBody>; secret: Uint8Array }> {
    const ttlMs = opts.ttlMs ?? DEFAULT_INVITE_TTL_MS;
    if (!Number.isSafeInteger(ttlMs) || ttlMs <= 0) throw new EnvelopeError('malformed', `invite ttl must be a positive number of ms, not ${ttlMs}`);
    const { secret, key } = newInviteSecret();
    const envelope = await this.sign({ type: 'invite', key, expires: now + ttlMs, uses: opts.uses ?? 1 }, now);
    return { envelope: envelope as SignedEnvelope<InviteBody>, secret };
  }
}
