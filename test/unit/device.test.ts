// The whole protocol, without sockets or real time: devices on an in-memory wire (wire.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Wire, ipv4, ipv6 } from './wire.js';
import { addrFromString } from '../../src/wg/endpoint.js';
import { parsePrefix } from '../../src/wg/prefix.js';
import { Initiation, Response } from '../../src/wg/messages.js';

function pair(opts: { psk?: [Buffer | undefined, Buffer | undefined] } = {}) {
  const wire = new Wire();
  const a = wire.addNode('a', '192.0.2.1', 51820);
  const b = wire.addNode('b', '192.0.2.2', 51821);
  if (opts.psk) {
    wire.connect(a, b, '10.0.0.1/32', '10.0.0.2/32');
    const setPsk = (x: typeof a, y: typeof a, psk?: Buffer) => x.device.apply({
      replacePeers: false,
      peers: [{ publicKey: y.publicKey, remove: false, updateOnly: true, replaceAllowedIps: false, allowedIps: [], presharedKey: psk ?? null }],
    });
    setPsk(a, b, opts.psk[0]);
    setPsk(b, a, opts.psk[1]);
  } else {
    wire.connect(a, b, '10.0.0.1/32', '10.0.0.2/32');
  }
  return { wire, a, b };
}

test('handshake on first packet, then data both ways, exact byte counters', () => {
  const { wire, a, b } = pair();
  const p1 = ipv4('10.0.0.1', '10.0.0.2', 100);
  wire.sendIp(a, [p1]);
  wire.pump();
  assert.equal(b.delivered.length, 1, 'staged packet delivered after the handshake');
  assert.deepEqual(b.delivered[0], p1);

  const p2 = ipv4('10.0.0.2', '10.0.0.1', 33);
  wire.sendIp(b, [p2]);
  wire.pump();
  assert.deepEqual(a.delivered, [p2]);

  // Counters count whole UDP payloads: handshake messages and transport packets.
  const sent = (from: string) => wire.log.filter((d) => d.from.ip === from).reduce((n, d) => n + d.bytes.length, 0);
  const [sa] = a.device.snapshot().peers;
  const [sb] = b.device.snapshot().peers;
  assert.equal(sa.txBytes, sent('192.0.2.1'));
  assert.equal(sb.rxBytes, sent('192.0.2.1'));
  assert.equal(sb.txBytes, sent('192.0.2.2'));
  assert.equal(sa.rxBytes, sent('192.0.2.2'));
  assert.ok(sa.lastHandshakeMs > 0 && sb.lastHandshakeMs > 0);
  // Transport packets are padded to 16: 128-byte IP packet -> 16 + 128 + 16.
  const transport = wire.log.filter((d) => d.bytes[0] === 4 && d.from.ip === '192.0.2.1');
  assert.equal(transport[0].bytes.length, 16 + 128 + 16);
});

test('handshakes counts sessions completed: the initiator on the response, the responder on the first data', () => {
  const { wire, a, b } = pair();
  assert.equal(a.device.handshakes, 0);
  wire.sendIp(a, [ipv4('10.0.0.1', '10.0.0.2', 10)]);
  wire.pump();
  assert.equal(a.device.handshakes, 1, 'the initiator, on the response');
  assert.equal(b.device.handshakes, 1, 'the responder, on the first transport packet');
  // A replayed initiation is refused: no session, no count.
  const init = wire.log.find((d) => d.bytes[0] === 1)!;
  wire.inject(b, [init.bytes], init.from);
  wire.pump();
  assert.equal(b.device.handshakes, 1);
  assert.equal(b.device.drops.handshake, 1);
});

