// `meshd join <invite>`: the daemon joins the network; returns once this node is a member.
import { Command } from 'commander';
import { jsonOption, print, rpc } from './common.js';

export function joinCommand(): Command {
  return new Command('join')
    .description('join a network with an invite from one of its administrators')
    .argument('<invite>', 'the invite, as printed by meshd invite')
    .option('--allow-overlap', 'join even if the network\'s range overlaps a network of this machine (mesh traffic to those addresses would not be encrypted)')
    .addOption(jsonOption())
    .action(async (token: string, opts: { allowOverlap?: boolean }, cmd: Command) => {
      const r = await rpc(cmd, 'join', { token, ...(opts.allowOverlap ? { allowOverlap: true } : {}) }, 60_000);
      print(cmd, r, () => `joined network ${r.network} as ${r.name}; this node is ${r.meshIp}`);
    });
}
