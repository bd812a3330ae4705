// `meshd init`: this node founds a new network and becomes its first member and administrator.
import { Command } from 'commander';
import { jsonOption, print, rpc } from './common.js';

export function initCommand(): Command {
  return new Command('init')
    .description('found a new network with this node as its first member and administrator')
    .option('--network <name>', 'network name', 'mesh')
    .option('--cidr <range>', 'the network\'s address range', '10.0.0.0/24')
    .option('--allow-overlap', 'found it even if the range overlaps a network of this machine (mesh traffic to those addresses would not be encrypted)')
    .option('--domain <domain>', 'DNS domain of the members\' names, the same on every member (default: <network>.internal)')
    .addOption(jsonOption())
    .action(async (opts: { network: string; cidr: string; allowOverlap?: boolean; domain?: string }, cmd: Command) => {
      const r = await rpc(cmd, 'init', {
        network: opts.network, cidr: opts.cidr, ...(opts.allowOverlap ? { allowOverlap: true } : {}), ...(opts.domain !== undefined ? { domain: opts.domain } : {}),
      });
      print(cmd, r, () => `founded network ${r.network}; this node is ${r.meshIp}`);
    });
}