test('a batch of many packets, IPv4 and IPv6, arrives intact and in order', () => {
  const { wire, a, b } = pair();
  a.device.apply({ replacePeers: false, peers: [{ publicKey: b.publicKey, remove: false, updateOnly: true, replaceAllowedIps: false, allowedIps: [{ prefix: parsePrefix('fd00::2/128'), remove: false }] }] });
  b.device.apply({ replacePeers: false, peers: [{ publicKey: a.publicKey, remove: false, updateOnly: true, replaceAllowedIps: false, allowedIps: [{ prefix: parsePrefix('fd00::1/128'), remove: false }] }] });
  wire.sendIp(a, [ipv4('10.0.0.1', '10.0.0.2', 1)]);
  wire.pump();
  const packets = Array.from({ length: 60 }, (_, i) => (i % 2 ? ipv6('fd00::1', 'fd00::2', i * 20) : ipv4('10.0.0.1', '10.0.0.2', i * 23)));
  wire.sendIp(a, packets);
  wire.pump();
  assert.deepEqual(b.delivered.slice(1), packets);
});

test('a replayed transport packet is dropped and counted', () => {
  const { wire, a, b } = pair();
  wire.sendIp(a, [ipv4('10.0.0.1', '10.0.0.2', 10)]);
  wire.pump();
  const transport = wire.log.filter((d) => d.bytes[0] === 4 && d.from.ip === '192.0.2.1');
  wire.inject(b, [transport[0].bytes], transport[0].from);
  assert.equal(b.delivered.length, 1);
  assert.equal(b.device.drops.replay, 1);
});

test('the source check drops packets whose inner source the peer may not use', () => {
  const { wire, a, b } = pair();
  a.device.apply({ replacePeers: false, peers: [{ publicKey: b.publicKey, remove: false, updateOnly: true, replaceAllowedIps: false, allowedIps: [{ prefix: parsePrefix('10.0.0.0/24'), remove: false }] }] });
  wire.sendIp(a, [ipv4('10.0.0.1', '10.0.0.2', 10), ipv4('10.0.0.77', '10.0.0.2', 10)]);
  wire.pump();
  assert.equal(b.delivered.length, 1);
  assert.equal(b.device.drops.sourceCheck, 1);
});

test('roaming: the endpoint follows the last authenticated packet', () => {
  const { wire, a, b } = pair();
  wire.sendIp(a, [ipv4('10.0.0.1', '10.0.0.2', 10)]);
  wire.pump();
  // a moves to a new address and port
  wire.move(a, '198.51.100.7', 40000);
  wire.sendIp(a, [ipv4('10.0.0.1', '10.0.0.2', 10)]);
  wire.pump();
  const ep = b.device.snapshot().peers[0].endpoint!;
  assert.deepEqual(ep.addr, addrFromString('198.51.100.7'));
  assert.equal(ep.port, 40000);
  wire.sendIp(b, [ipv4('10.0.0.2', '10.0.0.1', 10)]);
  wire.pump();
  assert.equal(a.delivered.length, 1, 'reply reached the roamed peer');
});

test('after a move, a keepalive to every peer with a live session: each roams to the new address before any data', () => {
  const wire = new Wire();
  const a = wire.addNode('a', '192.0.2.1', 51820);
  const b = wire.addNode('b', '192.0.2.2', 51821);
  const c = wire.addNode('c', '192.0.2.3', 51822);
  wire.connect(a, b, '10.0.0.1/32', '10.0.0.2/32');
  wire.connect(a, c, '10.0.0.1/32', '10.0.0.3/32');
  wire.sendIp(a, [ipv4('10.0.0.1', '10.0.0.2', 10)]);
  wire.pump();
  // a moves; only b has a session with it
  wire.move(a, '198.51.100.7', 40000);
  const before = wire.log.length;
  assert.equal(a.device.sendKeepalivesToPeersWithCurrentKeypair(), 1, 'one peer has a session');
  wire.pump();
  const sent = wire.log.slice(before);
  assert.deepEqual(sent.map((d) => [d.from.ip, d.bytes[0], d.bytes.length]), [['198.51.100.7', 4, 32]], 'one keepalive, to b, none to c');
  const ep = b.device.snapshot().peers.find((p) => p.publicKey.equals(a.publicKey))!.endpoint!;
  assert.deepEqual([ep.addr, ep.port], [addrFromString('198.51.100.7'), 40000]);
  wire.sendIp(b, [ipv4('10.0.0.2', '10.0.0.1', 10)]);
  wire.pump();
  assert.equal(a.delivered.length, 1, 'b reaches a at its new address');
  // a session past REJECT_AFTER_TIME is no session
  wire.advance(9000 + 500, 1000);
  assert.equal(a.device.sendKeepalivesToPeersWithCurrentKeypair(), 0);
});

