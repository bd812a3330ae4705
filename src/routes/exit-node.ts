// Policy routing for a member that sends all its traffic through an exit node, as wg-quick does
// for `AllowedIPs = 0.0.0.0/0` (its `Table = auto`), plus what a mesh needs on top:
//
//   ip route add default dev <if> table T            the exit: everything into the mesh interface
//   ip rule add not fwmark M lookup T   pref 5220    what is not WireGuard's own goes there
//   ip rule add lookup main suppress_prefixlength 0   pref 5210   (--allow-lan) every route of the
//                                                    main table but its default wins: the LAN, the
//                                                    mesh range, routes other tools added
//   ip rule add to <member endpoint> lookup main pref 5200   meshd's own libp2p (TCP) connections
//                                                    and relayed paths to members stay on the
//                                                    underlay: the fwmark covers only the engine's
//                                                    UDP socket
//
// IPv6: the mesh is IPv4, so IPv6 to the internet would leave around the exit node. While one is
// in use it is blocked instead (`unreachable default` in T for IPv6, the same rules), except the
// LAN's own IPv6 with --allow-lan. Everything is added with fixed preferences in a table of its own,
// and `off()` deletes exactly those rules and flushes only that table: the routes are as they were.
//
//   new ExitRouting({ ifname, table, mark, logger? })
//   exit.apply({ allowLan, keep: string[] }): Promise<void>   idempotent; keep = member addresses
//   exit.off(): Promise<void>
//   exit.active: boolean
import { KernelError, runIp } from './kernel.js';
import type { Logger } from '../util/log.js';

export const EXIT_TABLE = 0x6d6573; // "mes": a table and fwmark of meshd's own
const PREF_KEEP = 5200;
const PREF_LAN = 5210;
const PREF_EXIT = 5220;

export class ExitRouting {
  private kept = new Set<string>();
  private lan: boolean | null = null;
  active = false;

  constructor(private readonly opts: { ifname: string; table?: number; mark?: number; logger?: Logger }) {}

  private get table(): string {
    return String(this.opts.table ?? EXIT_TABLE);
  }

  private get mark(): string {
    return String(this.opts.mark ?? EXIT_TABLE);
  }

  async apply(p: { allowLan: boolean; keep: readonly string[] }): Promise<void> {
    if (!this.active) {
      await runIp(['-4', 'route', 'replace', 'default', 'dev', this.opts.ifname, 'table', this.table]);
      await v6(runIp(['-6', 'route', 'replace', 'unreachable', 'default', 'table', this.table]));
      for (const fam of ['-4', '-6']) {
        const add = runIp([fam, 'rule', 'add', 'not', 'fwmark', this.mark, 'lookup', this.table, 'pref', String(PREF_EXIT)]);
        await (fam === '-6' ? v6(add) : add);
      }
      this.active = true;
      this.opts.logger?.info({ table: this.table }, 'all traffic goes through the exit node');
    }
    if (this.lan !== p.allowLan) {
      for (const fam of ['-4', '-6']) {
        const args = [fam, 'rule', p.allowLan ? 'add' : 'del', 'lookup', 'main', 'suppress_prefixlength', '0', 'pref', String(PREF_LAN)];
        await (p.allowLan ? v6(runIp(args), fam) : gone(runIp(args)));
      }
      this.lan = p.allowLan;
    }
    const want = new Set(p.keep);
    for (const ip of this.kept) {
      if (want.has(ip)) continue;
      await gone(runIp([ip.includes(':') ? '-6' : '-4', 'rule', 'del', 'to', ip, 'lookup', 'main', 'pref', String(PREF_KEEP)]));
      this.kept.delete(ip);
    }
    for (const ip of want) {
      if (this.kept.has(ip)) continue;
      await v6(runIp([ip.includes(':') ? '-6' : '-4', 'rule', 'add', 'to', ip, 'lookup', 'main', 'pref', String(PREF_KEEP)]), ip.includes(':') ? '-6' : '-4');
      this.kept.add(ip);
    }
  }

  async off(): Promise<void> {
    if (!this.active) return;
    for (const ip of this.kept) await gone(runIp([ip.includes(':') ? '-6' : '-4', 'rule', 'del', 'to', ip, 'lookup', 'main', 'pref', String(PREF_KEEP)]));
    this.kept.clear();
    for (const fam of ['-4', '-6']) {
      if (this.lan) await gone(runIp([fam, 'rule', 'del', 'lookup', 'main', 'suppress_prefixlength', '0', 'pref', String(PREF_LAN)]));
      await gone(runIp([fam, 'rule', 'del', 'not', 'fwmark', this.mark, 'lookup', this.table, 'pref', String(PREF_EXIT)]));
      await gone(runIp([fam, 'route', 'flush', 'table', this.table]));
    }
    this.lan = null;
    this.active = false;
    this.opts.logger?.info({}, 'exit node off: routes as they were');
  }
}

/** An IPv6 step on a host (or namespace) without IPv6 is skipped; IPv4 steps must work. */
async function v6(p: Promise<unknown>, family = '-6'): Promise<void> {
  try {
    await p;
  } catch (err) {
    if (family === '-6' && err instanceof KernelError && /not supported|Address family|No such file|disabled/i.test(err.stderr)) return;
    if (err instanceof KernelError && /File exists/i.test(err.stderr)) return;
    throw err;
  }
}

/** Deleting what is already gone is success. */
async function gone(p: Promise<unknown>): Promise<void> {
  try {
    await p;
  } catch (err) {
    if (err instanceof KernelError && /No such file|No such process|not found|Cannot find/i.test(err.stderr)) return;
    throw err;
  }
}
