// The membership ledger: a grow-only DAG of signed events that every member folds into the same
// view (who is a member, with which mesh address, who administers, which invites are open), plus
// each member's latest self-signed record (WireGuard key, endpoints, multiaddrs). Pure: no I/O,
// no clock; every time comes from the events or from the caller.
//
// Causal history, not timestamps (records.ts has the shapes). Every event names its signer's
// previous event (`prev`: a per-signer hash chain, position `seq`) and the heads of the ledger its
// signer had seen (`deps`). An event is stored only once its whole history is here; until then it
// is held (anti-entropy fetches the rest; `hold: false` refuses instead, for what a non-member
// sends) and never guessed. Whether it is stored at all depends on its history alone, so every
// ledger stores the same events: a signer's first event must have an admission of it in its past
// (a node never admitted adds nothing), each later one must follow its previous, and a network
// has one genesis. The fold applies stored events in a
// deterministic topological order: by height (1 + the highest parent's), then by event id. `at`
// (the signer's wall clock) judges one thing only: invite expiry, by the admitting member's clock.
//
//   genesis  The root (one per network: the pinned NetworkInfo). The founder is administrator 0.
//   admit    By a member, of a node that was never removed: either the founder admitting itself
//            (once, invite null), or with an open invite event and the joiner's proof that it
//            holds the invite's secret (invite.ts), `at <= expires`, uses left (a use is one
//            distinct member). The member gets the address the admitter chose when it is free,
//            else the lowest free one ('range full' voids it); a taken name gets -2, -3, ...
//   revoke   leave: by the member. kick: by an administrator senior to the member (the founder
//            outranks all, then administrators in the order the founder granted them; a kick of
//            a senior is void; nobody kicks the founder). Revocation is forever for an identity:
//            a removed machine comes back only as a new identity with an open invite. Invites
//            issued by a removed administrator die with it.
//   grant    By the founder, of a member: an administrator, ranked by the grant's place in the
//            founder's chain.
//   invite   By an administrator: { key, expires, uses } (the secret never enters the ledger).
//   cancel   By an administrator, of an open invite.
//   routes   By an administrator, of a member: the prefixes it may route for the mesh (the latest
//            in fold order counts; what the member advertises in its record is used only where
//            approved, so no member pulls in traffic for a prefix by saying so).
//   device   By an administrator: a plain WireGuard device (a phone, a laptop) hosted by a member,
//            { member: the host, name, wgPublicKey, ip }. It gets an address from the same pool
//            as members (the one chosen when free, else the lowest free one; 'range full' voids
//            it); its name must be free among members and devices, its key unused by another
//            device. Only the public key is here: the private key never enters the ledger.
//            A device goes with its host: removing the member removes its devices and frees
//            their addresses.
//   undevice By an administrator, of a device event: the device is removed, its address freed.
//
// A revocation's causal past is its cut. Every event of the removed member that the revoker had
// not seen when it revoked is void, whatever its timestamp: a backdated admission, grant, kick or
// invite by a former member never counts, and an honest admission made concurrently by a member
// being removed is void too (the safe side: that node asks for a new invite). Likewise an admission
// with an invite is void unless it is in the causal past of the invite's cancel and of its issuer's
// revocation, if any. Since a cut can void a revocation (of a member by a former member), the fold
// repeats until the set of cuts is stable (a fixed point; in practice one or two passes).
//
// Equivocation: a signer that signed two events at the same chain position is removed when the
// fold reaches the first of them, and its events from that position on are void (both branches),
// the same on every member whatever arrived first. An honest meshd never does this: it persists
// each event before it publishes it. (A node restored from an old backup would: it is removed.)
//
// Conflicts resolve by the fold order: of two concurrent admissions with a single-use invite, the
// one first in (height, id) order wins; two administrators kicking each other: only the senior's
// kick counts; two admissions choosing one address: the first keeps it, the other gets the lowest
// free one.
//
// Costs: adding an event that lands at the end of the order applies it to the last view
// (O(1)); anything else refolds lazily on the next read, O(n) a pass. 10,000 events fold in tens
// of milliseconds (test/unit/ledger-attack.test.ts). Held events and held records are bounded.
//
// Records are last-writer-wins per member by `seq` (a persisted counter); two different records
// with the same seq are decided by the larger id. A record counts while its member is a member.
// Records of nodes never admitted in this ledger are held (bounded) until their admission comes.
//
// Trust in the network itself: construct the ledger with the NetworkInfo from the invite (or the
// store); then only that exact genesis is accepted. With only an id, or nothing, the first
// genesis added is adopted (trust on first use) and a different one is 'invalid'.
//
// Exported API:
//   interface Member { peerId, name, meshIp, admin, founder, admittedAt, admittedBy, admission,
//                      invite: string | null (invite event id), routes: approved prefixes,
//                      record: RecordBody | null }
//   interface Device { id (its device event), name, host (peer id), wgPublicKey, ip, addedBy, at }
//   interface OpenInvite { id, issuer, expires, uses, used: number, at }
//   interface Rejection { id, reason, type, by, at }
//   type AddStatus = 'new' | 'known' | 'pending' | 'invalid'
//   interface AddResult { status, id?, reason? }
//   class Ledger {
//     constructor(network?: string | NetworkInfo, limits?: { maxHeld?: number; maxHeldRecords?: number })
//     add(env): AddStatus; ingest(env, { hold? }): AddResult
//     addAll(envs, { hold? }): { new, known, pending, invalid }   parents first, whatever the order
//         'new' also counts held events released by this one (ingest's result is for env itself)
//     has(id); get(id); heads(): string[]; digest(): string; recordsDigest(): string
//     events(): stored events, parents first (fold order); size(): how many
//     since(heads): stored events not in the causal past of those heads, parents first
//     held(): number; missing(): ids that held events wait for
//     records(); recordOf(peerId) (latest stored, member or not)
//     nextLink(signer): { seq, prev, deps }   what the signer's next event must carry
//     network(); members() (by address); member(peerId); isMember; isAdmin; revoked(peerId)
//     addressOf(peerId); nextAddress(); freeName(name): string
//     devices(): Device[] (by address); device(nameOrId): Device | null
//     invites(now): OpenInvite[]; inviteInfo(id): OpenInvite & { open, reason } | null
//     checkAdmission({ invite: id, member }, now): string | null   would an admission pass now?
//     rejected(): Rejection[]; reasonOf(id): string | null
//     onChange(cb): () => void       called after every add that stored something
//   }
import { createHash } from 'node:crypto';
import { canonicalJson, eventId, type SignedEnvelope } from './signed.js';
import {
  EnvelopeError, LEDGER_VERSION, MAX_DEPS, NetworkInfoSchema, checkBody, intToIp, ipToInt, meshRange, parseEnvelope,
  type AdmitBody, type DeviceBody, type EventBody, type LedgerBody, type MeshRange, type NetworkInfo, type RecordBody,
} from './records.js';
import { verifyInviteProof } from './invite.js';

