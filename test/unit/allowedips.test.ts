import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AllowedIps } from '../../src/wg/allowedips.js';
import { parsePrefix, formatPrefix, type Prefix } from '../../src/wg/prefix.js';
import { addrFromString } from '../../src/wg/endpoint.js';

const v4 = (ip: string) => Buffer.from(ip.split('.').map(Number));
const v6 = (ip: string) => addrFromString(ip);
const p4 = (a: number, b: number, c: number, d: number, bits: number): Prefix => ({ addr: Buffer.from([a, b, c, d]), bits });

/** The tries' roots, to check that removals leave no stray nodes behind. */
function roots(t: AllowedIps<unknown>): [unknown, unknown] {
  const inner = t as unknown as { v4: { root: unknown }; v6: { root: unknown } };
  return [inner.v4.root, inner.v6.root];
}

/** A deterministic PRNG (mulberry32) so a failure can be reproduced. */
function rng(seed: number): (n: number) => number {
  let s = seed >>> 0;
  return (n) => {
    s = (s + 0x6d2b79f5) >>> 0;
    let x = s;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return Math.floor((((x ^ (x >>> 14)) >>> 0) / 2 ** 32) * n);
  };
}

test('longest prefix wins, for IPv4 and IPv6, with the defaults overlapping', () => {
  const t = new AllowedIps<string>();
  t.insert(parsePrefix('0.0.0.0/0'), 'default');
  t.insert(parsePrefix('10.0.0.0/8'), 'a');
  t.insert(parsePrefix('10.1.0.0/16'), 'b');
  t.insert(parsePrefix('10.1.2.3/32'), 'c');
  t.insert(parsePrefix('::/0'), 'default6');
  t.insert(parsePrefix('fd00::/8'), 'd');
  t.insert(parsePrefix('fd00:1::/32'), 'e');
  t.insert(parsePrefix('fd00:1::9/128'), 'f');
  assert.equal(t.lookup(v4('10.1.2.3')), 'c');
  assert.equal(t.lookup(v4('10.1.2.4')), 'b');
  assert.equal(t.lookup(v4('10.2.0.1')), 'a');
  assert.equal(t.lookup(v4('192.168.0.1')), 'default');
  assert.equal(t.lookup(v4('0.0.0.0')), 'default');
  assert.equal(t.lookup(v4('255.255.255.255')), 'default');
  assert.equal(t.lookup(v6('fd00:1::9')), 'f');
  assert.equal(t.lookup(v6('fd00:1::5')), 'e');
  assert.equal(t.lookup(v6('fd00:2::5')), 'd');
  assert.equal(t.lookup(v6('2001:db8::1')), 'default6');
  assert.equal(t.lookup(v6('::ffff:10.1.2.3')), 'default6', 'a v4-mapped address is looked up as IPv6');
  // straight from a packet buffer at an offset
  const pkt = Buffer.alloc(40);
  v4('10.1.9.9').copy(pkt, 16);
  assert.equal(t.lookupV4(pkt, 16), 'b');
  v6('fd00:1::7').copy(pkt, 24);
  assert.equal(t.lookupV6(pkt, 24), 'e');
});

test('truncated or odd inputs find nothing and never throw', () => {
  const t = new AllowedIps<string>();
  t.insert(parsePrefix('0.0.0.0/0'), 'all4');
  t.insert(parsePrefix('::/0'), 'all6');
  const pkt = Buffer.alloc(20);
  assert.equal(t.lookupV4(pkt, 16), 'all4');
  assert.equal(t.lookupV4(pkt, 17), undefined, 'address runs past the end');
  assert.equal(t.lookupV4(pkt, -1), undefined);
  assert.equal(t.lookupV6(pkt, 4), 'all6');
  assert.equal(t.lookupV6(pkt, 5), undefined);
  assert.equal(t.lookupV4(Buffer.alloc(0), 0), undefined);
  assert.equal(t.lookup(Buffer.alloc(5)), undefined, 'neither 4 nor 16 bytes');
  assert.equal(t.lookup(Buffer.alloc(0)), undefined);
  assert.equal(new AllowedIps<string>().lookup(v4('1.2.3.4')), undefined, 'empty table');
});

