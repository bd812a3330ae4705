// What members see of our WireGuard socket: no NAT, an easy NAT (one mapping for everyone), a hard
// one (a mapping per destination), nobody answering; and whom to ask.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { discoverReflexive, stunTargets, type StunClient } from '../../src/discovery/reflexive.js';
import { formatEndpoint, parseEndpoint, type Endpoint } from '../../src/wg/endpoint.js';

const e = parseEndpoint;
const client = (seen: Record<string, string | null>) => ({
  stun: async (to: Endpoint) => {
    const s = seen[formatEndpoint(to)];
    return s ? e(s) : null;
  },
});
const targets = ['198.20.1.2:51820', '198.20.3.2:51820'].map(e);

test('an easy NAT: one mapping, advertised', async () => {
  const r = await discoverReflexive(client({ '198.20.1.2:51820': '198.20.2.2:51820', '198.20.3.2:51820': '198.20.2.2:51820' }), targets, ['192.168.2.2:51820']);
  assert.deepEqual(r.mapped, ['198.20.2.2:51820']);
  assert.equal(r.behindNat, true);
  assert.equal(r.variesByDestination, false);
  assert.deepEqual(r.asked, [{ to: '198.20.1.2:51820', saw: '198.20.2.2:51820' }, { to: '198.20.3.2:51820', saw: '198.20.2.2:51820' }]);
});

test('a hard NAT: the mapping varies by destination', async () => {
  const r = await discoverReflexive(client({ '198.20.1.2:51820': '198.20.2.2:40001', '198.20.3.2:51820': '198.20.2.2:40777' }), targets, ['192.168.2.2:51820']);
  assert.equal(r.variesByDestination, true);
  assert.equal(r.behindNat, true);
});

test('no NAT: what they see is our own endpoint, nothing to add; nobody answering says nothing', async () => {
  const r = await discoverReflexive(client({ '198.20.1.2:51820': '198.20.5.2:51820' }), targets, ['198.20.5.2:51820']);
  assert.deepEqual(r.mapped, []);
  assert.equal(r.behindNat, false);
  assert.equal(r.variesByDestination, null, 'one answer cannot tell');
  const none = await discoverReflexive(client({}), targets, []);
  assert.equal(none.behindNat, null);
  assert.deepEqual(none.mapped, []);
});

test('whom to ask: members on public addresses, one per address, then STUN servers, at most three', () => {
  const peers = ['192.168.1.5:51820', '198.20.1.2:51820', '198.20.1.2:6000', '[2a0f::1]:51820', '198.20.4.2:51820'].map(e);
  assert.deepEqual(stunTargets(peers, [e('198.20.99.9:3478')]).map(formatEndpoint), ['198.20.1.2:51820', '[2a0f::1]:51820', '198.20.4.2:51820']);
  assert.deepEqual(stunTargets([e('10.1.1.1:1')], [e('198.20.99.9:3478')]).map(formatEndpoint), ['198.20.99.9:3478']);
});

test('once one target answered, one that never will holds the report up for the grace only, not the whole timeout', async () => {
  const slow: StunClient = {
    stun: (to, timeoutMs = 2000) => new Promise((resolve) => {
      if (formatEndpoint(to) === '198.20.1.2:51820') setTimeout(() => resolve(parseEndpoint('198.20.2.2:51820')), 10);
      else setTimeout(() => resolve(null), timeoutMs); // never answers: its own timeout
    }),
  };
  const t0 = performance.now();
  const r = await discoverReflexive(slow, targets, ['192.168.2.2:51820'], { timeoutMs: 5000, graceMs: 200 });
  const took = performance.now() - t0;
  assert.ok(took < 2500, `reported after ${Math.round(took)} ms`);
  assert.deepEqual(r.mapped, ['198.20.2.2:51820']);
  assert.equal(r.asked.find((a) => a.to === '198.20.3.2:51820')?.saw, null);
});