export const DEFAULT_CIDR = '10.0.0.0/24';
export { LEDGER_VERSION };

export interface Member {
  readonly peerId: string;
  /** The name it was admitted with, made unique (records carry a self-chosen name too). */
  readonly name: string;
  readonly meshIp: string;
  readonly admin: boolean;
  readonly founder: boolean;
  readonly admittedAt: number;
  readonly admittedBy: string;
  /** Event id of the admission. */
  readonly admission: string;
  /** Event id of the invite that admitted it; null for the founder's own admission. */
  readonly invite: string | null;
  /** Prefixes an administrator approved this member to route (used where its record advertises them). */
  readonly routes: readonly string[];
  readonly record: RecordBody | null;
}

/** A plain WireGuard device hosted by a member (`meshd client add`). */
export interface Device {
  /** Event id of its device event. */
  readonly id: string;
  readonly name: string;
  /** Peer id of the hosting member. */
  readonly host: string;
  readonly wgPublicKey: string;
  readonly ip: string;
  readonly addedBy: string;
  readonly at: number;
}

export interface OpenInvite {
  readonly id: string;
  readonly issuer: string;
  readonly expires: number;
  readonly uses: number;
  readonly used: number;
  /** When it was issued (the issuer's clock). */
  readonly at: number;
}

export interface Rejection {
  readonly id: string;
  readonly reason: string;
  readonly type: string;
  readonly by: string;
  readonly at: number;
}

export type AddStatus = 'new' | 'known' | 'pending' | 'invalid';
export interface AddResult {
  readonly status: AddStatus;
  readonly id?: string;
  readonly reason?: string;
}

type Event = SignedEnvelope<EventBody>;
type RecordEnv = SignedEnvelope<RecordBody>;

/** A stored event with what the fold needs precomputed. */
interface Node {
  readonly id: string;
  readonly env: Event;
  readonly parents: readonly string[];
  readonly height: number;
}

interface MemberState {
  name: string;
  offset: number;
  admin: boolean;
  /** Seniority among administrators: 0 for the founder, the grant's chain position otherwise. */
  rank: number;
  admittedAt: number;
  admittedBy: string;
  admission: string;
  invite: string | null;
  routes: readonly string[];
}

interface DeviceState {
  name: string;
  host: string;
  wgPublicKey: string;
  offset: number;
  addedBy: string;
  at: number;
}

interface InviteState {
  issuer: string;
  key: string;
  expires: number;
  uses: number;
  at: number;
  users: Set<string>;
  /** Why it no longer admits anyone ('cancelled', 'issuer removed'), or null while open. */
  dead: string | null;
}

/** Events that void others outside their causal past, found by one pass. */
interface Cuts {
  /** member -> ids of valid revocations of it. */
  revocations: Map<string, string[]>;
  /** invite id -> ids of its valid cancel and of its issuer's valid revocations. */
  deadInvites: Map<string, string[]>;
}

/** The result of one fold. */
interface View {
  network: NetworkInfo;
  range: MeshRange;
  rootId: string;
  members: Map<string, MemberState>;
  /** Removed identities: peer id -> why ('kick', 'leave', 'equivocation'). */
  removed: Map<string, string>;
  names: Map<string, string>;
  invites: Map<string, InviteState>;
  /** device event id -> device. */
  devices: Map<string, DeviceState>;
  used: Set<number>;
  founderAdmitted: boolean;
  rejected: Rejection[];
  reasons: Map<string, string>;
  cuts: Cuts;
  found: Cuts;
  /** Effective fork positions by signer, under `cuts`. */
  forks: Map<string, number | null>;
  /** Members removed for equivocation in this pass, as they were: a revocation of one still cuts. */
  equivocators: Map<string, MemberState>;
  /** How many events of the order this view has applied. */
  applied: number;
}

const MAX_PASSES = 6;
const byHeightThenId = (a: Node, b: Node): number => a.height - b.height || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
const emptyCuts = (): Cuts => ({ revocations: new Map(), deadInvites: new Map() });
const short = (id: string): string => id.slice(0, 12);

function cutsKey(c: Cuts): string {
  const parts: string[] = [];
  for (const [k, v] of c.revocations) parts.push(`r${k}:${[...v].sort().join(',')}`);
  for (const [k, v] of c.deadInvites) parts.push(`i${k}:${[...v].sort().join(',')}`);
  return parts.sort().join('|');
}

function pushTo(map: Map<string, string[]>, key: string, value: string): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}

export class Ledger {
  #networkId: string | null = null;
  #pinned: NetworkInfo | null = null;
  #pinnedText: string | null = null;
  readonly #maxHeld: number;
  readonly #maxHeldRecords: number;

