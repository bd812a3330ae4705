// `meshd service install|uninstall`: meshd as a systemd service (packaging/systemd/meshd.service).
// install writes the unit with this node's and this meshd's paths, reloads systemd and enables
// (and with --now starts) it; uninstall stops, disables and removes it. Where systemd is not PID 1
// (a container), install still writes the unit and says that systemd is not running. A command
// that fails leaves the unit directory and systemd as they were.
import { Command } from 'commander';
import { existsSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { currentPaths, currentUnit, DEFAULT_UNIT_DIR, SYSTEM_UNIT_DIRS, UNIT_NAME } from '../src/service/unit.js';
import { systemctl, systemdRunning } from '../src/service/systemctl.js';
import { jsonOption, print } from './common.js';
import { daemonCommand } from './daemon.js';

interface Target {
  file: string;
  /** systemd runs here and loads units from this directory: systemctl applies. */
  managed: boolean;
  /** Why systemctl does not apply, when it does not. */
  unmanaged: string | null;
}

function target(unitDir: string): Target {
  const dir = resolve(unitDir);
  let isDir = false;
  try {
    isDir = statSync(dir).isDirectory();
  } catch {
    // reported below
  }
  if (!isDir) throw new Error(`unit directory ${dir} does not exist`);
  const file = join(dir, UNIT_NAME);
  if (!systemdRunning()) return { file, managed: false, unmanaged: 'systemd is not running on this machine (PID 1 is not systemd), so the unit was not loaded' };
  if (!SYSTEM_UNIT_DIRS.includes(dir)) return { file, managed: false, unmanaged: `systemd does not load units from ${dir}, so the unit was not loaded` };
  return { file, managed: true, unmanaged: null };
}

/** Writes `text` to `file` whole or not at all (or removes it for null). */
function put(file: string, text: string | null): void {
  if (text === null) {
    if (existsSync(file)) unlinkSync(file);
    return;
  }
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, text, { mode: 0o644 });
  renameSync(tmp, file);
}

/** Options `meshd daemon` accepts, checked by its own parser (nothing runs): one line if not. */
async function checkDaemonOptions(options: string[]): Promise<void> {
  const dry = daemonCommand().exitOverride().configureOutput({ writeOut: () => {}, writeErr: () => {} }).action(() => {});
  try {
    await dry.parseAsync(options, { from: 'user' });
  } catch (err) {
    const help = (err as { code?: string }).code === 'commander.helpDisplayed';
    throw new Error(`not for meshd daemon: ${help ? 'help is not an option to run it with' : (err as Error).message.replace(/^error: /, '')}`);
  }
}

const enabled = (unit: string) => systemctl(['is-enabled', '--quiet', unit]).then(() => true, () => false);

function installCommand(): Command {
  return new Command('install')
    .description(`write the systemd unit (${UNIT_NAME}) for this meshd and enable it; options after -- go to meshd daemon`)
    .argument('[daemon-options...]', 'meshd daemon options for ExecStart, after -- (e.g. -- --listen-port 51821)')
    .option('--unit-dir <dir>', 'where to write the unit', DEFAULT_UNIT_DIR)
    .option('--no-enable', 'do not enable it (start at boot)')
    .option('--now', 'start it now too')
    .addOption(jsonOption())
    .action(async (daemonOptions: string[], opts: { unitDir: string; enable: boolean; now?: boolean }, cmd: Command) => {
      await checkDaemonOptions(daemonOptions);
      const t = target(opts.unitDir);
      if (opts.now && !t.managed) throw new Error(`cannot start meshd now: ${t.unmanaged!.replace(/, so .*$/, '')}; install without --now to write the unit only`);
      const text = currentUnit(daemonOptions);
      const previous = existsSync(t.file) ? readFileSync(t.file, 'utf8') : null;
      const wasEnabled = t.managed && (await enabled(UNIT_NAME));
      put(t.file, text);
      try {
        if (t.managed) {
          await systemctl(['daemon-reload']);
          if (opts.enable) await systemctl(['enable', UNIT_NAME]);
          // restart, not start: a running meshd of an older unit comes back with the new one.
          if (opts.now) await systemctl(['restart', UNIT_NAME]);
        }
      } catch (err) {
        // Back to how it was: the old unit (or none), enabled as before.
        if (opts.enable && !wasEnabled) await systemctl(['disable', UNIT_NAME]).catch(() => {});
        put(t.file, previous);
        await systemctl(['daemon-reload']).catch(() => {});
        throw err;
      }
      const paths = currentPaths();
      const done = t.managed ? [opts.enable ? 'enabled' : 'not enabled', opts.now ? 'started' : 'start it with: systemctl start meshd'].join('; ') : t.unmanaged!;
      print(cmd, { unit: t.file, ...paths, systemd: systemdRunning(), loaded: t.managed, enabled: t.managed && opts.enable, started: t.managed && opts.now === true },
        () => `installed ${t.file} (${paths.node} ${paths.meshd}); ${done}`);
    });
}

function uninstallCommand(): Command {
  return new Command('uninstall')
    .description(`stop and disable the systemd unit (${UNIT_NAME}) and remove it; the state directory stays`)
    .option('--unit-dir <dir>', 'where the unit is', DEFAULT_UNIT_DIR)
    .addOption(jsonOption())
    .action(async (opts: { unitDir: string }, cmd: Command) => {
      const t = target(opts.unitDir);
      if (!existsSync(t.file)) throw new Error(`no meshd unit at ${t.file}`);
      if (t.managed) await systemctl(['disable', '--now', UNIT_NAME]);
      unlinkSync(t.file);
      if (t.managed) await systemctl(['daemon-reload']);
      print(cmd, { unit: t.file, removed: true, stopped: t.managed },
        () => `removed ${t.file}${t.managed ? ' (stopped and disabled)' : ''}; the state in /var/lib/meshd is kept`);
    });
}

export function serviceCommand(): Command {
  return new Command('service')
    .description('run meshd as a systemd service')
    .addCommand(installCommand())
    .addCommand(uninstallCommand());
}