test('a malformed prefix is refused with a RangeError', () => {
  const t = new AllowedIps<string>();
  assert.throws(() => t.insert({ addr: Buffer.alloc(5), bits: 8 }, 'a'), RangeError);
  assert.throws(() => t.insert({ addr: Buffer.alloc(4), bits: 33 }, 'a'), RangeError);
  assert.throws(() => t.insert({ addr: Buffer.alloc(16), bits: 129 }, 'a'), RangeError);
  assert.throws(() => t.insert({ addr: Buffer.alloc(4), bits: -1 }, 'a'), RangeError);
  assert.throws(() => t.insert({ addr: Buffer.alloc(4), bits: 1.5 }, 'a'), RangeError);
  assert.deepEqual(roots(t), [null, null]);
});

test('host bits are masked (and the caller\'s prefix is left alone); a prefix moves to its new owner', () => {
  const t = new AllowedIps<string>();
  const given = { addr: v4('10.0.0.77'), bits: 24 };
  t.insert(given, 'a');
  assert.deepEqual(given.addr, v4('10.0.0.77'));
  assert.deepEqual(t.prefixesOf('a').map(formatPrefix), ['10.0.0.0/24']);
  t.insert(parsePrefix('10.0.0.0/24'), 'b');
  assert.deepEqual(t.prefixesOf('a'), []);
  assert.deepEqual(t.prefixesOf('b').map(formatPrefix), ['10.0.0.0/24']);
  assert.equal(t.lookup(v4('10.0.0.1')), 'b');
  t.remove(parsePrefix('10.0.0.0/24'), 'a'); // not a's: no effect
  assert.equal(t.lookup(v4('10.0.0.1')), 'b');
  t.insert(parsePrefix('10.0.0.128/25'), 'c');
  t.remove(parsePrefix('10.0.0.9/24'), 'b'); // host bits ignored on removal too
  assert.equal(t.lookup(v4('10.0.0.1')), undefined);
  assert.equal(t.lookup(v4('10.0.0.200')), 'c');
  t.removeByPeer('c');
  assert.equal(t.lookup(v4('10.0.0.200')), undefined);
  assert.deepEqual(roots(t), [null, null]);
  // the same bits in the other family are another prefix
  t.insert(parsePrefix('10.0.0.0/8'), 'x');
  t.insert(parsePrefix('a00::/8'), 'y');
  assert.equal(t.lookup(v4('10.9.9.9')), 'x');
  assert.equal(t.lookup(v6('a00::1')), 'y');
  assert.deepEqual(t.prefixesOf('y').map(formatPrefix), ['a00::/8']);
});

test('a more specific prefix of another peer takes over; removing it restores the first', () => {
  const t = new AllowedIps<string>();
  t.insert(parsePrefix('192.168.0.0/16'), 'a');
  t.insert(parsePrefix('192.168.7.0/24'), 'b');
  assert.equal(t.lookup(v4('192.168.7.1')), 'b');
  t.removeByPeer('b');
  assert.equal(t.lookup(v4('192.168.7.1')), 'a');
  t.remove(parsePrefix('192.168.0.0/16'), 'a');
  assert.deepEqual(roots(t), [null, null]);
});

test('the kernel selftest table for IPv4 (as wireguard-go allowedips_test.go ports it)', () => {
  const t = new AllowedIps<string>();
  const steps: [string, number, number, number, number, number][] = [
    ['a', 192, 168, 4, 0, 24], ['b', 192, 168, 4, 4, 32], ['c', 192, 168, 0, 0, 16],
    ['d', 192, 95, 5, 64, 27], ['c', 192, 95, 5, 65, 27], ['e', 0, 0, 0, 0, 0],
    ['g', 64, 15, 112, 0, 20], ['h', 64, 15, 123, 211, 25], ['a', 10, 0, 0, 0, 25],
    ['b', 10, 0, 0, 128, 25], ['a', 10, 1, 0, 0, 30], ['b', 10, 1, 0, 4, 30],
    ['c', 10, 1, 0, 8, 29], ['d', 10, 1, 0, 16, 29],
  ];
  for (const [peer, a, b, c, d, bits] of steps) t.insert(p4(a, b, c, d, bits), peer);
  const expect: [string, string][] = [
    ['a', '192.168.4.20'], ['a', '192.168.4.0'], ['b', '192.168.4.4'], ['c', '192.168.200.182'],
    ['c', '192.95.5.68'], ['e', '192.95.5.96'], ['g', '64.15.116.26'], ['g', '64.15.127.3'],
  ];
  for (const [peer, ip] of expect) assert.equal(t.lookup(v4(ip)), peer, ip);

  const hosts = ['1.0.0.0', '64.0.0.0', '128.0.0.0', '192.0.0.0', '255.0.0.0'];
  for (const ip of hosts) t.insert({ addr: v4(ip), bits: 32 }, 'a');
  for (const ip of hosts) assert.equal(t.lookup(v4(ip)), 'a', ip);
  t.removeByPeer('a');
  for (const ip of hosts) assert.notEqual(t.lookup(v4(ip)), 'a', ip);

  for (const peer of ['a', 'b', 'c', 'd', 'e', 'g', 'h']) t.removeByPeer(peer);
  assert.deepEqual(roots(t), [null, null], 'removing every peer empties the tries');

  t.insert(p4(192, 168, 0, 0, 16), 'a');
  t.insert(p4(192, 168, 0, 0, 24), 'a');
  t.removeByPeer('a');
  assert.equal(t.lookup(v4('192.168.0.1')), undefined);
  assert.deepEqual(roots(t), [null, null]);
});

