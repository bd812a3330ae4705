// The mesh, end to end: real daemons in namespaces on one LAN, joined by invites through the CLI.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Lan } from './mesh.js';
import { ping, waitFor } from './harness.js';
import { Store } from '../../src/store/store.js';
import { ControlError, call } from '../../src/control/client.js';

const STRANGER = fileURLToPath(new URL('./helpers/stranger.js', import.meta.url));

test('five daemons: init, joins (two at once through different members), everyone pings everyone', { timeout: 180_000 }, async (tc) => {
  const lan = new Lan();
  tc.after(() => lan.cleanup());
  await lan.init();
  const names = ['alpha', 'bravo', 'charlie', 'delta', 'echo'];
  for (const n of names) await lan.addNode(n);
  await Promise.all(lan.nodes.map((n) => lan.start(n)));
  const [a, b, c, d, e] = lan.nodes;

  const before = await lan.status(b);
  assert.equal(before.self.meshIp, null, 'not a member yet');
  assert.deepEqual(before.peers, []);

  assert.match(await lan.cli(a, ['init', '--network', 'test']), /10\.0\.0\.1/);
  // The daemon checks a call's params (methods.ts) before any handler runs: one EINVAL line that
  // names the method and the field, and the daemon carries on.
  const sock = join(a.stateDir, 'meshd.sock');
  await assert.rejects(call(sock, 'kick', { target: 7 }), (e: unknown) =>
    e instanceof ControlError && e.code === 'EINVAL' && e.message === 'invalid params for kick: target must be string, not number');
  await assert.rejects(call(sock, 'invite', { uses: '3' }), /^ControlError: invalid params for invite: uses must be number, not string$/);
  const t0 = Date.now();
  assert.match(await lan.cli(b, ['join', await lan.invite(a)]), /joined network test as [a-z0-9-]+; this node is 10\.0\.0\.\d+/);
  const firstJoinMs = Date.now() - t0;
  assert.ok((await ping(lan.t, b.ns, '10.0.0.1', { count: 1, wait: 2 })).received === 1, 'b reaches a right after joining');
  await lan.cli(a, ['promote', 'bravo']);

  // c joins through a, d through b, at the same moment; then e.
  const [ic, id] = [await lan.invite(a), await waitForInvite(lan, b)];
  const [jc, jd] = await Promise.all([lan.cli(c, ['join', ic]), lan.cli(d, ['join', id])]);
  await lan.cli(e, ['join', await lan.invite(a)]);
  const ipOf = (out: string) => /this node is (\S+)/.exec(out)![1];
  assert.notEqual(ipOf(jc), ipOf(jd), 'concurrent joins get different addresses');

  await lan.fullMesh();
  const addresses = new Set<string>();
  for (const n of lan.nodes) {
    const s = await lan.status(n);
    addresses.add(s.self.meshIp!);
    assert.equal(s.peers.length, 4, `${n.name} lists the other four`);
    for (const p of s.peers) {
      assert.ok(p.lastHandshake !== null, `${n.name} -> ${p.name} handshake`);
      assert.equal(p.path, 'direct');
      assert.ok(p.rxBytes > 0 && p.txBytes > 0);
      const r = await ping(lan.t, n.ns, p.meshIp, { count: 1, wait: 2 });
      assert.equal(r.received, 1, `${n.name} pings ${p.name} at ${p.meshIp}`);
    }
  }
  assert.equal(addresses.size, 5, 'five distinct addresses');
  // every member has a latency figure for every other (an ICMP echo through the tunnel every 5 s)
  await waitFor(async () => {
    for (const n of lan.nodes) if ((await lan.status(n)).peers.some((p) => typeof p.latencyMs !== 'number')) return false;
    return true;
  }, 15_000, 'latency figures for every pair');
  for (const ip of addresses) assert.ok(!ip.endsWith('.0') && !ip.endsWith('.255'));
  // wg show works against the daemon, read-only
  const { stdout } = await lan.t.exec(a.ns, 'wg', ['show', a.ifname]);
  assert.equal((stdout.match(/^peer: /gm) ?? []).length, 4);
  await assert.rejects(lan.t.exec(a.ns, 'wg', ['set', a.ifname, 'listen-port', '1']));
  process.stdout.write(`# first join to first ping: ${firstJoinMs} ms\n`);
});

