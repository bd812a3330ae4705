// The path layer on in-memory sockets: every member answers STUN on its WireGuard port, a requester
// learns its address as a member sees it, and what strangers send (stray or forged responses, a
// flood of requests) changes nothing, is counted, and leaves a WireGuard device beside it working.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Paths } from '../../src/discovery/paths.js';
import { parseStun, writeBindingRequest, writeBindingSuccess } from '../../src/discovery/stun.js';
import { NobleCipher } from '../../src/wg/cipher.js';
import { TEST_TIMINGS } from '../../src/wg/constants.js';
import { generatePrivateKey, staticKey } from '../../src/wg/crypto.js';
import { Device } from '../../src/wg/device.js';
import { addrFromString, formatEndpoint, parseEndpoint } from '../../src/wg/endpoint.js';
import { parsePrefix } from '../../src/wg/prefix.js';
import { HEADROOM, PacketBatch } from '../../src/wg/batch.js';
import { ChannelNet } from './helpers/bindtest.js';
import { batchTo, collect, until } from './helpers/bind-suite.js';
import { ipv4 } from './wire.js';
import { idNumber } from '../../src/discovery/relay.js';

async function member(net: ChannelNet, ip: string, port = 51820) {
  const paths = new Paths();
  const bind = await paths.bindFactory(net.factory(ip))(port);
  const rx = collect(bind); // starting it attaches it as the path layer's socket
  return { paths, bind, rx };
}

test('STUN on the WireGuard port: a member answers with the address it sees, the requester learns it', async () => {
  const net = new ChannelNet();
  const a = await member(net, '198.20.1.2');
  const b = await member(net, '2a0f:5e00:2::2', 4242);
  assert.equal(formatEndpoint((await a.paths.stun(parseEndpoint('[2a0f:5e00:2::2]:4242')))!), '198.20.1.2:51820');
  assert.equal(formatEndpoint((await b.paths.stun(parseEndpoint('198.20.1.2:51820')))!), '[2a0f:5e00:2::2]:4242');
  assert.equal(a.paths.stats.stunAnswered, 1);
  assert.equal(b.paths.stats.stunAnswered, 1);
  assert.equal(a.rx.length + b.rx.length, 0, 'STUN never reaches the device');
  // nobody there: null after the timeout
  assert.equal(await a.paths.stun(parseEndpoint('198.20.9.9:1'), 100), null);
});

test('stray and forged STUN responses are dropped and counted; the request still times out cleanly', async () => {
  const net = new ChannelNet();
  const a = await member(net, '198.20.1.2');
  await member(net, '198.20.2.2');
  const attacker = await net.factory('198.20.66.6')(5555);
  collect(attacker);
  // the real answer never arrives; the attacker saw the request (on path) and forges an answer
  net.drop = (d) => d.from.startsWith('198.20.2.2');
  const pending = a.paths.stun(parseEndpoint('198.20.2.2:51820'), 300);
  await until(() => net.log.length > 0);
  const request = net.log[0].bytes;
  const txid = parseStun(request, 0, request.length)!.txid;
  const forged = Buffer.alloc(64);
  const n = writeBindingSuccess(forged, 0, txid, addrFromString('6.6.6.6'), 0, 666);
  const random = Buffer.alloc(64);
  const m = writeBindingSuccess(random, 0, Buffer.alloc(12, 7), addrFromString('6.6.6.6'), 0, 666);
  attacker.send(batchTo('198.20.1.2', 51820, [forged.subarray(0, n), random.subarray(0, m)]));
  assert.equal(await pending, null, 'a response from anyone but the asked member is not taken');
  assert.equal(a.paths.stats.stunResponses, 2);
  assert.equal(a.paths.stats.stunUnmatched, 2);
});

