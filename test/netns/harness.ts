// Network namespaces for integration tests: every namespace, link and interface carries this
// run's unique prefix, every process is ours and stopped by PID, and everything is removed when
// the test ends, also after a failure or a signal. Traffic stays inside the namespaces.
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The repository root (dist/test/netns/ -> ../../..). */
export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const MESHD = join(ROOT, 'dist', 'cmd', 'meshd.js');
const UAPI_DIR = '/var/run/wireguard';

export interface Proc {
  readonly pid: number;
  readonly child: ChildProcess;
  output(): string;
  alive(): boolean;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

const live = new Set<Topology>();
function cleanupAllSync(): void {
  for (const t of live) t.cleanupSync();
}
process.on('exit', cleanupAllSync);
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    cleanupAllSync();
    process.exit(130);
  });
}

export class Topology {
  /** e.g. "md3fa2": short, since interface names are limited to 15 characters. */
  readonly prefix = `md${randomBytes(2).toString('hex')}`;
  private readonly namespaces: string[] = [];
  private readonly procs: Proc[] = [];
  private readonly sockets: string[] = [];

  constructor() {
    live.add(this);
  }

  name(suffix: string): string {
    const n = `${this.prefix}${suffix}`;
    if (n.length > 15) throw new Error(`name too long: ${n}`);
    return n;
  }

  async addNamespace(suffix: string): Promise<string> {
    const ns = this.name(suffix);
    await run('ip', ['netns', 'add', ns]);
    this.namespaces.push(ns);
    await this.exec(ns, 'ip', ['link', 'set', 'lo', 'up']);
    return ns;
  }

  /** A veth pair between two namespaces with addresses (CIDR) on each end, brought up. */
  async link(nsA: string, ifA: string, addrA: string, nsB: string, ifB: string, addrB: string): Promise<void> {
    const a = this.name(ifA);
    const b = this.name(ifB);
    await run('ip', ['link', 'add', a, 'netns', nsA, 'type', 'veth', 'peer', 'name', b, 'netns', nsB]);
    for (const [ns, dev, addr] of [[nsA, a, addrA], [nsB, b, addrB]]) {
      await this.exec(ns, 'ip', ['addr', 'add', addr, 'dev', dev, ...(addr.includes(':') ? ['nodad'] : [])]);
      await this.exec(ns, 'ip', ['link', 'set', dev, 'up']);
    }
  }

  exec(ns: string, cmd: string, args: string[], opts: { timeout?: number; env?: NodeJS.ProcessEnv } = {}): Promise<{ stdout: string; stderr: string }> {
    return run('ip', ['netns', 'exec', ns, cmd, ...args], { timeout: opts.timeout ?? 30_000, env: opts.env ?? process.env, maxBuffer: 16 << 20 });
  }

  /** Starts a long-running process in a namespace; `ip netns exec` execs, so the PID is the process's. */
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
    this.sockets.push(sock);
    const [cmd, args, extraEnv] = IMPLS[impl](ifname);
    const proc = this.spawn(ns, cmd, args, { LOG_LEVEL: 'error', ...extraEnv, ...env });
    await waitFor(() => existsSync(sock) || !proc.alive(), 10_000, `${impl} socket for ${ifname}`);
    if (!proc.alive()) throw new Error(`${impl} exited: ${proc.output()}`);
    return proc;
  }

  /** Removes this socket file on cleanup (UAPI sockets outlive a daemon killed with -9). */
  trackSocket(path: string): void {
    if (!this.sockets.includes(path)) this.sockets.push(path);
  }

  async cleanup(): Promise<void> {
    for (const p of this.procs) await p.kill();
    this.cleanupSync();
  }

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

export type Impl = 'meshd' | 'meshd-reference' | 'wireguard-go';

const IMPLS: Record<Impl, (ifname: string) => [string, string[], NodeJS.ProcessEnv]> = {
  meshd: (i) => [process.execPath, [MESHD, 'engine', i], { MESHD_DATAPATH: 'native' }],
  'meshd-reference': (i) => [process.execPath, [MESHD, 'engine', i], { MESHD_DATAPATH: 'reference' }],
  'wireguard-go': (i) => ['wireguard-go', ['-f', i], {}],
};

export async function waitFor(fn: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await fn()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

export interface PingResult {
  transmitted: number;
  received: number;
  avgMs: number;
}

export async function ping(t: Topology, ns: string, dst: string, opts: { count?: number; interval?: number; wait?: number; size?: number } = {}): Promise<PingResult> {
  const args = ['-n', '-q', '-c', String(opts.count ?? 3), '-i', String(opts.interval ?? 0.2), '-W', String(opts.wait ?? 2)];
  if (opts.size !== undefined) args.push('-s', String(opts.size));
  let stdout = '';
  try {
    ({ stdout } = await t.exec(ns, 'ping', [...args, dst]));
  } catch (err) {
    stdout = (err as { stdout?: string }).stdout ?? '';
  }
  const m = /(\d+) packets transmitted, (\d+) received/.exec(stdout);
  const rtt = /= [\d.]+\/([\d.]+)\//.exec(stdout);
  return { transmitted: Number(m?.[1] ?? 0), received: Number(m?.[2] ?? 0), avgMs: Number(rtt?.[1] ?? NaN) };
}

/** `wg show <if> dump` parsed: one entry per peer. */
export async function wgDump(t: Topology, ns: string, ifname: string): Promise<{ publicKey: string; endpoint: string; latestHandshake: number; rx: number; tx: number; allowedIps: string }[]> {
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

/** Configures an interface with `wg set` (keys through 0600 temp files, as wg wants) and `ip`. */
export async function wgSetup(t: Topology, ns: string, ifname: string, cfg: { priv: string; port: number; address?: string; peers: WgPeer[] }): Promise<void> {
  const { mkdtempSync, writeFileSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
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
  if (cfg.address) {
    for (const a of cfg.address.split(',')) {
      await t.exec(ns, 'ip', ['addr', 'add', a, 'dev', ifname, ...(a.includes(':') ? ['nodad'] : [])]);
    }
  }
  await t.exec(ns, 'ip', ['link', 'set', ifname, 'up']);
}
