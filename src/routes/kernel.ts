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
