// Programs the mesh interface's addresses and routes in the kernel with iproute2 (`ip`). Run with
// execFile and an argument vector, never a shell, so an interface name or prefix can never be
// interpreted as shell syntax.
//
// Operations that add are idempotent: when the kernel says the thing already exists ("File
// exists", or newer kernels' "Address already assigned") that is success, so the daemon can call
// them again after a restart or a reconcile without first reading the current state. Deleting a
// route that is already gone ("No such process") is success too.
//
// Two kernel rules the caller must respect (see ensureMulticastRoute):
// - an IPv4 route cannot be added through a device that is down ("Device for nexthop is not up");
// - removing a device's last IPv4 address (flushAddresses) also removes every IPv4 route through it.
import { execFile } from 'node:child_process';
import { networkInterfaces } from 'node:os';
import { networkOf, type LocalNetwork } from './overlap.js';
import { parseCidr } from './cidr.js';

/** A failed `ip` command: carries the command line and what `ip` printed on stderr. */
export class KernelError extends Error {
  constructor(
    readonly code: string,
    readonly command: string,
    readonly stderr: string,
    message: string,
  ) {
    super(message);
    this.name = 'KernelError';
  }
}

export interface LocalAddress {
  ifname: string;
  address: string;
  family: 'IPv4' | 'IPv6';
  prefixlen: number;
}

const IP_TIMEOUT_MS = 10_000;
const IFNAME_RE = /^[^\s/:]{1,15}$/; // what Linux accepts as an interface name (IFNAMSIZ-1, no '/', ':' or spaces)
const EXISTS = /File exists|Address already assigned/i;
const GONE = /No such process/i;

function checkIfname(ifname: string): void {
  if (typeof ifname !== 'string' || !IFNAME_RE.test(ifname) || ifname === '.' || ifname === '..') {
    throw new KernelError('EINVAL', '', '', `invalid interface name ${JSON.stringify(ifname)}: 1-15 characters, no spaces, '/' or ':'`);
  }
}

/** Runs `ip ARGS...`; rejects with a KernelError naming the command and its stderr. */
export function runIp(args: readonly string[]): Promise<string> {
  const command = `ip ${args.join(' ')}`;
  return new Promise((resolve, reject) => {
    execFile('ip', args, { timeout: IP_TIMEOUT_MS, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (!err) return resolve(stdout);
      const e = err as NodeJS.ErrnoException & { killed?: boolean };
      const text = (stderr ?? '').trim();
      if (e.code === 'ENOENT') {
        return reject(new KernelError('ENOENT', command, text, `cannot run ${command}: iproute2 (the 'ip' command) is not installed`));
      }
      if (e.killed) return reject(new KernelError('ETIMEDOUT', command, text, `${command} timed out after ${IP_TIMEOUT_MS} ms`));
      const code = /Operation not permitted/i.test(text) ? 'EPERM'
        : /Cannot find device|does not exist/i.test(text) ? 'ENODEV'
          : EXISTS.test(text) ? 'EEXIST'
            : 'EKERNEL';
      reject(new KernelError(code, command, text, `${command} failed: ${text || e.message}`));
    });
  });
}

/** Runs an `ip` command whose "already done" answers count as success. */
async function runIdempotent(args: readonly string[], alreadyDone: RegExp): Promise<void> {
  try {
    await runIp(args);
  } catch (err) {
    if (err instanceof KernelError && alreadyDone.test(err.stderr)) return;
    throw err;
  }
}

/** `ip addr add IP/BITS dev IF`; adding an address the interface already has is success. */
export async function addAddress(ifname: string, ip: string, bits: number): Promise<void> {
  checkIfname(ifname);
  const max = ip.includes(':') ? 128 : 32;
  if (!Number.isInteger(bits) || bits < 0 || bits > max) throw new KernelError('EINVAL', '', '', `invalid prefix length ${bits} for ${ip}`);
  await runIdempotent(['addr', 'add', `${ip}/${bits}`, 'dev', ifname], EXISTS);
}

