// Real `meshd daemon` processes in namespaces, driven through the CLI, on two kinds of topology:
//   Lan       every node on one bridge (192.168.77.0/24, or another /24), as in an office or a home.
//   Internet  every node on its own public-looking subnet behind one core router, with a default
//             route, as servers at different providers are (198.20.<i>.0/24 and 2a0f:5e00:<i>::/64:
//             ranges libp2p and meshd treat as public; they exist only inside these namespaces).
import { mkdtempSync, rmSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Topology, ping, waitFor, stuckReport, MESHD, type Proc } from './harness.js';
import type { Status } from '../../src/daemon/daemon.js';

export interface MeshNode {
  name: string;
  ns: string;
  ifname: string;
  stateDir: string;
  lanIp: string;
  proc: Proc | null;
  /** Extra `meshd daemon` arguments (e.g. --announce). */
  args: string[];
}

const run = promisify(execFile);

/** Daemons and their CLI, whatever the topology. */
export class MeshNet {
  readonly t = new Topology();
  readonly nodes: MeshNode[] = [];
  protected readonly root = mkdtempSync(join(tmpdir(), 'meshd-mesh-'));

  /** A node in namespace `ns` (number i: its interface is <prefix>m<i>), built by a topology. */
  node(name: string, ns: string, i: number, lanIp: string, args: string[] = []): MeshNode {
    const node: MeshNode = { name, ns, ifname: this.t.name(`m${i}`), stateDir: join(this.root, name), lanIp, proc: null, args };
    this.nodes.push(node);
    return node;
  }

  async start(node: MeshNode, env: NodeJS.ProcessEnv = {}): Promise<void> {
    node.proc = this.t.spawn(node.ns, MESHD, ['--state-dir', node.stateDir, 'daemon', '--interface', node.ifname, '--name', node.name, ...node.args], { LOG_LEVEL: process.env.MESHD_TEST_LOG_LEVEL ?? 'warn', ...env });
    this.t.trackSocket(`/var/run/wireguard/${node.ifname}.sock`);
    const proc = node.proc;
    // The socket file may be a stale one of a killed daemon: wait until the new daemon answers.
    let lastError = 'no control socket yet';
    const answers = async (): Promise<boolean> => {
      if (!existsSync(join(node.stateDir, 'meshd.sock'))) return false;
      return this.cli(node, ['status', '--json'], 10_000).then(() => true, (err: Error) => ((lastError = err.message), false));
    };
    // The daemon logs the step it is stuck in (src/daemon/startup.ts); one that logs nothing is
    // blocked, or up but not answering. A start normally takes a second or two: past 15 s, where it
    // is and what `meshd status` said are taken down, and printed whether or not it comes up.
    const where = async (): Promise<string> => `meshd status said last: ${lastError}; its output:\n${proc.output().slice(-4000)}\nwhere it is:\n${await stuckReport(proc.pid)}`;
    const t0 = Date.now();
    let slow = null as Promise<string> | null;
    const timer = setTimeout(() => (slow = where()), 15_000);
    try {
      await waitFor(async () => !proc.alive() || (await answers()), 60_000, `daemon ${node.name}`);
    } catch (err) {
      throw new Error(`${(err as Error).message}; ${slow ? `at 15 s: ${await slow}\nat 60 s: ` : ''}${await where()}`);
    } finally {
      clearTimeout(timer);
    }
    if (slow) console.log(`daemon ${node.name} took ${Date.now() - t0} ms to answer; at 15 s: ${await slow}`);
    if (!proc.alive()) throw new Error(`daemon ${node.name} exited: ${proc.output()}`);
  }

  /** Runs the CLI against a node's daemon; rejects with the CLI's stderr on a non-zero exit. */
  async cli(node: MeshNode, args: string[], timeout = 60_000): Promise<string> {
    try {
      const { stdout } = await this.t.exec(node.ns, MESHD, ['--state-dir', node.stateDir, ...args], { timeout });
      return stdout.trim();
    } catch (err) {
      const e = err as { stderr?: string; code?: number };
      throw Object.assign(new Error((e.stderr ?? String(err)).trim()), { exitCode: e.code });
    }
  }

