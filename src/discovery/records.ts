// The shapes of everything members sign, as zod schemas, and parseEnvelope(): the one door
// through which bytes from the network (push, sync, a pasted invite) become typed statements.
//
// Schemas are strict on purpose: unknown keys are rejected (a body that two versions would read
// differently must not verify as the same statement), every string is bounded, names look like
// hostnames, peer ids must be canonical Ed25519 peer ids, WireGuard keys must be 32 bytes of
// canonical base64, numbers are non-negative safe integers (canonical JSON of a safe integer is
// the same everywhere).
//
// Ledger format version 2 (LEDGER_VERSION; the genesis carries it). Every event is linked:
//   seq   its position in its signer's own chain (1, 2, ...)
//   prev  the id of the signer's previous event (null exactly when seq is 1)
//   deps  ids of the other ledger heads the signer had seen (sorted, unique, at most MAX_DEPS,
//         never prev); every event but the genesis names at least one parent
// so each event carries its causal history (ledger.ts folds in that order, not by `at`).
//
// Events (see ledger.ts for what they mean):
//   NetworkInfo  { id: 32 hex, name, cidr: 'a.b.c.d/n' (IPv4, n 8..30, host bits zero),
//                  psk: 64 hex, founder: peer id, domain?: DNS domain (absent: <name>.internal) }
//   genesis  { type, v: 2, network: NetworkInfo, seq: 1, prev: null, deps: [], at }  by founder
//   admit    { type, network: id, member, name, ip, invite: invite event id | null,
//              proof: signature by the invite key | null, ...link, at }            by a member
//   revoke   { type, network: id, member, reason: 'kick' | 'leave', ...link, at }
//   grant    { type, network: id, member, ...link, at }                             by founder
//   invite   { type, network: id, key: Ed25519 public key (base64url), expires, uses, ...link, at }
//   cancel   { type, network: id, invite: invite event id, ...link, at }
//   routes   { type, network: id, member, approved: prefixes, ...link, at }     by an administrator
//   device   { type, network: id, member: hosting member, name, wgPublicKey, ip, ...link, at }
//                                                                           by an administrator
//   undevice { type, network: id, device: device event id, ...link, at }   by an administrator
//   record   { type, network: id, member, wgPublicKey, name, endpoints, multiaddrs, routes?, seq, at }
//            (records are not events: last writer wins by seq; no links)
//
// Exported API:
//   schemas: NetworkInfoSchema, GenesisBodySchema, AdmitBodySchema, RevokeBodySchema,
//            GrantBodySchema, InviteBodySchema, CancelBodySchema, RoutesBodySchema, DeviceBodySchema, UndeviceBodySchema,
//            RecordBodySchema, BodySchema,
//            EnvelopeSchema
//   types:   NetworkInfo, GenesisBody, AdmitBody, RevokeBody, GrantBody, InviteBody, CancelBody, RoutesBody,
//            DeviceBody, UndeviceBody,
//            RecordBody, EventBody (all but record), LedgerBody (EventBody|record), Body
//   class EnvelopeError extends Error { code: 'malformed' | 'forged' | 'unauthorized' | 'version' }
//   parseEnvelope(json: unknown): SignedEnvelope<Body>
//       json is the parsed JSON value, or its text (string), or its UTF-8 bytes (Uint8Array).
//       Checks shape, links, signature, and who may sign what without needing a ledger (genesis
//       by its founder, record by its member, leave by its member). The result is a deep-frozen
//       copy. Throws only EnvelopeError ('version' for a ledger entry of another format).
//   checkBody<T>(schema, body, what): T       validates a body we are about to sign; EnvelopeError
//   meshRange(cidr): MeshRange | null          host arithmetic of a mesh range (IPv4)
//   intToIp(n: number): string, ipToInt(ip: string): number | null
//   domainError(domain): string | null        why a DNS domain for the mesh names is not usable
//   NAME_RE, MAX_TOKEN_CHARS, MAX_ENVELOPE_CHARS, MAX_INVITE_USES, MAX_DEPS, LEDGER_VERSION
import { isIP } from 'node:net';
import { z } from 'zod';
import { multiaddr } from '@multiformats/multiaddr';
import { peerIdFromString } from '@libp2p/peer-id';
import { ed25519PeerId, verifyEnvelope, type SignedEnvelope } from './signed.js';
import { fromBase64 } from '../wg/crypto.js';
import { formatEndpoint, parseEndpoint } from '../wg/endpoint.js';
import { formatPrefix, parsePrefix } from '../wg/prefix.js';

