// Path probes: how two members find out whether a path between them works, and open it through
// their NATs while they are at it (both probe each other's candidates at once). A probe and its
// answer travel on the WireGuard socket, beside WireGuard's own messages, and are authenticated
// with a key only the two members can derive (from the Diffie-Hellman of their WireGuard static
// keys), so a stranger can neither forge an answer nor make a member believe a path works:
//
//   probe  'mPRB' | src id (8) | dst id (8) | txid (8) | mac (16)      44 bytes
//   pong   'mPNG' | src id (8) | dst id (8) | txid (8) | mac (16)      src = the answering member
//
//   id  = the first 8 bytes of a member's WireGuard public key
//   mac = keyed BLAKE2s-128 (the WireGuard paper's MAC) over the first 28 bytes, with
//         key = HASH("meshd path probe v1" || DH(our static key, their public key))
//
// Nothing here changes where WireGuard sends: the daemon decides that from answered probes. A
// replayed answer is useless (the txid is random and used once); a probe's answer goes only to
// where the probe came from, and is no bigger than the probe.
//
// Exported API:
//   PROBE_MAGIC, PONG_MAGIC, PROBE_BYTES (44), ID_BYTES (8)
//   pairKey(ourStatic: KeyObject, theirPublic: Uint8Array): Buffer | null     null: low-order key
//   writeProbe(out, at, magic, srcId, dstId, txid, key): number              bytes written
//   checkProbe(buf, at, key): boolean                                        the mac verifies
import type { KeyObject } from 'node:crypto';
import { dh, hash, mac } from '../wg/crypto.js';

export const PROBE_MAGIC = 0x6d505242; // 'mPRB'
export const PONG_MAGIC = 0x6d504e47; // 'mPNG'
export const ID_BYTES = 8;
export const PROBE_BYTES = 44;
const MACCED = 28;
const LABEL = Buffer.from('meshd path probe v1');

export function pairKey(ourStatic: KeyObject, theirPublic: Uint8Array): Buffer | null {
  const shared = dh(ourStatic, theirPublic);
  return shared === null ? null : hash(LABEL, shared);
}

export function writeProbe(out: Buffer, at: number, magic: number, srcId: Uint8Array, dstId: Uint8Array, txid: Uint8Array, key: Uint8Array): number {
  out.writeUInt32BE(magic, at);
  out.set(srcId.subarray(0, ID_BYTES), at + 4);
  out.set(dstId.subarray(0, ID_BYTES), at + 12);
  out.set(txid.subarray(0, 8), at + 20);
  out.set(mac(key, out.subarray(at, at + MACCED)), at + MACCED);
  return PROBE_BYTES;
}

export function checkProbe(buf: Buffer, at: number, key: Uint8Array): boolean {
  const want = mac(key, buf.subarray(at, at + MACCED));
  let diff = 0;
  for (let i = 0; i < 16; i++) diff |= want[i] ^ buf[at + MACCED + i];
  return diff === 0;
}
