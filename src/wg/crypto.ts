// The cryptographic primitives of the WireGuard paper (section 5.4), named as the paper names them.
// Costs measured on this machine (../shared/research/datapath.md) decide where each comes from:
// node:crypto for X25519, BLAKE2s and HMAC-BLAKE2s (30x faster than pure JS here); the addon's
// keyed BLAKE2s (OpenSSL's BLAKE2SMAC, 0.7 us against noble's 12 us: every handshake message costs
// one before anything else, so a flood makes it the hot path), with noble as the fallback when the
// addon is not built; noble for XChaCha20-Poly1305, which neither has.
import {
  createCipheriv, createDecipheriv, createHash, createHmac, createPrivateKey, createPublicKey,
  diffieHellman, randomBytes, randomFillSync, timingSafeEqual, type KeyObject,
} from 'node:crypto';
import { blake2s } from '@noble/hashes/blake2.js';
import { xchacha20poly1305 } from '@noble/ciphers/chacha.js';
import { native } from './native.js';

export const KEY_LEN = 32;
export const TAG_LEN = 16;
export const MAC_LEN = 16;

/** HASH(input): BLAKE2s-256. */
export function hash(...parts: Uint8Array[]): Buffer {
  const h = createHash('blake2s256');
  for (const p of parts) h.update(p);
  return h.digest();
}

type MacFn = (key: Uint8Array, input: Uint8Array, out: Uint8Array) => boolean;
let nativeMac: MacFn | null | undefined;
function macImpl(): MacFn | null {
  if (nativeMac === undefined) {
    try {
      nativeMac = native().blake2sMac;
    } catch {
      nativeMac = null; // no addon: noble
    }
  }
  return nativeMac;
}

/** MAC(key, input) written to `out`: keyed BLAKE2s with an out.length-byte output (16 in WireGuard). */
export function macInto(key: Uint8Array, input: Uint8Array, out: Uint8Array): Uint8Array {
  const f = macImpl();
  if (f === null || !f(key, input, out)) out.set(blake2s(input, { key, dkLen: out.length }));
  return out;
}

/** MAC(key, input): keyed BLAKE2s with a 16-byte output. */
export function mac(key: Uint8Array, input: Uint8Array): Uint8Array {
  return macInto(key, input, new Uint8Array(MAC_LEN));
}

/** The same MAC in pure JavaScript (noble), for tests that hold the addon to it. */
export function macReference(key: Uint8Array, input: Uint8Array): Uint8Array {
  return blake2s(input, { key, dkLen: MAC_LEN });
}

/** HMAC(key, input): HMAC-BLAKE2s-256. */
export function hmac(key: Uint8Array, ...parts: Uint8Array[]): Buffer {
  const h = createHmac('blake2s256', key);
  for (const p of parts) h.update(p);
  return h.digest();
}

const ONE = Uint8Array.of(1);
const TWO = Uint8Array.of(2);
const THREE = Uint8Array.of(3);

/** KDF_n(key, input) for n = 1..3: HKDF with HMAC-BLAKE2s and an empty info. */
export function kdf1(key: Uint8Array, input: Uint8Array): Buffer {
  const t0 = hmac(key, input);
  return hmac(t0, ONE);
}
export function kdf2(key: Uint8Array, input: Uint8Array): [Buffer, Buffer] {
  const t0 = hmac(key, input);
  const t1 = hmac(t0, ONE);
  return [t1, hmac(t0, t1, TWO)];
}
export function kdf3(key: Uint8Array, input: Uint8Array): [Buffer, Buffer, Buffer] {
  const t0 = hmac(key, input);
  const t1 = hmac(t0, ONE);
  const t2 = hmac(t0, t1, TWO);
  return [t1, t2, hmac(t0, t2, THREE)];
}

/** The 96-bit nonce of WireGuard's AEAD: 32 zero bits then a 64-bit little-endian counter. */
export function nonce(counter: bigint): Buffer {
  const n = Buffer.alloc(12);
  n.writeBigUInt64LE(counter, 4);
  return n;
}

