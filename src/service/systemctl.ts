// systemd as `meshd service` finds it: whether it is the running service manager (sd_booted(3):
// /run/systemd/system exists), and systemctl run without a shell, its failure one line.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';

/** systemd is PID 1 on this machine (not so in most containers). */
export function systemdRunning(): boolean {
  return existsSync('/run/systemd/system');
}

/** Runs `systemctl args...`; rejects with its first line of stderr. */
export function systemctl(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('systemctl', args, { timeout: 60_000, encoding: 'utf8' }, (err, _stdout, stderr) => {
      if (!err) return resolve();
      const why = stderr.trim().split('\n')[0] || err.message.split('\n')[0];
      reject(new Error(`systemctl ${args.join(' ')} failed: ${why}`));
    });
  });
}