  async status(node: MeshNode): Promise<Status> {
    return JSON.parse(await this.cli(node, ['status', '--json'])) as Status;
  }

  async invite(node: MeshNode, extra: string[] = []): Promise<string> {
    return JSON.parse(await this.cli(node, ['invite', '--json', ...extra])).token as string;
  }

  /** Every node (of `nodes`) has had a handshake with every other (pings make them happen). */
  async fullMesh(timeoutMs = 20_000, nodes: readonly MeshNode[] = this.nodes): Promise<void> {
    await waitFor(async () => {
      for (const n of nodes) {
        const s = await this.status(n).catch(() => null);
        if (!s || s.peers.filter((p) => p.lastHandshake !== null).length < nodes.length - 1) {
          for (const p of s?.peers ?? []) void ping(this.t, n.ns, p.meshIp, { count: 1, wait: 1 });
          return false;
        }
      }
      return true;
    }, timeoutMs, 'a full mesh');
  }

  /**
   * Nodes of these names (made by the topology's addNode), started; the first founds the network,
   * the others join it with an invite of the first; then a full mesh. Returns them in that order.
   */
  async mesh(names: readonly string[], addNode: (name: string) => Promise<MeshNode>, env: NodeJS.ProcessEnv = {}): Promise<MeshNode[]> {
    const nodes: MeshNode[] = [];
    for (const name of names) nodes.push(await addNode(name));
    await Promise.all(nodes.map((n) => this.start(n, env)));
    await this.cli(nodes[0], ['init']);
    for (const n of nodes.slice(1)) await this.cli(n, ['join', await this.invite(nodes[0])]);
    await this.fullMesh(30_000, nodes);
    return nodes;
  }

  async cleanup(): Promise<void> {
    // MESHD_TEST_LOGDIR=DIR keeps each daemon's output (with MESHD_TEST_LOG_LEVEL=debug, say).
    const keep = process.env.MESHD_TEST_LOGDIR;
    if (keep) {
      mkdirSync(keep, { recursive: true });
      for (const n of this.nodes) if (n.proc) writeFileSync(join(keep, `${Date.now()}-${n.name}.log`), n.proc.output());
    }
    await this.t.cleanup();
    rmSync(this.root, { recursive: true, force: true });
  }
}

export class Lan extends MeshNet {
  private hub = '';

  /** `subnet`: the LAN's /24 as its first three octets; node i is <subnet>.<i>. */
  constructor(private readonly subnet = '192.168.77') {
    super();
  }

  /** A namespace holding the bridge every node plugs into. */
  async init(): Promise<void> {
    this.hub = await this.t.addNamespace('hub');
    await this.t.exec(this.hub, 'ip', ['link', 'add', 'br0', 'type', 'bridge']);
    await this.t.exec(this.hub, 'ip', ['link', 'set', 'br0', 'up']);
  }

  /**
   * A namespace plugged into the bridge as <subnet>.<i>/24. `before` runs in the new namespace
   * before the LAN link exists, so interfaces it makes come first in the node's address list.
   */
  async addNode(name: string, opts: { before?: (ns: string) => Promise<void> } = {}): Promise<MeshNode> {
    const i = this.nodes.length + 1;
    const ns = await this.t.addNamespace(`n${i}`);
    await opts.before?.(ns);
    const host = this.t.name(`e${i}`);
    const port = this.t.name(`p${i}`);
    await run('ip', ['link', 'add', host, 'netns', ns, 'type', 'veth', 'peer', 'name', port, 'netns', this.hub]);
    await this.t.exec(this.hub, 'ip', ['link', 'set', port, 'master', 'br0', 'up']);
    const lanIp = `${this.subnet}.${i}`;
    await this.t.exec(ns, 'ip', ['addr', 'add', `${lanIp}/24`, 'dev', host]);
    await this.t.exec(ns, 'ip', ['link', 'set', host, 'up']);
    return this.node(name, ns, i, lanIp);
  }