test('a flood of STUN requests: answers are capped, the rest counted', async () => {
  const net = new ChannelNet();
  const a = await member(net, '198.20.1.2');
  const stranger = await net.factory('198.20.66.6')(5555);
  const answers = collect(stranger);
  const req = Buffer.alloc(20);
  const reqs = Array.from({ length: 64 }, () => Buffer.from(req.subarray(0, writeBindingRequest(req, 0, Buffer.alloc(12, 1)))));
  for (let i = 0; i < 5; i++) stranger.send(batchTo('198.20.1.2', 51820, reqs));
  await until(() => a.paths.stats.stunRequests === 320);
  assert.equal(a.paths.stats.stunRequests, 320);
  assert.ok(a.paths.stats.stunAnswered <= 52, `answered ${a.paths.stats.stunAnswered}`);
  assert.equal(a.paths.stats.stunAnswered + a.paths.stats.stunRateLimited, 320);
  await until(() => answers.length === a.paths.stats.stunAnswered);
  assert.equal(answers.length, a.paths.stats.stunAnswered);
});

test('a WireGuard device behind the path layer: handshake and data, with STUN in between', async () => {
  const net = new ChannelNet();
  const ends = await Promise.all(['198.20.1.2', '198.20.2.2'].map(async (ip, i) => {
    const paths = new Paths();
    const bind = await paths.bindFactory(net.factory(ip))(51820);
    const key = generatePrivateKey();
    const delivered: Buffer[] = [];
    const device = new Device({
      cipher: new NobleCipher(),
      timings: TEST_TIMINGS,
      output: { send: (b) => bind.send(b), write: (b) => { for (let j = 0; j < b.count; j++) if (b.length[j] > 0) delivered.push(Buffer.from(b.packet(j))); } },
    });
    device.apply({ privateKey: key, replacePeers: false, peers: [] });
    bind.start((b) => device.handleUdpBatch(b));
    return { ip, paths, device, delivered, pub: staticKey(key).publicKey, tun: `10.0.0.${i + 1}` };
  }));
  const [a, b] = ends;
  for (const [x, y] of [[a, b], [b, a]]) {
    x.device.apply({ replacePeers: false, peers: [{ publicKey: y.pub, remove: false, updateOnly: false, replaceAllowedIps: false, endpoint: { addr: addrFromString(y.ip), port: 51820 }, presharedKey: null, allowedIps: [{ prefix: parsePrefix(`${y.tun}/32`), remove: false }] }] });
  }
  const send = (from: typeof a, to: typeof a, n: number) => {
    const batch = new PacketBatch(n);
    for (let i = 0; i < n; i++) {
      const p = ipv4(from.tun, to.tun, 100 + i);
      p.copy(batch.data, batch.slot(i) + HEADROOM);
      batch.offset[i] = HEADROOM;
      batch.length[i] = p.length;
    }
    batch.count = n;
    from.device.handleTunBatch(batch);
  };
  send(a, b, 1); // staged; the handshake starts
  const stun = a.paths.stun(parseEndpoint(`${b.ip}:51820`));
  await until(() => b.delivered.length === 1);
  assert.equal(formatEndpoint((await stun)!), `${a.ip}:51820`);
  send(a, b, 10);
  send(b, a, 5);
  void b.paths.stun(parseEndpoint(`${a.ip}:51820`));
  await until(() => b.delivered.length === 11 && a.delivered.length === 5);
  assert.equal(b.delivered.length, 11);
  assert.equal(a.delivered.length, 5);
  for (const e of ends) {
    assert.equal(e.device.drops.malformed, 0, 'STUN is never counted as a malformed WireGuard packet');
    assert.equal(e.paths.stats.stunAnswered, 1);
  }
  for (const e of ends) e.device.close();
});

/** A member with a device behind its own path layer, on a channel net. */
async function meshMember(net: ChannelNet, ip: string, tun: string) {
  const key = generatePrivateKey();
  let device: Device | null = null;
  const paths = new Paths({ endpointOf: (hex) => device?.peers.get(hex)?.endpoint ?? null });
  paths.setIdentity(key);
  const bind = await paths.bindFactory(net.factory(ip))(51820);
  const delivered: Buffer[] = [];
  device = new Device({
    cipher: new NobleCipher(),
    timings: TEST_TIMINGS,
    output: { send: (b) => bind.send(b), write: (b) => { for (let j = 0; j < b.count; j++) if (b.length[j] > 0) delivered.push(Buffer.from(b.packet(j))); } },
  });
  device.apply({ privateKey: key, replacePeers: false, peers: [] });
  bind.start((b) => device!.handleUdpBatch(b));
  return { ip, tun, paths, device, delivered, pub: staticKey(key).publicKey, hex: staticKey(key).publicKey.toString('hex') };
}
type MeshMember = Awaited<ReturnType<typeof meshMember>>;

