// Network namespaces for integration tests. Every namespace, link and interface carries this
// run's unique prefix; every process is ours and is stopped by its PID; everything is removed when
// the test ends, also after a failure, a timeout or a signal. Traffic stays inside the namespaces
// we create: the host namespace gets no address, route or link.
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The repository root (dist/test/netns/ -> ../../..). */
export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const MESHD = join(ROOT, 'dist', 'cmd', 'meshd.js');
/** wireguard-go's command line on the meshd engine (for wg-quick). */
export const MESHD_ENGINE = join(ROOT, 'dist', 'cmd', 'meshd-engine.js');
/** Shared by every namespace: interface names must be unique machine-wide, not per namespace. */
const UAPI_DIR = '/var/run/wireguard';

/**
 * The WireGuard implementations a test can put on either end: how to start one in the foreground
 * on interface `ifname`. Every one of them serves the UAPI at /var/run/wireguard/<ifname>.sock.
 */
const IMPLS = {
  'wireguard-go': (ifname: string) => ({ cmd: 'wireguard-go', args: ['-f', ifname], env: {} }),
  meshd: (ifname: string) => ({ cmd: MESHD, args: ['engine', ifname], env: { MESHD_DATAPATH: 'native' } }),
  'meshd-reference': (ifname: string) => ({ cmd: MESHD, args: ['engine', ifname], env: { MESHD_DATAPATH: 'reference' } }),
} satisfies Record<string, (ifname: string) => { cmd: string; args: string[]; env: NodeJS.ProcessEnv }>;
export type Impl = keyof typeof IMPLS;

export interface Proc {
  readonly pid: number;
  readonly child: ChildProcess;
  /** stdout and stderr so far, interleaved. */
  output(): string;
  alive(): boolean;
  /** SIGTERM (or `signal`), SIGKILL after 3 s; resolves once the process has exited. */
  kill(signal?: NodeJS.Signals): Promise<void>;
}

// Topologies not yet cleaned up. The handlers below are the last resort when a test never got to
// its own cleanup (a crash, `process.exit`, Ctrl-C): they run synchronously, so they SIGKILL.
const live = new Set<Topology>();
process.on('exit', () => {
  for (const t of live) t.cleanupSync();
});
for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
  process.on(sig, () => process.exit(code)); // exit runs the 'exit' handler above
}

/** A prefix no namespace and no UAPI socket on this machine starts with (other runs may be live). */
function freshPrefix(): string {
  const netns = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).split('\n').map((l) => l.split(' ')[0]);
  const sockets = existsSync(UAPI_DIR) ? readdirSync(UAPI_DIR) : [];
  for (;;) {
    const p = `md${randomBytes(2).toString('hex')}`;
    if (![...netns, ...sockets].some((n) => n.startsWith(p))) return p;
  }
}

export class Topology {
  /** e.g. "md3fa2": short, since interface names are limited to 15 characters. */
  readonly prefix = freshPrefix();
  private readonly namespaces: string[] = [];
  private readonly procs: Proc[] = [];
  private readonly sockets: string[] = [];

  constructor() {
    live.add(this);
  }

  /** This run's name for `suffix` (namespaces, links, interfaces). */
  name(suffix: string): string {
    const n = `${this.prefix}${suffix}`;
    if (n.length > 15) throw new Error(`name too long for an interface: ${n}`);
    return n;
  }

  async addNamespace(suffix: string): Promise<string> {
    const ns = this.name(suffix);
    await run('ip', ['netns', 'add', ns]);
    this.namespaces.push(ns);
    await this.exec(ns, 'ip', ['link', 'set', 'lo', 'up']);
    return ns;
  }

  /**
   * A veth pair between two of our namespaces, with an address (CIDR) on each end, brought up.
   * Both ends are created directly inside their namespaces, never in the host's.
   */
  async link(nsA: string, ifA: string, addrA: string, nsB: string, ifB: string, addrB: string): Promise<void> {
    const a = this.name(ifA);
    const b = this.name(ifB);
    await run('ip', ['link', 'add', a, 'netns', nsA, 'type', 'veth', 'peer', 'name', b, 'netns', nsB]);
    for (const [ns, dev, addr] of [[nsA, a, addrA], [nsB, b, addrB]]) {
      await this.exec(ns, 'ip', ['addr', 'add', addr, 'dev', dev, ...nodad(addr)]);
      await this.exec(ns, 'ip', ['link', 'set', dev, 'up']);
    }
  }

  /** Runs a command to completion inside a namespace; rejects on a non-zero exit (err.stdout kept). */
  exec(ns: string, cmd: string, args: string[], opts: { timeout?: number; env?: NodeJS.ProcessEnv } = {}): Promise<{ stdout: string; stderr: string }> {
    return run('ip', ['netns', 'exec', ns, cmd, ...args], { timeout: opts.timeout ?? 30_000, env: { ...process.env, ...opts.env }, maxBuffer: 16 << 20 });
  }

