#!/usr/bin/env -S node --max-semi-space-size=1
// meshd-engine: the engine with wireguard-go's command line, so that tools written for
// wireguard-go run meshd instead. `meshd-engine <ifname>` starts the engine in the background and
// returns once `wg` can configure the interface; `-f` keeps it in the foreground (= `meshd engine`).
// wg-quick, where the kernel has no WireGuard module:
//
//   WG_QUICK_USERSPACE_IMPLEMENTATION=meshd-engine wg-quick up wg0
//
// `wg-quick down` deletes the interface, and the engine exits with it. In the background the
// engine keeps this command's stdout and stderr and logs errors only, unless LOG_LEVEL says more.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { engineOptions, runEngine, type EngineCliOptions } from './engine.js';

const program = engineOptions(new Command('meshd-engine')
  .description('the meshd WireGuard engine with the command line of wireguard-go (for wg-quick)')
  .version('0.1.0')
  .argument('<ifname>', 'interface to create (at most 15 characters)')
  .option('-f, --foreground', 'stay in the foreground'))
  .action(async (ifname: string, opts: EngineCliOptions & { foreground?: boolean }) => {
    if (opts.foreground) return runEngine(ifname, opts);
    await background(ifname, process.argv.slice(2));
  });

/** Starts `meshd-engine -f` detached; resolves when its UAPI socket exists, exits if it fails. */
async function background(ifname: string, args: string[]): Promise<void> {
  const child = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), '-f', ...args], {
    detached: true,
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...process.env, LOG_LEVEL: process.env.LOG_LEVEL ?? 'error' },
  });
  const sock = `/var/run/wireguard/${ifname}.sock`;
  const exited = new Promise<number>((resolve) => child.once('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0))));
  const deadline = Date.now() + 10_000;
  for (;;) {
    const code = await Promise.race([exited, new Promise<null>((r) => setTimeout(() => r(null), 20))]);
    if (code !== null) process.exit(code || 1); // it said why on our stderr
    if (existsSync(sock)) break;
    if (Date.now() > deadline) {
      child.kill();
      throw new Error(`the engine did not open ${sock} within 10 s`);
    }
  }
  child.unref();
  process.exit(0);
}

program.parseAsync(process.argv).catch((err: Error) => {
  process.stderr.write(`meshd-engine: ${err.message}\n`);
  process.exit(1);
});
