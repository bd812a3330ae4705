// `meshd exit-node use <member>` / `meshd exit-node off`: all of this node's traffic through a
// member that routes 0.0.0.0/0 for the mesh (it advertised it, an administrator approved it).
import { Command, Option } from 'commander';
import { jsonOption, print, rpc } from './common.js';

export function exitNodeCommand(): Command {
  const exit = new Command('exit-node').description('send all of this node\'s traffic through an exit node, or stop');
  exit.addCommand(new Command('use')
    .description('all traffic leaves through that member (meshd\'s own connections to members and, by default, the LAN stay direct; IPv6 to the internet is blocked meanwhile)')
    .argument('<member>', 'the exit node\'s name or mesh address')
    .addOption(new Option('--no-allow-lan', 'send this machine\'s own LAN through the exit node too'))
    .addOption(jsonOption())
    .action(async (target: string, opts: { allowLan: boolean }, cmd: Command) => {
      const r = await rpc(cmd, 'exitNodeUse', { target, allowLan: opts.allowLan });
      print(cmd, r, () => `all traffic now leaves through ${r.exitNode}${r.allowLan ? ' (the local network stays direct)' : ''}`);
    }));
  exit.addCommand(new Command('off')
    .description('stop using the exit node: the routes as they were')
    .addOption(jsonOption())
    .action(async (_opts: object, cmd: Command) => {
      const r = await rpc(cmd, 'exitNodeOff', {});
      print(cmd, r, () => (r.was ? `no longer using ${r.was} as exit node` : 'no exit node was in use'));
    }));
  return exit;
}
