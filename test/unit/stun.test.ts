// STUN Binding against RFC 5769's test vectors (IPv4 and IPv6 responses, a request), what we write
// byte for byte, and what is not STUN (WireGuard's messages, truncated or lying lengths).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BINDING_REQUEST, BINDING_SUCCESS, isStun, parseStun, writeBindingRequest, writeBindingSuccess } from '../../src/discovery/stun.js';
import { addrFromString, addrToString } from '../../src/wg/endpoint.js';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const TXID = hex('b7e7a701 bc34d686 fa87dfae');

// RFC 5769 2.1: a request with SOFTWARE, PRIORITY, ICE-CONTROLLED, USERNAME, MESSAGE-INTEGRITY, FINGERPRINT
const REQUEST = hex(`0001 0058 2112a442 b7e7a701 bc34d686 fa87dfae
  8022 0010 53545554 4e207465 73742063 6c69656e
  0024 0004 6e0001ff
  8029 0008 932ff9b1 51263b36
  0006 0009 6576746a 3a683676 59202020
  0008 0014 9aeaa70c bfd8cb56 781ef2b5 b2d3f249 c1b571a2
  8028 0004 e57a3bcf`);
// RFC 5769 2.2: IPv4 response, 192.0.2.1:32853
const RESPONSE_V4 = hex(`0101 003c 2112a442 b7e7a701 bc34d686 fa87dfae
  8022 000b 74657374 20766563 746f7220
  0020 0008 0001a147 e112a643
  0008 0014 2b91f599 fd9e90c3 8c7489f9 2af9ba53 f06be7d7
  8028 0004 c07d4c96`);
// RFC 5769 2.3: IPv6 response, [2001:db8:1234:5678:11:2233:4455:6677]:32853
const RESPONSE_V6 = hex(`0101 0048 2112a442 b7e7a701 bc34d686 fa87dfae
  8022 000b 74657374 20766563 746f7220
  0020 0014 0002a147 0113a9fa a5d3f179 bc25f4b5 bed2b9d9
  0008 0014 a382954e 4be67bf1 1784c97c 8292c275 bfe3ed41
  8028 0004 c8fb0b4c`);

test('RFC 5769 vectors: the request is a Binding request, the responses give their mapped addresses', () => {
  const req = parseStun(REQUEST, 0, REQUEST.length)!;
  assert.equal(req.type, BINDING_REQUEST);
  assert.deepEqual(req.txid, TXID);
  assert.equal(req.mapped, null);
  const v4 = parseStun(RESPONSE_V4, 0, RESPONSE_V4.length)!;
  assert.equal(v4.type, BINDING_SUCCESS);
  assert.equal(addrToString(v4.mapped!.addr), '192.0.2.1');
  assert.equal(v4.mapped!.port, 32853);
  const v6 = parseStun(RESPONSE_V6, 0, RESPONSE_V6.length)!;
  assert.equal(addrToString(v6.mapped!.addr), '2001:db8:1234:5678:11:2233:4455:6677');
  assert.equal(v6.mapped!.port, 32853);
});

test('what we write is what the RFC writes, and parses back', () => {
  const out = Buffer.alloc(64);
  for (const [vector, ip] of [[RESPONSE_V4, '192.0.2.1'], [RESPONSE_V6, '2001:db8:1234:5678:11:2233:4455:6677']] as const) {
    const n = writeBindingSuccess(out, 0, TXID, addrFromString(ip), 0, 32853);
    const attr = out.subarray(20, n);
    const at = vector.indexOf(hex('0020'), 20);
    assert.deepEqual(attr, vector.subarray(at, at + attr.length), `XOR-MAPPED-ADDRESS for ${ip}`);
    const back = parseStun(out, 0, n)!;
    assert.equal(addrToString(back.mapped!.addr), ip);
    assert.equal(back.mapped!.port, 32853);
  }
  // at an offset inside a bigger buffer, with the address at an offset of its own
  const big = Buffer.alloc(200, 0xee);
  const addrs = Buffer.concat([Buffer.alloc(16), addrFromString('198.20.1.2')]);
  const n = writeBindingSuccess(big, 50, TXID, addrs, 16, 51820);
  const m = parseStun(big, 50, n)!;
  assert.equal(addrToString(m.mapped!.addr), '198.20.1.2');
  assert.equal(m.mapped!.port, 51820);
  assert.equal(writeBindingRequest(big, 100, TXID), 20);
  assert.ok(isStun(big, 100, 20));
  assert.equal(parseStun(big, 100, 20)!.type, BINDING_REQUEST);
});

test('not STUN: WireGuard messages, lying lengths, truncated attributes, garbage', () => {
  const init = Buffer.alloc(148);
  init.writeUInt32LE(1, 0);
  assert.ok(!isStun(init, 0, 148));
  assert.equal(parseStun(RESPONSE_V4, 0, RESPONSE_V4.length - 4), null, 'length field disagrees');
  const cut = Buffer.from(RESPONSE_V4);
  cut.writeUInt16BE(0x00ff, 22); // SOFTWARE claims 255 bytes
  assert.equal(parseStun(cut, 0, cut.length), null);
  const badFamily = Buffer.from(RESPONSE_V4);
  badFamily[RESPONSE_V4.indexOf(hex('0020'), 20) + 5] = 9;
  assert.equal(parseStun(badFamily, 0, badFamily.length), null);
  for (let i = 0; i < 2000; i++) {
    const junk = Buffer.from(Array.from({ length: 20 + (i % 60) }, () => Math.floor(Math.random() * 256)));
    if (i % 2) junk.writeUInt32BE(0x2112a442, 4);
    parseStun(junk, 0, junk.length); // never throws
  }
});
