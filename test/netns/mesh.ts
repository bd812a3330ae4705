// Real `meshd daemon` processes in namespaces on one LAN bridge, driven through the CLI.
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Topology, waitFor, MESHD, type Proc } from './harness.js';
import type { Status } from '../../src/daemon/daemon.js';

export interface MeshNode {
  name: string;
  ns: string;
  ifname: string;
  stateDir: string;
  lanIp: string;
  proc: Proc | null;
}

export class Lan {
  readonly t = new Topology();
  readonly nodes: MeshNode[] = [];
  private hub = '';
  private readonly root = mkdtempSync(join(tmpdir(), 'meshd-mesh-'));

  /** A namespace holding the bridge every node plugs into. */
  async init(): Promise<void> {
    this.hub = await this.t.addNamespace('hub');
    await this.t.exec(this.hub, 'ip', ['link', 'add', 'br0', 'type', 'bridge']);
    await this.t.exec(this.hub, 'ip', ['link', 'set', 'br0', 'up']);
  }

  /**
   * A namespace plugged into the bridge as 192.168.77.<i>/24. `before` runs in the new namespace
   * before the LAN link exists, so interfaces it makes come first in the node's address list.
   */
  async addNode(name: string, opts: { before?: (ns: string) => Promise<void> } = {}): Promise<MeshNode> {
    const i = this.nodes.length + 1;
    const ns = await this.t.addNamespace(`n${i}`);
    await opts.before?.(ns);
    const host = this.t.name(`e${i}`);
    const port = this.t.name(`p${i}`);
    const { execFile } = await import('node:child_process');
    const { promisify } = await import('node:util');
    await promisify(execFile)('ip', ['link', 'add', host, 'netns', ns, 'type', 'veth', 'peer', 'name', port, 'netns', this.hub]);
    await this.t.exec(this.hub, 'ip', ['link', 'set', port, 'master', 'br0', 'up']);
    const lanIp = `192.168.77.${i}`;
    await this.t.exec(ns, 'ip', ['addr', 'add', `${lanIp}/24`, 'dev', host]);
    await this.t.exec(ns, 'ip', ['link', 'set', host, 'up']);
    const node: MeshNode = { name, ns, ifname: this.t.name(`m${i}`), stateDir: join(this.root, name), lanIp, proc: null };
    this.nodes.push(node);
    return node;
  }

  async start(node: MeshNode, env: NodeJS.ProcessEnv = {}): Promise<void> {
    node.proc = this.t.spawn(node.ns, MESHD, ['--state-dir', node.stateDir, 'daemon', '--interface', node.ifname, '--name', node.name], { LOG_LEVEL: 'warn', ...env });
    this.t.trackSocket(`/var/run/wireguard/${node.ifname}.sock`);
    const proc = node.proc;
    // The socket file may be a stale one of a killed daemon: wait until the new daemon answers.
    await waitFor(async () => !proc.alive() || (existsSync(join(node.stateDir, 'meshd.sock')) && (await this.status(node).then(() => true, () => false))), 20_000, `daemon ${node.name}`);
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

  async cleanup(): Promise<void> {
    await this.t.cleanup();
    rmSync(this.root, { recursive: true, force: true });
  }
}
