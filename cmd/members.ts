// `meshd leave`, `meshd kick`, `meshd promote`: changes of membership.
import { Command } from 'commander';
import { jsonOption, print, rpc } from './common.js';

export function leaveCommand(): Command {
  return new Command('leave')
    .description('leave the network for good (this node\'s address is freed)')
    .addOption(jsonOption())
    .action(async (_opts: object, cmd: Command) => {
      const r = await rpc(cmd, 'leave', {});
      print(cmd, r, () => `left network ${r.left}`);
    });
}

export function kickCommand(): Command {
  return new Command('kick')
    .description('remove a member from the network (administrators only)')
    .argument('<member>', 'the member\'s name or mesh address')
    .addOption(jsonOption())
    .action(async (target: string, _opts: object, cmd: Command) => {
      const r = await rpc(cmd, 'kick', { target });
      print(cmd, r, () => `kicked ${r.kicked} (${r.meshIp})`);
    });
}

export function promoteCommand(): Command {
  return new Command('promote')
    .description('make a member an administrator (the founder only)')
    .argument('<member>', 'the member\'s name or mesh address')
    .addOption(jsonOption())
    .action(async (target: string, _opts: object, cmd: Command) => {
      const r = await rpc(cmd, 'promote', { target });
      print(cmd, r, () => `${r.promoted} is now an administrator`);
    });
}
