// Which WireGuard peers this node wants, from the ledger: the decision the daemon takes after every
// ledger change, before reconcile.ts turns it into the smallest change to the engine. Pure: the
// ledger's members and devices, what the engine and the path finder know, and the clock come in;
// the peers, and the grace of members just kicked, come out.
//
//   - every other member with a record is a peer: its mesh address, its endpoints, and as routes
//     the subnet prefixes it holds (subnet-routes.ts), 0.0.0.0/0 if it is our exit node, and the
//     /32 of each plain WireGuard client it hosts (they are reached through it);
//   - each client hosted here is a peer with its /32 and no endpoint (it dials in); a key that is
//     also a member's (or our own) is left out: one WireGuard peer per key;
//   - a member this node has just kicked stays a peer for REVOKED_GRACE_MS (the revocation may
//     reach it only through the tunnel); only the kicker grants this.
//
//   desiredPeers(input: DesiredPeersInput): DesiredPeers
//   recentHandshake(lastHandshakeMs, now): boolean
import type { Device, Member } from '../discovery/ledger.js';
import type { Endpoint } from '../wg/endpoint.js';
import type { DesiredPeer } from './reconcile.js';

/**
 * A peer whose latest handshake is younger than this has a working endpoint: sessions are renewed
 * every 2 minutes (REKEY_AFTER_TIME) while persistent keepalives flow.
 */
export const WORKING_HANDSHAKE_MS = 180_000;

/**
 * How long a member this node just kicked stays a WireGuard peer (and a libp2p connection, sync.ts): for
 * the revocation to reach it, maybe only through the tunnel. It is cut off after that.
 */
export const REVOKED_GRACE_MS = 2_500;

/** How long a finished grace is remembered (so a late ledger change does not grant it again). */
const DEPARTED_MEMORY_MS = 60_000;

/** The session with a peer works: a handshake (epoch ms, 0 = never) within WORKING_HANDSHAKE_MS. */
export function recentHandshake(lastHandshakeMs: number, now: number): boolean {
  return lastHandshakeMs > 0 && now - lastHandshakeMs < WORKING_HANDSHAKE_MS;
}

export interface DesiredPeersInput {
  /** Our peer id. */
  self: string;
  /** Our WireGuard public key (base64). */
  selfWgKey: string;
  /** The ledger's members (ourselves among them). */
  members: readonly Member[];
  /** The ledger's plain WireGuard clients. */
  devices: readonly Device[];
  /** The subnet prefixes a member holds (subnet-routes.ts routesOf). */
  routesOf(peerId: string): readonly string[];
  /** The member our traffic leaves through, if it routes for the mesh now; else null. */
  exitNode: string | null;
  /** Latest handshake per WireGuard key (base64), epoch ms (0: never). */
  handshakes: ReadonlyMap<string, number>;
  /** The path finder's endpoint for a WireGuard key (base64), or null. */
  decided(wgPublicKey: string): Endpoint | null;
  now: number;
  /** The peers wanted at the previous change (keyed as the output). */
  last: ReadonlyMap<string, DesiredPeer>;
  /** Members kicked by us, until when they stay peers (epoch ms). */
  departing: ReadonlyMap<string, number>;
  /** Whether the ledger says this member was revoked. */
  revoked(peerId: string): boolean;
  /** Whether the revocation of this member that counts is one we signed. */
  revokedByUs(peerId: string): boolean;
}

export interface DesiredPeers {
  /** By member peer id, or `device:<event id>` for a client hosted here. */
  peers: Map<string, DesiredPeer>;
  /** The departing members to remember for the next change. */
  departing: Map<string, number>;
  /** A grace began: decide again this long from now (to drop the member when it ends). */
  recheckInMs: number | null;
}

export function desiredPeers(input: DesiredPeersInput): DesiredPeers {
  const { now } = input;
  const working = (key: string) => recentHandshake(input.handshakes.get(key) ?? 0, now);
  const peers = new Map<string, DesiredPeer>(input.members
    .filter((m) => m.peerId !== input.self && m.record)
    .map((m) => [m.peerId, {
      wgPublicKey: m.record!.wgPublicKey,
      meshIp: m.meshIp,
      routes: [
        ...input.routesOf(m.peerId),
        ...(input.exitNode === m.peerId ? ['0.0.0.0/0'] : []),
        // The plain WireGuard clients it hosts: reached through it.
        ...input.devices.filter((d) => d.host === m.peerId).map((d) => `${d.ip}/32`),
      ],
      endpoints: [...m.record!.endpoints],
      working: working(m.record!.wgPublicKey),
      decided: input.decided(m.record!.wgPublicKey),
    }]));
  // The clients hosted here: peers with their /32 and no endpoint (they dial in). A key that is
  // also a member's is left out (one WireGuard peer per key).
  const memberKeys = new Set([...peers.values()].map((d) => d.wgPublicKey));
  for (const d of input.devices) {
    if (d.host !== input.self || memberKeys.has(d.wgPublicKey) || d.wgPublicKey === input.selfWgKey) continue;
    peers.set(`device:${d.id}`, { wgPublicKey: d.wgPublicKey, meshIp: d.ip, routes: [], endpoints: [], working: working(d.wgPublicKey), decided: null });
  }
  // A member this node has just kicked keeps its WireGuard peer for REVOKED_GRACE_MS: the
  // revocation may travel to it only through the tunnel (two members behind NATs), and it must
  // learn it. Only the kicker grants this: a member that learns of a kick later (back from
  // being offline, its stored ledger stale) drops the peer at once.
  const departing = new Map(input.departing);
  let recheckInMs: number | null = null;
  for (const [peerId, d] of input.last) {
    if (peers.has(peerId) || !input.revoked(peerId)) continue;
    let until = departing.get(peerId);
    if (until === undefined && !input.revokedByUs(peerId)) continue;
    if (until === undefined) {
      until = now + REVOKED_GRACE_MS;
      departing.set(peerId, until);
      recheckInMs = REVOKED_GRACE_MS;
    }
    if (now < until) peers.set(peerId, d);
  }
  for (const [peerId, until] of departing) if (now >= until + DEPARTED_MEMORY_MS) departing.delete(peerId);
  return { peers, departing, recheckInMs };
}
