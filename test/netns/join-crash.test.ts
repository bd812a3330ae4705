// kill -9 in the middle of a join (issue 9): of the admitting member, and of the joiner. What must
// hold afterwards: the retry succeeds (the same invite, or a new one once the first is used up by
// the admission the crash interrupted), every member lists the joiner exactly once, no two members
// share a mesh address, and the node that was killed comes back consistent (status answers, the
// tunnel works).
//
// "Mid-join" without a test hook: the admitting member waits MESHD_SETTLE_MS (the daemon's knob for
// the settle wait, 500 ms by default) after it has signed, stored and pushed the admission and
// before it answers. With 4 s, the test sees the admission reach another member, then kills.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Lan, type MeshNode } from './mesh.js';
import { ping, waitFor } from './harness.js';

const SLOW_ADMITTER = { MESHD_SETTLE_MS: '4000' };

async function kill9(node: MeshNode): Promise<void> {
  const proc = node.proc!;
  process.kill(proc.pid, 'SIGKILL');
  await waitFor(() => !proc.alive(), 5_000, `${node.name} to die`);
}

/** Every member lists every other exactly once, the addresses are distinct, and all ping each other. */
async function consistent(lan: Lan, members: MeshNode[]): Promise<Map<string, string>> {
  const ips = new Map<string, string>();
  for (const n of members) {
    const s = await lan.status(n);
    assert.ok(s.self.meshIp, `${n.name} is a member in its own eyes`);
    ips.set(n.name, s.self.meshIp);
  }
  assert.equal(new Set(ips.values()).size, members.length, `distinct mesh addresses: ${JSON.stringify([...ips])}`);
  await waitFor(async () => {
    for (const n of members) {
      const names = (await lan.status(n)).peers.map((p) => p.name).sort();
      if (JSON.stringify(names) !== JSON.stringify(members.filter((m) => m !== n).map((m) => m.name).sort())) return false;
    }
    return true;
  }, 15_000, 'every member to list every other exactly once');
  for (const n of members) {
    for (const p of (await lan.status(n)).peers) assert.equal(p.meshIp, ips.get(p.name), `${n.name} has ${p.name} at its own address`);
  }
  await lan.fullMesh(20_000, members);
  for (const n of members) {
    for (const m of members) {
      if (m === n) continue;
      assert.equal((await ping(lan.t, n.ns, ips.get(m.name)!, { count: 1, wait: 2 })).received, 1, `${n.name} pings ${m.name}`);
    }
  }
  return ips;
}

test('kill -9 of the admitting member mid-join: the admission survives the crash, the retry with the same invite gets it', { timeout: 180_000 }, async (tc) => {
  const lan = new Lan();
  tc.after(() => lan.cleanup());
  await lan.init();
  const [a, b, c] = [await lan.addNode('alpha'), await lan.addNode('bravo'), await lan.addNode('charlie')];
  await Promise.all([lan.start(a, SLOW_ADMITTER), lan.start(b), lan.start(c)]);
  await lan.cli(a, ['init', '--network', 'crash']);
  await lan.cli(b, ['join', await lan.invite(a)]); // alpha alone: no settle wait
  const token = await lan.invite(a);

  const joining = lan.cli(c, ['join', token]).then(() => null, (e: Error & { exitCode?: number }) => e);
  // The admission is signed, stored and pushed: bravo lists charlie while alpha still settles.
  await waitFor(async () => (await lan.status(b)).peers.some((p) => p.name === 'charlie'), 10_000, 'the admission to reach bravo');
  const admittedIp = (await lan.status(b)).peers.find((p) => p.name === 'charlie')!.meshIp;
  await kill9(a);
  const err = await joining;
  assert.ok(err, 'the join in flight fails when the admitting member dies');
  assert.notEqual(err.exitCode, 0);
  assert.equal((await lan.status(c)).self.meshIp, null, 'charlie is not a member in its own eyes');

  await lan.start(a, SLOW_ADMITTER);
  const afterCrash = (await lan.status(a)).peers.filter((p) => p.name === 'charlie');
  assert.equal(afterCrash.length, 1, 'alpha, restarted, has the admission it stored before the crash');
  assert.equal(afterCrash[0].meshIp, admittedIp);

  const out = await lan.cli(c, ['join', token]);
  assert.match(out, new RegExp(`this node is ${admittedIp.replace(/\./g, '\\.')}$`), 'the retry gets the same admission and address');
  const ips = await consistent(lan, [a, b, c]);
  assert.equal(ips.get('charlie'), admittedIp);
});

test('kill -9 of the joiner mid-join: it comes back as it was; a new invite (the first is used up) gets it in, once', { timeout: 240_000 }, async (tc) => {
  const lan = new Lan();
  tc.after(() => lan.cleanup());
  await lan.init();
  const [a, b, c, d] = [await lan.addNode('alpha'), await lan.addNode('bravo'), await lan.addNode('charlie'), await lan.addNode('delta')];
  await Promise.all([lan.start(a, SLOW_ADMITTER), lan.start(b), lan.start(c), lan.start(d)]);
  await lan.cli(a, ['init', '--network', 'crash']);
  await lan.cli(b, ['join', await lan.invite(a)]);
  const charlieId = (await lan.status(c)).self.peerId;
  const first = await lan.invite(a);

  const joining = lan.cli(c, ['join', first]).then(() => null, (e: Error & { exitCode?: number }) => e);
  await waitFor(async () => (await lan.status(b)).peers.some((p) => p.name === 'charlie'), 10_000, 'the admission to reach bravo');
  const admittedIp = (await lan.status(b)).peers.find((p) => p.name === 'charlie')!.meshIp;
  await kill9(c);
  assert.ok(await joining, 'the join command fails with its daemon gone');

  await lan.start(c);
  const back = await lan.status(c);
  assert.equal(back.self.peerId, charlieId, 'same identity after the crash');
  assert.equal(back.self.meshIp, null, 'nothing of the unanswered join was stored');
  assert.deepEqual(back.peers, []);

  // The first invite is used up by charlie's own admission; a new one gets it in, without a second admission.
  const out = await lan.cli(c, ['join', await lan.invite(a)]);
  assert.match(out, new RegExp(`this node is ${admittedIp.replace(/\./g, '\\.')}$`), 'the same admission and address');
  // A join asked again of a member (its answer was lost) says it is in.
  assert.match(await lan.cli(c, ['join', first]), new RegExp(`this node is ${admittedIp.replace(/\./g, '\\.')}$`));
  // The address held by the interrupted admission is not handed out again.
  await lan.cli(d, ['join', await lan.invite(a)]);
  const ips = await consistent(lan, [a, b, c, d]);
  assert.equal(ips.get('charlie'), admittedIp);

  // And a kill -9 of a member that has joined: it comes back a member, at its address.
  await kill9(c);
  await lan.start(c);
  assert.equal((await lan.status(c)).self.meshIp, admittedIp);
  await consistent(lan, [a, b, c, d]);
});