test('preshared keys: matching keys connect, mismatched keys never do', () => {
  const psk = randomBytes(32);
  const ok = pair({ psk: [psk, psk] });
  ok.wire.sendIp(ok.a, [ipv4('10.0.0.1', '10.0.0.2', 10)]);
  ok.wire.pump();
  assert.equal(ok.b.delivered.length, 1);

  const bad = pair({ psk: [psk, randomBytes(32)] });
  bad.wire.sendIp(bad.a, [ipv4('10.0.0.1', '10.0.0.2', 10)]);
  bad.wire.pump();
  assert.equal(bad.b.delivered.length, 0);
  assert.equal(bad.a.device.drops.handshake, 1, 'the response does not authenticate');
});

test('rekey after REKEY_AFTER_TIME keeps traffic flowing with a new session', () => {
  const { wire, a, b } = pair();
  wire.sendIp(a, [ipv4('10.0.0.1', '10.0.0.2', 10)]);
  wire.pump();
  const firstIndex = a.device.peers.values().next().value!.keypairs.current!.localIndex;
  for (let s = 0; s < 20; s++) {
    wire.advance(500);
    wire.sendIp(a, [ipv4('10.0.0.1', '10.0.0.2', 10)]);
    wire.sendIp(b, [ipv4('10.0.0.2', '10.0.0.1', 10)]);
    wire.pump();
  }
  const current = a.device.peers.values().next().value!.keypairs.current!;
  assert.notEqual(current.localIndex, firstIndex, 'a new session was negotiated');
  assert.equal(b.delivered.length, 21);
  assert.equal(a.delivered.length, 20);
  const initiations = wire.log.filter((d) => d.bytes[0] === 1).length;
  assert.ok(initiations >= 2 && initiations <= 6, `initiations: ${initiations}`);
});

test('a wall clock that jumps back a day: rekeys are still accepted (timestamps only go up)', () => {
  const { wire, a, b } = pair();
  wire.sendIp(a, [ipv4('10.0.0.1', '10.0.0.2', 10)]);
  wire.pump();
  const firstIndex = a.device.peers.values().next().value!.keypairs.current!.localIndex;
  wire.clock.wallBase -= 86_400_000; // NTP steps a's clock (and b's: one clock on this wire) back
  for (let s = 0; s < 20; s++) {
    wire.advance(500);
    wire.sendIp(a, [ipv4('10.0.0.1', '10.0.0.2', 10)]);
    wire.sendIp(b, [ipv4('10.0.0.2', '10.0.0.1', 10)]);
    wire.pump();
  }
  const current = a.device.peers.values().next().value!.keypairs.current!;
  assert.notEqual(current.localIndex, firstIndex, 'a new session was negotiated after the jump');
  assert.equal(b.delivered.length, 21, 'nothing lost');
  assert.equal(a.delivered.length, 20);
  assert.equal(b.device.drops.handshake, 0, 'no initiation refused as a replay');
});

test('keepalive answers one-way data; sessions expire after REJECT_AFTER_TIME without traffic', () => {
  const { wire, a, b } = pair();
  wire.sendIp(a, [ipv4('10.0.0.1', '10.0.0.2', 10)]);
  wire.pump();
  const before = wire.log.length;
  wire.sendIp(a, [ipv4('10.0.0.1', '10.0.0.2', 10)]);
  wire.pump();
  wire.advance(1500);
  const keepalives = wire.log.slice(before).filter((d) => d.bytes[0] === 4 && d.bytes.length === 32 && d.from.ip === '192.0.2.2');
  assert.equal(keepalives.length, 1, 'b sent one keepalive after KEEPALIVE_TIMEOUT');
  // After 3 x REJECT_AFTER_TIME all key material is gone.
  wire.advance(3 * 9000 + 500, 1000);
  const peer = a.device.peers.values().next().value!;
  assert.equal(peer.keypairs.current, null);
  assert.equal(a.device.indices.size, 0);
});