test('the kernel selftest table for IPv6 (as wireguard-go allowedips_test.go ports it)', () => {
  const t = new AllowedIps<string>();
  const addr = (w: number[]) => {
    const b = Buffer.alloc(16);
    w.forEach((x, i) => b.writeUInt32BE(x >>> 0, i * 4));
    return b;
  };
  const inserts: [string, number[], number][] = [
    ['d', [0x26075300, 0x60006b00, 0, 0xc05f0543], 128],
    ['c', [0x26075300, 0x60006b00, 0, 0], 64],
    ['e', [0, 0, 0, 0], 0],
    ['f', [0, 0, 0, 0], 0],
    ['g', [0x24046800, 0, 0, 0], 32],
    ['h', [0x24046800, 0x40040800, 0xdeadbeef, 0xdeadbeef], 64],
    ['a', [0x24046800, 0x40040800, 0xdeadbeef, 0xdeadbeef], 128],
    ['c', [0x24446800, 0x40e40800, 0xdeaebeef, 0xdefbeef], 128],
    ['b', [0x24446800, 0xf0e40800, 0xeeaebeef, 0], 98],
  ];
  for (const [peer, w, bits] of inserts) t.insert({ addr: addr(w), bits }, peer);
  const expect: [string, number[]][] = [
    ['d', [0x26075300, 0x60006b00, 0, 0xc05f0543]],
    ['c', [0x26075300, 0x60006b00, 0, 0xc02e01ee]],
    ['f', [0x26075300, 0x60006b01, 0, 0]],
    ['g', [0x24046800, 0x40040806, 0, 0x1006]],
    ['g', [0x24046800, 0x40040806, 0x1234, 0x5678]],
    ['f', [0x240467ff, 0x40040806, 0x1234, 0x5678]],
    ['f', [0x24046801, 0x40040806, 0x1234, 0x5678]],
    ['h', [0x24046800, 0x40040800, 0x1234, 0x5678]],
    ['h', [0x24046800, 0x40040800, 0, 0]],
    ['h', [0x24046800, 0x40040800, 0x10101010, 0x10101010]],
    ['a', [0x24046800, 0x40040800, 0xdeadbeef, 0xdeadbeef]],
  ];
  for (const [peer, w] of expect) assert.equal(t.lookup(addr(w)), peer, w.map((x) => x.toString(16)).join(':'));
  assert.deepEqual(t.prefixesOf('e'), [], '::/0 moved from e to f');
});

test('130,561 host prefixes on one peer: inserted quickly, found, listed and removed', () => {
  const t = new AllowedIps<number>();
  const n = 130_561;
  const start = performance.now();
  for (let i = 0; i < n; i++) t.insert({ addr: Buffer.from([10, (i >> 16) & 255, (i >> 8) & 255, i & 255]), bits: 32 }, 0);
  const insertMs = performance.now() - start;
  assert.ok(insertMs < 5000, `inserting took ${insertMs.toFixed(0)} ms`);
  assert.equal(t.prefixesOf(0).length, n);
  assert.equal(t.lookup(Buffer.from([10, 1, 254, 0])), 0);
  assert.equal(t.lookup(Buffer.from([10, 1, 254, 1])), undefined);
  assert.equal(t.lookup(Buffer.from([10, 2, 0, 2])), undefined);
  const pkt = Buffer.alloc(20);
  pkt[16] = 10;
  // a million lookups from a packet buffer, over 10.0.0.0/15: every address below 10.1.254.1 is in
  const lookups = 1_000_000;
  const lookStart = performance.now();
  let hits = 0;
  for (let i = 0; i < lookups; i++) {
    const index = i % 131_072;
    pkt[17] = index >> 16; pkt[18] = (index >> 8) & 255; pkt[19] = index & 255;
    if (t.lookupV4(pkt, 16) === 0) hits++;
  }
  const lookMs = performance.now() - lookStart;
  let expected = 0;
  for (let i = 0; i < lookups; i++) if (i % 131_072 < n) expected++;
  assert.equal(hits, expected);
  assert.ok(lookMs < 5000, `a million lookups took ${lookMs.toFixed(0)} ms`);
  t.removeByPeer(0);
  assert.equal(t.lookup(Buffer.from([10, 1, 254, 0])), undefined);
  assert.deepEqual(roots(t), [null, null]);
});

