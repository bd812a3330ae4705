// The membership ledger: a grow-only set of signed events that every member folds into the same
// view (who is a member, with which mesh address, who is an administrator), plus each member's
// latest self-signed record (WireGuard key, endpoints, multiaddrs). Pure: no I/O, no clock; every
// time comes from the events or from the caller.
//
// Events (records.ts has the shapes) are content-addressed by eventId(); merging two ledgers is
// adding each other's events(), in any order. The fold sorts events by (at, id) and applies them:
//
//   genesis  The earliest genesis of the network is the root; events with an earlier `at` are void
//            ('before genesis'). The founder is the first administrator.
//   admit    The founder admits itself once, with invite null (the first admission of every
//            network, so the founder gets the first host address). Everyone else needs an invite:
//            the admitter must be a member at `at`; the invite must be for this network, signed by
//            an administrator (at `at`), `at <= expires`, with uses left. A use is one distinct
//            member; admitting the same member again is 'already a member' (idempotent, counts
//            once). A member revoked after using an invite cannot use it again ('revoked').
//            The admission takes the lowest free host address of the range, or is void with
//            'range full'.
//   revoke   kick: by an administrator (not of the founder, who can only leave). leave: by the
//            member. Frees the address for later admissions; drops administrator rights.
//   grant    By the founder, while a member, of a member: makes it an administrator.
//
// Records are last-writer-wins per member by `seq`; two different records with the same seq are
// decided by the larger event id, so every member keeps the same one whatever order they came in.
// A record counts only while its member is in the fold, and only if it was made after the
// member's latest revocation (at > revocation's at).
//
// Trust in the network itself: construct the ledger with the NetworkInfo from the invite (or the
// store); then only that exact genesis is accepted. With only an id, or nothing, the first
// genesis added is adopted (trust on first use) and a different one is 'invalid'.
//
// Known limit (inherent to ordering by signed timestamps without causal links): a former member
// can still sign events dated before its revocation. Admissions also need a valid, unexpired
// invite with uses left, which bounds what a former non-administrator can do.
//
// Exported API:
//   interface Member { peerId, name, meshIp, admin, admittedAt, admittedBy, record: RecordBody|null,
//                      founder: boolean, admission: string (event id), invite: string|null }
//   interface Rejection { id, reason, type, by, at }
//   type AddStatus = 'new' | 'known' | 'invalid';  interface AddResult { status, id?, reason? }
//   class Ledger {
//     constructor(network?: string | NetworkInfo)
//     add(env: unknown): AddStatus          any envelope; validates shape and signature itself
//     ingest(env: unknown): AddResult       the same, with the event id and why it was invalid
//     addAll(envs: Iterable<unknown>): { new, known, invalid }   one onChange for the batch
//     has(id): boolean; get(id): SignedEnvelope | null; ids(): string[]; digest(): string
//     events(): SignedEnvelope<EventBody>[]      every stored event (valid or not), in fold order
//     records(): SignedEnvelope<RecordBody>[]    the records that count (current members)
//     recordOf(peerId): SignedEnvelope<RecordBody> | null   latest stored record, member or not
//     network(): NetworkInfo | null
//     members(): Member[] (by address); member(peerId): Member | null
//     isMember(peerId); isAdmin(peerId); revoked(peerId): boolean (revoked and not readmitted)
//     addressOf(peerId): string | null; nextAddress(): string | null (null: range full)
//     checkInvite(invite: Invite | string, now: number, member?: string): string | null
//     rejected(): Rejection[]
//     onChange(cb: (ledger: Ledger) => void): () => void     called after every 'new' add
//   }
//   builders (sign with the caller's key; validate first so peers never reject what we emit):
//     newNetwork({ name, founder, cidr? }): NetworkInfo           random id and pnet key
//     genesis(key, network: NetworkInfo, now): Promise<SignedEnvelope<GenesisBody>>
//     admit(key, { network, member, name, invite: Invite | token | null }, now)
//         : Promise<SignedEnvelope<AdmitBody>>     a token that does not parse: InviteError
//     revoke(key, { network, member, reason? }, now): Promise<SignedEnvelope<RevokeBody>>
//     grant(key, { network, member }, now): Promise<SignedEnvelope<GrantBody>>
//     record(key, { network, wgPublicKey, name, endpoints, multiaddrs, seq }, now)
//         : Promise<SignedEnvelope<RecordBody>>       member = key's peer id
//     foundNetwork(key, { name, memberName, cidr? }, now)
//         : Promise<{ network, events: [genesis, admit] }>
//   (`network` in builders: a NetworkInfo or its id.)
import { createHash, randomBytes } from 'node:crypto';
import type { PrivateKey } from '@libp2p/interface';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { canonicalJson, eventId, signEnvelope, type SignedEnvelope } from './signed.js';
import {
  AdmitBodySchema, EnvelopeError, GenesisBodySchema, GrantBodySchema, NetworkInfoSchema, RecordBodySchema,
  RevokeBodySchema, checkBody, intToIp, meshRange, parseEnvelope,
  type AdmitBody, type EventBody, type GenesisBody, type GrantBody, type LedgerBody, type MeshRange,
  type NetworkInfo, type RecordBody, type RevokeBody,
} from './records.js';
import { InviteError, inviteKey, parseInvite, type Invite } from './invite.js';