/** Names of networks and members: what a hostname label may be, lower-case. */
export const NAME_RE = /^[a-z0-9][a-z0-9-]{0,62}$/;
/** An invite token carries a NetworkInfo and a few multiaddrs: a few KB at most. */
export const MAX_TOKEN_CHARS = 8192;
/** A whole envelope: generous, but bounded before JSON.parse. */
export const MAX_ENVELOPE_CHARS = 16384;
export const MAX_INVITE_USES = 65535;
/** Heads an event may name besides its prev: more concurrent heads than this are rare. */
export const MAX_DEPS = 32;
export const LEDGER_VERSION = 2;
const MAX_ENDPOINTS = 32;
/** Prefixes a member may advertise, or an administrator approve for it. */
export const MAX_ROUTES = 32;
const MAX_MULTIADDRS = 32;
export const MAX_BOOTSTRAP = 16;
const MAX_MULTIADDR_CHARS = 256;

// ---- mesh range arithmetic (IPv4) ---------------------------------------------------------------

export interface MeshRange {
  /** The network address as an unsigned 32-bit integer. */
  readonly base: number;
  readonly bits: number;
  /** Usable hosts: size minus the network and broadcast addresses. */
  readonly hosts: number;
}

export function ipToInt(ip: string): number | null {
  if (isIP(ip) !== 4) return null;
  const b = ip.split('.').map(Number);
  return ((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]) >>> 0;
}

export function intToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/**
 * Parses a mesh range: IPv4 only (the overlay is IPv4 for now), prefix length 8..30 (a /31 or /32
 * has no host besides network and broadcast), written canonically ("10.0.0.0/24", not
 * "10.0.0.7/24" nor "010.0.0.0/24") so that two members never disagree on what a range means.
 */
export function meshRange(cidr: string): MeshRange | null {
  if (typeof cidr !== 'string' || cidr.length > 18) return null;
  const m = /^(\d{1,3}(?:\.\d{1,3}){3})\/(\d{1,2})$/.exec(cidr);
  if (!m) return null;
  const base = ipToInt(m[1]);
  const bits = Number(m[2]);
  if (base === null || bits < 8 || bits > 30 || intToIp(base) !== m[1]) return null;
  const size = 2 ** (32 - bits);
  if (base % size !== 0) return null; // host bits set
  return { base, bits, hosts: size - 2 };
}

// ---- field schemas ------------------------------------------------------------------------------

const hex = (chars: number) => z.string().regex(new RegExp(`^[0-9a-f]{${chars}}$`), `must be ${chars} lower-case hex characters`);

const PeerIdString = z.string().max(128).refine((s) => ed25519PeerId(s) !== null, 'must be a canonical Ed25519 peer id (12D3KooW...)');
export const NetworkId = hex(32);
const Name = z.string().max(63).regex(NAME_RE, "must be 1-63 lower-case letters, digits or '-', not starting with '-' (like a hostname)");
const Cidr = z.string().max(18).refine((s) => meshRange(s) !== null, 'must be an IPv4 range like 10.0.0.0/24 (prefix 8..30, host bits zero)');
const Time = z.int().min(0);

const WgKey = z.string().max(44).refine((s) => {
  try {
    fromBase64(s); // 32 bytes, canonical base64
    return true;
  } catch {
    return false;
  }
}, 'must be a WireGuard public key: 32 bytes in base64');

const UdpEndpoint = z.string().max(64).refine((s) => {
  try {
    // Canonical text only: the same endpoint spelled two ways would look like two candidates.
    return formatEndpoint(parseEndpoint(s)) === s;
  } catch {
    return false;
  }
}, "must be a UDP endpoint 'ip:port' or '[v6]:port' in canonical form");

