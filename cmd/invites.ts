// `meshd invites`: the open invites of the network, whoever issued them (administrators only).
import { Command } from 'commander';
import { jsonOption, print, rpc } from './common.js';

function until(ms: number): string {
  const left = ms - Date.now();
  if (left <= 0) return 'expired';
  const m = Math.round(left / 60_000);
  return m < 120 ? `${m}m` : m < 48 * 60 ? `${Math.round(m / 60)}h` : `${Math.round(m / 1440)}d`;
}

export function invitesCommand(): Command {
  return new Command('invites')
    .description('list the open invites (cancel one with meshd invite --cancel ID)')
    .addOption(jsonOption())
    .action(async (_opts: unknown, cmd: Command) => {
      const r = await rpc(cmd, 'invites', {});
      print(cmd, r, () => {
        if (r.invites.length === 0) return 'no open invites';
        const rows = r.invites.map((i) => [i.id.slice(0, 12), i.issuer, `${i.used}/${i.uses}`, until(i.expires), new Date(i.issued).toISOString().slice(0, 16).replace('T', ' ')]);
        const head = ['ID', 'ISSUER', 'USED', 'EXPIRES IN', 'ISSUED'];
        const widths = head.map((h, c) => Math.max(h.length, ...rows.map((row) => row[c].length)));
        return [head, ...rows].map((row) => row.map((v, c) => v.padEnd(widths[c])).join('  ').trimEnd()).join('\n');
      });
    });
}