async function waitForInvite(lan: Lan, node: Lan['nodes'][number]): Promise<string> {
  let token = '';
  await waitFor(async () => {
    try {
      token = await lan.invite(node);
      return true;
    } catch {
      return false;
    }
  }, 10_000, 'promotion to reach the new administrator');
  return token;
}

test('bad invites are refused with one clear line and change nothing; a kicked or departed node is out until a new invite', { timeout: 180_000 }, async (tc) => {
  const lan = new Lan();
  tc.after(() => lan.cleanup());
  await lan.init();
  const [a, b, c] = [await lan.addNode('alpha'), await lan.addNode('bravo'), await lan.addNode('charlie')];
  await Promise.all(lan.nodes.map((n) => lan.start(n)));
  await lan.cli(a, ['init']);

  const refused = async (token: string, pattern: RegExp) => {
    const err = await lan.cli(c, ['join', token]).then(() => null, (e: Error & { exitCode?: number }) => e);
    assert.ok(err, `join with ${token.slice(0, 20)}... must fail`);
    assert.match(err.message, pattern);
    assert.equal(err.message.split('\n').length, 1, 'one line');
    assert.notEqual(err.exitCode, 0);
    assert.equal((await lan.status(c)).self.meshIp, null, 'nothing changed');
  };
  await refused('garbage', /not a meshd invite/);
  const good = await lan.invite(a);
  await refused(good.slice(0, good.length - 20), /not a meshd invite|forged/);
  // a forged invite: a valid one with its use count raised, not re-signed
  const payload = JSON.parse(Buffer.from(good.slice('meshd2.'.length), 'base64url').toString());
  payload.invite.body.uses = 100;
  await refused(`meshd2.${Buffer.from(JSON.stringify(payload)).toString('base64url')}`, /forged/);
  payload.invite.body.uses = 1;
  // an invite of an older meshd: a clear line naming both versions
  await refused(`meshd1.${Buffer.from(JSON.stringify({ body: {} })).toString('base64url')}`, /older meshd .*version 1.*reads version 2/);
  const short = await lan.invite(a, ['--ttl', '1s']);
  await new Promise((r) => setTimeout(r, 1500));
  await refused(short, /expired/);

  // a node without the network key cannot even open a libp2p connection to a member; the same
  // node with the key (taken from an invite) can, so it is the key that keeps it out
  const stranger = async (psk: string) => {
    const run = lan.t.spawn(c.ns, process.execPath, [STRANGER, psk, payload.bootstrap.find((m: string) => m.includes(a.lanIp))]);
    await waitFor(() => !run.alive(), 20_000, 'the stranger to finish');
    return JSON.parse(run.output().trim().split('\n').pop()!) as { connected: boolean; error?: string };
  };
  assert.equal((await stranger(randomBytes(32).toString('hex'))).connected, false, 'no connection without the network key');
  assert.equal((await stranger(payload.network.psk)).connected, true, 'a connection with the key');
  await lan.cli(b, ['join', good]);
  await refused(good, /already used/);

  // kick: b leaves every peer list and can no longer reach anyone
  await lan.cli(c, ['join', await lan.invite(a)]);
  assert.equal((await ping(lan.t, c.ns, '10.0.0.2', { count: 1, wait: 3 })).received, 1);
  const keyBefore = (await lan.status(b)).self.publicKey;
  await lan.cli(a, ['kick', 'bravo']);
  await waitFor(async () => (await lan.status(c)).peers.every((p) => p.name !== 'bravo'), 10_000, 'the revocation to reach charlie');
  await waitFor(async () => (await lan.status(b)).self.meshIp === null, 10_000, 'bravo to learn it was kicked');
  assert.equal((await ping(lan.t, c.ns, '10.0.0.2', { count: 2, wait: 1 })).received, 0, 'no traffic to the kicked node');
  // the kicked node's WireGuard peer goes within 3 s (2.5 s of grace, for the revocation to reach it)
  const peerCountOfC = async () => ((await lan.t.exec(c.ns, 'wg', ['show', c.ifname])).stdout.match(/^peer: /gm) ?? []).length;
  await waitFor(async () => (await peerCountOfC()) === 1, 5_000, 'only alpha left as a peer of charlie');
  // the kicked identity stays out (members refuse it at the connection gate); the node took new
  // keys, so it is a stranger that needs a new invite: the used one is refused...
  const keyAfter = (await lan.status(b)).self.publicKey;
  assert.ok(keyAfter && keyAfter !== keyBefore, 'new WireGuard key after the kick');
  await assert.rejects(lan.cli(b, ['join', good]), /already used/);
  // ...and a new one admits it, as a new member reachable by every other
  await lan.cli(b, ['join', await lan.invite(a)]);
  const back = (await lan.status(b)).self;
  assert.ok(back.meshIp, 'bravo has an address again');
  await waitFor(async () => (await ping(lan.t, c.ns, back.meshIp!, { count: 1, wait: 1 })).received === 1, 15_000, 'charlie to reach bravo again');
  assert.equal((await ping(lan.t, b.ns, '10.0.0.1', { count: 1, wait: 2 })).received, 1, 'bravo reaches alpha');
  const peersOfC = (await lan.t.exec(c.ns, 'wg', ['show', c.ifname, 'peers'])).stdout;
  assert.ok(!peersOfC.includes(keyBefore!), 'the kicked key is never a peer again');

  // leaving is for good as well: the node forgets the network, and a new invite brings it back
  const leftKey = (await lan.status(c)).self.publicKey;
  await lan.cli(c, ['leave']);
  const left = await lan.status(c);
  assert.equal(left.self.meshIp, null);
  assert.equal(left.peers.length, 0);
  assert.notEqual(left.self.publicKey, leftKey);
  await waitFor(async () => (await lan.status(a)).peers.every((p) => p.name !== 'charlie'), 10_000, 'alpha to learn charlie left');
  await lan.cli(c, ['join', await lan.invite(a)]);
  await waitFor(async () => (await ping(lan.t, c.ns, '10.0.0.1', { count: 1, wait: 1 })).received === 1, 15_000, 'charlie back after leaving');
});