function multiaddrOk(s: string, needPeer: boolean): boolean {
  try {
    const ma = multiaddr(s);
    if (ma.toString() !== s) return false;
    const parts = ma.getComponents();
    for (const c of parts) {
      if (c.name === 'p2p') peerIdFromString(c.value ?? ''); // throws on a bad peer id
    }
    return !needPeer || parts[parts.length - 1]?.name === 'p2p';
  } catch {
    return false;
  }
}
const Multiaddr = z.string().max(MAX_MULTIADDR_CHARS).refine((s) => multiaddrOk(s, false), 'must be a multiaddr');
export const BootstrapAddr = z.string().max(MAX_MULTIADDR_CHARS).refine((s) => multiaddrOk(s, true), 'must be a multiaddr ending in /p2p/<peer id>');

/** A prefix routed through a member (a LAN behind it; 0.0.0.0/0 or ::/0 for an exit node). */
export const RoutePrefix = z.string().max(43).refine((s) => {
  try {
    return s.includes('/') && formatPrefix(parsePrefix(s)) === s; // canonical: host bits zero
  } catch {
    return false;
  }
}, 'must be a prefix like 192.168.1.0/24 or fd00:1::/64, host bits zero');
const RoutePrefixes = z.array(RoutePrefix).max(MAX_ROUTES).refine((a) => new Set(a).size === a.length, 'must not repeat a prefix');

// ---- bodies -------------------------------------------------------------------------------------

const DOMAIN_LABEL_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** Why a DNS domain for the mesh names (`meshd init --domain`) is not usable, or null. */
export function domainError(domain: string): string | null {
  // Room for a 63-character member name in front, within DNS's 253 characters.
  if (domain.length === 0 || domain.length > 189) return 'must be 1 to 189 characters';
  if (!domain.split('.').every((l) => DOMAIN_LABEL_RE.test(l))) {
    return 'must be dot-separated lower-case labels of a-z, 0-9 and inner hyphens, such as home.arpa or corp.internal';
  }
  return null;
}
const Domain = z.string().max(189).refine((s) => domainError(s) === null, 'must be a lower-case DNS domain such as corp.internal');

export const NetworkInfoSchema = z.strictObject({
  id: NetworkId,
  name: Name,
  cidr: Cidr,
  psk: hex(64),
  founder: PeerIdString,
  // The DNS domain of the mesh names (daemon/names.ts). It must be the same on every member, so it
  // travels with the network: pinned in the genesis and carried in invites. Optional so that every
  // genesis signed before it existed still parses (their networks answer `<network>.internal`),
  // and omitted unless `meshd init --domain` chose one, so a network with the default domain stays
  // readable by members that predate the field (this schema is strict: to them an unknown field
  // is a malformed genesis).
  domain: Domain.optional(),
});

const EventId = hex(64);
const Link = {
  seq: z.int().min(1),
  prev: EventId.nullable(),
  deps: z.array(EventId).max(MAX_DEPS),
  at: Time,
};
/** An Ed25519 public key, 32 bytes in unpadded base64url (43 characters). */
const InviteKey = z.string().regex(/^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$/, 'must be an Ed25519 public key in base64url');
const Signature = z.string().regex(/^[A-Za-z0-9_-]{85}[AQgw]$/, 'must be an Ed25519 signature in base64url');
const Ipv4 = z.string().max(15).refine((s) => isIP(s) === 4 && ipToInt(s) !== null && intToIp(ipToInt(s)!) === s, 'must be an IPv4 address');

export const GenesisBodySchema = z.strictObject({
  type: z.literal('genesis'),
  v: z.literal(LEDGER_VERSION),
  network: NetworkInfoSchema,
  seq: z.literal(1),
  prev: z.null(),
  deps: z.array(EventId).max(0),
  at: Time,
});

export const AdmitBodySchema = z.strictObject({
  type: z.literal('admit'),
  network: NetworkId,
  member: PeerIdString,
  name: Name,
  ip: Ipv4,
  invite: EventId.nullable(),
  proof: Signature.nullable(),
  ...Link,
});

export const RevokeBodySchema = z.strictObject({
  type: z.literal('revoke'),
  network: NetworkId,
  member: PeerIdString,
  reason: z.enum(['kick', 'leave']),
  ...Link,
});

export const GrantBodySchema = z.strictObject({
  type: z.literal('grant'),
  network: NetworkId,
  member: PeerIdString,
  ...Link,
});

