// Signed statements: every fact a node says about the mesh (an event, its own record, an invite)
// travels as an envelope { body, by, sig } that anyone can check without asking anyone.
//
//   body  a plain JSON object (the statement; its shapes live in records.ts)
//   by    the signer's libp2p peer id string ("12D3KooW..."); an Ed25519 peer id embeds the public
//         key, so no key directory is needed to verify
//   sig   base64url (no padding) Ed25519 signature over signingBytes(body, by)
//
// signingBytes = UTF-8 of canonicalJson({ body, by }): object keys sorted recursively (UTF-16 code
// unit order, as Array.prototype.sort does), no whitespace, numbers and strings as JSON.stringify
// writes them. Every member reproduces the same bytes from the parsed JSON, whatever key order
// or whitespace the sender used, so verification never depends on how a message was serialised.
//
// eventId = sha256 hex of the same signing bytes. It names the statement, not the signature: a
// second valid signature over the same { body, by } (Ed25519 is deterministic, so this only
// happens if someone tampers with the signature encoding) is the same event, not a new one.
//
// Exported API:
//   type SignedEnvelope<B = unknown> = { body: B; by: string; sig: string }
//   canonicalJson(value: unknown): string              throws TypeError on non-JSON values
//   signingBytes(body: unknown, by: string): Uint8Array
//   eventId(env: { body: unknown; by: string }): string  64 hex chars
//   signEnvelope<B>(key: PrivateKey, body: B): Promise<SignedEnvelope<B>>   Ed25519 keys only
//   verifyEnvelope(env: SignedEnvelope): boolean       never throws; false for anything wrong
//   ed25519PeerId(text: string): string | null          the canonical peer id if text is an
//                                                       Ed25519 peer id written canonically
//
// Nothing here validates what a body means (records.ts does); verifyEnvelope only answers "did
// the key of `by` sign exactly this body?".
import { createHash, createPublicKey, verify as nodeVerify, type KeyObject } from 'node:crypto';
import type { PrivateKey } from '@libp2p/interface';
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id';

export interface SignedEnvelope<B = unknown> {
  readonly body: B;
  readonly by: string;
  readonly sig: string;
}

const SIG_BYTES = 64;
/** 64 bytes in unpadded base64url: 86 characters, the last one carrying 2 bits (so A, Q, g or w). */
const SIG_RE = /^[A-Za-z0-9_-]{85}[AQgw]$/;

/** Canonical JSON: sorted keys, no whitespace. Throws TypeError on values JSON cannot carry. */
export function canonicalJson(value: unknown): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      // JSON.stringify would silently write NaN/Infinity as null: two different values, one text.
      if (!Number.isFinite(value)) throw new TypeError(`canonical JSON cannot carry ${value}`);
      return JSON.stringify(value);
    case 'string':
      return JSON.stringify(value);
    case 'object': {
      if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
      const proto = Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) {
        throw new TypeError(`canonical JSON carries plain objects only, not ${proto?.constructor?.name ?? 'this'}`);
      }
      const obj = value as Record<string, unknown>;
      const parts: string[] = [];
      for (const key of Object.keys(obj).sort()) {
        // As JSON.stringify does: a key whose value is undefined does not exist on the wire.
        if (obj[key] === undefined) continue;
        parts.push(`${JSON.stringify(key)}:${canonicalJson(obj[key])}`);
      }
      return `{${parts.join(',')}}`;
    }
    default:
      throw new TypeError(`canonical JSON cannot carry a ${typeof value}`);
  }
}

/** The bytes a signer signs and a verifier checks: canonical JSON of { body, by }. */
export function signingBytes(body: unknown, by: string): Uint8Array {
  return Buffer.from(canonicalJson({ body, by }), 'utf8');
}

/** The content address of a statement: sha256 hex of its signing bytes. */
export function eventId(env: { body: unknown; by: string }): string {
  return createHash('sha256').update(signingBytes(env.body, env.by)).digest('hex');
}

/**
 * The canonical text of an Ed25519 peer id, or null. Requiring the canonical spelling (base58btc
 * "12D3KooW...", not the CID form of the same key) keeps "same member" a string comparison.
 */
export function ed25519PeerId(text: string): string | null {
  if (typeof text !== 'string' || text.length === 0 || text.length > 128) return null;
  try {
    const id = peerIdFromString(text);
    if (id.type !== 'Ed25519' || id.publicKey === undefined) return null;
    return id.toString() === text ? text : null;
  } catch {
    return null;
  }
}

/** Signs body as key's peer id. Only Ed25519 identities: their peer ids carry the verifying key. */
export async function signEnvelope<B>(key: PrivateKey, body: B): Promise<SignedEnvelope<B>> {
  if (key.type !== 'Ed25519') throw new TypeError(`meshd identities are Ed25519 keys, not ${key.type}`);
  const by = peerIdFromPrivateKey(key).toString();
  const sig = await key.sign(signingBytes(body, by));
  return { body, by, sig: Buffer.from(sig).toString('base64url') };
}

// Verifying keys by peer id: a sync of a few hundred events comes from a handful of signers, and
// building a KeyObject costs more than the verification itself.
const keyCache = new Map<string, KeyObject>();
const KEY_CACHE_MAX = 4096;

function verifyingKey(by: string): KeyObject | null {
  const cached = keyCache.get(by);
  if (cached) return cached;
  if (ed25519PeerId(by) === null) return null;
  const raw = peerIdFromString(by).publicKey!.raw;
  // node:crypto rather than publicKey.verify(): the libp2p interface may answer with a Promise,
  // and the ledger must verify synchronously inside add().
  const key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(raw).toString('base64url') }, format: 'jwk' });
  if (keyCache.size >= KEY_CACHE_MAX) keyCache.delete(keyCache.keys().next().value!);
  keyCache.set(by, key);
  return key;
}

/** True only if `sig` is by's Ed25519 signature over signingBytes(body, by). Never throws. */
export function verifyEnvelope(env: SignedEnvelope): boolean {
  try {
    if (env === null || typeof env !== 'object') return false;
    if (typeof env.sig !== 'string' || !SIG_RE.test(env.sig)) return false;
    const sig = Buffer.from(env.sig, 'base64url');
    if (sig.length !== SIG_BYTES) return false;
    const key = verifyingKey(env.by);
    if (key === null) return false;
    return nodeVerify(null, signingBytes(env.body, env.by), key, sig);
  } catch {
    // canonicalJson on a body that is not JSON, or a key OpenSSL refuses: not a valid signature.
    return false;
  }
}