  /**
   * A namespace on the bridge that runs no daemon (a flooder, a stranger), with the addresses
   * <subnet>.<first>.. (count of them) on its one link; returns the namespace.
   */
  /**
   * `names` on this LAN as one mesh (MeshNet.mesh): the first founds it, the others join.
   * `args(node)`: extra daemon arguments for a node (it knows its LAN address by then); `env`:
   * the daemons' environment (e.g. LOG_LEVEL).
   */
  lanMesh(names: readonly string[], opts: { args?: (node: MeshNode) => string[]; env?: NodeJS.ProcessEnv } = {}): Promise<MeshNode[]> {
    return this.mesh(names, async (name) => {
      const node = await this.addNode(name);
      node.args.push(...(opts.args?.(node) ?? []));
      return node;
    }, opts.env);
  }

  async addHost(suffix: string, first: number, count = 1): Promise<string> {
    const ns = await this.t.addNamespace(suffix);
    const host = this.t.name(`${suffix}e`);
    const port = this.t.name(`${suffix}p`);
    await run('ip', ['link', 'add', host, 'netns', ns, 'type', 'veth', 'peer', 'name', port, 'netns', this.hub]);
    await this.t.exec(this.hub, 'ip', ['link', 'set', port, 'master', 'br0', 'up']);
    for (let k = 0; k < count; k++) await this.t.exec(ns, 'ip', ['addr', 'add', `${this.subnet}.${first + k}/24`, 'dev', host]);
    await this.t.exec(ns, 'ip', ['link', 'set', host, 'up']);
    return ns;
  }
}

export interface NatOptions {
  nat?: 'preserve' | 'random';
  firewall?: boolean;
  udpTimeout?: number;
}

/** The public side of server i: its own /24 and /64 behind the core router. */
export const publicV4 = (i: number) => `198.20.${i}.2`;
export const publicV6 = (i: number) => `2a0f:5e00:${i}::2`;

export class Internet extends MeshNet {
  /** The core router every subnet hangs off; no NAT, plain forwarding. */
  core = '';

