// `meshd routes`: subnet routes. A member advertises prefixes it can route for the mesh (a LAN
// behind it); nothing is used until an administrator approves it for that member; then every
// member routes the prefix through it.
import { Command, Option } from 'commander';
import type { RouteRow } from '../src/daemon/subnet-routes.js';
import { jsonOption, print, rpc } from './common.js';

function table(rows: RouteRow[]): string {
  if (rows.length === 0) return 'no member advertises a route (meshd routes advertise CIDR on the member that can route it)';
  const body = rows.map((r) => [r.prefix, r.member, r.meshIp, r.approved ? 'yes' : 'no (meshd routes approve)', r.exitNode ? 'exit node' : r.inUse ? 'yes' : 'no']);
  const head = ['PREFIX', 'MEMBER', 'MESH IP', 'APPROVED', 'IN USE'];
  const widths = head.map((h, c) => Math.max(h.length, ...body.map((row) => row[c].length)));
  return [head, ...body].map((row) => row.map((v, c) => v.padEnd(widths[c])).join('  ').trimEnd()).join('\n');
}

export function routesCommand(): Command {
  const routes = new Command('routes')
    .description('subnet routes: list them, advertise or withdraw this node\'s, approve members\' (administrators)')
    .addOption(jsonOption())
    .action(async (_opts: object, cmd: Command) => {
      const r = await rpc(cmd, 'routes', {});
      print(cmd, r, () => table(r.routes));
    });

  routes.addCommand(new Command('advertise')
    .description('offer to route these prefixes for the mesh (a LAN behind this node; 0.0.0.0/0 makes it an exit node)')
    .argument('<cidr...>', 'prefixes, e.g. 192.168.1.0/24')
    .addOption(new Option('--no-snat', 'keep mesh source addresses (the LAN then needs a route back to the mesh)'))
    .addOption(jsonOption())
    .action(async (prefixes: string[], opts: { snat: boolean }, cmd: Command) => {
      const r = await rpc(cmd, 'routesAdvertise', { prefixes, snat: opts.snat });
      print(cmd, r, () => [
        `advertising ${r.advertised.join(', ')}`,
        ...(r.pending.length ? [`waiting for an administrator: meshd routes approve <this node> ${r.pending.join(' ')}`] : []),
      ].join('\n'));
    }));

  routes.addCommand(new Command('withdraw')
    .description('stop offering these prefixes')
    .argument('<cidr...>', 'prefixes this node advertises')
    .addOption(jsonOption())
    .action(async (prefixes: string[], _opts: object, cmd: Command) => {
      const r = await rpc(cmd, 'routesWithdraw', { prefixes });
      print(cmd, r, () => `withdrew ${r.withdrawn.join(', ')}`);
    }));

  for (const [name, method, verb] of [['approve', 'routesApprove', 'approved'], ['unapprove', 'routesUnapprove', 'no longer approved']] as const) {
    routes.addCommand(new Command(name)
      .description(name === 'approve'
        ? 'let a member route these prefixes for the mesh (administrators only)'
        : 'take back an approval (administrators only)')
      .argument('<member>', 'the member\'s name or mesh address')
      .argument('<cidr...>', 'prefixes')
      .addOption(jsonOption())
      .action(async (target: string, prefixes: string[], _opts: object, cmd: Command) => {
        const r = await rpc(cmd, method, { target, prefixes });
        print(cmd, r, () => `${prefixes.join(', ')} ${verb} for ${r.member}${r.approved.length ? ` (approved: ${r.approved.join(', ')})` : ''}`);
      }));
  }
  return routes;
}
