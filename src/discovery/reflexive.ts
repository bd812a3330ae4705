// Reflexive endpoints: this member's WireGuard socket as others see it from outside. A NAT maps
// the socket to an address and port of its own; a member that learns that mapping and advertises
// it can be reached by members behind other NATs (both sides then send to each other's mapping,
// and each NAT lets the other in as the answer to what it sent: hole punching).
//
// The mapping is asked of members on public addresses (and of `--stun` servers) by STUN, from the
// WireGuard socket itself (paths.ts). Two askers at different addresses that see different
// mappings mean the NAT maps per destination ("hard", symmetric NAT): its mapping is of no use to
// a third member, and only a relay will do.
//
// Exported API:
//   interface StunClient { stun(to: Endpoint, timeoutMs?): Promise<Endpoint | null> }
//   interface ReflexiveReport { asked: { to, saw: string | null }[]; mapped: string[];
//                               behindNat: boolean | null; variesByDestination: boolean | null }
//   discoverReflexive(client, targets: Endpoint[], local: string[], opts?): Promise<ReflexiveReport>
//       asks every target at once (at most `max`, distinct addresses, default 3); once one has
//       answered, the rest get `graceMs` (500) more; `local` are our own endpoints ('ip:port'):
//       a mapping equal to one of them means no NAT in between
//   stunTargets(peerEndpoints: Endpoint[], servers: Endpoint[], max?): Endpoint[]
//       public peer endpoints first (one per address), then STUN servers
import { isIP } from 'node:net';
import { addrToString, formatEndpoint, type Endpoint } from '../wg/endpoint.js';
import { isPublicIp } from './addresses.js';

export interface StunClient {
  stun(to: Endpoint, timeoutMs?: number): Promise<Endpoint | null>;
}

export interface ReflexiveReport {
  /** Each target asked and the mapping it reported (null: no answer). */
  asked: { to: string; saw: string | null }[];
  /** Mappings that differ from our own endpoints: what to advertise. */
  mapped: string[];
  /** null: nobody answered. */
  behindNat: boolean | null;
  /** Two targets at different addresses saw different mappings; null: fewer than two answered. */
  variesByDestination: boolean | null;
}

export function stunTargets(peerEndpoints: readonly Endpoint[], servers: readonly Endpoint[], max = 3): Endpoint[] {
  const seen = new Set<string>();
  const out: Endpoint[] = [];
  for (const e of [...peerEndpoints.filter((p) => isPublicIp(addrToString(p.addr))), ...servers]) {
    const ip = addrToString(e.addr);
    if (seen.has(ip) || out.length >= max) continue;
    seen.add(ip);
    out.push(e);
  }
  return out;
}

export async function discoverReflexive(
  client: StunClient,
  targets: readonly Endpoint[],
  local: readonly string[],
  opts: { timeoutMs?: number; graceMs?: number } = {},
): Promise<ReflexiveReport> {
  // Once one target has answered, the others get `graceMs` more, not the whole timeout: a target
  // that cannot answer (an IPv6 member seen from a host that lost its IPv6) must not hold up a
  // member that has just moved to another network from telling everyone where it is now.
  const graceMs = opts.graceMs ?? 500;
  let startGrace = (): void => {};
  const grace = new Promise<null>((resolve) => {
    startGrace = () => {
      startGrace = () => {};
      setTimeout(() => resolve(null), graceMs);
    };
  });
  const answers = await Promise.all(targets.map(async (to) => {
    const asked = client.stun(to, opts.timeoutMs ?? 2000).then((saw) => {
      if (saw !== null) startGrace();
      return saw;
    });
    return { to, saw: await Promise.race([asked, grace]) };
  }));
  const asked = answers.map((a) => ({ to: formatEndpoint(a.to), saw: a.saw ? formatEndpoint(a.saw) : null }));
  const seen = answers.filter((a) => a.saw !== null);
  const ours = new Set(local);
  const mapped = [...new Set(seen.map((a) => formatEndpoint(a.saw!)))].filter((e) => !ours.has(e));
  // Compare what askers at different addresses of one family saw.
  let varies: boolean | null = null;
  for (const v4 of [true, false]) {
    const fam = seen.filter((a) => (isIP(addrToString(a.to.addr)) === 4) === v4);
    const byIp = new Map(fam.map((a) => [addrToString(a.to.addr), formatEndpoint(a.saw!)]));
    if (byIp.size < 2) continue;
    varies = (varies ?? false) || new Set(byIp.values()).size > 1;
  }
  return {
    asked,
    mapped,
    behindNat: seen.length === 0 ? null : seen.some((a) => !ours.has(formatEndpoint(a.saw!))),
    variesByDestination: varies,
  };
}
