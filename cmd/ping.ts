// `meshd ping <name|address>`: pings a member through the tunnel and says which path each answer
// took, as `tailscale ping` does: "pong from db1 (10.0.0.3) via 198.51.100.7:51820 in 1.2 ms",
// or "via relay web1 (198.51.100.1:51820) in 3.4 ms".
import { Command, Option } from 'commander';
import type { PingResult } from '../src/daemon/daemon.js';
import { jsonOption, rpc } from './common.js';

export function describe(r: PingResult): string {
  if (r.rttMs === null) return `no answer from ${r.name} (${r.meshIp})`;
  const via = r.path === 'relay' ? `relay ${r.relay ?? '?'} (${r.endpoint ?? '?'})` : (r.endpoint ?? '?');
  return `pong from ${r.name} (${r.meshIp}) via ${via} in ${r.rttMs} ms`;
}

const count = (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 10_000) throw new Error(`invalid count ${v}`);
  return n;
};

export function pingCommand(): Command {
  return new Command('ping')
    .description('ping a member through the tunnel; each answer says whether it came directly or through a relay')
    .argument('<member>', 'a member\'s name or mesh address')
    .addOption(new Option('-c, --count <n>', 'how many pings (default 10 with --until-direct, else 4)').argParser(count))
    .option('--until-direct', 'stop at the first answer over a direct path; fail if none comes')
    .addOption(jsonOption())
    .action(async (target: string, opts: { count?: number; untilDirect?: boolean; json?: boolean }, cmd: Command) => {
      const n = opts.count ?? (opts.untilDirect ? 10 : 4);
      let answered = 0;
      for (let i = 0; i < n; i++) {
        const t0 = Date.now();
        const r = await rpc(cmd, 'ping', { target, timeoutMs: 2000 }, 10_000);
        process.stdout.write(`${opts.json ? JSON.stringify(r) : describe(r)}\n`);
        if (r.rttMs !== null) answered++;
        if (opts.untilDirect && r.rttMs !== null && r.path === 'direct') return;
        if (i < n - 1) await new Promise((res) => setTimeout(res, Math.max(0, 1000 - (Date.now() - t0))));
      }
      if (opts.untilDirect) throw new Error(`no direct path to ${target} after ${n} pings${answered ? ' (answers came through a relay)' : ''}`);
      if (answered === 0) throw new Error(`no answer from ${target}`);
    });
}