function peer(x: MeshMember, y: MeshMember, endpoint = { addr: addrFromString(y.ip), port: 51820 }): void {
  x.device.apply({ replacePeers: false, peers: [{ publicKey: y.pub, remove: false, updateOnly: false, replaceAllowedIps: false, endpoint, presharedKey: null, allowedIps: [{ prefix: parsePrefix(`${y.tun}/32`), remove: false }] }] });
}

function sendIp(from: MeshMember, to: MeshMember, n: number, size = 100): void {
  const batch = new PacketBatch(n);
  for (let i = 0; i < n; i++) {
    const p = ipv4(from.tun, to.tun, size + i);
    p.copy(batch.data, batch.slot(i) + HEADROOM);
    batch.offset[i] = HEADROOM;
    batch.length[i] = p.length;
  }
  batch.count = n;
  from.device.handleTunBatch(batch);
}

/** a, a relay r and b, each with a session with r (what authenticates their endpoints there). */
async function relayTrio() {
  const net = new ChannelNet();
  const [a, r, b] = [await meshMember(net, '198.20.1.2', '10.0.0.1'), await meshMember(net, '198.20.2.2', '10.0.0.2'), await meshMember(net, '198.20.3.2', '10.0.0.3')];
  for (const m of [a, r, b]) m.paths.setMembers([a.pub, r.pub, b.pub]);
  peer(a, r); peer(r, a); peer(b, r); peer(r, b);
  sendIp(a, r, 1); sendIp(b, r, 1);
  await until(() => r.delivered.length === 2);
  return { net, a, r, b };
}

test('relayed: two members with no direct path talk through a third, which reads nothing and forwards only what is allocated', async () => {
  const { net, a, r, b } = await relayTrio();
  net.drop = (d) => (d.from.startsWith('198.20.1.2') && d.to.startsWith('198.20.3.2')) || (d.from.startsWith('198.20.3.2') && d.to.startsWith('198.20.1.2'));
  const va = a.paths.virtualEndpoint(r.hex, b.hex)!;
  assert.ok(a.paths.isVirtual(va));
  assert.equal(a.paths.relayOf(va), r.hex);
  peer(a, b, va);
  peer(b, a, b.paths.virtualEndpoint(r.hex, a.hex)!);
  // no allocation yet: refused and counted
  sendIp(a, b, 1);
  await until(() => r.paths.stats.relayNoAllocation > 0);
  assert.equal(b.delivered.length, 0);
  r.paths.allocations.allow(idNumber(a.pub, 0), idNumber(b.pub, 0));
  // the handshake is retransmitted by a's timers (the engine's tick, here by hand)
  const tick = setInterval(() => a.device.tick(), 100);
  await until(() => a.device.snapshot().peers.find((p) => p.publicKey.equals(b.pub))!.lastHandshakeMs > 0, 8000);
  clearInterval(tick);
  assert.ok(a.device.snapshot().peers.find((p) => p.publicKey.equals(b.pub))!.lastHandshakeMs > 0, 'handshake through the relay');
  sendIp(a, b, 20, 1300); // full-size packets too
  sendIp(b, a, 5);
  await until(() => b.delivered.length >= 20 && a.delivered.length >= 5);
  assert.ok(b.delivered.length >= 20, `b got ${b.delivered.length}`);
  assert.equal(a.delivered.length, 5);
  assert.ok(r.paths.stats.relayForwarded >= 25);
  assert.equal(r.delivered.length, 2, 'the relay delivers nothing of theirs to its own TUN');
  assert.ok(b.paths.stats.relayDelivered >= 20);
  // b sees a at the virtual endpoint (its replies go back through the relay)
  const bSeesA = b.device.snapshot().peers.find((p) => p.publicKey.equals(a.pub))!.endpoint!;
  assert.equal(b.paths.relayOf(bSeesA), r.hex);
  for (const m of [a, r, b]) assert.equal(m.device.drops.decrypt + m.device.drops.malformed, 0);
  for (const m of [a, r, b]) m.device.close();
});

