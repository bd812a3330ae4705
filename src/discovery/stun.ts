// STUN Binding (RFC 8489), the part endpoint discovery needs: a request, a success response with
// XOR-MAPPED-ADDRESS, and a parser that reads any server's response (XOR-MAPPED-ADDRESS, or the
// old MAPPED-ADDRESS of RFC 3489 servers). It shares the WireGuard socket, so it is told apart by
// the magic cookie 0x2112A442 at offset 4, never by the first byte alone: a Binding success
// response starts with 0x01, as a WireGuard initiation does.
//
// Written here rather than taken from npm: the one maintained STUN package (@msimerson/stun 3.2)
// decodes IPv6 XOR-MAPPED-ADDRESS wrongly (it XORs with the cookie but not the transaction id:
// RFC 5769's IPv6 test vector decodes to 2001:db8:a5d3:f179:... instead of 2001:db8:1234:5678:...),
// and meshd needs IPv6. The test vectors of RFC 5769 are the unit tests of this file.
//
// Writers fill a caller's buffer (no allocation); the parser returns views into the packet.
//
// Exported API:
//   STUN_MAGIC, BINDING_REQUEST, BINDING_SUCCESS, TXID_BYTES (12), HEADER_BYTES (20)
//   isStun(buf, at, len): boolean                 cookie, zero top bits, length field == len - 20
//   writeBindingRequest(out, at, txid): number    bytes written (20)
//   writeBindingSuccess(out, at, txid, addr16, addrAt, port): number   with XOR-MAPPED-ADDRESS
//   parseStun(buf, at, len): StunMessage | null   null: not STUN, or malformed attributes
//   interface StunMessage { type: number; txid: Buffer (view); mapped: { addr: Buffer; port } | null }
import { isV4Mapped } from '../wg/endpoint.js';

export const STUN_MAGIC = 0x2112a442;
export const BINDING_REQUEST = 0x0001;
export const BINDING_SUCCESS = 0x0101;
export const HEADER_BYTES = 20;
export const TXID_BYTES = 12;

const ATTR_MAPPED_ADDRESS = 0x0001;
const ATTR_XOR_MAPPED_ADDRESS = 0x0020;
const FAMILY_V4 = 0x01;
const FAMILY_V6 = 0x02;

export interface StunMessage {
  type: number;
  /** The 12-byte transaction id: a view into the packet. */
  txid: Buffer;
  /** The reflexive address a response reports (16 bytes, IPv4 mapped), or null. */
  mapped: { addr: Buffer; port: number } | null;
}

export function isStun(buf: Buffer, at: number, len: number): boolean {
  return len >= HEADER_BYTES &&
    (buf[at] & 0xc0) === 0 &&
    buf.readUInt32BE(at + 4) === STUN_MAGIC &&
    buf.readUInt16BE(at + 2) === len - HEADER_BYTES &&
    (len & 3) === 0;
}

function writeHeader(out: Buffer, at: number, type: number, bodyLength: number, txid: Uint8Array): void {
  out.writeUInt16BE(type, at);
  out.writeUInt16BE(bodyLength, at + 2);
  out.writeUInt32BE(STUN_MAGIC, at + 4);
  out.set(txid.subarray(0, TXID_BYTES), at + 8);
}

export function writeBindingRequest(out: Buffer, at: number, txid: Uint8Array): number {
  writeHeader(out, at, BINDING_REQUEST, 0, txid);
  return HEADER_BYTES;
}

/** A Binding success response telling the requester its address as we see it (addr: 16 bytes at addrAt). */
export function writeBindingSuccess(out: Buffer, at: number, txid: Uint8Array, addr: Uint8Array, addrAt: number, port: number): number {
  const v4 = isV4Mapped(addr, addrAt);
  const valueLength = v4 ? 8 : 20;
  writeHeader(out, at, BINDING_SUCCESS, 4 + valueLength, txid);
  const a = at + HEADER_BYTES;
  out.writeUInt16BE(ATTR_XOR_MAPPED_ADDRESS, a);
  out.writeUInt16BE(valueLength, a + 2);
  out[a + 4] = 0;
  out[a + 5] = v4 ? FAMILY_V4 : FAMILY_V6;
  out.writeUInt16BE(port ^ (STUN_MAGIC >>> 16), a + 6);
  // XOR key: the cookie, then (IPv6) the transaction id, as written in the header above.
  const n = v4 ? 4 : 16;
  const src = v4 ? addrAt + 12 : addrAt;
  for (let i = 0; i < n; i++) out[a + 8 + i] = addr[src + i] ^ out[at + 4 + i];
  return HEADER_BYTES + 4 + valueLength;
}

export function parseStun(buf: Buffer, at: number, len: number): StunMessage | null {
  if (!isStun(buf, at, len)) return null;
  const type = buf.readUInt16BE(at);
  const txid = buf.subarray(at + 8, at + HEADER_BYTES);
  let mapped: StunMessage['mapped'] = null;
  let xorSeen = false;
  const end = at + len;
  for (let p = at + HEADER_BYTES; p < end; ) {
    if (p + 4 > end) return null;
    const attr = buf.readUInt16BE(p);
    const vlen = buf.readUInt16BE(p + 2);
    const v = p + 4;
    if (v + vlen > end) return null;
    if ((attr === ATTR_XOR_MAPPED_ADDRESS || (attr === ATTR_MAPPED_ADDRESS && !xorSeen)) && vlen >= 8) {
      const family = buf[v + 1];
      const n = family === FAMILY_V4 ? 4 : family === FAMILY_V6 ? 16 : 0;
      if (n === 0 || vlen < 4 + n) return null;
      const xor = attr === ATTR_XOR_MAPPED_ADDRESS;
      const addr = Buffer.alloc(16);
      if (n === 4) addr[10] = addr[11] = 0xff;
      for (let i = 0; i < n; i++) addr[16 - n + i] = buf[v + 4 + i] ^ (xor ? buf[at + 4 + i] : 0);
      const port = buf.readUInt16BE(v + 2) ^ (xor ? STUN_MAGIC >>> 16 : 0);
      mapped = { addr, port };
      xorSeen ||= xor;
    }
    p = v + ((vlen + 3) & ~3); // attributes are padded to 4 bytes
  }
  return { type, txid, mapped };
}
