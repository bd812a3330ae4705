#!/usr/bin/env node
// meshd: the command line. One file per subcommand; this one only assembles them.
import { Command, Option } from 'commander';
import { daemonCommand } from './daemon.js';
import { engineCommand } from './engine.js';
import { initCommand } from './init.js';
import { inviteCommand } from './invite.js';
import { joinCommand } from './join.js';
import { kickCommand, leaveCommand, promoteCommand } from './members.js';
import { statusCommand } from './status.js';

const program = new Command('meshd')
  .description('A mesh VPN daemon: libp2p discovery and an embedded userspace WireGuard engine')
  .version('0.1.0')
  .addOption(new Option('--state-dir <dir>', 'state directory (store and control socket)').env('MESHD_STATE_DIR'));

for (const c of [daemonCommand(), initCommand(), inviteCommand(), joinCommand(), statusCommand(), leaveCommand(), kickCommand(), promoteCommand(), engineCommand()]) {
  program.addCommand(c);
}

program.parseAsync(process.argv).catch((err: Error) => {
  process.stderr.write(`meshd: ${err.message}\n`);
  process.exit(1);
});
