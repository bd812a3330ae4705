// The shapes of everything members sign, as zod schemas, and parseEnvelope(): the one door
// through which bytes from the network (gossip, sync, a pasted invite) become typed statements.
//
// Schemas are strict on purpose: unknown keys are rejected (a body that two versions would read
// differently must not verify as the same statement), every string is bounded, names look like
// hostnames, peer ids must be canonical Ed25519 peer ids, WireGuard keys must be 32 bytes of
// canonical base64, numbers are non-negative safe integers (canonical JSON of a safe integer is
// the same everywhere).
//
// Bodies (see ledger.ts for what they mean):
//   NetworkInfo  { id: 32 hex, name, cidr: 'a.b.c.d/n' (IPv4, n 8..30, host bits zero),
//                  psk: 64 hex, founder: peer id }
//   genesis      { type, network: NetworkInfo, at }                         by = network.founder
//   admit        { type, network: id, member, name, invite: token | null, at } by = the admitter
//   revoke       { type, network: id, member, at, reason: 'kick' | 'leave' }  by = admin | member
//   grant        { type, network: id, member, at }                          by = the founder
//   record       { type, network: id, member, wgPublicKey, name, endpoints, multiaddrs, seq, at }
//                                                                           by = member
//   invite       { type, id: 32 hex, network: NetworkInfo, expires, uses, bootstrap }
//
// Exported API:
//   schemas: NetworkInfoSchema, GenesisBodySchema, AdmitBodySchema, RevokeBodySchema,
//            GrantBodySchema, RecordBodySchema, InviteBodySchema, BodySchema, EnvelopeSchema
//   types:   NetworkInfo, GenesisBody, AdmitBody, RevokeBody, GrantBody, RecordBody, InviteBody,
//            EventBody (genesis|admit|revoke|grant), LedgerBody (EventBody|record), Body (all)
//   class EnvelopeError extends Error { code: 'malformed' | 'forged' | 'unauthorized' }
//   parseEnvelope(json: unknown): SignedEnvelope<Body>
//       json is the parsed JSON value, or its text (string), or its UTF-8 bytes (Uint8Array).
//       Checks shape, signature, and who may sign what without needing a ledger (genesis by its
//       founder, record by its member, leave by its member). The result is a deep-frozen copy.
//       Throws only EnvelopeError.
//   checkBody<T>(schema, body, what): T       validates a body we are about to sign; EnvelopeError
//   meshRange(cidr): MeshRange | null          host arithmetic of a mesh range (IPv4)
//   intToIp(n: number): string, ipToInt(ip: string): number | null
//   NAME_RE, MAX_TOKEN_CHARS, MAX_ENVELOPE_CHARS, MAX_INVITE_USES
import { isIP } from 'node:net';
import { z } from 'zod';
import { multiaddr } from '@multiformats/multiaddr';
import { peerIdFromString } from '@libp2p/peer-id';
import { ed25519PeerId, verifyEnvelope, type SignedEnvelope } from './signed.js';
import { fromBase64 } from '../wg/crypto.js';
import { formatEndpoint, parseEndpoint } from '../wg/endpoint.js';

/** Names of networks and members: what a hostname label may be, lower-case. */
export const NAME_RE = /^[a-z0-9][a-z0-9-]{0,62}$/;
/** An invite token carries a NetworkInfo and a few multiaddrs: a few KB at most. */
export const MAX_TOKEN_CHARS = 8192;
/** A whole envelope (an admit carries a token): generous, but bounded before JSON.parse. */
export const MAX_ENVELOPE_CHARS = 32768;
export const MAX_INVITE_USES = 65535;
const MAX_ENDPOINTS = 32;
const MAX_MULTIADDRS = 32;
const MAX_BOOTSTRAP = 16;
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
const NetworkId = hex(32);
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
const BootstrapAddr = z.string().max(MAX_MULTIADDR_CHARS).refine((s) => multiaddrOk(s, true), 'must be a multiaddr ending in /p2p/<peer id>');

// ---- bodies -------------------------------------------------------------------------------------

export const NetworkInfoSchema = z.strictObject({
  id: NetworkId,
  name: Name,
  cidr: Cidr,
  psk: hex(64),
  founder: PeerIdString,
});

export const GenesisBodySchema = z.strictObject({
  type: z.literal('genesis'),
  network: NetworkInfoSchema,
  at: Time,
});

export const AdmitBodySchema = z.strictObject({
  type: z.literal('admit'),
  network: NetworkId,
  member: PeerIdString,
  name: Name,
  invite: z.string().min(1).max(MAX_TOKEN_CHARS).nullable(),
  at: Time,
});

export const RevokeBodySchema = z.strictObject({
  type: z.literal('revoke'),
  network: NetworkId,
  member: PeerIdString,
  at: Time,
  reason: z.enum(['kick', 'leave']),
});

export const GrantBodySchema = z.strictObject({
  type: z.literal('grant'),
  network: NetworkId,
  member: PeerIdString,
  at: Time,
});

export const RecordBodySchema = z.strictObject({
  type: z.literal('record'),
  network: NetworkId,
  member: PeerIdString,
  wgPublicKey: WgKey,
  name: Name,
  endpoints: z.array(UdpEndpoint).max(MAX_ENDPOINTS),
  multiaddrs: z.array(Multiaddr).max(MAX_MULTIADDRS),
  seq: z.int().min(0),
  at: Time,
});

export const InviteBodySchema = z.strictObject({
  type: z.literal('invite'),
  id: hex(32),
  network: NetworkInfoSchema,
  expires: Time,
  uses: z.int().min(1).max(MAX_INVITE_USES),
  bootstrap: z.array(BootstrapAddr).max(MAX_BOOTSTRAP),
});

export const BodySchema = z.discriminatedUnion('type', [
  GenesisBodySchema, AdmitBodySchema, RevokeBodySchema, GrantBodySchema, RecordBodySchema, InviteBodySchema,
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
export type EventBody = GenesisBody | AdmitBody | RevokeBody | GrantBody;
export type LedgerBody = EventBody | RecordBody;
export type Body = LedgerBody | InviteBody;

// ---- parsing ------------------------------------------------------------------------------------

export type EnvelopeErrorCode = 'malformed' | 'forged' | 'unauthorized';

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
      return null; // admit, grant, invite: depends on the ledger (ledger.ts)
  }
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
    if (!r.success) throw new EnvelopeError('malformed', `malformed envelope: ${describe(r.error)}`);
    parsed = r.data;
  } catch (e) {
    if (e instanceof EnvelopeError) throw e;
    // A getter or proxy on a hostile object could throw inside zod: still a typed error.
    throw new EnvelopeError('malformed', 'malformed envelope');
  }
  const env = deepFreeze({ body: parsed.body as Body, by: parsed.by, sig: parsed.sig });
  if (!verifyEnvelope(env)) throw new EnvelopeError('forged', `bad signature on a ${env.body.type} said to be by ${env.by}`);
  const denied = signerAllowed(env.body, env.by);
  if (denied) throw new EnvelopeError('unauthorized', denied);
  return env;
}
