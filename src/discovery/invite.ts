// Invites: how a new node learns everything it needs to join, in one line it can paste into a shell.
//
//   token = "meshd2." + base64url(canonical JSON of
//           { v: 2, network: NetworkInfo, invite: <the signed invite event>, secret, bootstrap })
//
// An invite is two halves. The public half is an `invite` event in the ledger, signed by the
// administrator who issued it: { key, expires, uses } where `key` is a fresh Ed25519 public key.
// Every member learns it, so every administrator sees every outstanding invite (meshd invites)
// and can cancel it (a `cancel` event). The secret half is that key's private seed: it exists
// only in the token. The joiner proves it holds the secret by signing
//
//   canonical JSON { use: 'meshd-invite/2', network: network id, invite: invite event id,
//                    member: the joiner's peer id }
//
// with it (inviteProof); the admission carries that proof, and every member checks it against the
// key in the invite event (verifyInviteProof). So the ledger never holds what it takes to use an
// invite: a member that reads an admission cannot admit anyone else with it.
//
// The token also carries the NetworkInfo (range, pnet key, founder: the joiner's libp2p node needs
// the pnet key before it can talk to anyone), the invite event itself (a member that has not yet
// received it by push takes it from the join request), and `bootstrap`, multiaddrs of current
// members ending in /p2p/<peer id>. The token is a bearer secret.
//
// Exported API:
//   INVITE_PREFIX = 'meshd2.', INVITE_VERSION = 2, DEFAULT_INVITE_TTL_MS (24 h)
//   interface Invite { network, envelope (invite event), id (its event id), issuer, key,
//                      expires, uses, secret: Uint8Array (32), bootstrap, token }
//   class InviteError extends Error { code: 'malformed' | 'forged' | 'expired' | 'version' }
//   newInviteSecret(): { secret: Uint8Array; key: string }      a fresh Ed25519 key pair
//   encodeInvite({ network, envelope, secret, bootstrap }): Invite   (checks what it encodes)
//   parseInvite(token: unknown, now?: number): Invite
//       throws InviteError only; with now, an invite past `expires` is 'expired' (at == expires
//       is still valid, as in the ledger)
//   inviteProof(secret, { network, invite, member }): string          base64url signature
//   verifyInviteProof(key, proof, { network, invite, member }): boolean   never throws
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { ed25519 } from '@noble/curves/ed25519.js';
import { canonicalJson, eventId, type SignedEnvelope } from './signed.js';
import {
  BootstrapAddr, EnvelopeError, MAX_BOOTSTRAP, MAX_TOKEN_CHARS, NetworkInfoSchema, checkBody, parseEnvelope,
  type Body, type InviteBody, type NetworkInfo,
} from './records.js';

export const INVITE_VERSION = 2;
export const INVITE_PREFIX = `meshd${INVITE_VERSION}.`;
export const DEFAULT_INVITE_TTL_MS = 24 * 60 * 60 * 1000;

export interface Invite {
  readonly network: NetworkInfo;
  /** The signed invite event, as the ledger holds it. */
  readonly envelope: SignedEnvelope<InviteBody>;
  /** Its event id: what admissions and cancels name. */
  readonly id: string;
  readonly issuer: string;
  readonly key: string;
  readonly expires: number;
  readonly uses: number;
  readonly secret: Uint8Array;
  readonly bootstrap: readonly string[];
  /** The canonical token text. */
  readonly token: string;
}

export type InviteErrorCode = 'malformed' | 'forged' | 'expired' | 'version';

export class InviteError extends Error {
  override readonly name = 'InviteError';
  constructor(readonly code: InviteErrorCode, message: string) {
    super(message);
  }
}

const TokenSchema = z.strictObject({
  v: z.literal(INVITE_VERSION),
  network: NetworkInfoSchema,
  invite: z.unknown(),
  secret: z.string().regex(/^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$/, 'must be 32 bytes in base64url'),
  bootstrap: z.array(BootstrapAddr).max(MAX_BOOTSTRAP),
});

const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString('base64url');

/** A fresh invite key pair: the secret goes into the token, the key into the ledger. */
export function newInviteSecret(): { secret: Uint8Array; key: string } {
  const secret = new Uint8Array(randomBytes(32));
  return { secret, key: b64(ed25519.getPublicKey(secret)) };
}

function proofBytes(opts: { network: string; invite: string; member: string }): Uint8Array {
  return Buffer.from(canonicalJson({ use: 'meshd-invite/2', network: opts.network, invite: opts.invite, member: opts.member }), 'utf8');
}

