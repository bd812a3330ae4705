// Shared helpers for the ledger tests (ledger, invite, attack, property): real Ed25519 identities,
// honest nodes that each sign through their own Signer and their own replica of the ledger, and a
// forger that signs whatever body an attacker would (chosen seq, prev, deps, at).
import '../../../src/util/polyfill.js';
import assert from 'node:assert/strict';
import { generateKeyPair } from '@libp2p/crypto/keys';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import type { PrivateKey } from '@libp2p/interface';
import { Ledger } from '../../../src/discovery/ledger.js';
import { Signer, foundNetwork } from '../../../src/discovery/signer.js';
import { inviteProof } from '../../../src/discovery/invite.js';
import type { EventBody, InviteBody, NetworkInfo } from '../../../src/discovery/records.js';
import { eventId, signEnvelope, type SignedEnvelope } from '../../../src/discovery/signed.js';

export type Env = SignedEnvelope<EventBody>;
/** What a forger signs: any JSON body at all. */
export type AnyEnv = SignedEnvelope<Record<string, unknown>>;

export const T0 = 1_700_000_000_000;
export const HOUR = 3_600_000;
export const WG = Buffer.alloc(32, 7).toString('base64');

export const idOf = (k: PrivateKey): string => peerIdFromPrivateKey(k).toString();
export const idOfEnv = (e: { body: unknown; by: string }): string => eventId(e);

export function newKeys(n: number): Promise<PrivateKey[]> {
  return Promise.all(Array.from({ length: n }, () => generateKeyPair('Ed25519')));
}

export interface Founded {
  network: NetworkInfo;
  genesis: Env;
  admission: Env;
  /** [genesis, the founder's admission] */
  base: Env[];
}

export async function found(founder: PrivateKey, opts: { cidr?: string; name?: string } = {}, now = T0): Promise<Founded> {
  const { network, events } = await foundNetwork(founder, { name: opts.name ?? 'home', memberName: 'founder', cidr: opts.cidr }, now);
  return { network, genesis: events[0], admission: events[1], base: [...events] };
}

/** The half of an invite a joiner holds (from the token): the event id and the secret. */
export interface InviteHandle {
  id: string;
  secret: Uint8Array;
  envelope: SignedEnvelope<InviteBody>;
}

/**
 * An honest node: its own replica of the ledger and a Signer over it, as meshd runs. It signs from
 * whatever its replica holds; `receive` is gossip.
 */
export class Node {
  readonly id: string;
  readonly ledger: Ledger;
  readonly signer: Signer;

  constructor(readonly key: PrivateKey, readonly network: NetworkInfo, events: Iterable<unknown> = []) {
    this.id = idOf(key);
    this.ledger = new Ledger(network);
    this.signer = new Signer(key, this.ledger);
    this.receive(events);
  }

  /** Adds events (none may be invalid: honest gossip); returns this. */
  receive(events: Iterable<unknown> | Ledger | Node): this {
    const list = events instanceof Node ? events.ledger.events() : events instanceof Ledger ? events.events() : events;
    const counts = this.ledger.addAll(list);
    assert.equal(counts.invalid, 0, `${this.id.slice(-6)} received invalid events`);
    return this;
  }

  async invite(now: number, opts: { uses?: number; ttlMs?: number } = {}): Promise<InviteHandle> {
    const { envelope, secret } = await this.signer.issueInvite({ uses: opts.uses, ttlMs: opts.ttlMs ?? HOUR }, now);
    return { id: eventId(envelope), secret, envelope };
  }

  /** Admits `member` with the proof the joiner made from the invite's secret. */
  admit(member: string, inv: InviteHandle, now: number, opts: { name?: string; ip?: string; proofFor?: string } = {}): Promise<Env> {
    const proof = inviteProof(inv.secret, { network: this.network.id, invite: inv.id, member: opts.proofFor ?? member });
    return this.signer.sign({ type: 'admit', member, name: opts.name ?? nameOf(member), ip: opts.ip, invite: inv.id, proof }, now);
  }

  kick(member: string, now: number): Promise<Env> {
    return this.signer.sign({ type: 'revoke', member, reason: 'kick' }, now);
  }

  leave(now: number): Promise<Env> {
    return this.signer.sign({ type: 'revoke', member: this.id, reason: 'leave' }, now);
  }

  grant(member: string, now: number): Promise<Env> {
    return this.signer.sign({ type: 'grant', member }, now);
  }

  cancel(invite: string, now: number): Promise<Env> {
    return this.signer.sign({ type: 'cancel', invite }, now);
  }
}

/** A default member name from a peer id: lower-case, hostname-like. */
export function nameOf(peerId: string): string {
  return `n${peerId.slice(-8).toLowerCase().replace(/[^a-z0-9]/g, 'x')}`;
}

/** The link fields of an event that follows `prev` (the signer's previous event) and has seen `deps`. */
export function linkAfter(prev: { body: unknown; by: string } | null, deps: Array<{ body: unknown; by: string }>, at: number): {
  seq: number; prev: string | null; deps: string[]; at: number;
} {
  const prevId = prev === null ? null : eventId(prev);
  const seq = prev === null ? 1 : (prev.body as { seq: number }).seq + 1;
  const depIds = [...new Set(deps.map((d) => eventId(d)))].filter((d) => d !== prevId).sort();
  return { seq, prev: prevId, deps: depIds, at };
}

