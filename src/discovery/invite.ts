// Invites: how a new node learns everything it needs to join, in one line it can paste into a shell.
//
//   token = "meshd1." + base64url(canonical JSON of a signed envelope)
//   body  = { type: 'invite', id: 32 hex, network: NetworkInfo, expires: ms, uses, bootstrap }
//
// The token carries the whole NetworkInfo (range, pnet key, founder), so the joiner can start a
// libp2p node on the private network and dial `bootstrap` (multiaddrs of current members, ending
// in /p2p/<peer id>) before it knows anything else. The token is a bearer secret: it holds the
// pnet key. Its signature proves who issued it; whether that issuer is an administrator, and
// whether its uses are spent, only a ledger can say (Ledger.checkInvite, and the fold, which is
// what finally decides).
//
// Exported API:
//   INVITE_PREFIX = 'meshd1.', INVITE_VERSION = 1, DEFAULT_INVITE_TTL_MS (24 h)
//   interface Invite extends InviteBody { issuer: string; token: string; envelope }
//   interface InviteOptions { ttlMs?: number; uses?: number; bootstrap?: string[]; id?: string }
//   class InviteError extends Error { code: 'malformed' | 'forged' | 'expired' | 'version' }
//   createInvite(key: PrivateKey, network: NetworkInfo, opts: InviteOptions, now: number): Promise<Invite>
//       throws EnvelopeError('malformed') for options no peer would accept (bad ttl, uses, addrs)
//   parseInvite(token: unknown, now?: number): Invite
//       throws InviteError only; with now, an invite past `expires` is 'expired' (at == expires
//       is still valid, as in the ledger); without now, expiry is not checked (the ledger checks
//       it against the admission's time instead)
//   encodeInvite(env: SignedEnvelope<InviteBody>): string
//   inviteKey(invite: { issuer: string; id: string }): string   what the ledger counts uses by
import { randomBytes } from 'node:crypto';
import type { PrivateKey } from '@libp2p/interface';
import { canonicalJson, signEnvelope, type SignedEnvelope } from './signed.js';
import {
  EnvelopeError, InviteBodySchema, MAX_TOKEN_CHARS, checkBody, parseEnvelope,
  type InviteBody, type NetworkInfo,
} from './records.js';

export const INVITE_VERSION = 1;
export const INVITE_PREFIX = `meshd${INVITE_VERSION}.`;
export const DEFAULT_INVITE_TTL_MS = 24 * 60 * 60 * 1000;

export interface Invite extends InviteBody {
  /** The peer id that signed the invite. */
  readonly issuer: string;
  /** The canonical token text (what goes into an admit event). */
  readonly token: string;
  readonly envelope: SignedEnvelope<InviteBody>;
}

export interface InviteOptions {
  /** How long the invite stays valid; default 24 hours. */
  ttlMs?: number;
  /** How many distinct nodes it may admit; default 1. */
  uses?: number;
  /** Multiaddrs of current members, each ending in /p2p/<peer id>. */
  bootstrap?: readonly string[];
  /** 32 hex chars; random by default (tests pass one to be deterministic). */
  id?: string;
}

export type InviteErrorCode = 'malformed' | 'forged' | 'expired' | 'version';

export class InviteError extends Error {
  override readonly name = 'InviteError';
  constructor(readonly code: InviteErrorCode, message: string) {
    super(message);
  }
}

export function encodeInvite(env: SignedEnvelope<InviteBody>): string {
  return INVITE_PREFIX + Buffer.from(canonicalJson(env), 'utf8').toString('base64url');
}

/** Uses are counted per issuer and invite id: one admin cannot spend another admin's invite. */
export function inviteKey(invite: { readonly issuer: string; readonly id: string }): string {
  return `${invite.issuer}/${invite.id}`;
}

function toInvite(env: SignedEnvelope<InviteBody>): Invite {
  return Object.freeze({ ...env.body, issuer: env.by, token: encodeInvite(env), envelope: env });
}

export async function createInvite(key: PrivateKey, network: NetworkInfo, opts: InviteOptions, now: number): Promise<Invite> {
  const ttlMs = opts.ttlMs ?? DEFAULT_INVITE_TTL_MS;
  if (!Number.isSafeInteger(ttlMs) || ttlMs <= 0) throw new EnvelopeError('malformed', `invite ttl must be a positive number of ms, not ${ttlMs}`);
  const body = checkBody(InviteBodySchema, {
    type: 'invite',
    id: opts.id ?? randomBytes(16).toString('hex'),
    network,
    expires: now + ttlMs,
    uses: opts.uses ?? 1,
    bootstrap: [...(opts.bootstrap ?? [])],
  }, 'invite');
  const env = await signEnvelope(key, body);
  return toInvite(env);
}

const NOT_AN_INVITE = 'not a meshd invite';

export function parseInvite(token: unknown, now?: number): Invite {
  if (typeof token !== 'string') throw new InviteError('malformed', NOT_AN_INVITE);
  // Pasting from a terminal or a chat window adds spaces and line breaks.
  const text = token.replace(/\s+/g, '');
  const version = /^meshd(\d{1,6})\./.exec(text);
  if (version && Number(version[1]) !== INVITE_VERSION) {
    throw new InviteError('version', `this invite is for meshd invite version ${version[1]}; this meshd reads version ${INVITE_VERSION}`);
  }
  if (!version) throw new InviteError('malformed', NOT_AN_INVITE);
  if (text.length > MAX_TOKEN_CHARS) throw new InviteError('malformed', `${NOT_AN_INVITE} (too long)`);
  const payload = text.slice(INVITE_PREFIX.length);
  if (!/^[A-Za-z0-9_-]+$/.test(payload)) throw new InviteError('malformed', `${NOT_AN_INVITE} (bad characters; was it cut when copying?)`);

  let env;
  try {
    env = parseEnvelope(Buffer.from(payload, 'base64url').toString('utf8'));
  } catch (e) {
    const err = e as EnvelopeError;
    if (err.code === 'forged') throw new InviteError('forged', 'forged invite: its signature does not match its content');
    throw new InviteError('malformed', `${NOT_AN_INVITE} (truncated or corrupted)`);
  }
  if (env.body.type !== 'invite') throw new InviteError('malformed', `${NOT_AN_INVITE} (it is a signed ${env.body.type})`);
  const invite = toInvite(env as SignedEnvelope<InviteBody>);
  if (now !== undefined && now > invite.expires) {
    throw new InviteError('expired', `invite expired at ${new Date(invite.expires).toISOString()}; ask an administrator for a new one`);
  }
  return invite;
}