export const InviteBodySchema = z.strictObject({
  type: z.literal('invite'),
  network: NetworkId,
  key: InviteKey,
  expires: Time,
  uses: z.int().min(1).max(MAX_INVITE_USES),
  ...Link,
});

export const CancelBodySchema = z.strictObject({
  type: z.literal('cancel'),
  network: NetworkId,
  invite: EventId,
  ...Link,
});

export const RoutesBodySchema = z.strictObject({
  type: z.literal('routes'),
  network: NetworkId,
  member: PeerIdString,
  approved: RoutePrefixes,
  ...Link,
});

/** A plain WireGuard device (a phone, a laptop) hosted by a member: only its public key is here. */
export const DeviceBodySchema = z.strictObject({
  type: z.literal('device'),
  network: NetworkId,
  member: PeerIdString,
  name: Name,
  wgPublicKey: WgKey,
  ip: Ipv4,
  ...Link,
});

export const UndeviceBodySchema = z.strictObject({
  type: z.literal('undevice'),
  network: NetworkId,
  device: EventId,
  ...Link,
});

export const RecordBodySchema = z.strictObject({
  type: z.literal('record'),
  network: NetworkId,
  member: PeerIdString,
  wgPublicKey: WgKey,
  name: Name,
  endpoints: z.array(UdpEndpoint).max(MAX_ENDPOINTS),
  multiaddrs: z.array(Multiaddr).max(MAX_MULTIADDRS),
  /** Prefixes this member offers to route (`meshd routes advertise`); used once approved. */
  routes: RoutePrefixes.optional(),
  seq: z.int().min(0),
  at: Time,
});

export const BodySchema = z.discriminatedUnion('type', [
  GenesisBodySchema, AdmitBodySchema, RevokeBodySchema, GrantBodySchema, InviteBodySchema, CancelBodySchema, RoutesBodySchema,
  DeviceBodySchema, UndeviceBodySchema, RecordBodySchema,
]);

export const EnvelopeSchema = z.strictObject({
  body: BodySchema,
  by: PeerIdString,
  sig: z.string().max(86),
});

type Frozen<T> = T extends (infer U)[] ? readonly Frozen<U>[] : T extends object ? { readonly [K in keyof T]: Frozen<T[K]> } : T;

export type NetworkInfo = Frozen<z.output<typeof NetworkInfoSchema>>;
export type GenesisBody = Frozen<z.output<typeof GenesisBodySchema>>;
export type AdmitBody = Frozen<z.output<typeof AdmitBodySchema>>;
export type RevokeBody = Frozen<z.output<typeof RevokeBodySchema>>;
export type GrantBody = Frozen<z.output<typeof GrantBodySchema>>;
export type RecordBody = Frozen<z.output<typeof RecordBodySchema>>;
export type InviteBody = Frozen<z.output<typeof InviteBodySchema>>;
export type CancelBody = Frozen<z.output<typeof CancelBodySchema>>;
export type RoutesBody = Frozen<z.output<typeof RoutesBodySchema>>;
export type DeviceBody = Frozen<z.output<typeof DeviceBodySchema>>;
export type UndeviceBody = Frozen<z.output<typeof UndeviceBodySchema>>;
export type EventBody = GenesisBody | AdmitBody | RevokeBody | GrantBody | InviteBody | CancelBody | RoutesBody | DeviceBody | UndeviceBody;
export type LedgerBody = EventBody | RecordBody;
export type Body = LedgerBody;

// ---- parsing ------------------------------------------------------------------------------------

export type EnvelopeErrorCode = 'malformed' | 'forged' | 'unauthorized' | 'version';

/** The only error parseEnvelope throws. `code` says what kind of wrong; the message says where. */
export class EnvelopeError extends Error {
  override readonly name = 'EnvelopeError';
  constructor(readonly code: EnvelopeErrorCode, message: string) {
    super(message);
  }
}