export const DEFAULT_CIDR = '10.0.0.0/24';

export interface Member {
  readonly peerId: string;
  /** The name it was admitted with (records carry a self-chosen name too; this one is vetted). */
  readonly name: string;
  readonly meshIp: string;
  readonly admin: boolean;
  readonly founder: boolean;
  readonly admittedAt: number;
  readonly admittedBy: string;
  /** Event id of the admission. */
  readonly admission: string;
  /** inviteKey() of the invite that admitted it; null for the founder's own admission. */
  readonly invite: string | null;
  readonly record: RecordBody | null;
}

export interface Rejection {
  readonly id: string;
  readonly reason: string;
  readonly type: string;
  readonly by: string;
  readonly at: number;
}

export type AddStatus = 'new' | 'known' | 'invalid';
export interface AddResult {
  readonly status: AddStatus;
  readonly id?: string;
  readonly reason?: string;
}

type Event = SignedEnvelope<EventBody>;
type RecordEnv = SignedEnvelope<RecordBody>;

interface MemberState {
  name: string;
  offset: number; // host number inside the range: meshIp = base + offset
  admin: boolean;
  admittedAt: number;
  admittedBy: string;
  admission: string;
  invite: string | null;
}

/** The result of one fold: recomputed lazily after the ledger changes. */
interface View {
  network: NetworkInfo | null;
  range: MeshRange | null;
  members: Map<string, MemberState>;
  /** The `at` of each peer's latest valid revocation (kept after a readmission, for records). */
  revokedAt: Map<string, number>;
  /** inviteKey -> members it admitted. */
  inviteUsers: Map<string, Set<string>>;
  used: Set<number>;
  rejected: Rejection[];
  ordered: Array<{ id: string; env: Event }>;
}

const byAtThenId = (a: { id: string; env: Event }, b: { id: string; env: Event }): number =>
  a.env.body.at - b.env.body.at || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

function lowestFree(range: MeshRange, used: Set<number>): number | null {
  // Members are few (hundreds): a scan from the first host is simpler than a free list and
  // obviously gives every member the same answer.
  for (let offset = 1; offset <= range.hosts; offset++) if (!used.has(offset)) return offset;
  return null;
}

export class Ledger {
  #networkId: string | null = null;
  #pinned: NetworkInfo | null = null; // NetworkInfo given or adopted: the only genesis accepted
  #pinnedText: string | null = null;
  readonly #events = new Map<string, Event>();
  readonly #records = new Map<string, { id: string; env: RecordEnv }>(); // by member
  readonly #invites = new Map<string, Invite | InviteError>(); // token -> parse result
  readonly #listeners = new Set<(ledger: Ledger) => void>();
  #view: View | null = null;

  constructor(network?: string | NetworkInfo) {
    if (typeof network === 'string') {
      if (!/^[0-9a-f]{32}$/.test(network)) throw new EnvelopeError('malformed', `network id must be 32 lower-case hex characters, not ${network}`);
      this.#networkId = network;
    } else if (network !== undefined) {
      this.#pin(checkBody(NetworkInfoSchema, network, 'network'));
    }
  }