  async init(): Promise<void> {
    this.core = await this.t.addNamespace('core');
    await this.t.exec(this.core, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
    await this.t.exec(this.core, 'sysctl', ['-qw', 'net.ipv6.conf.all.forwarding=1']);
  }

  /**
   * A server on its own public subnet: 198.20.<i>.2/24 (unless v4 is false) and 2a0f:5e00:<i>::2/64
   * (unless v6 is false), with default routes through the core router.
   */
  async addServer(name: string, opts: { v4?: boolean; v6?: boolean; args?: string[] } = {}): Promise<MeshNode> {
    const i = this.nodes.length + 1;
    const ns = await this.t.addNamespace(`n${i}`);
    const [dev, gw] = [this.t.name(`e${i}`), this.t.name(`g${i}`)];
    await run('ip', ['link', 'add', dev, 'netns', ns, 'type', 'veth', 'peer', 'name', gw, 'netns', this.core]);
    for (const [n, d] of [[ns, dev], [this.core, gw]]) await this.t.exec(n, 'ip', ['link', 'set', d, 'up']);
    if (opts.v4 !== false) {
      await this.t.exec(this.core, 'ip', ['addr', 'add', `198.20.${i}.1/24`, 'dev', gw]);
      await this.t.exec(ns, 'ip', ['addr', 'add', `${publicV4(i)}/24`, 'dev', dev]);
      await this.t.exec(ns, 'ip', ['route', 'add', 'default', 'via', `198.20.${i}.1`]);
    }
    if (opts.v6 !== false) {
      await this.t.exec(this.core, 'ip', ['addr', 'add', `2a0f:5e00:${i}::1/64`, 'dev', gw, 'nodad']);
      await this.t.exec(ns, 'ip', ['addr', 'add', `${publicV6(i)}/64`, 'dev', dev, 'nodad']);
      await this.t.exec(ns, 'ip', ['-6', 'route', 'add', 'default', 'via', `2a0f:5e00:${i}::1`]);
    }
    return this.node(name, ns, i, opts.v4 === false ? publicV6(i) : publicV4(i), opts.args);
  }

  /**
   * A host behind its own NAT router (shared/testbed/nat.sh's routers): the router's WAN address
   * is publicV4(i) (198.20.<i>.2, behind the core router), the host is 192.168.<i>.2/24 with the
   * router at .1. `nat`: 'preserve' is plain MASQUERADE (Linux keeps the source port when it can:
   * one mapping for every destination); 'random' is MASQUERADE --random-fully (a mapping per
   * destination: symmetric, "hard"). `firewall`: the router drops unsolicited packets to itself
   * (home routers do; Linux's default accepts them). `udpTimeout`: conntrack's UDP timeouts (s).
   */
  async addBehindNat(name: string, opts: NatOptions & { args?: string[] } = {}): Promise<MeshNode> {
    const i = this.nodes.length + 1;
    const ns = await this.t.addNamespace(`n${i}`);
    await this.plugBehindNat(ns, i, opts);
    return this.node(name, ns, i, `192.168.${i}.2`, opts.args);
  }

  /**
   * Takes a node off its network and puts it behind a new NAT router number k (a laptop moving
   * to another Wi-Fi): its old link and addresses go, new ones come.
   */
  async moveBehindNat(node: MeshNode, k: number, opts: NatOptions = {}): Promise<void> {
    for (const link of (await this.t.exec(node.ns, 'ip', ['-o', 'link', 'show'])).stdout.split('\n')) {
      const dev = /^\d+: ([^:@]+)/.exec(link)?.[1];
      if (dev && new RegExp(`^${this.t.prefix}e\\d+$`).test(dev)) await this.t.exec(node.ns, 'ip', ['link', 'del', dev]);
    }
    await this.plugBehindNat(node.ns, k, opts);
    node.lanIp = `192.168.${k}.2`;
  }

  /** Router namespace r<k> (WAN publicV4(k)) and the host `ns` behind it at 192.168.<k>.2. */
  private async plugBehindNat(ns: string, i: number, opts: NatOptions): Promise<void> {
    const router = await this.t.addNamespace(`r${i}`);
    await this.t.link(router, `w${i}`, `${publicV4(i)}/24`, this.core, `g${i}`, `198.20.${i}.1/24`);
    await this.t.exec(router, 'ip', ['route', 'add', 'default', 'via', `198.20.${i}.1`]);
    await this.t.link(ns, `e${i}`, `192.168.${i}.2/24`, router, `l${i}`, `192.168.${i}.1/24`);
    await this.t.exec(ns, 'ip', ['route', 'add', 'default', 'via', `192.168.${i}.1`]);
    const sh = (...args: string[]) => this.t.exec(router, args[0], args.slice(1));
    await sh('sysctl', '-qw', 'net.ipv4.ip_forward=1');
    if (opts.udpTimeout !== undefined) {
      await sh('sysctl', '-qw', `net.netfilter.nf_conntrack_udp_timeout=${opts.udpTimeout}`);
      await sh('sysctl', '-qw', `net.netfilter.nf_conntrack_udp_timeout_stream=${opts.udpTimeout}`);
    }
    const [wan, lan] = [this.t.name(`w${i}`), this.t.name(`l${i}`)];
    await sh('iptables', '-t', 'nat', '-A', 'POSTROUTING', '-s', `192.168.${i}.0/24`, '-o', wan, '-j', 'MASQUERADE', ...(opts.nat === 'random' ? ['--random-fully'] : []));
    await sh('iptables', '-P', 'FORWARD', 'DROP');
    await sh('iptables', '-A', 'FORWARD', '-i', lan, '-o', wan, '-j', 'ACCEPT');
    await sh('iptables', '-A', 'FORWARD', '-i', wan, '-o', lan, '-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', '-j', 'ACCEPT');
    if (opts.firewall !== false) {
      await sh('iptables', '-A', 'INPUT', '-i', wan, '-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', '-j', 'ACCEPT');
      await sh('iptables', '-A', 'INPUT', '-i', wan, '-j', 'DROP');
    }
  }
}
