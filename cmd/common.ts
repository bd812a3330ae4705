// What every subcommand shares: where the state lives, how to reach the daemon, how to print.
import { Command, Option } from 'commander';
import { join } from 'node:path';
import { DaemonNotRunningError, request } from '../src/control/client.js';
import type { MethodName, Params, Result } from '../src/control/methods.js';

export const DEFAULT_STATE_DIR = '/var/lib/meshd';

export function stateDir(cmd: Command): string {
  const opts = cmd.optsWithGlobals() as { stateDir?: string };
  return opts.stateDir ?? process.env.MESHD_STATE_DIR ?? DEFAULT_STATE_DIR;
}

export function controlPath(cmd: Command): string {
  return join(stateDir(cmd), 'meshd.sock');
}

export function jsonOption(): Option {
  return new Option('--json', 'print JSON instead of text');
}

/** A word as a shell reads it back: quoted when it has anything but safe characters. */
const shellWord = (w: string) => (/^[\w@%+=:,./-]+$/.test(w) ? w : `'${w.replace(/'/g, `'\\''`)}'`);

/** How to start the daemon this command talks to: with its --state-dir unless that is the default (the unit's). */
export function startCommand(cmd: Command): string {
  const dir = stateDir(cmd);
  return dir === DEFAULT_STATE_DIR ? 'meshd daemon  (or: systemctl start meshd)' : `meshd --state-dir ${shellWord(dir)} daemon`;
}

/** Calls the daemon (params and result typed by methods.ts); its errors become the command's one-line error. */
export async function rpc<M extends MethodName>(cmd: Command, method: M, params: Params<M>, timeoutMs = 30_000): Promise<Result<M>> {
  try {
    return await request(controlPath(cmd), method, params, { timeoutMs });
  } catch (err) {
    if (err instanceof DaemonNotRunningError) throw new DaemonNotRunningError(err.path, { cause: err.cause, startWith: startCommand(cmd) });
    throw err;
  }
}

export function print(cmd: Command, value: unknown, text: () => string): void {
  const { json } = cmd.opts() as { json?: boolean };
  process.stdout.write(json ? `${JSON.stringify(value, null, 2)}\n` : `${text()}\n`);
}

/** "1h", "30m", "45s", "2d" -> milliseconds. */
export function parseDuration(text: string): number {
  const m = /^(\d+)(ms|s|m|h|d)$/.exec(text.trim());
  if (!m) throw new Error(`invalid duration ${text}: use a number with ms, s, m, h or d (e.g. 1h)`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 'ms' | 's' | 'm' | 'h' | 'd'];
  return Number(m[1]) * unit;
}
