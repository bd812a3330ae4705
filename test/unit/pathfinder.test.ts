// The path finder's decisions, with fake probes, relays and a fake clock: direct when a candidate
// answers, a relay when none does, a dead direct path moved to a relay, a relayed path moved back
// to direct once it works, and idle members costing nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PathFinder, type PeerView } from '../../src/daemon/pathfinder.js';
import { formatEndpoint, parseEndpoint, type Endpoint } from '../../src/wg/endpoint.js';
import { noopLogger } from '../../src/util/log.js';

const V = parseEndpoint('[fd7a:6d65:7368:0:1:2:3:4]:1');

function world() {
  let t = 0;
  const answering = new Set<string>(); // endpoints that answer probes
  const probes: string[] = [];
  const views = new Map<string, PeerView>();
  const relayRequests: string[] = [];
  let relayOk = true;
  let blocked = false;
  const streams = new Set<string>();
  const finder = new PathFinder({
    probe: async (_hex, to) => {
      probes.push(formatEndpoint(to));
      return answering.has(formatEndpoint(to)) ? { from: to, rttMs: 1 } : null;
    },
    virtualEndpoint: () => V,
    isVirtual: (e) => formatEndpoint(e) === formatEndpoint(V),
    view: (hex) => views.get(hex) ?? null,
    setEndpoint: async (hex, e) => { views.get(hex)!.endpoint = e; },
    relays: () => [{ hex: 'r', peerId: 'relay' }],
    requestRelay: async (relay, to) => {
      relayRequests.push(`${relay}->${to}`);
      if (!relayOk) throw new Error('no');
    },
    udpBlocked: () => blocked,
    streamRelays: () => [{ hex: 'r', peerId: 'relay' }, { hex: 'c', peerId: 'C' }],
    openStream: async (peerId) => { streams.add(peerId); },
    hasStream: (hex) => streams.has(hex === 'r' ? 'relay' : hex.toUpperCase()),
    rank: () => 0,
    logger: noopLogger,
    now: () => t,
  });
  const settle = () => new Promise((r) => setTimeout(r, 5));
  return {
    finder, answering, probes, views, relayRequests, settle,
    setRelayOk: (v: boolean) => { relayOk = v; },
    setBlocked: (v: boolean) => { blocked = v; },
    streams,
    advance: async (ms: number) => {
      for (let i = 0; i < ms / 1000; i++) {
        t += 1000;
        finder.tick();
        await settle();
      }
    },
  };
}

const ep = (s: string): Endpoint => parseEndpoint(s);

test('a candidate that answers is taken; none answering means a relay', async () => {
  const w = world();
  w.views.set('b', { endpoint: ep('198.20.3.2:51820'), rxBytes: 0, txBytes: 0, lastHandshakeMs: 0 });
  w.answering.add('198.20.3.2:51820');
  w.finder.setPeers([{ hex: 'b', peerId: 'B', candidates: [ep('192.168.3.2:51820'), ep('198.20.3.2:51820')] }]);
  await w.settle();
  assert.equal(formatEndpoint(w.views.get('b')!.endpoint!), '198.20.3.2:51820');
  assert.equal(formatEndpoint(w.finder.decision('b')!), '198.20.3.2:51820');

  w.views.set('c', { endpoint: ep('198.20.4.2:51820'), rxBytes: 0, txBytes: 0, lastHandshakeMs: 0 });
  w.finder.setPeers([{ hex: 'b', peerId: 'B', candidates: [ep('198.20.3.2:51820')] }, { hex: 'c', peerId: 'C', candidates: [ep('198.20.4.2:51820')] }]);
  await w.settle();
  assert.deepEqual(w.relayRequests, ['relay->C']);
  assert.equal(w.views.get('c')!.endpoint, V);
});