export function inviteProof(secret: Uint8Array, opts: { network: string; invite: string; member: string }): string {
  return b64(ed25519.sign(proofBytes(opts), secret));
}

export function verifyInviteProof(key: string, proof: string, opts: { network: string; invite: string; member: string }): boolean {
  try {
    const pub = Buffer.from(key, 'base64url');
    const sig = Buffer.from(proof, 'base64url');
    if (pub.length !== 32 || sig.length !== 64) return false;
    return ed25519.verify(sig, proofBytes(opts), pub);
  } catch {
    return false;
  }
}

/** Builds (and checks) the token for an invite event and its secret. */
export function encodeInvite(opts: {
  network: NetworkInfo;
  envelope: SignedEnvelope<InviteBody>;
  secret: Uint8Array;
  bootstrap?: readonly string[];
}): Invite {
  const body = checkBody(TokenSchema, {
    v: INVITE_VERSION, network: opts.network, invite: opts.envelope, secret: b64(opts.secret), bootstrap: [...(opts.bootstrap ?? [])],
  }, 'invite');
  const token = INVITE_PREFIX + Buffer.from(canonicalJson(body), 'utf8').toString('base64url');
  return parseInvite(token);
}

const NOT_AN_INVITE = 'not a meshd invite';

export function parseInvite(token: unknown, now?: number): Invite {
  if (typeof token !== 'string') throw new InviteError('malformed', NOT_AN_INVITE);
  // Pasting from a terminal or a chat window adds spaces and line breaks.
  const text = token.replace(/\s+/g, '');
  const version = /^meshd(\d{1,6})\./.exec(text);
  if (version && Number(version[1]) !== INVITE_VERSION) {
    const older = Number(version[1]) < INVITE_VERSION;
    throw new InviteError('version', older
      ? `this invite is from an older meshd (invite version ${version[1]}, ledger format 1); this meshd reads version ${INVITE_VERSION}: networks made by older meshd cannot be joined, make a new one with meshd init`
      : `this invite is for meshd invite version ${version[1]}; this meshd reads version ${INVITE_VERSION}: upgrade meshd`);
  }
  if (!version) throw new InviteError('malformed', NOT_AN_INVITE);
  if (text.length > MAX_TOKEN_CHARS) throw new InviteError('malformed', `${NOT_AN_INVITE} (too long)`);
  const payload = text.slice(INVITE_PREFIX.length);
  if (!/^[A-Za-z0-9_-]+$/.test(payload)) throw new InviteError('malformed', `${NOT_AN_INVITE} (bad characters; was it cut when copying?)`);

  let body: z.output<typeof TokenSchema>;
  let env: SignedEnvelope<Body>;
  try {
    const r = TokenSchema.safeParse(JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')));
    if (!r.success) throw new InviteError('malformed', `${NOT_AN_INVITE} (truncated or corrupted)`);
    body = r.data;
    env = parseEnvelope(body.invite);
  } catch (e) {
    if (e instanceof InviteError) throw e;
    if (e instanceof EnvelopeError && e.code === 'forged') throw new InviteError('forged', 'forged invite: its signature does not match its content');
    throw new InviteError('malformed', `${NOT_AN_INVITE} (truncated or corrupted)`);
  }
  if (env.body.type !== 'invite') throw new InviteError('malformed', `${NOT_AN_INVITE} (it carries a signed ${env.body.type})`);
  const ev = env as SignedEnvelope<InviteBody>;
  if (ev.body.network !== body.network.id) throw new InviteError('malformed', `${NOT_AN_INVITE} (its parts name two networks)`);
  const secret = new Uint8Array(Buffer.from(body.secret, 'base64url'));
  if (b64(ed25519.getPublicKey(secret)) !== ev.body.key) throw new InviteError('forged', 'forged invite: its secret does not belong to it');
  const invite: Invite = Object.freeze({
    network: Object.freeze({ ...body.network }), envelope: ev, id: eventId(ev), issuer: ev.by, key: ev.body.key,
    expires: ev.body.expires, uses: ev.body.uses, secret, bootstrap: Object.freeze([...body.bootstrap]),
    token: INVITE_PREFIX + Buffer.from(canonicalJson({ ...body, invite: ev }), 'utf8').toString('base64url'),
  });
  if (now !== undefined && now > invite.expires) {
    throw new InviteError('expired', `invite expired at ${new Date(invite.expires).toISOString()}; ask an administrator for a new one`);
  }
  return invite;
}