test('handshake retransmits with jitter, then gives up after REKEY_ATTEMPT_TIME', () => {
  const { wire, a } = pair();
  wire.filter = (d) => d.from.ip === '192.0.2.1'; // a's packets are lost
  wire.sendIp(a, [ipv4('10.0.0.1', '10.0.0.2', 10)]);
  wire.advance(30_000);
  const attempts = wire.log.filter((d) => d.bytes[0] === 1).length;
  // REKEY_ATTEMPT_TIME / REKEY_TIMEOUT = 4 retries plus the first, then one more after give-up
  // is not sent until new data arrives.
  assert.ok(attempts >= 5 && attempts <= 7, `attempts: ${attempts}`);
  const peer = a.device.peers.values().next().value!;
  assert.equal(peer.staged.length, 0, 'staged packets flushed on give-up');
});

test('under load a responder demands a cookie, and the initiator proves it with mac2', () => {
  const { wire, a, b } = pair();
  b.device.forceUnderLoad = true;
  wire.sendIp(a, [ipv4('10.0.0.1', '10.0.0.2', 10)]);
  wire.pump();
  assert.equal(b.delivered.length, 0);
  assert.ok(wire.log.some((d) => d.bytes[0] === 3), 'cookie reply sent');
  wire.advance(2000); // retransmission carries mac2
  assert.equal(b.delivered.length, 1, 'handshake completed with the cookie');
});

test('a peer with a low-order public key never produces a packet', () => {
  const wire = new Wire();
  const a = wire.addNode('a', '192.0.2.1', 51820);
  const lowOrder = Buffer.alloc(32); // the identity point
  a.device.apply({ replacePeers: false, peers: [{ publicKey: lowOrder, remove: false, updateOnly: false, replaceAllowedIps: false, endpoint: { addr: addrFromString('192.0.2.2'), port: 1 }, allowedIps: [{ prefix: parsePrefix('10.0.0.2/32'), remove: false }], persistentKeepalive: 1 }] });
  wire.sendIp(a, [ipv4('10.0.0.1', '10.0.0.2', 10)]);
  wire.advance(5000);
  assert.equal(wire.log.length, 0);
});

test('malformed, truncated and random datagrams are dropped and counted, never thrown', () => {
  const { wire, a, b } = pair();
  wire.sendIp(a, [ipv4('10.0.0.1', '10.0.0.2', 10)]);
  wire.pump();
  const good = wire.log.map((d) => d.bytes);
  const junk: Buffer[] = [Buffer.alloc(0), Buffer.alloc(1), Buffer.from([4, 0, 0, 0])];
  for (const g of good) {
    for (let cut = 0; cut < g.length; cut += 7) junk.push(g.subarray(0, cut));
    const flipped = Buffer.from(g);
    flipped[randomBytes(1)[0] % flipped.length] ^= 0x40;
    junk.push(flipped, Buffer.concat([g, randomBytes(5)]));
  }
  for (let i = 0; i < 500; i++) junk.push(randomBytes(1 + (i % 200)));
  for (const t of [1, 2, 3, 4]) for (let i = 0; i < 20; i++) {
    const size = t === 1 ? Initiation.size : t === 2 ? Response.size : t === 3 ? 64 : 32 + i * 16;
    const m = randomBytes(size);
    m.writeUInt32LE(t, 0);
    junk.push(m);
  }
  for (let i = 0; i < junk.length; i += 50) wire.inject(b, junk.slice(i, i + 50));
  wire.pump();
  const d = b.device.drops;
  const dropped = d.malformed + d.mac1 + d.handshake + d.unknownIndex + d.decrypt + d.replay;
  assert.ok(dropped >= junk.length - 2, `dropped ${dropped} of ${junk.length}`);
  // The legitimate peer still gets through.
  wire.sendIp(a, [ipv4('10.0.0.1', '10.0.0.2', 10)]);
  wire.pump();
  assert.equal(b.delivered.length, 2);
});

