// The device's configuration surface, in the shape of the WireGuard cross-platform API: what a
// `get` reports and what a `set` asks for. The UAPI text protocol (uapi.ts) and the mesh daemon
// both speak to the engine through these types.
import type { Endpoint } from './endpoint.js';
import type { Prefix } from './prefix.js';

export interface PeerSnapshot {
  publicKey: Buffer;
  presharedKey: Buffer | null;
  endpoint: Endpoint | null;
  /** Milliseconds since the UNIX epoch of the last completed handshake; 0 = never. */
  lastHandshakeMs: number;
  rxBytes: number;
  txBytes: number;
  persistentKeepalive: number; // seconds, 0 = off
  allowedIps: Prefix[];
}

export interface DeviceSnapshot {
  privateKey: Buffer | null;
  listenPort: number;
  fwmark: number;
  peers: PeerSnapshot[];
}

export interface AllowedIpChange {
  prefix: Prefix;
  remove: boolean;
}

export interface PeerSet {
  publicKey: Buffer;
  remove: boolean;
  updateOnly: boolean;
  presharedKey?: Buffer | null; // null = zero key = none
  endpoint?: Endpoint;
  persistentKeepalive?: number;
  replaceAllowedIps: boolean;
  allowedIps: AllowedIpChange[];
}

export interface DeviceSet {
  privateKey?: Buffer | null; // null = remove
  listenPort?: number;
  fwmark?: number;
  replacePeers: boolean;
  peers: PeerSet[];
}

/** What a configurable device offers; errors are thrown as ConfigError with a POSIX errno. */
export interface Configurable {
  snapshot(nowMs?: number): DeviceSnapshot;
  /** May be asynchronous (a new listen port means a new socket); callers await it. */
  apply(change: DeviceSet): void | Promise<void>;
}

export class ConfigError extends Error {
  constructor(readonly errno: number, message: string) {
    super(message);
  }
}
export const EINVAL = 22;
export const EADDRINUSE = 98;
export const EPROTO = 71;
export const EOPNOTSUPP = 95;