test('administrators see and cancel every open invite; invites carry no secret into the ledger; a taken name gets a suffix', { timeout: 120_000 }, async (tc) => {
  const lan = new Lan();
  tc.after(() => lan.cleanup());
  await lan.init();
  const [a, b, c, d] = [await lan.addNode('alpha'), await lan.addNode('bravo'), await lan.addNode('charlie'), await lan.addNode('delta')];
  // two machines called the same (the default name is the hostname: two VMs both "vm")
  c.args.push('--name', 'vm');
  d.args.push('--name', 'vm');
  await Promise.all(lan.nodes.map((n) => lan.start(n)));
  await lan.cli(a, ['init']);
  await lan.cli(b, ['join', await lan.invite(a)]);
  await lan.cli(a, ['promote', 'bravo']);
  const open = JSON.parse(await lan.cli(a, ['invite', '--json', '--uses', '2', '--ttl', '2h'])) as { token: string; id: string; uses: number };
  const other = JSON.parse(await lan.cli(a, ['invite', '--json'])) as { token: string; id: string };

  // Every administrator sees every open invite, whoever issued it (bravo sees alpha's).
  type Listed = { invites: Array<{ id: string; issuer: string; uses: number; used: number }> };
  await waitFor(async () => (JSON.parse(await lan.cli(b, ['invites', '--json'])) as Listed).invites.some((i) => i.id === open.id), 10_000, "alpha's invite to reach bravo");
  const listed = (JSON.parse(await lan.cli(b, ['invites', '--json'])) as Listed).invites.find((i) => i.id === open.id)!;
  assert.deepEqual([listed.issuer, listed.uses, listed.used], ['alpha', 2, 0]);
  assert.match(await lan.cli(b, ['invites']), new RegExp(`${open.id.slice(0, 12)}\\s+alpha\\s+0/2`));

  // A name already taken: the second "vm" gets "vm-2", and is told so.
  assert.match(await lan.cli(c, ['join', open.token]), /joined network mesh as vm; this node is 10\.0\.0\.3/);
  assert.match(await lan.cli(d, ['join', open.token]), /joined network mesh as vm-2; this node is 10\.0\.0\.4/);
  assert.deepEqual((await lan.status(a)).peers.map((p) => p.name).sort(), ['bravo', 'vm', 'vm-2']);
  assert.equal((await lan.status(d)).self.name, 'vm-2');
  // The invite's secret is in no member's store: only the token had it.
  const payload = JSON.parse(Buffer.from(open.token.slice('meshd2.'.length), 'base64url').toString()) as { secret: string; invite: { body: { key: string } } };
  const count = async (n: typeof a, text: string) => Number((await lan.t.exec(n.ns, 'sh', ['-c', `cat ${n.stateDir}/db/*.log ${n.stateDir}/db/*.ldb 2>/dev/null | grep -c -F ${JSON.stringify(text)} || true`])).stdout.trim());
  // The raw files are searched: a compaction may have compressed a table (snappy), so the public
  // half need only be found in some member's files to show the search works.
  let found = 0;
  for (const n of lan.nodes) {
    found += await count(n, payload.invite.body.key);
    assert.equal(await count(n, payload.secret), 0, `${n.name}'s store holds no invite secret`);
  }
  assert.ok(found > 0, 'the invite\'s public half is found in the stores (the search works)');
  // A spent invite is no longer listed; a non-administrator may not list or cancel.
  await waitFor(async () => !(JSON.parse(await lan.cli(b, ['invites', '--json'])) as Listed).invites.some((i) => i.id === open.id), 10_000, 'the spent invite to drop off the list');
  await assert.rejects(lan.cli(c, ['invites']), /only an administrator/);
  await assert.rejects(lan.cli(c, ['invite', '--cancel', other.id.slice(0, 8)]), /only an administrator/);

  // bravo cancels alpha's other invite: it admits nobody, through any member.
  assert.match(await lan.cli(b, ['invite', '--cancel', other.id.slice(0, 10)]), new RegExp(`cancelled invite ${other.id.slice(0, 12)}`));
  await waitFor(async () => !(JSON.parse(await lan.cli(a, ['invites', '--json'])) as Listed).invites.some((i) => i.id === other.id), 10_000, 'the cancel to reach alpha');
  await lan.cli(d, ['leave']);
  await assert.rejects(lan.cli(d, ['join', other.token]), /cancelled/);
  assert.equal((await lan.status(d)).self.meshIp, null, 'the refused join changed nothing');
  await assert.rejects(lan.cli(b, ['invite', '--cancel', other.id.slice(0, 10)]), /already cancelled/);
  await assert.rejects(lan.cli(b, ['invite', '--cancel', 'zz']), /6 to 64 hex/);
});

