// Plain WireGuard devices in the ledger (`meshd client add`): the device and undevice events, their
// place in the address pool and among names, who may sign them, and a device going with its host.
import '../../src/util/polyfill.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EnvelopeError } from '../../src/discovery/records.js';
import { eventId } from '../../src/discovery/signed.js';
import { Node, T0, found, idOf, newKeys } from './helpers/ledger-kit.js';

const [F, A, B, C] = await newKeys(4);
const [a, b, c] = [A, B, C].map(idOf);
const KEY1 = Buffer.alloc(32, 1).toString('base64');
const KEY2 = Buffer.alloc(32, 2).toString('base64');
const KEY3 = Buffer.alloc(32, 3).toString('base64');

async function setup() {
  const net = await found(F);
  const fn = new Node(F, net.network, net.base);
  const inv = await fn.invite(T0 + 10, { uses: 10 });
  await fn.admit(a, inv, T0 + 20, { name: 'a' }); // 10.0.0.2
  await fn.admit(b, inv, T0 + 21, { name: 'b' }); // 10.0.0.3
  return { net, fn, inv, l: fn.ledger };
}

test('device: an administrator adds a device hosted by a member; it takes the next address from the members\' pool; only its public key is in the ledger', async () => {
  const { fn, l, inv } = await setup();
  const env = await fn.signer.sign({ type: 'device', member: a, name: 'phone', wgPublicKey: KEY1 }, T0 + 30);
  assert.equal(l.reasonOf(eventId(env)), null);
  assert.deepEqual(l.devices(), [{ id: eventId(env), name: 'phone', host: a, wgPublicKey: KEY1, ip: '10.0.0.4', addedBy: idOf(F), at: T0 + 30 }]);
  assert.deepEqual(Object.keys(env.body).sort(), ['at', 'deps', 'ip', 'member', 'name', 'network', 'prev', 'seq', 'type', 'wgPublicKey']);
  assert.equal(l.device('phone')?.ip, '10.0.0.4');
  assert.equal(l.device(eventId(env))?.name, 'phone');
  // The address is taken for members too, and the name: a member admitted as 'phone' is renamed.
  assert.equal(l.nextAddress(), '10.0.0.5');
  assert.equal(l.freeName('phone'), 'phone-2');
  await fn.admit(c, inv, T0 + 31, { name: 'phone', ip: '10.0.0.4' });
  assert.equal(l.member(c)!.meshIp, '10.0.0.5', 'the device keeps its address');
  assert.equal(l.member(c)!.name, 'phone-2');
  // Names are unique among members and devices; keys among devices.
  for (const [name, key, why] of [['phone', KEY2, 'name phone is taken'], ['a', KEY2, 'name a is taken'], ['laptop', KEY1, 'key already used by device phone']] as const) {
    const bad = await fn.signer.sign({ type: 'device', member: a, name, wgPublicKey: key }, T0 + 32);
    assert.equal(l.reasonOf(eventId(bad)), why);
  }
  assert.equal(l.devices().length, 1);
  // A bad key or name never parses.
  await assert.rejects(fn.signer.sign({ type: 'device', member: a, name: 'Bad Name', wgPublicKey: KEY2 }, T0 + 33), EnvelopeError);
  await assert.rejects(fn.signer.sign({ type: 'device', member: a, name: 'ok', wgPublicKey: 'nope' }, T0 + 33), EnvelopeError);
});

test('device: only administrators add or remove devices, only for members', async () => {
  const { fn, l, net } = await setup();
  const an = new Node(A, net.network, l.events());
  const mine = await an.signer.sign({ type: 'device', member: a, name: 'phone', wgPublicKey: KEY1 }, T0 + 30);
  assert.equal(l.add(mine), 'new');
  assert.equal(l.reasonOf(eventId(mine)), 'not an administrator');
  assert.deepEqual(l.devices(), []);
  const stranger = await fn.signer.sign({ type: 'device', member: c, name: 'phone', wgPublicKey: KEY1 }, T0 + 31);
  assert.equal(l.reasonOf(eventId(stranger)), 'its host is not a member');
  const ok = await fn.signer.sign({ type: 'device', member: a, name: 'phone', wgPublicKey: KEY1 }, T0 + 32);
  an.receive(l.events());
  const undo = await an.signer.sign({ type: 'undevice', device: eventId(ok) }, T0 + 33);
  l.add(undo);
  assert.equal(l.reasonOf(eventId(undo)), 'not an administrator');
  assert.equal(l.devices().length, 1);
  // A promoted member may.
  await fn.grant(a, T0 + 34);
  an.receive(l.events());
  const undo2 = await an.signer.sign({ type: 'undevice', device: eventId(ok) }, T0 + 35);
  l.add(undo2);
  assert.equal(l.reasonOf(eventId(undo2)), null);
  assert.deepEqual(l.devices(), []);
});