// ---- against a brute-force table ---------------------------------------------------------------

interface Entry { addr: bigint; bits: number; peer: number }

const toBig = (b: Uint8Array) => b.reduce((acc, x) => (acc << 8n) | BigInt(x), 0n);
function fromBig(x: bigint, len: number): Buffer {
  const b = Buffer.alloc(len);
  for (let i = len - 1; i >= 0; i--, x >>= 8n) b[i] = Number(x & 255n);
  return b;
}
const maskOf = (bits: number, width: number) => ((1n << BigInt(width)) - 1n) ^ ((1n << BigInt(width - bits)) - 1n);

function bruteLookup(table: Map<string, Entry>, ip: bigint, width: number): number | undefined {
  let best: Entry | undefined;
  for (const e of table.values()) {
    if ((ip & maskOf(e.bits, width)) === e.addr && (!best || e.bits > best.bits)) best = e;
  }
  return best?.peer;
}

for (const width of [32, 128]) {
  test(`IPv${width === 32 ? 4 : 6}: random inserts, moves and removals agree with a brute-force table`, () => {
    const len = width / 8;
    const r = rng(width);
    const t = new AllowedIps<number>();
    const table = new Map<string, Entry>();
    // Addresses are a few random bases with up to three bits flipped, so prefixes of every length
    // nest inside each other and collide often.
    const randomWide = () => {
      let x = 0n;
      for (let got = 0; got < width; got += 16) x = (x << 16n) | BigInt(r(2 ** 16));
      return x;
    };
    const bases = Array.from({ length: 6 }, randomWide);
    const randomAddr = () => {
      let x = bases[r(bases.length)];
      for (let flips = r(4); flips > 0; flips--) x ^= 1n << BigInt(r(width));
      return x;
    };
    const randomBits = () => r(width + 1);
    for (let round = 0; round < 3000; round++) {
      const bits = randomBits();
      const addr = randomAddr() & maskOf(bits, width);
      const key = `${addr}/${bits}`;
      const op = r(10);
      if (op < 6) {
        const peer = r(12);
        // host bits must not matter: pass some
        t.insert({ addr: fromBig(addr | (randomAddr() & ~maskOf(bits, width)), len), bits }, peer);
        table.set(key, { addr, bits, peer });
      } else if (op < 9) {
        // remove an existing entry, with its owner or with the wrong one
        const existing = [...table.values()];
        if (existing.length === 0) continue;
        const e = existing[r(existing.length)];
        const asOwner = r(4) !== 0;
        t.remove({ addr: fromBig(e.addr, len), bits: e.bits }, asOwner ? e.peer : e.peer + 100);
        if (asOwner) table.delete(`${e.addr}/${e.bits}`);
      } else {
        const peer = r(12);
        t.removeByPeer(peer);
        for (const [k, e] of table) if (e.peer === peer) table.delete(k);
      }
      if (round % 100 === 99) {
        for (let q = 0; q < 200; q++) {
          const ip = q % 2 === 0 ? randomAddr() : [...table.values()][q % Math.max(1, table.size)]?.addr ?? 0n;
          assert.equal(t.lookup(fromBig(ip, len)), bruteLookup(table, ip, width), `round ${round}: lookup ${ip.toString(16)}`);
        }
        for (let peer = 0; peer < 12; peer++) {
          const got = t.prefixesOf(peer).map((p) => `${toBig(p.addr)}/${p.bits}`).sort();
          const want = [...table.entries()].filter(([, e]) => e.peer === peer).map(([k]) => k).sort();
          assert.deepEqual(got, want, `round ${round}: prefixes of ${peer}`);
        }
      }
    }
    for (let peer = 0; peer < 12; peer++) t.removeByPeer(peer);
    assert.deepEqual(roots(t), [null, null], 'no nodes left behind');
  });
}
