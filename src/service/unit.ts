// meshd's systemd unit (packaging/systemd/meshd.service) as `meshd service install` writes it: the
// shipped template with the absolute paths of node and meshd's entry point filled in, decided at
// install time from the node that runs the install (systemd's PATH would not find a node from nvm
// or /usr/local, and the unit must not depend on a shell).
import { readFileSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../util/package-root.js';

export const UNIT_NAME = 'meshd.service';
export const DEFAULT_UNIT_DIR = '/etc/systemd/system';
/** Where systemd itself looks for system units: only there do daemon-reload and enable apply. */
export const SYSTEM_UNIT_DIRS = ['/etc/systemd/system', '/run/systemd/system', '/usr/local/lib/systemd/system', '/usr/lib/systemd/system', '/lib/systemd/system'];
/** Directories ProtectHome=yes hides from the service: a node or meshd there needs read-only. */
const HOME_DIRS = ['/home/', '/root/', '/run/user/'];

export interface UnitPaths {
  /** The node binary. */
  node: string;
  /** meshd's command line, dist/cmd/meshd.js. */
  meshd: string;
}

/** What an ExecStart word may hold here: no quoting, no %-specifiers, no $-expansion. */
const PLAIN_WORD = /^[\w@+=:,./-]+$/;

/** The node running this and the meshd next to it, symlinks resolved (what the unit will exec). */
export function currentPaths(): UnitPaths {
  return { node: realpathSync(process.execPath), meshd: realpathSync(join(packageRoot(), 'dist', 'cmd', 'meshd.js')) };
}

export function templatePath(): string {
  return join(packageRoot(), 'packaging', 'systemd', UNIT_NAME);
}

/**
 * The unit text for these paths and `meshd daemon` options; throws when a path or an option could
 * not appear in ExecStart as one plain word.
 */
export function renderUnit(template: string, paths: UnitPaths, daemonOptions: readonly string[] = []): string {
  for (const p of [paths.node, paths.meshd]) {
    if (!p.startsWith('/') || !PLAIN_WORD.test(p)) throw new Error(`cannot put ${JSON.stringify(p)} in a systemd unit: it must be an absolute path without spaces, quotes, %, $ or ;`);
  }
  for (const o of daemonOptions) {
    if (!PLAIN_WORD.test(o)) throw new Error(`cannot put ${JSON.stringify(o)} in a systemd unit: daemon options must be plain words (letters, digits, _@+=:,./-)`);
  }
  let text = template.replaceAll('@NODE@', paths.node).replaceAll('@MESHD@', paths.meshd).replaceAll('@DAEMON_OPTIONS@', daemonOptions.map((o) => ` ${o}`).join(''));
  // A node or meshd under a home directory stays readable: ProtectHome=read-only there.
  if ([paths.node, paths.meshd].some((p) => HOME_DIRS.some((h) => p.startsWith(h)))) {
    text = text.replace(/^ProtectHome=yes$/m, 'ProtectHome=read-only');
  }
  const left = /@[A-Z_]+@/.exec(text);
  if (left) throw new Error(`the unit template has a placeholder nobody fills in: ${left[0]}`);
  return text;
}

/** The unit as the running meshd would install it. */
export function currentUnit(daemonOptions: readonly string[] = []): string {
  return renderUnit(readFileSync(templatePath(), 'utf8'), currentPaths(), daemonOptions);
}
