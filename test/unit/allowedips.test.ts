import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AllowedIps } from '../../src/wg/allowedips.js';
import { parsePrefix, formatPrefix } from '../../src/wg/prefix.js';
import { addrFromString } from '../../src/wg/endpoint.js';

const v4 = (ip: string) => Buffer.from(ip.split('.').map(Number));
const v6 = (ip: string) => addrFromString(ip);

test('longest prefix wins, for IPv4 and IPv6, with defaults overlapping', () => {
  const t = new AllowedIps<string>();
  t.insert(parsePrefix('0.0.0.0/0'), 'default');
  t.insert(parsePrefix('10.0.0.0/8'), 'a');
  t.insert(parsePrefix('10.1.0.0/16'), 'b');
  t.insert(parsePrefix('10.1.2.3/32'), 'c');
  t.insert(parsePrefix('::/0'), 'default6');
  t.insert(parsePrefix('fd00::/8'), 'd');
  t.insert(parsePrefix('fd00:1::/32'), 'e');
  assert.equal(t.lookup(v4('10.1.2.3')), 'c');
  assert.equal(t.lookup(v4('10.1.2.4')), 'b');
  assert.equal(t.lookup(v4('10.2.0.1')), 'a');
  assert.equal(t.lookup(v4('192.168.0.1')), 'default');
  assert.equal(t.lookup(v6('fd00:1::5')), 'e');
  assert.equal(t.lookup(v6('fd00:2::5')), 'd');
  assert.equal(t.lookup(v6('2001:db8::1')), 'default6');
  // lookups straight from a packet buffer at an offset
  const pkt = Buffer.alloc(40);
  v4('10.1.9.9').copy(pkt, 16);
  assert.equal(t.lookupV4(pkt, 16), 'b');
  v6('fd00:1::7').copy(pkt, 24);
  assert.equal(t.lookupV6(pkt, 24), 'e');
});

test('host bits are masked; a prefix moves to its new owner; removal is per owner', () => {
  const t = new AllowedIps<string>();
  t.insert(parsePrefix('10.0.0.77/24'), 'a');
  assert.deepEqual(t.prefixesOf('a').map(formatPrefix), ['10.0.0.0/24']);
  t.insert(parsePrefix('10.0.0.0/24'), 'b');
  assert.deepEqual(t.prefixesOf('a'), []);
  assert.equal(t.lookup(v4('10.0.0.1')), 'b');
  t.remove(parsePrefix('10.0.0.0/24'), 'a'); // not a's: no effect
  assert.equal(t.lookup(v4('10.0.0.1')), 'b');
  t.insert(parsePrefix('10.0.0.128/25'), 'c');
  t.remove(parsePrefix('10.0.0.0/24'), 'b');
  assert.equal(t.lookup(v4('10.0.0.1')), undefined);
  assert.equal(t.lookup(v4('10.0.0.200')), 'c');
  t.removeByPeer('c');
  assert.equal(t.lookup(v4('10.0.0.200')), undefined);
});

test('a more specific prefix of another peer takes over; removing it restores the first', () => {
  const t = new AllowedIps<string>();
  t.insert(parsePrefix('192.168.0.0/16'), 'a');
  t.insert(parsePrefix('192.168.7.0/24'), 'b');
  assert.equal(t.lookup(v4('192.168.7.1')), 'b');
  t.removeByPeer('b');
  assert.equal(t.lookup(v4('192.168.7.1')), 'a');
});

test('130,561 host prefixes on one peer, 40 peers x 52 prefixes, agree with a brute-force table', () => {
  const t = new AllowedIps<number>();
  for (let i = 0; i < 130_561; i++) t.insert({ addr: Buffer.from([10, (i >> 16) & 255, (i >> 8) & 255, i & 255]), bits: 32 }, 0);
  assert.equal(t.prefixesOf(0).length, 130_561);
  assert.equal(t.lookup(Buffer.from([10, 1, 254, 0])), 0);
  assert.equal(t.lookup(Buffer.from([10, 1, 254, 1])), undefined);
  assert.equal(t.lookup(Buffer.from([10, 2, 0, 2])), undefined);

  const table: [number, number, number][] = []; // [addr, bits, peer]
  const rnd = (n: number) => Math.floor(Math.random() * n);
  const s = new AllowedIps<number>();
  for (let peer = 0; peer < 40; peer++) {
    for (let j = 0; j < 52; j++) {
      const bits = 8 + rnd(25);
      const addr = ((172 << 24) | rnd(2 ** 24)) >>> 0;
      const masked = bits === 0 ? 0 : (addr & (~0 << (32 - bits))) >>> 0;
      for (let k = table.length - 1; k >= 0; k--) if (table[k][0] === masked && table[k][1] === bits) table.splice(k, 1);
      table.push([masked, bits, peer]);
      s.insert({ addr: Buffer.from([masked >>> 24, (masked >> 16) & 255, (masked >> 8) & 255, masked & 255]), bits }, peer);
    }
  }
  for (let q = 0; q < 5000; q++) {
    const ip = ((172 << 24) | rnd(2 ** 24)) >>> 0;
    let best: [number, number, number] | undefined;
    for (const e of table) {
      const mask = e[1] === 0 ? 0 : (~0 << (32 - e[1])) >>> 0;
      if (((ip & mask) >>> 0) === e[0] && (!best || e[1] > best[1])) best = e;
    }
    const got = s.lookup(Buffer.from([ip >>> 24, (ip >> 16) & 255, (ip >> 8) & 255, ip & 255]));
    assert.equal(got, best?.[2], `lookup of ${ip}`);
  }
});