/** AEAD(key, counter, plain, authtext): ChaCha20-Poly1305, tag appended. */
export function aead(key: Uint8Array, counter: bigint, plain: Uint8Array, ad: Uint8Array): Buffer {
  const c = createCipheriv('chacha20-poly1305', key, nonce(counter), { authTagLength: TAG_LEN });
  c.setAAD(ad, { plaintextLength: plain.length });
  return Buffer.concat([c.update(plain), c.final(), c.getAuthTag()]);
}

/** The inverse of aead(); null when authentication fails. */
export function aeadOpen(key: Uint8Array, counter: bigint, sealed: Uint8Array, ad: Uint8Array): Buffer | null {
  if (sealed.length < TAG_LEN) return null;
  const d = createDecipheriv('chacha20-poly1305', key, nonce(counter), { authTagLength: TAG_LEN });
  d.setAAD(ad, { plaintextLength: sealed.length - TAG_LEN });
  d.setAuthTag(sealed.subarray(sealed.length - TAG_LEN));
  const out = d.update(sealed.subarray(0, sealed.length - TAG_LEN));
  try {
    d.final();
  } catch {
    return null;
  }
  return out;
}

/** XAEAD(key, nonce24, plain, authtext): XChaCha20-Poly1305, for cookie replies. */
export function xaead(key: Uint8Array, nonce24: Uint8Array, plain: Uint8Array, ad: Uint8Array): Uint8Array {
  return xchacha20poly1305(key, nonce24, ad).encrypt(plain);
}
export function xaeadOpen(key: Uint8Array, nonce24: Uint8Array, sealed: Uint8Array, ad: Uint8Array): Uint8Array | null {
  try {
    return xchacha20poly1305(key, nonce24, ad).decrypt(sealed);
  } catch {
    return null;
  }
}

// ---- Curve25519 -------------------------------------------------------------------------------

const PKCS8_X25519 = Buffer.from('302e020100300506032b656e04220420', 'hex');

/** A Curve25519 private key, clamped as WireGuard stores it, with its public key. */
export interface StaticKey {
  readonly privateKey: Buffer;
  readonly publicKey: Buffer;
  readonly keyObject: KeyObject;
}

/** Clamps a 32-byte X25519 scalar in place (RFC 7748), as `wg genkey` and wireguard-go do. */
export function clamp(key: Uint8Array): Uint8Array {
  key[0] &= 248;
  key[31] = (key[31] & 127) | 64;
  return key;
}

/**
 * A private key from its 32 bytes. A JWK, not PKCS#8 DER: on Node 20 (OpenSSL 3.0) the DER decoder
 * takes 0.6 ms a key, and a handshake makes one (its ephemeral), so it was most of a handshake's
 * CPU; a JWK takes 0.05 ms. A private JWK must carry `x`, but Node derives the public half from
 * `d` alone, so `x` is a placeholder. Whether this Node does is checked once, on RFC 7748's test
 * vector; if not, DER.
 */
const JWK_PLACEHOLDER_X = Buffer.alloc(KEY_LEN).toString('base64url');
const fromJwk = (raw: Uint8Array): KeyObject =>
  createPrivateKey({ key: { kty: 'OKP', crv: 'X25519', d: Buffer.from(raw).toString('base64url'), x: JWK_PLACEHOLDER_X }, format: 'jwk' });
const fromDer = (raw: Uint8Array): KeyObject => createPrivateKey({ key: Buffer.concat([PKCS8_X25519, raw]), format: 'der', type: 'pkcs8' });
const RFC7748_ALICE = { priv: '77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a', pub: '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a' };
let importPrivate: ((raw: Uint8Array) => KeyObject) | null = null;

