// Runs inside a throwaway network namespace (overlap.test.ts makes it and runs this under
// `ip netns exec`): builds a few networks and routes, and prints one JSON line with what
// kernel.ts localNetworks and routesTo see. Never run this outside a namespace: it creates links.
import { execFileSync } from 'node:child_process';
import { localNetworks, routesTo } from '../../../src/routes/kernel.js';

function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

async function main(): Promise<Record<string, unknown>> {
  const links = JSON.parse(ip('-j', 'link')) as { ifname: string }[];
  if (links.some((l) => l.ifname !== 'lo')) throw new Error(`not a fresh namespace (links: ${links.map((l) => l.ifname).join(', ')})`);
  // v0 a LAN, v1 a host route, m0 stands for the mesh interface
  ip('link', 'add', 'v0', 'type', 'veth', 'peer', 'name', 'v1');
  ip('link', 'add', 'm0', 'type', 'veth', 'peer', 'name', 'm1');
  for (const d of ['v0', 'v1', 'm0', 'm1']) ip('link', 'set', d, 'up');
  ip('addr', 'add', '10.0.0.5/24', 'dev', 'v0');
  ip('addr', 'add', '10.66.0.1/24', 'dev', 'm0');
  ip('route', 'add', '10.3.0.0/16', 'via', '10.0.0.1');
  ip('route', 'add', '10.5.0.7', 'dev', 'v1');
  ip('route', 'add', 'blackhole', '10.4.0.0/24');
  ip('route', 'add', 'unreachable', '10.9.0.0/24');
  const routes = await routesTo(['10.0.0.7', '10.5.0.7', '10.66.0.9', '10.0.0.5', '10.9.0.1', '10.4.0.1', 'not-an-ip']);
  return {
    networks: await localNetworks('m0'),
    routes: Object.fromEntries(routes),
    empty: Object.fromEntries(await routesTo([])),
  };
}

main().then(
  (r) => process.stdout.write(`${JSON.stringify(r)}\n`),
  (err: Error) => {
    process.stdout.write(`${JSON.stringify({ error: err.stack ?? err.message })}\n`);
    process.exitCode = 1;
  },
);
