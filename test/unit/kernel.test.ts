// src/routes/kernel.ts against the real kernel. Interfaces are created and programmed only inside a
// network namespace made for this test (helpers/kernel-child.js runs there via `ip netns exec`),
// so nothing touches the host's interfaces or routes; the namespace is deleted afterwards, also
// after a failure.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { KernelError, addAddress, localAddresses, runIp } from '../../src/routes/kernel.js';
import { cannotRunInNamespace, runInNamespace } from './helpers/netns-child.js';

const CHILD = fileURLToPath(new URL('./helpers/kernel-child.js', import.meta.url));

const cannotRun = () => cannotRunInNamespace();

interface IpAddr { ifname: string; mtu: number; flags: string[]; addr_info: { family: string; local: string; prefixlen: number }[] }
interface IpRoute { dst: string; dev: string }

test('argument errors come before any command runs', async () => {
  await assert.rejects(addAddress('x'.repeat(16), '10.0.0.1', 24), (e: unknown) => e instanceof KernelError && e.code === 'EINVAL' && /1-15 characters/.test(e.message));
  await assert.rejects(addAddress('d0', '10.0.0.1', 33), (e: unknown) => e instanceof KernelError && /invalid prefix length 33/.test(e.message));
});

test('localAddresses skips loopback and the named interface', () => {
  const all = localAddresses();
  assert.ok(all.every((a) => a.ifname !== 'lo' && !a.address.startsWith('127.')), 'no loopback');
  for (const a of all) {
    assert.ok(a.family === 'IPv4' || a.family === 'IPv6');
    assert.ok(Number.isInteger(a.prefixlen) && a.prefixlen >= 0 && a.prefixlen <= (a.family === 'IPv4' ? 32 : 128));
  }
  const first = all[0]?.ifname;
  if (first) assert.ok(localAddresses(first).every((a) => a.ifname !== first));
});

test('runIp reports the command and stderr of a failure', { skip: cannotRun() }, async () => {
  // A read-only query that fails: touches nothing.
  await assert.rejects(runIp(['link', 'show', 'dev', 'mdk-none-here']), (e: unknown) => {
    assert.ok(e instanceof KernelError);
    assert.equal(e.code, 'ENODEV');
    assert.equal(e.command, 'ip link show dev mdk-none-here');
    assert.match(e.stderr, /mdk-none-here/);
    assert.match(e.message, /^ip link show dev mdk-none-here failed: /);
    return true;
  });
});

test('addresses, link, routes and the multicast route in a private namespace', { skip: cannotRun() }, async (t) => {
  const { report: r, code } = await runInNamespace(t, 'mdk', CHILD, { timeoutMs: 30000 });
  assert.equal(code, 0);

  // A down interface cannot carry the multicast route: a clear error, not silence.
  assert.equal(r.multicastWhileDown?.code, 'ENETDOWN');
  assert.match(r.multicastWhileDown.message, /d0 is down/);
  assert.equal(r.multicastWhileDown.command, 'ip route add 224.0.0.0/4 dev d0');

  // Idempotent calls succeed.
  assert.equal(r.addAddressAgain, null);
  assert.equal(r.multicast, null);
  assert.equal(r.multicastAgain, null);
  assert.equal(r.addRouteAgain, null);
  assert.equal(r.delRouteAgain, null);

  // "File exists" for a prefix routed elsewhere is not success.
  assert.equal(r.routeTakenByOther?.code, 'EEXIST');
  assert.match(r.routeTakenByOther.message, /10\.66\.0\.0\/16 is already routed via d1/);

  // Failures carry the command and the kernel's words.
  assert.equal(r.noDevice?.isKernelError, 'true');
  assert.equal(r.noDevice.command, 'ip addr add 10.1.1.1/24 dev nosuch0');
  assert.match(r.noDevice.stderr, /nosuch0/);
  assert.equal(r.noDevice.code, 'ENODEV');
  assert.equal(r.badName?.code, 'EINVAL');
  assert.equal(r.badMtu?.code, 'EINVAL');

  // What the kernel ended up with.
  const d0 = (r.addr as IpAddr[]).find((a) => a.ifname === 'd0');
  assert.ok(d0, 'd0 exists');
  assert.equal(d0.mtu, 1380);
  assert.ok(d0.flags.includes('UP'));
  assert.deepEqual(d0.addr_info.filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`), ['10.77.0.1/24']);
  const routes = (r.route as IpRoute[]).map((x) => `${x.dst} ${x.dev}`);
  for (const want of ['224.0.0.0/4 d0', '10.88.0.0/16 d0', '10.77.0.0/24 d0', '10.66.0.0/16 d1']) assert.ok(routes.includes(want), `${want} in ${routes.join(', ')}`);
  assert.ok(!routes.some((x) => x.startsWith('10.99.0.0/16')), 'deleted route is gone');
  assert.ok(!routes.includes('10.66.0.0/16 d0'));

  // localAddresses inside the namespace: d1's address unless d1 is skipped, never lo's.
  type Local = { ifname: string; address: string; family: string; prefixlen: number };
  assert.deepEqual((r.localAll as Local[]).filter((a) => a.ifname === 'd1' && a.family === 'IPv4'), [{ ifname: 'd1', address: '10.55.0.1', family: 'IPv4', prefixlen: 24 }]);
  assert.deepEqual((r.localSkippingD1 as Local[]).filter((a) => a.ifname === 'd1'), []);
  assert.ok((r.localAll as Local[]).length > (r.localSkippingD1 as Local[]).length);
  assert.ok(!(r.localAll as Local[]).some((a) => a.ifname === 'lo' || a.address === '127.0.0.1'));

  // flush removes the addresses, and with the last one the kernel drops d0's IPv4 routes.
  assert.deepEqual((r.addrAfterFlush as IpAddr[])[0].addr_info.filter((a) => a.family === 'inet'), []);
  assert.deepEqual(r.routeAfterFlush, []);
  assert.ok((r.routeAfterRestore as IpRoute[]).some((x) => x.dst === '224.0.0.0/4'));
});