test('a direct path whose traffic goes unanswered moves to a relay; a relayed one moves back once direct works', async () => {
  const w = world();
  const b: PeerView = { endpoint: ep('198.20.3.2:51820'), rxBytes: 100, txBytes: 100, lastHandshakeMs: Date.now() };
  w.views.set('b', b);
  w.answering.add('198.20.3.2:51820');
  w.finder.setPeers([{ hex: 'b', peerId: 'B', candidates: [ep('198.20.3.2:51820')] }]);
  await w.settle();
  // traffic both ways: nothing to do, no probes
  const before = w.probes.length;
  for (let i = 0; i < 10; i++) {
    b.txBytes += 500;
    b.rxBytes += 500;
    await w.advance(1000);
  }
  assert.equal(w.probes.length, before, 'a working path costs no probes');
  // the path dies: sent, nothing back
  w.answering.clear();
  for (let i = 0; i < 5 && b.endpoint !== V; i++) {
    b.txBytes += 500;
    await w.advance(1000);
  }
  assert.equal(b.endpoint, V, 'relayed within a few seconds');
  // works again: within 30 s the relayed path is upgraded
  w.answering.add('198.20.3.2:51820');
  for (let i = 0; i < 31 && b.endpoint === V; i++) {
    b.txBytes += 500;
    b.rxBytes += 500;
    await w.advance(1000);
  }
  assert.equal(formatEndpoint(b.endpoint!), '198.20.3.2:51820', 'direct again');
});

test('idle members cost nothing', async () => {
  const w = world();
  for (const h of ['a', 'b', 'c']) w.views.set(h, { endpoint: ep(`198.20.9.${h.charCodeAt(0) - 96}:51820`), rxBytes: 10, txBytes: 10, lastHandshakeMs: Date.now() });
  for (const h of ['a', 'b', 'c']) w.answering.add(`198.20.9.${h.charCodeAt(0) - 96}:51820`);
  w.finder.setPeers(['a', 'b', 'c'].map((h) => ({ hex: h, peerId: h.toUpperCase(), candidates: [w.views.get(h)!.endpoint!] })));
  await w.settle();
  const n = w.probes.length;
  await w.advance(120_000);
  assert.equal(w.probes.length, n);
});

test('with UDP blocked, members are reached over libp2p streams: directly when connected, else through a member', async () => {
  const w = world();
  w.setBlocked(true);
  w.views.set('c', { endpoint: ep('198.20.4.2:51820'), rxBytes: 0, txBytes: 0, lastHandshakeMs: 0 });
  w.views.set('d', { endpoint: ep('198.20.5.2:51820'), rxBytes: 0, txBytes: 0, lastHandshakeMs: 0 });
  w.answering.add('198.20.4.2:51820'); // would answer, but our UDP gets nowhere: not even tried
  w.finder.setPeers([{ hex: 'c', peerId: 'C', candidates: [ep('198.20.4.2:51820')] }, { hex: 'd', peerId: 'D', candidates: [ep('198.20.5.2:51820')] }]);
  await w.settle();
  assert.equal(w.probes.length, 0, 'no probes while UDP is blocked');
  assert.equal(w.views.get('c')!.endpoint, V);
  assert.deepEqual(w.relayRequests, ['relay->D'], 'c is connected: its own stream, no relay request; d goes through the relay');
  assert.deepEqual([...w.streams].sort(), ['C', 'relay']);
  // UDP works again: back to probing, direct where answered
  w.setBlocked(false);
  w.finder.reevaluateAll('UDP works again');
  await w.settle();
  assert.equal(formatEndpoint(w.views.get('c')!.endpoint!), '198.20.4.2:51820');
});

test('a probe from a member on a direct path evaluated moments ago is no news (two idle members would probe each other for ever)', async () => {
  const w = world();
  const b: PeerView = { endpoint: ep('198.20.3.2:51820'), rxBytes: 0, txBytes: 0, lastHandshakeMs: Date.now() - 200_000 }; // idle: its session long gone
  w.views.set('b', b);
  w.answering.add('198.20.3.2:51820');
  w.finder.setPeers([{ hex: 'b', peerId: 'B', candidates: [ep('198.20.3.2:51820')] }]);
  await w.settle();
  const n = w.probes.length;
  w.finder.hint('b');
  await w.settle();
  assert.equal(w.probes.length, n, 'its probe answered ours: nothing to do');
  await w.advance(31_000);
  const m = w.probes.length;
  w.finder.hint('b');
  await w.settle();
  assert.ok(w.probes.length > m, 'later, a probe is worth an evaluation again');
});

