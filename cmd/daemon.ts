// `meshd daemon`: runs the node in the foreground (what the systemd unit starts).
import { Command, Option } from 'commander';
import { datapathFromEnv, timingsFromEnv, type Datapath } from '../src/wg/engine.js';
import { createLogger } from '../src/util/log.js';
import { stateDir } from './common.js';
import { sdNotify, sdWatchdog } from '../src/daemon/sd-notify.js';
import { addonTrim, exposedGc, startMemoryUpkeep } from '../src/daemon/memory-upkeep.js';
import { useSmallBufferPool } from '../src/daemon/buffer-pool.js';

const collect = (v: string, list: string[]) => [...list, v];

const port = (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new Error(`invalid port ${v}`);
  return n;
};

const seconds = (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new Error(`invalid number of seconds ${v} (0-65535)`);
  return n;
};

export function daemonCommand(): Command {
  return new Command('daemon')
    .description('run the mesh node in the foreground')
    .option('--interface <name>', 'WireGuard interface to create', 'meshd0')
    .option('--listen-port <port>', 'WireGuard UDP port', port, 51820)
    .option('--p2p-port <port>', 'libp2p TCP port', port, 4001)
    .option('--name <name>', 'this node\'s name in the mesh (default: the hostname)')
    .option('--announce <host>', 'an address or DNS name where this node is reachable on its own ports (a floating IP); repeatable, goes first in invites and records', collect, [])
    .option('--announce-udp <host:port>', 'where its WireGuard port is reachable through a port forward that changes the port; repeatable', collect, [])
    .option('--announce-tcp <host:port>', 'where its libp2p port is reachable through a port forward that changes the port; repeatable', collect, [])
    .option('--keepalive <seconds>', 'keepalive interval that holds NAT mappings open, sent only while this node may be behind a NAT (0: never)', seconds, 25)
    .option('--relay', 'relay other members\' WireGuard datagrams when they have no direct path (the default)')
    .option('--no-relay', 'do not relay for other members')
    .option('--stun <host:port>', 'a STUN server to learn this node\'s public UDP endpoint from, besides members on public addresses; repeatable', collect, [])
    .addOption(new Option('--datapath <kind>', 'native or reference').choices(['native', 'reference']))
    .option('--metrics <addr:port>', 'serve Prometheus metrics over HTTP at http://ADDR:PORT/metrics (off by default)')
    .action(async (opts: { interface: string; listenPort: number; p2pPort: number; name?: string; datapath?: Datapath; announce: string[]; announceUdp: string[]; announceTcp: string[]; stun: string[]; keepalive: number; relay: boolean; metrics?: string }, cmd: Command) => {
      const { parseAnnounce, parseHostPort } = await import('../src/discovery/addresses.js');
      const announce = parseAnnounce({ hosts: opts.announce, udp: opts.announceUdp, tcp: opts.announceTcp });
      const stunServers = opts.stun.map((s) => parseHostPort(s, '--stun'));
      const metricsAt = opts.metrics === undefined ? null : parseHostPort(opts.metrics, '--metrics');
      if (process.getuid?.() !== 0) throw new Error('must run as root (it creates a network interface)');
      const logger = createLogger('meshd');
      // Before libp2p and the daemon allocate what they keep: 8 KB pools, not Node 22+'s 64 KB.
      useSmallBufferPool();
      // Loaded here, not at the top: libp2p takes about a second to import, and the other
      // subcommands (status, join, ...) should start fast.
      // A daemon stays up: a promise nobody handled (ours or a library's) is an error in the log,
      // not the end of every member's connectivity. Work that matters is awaited or retried.
      process.on('unhandledRejection', (err) => logger.error({ err: err instanceof Error ? err.message : String(err) }, 'unhandled rejection'));
      const { Daemon } = await import('../src/daemon/daemon.js');
      // Bound before anything changes: a port in use fails the start with one line.
      const metrics = metricsAt ? await (await import('../src/daemon/metrics.js')).Metrics.start({ listen: metricsAt, logger }) : null;
      let stop = async (_why: string, _code: number): Promise<void> => process.exit(1); // replaced below
      const daemon = await Daemon.start({
        stateDir: stateDir(cmd),
        ifname: opts.interface,
        listenPort: opts.listenPort,
        p2pPort: opts.p2pPort,
        name: opts.name,
        announce,
        stunServers,
        persistentKeepalive: opts.keepalive,
        relay: opts.relay,
        datapath: opts.datapath ?? datapathFromEnv(),
        timings: timingsFromEnv(),
        settleMs: process.env.MESHD_SETTLE_MS ? Number(process.env.MESHD_SETTLE_MS) : undefined,
        logger,
        // Without its interface the node carries nothing: exit non-zero, so that the service
        // manager restarts it with a fresh one (wireguard-go exits too).
        onInterfaceGone: (ifname) => void stop(`interface ${ifname} was deleted`, 1),
      });
      metrics?.serve(daemon.metricsSources());
      let stopping = false;
      let stopWatchdog = (): void => {};
      let stopUpkeep = (): void => {};
      stop = async (why: string, code: number) => {
        if (stopping) return;
        stopping = true;
        stopWatchdog();
        stopUpkeep();
        sdNotify('STOPPING=1', logger);
        if (code === 0) logger.info({ why }, 'shutting down');
        else logger.error({ why }, 'shutting down');
        await metrics?.stop();
        await daemon.stop().catch((err) => logger.error({ err: (err as Error).message }, 'unclean shutdown'));
        process.exit(code);
      };
      process.on('SIGINT', () => void stop('SIGINT', 0));
      process.on('SIGTERM', () => void stop('SIGTERM', 0));
      // The interface and the control socket are up (meshd status answers): systemd may go on.
      sdNotify('READY=1', logger);
      // And, under WatchdogSec=, that its main thread still runs.
      stopWatchdog = sdWatchdog(logger);
      // Idle memory upkeep: a full collection when quiet, and malloc_trim (memory-upkeep.ts).
      const upkeep = { trim: addonTrim(logger), collect: exposedGc() };
      if (!upkeep.collect) logger.warn('node runs without --expose-gc (run meshd as its executable, not `node meshd.js`): an idle daemon keeps what a burst left in its heap');
      if (upkeep.trim || upkeep.collect) stopUpkeep = startMemoryUpkeep(upkeep, logger);
    });
}
