// Forwarding for a member that routes prefixes for the mesh (a LAN behind it; later an exit node):
// the kernel forwards between the mesh interface and the rest, and, unless told not to (--no-snat),
// masquerades mesh sources as this host's own address, so the LAN's hosts need no route back to
// the mesh (what wg-quick guides do with `iptables -t nat -A POSTROUTING ... -j MASQUERADE` in
// PostUp). Rules live in chains of their own, named after the interface (MESHD-FWD-<if> from
// FORWARD, MESHD-NAT-<if> from nat POSTROUTING), so applying is "flush and refill" and clearing
// removes exactly what meshd added; IPv6 prefixes go through ip6tables. IP forwarding is switched
// on while anything is routed and put back as it was found when nothing is.
//
//   new Forwarding({ ifname, meshCidr, logger? })
//   forwarding.apply(routes: { prefix, snat }[]): Promise<void>   idempotent; [] clears
//   forwarding.clear(): Promise<void>
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { KernelError } from './kernel.js';
import type { Logger } from '../util/log.js';

export interface ForwardedRoute {
  prefix: string;
  /** Masquerade mesh sources toward this prefix (default on: the LAN needs no route back). */
  snat: boolean;
}

const SYSCTL = { 4: '/proc/sys/net/ipv4/ip_forward', 6: '/proc/sys/net/ipv6/conf/all/forwarding' } as const;

function run(cmd: string, args: readonly string[]): Promise<string> {
  const line = `${cmd} ${args.join(' ')}`;
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: 10_000, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (!err) return resolve(stdout);
      const text = (stderr ?? '').trim();
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        return reject(new KernelError('ENOENT', line, text, `cannot forward for the mesh: ${cmd} is not installed (apt-get install iptables)`));
      }
      reject(new KernelError('EKERNEL', line, text, `${line} failed: ${text || err.message}`));
    });
  });
}

export class Forwarding {
  private readonly fwd: string;
  private readonly nat: string;
  /** What each forwarding sysctl was before we switched it on (only those we switched). */
  private readonly before = new Map<4 | 6, string>();
  private active = new Set<4 | 6>();

  constructor(private readonly opts: { ifname: string; meshCidr: string; logger?: Logger }) {
    this.fwd = `MESHD-FWD-${opts.ifname}`;
    this.nat = `MESHD-NAT-${opts.ifname}`;
  }

  async apply(routes: readonly ForwardedRoute[]): Promise<void> {
    for (const family of [4, 6] as const) {
      const mine = routes.filter((r) => (r.prefix.includes(':') ? 6 : 4) === family);
      if (mine.length === 0) {
        if (this.active.has(family)) await this.clearFamily(family);
        continue;
      }
      await this.fill(family, mine);
      await this.enable(family);
      this.active.add(family);
    }
  }

  async clear(): Promise<void> {
    for (const family of [...this.active]) await this.clearFamily(family);
  }

  private async fill(family: 4 | 6, routes: readonly ForwardedRoute[]): Promise<void> {
    const ipt = family === 4 ? 'iptables' : 'ip6tables';
    const ifname = this.opts.ifname;
    for (const [table, chain, hook] of [['filter', this.fwd, 'FORWARD'], ['nat', this.nat, 'POSTROUTING']] as const) {
      await run(ipt, ['-w', '-t', table, '-N', chain]).catch(() => {}); // exists already: fine
      await run(ipt, ['-w', '-t', table, '-F', chain]);
      const jump = ['-w', '-t', table, hook, '-j', chain];
      const present = await run(ipt, ['-w', '-t', table, '-C', ...jump.slice(3)]).then(() => true, () => false);
      if (!present) await run(ipt, ['-w', '-t', table, '-I', hook, '1', '-j', chain]);
    }
    // Forwarded both ways: from the mesh to the prefix, and back (replies; the LAN's own
    // connections to the mesh when sources are kept).
    for (const r of routes) {
      await run(ipt, ['-w', '-t', 'filter', '-A', this.fwd, '-i', ifname, '-d', r.prefix, '-j', 'ACCEPT']);
      await run(ipt, ['-w', '-t', 'filter', '-A', this.fwd, '-o', ifname, '-s', r.prefix, '-j', 'ACCEPT']);
      if (r.snat && family === 4) {
        await run(ipt, ['-w', '-t', 'nat', '-A', this.nat, '-s', this.opts.meshCidr, '-d', r.prefix, '!', '-o', ifname, '-j', 'MASQUERADE']);
      }
    }
    await run(ipt, ['-w', '-t', 'filter', '-A', this.fwd, '-o', ifname, '-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-j', 'ACCEPT']);
  }

  private async clearFamily(family: 4 | 6): Promise<void> {
    const ipt = family === 4 ? 'iptables' : 'ip6tables';
    for (const [table, chain, hook] of [['filter', this.fwd, 'FORWARD'], ['nat', this.nat, 'POSTROUTING']] as const) {
      await run(ipt, ['-w', '-t', table, '-D', hook, '-j', chain]).catch(() => {});
      await run(ipt, ['-w', '-t', table, '-F', chain]).catch(() => {});
      await run(ipt, ['-w', '-t', table, '-X', chain]).catch(() => {});
    }
    const was = this.before.get(family);
    if (was !== undefined) {
      await writeFile(SYSCTL[family], was).catch(() => {});
      this.before.delete(family);
    }
    this.active.delete(family);
  }

  private async enable(family: 4 | 6): Promise<void> {
    const now = (await readFile(SYSCTL[family], 'utf8')).trim();
    if (now === '1') return;
    if (!this.before.has(family)) this.before.set(family, now);
    await writeFile(SYSCTL[family], '1');
    this.opts.logger?.info({ sysctl: SYSCTL[family] }, 'IP forwarding switched on (routes for the mesh)');
  }
}
