// Runs inside a throwaway network namespace (kernel.test.ts makes it and runs this under
// `ip netns exec`): creates interfaces, drives src/routes/kernel.ts against them, and prints one
// JSON line with what each call did plus `ip -j addr` / `ip -j route` for the parent to check.
// Never run this outside a namespace: it creates and deletes interfaces d0 and d1.
import { execFileSync } from 'node:child_process';
import {
  KernelError, addAddress, addRoute, delRoute, ensureMulticastRoute, flushAddresses, localAddresses, setLinkUp,
} from '../../../src/routes/kernel.js';

function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** A dummy interface where the kernel has the module; else a persistent TUN (what meshd really uses). */
function makeLink(name: string): string {
  try {
    ip('link', 'add', name, 'type', 'dummy');
    return 'dummy';
  } catch {
    ip('tuntap', 'add', 'dev', name, 'mode', 'tun');
    return 'tun';
  }
}

/** What a failing call threw, in a form JSON can carry. */
async function failure(fn: () => Promise<unknown>): Promise<Record<string, string> | null> {
  try {
    await fn();
    return null;
  } catch (err) {
    const e = err as KernelError;
    return { name: e.name, code: e.code, command: e.command, stderr: e.stderr, message: e.message, isKernelError: String(err instanceof KernelError) };
  }
}

async function main(): Promise<Record<string, unknown>> {
  // Guard: a fresh namespace has only lo. Refuse to run anywhere that looks like a real host.
  const links = JSON.parse(ip('-j', 'link')) as { ifname: string }[];
  if (links.some((l) => l.ifname !== 'lo')) throw new Error(`not a fresh namespace (links: ${links.map((l) => l.ifname).join(', ')})`);

  const kind = makeLink('d0');
  // d1 is one end of a veth pair: with both ends up it is RUNNING, which os.networkInterfaces()
  // (libuv) requires before it lists an interface's addresses; a TUN without a reader never is.
  ip('link', 'add', 'd1', 'type', 'veth', 'peer', 'name', 'd1p');
  ip('link', 'set', 'd1p', 'up');
  const r: Record<string, unknown> = { kind };

  r.multicastWhileDown = await failure(() => ensureMulticastRoute('d0'));
  await addAddress('d0', '10.77.0.1', 24);
  r.addAddressAgain = await failure(() => addAddress('d0', '10.77.0.1', 24));
  await setLinkUp('d0', 1380);
  r.multicast = await failure(() => ensureMulticastRoute('d0'));
  r.multicastAgain = await failure(() => ensureMulticastRoute('d0'));
  await addRoute('10.88.0.0/16', 'd0');
  r.addRouteAgain = await failure(() => addRoute('10.88.0.0/16', 'd0'));
  await addRoute('10.99.0.0/16', 'd0');
  await delRoute('10.99.0.0/16', 'd0');
  r.delRouteAgain = await failure(() => delRoute('10.99.0.0/16', 'd0'));

  // d1 holds a prefix: adding it through d0 must not pass for "already there".
  await addAddress('d1', '10.55.0.1', 24);
  await setLinkUp('d1');
  await addRoute('10.66.0.0/16', 'd1');
  r.routeTakenByOther = await failure(() => addRoute('10.66.0.0/16', 'd0'));

  r.noDevice = await failure(() => addAddress('nosuch0', '10.1.1.1', 24));
  r.badName = await failure(() => setLinkUp('bad name; rm -rf /'));
  r.badMtu = await failure(() => setLinkUp('d0', 20));

  r.localSkippingD1 = localAddresses('d1');
  r.localAll = localAddresses();

  r.addr = JSON.parse(ip('-j', 'addr'));
  r.route = JSON.parse(ip('-j', 'route'));

  await flushAddresses('d0');
  r.addrAfterFlush = JSON.parse(ip('-j', 'addr', 'show', 'dev', 'd0'));
  r.routeAfterFlush = JSON.parse(ip('-j', 'route', 'show', 'dev', 'd0'));
  // After a flush the multicast route is gone with the last address; restoring it needs an address.
  await addAddress('d0', '10.77.0.9', 24);
  await ensureMulticastRoute('d0');
  r.routeAfterRestore = JSON.parse(ip('-j', 'route', 'show', 'dev', 'd0'));

  for (const name of ['d0', 'd1']) ip('link', 'del', name);
  return r;
}

main().then(
  (r) => process.stdout.write(`${JSON.stringify(r)}\n`),
  (err: Error) => {
    process.stdout.write(`${JSON.stringify({ error: err.stack ?? err.message })}\n`);
    process.exitCode = 1;
  },
);