/** The private-key import this Node gets right: JWK if it derives the public half from `d`. */
function privateImport(): (raw: Uint8Array) => KeyObject {
  if (importPrivate) return importPrivate;
  try {
    importPrivate = rawPublic(createPublicKey(fromJwk(Buffer.from(RFC7748_ALICE.priv, 'hex')))).toString('hex') === RFC7748_ALICE.pub ? fromJwk : fromDer;
  } catch {
    importPrivate = fromDer;
  }
  return importPrivate;
}

export function privateKeyObject(raw: Uint8Array): KeyObject {
  return privateImport()(raw);
}

export function publicKeyObject(raw: Uint8Array): KeyObject {
  return createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: Buffer.from(raw).toString('base64url') }, format: 'jwk' });
}

/**
 * The 32 bytes of a public key, from its JWK (0.002 ms; DER SPKI takes 0.12 ms on Node 20). Safe
 * from the deadlock described at generateEphemeral: these keys come from createPrivateKey.
 */
function rawPublic(k: KeyObject): Buffer {
  return Buffer.from(k.export({ format: 'jwk' }).x as string, 'base64url');
}

export function staticKey(raw: Uint8Array): StaticKey {
  const privateKey = Buffer.from(clamp(Uint8Array.from(raw)));
  const keyObject = privateKeyObject(privateKey);
  return { privateKey, publicKey: rawPublic(createPublicKey(keyObject)), keyObject };
}

export function generatePrivateKey(): Buffer {
  return Buffer.from(clamp(randomBytes(KEY_LEN)));
}

/**
 * An ephemeral key pair for one handshake: random bytes, clamped. Not generateKeyPairSync: on
 * Node 20 a garbage collection during the export of a key it generated can run the generating
 * job's destructor, which takes the key's mutex the export already holds, and the daemon's main
 * thread waits on itself for ever (seen once in a 40-daemon run, gdb: ~KeyGenJob under
 * ExportJWKEdKey). A key made by createPrivateKey has no such job.
 */
export function generateEphemeral(): { publicKey: Buffer; keyObject: KeyObject } {
  const k = staticKey(randomBytes(KEY_LEN));
  return { publicKey: k.publicKey, keyObject: k.keyObject };
}

/**
 * DH(private, public): X25519. Returns null for a low-order public key (an all-zero shared
 * secret, which OpenSSL refuses): such a peer must never produce traffic.
 */
export function dh(priv: KeyObject, pub: KeyObject | Uint8Array): Buffer | null {
  try {
    const publicKey = pub instanceof Uint8Array ? publicKeyObject(pub) : pub;
    const s = diffieHellman({ privateKey: priv, publicKey });
    return isZero(s) ? null : s;
  } catch {
    return null;
  }
}

export function isZero(b: Uint8Array): boolean {
  let acc = 0;
  for (let i = 0; i < b.length; i++) acc |= b[i];
  return acc === 0;
}

export function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

export function random(n: number): Buffer {
  return randomBytes(n);
}

// Random bytes drawn from a pool refilled 4 KiB at a time: a cookie reply's nonce costs a copy, not a
// call into OpenSSL's generator (4 us here), which matters when a flood asks for thousands a second.
const pool = Buffer.alloc(4096);
let poolAt = pool.length;

/** Fills `out` (at most 4096 bytes) with random bytes from the pool. */
export function randomInto(out: Uint8Array): Uint8Array {
  if (poolAt + out.length > pool.length) {
    randomFillSync(pool);
    poolAt = 0;
  }
  out.set(pool.subarray(poolAt, poolAt + out.length));
  pool.fill(0, poolAt, poolAt + out.length); // a byte handed out is not left behind
  poolAt += out.length;
  return out;
}

/** Key text as `wg` prints it. */
export const toBase64 = (k: Uint8Array): string => Buffer.from(k).toString('base64');
export function fromBase64(s: string): Buffer {
  const b = Buffer.from(s, 'base64');
  if (b.length !== KEY_LEN || b.toString('base64') !== s.trim()) throw new Error(`invalid key: ${s}`);
  return b;
}
