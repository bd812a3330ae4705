// `meshd status`: who is there, where, and how the path to them is doing.
import { Command } from 'commander';
import type { Status } from '../src/daemon/daemon.js';
import { jsonOption, print, rpc } from './common.js';

function age(ms: number | null): string {
  if (ms === null) return 'never';
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  return s < 60 ? `${s}s ago` : s < 3600 ? `${Math.floor(s / 60)}m ago` : `${Math.floor(s / 3600)}h ago`;
}

function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

function table(rows: string[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows.map((r) => r.map((cell, c) => cell.padEnd(widths[c])).join('  ').trimEnd()).join('\n');
}

export function render(s: Status): string {
  const self = s.self;
  const head = self.network
    ? `${self.name}  ${self.meshIp ?? '-'}  network ${self.network.name} (${self.network.cidr})${self.admin ? '  admin' : ''}\n` +
      `public key ${self.publicKey}  interface ${self.interface}  port ${self.listenPort}` +
      (self.reflexive.length > 0 ? `  seen from outside as ${self.reflexive.join(', ')}` : '') +
      (self.exitNode ? `\nall traffic leaves through exit node ${self.exitNode}` : '')
    : `${self.name}: not a member of any network (meshd init, or meshd join <invite>)`;
  if (s.peers.length === 0) return head;
  const rows = [['NAME', 'MESH IP', 'ENDPOINT', 'PATH', 'HANDSHAKE', 'RX', 'TX', 'LATENCY', 'STATE']];
  for (const p of s.peers) {
    const path = p.path === 'relay' ? `relay ${p.relay ?? '?'}` : (p.path ?? '-');
    rows.push([p.name, p.meshIp, p.endpoint ?? '-', path, age(p.lastHandshake), bytes(p.rxBytes), bytes(p.txBytes),
      p.latencyMs === null ? '-' : `${p.latencyMs} ms`, (p.online ? 'online' : 'offline') + (p.leak ? ', NOT ENCRYPTED' : '')]);
  }
  const leaks = s.peers.filter((p) => p.leak).map((p) =>
    `WARNING: mesh traffic to ${p.name} (${p.meshIp}) ${p.leak}, not through ${self.interface}: it is not encrypted. ` +
    `Remove the route or address that captures it (ip route get ${p.meshIp}).`);
  return [head, table(rows), ...(leaks.length > 0 ? [leaks.join('\n')] : [])].join('\n\n');
}

export function statusCommand(): Command {
  return new Command('status')
    .description('this node and every member: address, endpoint, path, handshake, traffic, latency')
    .addOption(jsonOption())
    .action(async (_opts: object, cmd: Command) => {
      const s = await rpc(cmd, 'status', {});
      print(cmd, s, () => render(s));
    });
}
