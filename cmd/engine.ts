// `meshd engine <ifname>`: the WireGuard engine alone, a drop-in for `wireguard-go -f <ifname>`.
// Configure it with `wg` and `ip`; it runs until SIGINT/SIGTERM or until its UAPI socket is
// deleted, then removes its interface and socket. `meshd-engine` (meshd-engine.ts) is the same
// engine with wireguard-go's own command line, for wg-quick.
import { Command, Option } from 'commander';
import { Engine, datapathFromEnv, timingsFromEnv, type Datapath } from '../src/wg/engine.js';
import { UapiServer } from '../src/wg/uapi-server.js';
import { createLogger } from '../src/util/log.js';

export interface EngineCliOptions {
  datapath?: Datapath;
  mtu: number;
}

export function engineOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--datapath <kind>', 'native (batched addon) or reference (pure TypeScript)').choices(['native', 'reference']))
    .option('--mtu <bytes>', 'interface MTU', (v) => Number(v), 1420);
}

export function engineCommand(): Command {
  return engineOptions(new Command('engine')
    .description('run the WireGuard engine on a new TUN interface, configured over the wg UAPI socket')
    .argument('<ifname>', 'interface to create (at most 15 characters)'))
    .action((ifname: string, opts: EngineCliOptions) => runEngine(ifname, opts));
}

/**
 * Runs the engine in this process until SIGINT/SIGTERM (exit 0), until its UAPI socket is deleted
 * (exit 0) or until its interface is deleted (exit 1). Resolves once the socket serves `wg`.
 */
export async function runEngine(ifname: string, opts: EngineCliOptions): Promise<void> {
  const log = createLogger('meshd-engine');
  if (process.getuid?.() !== 0) throw new Error('must run as root (it creates a TUN interface)');
  let stop = (_why: string, code: number): void => process.exit(code); // replaced below
  const engine = await Engine.open({
    ifname,
    datapath: opts.datapath ?? datapathFromEnv(),
    timings: timingsFromEnv(),
    mtu: opts.mtu,
    logger: log.child({ component: 'wg' }),
    onInterfaceGone: (name) => stop(`interface ${name} was deleted`, 1),
  });
  let uapi: UapiServer;
  try {
    uapi = await UapiServer.listen(ifname, engine, { logger: log.child({ component: 'uapi' }) });
  } catch (err) {
    engine.close();
    throw err;
  }
  log.info({ ifname, datapath: engine.datapath, listenPort: engine.listenPort }, 'engine up');
  stop = (why: string, code: number) => {
    if (code === 0) log.info({ why }, 'shutting down');
    else log.error({ why }, 'shutting down');
    uapi.close();
    engine.close();
    process.exit(code);
  };
  uapi.onSocketRemoved(() => stop('UAPI socket removed', 0));
  process.on('SIGINT', () => stop('SIGINT', 0));
  process.on('SIGTERM', () => stop('SIGTERM', 0));
}