/** `ip link set dev IF up [mtu N]`. */
export async function setLinkUp(ifname: string, mtu?: number): Promise<void> {
  checkIfname(ifname);
  const args = ['link', 'set', 'dev', ifname, 'up'];
  if (mtu !== undefined) {
    if (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535) throw new KernelError('EINVAL', '', '', `invalid MTU ${mtu}: must be 68..65535`);
    args.push('mtu', String(mtu));
  }
  await runIp(args);
}

/**
 * `ip route add PREFIX dev IF`; an existing route for PREFIX through IF is success. The kernel says
 * "File exists" also when the prefix is routed through another device, so that case is checked and
 * reported instead of being mistaken for success.
 */
export async function addRoute(prefix: string, ifname: string): Promise<void> {
  checkIfname(ifname);
  try {
    await runIp(['route', 'add', prefix, 'dev', ifname]);
  } catch (err) {
    if (!(err instanceof KernelError && EXISTS.test(err.stderr))) throw err;
    const family = prefix.includes(':') ? '-6' : '-4';
    const shown = JSON.parse((await runIp(['-j', family, 'route', 'show', 'exact', prefix])) || '[]') as { dev?: string }[];
    if (shown.some((r) => r.dev === ifname)) return;
    const others = shown.map((r) => r.dev ?? '?').join(', ') || 'another table entry';
    throw new KernelError('EEXIST', err.command, err.stderr, `${err.command} failed: ${prefix} is already routed via ${others}`);
  }
}

/** `ip route del PREFIX dev IF`; a route that is already gone is success. */
export async function delRoute(prefix: string, ifname: string): Promise<void> {
  checkIfname(ifname);
  await runIdempotent(['route', 'del', prefix, 'dev', ifname], GONE);
}

/**
 * `ip route add 224.0.0.0/4 dev IF`, so multicast (mDNS discovery inside network namespaces, which
 * often have no default route) leaves through the mesh interface. Idempotent.
 *
 * The kernel refuses the route while IF is down and drops it again when IF's last IPv4 address is
 * removed: call this after addAddress + setLinkUp, and again after any flushAddresses.
 */
export async function ensureMulticastRoute(ifname: string): Promise<void> {
  try {
    await addRoute('224.0.0.0/4', ifname);
  } catch (err) {
    if (err instanceof KernelError && /nexthop is not up|Network is down/i.test(err.stderr)) {
      throw new KernelError('ENETDOWN', err.command, err.stderr,
        `${err.command} failed: ${ifname} is down; bring it up (setLinkUp) before adding the multicast route`);
    }
    throw err;
  }
}

/** `ip addr flush dev IF`: removes every address (and with the last IPv4 one, its IPv4 routes). */
export async function flushAddresses(ifname: string): Promise<void> {
  checkIfname(ifname);
  await runIp(['addr', 'flush', 'dev', ifname]);
}

/**
 * This host's addresses other peers might reach it on: every interface except loopback (Node marks
 * it internal) and the mesh interface itself (its addresses are only reachable through the mesh).
 * Node (libuv) lists only interfaces that are up and running (carrier present), which is what an
 * endpoint needs anyway. IPv6 link-local addresses are included; callers that publish endpoints
 * filter them.
 */
/** An IPv6 link-local address (fe80::/10): reachable only on its own link, never an endpoint. */
export function isLinkLocal(a: LocalAddress): boolean {
  return a.family === 'IPv6' && /^fe[89ab]/i.test(a.address);
}

export function localAddresses(skipIfname?: string): LocalAddress[] {
  const out: LocalAddress[] = [];
  for (const [ifname, addrs] of Object.entries(networkInterfaces())) {
    if (ifname === skipIfname) continue;
    for (const a of addrs ?? []) {
      if (a.internal) continue;
      const family = a.family === 'IPv4' || (a.family as unknown) === 4 ? 'IPv4' : 'IPv6';
      const prefixlen = a.cidr ? Number(a.cidr.split('/')[1]) : family === 'IPv4' ? 32 : 128;
      out.push({ ifname, address: a.address, family, prefixlen });
    }
  }
  return out;
}

// ---- the machine's networks, and where its routes send an address ------------------------------

interface IpAddrJson { ifname?: string; addr_info?: { family?: string; local?: string; prefixlen?: number }[] }
interface IpRouteJson { type?: string; dst?: string; dev?: string }