test('removing a peer stops its traffic; re-adding it restores it', () => {
  const { wire, a, b } = pair();
  wire.sendIp(a, [ipv4('10.0.0.1', '10.0.0.2', 10)]);
  wire.pump();
  b.device.apply({ replacePeers: false, peers: [{ publicKey: a.publicKey, remove: true, updateOnly: false, replaceAllowedIps: false, allowedIps: [] }] });
  wire.sendIp(a, [ipv4('10.0.0.1', '10.0.0.2', 10)]);
  wire.pump();
  assert.equal(b.delivered.length, 1);
  wire.connect(a, b, '10.0.0.1/32', '10.0.0.2/32');
  wire.advance(20_000); // a's session times out its data; a new handshake follows
  wire.sendIp(a, [ipv4('10.0.0.1', '10.0.0.2', 10)]);
  wire.advance(3000);
  assert.ok(b.delivered.length >= 2, `delivered ${b.delivered.length}`);
});

test('private key change forces a fresh handshake; own key as peer is ignored', () => {
  const { wire, a, b } = pair();
  a.device.apply({ replacePeers: false, peers: [{ publicKey: a.publicKey, remove: false, updateOnly: false, replaceAllowedIps: false, allowedIps: [] }] });
  assert.equal(a.device.peers.size, 1, 'a peer with our own key is not added');
  wire.sendIp(a, [ipv4('10.0.0.1', '10.0.0.2', 10)]);
  wire.pump();
  const before = wire.log.filter((d) => d.bytes[0] === 1).length;
  b.device.apply({ privateKey: b.privateKey, replacePeers: false, peers: [] }); // same key: no-op
  wire.sendIp(b, [ipv4('10.0.0.2', '10.0.0.1', 10)]);
  wire.pump();
  assert.equal(wire.log.filter((d) => d.bytes[0] === 1).length, before);
  assert.equal(a.delivered.length, 1);
});

test('a new endpoint for a kept-alive peer without a session is tried at once; with a session it only changes where packets go', () => {
  const { wire, a, b } = pair();
  const setEndpoint = (ip: string, port: number) => a.device.apply({ replacePeers: false, peers: [{ publicKey: b.publicKey, remove: false, updateOnly: true, replaceAllowedIps: false, allowedIps: [], endpoint: { addr: addrFromString(ip), port } }] });
  // b is unreachable where a thinks it is (a private address behind its NAT)
  setEndpoint('192.168.2.2', 51821);
  a.device.apply({ replacePeers: false, peers: [{ publicKey: b.publicKey, remove: false, updateOnly: true, replaceAllowedIps: false, allowedIps: [], persistentKeepalive: 25 }] });
  const initiations = () => wire.log.filter((d) => d.bytes[0] === 1 && d.from.ip === '192.0.2.1');
  assert.equal(initiations().length, 1, 'keepalive on: an initiation at once');
  assert.equal(initiations()[0].to.ip, '192.168.2.2');
  wire.clock.t += 1000; // well within REKEY_TIMEOUT: a retransmission would still wait
  setEndpoint('192.0.2.2', 51821); // its reflexive endpoint, advertised later
  assert.equal(initiations().length, 2, 'the new endpoint is tried at once');
  assert.equal(initiations()[1].to.ip, '192.0.2.2');
  wire.pump();
  assert.ok(a.device.snapshot().peers[0].lastHandshakeMs > 0, 'and the handshake completes there');
  // With a session, moving the endpoint sends nothing by itself.
  const before = wire.log.length;
  setEndpoint('192.0.2.2', 51821);
  setEndpoint('192.0.2.9', 51821);
  assert.equal(wire.log.length, before);
});