  readonly #nodes = new Map<string, Node>();
  #order: Node[] = [];
  #orderSorted = true;
  readonly #heads = new Set<string>();
  /** signer -> seq -> event ids at that chain position (two: equivocation). */
  readonly #chains = new Map<string, Map<number, string[]>>();
  /** signer -> its highest stored chain position and that event's id. */
  readonly #chainHead = new Map<string, { seq: number; id: string }>();
  /** signer -> lowest chain position at which it signed two events. */
  readonly #forks = new Map<string, number>();
  /** Everyone some stored admission names (and the founder): who may add events at all. */
  readonly #admitted = new Set<string>();
  /** Held events: id -> envelope and the parents it waits for. */
  readonly #held = new Map<string, { env: Event; waiting: Set<string> }>();
  readonly #waiters = new Map<string, Set<string>>();
  /** Past vectors (signer -> highest chain position in the causal past), for cuts; never change. */
  readonly #vectors = new Map<string, Map<string, number>>();
  /** Causal pasts as sets, for cuts against signers that forked their chain; never change. */
  readonly #pasts = new Map<string, Set<string>>();

  readonly #records = new Map<string, { id: string; env: RecordEnv }>();
  readonly #heldRecords = new Map<string, { id: string; env: RecordEnv }>();
  readonly #listeners = new Set<(ledger: Ledger) => void>();
  #view: View | null = null;
  #stale = true;

  constructor(network?: string | NetworkInfo, limits: { maxHeld?: number; maxHeldRecords?: number } = {}) {
    if (typeof network === 'string') {
      if (!/^[0-9a-f]{32}$/.test(network)) throw new EnvelopeError('malformed', `network id must be 32 lower-case hex characters, not ${network}`);
      this.#networkId = network;
    } else if (network !== undefined) {
      this.#pin(checkBody(NetworkInfoSchema, network, 'network'));
    }
    this.#maxHeld = limits.maxHeld ?? 10_000;
    this.#maxHeldRecords = limits.maxHeldRecords ?? 1_024;
  }