test('restart after kill -9: same address, back in the mesh; latency through the tunnel; mDNS finds a member whose address changed; a deleted interface stops the daemon', { timeout: 180_000 }, async (tc) => {
  const lan = new Lan();
  tc.after(() => lan.cleanup());
  await lan.init();
  const [a, b] = [await lan.addNode('alpha'), await lan.addNode('bravo')];
  await Promise.all(lan.nodes.map((n) => lan.start(n)));
  await lan.cli(a, ['init']);
  await lan.cli(b, ['join', await lan.invite(a)]);
  const ipB = (await lan.status(b)).self.meshIp;
  assert.equal((await ping(lan.t, a.ns, ipB!, { count: 1, wait: 3 })).received, 1);

  // kill -9 and restart b: it comes back with the same keys and address
  b.proc!.child.kill('SIGKILL');
  await waitFor(() => !b.proc!.alive(), 5000, 'b to die');
  await lan.start(b);
  const s = await lan.status(b);
  assert.equal(s.self.meshIp, ipB);
  assert.equal(s.peers.length, 1);
  await waitFor(async () => (await ping(lan.t, b.ns, '10.0.0.1', { count: 1, wait: 1 })).received === 1, 15_000, 'b back in the mesh');

  // status's latency is measured through the tunnel: with WireGuard's port blocked at b, a keeps
  // its libp2p connection to b (b is online) but loses the latency figure
  await waitFor(async () => (await lan.status(a)).peers[0]?.latencyMs != null, 12_000, 'a latency figure for b');
  const drop = ['INPUT', '-p', 'udp', '--dport', '51820', '-j', 'DROP'];
  await lan.t.exec(b.ns, 'iptables', ['-A', ...drop]);
  await waitFor(async () => (await lan.status(a)).peers[0].latencyMs === null, 30_000, 'the figure to go stale');
  assert.equal((await lan.status(a)).peers[0].online, true, 'b is still online over libp2p');
  await lan.t.exec(b.ns, 'iptables', ['-D', ...drop]);
  await waitFor(async () => (await lan.status(a)).peers[0].latencyMs != null, 12_000, 'the figure back');

  // a's LAN address changes while both are down; they find each other again by mDNS alone
  for (const n of [a, b]) {
    await n.proc!.kill();
  }
  const eth = lan.t.name('e1');
  await lan.t.exec(a.ns, 'ip', ['addr', 'flush', 'dev', eth]);
  await lan.t.exec(a.ns, 'ip', ['addr', 'add', '192.168.77.101/24', 'dev', eth]);
  await Promise.all([lan.start(a), lan.start(b)]);
  await waitFor(async () => (await ping(lan.t, b.ns, '10.0.0.1', { count: 1, wait: 1 })).received === 1, 30_000, 'b to reach a at its new LAN address');
  const peer = (await lan.status(b)).peers[0];
  assert.equal(peer.endpoint?.split(':')[0], '192.168.77.101');

  // without its interface a daemon carries nothing: deleting it makes the daemon exit non-zero
  // (for the service manager to restart it), with a line saying why
  await lan.t.exec(b.ns, 'ip', ['link', 'del', b.ifname]);
  await waitFor(() => !b.proc!.alive(), 5_000, 'b to exit after its interface was deleted');
  assert.equal(b.proc!.child.exitCode, 1);
  assert.match(b.proc!.output(), /interface .* was deleted/);
  // and it comes back on a restart, with its address
  await lan.start(b);
  assert.equal((await lan.status(b)).self.meshIp, ipB);
});

