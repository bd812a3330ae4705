#!/usr/bin/env -S MALLOC_ARENA_MAX=2 node --max-semi-space-size=1 --expose-gc
// meshd: the command line. One file per subcommand; this one only assembles them.
//
// MALLOC_ARENA_MAX=2: glibc gives each thread that allocates at the same time as another an arena
// of its own, up to 8 per core, and each keeps what was freed in it. A daemon's other threads (V8's
// GC helpers, libuv's pool, LevelDB's compaction) allocate little and seldom; two arenas hold it
// all. The data path allocates nothing per packet, so the lock they share is not contended.
//
// The flags above. --expose-gc: an idle daemon runs a full collection now and then, to hand back
// what a burst left in V8's heap (src/daemon/memory-upkeep.ts). --max-semi-space-size: V8's young
// generation grows to 2 x 16 MB semi-spaces, and every page of them it ever touched counts in the
// daemon's RSS. meshd allocates little (the data path nothing per packet), so 1 MB semi-spaces
// cost a few sub-millisecond scavenges and save about 17 MB per daemon (bench/mesh.sh). Run meshd
// as this executable (the package's bin), not `node meshd.js`.
import { Command, Option } from 'commander';
import { daemonCommand } from './daemon.js';
import { engineCommand } from './engine.js';
import { initCommand } from './init.js';
import { inviteCommand } from './invite.js';
import { invitesCommand } from './invites.js';
import { joinCommand } from './join.js';
import { kickCommand, leaveCommand, promoteCommand } from './members.js';
import { statusCommand } from './status.js';
import { pingCommand } from './ping.js';
import { netcheckCommand } from './netcheck.js';
import { routesCommand } from './routes.js';
import { exitNodeCommand } from './exit-node.js';
import { clientCommand } from './client.js';
import { serviceCommand } from './service.js';

const program = new Command('meshd')
  .description('A mesh VPN daemon: libp2p discovery and an embedded userspace WireGuard engine')
  .version('0.1.0')
  .addOption(new Option('--state-dir <dir>', 'state directory (store and control socket)').env('MESHD_STATE_DIR'));

for (const c of [daemonCommand(), initCommand(), inviteCommand(), invitesCommand(), joinCommand(), statusCommand(), pingCommand(), netcheckCommand(), leaveCommand(), kickCommand(), promoteCommand(), routesCommand(), exitNodeCommand(), clientCommand(), serviceCommand(), engineCommand()]) {
  program.addCommand(c);
}

program.parseAsync(process.argv).catch((err: Error) => {
  process.stderr.write(`meshd: ${err.message}\n`);
  process.exit(1);
});