test('a relay refuses strangers, forged sources and members without an allocation, and never forwards to a non-member', async () => {
  const { net, a, r, b } = await relayTrio();
  r.paths.allocations.allow(idNumber(a.pub, 0), idNumber(b.pub, 0));
  const stranger = await net.factory('198.20.66.6')(51820);
  collect(stranger);
  const frame = (src: Buffer, dst: Buffer) => {
    const f = Buffer.alloc(20 + 64, 9);
    f.writeUInt32BE(0x6d524c59, 0);
    src.copy(f, 4, 0, 8);
    dst.copy(f, 12, 0, 8);
    return f;
  };
  const outsider = staticKey(generatePrivateKey()).publicKey;
  const before = net.log.length;
  stranger.send(batchTo('198.20.2.2', 51820, [
    frame(a.pub, b.pub), // a's id from the wrong address
    frame(outsider, b.pub), // not a member
    frame(a.pub, outsider), // to a non-member
  ]));
  await until(() => r.paths.stats.relayRefused >= 3);
  await new Promise((res) => setTimeout(res, 20));
  assert.equal(r.paths.stats.relayRefused, 3);
  assert.equal(r.paths.stats.relayForwarded, 0);
  assert.equal(net.log.slice(before).filter((d) => d.from.startsWith('198.20.2.2')).length, 0, 'nothing forwarded anywhere');
  // a member without an allocation for that pair
  r.paths.allocations.prune();
  const c = await meshMember(net, '198.20.4.2', '10.0.0.4');
  for (const m of [a, r, b, c]) m.paths.setMembers([a.pub, r.pub, b.pub, c.pub]);
  peer(c, r); peer(r, c);
  sendIp(c, r, 1);
  await until(() => r.delivered.length === 3);
  peer(c, b, c.paths.virtualEndpoint(r.hex, b.hex)!);
  sendIp(c, b, 1);
  await until(() => r.paths.stats.relayNoAllocation > 0);
  assert.equal(b.delivered.length, 0);
  // --no-relay: nothing is forwarded, even with an allocation
  r.paths.relay = false;
  peer(a, b, a.paths.virtualEndpoint(r.hex, b.hex)!);
  sendIp(a, b, 1);
  await new Promise((res) => setTimeout(res, 100));
  assert.equal(r.paths.stats.relayForwarded, 0);
  for (const m of [a, r, b, c]) m.device.close();
});

test('path probes: a member answers a member, authenticated; strangers and forgeries get nothing', async () => {
  const net = new ChannelNet();
  const [a, b] = [await meshMember(net, '198.20.1.2', '10.0.0.1'), await meshMember(net, '2a0f::2', '10.0.0.2')];
  a.paths.setMembers([b.pub]);
  b.paths.setMembers([a.pub]);
  const probedBy: string[] = [];
  b.paths.onProbe = (hex) => probedBy.push(hex);
  const r = await a.paths.probe(b.hex, parseEndpoint('[2a0f::2]:51820'));
  assert.ok(r, 'answered');
  assert.equal(formatEndpoint(r.from), '[2a0f::2]:51820');
  assert.ok(r.rttMs >= 0);
  assert.deepEqual(probedBy, [a.hex]);
  // b does not know c: c's probe is refused, and c gets no answer
  const c = await meshMember(net, '198.20.3.2', '10.0.0.3');
  c.paths.setMembers([b.pub]);
  assert.equal(await c.paths.probe(b.hex, parseEndpoint('[2a0f::2]:51820'), 200), null);
  assert.equal(b.paths.stats.probesRefused, 1);
  // a forged answer (bit flipped in the mac) is refused
  net.drop = (d) => d.from.startsWith('2a0f::2');
  const pending = a.paths.probe(b.hex, parseEndpoint('[2a0f::2]:51820'), 300);
  await until(() => net.log.some((d) => d.bytes.readUInt32BE(0) === 0x6d504e47));
  const pong = Buffer.from(net.log.filter((d) => d.bytes.readUInt32BE(0) === 0x6d504e47).pop()!.bytes);
  pong[43] ^= 1;
  const liar = await net.factory('198.20.66.6')(1);
  liar.send(batchTo('198.20.1.2', 51820, [pong]));
  assert.equal(await pending, null);
  assert.ok(a.paths.stats.probesRefused >= 1);
  for (const m of [a, b, c]) m.device.close();
});