test('undevice: the device is gone, its address and name free again; a second removal is void', async () => {
  const { fn, l } = await setup();
  const d1 = await fn.signer.sign({ type: 'device', member: a, name: 'phone', wgPublicKey: KEY1 }, T0 + 30);
  await fn.signer.sign({ type: 'device', member: b, name: 'laptop', wgPublicKey: KEY2 }, T0 + 31);
  assert.deepEqual(l.devices().map((d) => [d.name, d.ip]), [['phone', '10.0.0.4'], ['laptop', '10.0.0.5']]);
  await fn.signer.sign({ type: 'undevice', device: eventId(d1) }, T0 + 32);
  assert.deepEqual(l.devices().map((d) => d.name), ['laptop']);
  assert.equal(l.nextAddress(), '10.0.0.4');
  assert.equal(l.freeName('phone'), 'phone');
  const again = await fn.signer.sign({ type: 'undevice', device: eventId(d1) }, T0 + 33);
  assert.equal(l.reasonOf(eventId(again)), 'device already removed');
  const unknown = await fn.signer.sign({ type: 'undevice', device: 'ab'.repeat(32) }, T0 + 34);
  assert.equal(l.reasonOf(eventId(unknown)), 'unknown device');
  // The same name and key may come back as a new device.
  const d3 = await fn.signer.sign({ type: 'device', member: a, name: 'phone', wgPublicKey: KEY1 }, T0 + 35);
  assert.equal(l.reasonOf(eventId(d3)), null);
  assert.equal(l.device('phone')!.ip, '10.0.0.4');
});

test('a device goes with its host: a kicked or departed host\'s devices are removed and their addresses freed; others stay', async () => {
  const { fn, l, net } = await setup();
  await fn.signer.sign({ type: 'device', member: a, name: 'phone', wgPublicKey: KEY1 }, T0 + 30);
  await fn.signer.sign({ type: 'device', member: a, name: 'tablet', wgPublicKey: KEY2 }, T0 + 31);
  await fn.signer.sign({ type: 'device', member: b, name: 'laptop', wgPublicKey: KEY3 }, T0 + 32);
  await fn.kick(a, T0 + 40);
  assert.deepEqual(l.devices().map((d) => [d.name, d.host]), [['laptop', b]]);
  assert.equal(l.nextAddress(), '10.0.0.2', 'the host\'s and its devices\' addresses are free');
  assert.equal(l.freeName('phone'), 'phone');
  // A device added for a host already kicked is void.
  const late = await fn.signer.sign({ type: 'device', member: a, name: 'watch', wgPublicKey: KEY1 }, T0 + 41);
  assert.equal(l.reasonOf(eventId(late)), 'its host is not a member');
  // A host that leaves takes its devices too.
  const bn = new Node(B, net.network, l.events());
  const leave = await bn.signer.sign({ type: 'revoke', member: b }, T0 + 50);
  l.add(leave);
  assert.deepEqual(l.devices(), []);
});

test('devices converge whatever the delivery order: two administrators adding devices concurrently get distinct addresses', async () => {
  const { fn, l, net } = await setup();
  await fn.grant(a, T0 + 25);
  const an = new Node(A, net.network, l.events());
  const e1 = await fn.signer.sign({ type: 'device', member: b, name: 'phone', wgPublicKey: KEY1 }, T0 + 30);
  const e2 = await an.signer.sign({ type: 'device', member: a, name: 'laptop', wgPublicKey: KEY2 }, T0 + 30);
  assert.equal(e1.body.type === 'device' && e1.body.ip, '10.0.0.4');
  assert.equal(e2.body.type === 'device' && e2.body.ip, '10.0.0.4');
  l.add(e2);
  an.receive([e1]);
  assert.deepEqual(l.devices(), an.ledger.devices());
  assert.deepEqual(l.devices().map((d) => d.ip).sort(), ['10.0.0.4', '10.0.0.5']);
  assert.equal(l.digest(), an.ledger.digest());
});

test('a device added concurrently with its host\'s kick, or by an administrator being kicked, never counts, whatever the order', async () => {
  const { fn, l, net } = await setup();
  await fn.grant(a, T0 + 25);
  const an = new Node(A, net.network, l.events());
  // A (an administrator) adds a device for B while the founder kicks B, then A: neither saw the other.
  const dev = await an.signer.sign({ type: 'device', member: b, name: 'phone', wgPublicKey: KEY1 }, T0 + 30);
  const dev2 = await an.signer.sign({ type: 'device', member: a, name: 'laptop', wgPublicKey: KEY2 }, T0 + 31);
  await fn.kick(b, T0 + 30);
  await fn.kick(a, T0 + 31);
  const kicks = l.events();
  for (const order of [[dev, dev2, ...kicks], [...kicks, dev, dev2]]) {
    const n = new Node(C, net.network);
    n.ledger.addAll(order);
    assert.deepEqual(n.ledger.devices(), [], 'no device of a kicked host, none by a kicked administrator');
    assert.equal(n.ledger.nextAddress(), '10.0.0.2');
  }
  l.addAll([dev, dev2]);
  assert.deepEqual(l.devices(), []);
  assert.match(l.reasonOf(eventId(dev2)) ?? '', /its signer was removed by/);
});