  #pin(network: NetworkInfo): void {
    this.#pinned = network;
    this.#pinnedText = canonicalJson(network);
    this.#networkId = network.id;
  }

  // ---- adding ---------------------------------------------------------------------------------

  add(env: unknown): AddStatus {
    return this.ingest(env).status;
  }

  ingest(env: unknown): AddResult {
    const result = this.#ingest(env);
    if (result.status === 'new') {
      this.#view = null;
      this.#notify();
    }
    return result;
  }

  addAll(envs: Iterable<unknown>): { new: number; known: number; invalid: number } {
    const counts = { new: 0, known: 0, invalid: 0 };
    for (const env of envs) counts[this.#ingest(env).status]++;
    if (counts.new > 0) {
      this.#view = null;
      this.#notify();
    }
    return counts;
  }

  #ingest(input: unknown): AddResult {
    let env;
    try {
      env = parseEnvelope(input);
    } catch (e) {
      return { status: 'invalid', reason: (e as EnvelopeError).message };
    }
    const body = env.body;
    if (body.type === 'invite') return { status: 'invalid', reason: 'an invite is not a ledger event' };
    const id = eventId(env);
    const networkId = body.type === 'genesis' ? body.network.id : body.network;
    if (this.#networkId !== null && networkId !== this.#networkId) return { status: 'invalid', id, reason: 'other network' };

    if (body.type === 'record') return this.#addRecord(id, env as RecordEnv);
    if (this.#events.has(id)) return { status: 'known', id };
    if (body.type === 'genesis') {
      // Trust on first use when no NetworkInfo was pinned; after that, one network per ledger.
      if (this.#pinnedText === null) this.#pin(body.network);
      else if (canonicalJson(body.network) !== this.#pinnedText) return { status: 'invalid', id, reason: 'conflicting genesis: other network' };
    }
    this.#events.set(id, env as Event);
    return { status: 'new', id };
  }

  #addRecord(id: string, env: RecordEnv): AddResult {
    const known = this.#records.get(env.body.member);
    if (known) {
      const older = env.body.seq < known.env.body.seq || (env.body.seq === known.env.body.seq && id <= known.id);
      if (older) return { status: 'known', id };
    }
    this.#records.set(env.body.member, { id, env });
    return { status: 'new', id };
  }

  #notify(): void {
    let first: unknown = null;
    for (const cb of [...this.#listeners]) {
      try {
        cb(this);
      } catch (e) {
        first ??= e; // every listener runs; the ledger itself is already consistent
      }
    }
    if (first !== null) throw first;
  }

  onChange(cb: (ledger: Ledger) => void): () => void {
    this.#listeners.add(cb);
    return () => this.#listeners.delete(cb);
  }

  // ---- the fold -------------------------------------------------------------------------------

  #fold(): View {
    if (this.#view) return this.#view;
    const ordered = [...this.#events].map(([id, env]) => ({ id, env })).sort(byAtThenId);
    const view: View = {
      network: null, range: null, members: new Map(), revokedAt: new Map(), inviteUsers: new Map(),
      used: new Set(), rejected: [], ordered,
    };
    const reject = (id: string, env: Event, reason: string): void => {
      view.rejected.push({ id, reason, type: env.body.type, by: env.by, at: env.body.at });
    };

    // Every stored genesis has the pinned NetworkInfo (#ingest saw to it): the earliest is the root.
    const root = ordered.find((e) => e.env.body.type === 'genesis');
    if (!root) {
      for (const e of ordered) reject(e.id, e.env, 'waiting for genesis');
      return (this.#view = view);
    }
    const genesis = root.env.body as GenesisBody;
    const net = genesis.network;
    view.network = net;
    view.range = meshRange(net.cidr)!; // the schema accepted the cidr, so it parses
    const netText = canonicalJson(net);

    for (const { id, env } of ordered) {
      if (id === root.id) continue;
      const body = env.body;
      if (body.type === 'genesis') { reject(id, env, 'duplicate genesis'); continue; }
      if (body.network !== net.id) { reject(id, env, 'other network'); continue; }
      if (body.at < genesis.at) { reject(id, env, 'before genesis'); continue; }
      const why =
        body.type === 'admit' ? this.#applyAdmit(view, net, netText, id, env.by, body)
        : body.type === 'revoke' ? this.#applyRevoke(view, net, env.by, body)
        : this.#applyGrant(view, net, env.by, body);
      if (why !== null) reject(id, env, why);
    }
    return (this.#view = view);
  }

  #isAdmin(view: View, peerId: string): boolean {
    return view.members.get(peerId)?.admin === true;
  }

  #invite(token: string): Invite | InviteError {
    let parsed = this.#invites.get(token);
    if (parsed === undefined) {
      try {
        parsed = parseInvite(token); // no `now`: expiry is judged against the admission's time
      } catch (e) {
        parsed = e as InviteError;
      }
      this.#invites.set(token, parsed);
    }
    return parsed;
  }

  #applyAdmit(view: View, net: NetworkInfo, netText: string, id: string, by: string, body: AdmitBody): string | null {
    if (view.members.has(body.member)) return 'already a member';
    let key: string | null = null;
    if (body.invite === null) {
      if (body.member !== net.founder || by !== net.founder) return 'missing invite';
      // The founder's free admission happens once; after leaving it needs an invite like anyone.
      if (view.revokedAt.has(net.founder)) return 'revoked';
    } else {
      if (!view.members.has(by)) return 'admitter is not a member';
      const invite = this.#invite(body.invite);
      if (invite instanceof InviteError) return `bad invite: ${invite.message}`;
      if (canonicalJson(invite.network) !== netText) return 'other network';
      if (!this.#isAdmin(view, invite.issuer)) return 'issuer is not an administrator';
      if (body.at > invite.expires) return 'expired';
      key = inviteKey(invite);
      const users = view.inviteUsers.get(key);
      // Not a member now but admitted with this invite before: revoked since. Revocation is
      // forever for an invite; coming back takes a new one.
      if (users?.has(body.member)) return 'revoked';
      if ((users?.size ?? 0) >= invite.uses) return 'invite already used';
    }
    const offset = lowestFree(view.range!, view.used);
    if (offset === null) return 'range full';
    view.used.add(offset);
    if (key !== null) {
      const users = view.inviteUsers.get(key) ?? new Set<string>();
      users.add(body.member);
      view.inviteUsers.set(key, users);
    }
    view.members.set(body.member, {
      name: body.name, offset, admin: body.member === net.founder, admittedAt: body.at,
      admittedBy: by, admission: id, invite: key,
    });
    return null;
  }

  #applyRevoke(view: View, net: NetworkInfo, by: string, body: RevokeBody): string | null {
    const target = view.members.get(body.member);
    if (!target) return 'not a member';
    if (body.reason === 'kick') {
      if (!this.#isAdmin(view, by)) return 'not an administrator';
      if (body.member === net.founder && by !== net.founder) return 'cannot kick the founder';
    }
    // (leave: parseEnvelope already checked that the member signed it)
    view.members.delete(body.member);
    view.used.delete(target.offset);
    view.revokedAt.set(body.member, body.at);
    return null;
  }

  #applyGrant(view: View, net: NetworkInfo, by: string, body: GrantBody): string | null {
    if (by !== net.founder) return 'only the founder can grant';
    if (!view.members.has(net.founder)) return 'founder is not a member';
    const target = view.members.get(body.member);
    if (!target) return 'not a member';
    if (target.admin) return 'already an administrator';
    target.admin = true;
    return null;
  }

  // ---- reading --------------------------------------------------------------------------------

  has(id: string): boolean {
    if (this.#events.has(id)) return true;
    for (const r of this.#records.values()) if (r.id === id) return true;
    return false;
  }

  get(id: string): SignedEnvelope<LedgerBody> | null {
    const e = this.#events.get(id);
    if (e) return e;
    for (const r of this.#records.values()) if (r.id === id) return r.env;
    return null;
  }

  /** Ids of every stored event and record (for anti-entropy: "which of these do you lack?"). */
  ids(): string[] {
    return [...this.#events.keys(), ...[...this.#records.values()].map((r) => r.id)].sort();
  }

  /** sha256 over ids(): two ledgers with the same digest hold the same events and records. */
  digest(): string {
    return createHash('sha256').update(this.ids().join('\n')).digest('hex');
  }

  events(): SignedEnvelope<EventBody>[] {
    return this.#fold().ordered.map((e) => e.env);
  }

  records(): SignedEnvelope<RecordBody>[] {
    const out: RecordEnv[] = [];
    for (const peerId of this.#fold().members.keys()) {
      const r = this.#validRecord(peerId);
      if (r) out.push(r);
    }
    return out;
  }

  recordOf(peerId: string): SignedEnvelope<RecordBody> | null {
    return this.#records.get(peerId)?.env ?? null;
  }

  #validRecord(peerId: string): RecordEnv | null {
    const r = this.#records.get(peerId);
    const view = this.#fold();
    if (!r || (view.network !== null && r.env.body.network !== view.network.id)) return null;
    const revokedAt = view.revokedAt.get(peerId);
    // A record made before the latest revocation belongs to the old membership.
    return revokedAt !== undefined && r.env.body.at <= revokedAt ? null : r.env;
  }

  network(): NetworkInfo | null {
    return this.#fold().network ?? this.#pinned;
  }

  member(peerId: string): Member | null {
    const view = this.#fold();
    const m = view.members.get(peerId);
    if (!m) return null;
    return Object.freeze({
      peerId, name: m.name, meshIp: intToIp(view.range!.base + m.offset), admin: m.admin,
      founder: peerId === view.network!.founder, admittedAt: m.admittedAt, admittedBy: m.admittedBy,
      admission: m.admission, invite: m.invite, record: this.#validRecord(peerId)?.body ?? null,
    });
  }

  members(): Member[] {
    const view = this.#fold();
    return [...view.members.entries()]
      .sort((a, b) => a[1].offset - b[1].offset)
      .map(([peerId]) => this.member(peerId)!);
  }

  isMember(peerId: string): boolean {
    return this.#fold().members.has(peerId);
  }

  isAdmin(peerId: string): boolean {
    return this.#isAdmin(this.#fold(), peerId);
  }

  /** True if the peer's membership was revoked and it has not been admitted again since. */
  revoked(peerId: string): boolean {
    const view = this.#fold();
    return view.revokedAt.has(peerId) && !view.members.has(peerId);
  }

  addressOf(peerId: string): string | null {
    return this.member(peerId)?.meshIp ?? null;
  }

  /** The address the next admission would get now; null when the range is full (or no genesis). */
  nextAddress(): string | null {
    const view = this.#fold();
    if (!view.range) return null;
    const offset = lowestFree(view.range, view.used);
    return offset === null ? null : intToIp(view.range.base + offset);
  }

  /**
   * Whether an admission with this invite would be valid now, as far as this ledger knows: null,
   * or 'other network' | 'expired' | 'issuer is not an administrator' | 'invite already used'
   * (or the InviteError message for a token that does not parse). With `member`, a member the
   * invite already admitted passes (admitting it again is idempotent).
   */
  checkInvite(invite: Invite | string, now: number, member?: string): string | null {
    if (typeof invite === 'string') {
      const parsed = this.#invite(invite);
      if (parsed instanceof InviteError) return parsed.message;
      invite = parsed;
    }
    const view = this.#fold();
    const net = this.network();
    if (net === null || canonicalJson(invite.network) !== canonicalJson(net)) return 'other network';
    if (now > invite.expires) return 'expired';
    if (!this.#isAdmin(view, invite.issuer)) return 'issuer is not an administrator';
    const users = view.inviteUsers.get(inviteKey(invite));
    if (member !== undefined && users?.has(member)) return view.members.has(member) ? null : 'invite already used';
    if ((users?.size ?? 0) >= invite.uses) return 'invite already used';
    return null;
  }

  rejected(): Rejection[] {
    return [...this.#fold().rejected];
  }
}

// ---- builders -----------------------------------------------------------------------------------

type NetworkRef = NetworkInfo | string;
const idOf = (n: NetworkRef): string => (typeof n === 'string' ? n : n.id);

/** Signs a body after checking it, then reads it back as a peer would: what we emit, peers accept. */
async function build<B extends LedgerBody>(key: PrivateKey, body: B): Promise<SignedEnvelope<B>> {
  const env = await signEnvelope(key, body);
  return parseEnvelope(env) as SignedEnvelope<B>;
}

/** A new network description: random id and pnet key. */
export function newNetwork(opts: { name: string; founder: string; cidr?: string }): NetworkInfo {
  return checkBody(NetworkInfoSchema, {
    id: randomBytes(16).toString('hex'),
    name: opts.name,
    cidr: opts.cidr ?? DEFAULT_CIDR,
    psk: randomBytes(32).toString('hex'),
    founder: opts.founder,
  }, 'network');
}

export async function genesis(key: PrivateKey, network: NetworkInfo, now: number): Promise<SignedEnvelope<GenesisBody>> {
  return build(key, checkBody(GenesisBodySchema, { type: 'genesis', network, at: now }, 'genesis'));
}

export async function admit(
  key: PrivateKey,
  opts: { network: NetworkRef; member: string; name: string; invite: Invite | string | null },
  now: number,
): Promise<SignedEnvelope<AdmitBody>> {
  // A pasted token is normalised (whitespace, canonical form) and must at least parse: signing an
  // admission every peer would void helps nobody. Whether it is still usable is checkInvite's job.
  const invite = opts.invite === null ? null : typeof opts.invite === 'string' ? parseInvite(opts.invite).token : opts.invite.token;
  return build(key, checkBody(AdmitBodySchema, {
    type: 'admit', network: idOf(opts.network), member: opts.member, name: opts.name, invite, at: now,
  }, 'admission'));
}

/** reason defaults to 'leave' when the key is the member's own, else 'kick'. */
export async function revoke(
  key: PrivateKey,
  opts: { network: NetworkRef; member: string; reason?: 'kick' | 'leave' },
  now: number,
): Promise<SignedEnvelope<RevokeBody>> {
  const self = peerIdFromPrivateKey(key).toString();
  const reason = opts.reason ?? (opts.member === self ? 'leave' : 'kick');
  return build(key, checkBody(RevokeBodySchema, {
    type: 'revoke', network: idOf(opts.network), member: opts.member, at: now, reason,
  }, 'revocation'));
}

export async function grant(key: PrivateKey, opts: { network: NetworkRef; member: string }, now: number): Promise<SignedEnvelope<GrantBody>> {
  return build(key, checkBody(GrantBodySchema, { type: 'grant', network: idOf(opts.network), member: opts.member, at: now }, 'grant'));
}

/**
 * The member's own record. `seq` must grow with every new record (last writer wins by seq): keep
 * it in the store, or use something like max(previous + 1, now) to survive a lost store. A record
 * counts only if made after the member's latest revocation, so a member with a slow clock should
 * date it no earlier than its admission (max(now, member.admittedAt)).
 */
export async function record(
  key: PrivateKey,
  opts: {
    network: NetworkRef; wgPublicKey: string; name: string;
    endpoints: readonly string[]; multiaddrs: readonly string[]; seq: number;
  },
  now: number,
): Promise<SignedEnvelope<RecordBody>> {
  return build(key, checkBody(RecordBodySchema, {
    type: 'record', network: idOf(opts.network), member: peerIdFromPrivateKey(key).toString(),
    wgPublicKey: opts.wgPublicKey, name: opts.name, endpoints: [...opts.endpoints],
    multiaddrs: [...opts.multiaddrs], seq: opts.seq, at: now,
  }, 'record'));
}

/** A new network with its founder admitted: the two events `meshd init` stores and publishes. */
export async function foundNetwork(
  key: PrivateKey,
  opts: { name: string; memberName: string; cidr?: string },
  now: number,
): Promise<{ network: NetworkInfo; events: [SignedEnvelope<GenesisBody>, SignedEnvelope<AdmitBody>] }> {
  const founder = peerIdFromPrivateKey(key).toString();
  const network = newNetwork({ name: opts.name, founder, cidr: opts.cidr });
  const g = await genesis(key, network, now);
  const a = await admit(key, { network, member: founder, name: opts.memberName, invite: null }, now);
  return { network, events: [g, a] };
}