test('over streams: a member without UDP reaches a member through its stream, and a third through it as a relay', async () => {
  const net = new ChannelNet();
  const [a, r, b] = [await meshMember(net, '192.168.9.2', '10.0.0.1'), await meshMember(net, '198.20.2.2', '10.0.0.2'), await meshMember(net, '198.20.3.2', '10.0.0.3')];
  for (const m of [a, r, b]) m.paths.setMembers([a.pub, r.pub, b.pub]);
  net.drop = (d) => d.from.startsWith('192.168.9.2') || d.to.startsWith('192.168.9.2'); // a's UDP gets nowhere
  // an in-memory stream between a and r (stream-link.ts carries the same frames over libp2p)
  const link = (from: MeshMember, to: MeshMember) => ({ write: (frame: Uint8Array) => { const f = Buffer.from(frame); setImmediate(() => to.paths.receive(from.hex, f)); } });
  a.paths.attach(r.hex, link(a, r));
  r.paths.attach(a.hex, link(r, a));
  peer(r, b); peer(b, r);
  sendIp(r, b, 1);
  await until(() => b.delivered.length === 1);
  peer(a, r, a.paths.virtualEndpoint(r.hex, r.hex)!); // to r, over its stream
  peer(a, b, a.paths.virtualEndpoint(r.hex, b.hex)!); // to b, through r
  peer(r, a, { addr: addrFromString('192.168.9.2'), port: 51820 }); // r does not know better yet: roaming will tell it
  peer(b, a, b.paths.virtualEndpoint(r.hex, a.hex)!);
  r.paths.allocations.allow(idNumber(a.pub, 0), idNumber(b.pub, 0));
  const tick = setInterval(() => { a.device.tick(); b.device.tick(); }, 100);
  sendIp(a, r, 3);
  await until(() => r.delivered.length === 3, 8000);
  sendIp(a, b, 4);
  await until(() => b.delivered.length === 5, 8000);
  sendIp(b, a, 2);
  sendIp(r, a, 2);
  await until(() => a.delivered.length === 4, 8000);
  clearInterval(tick);
  assert.equal(r.delivered.length, 3, 'a -> r over the stream');
  assert.equal(b.delivered.length, 5, 'a -> b through r');
  assert.equal(a.delivered.length, 4, 'b -> a and r -> a back over the stream');
  assert.equal(r.paths.relayOf(r.device.snapshot().peers.find((p) => p.publicKey.equals(a.pub))!.endpoint!), a.hex, 'r roamed a to its stream');
  // a stream peer speaks only for itself when asking to relay
  const forged = Buffer.alloc(20 + 64);
  forged.writeUInt32BE(0x6d524c59, 0);
  b.pub.copy(forged, 4, 0, 8); // claims to be b
  r.pub.copy(forged, 12, 0, 8);
  const refused = r.paths.stats.relayRefused;
  const other = Buffer.from(forged);
  a.pub.copy(other, 12, 0, 8);
  r.paths.receive(a.hex, other); // "b -> a" arriving from a's stream at r: not a's to send
  assert.equal(r.paths.stats.relayRefused, refused + 1);
  for (const m of [a, r, b]) m.device.close();
});