  #pin(network: NetworkInfo): void {
    this.#pinned = network;
    this.#pinnedText = canonicalJson(network);
    this.#networkId = network.id;
    this.#admitted.add(network.founder);
  }

  // ---- adding ---------------------------------------------------------------------------------

  add(env: unknown): AddStatus {
    return this.ingest(env).status;
  }

  /** `hold: false`: an event whose history is missing is refused instead of held (from a non-member). */
  ingest(env: unknown, opts: { hold?: boolean } = {}): AddResult {
    const stored = { count: 0 };
    const result = this.#ingest(env, stored, opts.hold ?? true);
    if (stored.count > 0) this.#notify();
    return result;
  }

  /** Adds a batch, parents before children whatever order it came in (a store's key order). */
  addAll(envs: Iterable<unknown>, opts: { hold?: boolean } = {}): { new: number; known: number; pending: number; invalid: number } {
    const counts = { new: 0, known: 0, pending: 0, invalid: 0 };
    const stored = { count: 0 };
    for (const env of parentsFirst([...envs])) {
      const before = stored.count;
      const status = this.#ingest(env, stored, opts.hold ?? true).status;
      if (status === 'new') counts.new += stored.count - before;
      else counts[status]++;
    }
    if (stored.count > 0) this.#notify();
    return counts;
  }

  #ingest(input: unknown, stored: { count: number }, hold: boolean): AddResult {
    const copy = this.#storedCopy(input);
    if (copy !== null) return { status: 'known', id: copy };
    let env;
    try {
      env = parseEnvelope(input);
    } catch (e) {
      return { status: 'invalid', reason: (e as EnvelopeError).message };
    }
    const body = env.body;
    const id = eventId(env);
    const networkId = body.type === 'genesis' ? body.network.id : body.network;
    if (this.#networkId !== null && networkId !== this.#networkId) return { status: 'invalid', id, reason: 'other network' };
    if (body.type === 'record') return this.#addRecord(id, env as RecordEnv, stored);
    if (this.#nodes.has(id) || this.#held.has(id)) return { status: 'known', id };
    const ev = env as Event;
    if (body.type === 'genesis') {
      // Trust on first use when no NetworkInfo was pinned; after that, one network per ledger.
      if (this.#pinnedText === null) this.#pin(body.network);
      else if (canonicalJson(body.network) !== this.#pinnedText) return { status: 'invalid', id, reason: 'conflicting genesis: other network' };
    }
    const parents = body.prev === null ? [...body.deps] : [body.prev, ...body.deps];
    const waiting = new Set(parents.filter((p) => !this.#nodes.has(p)));
    if (waiting.size > 0) {
      if (!hold) return { status: 'invalid', id, reason: 'its history is missing (not held: it came from a non-member)' };
      if (this.#held.size >= this.#maxHeld) return { status: 'invalid', id, reason: 'too many events waiting for their history' };
      this.#held.set(id, { env: ev, waiting });
      for (const p of waiting) {
        let set = this.#waiters.get(p);
        if (!set) this.#waiters.set(p, (set = new Set()));
        set.add(id);
      }
      return { status: 'pending', id };
    }
    const why = this.#store(id, ev, parents, stored);
    return why === null ? { status: 'new', id } : { status: 'invalid', id, reason: why };
  }

  /**
   * Stores an event whose parents are all here, then every held event that waited only for it.
   * Iterative: a held chain released at once can be as long as maxHeld (recursion overflowed).
   */
  #store(id: string, env: Event, parents: readonly string[], stored: { count: number }): string | null {
    const why = this.#storeOne(id, env, parents, stored);
    if (why !== null) {
      this.#dropWaitersOf(id);
      return why;
    }
    const ready = [id];
    while (ready.length > 0) {
      const done = ready.pop()!;
      const waiters = this.#waiters.get(done);
      if (!waiters) continue;
      this.#waiters.delete(done);
      for (const w of waiters) {
        const h = this.#held.get(w);
        if (!h) continue;
        h.waiting.delete(done);
        if (h.waiting.size === 0) {
          this.#held.delete(w);
          const b = h.env.body;
          if (this.#storeOne(w, h.env, b.prev === null ? [...b.deps] : [b.prev, ...b.deps], stored) === null) ready.push(w);
          else this.#dropWaitersOf(w);
        }
      }
    }
    return null;
  }

  /** Stores one event whose parents are all here; null, or why it cannot be stored. */
  #storeOne(id: string, env: Event, parents: readonly string[], stored: { count: number }): string | null {
    const why = this.#admissible(env, parents);
    if (why !== null) return why;
    let height = 0;
    for (const p of parents) height = Math.max(height, this.#nodes.get(p)!.height + 1);
    const node: Node = { id, env, parents, height };
    this.#nodes.set(id, node);
    stored.count++;
    for (const p of parents) this.#heads.delete(p);
    this.#heads.add(id);
    const body = env.body;
    let chain = this.#chains.get(env.by);
    if (!chain) this.#chains.set(env.by, (chain = new Map()));
    const atSeq = chain.get(body.seq);
    let forked = false;
    if (atSeq) {
      atSeq.push(id);
      const f = this.#forks.get(env.by);
      if (f === undefined || body.seq < f) this.#forks.set(env.by, body.seq);
      forked = true;
    } else chain.set(body.seq, [id]);
    const head = this.#chainHead.get(env.by);
    if (!head || body.seq > head.seq || (body.seq === head.seq && id < head.id)) this.#chainHead.set(env.by, { seq: body.seq, id });
    if (body.type === 'admit') {
      this.#admitted.add(body.member);
      const r = this.#heldRecords.get(body.member);
      if (r) {
        this.#heldRecords.delete(body.member);
        this.#addRecord(r.id, r.env, stored);
      }
    }

    const last = this.#order[this.#order.length - 1];
    const appended = this.#orderSorted && (last === undefined || byHeightThenId(last, node) < 0);
    this.#order.push(node);
    if (!appended) this.#orderSorted = false;
    // The fast path: an event at the end of the order that cannot change any cut is applied to
    // the last view; everything else refolds on the next read.
    if (appended && !forked && !this.#stale && this.#view && this.#view.applied === this.#order.length - 1
      && body.type !== 'revoke' && body.type !== 'cancel' && body.type !== 'genesis') {
      this.#applyOne(this.#view, node);
      this.#view.applied++;
    } else {
      this.#stale = true;
    }
    return null;
  }

  /**
   * Whether a complete event may be stored at all (the fold decides whether it counts). Decided
   * by the event's own causal past only, so every ledger stores the same events whatever order
   * they came in: a signer's first event must have an admission of it in its past (its later
   * events reach that one through prev), so a node never admitted cannot add events at all.
   */
  #admissible(env: Event, parents: readonly string[]): string | null {
    const body = env.body;
    if (body.type === 'genesis') {
      // One root per network. A second genesis could only come from the founder's key (a former
      // founder's, say): refused, so it cannot turn the founder's whole chain into a fork.
      return this.#order.some((n) => n.env.body.type === 'genesis') ? 'a network has one genesis' : null;
    }
    if (parents.length === 0) return 'no parent';
    if (body.prev !== null) {
      const prev = this.#nodes.get(body.prev)!;
      if (prev.env.by !== env.by || prev.env.body.seq !== body.seq - 1) return "prev is not its signer's previous event";
      return null;
    }
    return this.#admittedInPast(env.by, parents) ? null : 'its signer was never admitted';
  }

  /** Is there an admission of `member` among these events or their ancestors? */
  #admittedInPast(member: string, from: readonly string[]): boolean {
    if (!this.#admitted.has(member)) return false; // no stored admission names it at all
    const seen = new Set<string>(from);
    const stack = [...from];
    while (stack.length > 0) {
      const node = this.#nodes.get(stack.pop()!)!;
      const b = node.env.body;
      if (b.type === 'admit' && b.member === member) return true;
      for (const p of node.parents) {
        if (!seen.has(p)) {
          seen.add(p);
          stack.push(p);
        }
      }
    }
    return false;
  }

  #dropWaitersOf(id: string): void {
    // A held event waiting for an event that turned out invalid can never be stored; nor can
    // whatever waits for it (iteratively: the chain can be long).
    const stack = [id];
    while (stack.length > 0) {
      const gone = stack.pop()!;
      const waiters = this.#waiters.get(gone);
      if (!waiters) continue;
      this.#waiters.delete(gone);
      for (const w of waiters) {
        const h = this.#held.get(w);
        if (!h) continue;
        this.#held.delete(w);
        for (const p of h.waiting) {
          const set = this.#waiters.get(p);
          set?.delete(w);
          if (set?.size === 0) this.#waiters.delete(p); // else missing() would still name p
        }
        stack.push(w);
      }
    }
  }

  /**
   * The id of an entry this ledger already holds, when `input` is that entry again: the same body
   * and signer (so the same id) and the same signature. It was parsed and verified when it was
   * stored, so it is not again: gossip and exchanges bring every entry several times, and parsing
   * (zod) and verifying (Ed25519) each copy was a large part of what a member spent on another's
   * join (issue 11). Anything else, a copy with another signature included, takes the full path.
   */
  #storedCopy(input: unknown): string | null {
    try {
      if (input === null || typeof input !== 'object' || Object.keys(input).length !== 3) return null;
      const { body, by, sig } = input as { body?: unknown; by?: unknown; sig?: unknown };
      if (typeof by !== 'string' || typeof sig !== 'string' || body === null || typeof body !== 'object') return null;
      const id = eventId({ body, by });
      const member = (body as { member?: unknown }).member;
      const record = typeof member === 'string' ? (this.#records.get(member) ?? this.#heldRecords.get(member)) : undefined;
      const held = this.#nodes.get(id)?.env ?? this.#held.get(id)?.env ?? (record?.id === id ? record.env : undefined);
      return held !== undefined && held.by === by && held.sig === sig ? id : null;
    } catch {
      return null; // a getter that throws, a body that is not JSON: the full path says why
    }
  }

  #addRecord(id: string, env: RecordEnv, stored: { count: number }): AddResult {
    const member = env.body.member;
    if (!this.#admitted.has(member)) {
      const held = this.#heldRecords.get(member);
      if (held && (env.body.seq < held.env.body.seq || (env.body.seq === held.env.body.seq && id <= held.id))) return { status: 'known', id };
      if (!held && this.#heldRecords.size >= this.#maxHeldRecords) return { status: 'invalid', id, reason: 'too many records of non-members waiting' };
      this.#heldRecords.set(member, { id, env });
      return { status: 'pending', id };
    }
    const known = this.#records.get(member);
    if (known) {
      const older = env.body.seq < known.env.body.seq || (env.body.seq === known.env.body.seq && id <= known.id);
      if (older) return { status: 'known', id };
    }
    this.#records.set(member, { id, env });
    stored.count++;
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

  // ---- the causal structure -------------------------------------------------------------------

  #ordered(): Node[] {
    if (!this.#orderSorted) {
      this.#order.sort(byHeightThenId);
      this.#orderSorted = true;
    }
    return this.#order;
  }

  /** signer -> highest chain position in the causal past of `id` (itself included). */
  #vector(id: string): Map<string, number> {
    let vc = this.#vectors.get(id);
    if (vc) return vc;
    vc = new Map();
    const seen = new Set<string>([id]);
    const stack = [id];
    while (stack.length > 0) {
      const node = this.#nodes.get(stack.pop()!)!;
      const by = node.env.by;
      if ((vc.get(by) ?? 0) < node.env.body.seq) vc.set(by, node.env.body.seq);
      for (const p of node.parents) {
        if (!seen.has(p)) {
          seen.add(p);
          stack.push(p);
        }
      }
    }
    this.#vectors.set(id, vc);
    return vc;
  }

  /** Every event id in the causal past of `id` (itself included); only for forked signers. */
  #pastSet(id: string): Set<string> {
    let past = this.#pasts.get(id);
    if (past) return past;
    past = new Set([id]);
    const stack = [id];
    while (stack.length > 0) {
      for (const p of this.#nodes.get(stack.pop()!)!.parents) {
        if (!past.has(p)) {
          past.add(p);
          stack.push(p);
        }
      }
    }
    this.#pasts.set(id, past);
    return past;
  }

  /**
   * Is event `node` in the causal past of event `of` (or `of` itself)? A signer's chain is linear,
   * so its position against the past vector decides; a signer that forked its chain is looked up
   * event by event.
   */
  #inPast(node: Node, of: string): boolean {
    if (node.id === of) return true;
    if (this.#forks.has(node.env.by)) return this.#pastSet(of).has(node.id);
    return node.env.body.seq <= (this.#vector(of).get(node.env.by) ?? 0);
  }

  /**
   * The lowest chain position at which `by` signed two events that both count as far as its
   * revocations go (a branch outside every revocation's past is void anyway: a former member
   * forking its old chain changes nothing), or null.
   */
  #effectiveFork(view: View, by: string): number | null {
    if (!this.#forks.has(by)) return null;
    const cached = view.forks.get(by);
    if (cached !== undefined) return cached;
    const revs = view.cuts.revocations.get(by) ?? [];
    let fork: number | null = null;
    const seqs = [...this.#chains.get(by)!.entries()].filter(([, ids]) => ids.length > 1).map(([seq]) => seq).sort((a, b) => a - b);
    for (const seq of seqs) {
      const ids = this.#chains.get(by)!.get(seq)!;
      const counting = ids.filter((id) => revs.every((r) => this.#inPast(this.#nodes.get(id)!, r)));
      if (counting.length > 1) {
        fork = seq;
        break;
      }
    }
    view.forks.set(by, fork);
    return fork;
  }

  // ---- the fold -------------------------------------------------------------------------------

  #fold(): View | null {
    if (!this.#stale && this.#view) return this.#view;
    const order = this.#ordered();
    const root = order.find((n) => n.env.body.type === 'genesis');
    if (!root || this.#pinned === null) {
      this.#view = null;
      this.#stale = false;
      return null;
    }
    let cuts = emptyCuts();
    let key = '';
    let view!: View;
    for (let pass = 0; pass < MAX_PASSES; pass++) {
      view = this.#newView(root, cuts);
      for (const node of order) this.#applyOne(view, node);
      view.applied = order.length;
      const nextKey = cutsKey(view.found);
      if (nextKey === key) break;
      cuts = view.found;
      key = nextKey;
    }
    this.#view = view;
    this.#stale = false;
    return view;
  }

  #newView(root: Node, cuts: Cuts): View {
    const network = this.#pinned!;
    return {
      network, range: meshRange(network.cidr)!, rootId: root.id, members: new Map(), removed: new Map(), names: new Map(),
      invites: new Map(), devices: new Map(), used: new Set(), founderAdmitted: false, rejected: [], reasons: new Map(), cuts, found: emptyCuts(), forks: new Map(), equivocators: new Map(), applied: 0,
    };
  }

  #applyOne(view: View, node: Node): void {
    const why = this.#cut(view, node) ?? this.#apply(view, node);
    if (why !== null) {
      const { env, id } = node;
      view.rejected.push(Object.freeze({ id, reason: why, type: env.body.type, by: env.by, at: env.body.at }));
      view.reasons.set(id, why);
    }
  }

  /** Why an event is void whatever it says: outside a revocation's cut, or equivocation. */
  #cut(view: View, node: Node): string | null {
    const { env } = node;
    const by = env.by;
    for (const r of view.cuts.revocations.get(by) ?? []) {
      if (!this.#inPast(node, r)) return `its signer was removed by ${short(r)}, which had not seen it`;
    }
    const fork = this.#effectiveFork(view, by);
    const body = env.body;
    if (fork !== null && body.seq >= fork) {
      if (view.members.has(by)) this.#remove(view, by, 'equivocation', null);
      // Equivocating before its admission in the fold: it never becomes a member either.
      else if (!view.removed.has(by)) view.removed.set(by, 'equivocation');
      // Its own leave still cuts: the next pass ignores a fork outside the leave's causal past
      // (a former member forking its old chain changes nothing).
      if (body.type === 'revoke' && body.member === by && view.equivocators.has(by)) this.#markCut(view, by, node.id);
      return `equivocation: its signer signed two events at position ${fork} of its chain`;
    }
    if (body.type === 'admit' && body.invite !== null) {
      for (const d of view.cuts.deadInvites.get(body.invite) ?? []) {
        if (!this.#inPast(node, d)) return `its invite was cancelled or its issuer removed by ${short(d)}, which had not seen it`;
      }
    }
    return null;
  }

  #apply(view: View, node: Node): string | null {
    const { env, id } = node;
    const body = env.body;
    const by = env.by;
    switch (body.type) {
      case 'genesis':
        return id === view.rootId ? null : 'duplicate genesis';
      case 'admit':
        return this.#applyAdmit(view, id, by, body);
      case 'revoke': {
        // A member already removed for equivocation in this pass: a kick that would have counted
        // still cuts (its fork may lie outside this cut, and then the next pass ignores it).
        const equivocator = view.members.has(body.member) ? undefined : view.equivocators.get(body.member);
        const target = view.members.get(body.member) ?? equivocator;
        if (!target) return view.removed.has(body.member) ? 'already removed' : 'not a member';
        if (body.reason === 'kick') {
          const kicker = view.members.get(by);
          if (!kicker?.admin) return 'not an administrator';
          if (body.member === view.network.founder) return 'cannot kick the founder';
          if (target.admin && !(kicker.rank < target.rank)) return 'cannot kick a more senior administrator';
        } else if (!view.members.has(by)) return 'not a member';
        if (equivocator) {
          this.#markCut(view, body.member, id);
          return 'already removed';
        }
        this.#remove(view, body.member, body.reason, id);
        return null;
      }
      case 'grant': {
        if (by !== view.network.founder) return 'only the founder can grant';
        if (!view.members.has(by)) return 'founder is not a member';
        const target = view.members.get(body.member);
        if (!target) return 'not a member';
        if (target.admin) return 'already an administrator';
        target.admin = true;
        target.rank = body.seq;
        return null;
      }
      case 'invite':
        if (!view.members.get(by)?.admin) return 'not an administrator';
        view.invites.set(id, { issuer: by, key: body.key, expires: body.expires, uses: body.uses, at: body.at, users: new Set(), dead: null });
        return null;
      case 'routes': {
        if (!view.members.get(by)?.admin) return 'not an administrator';
        const target = view.members.get(body.member);
        if (!target) return 'not a member';
        target.routes = body.approved;
        return null;
      }
      case 'device':
        return this.#applyDevice(view, id, by, body);
      case 'undevice': {
        if (!view.members.get(by)?.admin) return 'not an administrator';
        const dev = view.devices.get(body.device);
        if (!dev) return this.#nodes.get(body.device)?.env.body.type === 'device' ? 'device already removed' : 'unknown device';
        this.#removeDevice(view, body.device);
        return null;
      }
      case 'cancel': {
        if (!view.members.get(by)?.admin) return 'not an administrator';
        const inv = view.invites.get(body.invite);
        if (!inv) return 'unknown invite';
        if (inv.dead !== null) return `invite already ${inv.dead}`;
        inv.dead = 'cancelled';
        pushTo(view.found.deadInvites, body.invite, id);
        return null;
      }
    }
  }

  #remove(view: View, member: string, reason: string, revocation: string | null): void {
    const target = view.members.get(member);
    if (!target) return;
    if (reason === 'equivocation') view.equivocators.set(member, target);
    view.members.delete(member);
    view.used.delete(target.offset);
    if (view.names.get(target.name) === member) view.names.delete(target.name);
    view.removed.set(member, reason);
    for (const [devId, dev] of view.devices) if (dev.host === member) this.#removeDevice(view, devId);
    for (const [invId, inv] of view.invites) {
      if (inv.issuer !== member || inv.dead !== null) continue;
      inv.dead = 'dead: its issuer was removed';
      if (revocation !== null) pushTo(view.found.deadInvites, invId, revocation);
    }
    if (revocation !== null) pushTo(view.found.revocations, member, revocation);
  }

  /** A revocation of a member removed for equivocation: the cut it would have made. */
  #markCut(view: View, member: string, revocation: string): void {
    pushTo(view.found.revocations, member, revocation);
    for (const [invId, inv] of view.invites) {
      if (inv.issuer === member && inv.dead === 'dead: its issuer was removed') pushTo(view.found.deadInvites, invId, revocation);
    }
  }

  #applyAdmit(view: View, id: string, by: string, body: AdmitBody): string | null {
    const net = view.network;
    if (view.members.has(body.member)) return 'already a member';
    if (view.removed.has(body.member)) return 'removed: a removed identity cannot come back (it joins again as a new identity)';
    let inv: InviteState | null = null;
    if (body.invite === null) {
      if (body.member !== net.founder || by !== net.founder) return 'missing invite';
      if (view.founderAdmitted) return 'the founder admits itself only once';
    } else {
      if (!view.members.has(by)) return 'admitter is not a member';
      inv = view.invites.get(body.invite) ?? null;
      if (inv === null) return 'unknown invite';
      if (inv.dead !== null) return `invite ${inv.dead}`;
      if (view.removed.get(inv.issuer) === 'equivocation') return 'the invite issuer equivocated';
      if (body.at > inv.expires) return 'expired';
      if (inv.users.size >= inv.uses) return 'invite already used';
      if (body.proof === null || !verifyInviteProof(inv.key, body.proof, { network: net.id, invite: body.invite, member: body.member })) {
        return 'bad invite proof: the joiner did not show the invite secret';
      }
    }
    const offset = this.#offsetFor(view, body.ip);
    if (offset === null) return 'range full';
    view.used.add(offset);
    inv?.users.add(body.member);
    if (body.invite === null) view.founderAdmitted = true;
    const name = uniqueName(view.names, body.name);
    view.names.set(name, body.member);
    const founder = body.member === net.founder;
    view.members.set(body.member, {
      name, offset, admin: founder, rank: founder ? 0 : Number.MAX_SAFE_INTEGER,
      admittedAt: body.at, admittedBy: by, admission: id, invite: body.invite, routes: [],
    });
    return null;
  }

  #applyDevice(view: View, id: string, by: string, body: DeviceBody): string | null {
    if (!view.members.get(by)?.admin) return 'not an administrator';
    if (!view.members.has(body.member)) return 'its host is not a member';
    if (view.names.has(body.name)) return `name ${body.name} is taken`;
    for (const dev of view.devices.values()) if (dev.wgPublicKey === body.wgPublicKey) return `key already used by device ${dev.name}`;
    const offset = this.#offsetFor(view, body.ip);
    if (offset === null) return 'range full';
    view.used.add(offset);
    view.names.set(body.name, `device:${id}`);
    view.devices.set(id, { name: body.name, host: body.member, wgPublicKey: body.wgPublicKey, offset, addedBy: by, at: body.at });
    return null;
  }

  #removeDevice(view: View, id: string): void {
    const dev = view.devices.get(id);
    if (!dev) return;
    view.devices.delete(id);
    view.used.delete(dev.offset);
    if (view.names.get(dev.name) === `device:${id}`) view.names.delete(dev.name);
  }

  #offsetFor(view: View, ip: string): number | null {
    const n = ipToInt(ip);
    const offset = n === null ? -1 : n - view.range.base;
    if (offset >= 1 && offset <= view.range.hosts && !view.used.has(offset)) return offset;
    return lowestFree(view.range, view.used);
  }

  // ---- reading --------------------------------------------------------------------------------

  has(id: string): boolean {
    if (this.#nodes.has(id)) return true;
    for (const r of this.#records.values()) if (r.id === id) return true;
    return false;
  }

  get(id: string): SignedEnvelope<LedgerBody> | null {
    const n = this.#nodes.get(id);
    if (n) return n.env;
    for (const r of this.#records.values()) if (r.id === id) return r.env;
    return null;
  }

  size(): number {
    return this.#nodes.size;
  }

  heads(): string[] {
    return [...this.#heads].sort();
  }

  /** sha256 over the heads and the current records: equal digests, nothing to exchange. */
  digest(): string {
    return createHash('sha256').update(`${this.heads().join(',')}|${this.recordsDigest()}`).digest('hex');
  }

  recordsDigest(): string {
    return createHash('sha256').update(this.records().map((r) => eventId(r)).sort().join(',')).digest('hex');
  }

  events(): SignedEnvelope<EventBody>[] {
    return this.#ordered().map((n) => n.env);
  }

  /** Stored events outside the causal past of `heads` (unknown heads ignored), parents first. */
  since(heads: readonly string[]): SignedEnvelope<EventBody>[] {
    const past = new Set<string>();
    const stack = heads.filter((h) => this.#nodes.has(h));
    for (const h of stack) past.add(h);
    while (stack.length > 0) {
      for (const p of this.#nodes.get(stack.pop()!)!.parents) {
        if (!past.has(p)) {
          past.add(p);
          stack.push(p);
        }
      }
    }
    return this.#ordered().filter((n) => !past.has(n.id)).map((n) => n.env);
  }

  held(): number {
    return this.#held.size;
  }

  missing(): string[] {
    return [...this.#waiters.keys()].filter((id) => !this.#held.has(id)).sort();
  }

  /** What `signer`'s next event must carry: its chain position, its previous event, the heads. */
  nextLink(signer: string): { seq: number; prev: string | null; deps: string[] } {
    const head = this.#chainHead.get(signer);
    const prev = head?.id ?? null;
    let deps = [...this.#heads].filter((h) => h !== prev);
    if (deps.length > MAX_DEPS) {
      // The highest heads carry the most history; the rest are reached through later events.
      deps = deps.map((h) => this.#nodes.get(h)!).sort((a, b) => byHeightThenId(b, a)).slice(0, MAX_DEPS).map((n) => n.id);
    }
    return { seq: (head?.seq ?? 0) + 1, prev, deps: deps.sort() };
  }

  records(): SignedEnvelope<RecordBody>[] {
    const view = this.#fold();
    if (!view) return [];
    const out: RecordEnv[] = [];
    for (const peerId of view.members.keys()) {
      const r = this.#records.get(peerId);
      if (r) out.push(r.env);
    }
    return out;
  }

  recordOf(peerId: string): SignedEnvelope<RecordBody> | null {
    return this.#records.get(peerId)?.env ?? null;
  }

  network(): NetworkInfo | null {
    return this.#pinned;
  }

  member(peerId: string): Member | null {
    const view = this.#fold();
    const m = view?.members.get(peerId);
    if (!view || !m) return null;
    return Object.freeze({
      peerId, name: m.name, meshIp: intToIp(view.range.base + m.offset), admin: m.admin,
      founder: peerId === view.network.founder, admittedAt: m.admittedAt, admittedBy: m.admittedBy,
      admission: m.admission, invite: m.invite, routes: m.routes, record: this.#records.get(peerId)?.env.body ?? null,
    });
  }

  members(): Member[] {
    const view = this.#fold();
    if (!view) return [];
    return [...view.members.entries()]
      .sort((a, b) => a[1].offset - b[1].offset)
      .map(([peerId]) => this.member(peerId)!);
  }

  isMember(peerId: string): boolean {
    return this.#fold()?.members.has(peerId) ?? false;
  }

  isAdmin(peerId: string): boolean {
    return this.#fold()?.members.get(peerId)?.admin === true;
  }

  /** True if the identity was removed (kicked, left, equivocated): it never comes back. */
  revoked(peerId: string): boolean {
    return this.#fold()?.removed.has(peerId) ?? false;
  }

  /** Why an identity was removed ('kick', 'leave', 'equivocation'), or null. */
  removal(peerId: string): string | null {
    return this.#fold()?.removed.get(peerId) ?? null;
  }

  addressOf(peerId: string): string | null {
    return this.member(peerId)?.meshIp ?? null;
  }

  /** The address the next admission would get now; null when the range is full (or no genesis). */
  nextAddress(): string | null {
    const view = this.#fold();
    if (!view) return null;
    const offset = lowestFree(view.range, view.used);
    return offset === null ? null : intToIp(view.range.base + offset);
  }

  /** Plain WireGuard devices, by address. */
  devices(): Device[] {
    const view = this.#fold();
    if (!view) return [];
    return [...view.devices.entries()]
      .sort((a, b) => a[1].offset - b[1].offset)
      .map(([id, d]) => Object.freeze({
        id, name: d.name, host: d.host, wgPublicKey: d.wgPublicKey, ip: intToIp(view.range.base + d.offset), addedBy: d.addedBy, at: d.at,
      }));
  }

  /** One device by name or by its device event id, or null. */
  device(nameOrId: string): Device | null {
    return this.devices().find((d) => d.name === nameOrId || d.id === nameOrId) ?? null;
  }

  /** `name` if no member has it, else name-2, name-3, ... (what the fold would make of it). */
  freeName(name: string): string {
    const view = this.#fold();
    return view ? uniqueName(view.names, name) : name;
  }

  /** Invites that can still admit someone at `now`, newest first. */
  invites(now: number): OpenInvite[] {
    const view = this.#fold();
    if (!view) return [];
    const out: OpenInvite[] = [];
    for (const [id, inv] of view.invites) {
      if (inv.dead === null && now <= inv.expires && inv.users.size < inv.uses) out.push(openInvite(id, inv));
    }
    return out.sort((a, b) => b.at - a.at || (a.id < b.id ? -1 : 1));
  }

  /** One invite by id or unique id prefix (at least 6 hex characters), open or not. */
  inviteInfo(idOrPrefix: string, now: number): (OpenInvite & { open: boolean; reason: string | null }) | null {
    const view = this.#fold();
    if (!view || !/^[0-9a-f]{6,64}$/.test(idOrPrefix)) return null;
    const found = [...view.invites.keys()].filter((id) => id.startsWith(idOrPrefix));
    if (found.length !== 1) return null;
    const inv = view.invites.get(found[0])!;
    const reason = inv.dead ?? (now > inv.expires ? 'expired' : inv.users.size >= inv.uses ? 'used up' : null);
    return { ...openInvite(found[0], inv), open: reason === null, reason };
  }

  /**
   * Whether an admission of `member` with this invite would count now, as far as this ledger
   * knows: null, or why not ('unknown invite', 'expired', 'invite already used', 'revoked', ...).
   * A member the invite already admitted passes (asking again is answered, not re-admitted).
   */
  checkAdmission(opts: { invite: string; member: string }, now: number): string | null {
    const view = this.#fold();
    if (!view) return 'no network';
    const inv = view.invites.get(opts.invite);
    if (inv?.users.has(opts.member) && view.members.has(opts.member)) return null;
    if (view.removed.has(opts.member)) return 'revoked';
    if (view.members.has(opts.member)) return 'already a member';
    if (!inv) return this.#nodes.has(opts.invite) ? `invite not valid: ${view.reasons.get(opts.invite) ?? 'void'}` : 'unknown invite';
    if (inv.dead !== null) return `invite ${inv.dead}`;
    if (now > inv.expires) return 'expired';
    if (inv.users.size >= inv.uses) return 'invite already used';
    return null;
  }

  rejected(): Rejection[] {
    return [...(this.#fold()?.rejected ?? [])];
  }

  /** Why a stored event does not count, or null if it counts (or is unknown). */
  reasonOf(id: string): string | null {
    return this.#fold()?.reasons.get(id) ?? null;
  }
}

function openInvite(id: string, inv: InviteState): OpenInvite {
  return Object.freeze({ id, issuer: inv.issuer, expires: inv.expires, uses: inv.uses, used: inv.users.size, at: inv.at });
}

function lowestFree(range: MeshRange, used: Set<number>): number | null {
  // Members are few (hundreds): a scan from the first host is simpler than a free list and
  // obviously gives every member the same answer.
  for (let offset = 1; offset <= range.hosts; offset++) if (!used.has(offset)) return offset;
  return null;
}

function uniqueName(names: Map<string, string>, name: string): string {
  if (!names.has(name)) return name;
  for (let n = 2; ; n++) {
    const suffix = `-${n}`;
    const candidate = name.slice(0, 63 - suffix.length) + suffix;
    if (!names.has(candidate)) return candidate;
  }
}

/**
 * Envelopes reordered so that an event comes after those of its parents that are in the batch
 * (the rest keep their order). Anything that does not look like an event keeps its place.
 */
function parentsFirst(envs: unknown[]): unknown[] {
  const ids = new Map<string, number>();
  const parentsOf: Array<string[]> = envs.map(() => []);
  envs.forEach((env, i) => {
    try {
      const body = (env as { body?: { prev?: unknown; deps?: unknown } }).body;
      if (!body || typeof body !== 'object') return;
      ids.set(eventId(env as SignedEnvelope), i);
      const deps = Array.isArray(body.deps) ? body.deps.filter((d): d is string => typeof d === 'string') : [];
      parentsOf[i] = typeof body.prev === 'string' ? [body.prev, ...deps] : deps;
    } catch {
      // not JSON-able: the ledger will call it invalid wherever it is
    }
  });
  const out: unknown[] = [];
  const state = new Uint8Array(envs.length); // 0 new, 1 in progress, 2 done
  for (let start = 0; start < envs.length; start++) {
    if (state[start] !== 0) continue;
    // Iterative depth-first walk: parents (in the batch) before the event itself.
    const stack: Array<{ i: number; next: number }> = [{ i: start, next: 0 }];
    state[start] = 1;
    while (stack.length > 0) {
      const top = stack[stack.length - 1];
      const parents = parentsOf[top.i];
      if (top.next < parents.length) {
        const j = ids.get(parents[top.next++]);
        if (j !== undefined && state[j] === 0) {
          state[j] = 1;
          stack.push({ i: j, next: 0 });
        }
        continue;
      }
      state[top.i] = 2;
      out.push(envs[top.i]);
      stack.pop();
    }
  }
  return out;
}