/** One line from a zod error: the first problem, with its path. */
function describe(error: z.ZodError): string {
  const issue = error.issues[0];
  if (!issue) return 'invalid';
  const path = issue.path.length ? `${issue.path.join('.')}: ` : '';
  return `${path}${issue.message}`;
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/** Validates a body we are about to sign, so builders never emit what peers would reject. */
export function checkBody<S extends z.ZodType>(schema: S, body: unknown, what: string): Frozen<z.output<S>> {
  const r = schema.safeParse(body);
  if (!r.success) throw new EnvelopeError('malformed', `cannot sign this ${what}: ${describe(r.error)}`);
  return deepFreeze(r.data) as Frozen<z.output<S>>;
}

/** Who may sign a body, when that can be told from the envelope alone. */
function signerAllowed(body: Body, by: string): string | null {
  switch (body.type) {
    case 'genesis':
      return by === body.network.founder ? null : 'a genesis must be signed by the network founder';
    case 'record':
      return by === body.member ? null : 'a member record must be signed by the member itself';
    case 'revoke':
      return body.reason === 'kick' || by === body.member ? null : 'a leave must be signed by the member itself';
    default:
      return null; // admit, grant, invite, cancel, routes, device, undevice: depends on the ledger (ledger.ts)
  }
}

/** The links of an event, checked without a ledger: chain position and parents agree. */
function linksOk(body: Body): string | null {
  if (body.type === 'record' || body.type === 'genesis') return null; // the genesis schema pins its links
  if ((body.seq === 1) !== (body.prev === null)) return 'prev must be null exactly for the first event of a signer';
  const deps = body.deps;
  for (let i = 1; i < deps.length; i++) if (deps[i - 1] >= deps[i]) return 'deps must be sorted and unique';
  if (body.prev !== null && deps.includes(body.prev)) return 'deps must not repeat prev';
  if (body.prev === null && deps.length === 0) return 'an event must name at least one parent';
  return null;
}

/** A ledger entry from an older meshd (no links, no version): say so instead of "malformed". */
function olderFormat(value: unknown): boolean {
  const body = (value as { body?: Record<string, unknown> } | null)?.body;
  if (body === null || typeof body !== 'object') return false;
  if (body.type === 'genesis') return body.v !== LEDGER_VERSION;
  return ['admit', 'revoke', 'grant'].includes(body.type as string) && !('seq' in body);
}

function toValue(json: unknown): unknown {
  if (json instanceof Uint8Array) {
    if (json.length > MAX_ENVELOPE_CHARS * 4) throw new EnvelopeError('malformed', 'envelope too large');
    json = Buffer.from(json.buffer, json.byteOffset, json.length).toString('utf8');
  }
  if (typeof json !== 'string') return json;
  if (json.length > MAX_ENVELOPE_CHARS) throw new EnvelopeError('malformed', 'envelope too large');
  try {
    return JSON.parse(json);
  } catch {
    throw new EnvelopeError('malformed', 'envelope is not JSON');
  }
}

/**
 * Validates an envelope from outside: shape, then signature, then the signer rules above.
 * Returns a deep-frozen copy; throws EnvelopeError and nothing else.
 */
export function parseEnvelope(json: unknown): SignedEnvelope<Body> {
  let value: unknown;
  let parsed: z.output<typeof EnvelopeSchema>;
  try {
    value = toValue(json);
    const r = EnvelopeSchema.safeParse(value);
    if (!r.success) {
      if (olderFormat(value)) throw new EnvelopeError('version', `a ledger entry of an older meshd (ledger format 1); this meshd reads format ${LEDGER_VERSION}`);
      throw new EnvelopeError('malformed', `malformed envelope: ${describe(r.error)}`);
    }
    parsed = r.data;
  } catch (e) {
    if (e instanceof EnvelopeError) throw e;
    // A getter or proxy on a hostile object could throw inside zod: still a typed error.
    throw new EnvelopeError('malformed', 'malformed envelope');
  }
  const env = deepFreeze({ body: parsed.body as Body, by: parsed.by, sig: parsed.sig });
  if (!verifyEnvelope(env)) throw new EnvelopeError('forged', `bad signature on a ${env.body.type} said to be by ${env.by}`);
  const bad = linksOk(env.body);
  if (bad) throw new EnvelopeError('malformed', `malformed ${env.body.type}: ${bad}`);
  const denied = signerAllowed(env.body, env.by);
  if (denied) throw new EnvelopeError('unauthorized', denied);
  return env;
}