/**
 * The IPv4 networks in `ip -j -4 addr show` and `ip -j -4 route show table all` output (parsed
 * JSON): each address's network, and each unicast route through a device (every table: policy
 * routing puts VPNs' routes outside main). Left out: the default route, routes of other types
 * (local and broadcast entries repeat the addresses; blackhole and unreachable have no device)
 * and interface `skipIfname` (the mesh's own). One entry per interface and prefix, addresses first.
 */
export function networksFromIp(addrs: unknown, routes: unknown, skipIfname?: string): LocalNetwork[] {
  const out = new Map<string, LocalNetwork>();
  const add = (n: LocalNetwork) => {
    const key = `${n.ifname} ${n.prefix}`;
    if (!out.has(key)) out.set(key, n);
  };
  for (const link of (Array.isArray(addrs) ? addrs : []) as IpAddrJson[]) {
    if (!link.ifname || link.ifname === skipIfname) continue;
    for (const a of link.addr_info ?? []) {
      if (a.family !== 'inet' || typeof a.local !== 'string' || typeof a.prefixlen !== 'number') continue;
      try {
        add({ ifname: link.ifname, prefix: networkOf(a.local, a.prefixlen), kind: 'address' });
      } catch {
        // not a dotted quad: nothing to compare
      }
    }
  }
  for (const r of (Array.isArray(routes) ? routes : []) as IpRouteJson[]) {
    if ((r.type ?? 'unicast') !== 'unicast' || !r.dev || r.dev === skipIfname || !r.dst || r.dst === 'default') continue;
    try {
      const prefix = r.dst.includes('/') ? r.dst : `${r.dst}/32`;
      if (parseCidr(prefix).bits > 0) add({ ifname: r.dev, prefix, kind: 'route' });
    } catch {
      // not an IPv4 prefix
    }
  }
  return [...out.values()];
}

/** This machine's IPv4 networks (networksFromIp), except those of interface `skipIfname`. */
export async function localNetworks(skipIfname?: string): Promise<LocalNetwork[]> {
  const [addrs, routes] = await Promise.all([
    runIp(['-j', '-4', 'addr', 'show']),
    runIp(['-j', '-4', 'route', 'show', 'table', 'all']),
  ]);
  return networksFromIp(JSON.parse(addrs || '[]'), JSON.parse(routes || '[]'), skipIfname);
}

/** Where the kernel sends a packet to an address: the device, and the route's type. */
export interface RouteTo {
  /** null: the route has no device. */
  dev: string | null;
  /** 'unicast', or 'local' for an address of this machine (dev is then lo). */
  type: string;
}

/**
 * `ip route get` for every address at once: one `ip -batch` process, however many addresses. An
 * address the kernel has no route for (unreachable, blackhole) is absent from the map.
 */
export function routesTo(ips: readonly string[]): Promise<Map<string, RouteTo>> {
  const out = new Map<string, RouteTo>();
  const valid = ips.filter((ip) => /^\d{1,3}(\.\d{1,3}){3}$/.test(ip));
  if (valid.length === 0) return Promise.resolve(out);
  return new Promise((resolve, reject) => {
    const child = execFile('ip', ['-j', '-force', '-batch', '-'], { timeout: IP_TIMEOUT_MS, encoding: 'utf8' }, (err, stdout) => {
      const e = err as (NodeJS.ErrnoException & { killed?: boolean }) | null;
      if (e?.code === 'ENOENT') return reject(new KernelError('ENOENT', 'ip -batch', '', "cannot run ip: iproute2 (the 'ip' command) is not installed"));
      if (e?.killed) return reject(new KernelError('ETIMEDOUT', 'ip -batch', '', `ip route get timed out after ${IP_TIMEOUT_MS} ms`));
      // A failed lookup makes ip exit 1 (with -force it goes on): the lines that came are answers.
      for (const line of stdout.split('\n')) {
        if (!line.trim()) continue;
        try {
          for (const r of JSON.parse(line) as IpRouteJson[]) {
            if (r.dst) out.set(r.dst, { dev: r.dev ?? null, type: r.type ?? 'unicast' });
          }
        } catch {
          // not a JSON answer
        }
      }
      resolve(out);
    });
    child.stdin?.end(valid.map((ip) => `route get ${ip}\n`).join(''));
  });
}
