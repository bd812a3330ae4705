// `meshd join <invite>`: the daemon joins the network; returns once this node is a member.
import { Command } from 'commander';
import { jsonOption, print, rpc } from './common.js';

export function joinCommand(): Command {
  return new Command('join')
    .description('join a network with an invite from one of its administrators')
    .argument('<invite>', 'the invite, as printed by meshd invite')
    .addOption(jsonOption())
    .action(async (token: string, _opts: object, cmd: Command) => {
      const r = await rpc<{ meshIp: string; network: string; name: string }>(cmd, 'join', { token }, 60_000);
      print(cmd, r, () => `joined network ${r.network} as ${r.name}; this node is ${r.meshIp}`);
    });
}