test('a member whose traffic came through a relay (our endpoint roamed onto it) is evaluated when it probes us, also mid-evaluation', async () => {
  // Seen in the NAT test: both ends direct, the direct path blocked and unblocked; one end
  // found direct again while the other's evaluation, started while blocked, chose a relay; the
  // first end's endpoint then roamed onto the relay too, and both stayed relayed.
  const w = world();
  const b: PeerView = { endpoint: ep('198.20.3.2:51820'), rxBytes: 0, txBytes: 0, lastHandshakeMs: 0 };
  w.views.set('b', b);
  w.answering.add('198.20.3.2:51820');
  w.finder.setPeers([{ hex: 'b', peerId: 'B', candidates: [ep('198.20.3.2:51820')] }]);
  await w.settle();
  assert.equal(formatEndpoint(w.finder.decision('b')!), '198.20.3.2:51820');
  // Its packets now come through a relay: WireGuard follows them (roaming).
  b.endpoint = V;
  w.answering.clear();
  w.finder.hint('b'); // evaluates: nothing answers (yet)
  w.answering.add('198.20.3.2:51820'); // the direct path works again, and it probes us
  w.finder.hint('b'); // mid-evaluation: queued, not dropped
  for (let i = 0; i < 10; i++) await w.settle();
  assert.equal(formatEndpoint(b.endpoint!), '198.20.3.2:51820', 'direct again at once, not 30 s later');
});

test('a member never met (no traffic, no handshake) is tried less and less often, not every 10 s for ever', async () => {
  const w = world();
  w.views.set('b', { endpoint: ep('198.20.3.2:51820'), rxBytes: 0, txBytes: 0, lastHandshakeMs: 0 });
  w.answering.add('198.20.3.2:51820');
  w.finder.setPeers([{ hex: 'b', peerId: 'B', candidates: [ep('198.20.3.2:51820')] }]);
  await w.settle();
  const first = w.probes.length;
  await w.advance(120_000);
  const inTwoMinutes = w.probes.length - first;
  assert.ok(inTwoMinutes >= 2 && inTwoMinutes <= 4, `tried after 10, 30 and 70 s: ${inTwoMinutes} probes`);
  const before = w.probes.length;
  await w.advance(30 * 60_000);
  const inHalfAnHour = w.probes.length - before;
  assert.ok(inHalfAnHour <= 5, `then at most every 10 minutes: ${inHalfAnHour} probes in half an hour (every 10 s would be 180)`);
  // New candidates (it moved): tried again soon.
  w.finder.setPeers([{ hex: 'b', peerId: 'B', candidates: [ep('198.20.3.9:51820')] }]);
  w.answering.add('198.20.3.9:51820');
  await w.settle();
  const moved = w.probes.length;
  await w.advance(11_000);
  assert.ok(w.probes.length > moved, 'a member with new candidates starts over at 10 s');
});

test('a member we found no path to yet (its first probes refused us) is evaluated as soon as it probes us', async () => {
  const w = world();
  w.setRelayOk(false);
  // The reconciler has put its best candidate in place; nothing answers yet and no relay helps.
  const b: PeerView = { endpoint: ep('192.168.60.2:51820'), rxBytes: 0, txBytes: 0, lastHandshakeMs: 0 };
  w.views.set('b', b);
  w.finder.setPeers([{ hex: 'b', peerId: 'B', candidates: [ep('192.168.60.2:51820')] }]);
  await w.settle();
  assert.equal(w.finder.decision('b'), null, 'no path yet');
  // It learns of us and probes: its probe is news.
  w.answering.add('192.168.60.2:51820');
  w.finder.hint('b');
  for (let i = 0; i < 5; i++) await w.settle();
  assert.equal(formatEndpoint(w.finder.decision('b')!), '192.168.60.2:51820', 'found at once, not after the 10 s retry');
});
