#!/usr/bin/env node
// meshd: the command line. One file per subcommand; this one only assembles them.
import { Command } from 'commander';
import { engineCommand } from './engine.js';

const program = new Command('meshd')
  .description('A mesh VPN daemon: libp2p discovery and an embedded userspace WireGuard engine')
  .version('0.1.0');

program.addCommand(engineCommand());

program.parseAsync(process.argv).catch((err: Error) => {
  process.stderr.write(`meshd: ${err.message}\n`);
  process.exit(1);
});
