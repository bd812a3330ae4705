// `meshd invite`: one line that lets one more machine join (`meshd join <invite>`);
// `meshd invite --cancel ID`: that invite admits nobody from now on.
import { Command } from 'commander';
import qrcode from 'qrcode-terminal';
import { jsonOption, parseDuration, print, rpc } from './common.js';

export function inviteCommand(): Command {
  return new Command('invite')
    .description('print an invite for a new member (single use and expiring by default), or cancel one')
    .option('--ttl <duration>', 'how long it stays valid (e.g. 30m, 1h, 7d)', '1h')
    .option('--uses <n>', 'how many nodes it may admit', (v) => Number(v), 1)
    .option('--qr', 'also print it as a QR code')
    .option('--cancel <id>', 'cancel an open invite (its id or a prefix, from meshd invites)')
    .addOption(jsonOption())
    .action(async (opts: { ttl: string; uses: number; qr?: boolean; cancel?: string }, cmd: Command) => {
      if (opts.cancel !== undefined) {
        const r = await rpc(cmd, 'cancelInvite', { id: opts.cancel });
        print(cmd, r, () => `cancelled invite ${r.cancelled.slice(0, 12)}`);
        return;
      }
      if (!Number.isInteger(opts.uses) || opts.uses < 1) throw new Error('--uses must be a whole number of at least 1');
      const r = await rpc(cmd, 'invite', { ttlMs: parseDuration(opts.ttl), uses: opts.uses });
      print(cmd, r, () => r.token);
      if (!opts.qr && process.stderr.isTTY) process.stderr.write(`invite ${r.id.slice(0, 12)}: ${r.uses} use(s), until ${new Date(r.expires).toISOString()} (meshd invite --cancel ${r.id.slice(0, 12)} to cancel)\n`);
      if (opts.qr) qrcode.generate(r.token, { small: true }, (s: string) => process.stdout.write(`${s}\n`));
    });
}
