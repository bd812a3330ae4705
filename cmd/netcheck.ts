// `meshd netcheck`: the network as this node sees it: does UDP get out, where members see its
// WireGuard socket, whether its NAT maps per destination, which relays answer and how fast.
import { Command } from 'commander';
import type { NetcheckReport } from '../src/daemon/daemon.js';
import { jsonOption, print, rpc } from './common.js';

export function render(r: NetcheckReport): string {
  const lines: string[] = [];
  lines.push(`UDP: ${r.udp === null ? 'unknown (no member on a public address to ask, and no --stun server)' : r.udp ? 'works' : 'no answer from anyone asked (blocked?)'}`);
  for (const a of r.asked) lines.push(`  asked ${a.to}: ${a.saw === null ? 'no answer' : `sees us at ${a.saw}`}`);
  lines.push(`Behind NAT: ${r.behindNat === null ? 'unknown' : r.behindNat ? `yes, seen from outside as ${r.reflexive.join(', ')}` : 'no (members see our own address)'}`);
  lines.push(`Mapping varies by destination: ${r.variesByDestination === null ? 'unknown (needs answers from two members at different addresses)' : r.variesByDestination ? 'yes (a symmetric NAT: members behind NAT reach this node only through a relay)' : 'no'}`);
  lines.push(`Relays:${r.relays.length === 0 ? ' none reachable directly' : ''}`);
  for (const x of r.relays) lines.push(`  ${x.name} ${x.endpoint ?? '-'}: ${x.latencyMs === null ? 'no answer' : `${x.latencyMs} ms`}`);
  lines.push(`This node relays for others: ${r.relaying ? 'yes' : 'no (--no-relay)'}`);
  const c = r.counters;
  lines.push(`Relayed: ${c.relaySent} sent, ${c.relayDelivered} received; forwarded ${c.relayForwarded} for others, refused ${c.relayRefused + c.relayNoAllocation + c.relayRateLimited}`);
  lines.push(`Refused from strangers: ${c.probesRefused} probes, ${c.stunUnmatched} STUN answers, ${c.stunRateLimited} STUN requests over the limit`);
  return lines.join('\n');
}

export function netcheckCommand(): Command {
  return new Command('netcheck')
    .description('UDP, NAT mapping (and whether it varies by destination), reachable relays and their latency')
    .addOption(jsonOption())
    .action(async (_opts: object, cmd: Command) => {
      const r = await rpc(cmd, 'netcheck', {}, 20_000);
      print(cmd, r, () => render(r));
    });
}
