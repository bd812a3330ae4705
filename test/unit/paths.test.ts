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