  /**
   * Starts a long-running process inside a namespace. `ip netns exec` execs the command, so the
   * child's PID is the command's own: that PID is what cleanup kills, and nothing else.
   */
  spawn(ns: string, cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): Proc {
    const child = spawn('ip', ['netns', 'exec', ns, cmd, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.on('data', (d) => (out += d));
    child.stderr!.on('data', (d) => (out += d));
    let exited = false;
    const done = new Promise<void>((resolve) => child.once('exit', () => { exited = true; resolve(); }));
    const proc: Proc = {
      pid: child.pid!,
      child,
      output: () => out,
      alive: () => !exited,
      kill: async (signal = 'SIGTERM') => {
        if (exited) return;
        child.kill(signal);
        const t = setTimeout(() => child.kill('SIGKILL'), 3000);
        await done;
        clearTimeout(t);
      },
    };
    this.procs.push(proc);
    return proc;
  }

  /** Starts a WireGuard implementation on interface `ifname` and waits for its UAPI socket. */
  async startWireguard(ns: string, ifname: string, impl: Impl, env: NodeJS.ProcessEnv = {}): Promise<Proc> {
    const sock = join(UAPI_DIR, `${ifname}.sock`);
    this.trackSocket(sock);
    const { cmd, args, env: implEnv } = IMPLS[impl](ifname);
    const proc = this.spawn(ns, cmd, args, { LOG_LEVEL: 'error', ...implEnv, ...env });
    await waitFor(() => existsSync(sock) || !proc.alive(), 10_000, `${impl} socket for ${ifname}`);
    if (!proc.alive()) throw new Error(`${impl} exited: ${proc.output()}`);
    return proc;
  }

  /** Removes this socket file on cleanup (UAPI sockets outlive a daemon killed with SIGKILL). */
  trackSocket(path: string): void {
    if (!this.sockets.includes(path)) this.sockets.push(path);
  }

  /** Stops our processes gracefully (so daemons remove their own interfaces), then cleanupSync. */
  async cleanup(): Promise<void> {
    await Promise.all(this.procs.map((p) => p.kill()));
    this.cleanupSync();
  }

  /** SIGKILLs whatever of ours still runs, deletes our namespaces and sockets. Idempotent. */
  cleanupSync(): void {
    for (const p of this.procs) if (p.alive()) p.child.kill('SIGKILL');
    for (const ns of this.namespaces.splice(0)) {
      try {
        execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
      } catch {
        // already gone
      }
    }
    for (const s of this.sockets.splice(0)) rmSync(s, { force: true });
    live.delete(this);
  }
}

/** IPv6 addresses skip duplicate address detection, which would hold them unusable for ~2 s. */
function nodad(addr: string): string[] {
  return addr.includes(':') ? ['nodad'] : [];
}

/**
 * The two hosts of shared/testbed/baseline.sh: namespaces a and b joined by a veth pair
 * (192.168.241.1/24 and .2, or fd01::1/64 and ::2 with underlay6), removed when the test ends.
 */
export async function twoHosts(tc: { after(fn: () => unknown): void }, opts: { underlay6?: boolean } = {}) {
  const t = new Topology();
  tc.after(() => t.cleanup());
  const a = await t.addNamespace('a');
  const b = await t.addNamespace('b');
  const [ulA, ulB] = opts.underlay6 ? ['fd01::1', 'fd01::2'] : ['192.168.241.1', '192.168.241.2'];
  const plen = opts.underlay6 ? 64 : 24;
  await t.link(a, 'va', `${ulA}/${plen}`, b, 'vb', `${ulB}/${plen}`);
  return { t, a, b, ulA, ulB };
}

export async function waitFor(fn: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await fn()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/**
 * Where a live process is stuck, for the error of a test that waited on it in vain: each thread's
 * state, the kernel function it sleeps in and its kernel stack (from /proc), and its native stacks
 * when gdb is installed. A daemon that prints nothing while alive is blocked in one of these.
 */
export async function stuckReport(pid: number): Promise<string> {
  const lines: string[] = [];
  const read = (f: string) => { try { return readFileSync(f, 'utf8').trim(); } catch { return '?'; } };
  let tids: string[] = [];
  try { tids = readdirSync(`/proc/${pid}/task`); } catch { return `process ${pid} is gone`; }
  for (const tid of tids) {
    const stat = read(`/proc/${pid}/task/${tid}/stat`);
    const state = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
    lines.push(`thread ${tid} ${read(`/proc/${pid}/task/${tid}/comm`)} state ${state} wchan ${read(`/proc/${pid}/task/${tid}/wchan`)}`);
    const kstack = read(`/proc/${pid}/task/${tid}/stack`);
    if (kstack && kstack !== '?') lines.push(...kstack.split('\n').slice(0, 8).map((l) => `    ${l}`));
  }
  const gdb = await run('gdb', ['-p', String(pid), '-batch', '-nx', '-ex', 'thread apply all bt 25'], { timeout: 30_000, maxBuffer: 8 << 20 }).then(
    (r) => r.stdout.split('\n').filter((l) => /^(Thread|#)/.test(l)).join('\n'),
    (err: Error & { code?: string }) => (err.code === 'ENOENT' ? '(no gdb: no native stacks)' : `(gdb: ${err.message.split('\n')[0]})`),
  );
  return `${lines.join('\n')}\n${gdb}`;
}

export interface PingResult {
  transmitted: number;
  received: number;
  /** Average RTT in ms; NaN when nothing came back. */
  avgMs: number;
}

/**
 * `ping` from namespace `ns`: count probes `interval` s apart, each waiting up to `wait` s for its
 * answer; `size` is the ICMP payload (default 56). Never rejects: a dead tunnel is 0 received.
 */
export async function ping(t: Topology, ns: string, dst: string, opts: { count?: number; interval?: number; wait?: number; size?: number } = {}): Promise<PingResult> {
  const count = opts.count ?? 3;
  const interval = opts.interval ?? 0.2;
  const wait = opts.wait ?? 2;
  const args = ['-n', '-q', '-c', String(count), '-i', String(interval), '-W', String(wait)];
  if (opts.size !== undefined) args.push('-s', String(opts.size));
  let stdout = '';
  try {
    ({ stdout } = await t.exec(ns, 'ping', [...args, dst], { timeout: (count * interval + wait + 10) * 1000 }));
  } catch (err) {
    stdout = (err as { stdout?: string }).stdout ?? ''; // exit 1: some or all probes unanswered
  }
  const m = /(\d+) packets transmitted, (\d+) received/.exec(stdout);
  const rtt = /= [\d.]+\/([\d.]+)\//.exec(stdout);
  return { transmitted: Number(m?.[1] ?? 0), received: Number(m?.[2] ?? 0), avgMs: Number(rtt?.[1] ?? NaN) };
}

export interface PeerState {
  publicKey: string;
  /** "ip:port", "[ip6]:port", or "(none)". */
  endpoint: string;
  allowedIps: string;
  /** Seconds since the epoch; 0 = never. */
  latestHandshake: number;
  /** Bytes as `wg show transfer` reports them. */
  rx: number;
  tx: number;
}

/** `wg show <if> dump` parsed: one entry per peer (the interface line is skipped). */
export async function wgDump(t: Topology, ns: string, ifname: string): Promise<PeerState[]> {
  const { stdout } = await t.exec(ns, 'wg', ['show', ifname, 'dump']);
  return stdout.trim().split('\n').slice(1).filter(Boolean).map((line) => {
    const f = line.split('\t');
    return { publicKey: f[0], endpoint: f[2], allowedIps: f[3], latestHandshake: Number(f[4]), rx: Number(f[5]), tx: Number(f[6]) };
  });
}

export async function genKey(): Promise<{ priv: string; pub: string }> {
  const { stdout: priv } = await run('wg', ['genkey']);
  const pub = execFileSync('wg', ['pubkey'], { input: priv }).toString().trim();
  return { priv: priv.trim(), pub };
}

export interface WgPeer {
  pub: string;
  endpoint?: string;
  allowedIps: string;
  psk?: string;
  keepalive?: number;
}

/**
 * Configures an interface exactly as one would by hand: `wg set` (keys through 0600 temp files,
 * since wg reads keys only from files), then `ip addr` (comma-separated CIDRs) and `ip link up`.
 */
export async function wgSetup(t: Topology, ns: string, ifname: string, cfg: { priv: string; port: number; address?: string; peers: WgPeer[] }): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-wg-'));
  try {
    const keyFile = join(dir, 'key');
    writeFileSync(keyFile, cfg.priv, { mode: 0o600 });
    const args = ['set', ifname, 'listen-port', String(cfg.port), 'private-key', keyFile];
    cfg.peers.forEach((p, i) => {
      args.push('peer', p.pub, 'allowed-ips', p.allowedIps);
      if (p.endpoint) args.push('endpoint', p.endpoint);
      if (p.keepalive !== undefined) args.push('persistent-keepalive', String(p.keepalive));
      if (p.psk) {
        const f = join(dir, `psk${i}`);
        writeFileSync(f, p.psk, { mode: 0o600 });
        args.push('preshared-key', f);
      }
    });
    await t.exec(ns, 'wg', args);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  for (const a of cfg.address?.split(',') ?? []) {
    await t.exec(ns, 'ip', ['addr', 'add', a, 'dev', ifname, ...nodad(a)]);
  }
  await t.exec(ns, 'ip', ['link', 'set', ifname, 'up']);
}