/**
 * Signs an arbitrary body as `key`: what an attacker holding a member's key can produce. Nothing is
 * checked; `network` is filled in unless the body has one.
 */
export function forge(key: PrivateKey, network: NetworkInfo, body: Record<string, unknown>): Promise<AnyEnv> {
  return signEnvelope(key, { network: network.id, ...body });
}

/**
 * An attacker's own chain: it remembers its last event so that it can sign more, each with
 * whatever deps it likes (a kicked administrator that kept its state, a node restored from an old
 * backup that signs at a position it already used).
 */
export class Forger {
  readonly id: string;
  last: { body: unknown; by: string } | null;

  constructor(readonly key: PrivateKey, readonly network: NetworkInfo, last: { body: unknown; by: string } | null = null) {
    this.id = idOf(key);
    this.last = last;
  }

  /** The signer's latest event in a ledger (its chain head there), or null. */
  static from(key: PrivateKey, network: NetworkInfo, ledger: Ledger): Forger {
    const prev = ledger.nextLink(idOf(key)).prev;
    return new Forger(key, network, prev === null ? null : ledger.get(prev));
  }

  /** Signs `body` after `prev` (default: its own last event), with these deps; becomes its last. */
  async sign(body: Record<string, unknown>, deps: Array<{ body: unknown; by: string }>, at: number, prev = this.last): Promise<AnyEnv> {
    const env = await forge(this.key, this.network, { ...body, ...linkAfter(prev, deps, at) });
    this.last = env;
    return env;
  }

  admit(member: string, inv: { id: string; secret: Uint8Array } | null, deps: Array<{ body: unknown; by: string }>, at: number, opts: { ip?: string; prev?: { body: unknown; by: string } | null } = {}): Promise<AnyEnv> {
    const proof = inv === null ? null : inviteProof(inv.secret, { network: this.network.id, invite: inv.id, member });
    return this.sign({ type: 'admit', member, name: nameOf(member), ip: opts.ip ?? '10.0.0.200', invite: inv?.id ?? null, proof }, deps, at, opts.prev === undefined ? this.last : opts.prev);
  }
}

/** Everything two ledgers must agree on once they hold the same events. */
export function view(l: Ledger, now = T0): unknown {
  return {
    members: l.members().map((m) => [m.peerId, m.name, m.meshIp, m.admin, m.founder, m.admission, m.invite, m.record?.seq ?? null]),
    rejected: l.rejected().map((r) => [r.id, r.reason]),
    invites: l.invites(now).map((i) => [i.id, i.used, i.uses]),
    next: l.nextAddress(),
    digest: l.digest(),
    size: l.size(),
  };
}

export function ledgerOf(network: NetworkInfo | string | undefined, envs: Iterable<unknown>, opts: { allowInvalid?: boolean } = {}): Ledger {
  const l = new Ledger(network);
  const counts = l.addAll(envs);
  if (!opts.allowInvalid) assert.equal(counts.invalid, 0, 'an envelope was invalid');
  return l;
}

/** Why the ledger does not count an event (after adding it), or null when it counts. */
export function reasonFor(l: Ledger, env: unknown): string | null {
  const r = l.ingest(env);
  assert.ok(r.status === 'new' || r.status === 'known', `not stored: ${r.status} ${r.reason ?? ''}`);
  return l.reasonOf(r.id!);
}

export function* permutations<T>(items: T[]): Generator<T[]> {
  if (items.length <= 1) {
    yield items;
    return;
  }
  for (let i = 0; i < items.length; i++) {
    const rest = [...items.slice(0, i), ...items.slice(i + 1)];
    for (const p of permutations(rest)) yield [items[i], ...p];
  }
}

/** A deterministic random source (mulberry32), so a failure reproduces from its seed. */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function shuffled<T>(items: readonly T[], seed: number): T[] {
  const rnd = rng(seed);
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

/** The members' peer ids, sorted. */
export function memberIds(l: Ledger): string[] {
  return l.members().map((m) => m.peerId).sort();
}

/**
 * The fold order computed independently of the ledger: height (1 + the highest parent's, the
 * genesis 0), then event id. Only for complete histories.
 */
export function foldOrder(envs: Iterable<{ body: unknown; by: string }>): string[] {
  const byId = new Map<string, { prev: string | null; deps: string[] }>();
  for (const e of envs) {
    const b = e.body as { prev: string | null; deps: string[] };
    byId.set(eventId(e), { prev: b.prev, deps: b.deps });
  }
  const heights = new Map<string, number>();
  const height = (id: string): number => {
    const known = heights.get(id);
    if (known !== undefined) return known;
    const e = byId.get(id);
    assert.ok(e, `missing parent ${id}`);
    const parents = e.prev === null ? e.deps : [e.prev, ...e.deps];
    const h = parents.length === 0 ? 0 : 1 + Math.max(...parents.map(height));
    heights.set(id, h);
    return h;
  };
  return [...byId.keys()].sort((a, b) => height(a) - height(b) || (a < b ? -1 : a > b ? 1 : 0));
}
