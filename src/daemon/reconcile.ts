// The reconciler: turns "members I know and trust" into "WireGuard peers I program". Pure: it
// compares the desired peer set with the device's snapshot and returns the smallest DeviceSet that
// makes them equal, so the daemon can run it after every ledger change without churning sessions.
import type { DeviceSet, DeviceSnapshot, PeerSet } from '../wg/config.js';
import { fromBase64 } from '../wg/crypto.js';
import { formatEndpoint, parseEndpoint, type Endpoint } from '../wg/endpoint.js';
import { formatPrefix, parsePrefix } from '../wg/prefix.js';

/** A member as the reconciler needs it. */
export interface DesiredPeer {
  wgPublicKey: string; // base64
  meshIp: string;
  /** Extra prefixes routed to this member (subnet routes, later). */
  routes?: string[];
  /** UDP endpoint candidates, in the member's order (rank reorders them). */
  endpoints: string[];
  /**
   * The peer's current endpoint carries handshakes: keep it even if the member does not advertise
   * it (the engine roamed there after an authenticated packet, e.g. through a NAT).
   */
  working?: boolean;
  /** The path finder's choice (a probed direct endpoint, or a relay's virtual one): it wins over the candidates, not over a working endpoint. */
  decided?: Endpoint | null;
}

export interface ReconcileOptions {
  /** Seconds (0: off), or per peer from the endpoint it will have (null: none yet). */
  persistentKeepalive: number | ((endpoint: Endpoint | null) => number);
  /** Prefer candidates for which this returns a lower number (e.g. same subnet as us). */
  rank?: (endpoint: Endpoint) => number;
}

/**
 * A working endpoint stays (roaming and NAT mappings intact). Otherwise the best-ranked candidate;
 * the current one if it is among the best (no churn), so a better candidate the member advertises
 * later (its reflexive endpoint, learnt after it joined) replaces one that never worked.
 */
function chooseEndpoint(candidates: Endpoint[], current: Endpoint | null, rank: (e: Endpoint) => number, working: boolean): Endpoint | null {
  if (candidates.length === 0 || (current && working)) return current;
  const best = Math.min(...candidates.map(rank));
  if (current && candidates.some((c) => rank(c) === best && formatEndpoint(c) === formatEndpoint(current))) return current;
  return candidates.find((c) => rank(c) === best)!;
}

export function reconcile(desired: DesiredPeer[], snapshot: DeviceSnapshot, opts: ReconcileOptions): DeviceSet {
  const rank = opts.rank ?? (() => 0);
  const current = new Map(snapshot.peers.map((p) => [p.publicKey.toString('base64'), p]));
  const peers: PeerSet[] = [];
  const wanted = new Set<string>();

  for (const d of desired) {
    let publicKey: Buffer;
    try {
      publicKey = fromBase64(d.wgPublicKey);
    } catch {
      continue; // a record we cannot use is skipped, never fatal
    }
    wanted.add(d.wgPublicKey);
    const have = current.get(d.wgPublicKey);
    const candidates = d.endpoints.flatMap((e) => {
      try {
        return [parseEndpoint(e)];
      } catch {
        return [];
      }
    });
    const endpoint = d.decided && !d.working ? d.decided : chooseEndpoint(candidates, have?.endpoint ?? null, rank, d.working ?? false);
    const prefixes = [`${d.meshIp}/32`, ...(d.routes ?? [])].map((p) => formatPrefix(parsePrefix(p)));
    const haveIps = new Set((have?.allowedIps ?? []).map(formatPrefix));
    const ipsChanged = !have || haveIps.size !== prefixes.length || prefixes.some((p) => !haveIps.has(p));
    const endpointChanged = endpoint !== null && (!have?.endpoint || formatEndpoint(have.endpoint) !== formatEndpoint(endpoint));
    const keepalive = typeof opts.persistentKeepalive === 'function' ? opts.persistentKeepalive(endpoint ?? have?.endpoint ?? null) : opts.persistentKeepalive;
    const keepaliveChanged = !have || have.persistentKeepalive !== keepalive;
    if (!ipsChanged && !endpointChanged && !keepaliveChanged) continue;
    peers.push({
      publicKey,
      remove: false,
      updateOnly: false,
      endpoint: endpointChanged ? endpoint! : undefined,
      persistentKeepalive: keepaliveChanged ? keepalive : undefined,
      replaceAllowedIps: ipsChanged,
      allowedIps: ipsChanged ? prefixes.map((p) => ({ prefix: parsePrefix(p), remove: false })) : [],
    });
  }
  for (const [key, p] of current) {
    if (!wanted.has(key)) {
      peers.push({ publicKey: p.publicKey, remove: true, updateOnly: false, replaceAllowedIps: false, allowedIps: [] });
    }
  }
  return { replacePeers: false, peers };
}