test('multi-homed members: an address on a network the other cannot reach loses to the shared LAN', { timeout: 120_000 }, async (tc) => {
  const lan = new Lan();
  tc.after(() => lan.cleanup());
  await lan.init();
  // Each node's first interface is on a network of its own (a container bridge, say), so each
  // advertises an unreachable address first. Taken in the advertised order, neither side could
  // reach the other and no handshake would ever happen.
  const island = (subnet: number) => async (ns: string) => {
    const [x, y] = [lan.t.name(`i${subnet}x`), lan.t.name(`i${subnet}y`)];
    await lan.t.exec(ns, 'ip', ['link', 'add', x, 'type', 'veth', 'peer', 'name', y]);
    await lan.t.exec(ns, 'ip', ['addr', 'add', `172.18.${subnet}.1/24`, 'dev', x]);
    await lan.t.exec(ns, 'ip', ['link', 'set', x, 'up']);
    await lan.t.exec(ns, 'ip', ['link', 'set', y, 'up']);
  };
  const a = await lan.addNode('alpha', { before: island(1) });
  const b = await lan.addNode('bravo', { before: island(2) });
  await Promise.all(lan.nodes.map((n) => lan.start(n)));
  await lan.cli(a, ['init']);
  await lan.cli(b, ['join', await lan.invite(a)]);
  const advertised = (await lan.t.exec(a.ns, 'ip', ['-o', '-4', 'addr', 'show'])).stdout;
  assert.ok(advertised.indexOf('172.18.1.1') < advertised.indexOf(a.lanIp), 'the island address comes first');
  await waitFor(async () => (await ping(lan.t, a.ns, '10.0.0.2', { count: 1, wait: 1 })).received === 1, 15_000, 'alpha to reach bravo');
  assert.equal((await lan.status(a)).peers[0].endpoint, `${b.lanIp}:51820`);
  assert.equal((await lan.status(b)).peers[0].endpoint, `${a.lanIp}:51820`);
});

test('a state directory of an older meshd (ledger format 1): the daemon refuses to start, naming both formats, and changes nothing', { timeout: 60_000 }, async (tc) => {
  const lan = new Lan();
  tc.after(() => lan.cleanup());
  await lan.init();
  const a = await lan.addNode('alpha');
  await lan.start(a);
  await lan.cli(a, ['init']);
  const before = await lan.status(a);
  await a.proc!.kill();
  // What an older meshd left: a network and envelopes, and no format mark (it had none).
  const store = await Store.open(a.stateDir);
  await store.setSettings({ ledgerFormat: undefined });
  await store.close();
  await assert.rejects(lan.start(a), /older meshd \(ledger format 1\); this meshd reads format 2/);
  // Nothing was touched: marked as format 2 again, the same node comes back as it was.
  const again = await Store.open(a.stateDir);
  assert.ok(await again.getNetwork(), 'the stored network is still there');
  await again.setSettings({ ledgerFormat: 2 });
  await again.close();
  await lan.start(a);
  const after = await lan.status(a);
  assert.deepEqual([after.self.peerId, after.self.meshIp], [before.self.peerId, before.self.meshIp]);
});
