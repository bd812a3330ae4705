// The WireGuard cross-platform userspace API as text (wireguard.com/xplatform): what `wg` sends and
// expects over /var/run/wireguard/<if>.sock. Pure functions between that text and the device's
// configuration types (config.ts); the socket itself is uapi-server.ts.
//
// What is accepted and refused follows wireguard-go (device/uapi.go); what is written follows what
// wireguard-tools (src/ipc-uapi.h) can read back. Parsing is all-or-nothing: a request with one bad
// line changes nothing, where wireguard-go applies the lines before the bad one.
import { ConfigError, EINVAL, type DeviceSet, type DeviceSnapshot, type PeerSet } from './config.js';
import { formatEndpoint, parseEndpoint } from './endpoint.js';
import { formatPrefix, parsePrefix, type Prefix } from './prefix.js';

const KEY_LEN = 32;
const ZERO_KEY = Buffer.alloc(KEY_LEN);

// ---- get ------------------------------------------------------------------------------------------

/** A non-negative integer as decimal digits; wg's parser takes nothing else (no sign, no exponent). */
function digits(n: number): string {
  return Number.isFinite(n) && n > 0 ? BigInt(Math.floor(n)).toString() : '0';
}

/**
 * The reply to `get=1`: device lines, then each peer from its `public_key` line, then `errno=0`
 * and the blank line that ends the reply. Keys are lowercase hex, never base64.
 */
export function formatGet(s: DeviceSnapshot): string {
  const lines: string[] = [];
  // wg derives the public key from this line; sending only a public key leaves `wg show` blank.
  if (s.privateKey && !s.privateKey.equals(ZERO_KEY)) lines.push(`private_key=${s.privateKey.toString('hex')}`);
  if (s.listenPort) lines.push(`listen_port=${digits(s.listenPort)}`);
  if (s.fwmark) lines.push(`fwmark=${digits(s.fwmark)}`);
  for (const p of s.peers) {
    lines.push(`public_key=${p.publicKey.toString('hex')}`);
    lines.push(`preshared_key=${(p.presharedKey ?? ZERO_KEY).toString('hex')}`);
    lines.push('protocol_version=1');
    if (p.endpoint) lines.push(`endpoint=${formatEndpoint(p.endpoint)}`);
    // A point in time since the UNIX epoch, not an age: wg computes "N seconds ago" itself, and
    // prints 55 years for an implementation that sends the age.
    const [sec, nsec] = epochParts(p.lastHandshakeMs);
    lines.push(`last_handshake_time_sec=${sec}`);
    lines.push(`last_handshake_time_nsec=${nsec}`);
    lines.push(`tx_bytes=${digits(p.txBytes)}`);
    lines.push(`rx_bytes=${digits(p.rxBytes)}`);
    lines.push(`persistent_keepalive_interval=${digits(p.persistentKeepalive)}`);
    for (const a of p.allowedIps) lines.push(`allowed_ip=${formatPrefix(a)}`);
  }
  lines.push('errno=0');
  return `${lines.join('\n')}\n\n`;
}

/** Milliseconds since the epoch as whole seconds and the nanoseconds past them; 0 stays 0 (never). */
function epochParts(ms: number): [string, string] {
  if (!Number.isFinite(ms) || ms <= 0) return ['0', '0'];
  const sec = Math.floor(ms / 1000);
  const nsec = Math.min(999_999_999, Math.round((ms - sec * 1000) * 1e6));
  return [String(sec), String(nsec)];
}

/**
 * The reply to a failed request. The sign differs by operation because wireguard-tools reads the two
 * replies differently: after a set it scans `errno=%d` and negates it, so the value must be negative
 * (as wireguard-go sends it) for `wg` to print "Invalid argument" rather than "Unknown error -22";
 * after a get it accepts digits only and negates them itself, so there the value must be positive.
 */
export function formatErrno(errno: number, op: 'get' | 'set'): string {
  const n = Math.abs(Math.trunc(errno)) || 0;
  return `errno=${op === 'set' && n !== 0 ? -n : n}\n\n`;
}

// ---- set ------------------------------------------------------------------------------------------

// Keys whose values are secrets: never repeated in an error message, which may reach a log.
const SECRET = new Set(['private_key', 'preshared_key']);

class LineError extends Error {}

function hexKey(value: string): Buffer {
  // Exactly what Go's hex.DecodeString into a 32-byte key takes: 64 hex digits, either case.
  if (!/^[0-9a-fA-F]{64}$/.test(value)) throw new LineError(`must be ${KEY_LEN * 2} hex digits, got ${value.length} characters`);
  return Buffer.from(value, 'hex');
}

function uint(value: string, max: number): number {
  // strconv.ParseUint: decimal digits only (leading zeros allowed), no sign, no spaces.
  if (!/^\d+$/.test(value) || Number(value) > max) throw new LineError(`must be a whole number from 0 to ${max}`);
  return Number(value);
}

function onlyTrue(value: string): true {
  if (value !== 'true') throw new LineError('only takes the value "true"');
  return true;
}

/** netip.ParsePrefix: an address, a slash and a length without leading zeros; no zone, no bare address. */
function prefix(value: string): Prefix {
  if (!/^[0-9a-fA-F:.]+\/(0|[1-9][0-9]{0,2})$/.test(value)) throw new LineError('must be an address/length prefix such as 10.0.0.0/24 or fd00::/64');
  try {
    return parsePrefix(value);
  } catch (err) {
    throw new LineError((err as Error).message);
  }
}

function endpoint(value: string): NonNullable<PeerSet['endpoint']> {
  // netip.ParseAddrPort: brackets are for IPv6 only.
  if (/^\[[^:\]]*\]/.test(value)) throw new LineError('square brackets are for IPv6 addresses only');
  try {
    return parseEndpoint(value);
  } catch (err) {
    throw new LineError(`${(err as Error).message} (expected ip:port or [ipv6]:port)`);
  }
}

function newPeer(publicKey: Buffer): PeerSet {
  return { publicKey, remove: false, updateOnly: false, replaceAllowedIps: false, allowedIps: [] };
}

const DEVICE_KEYS = new Set(['private_key', 'listen_port', 'fwmark', 'replace_peers']);
const PEER_KEYS = new Set([
  'remove', 'update_only', 'preshared_key', 'endpoint', 'persistent_keepalive_interval',
  'replace_allowed_ips', 'allowed_ip', 'protocol_version',
]);

/**
 * Parses the lines of a `set=1` request into one DeviceSet, or throws ConfigError(EINVAL) naming
 * the first bad line. The text may start with the `set=1` line and may end with the blank line.
 *
 * Semantics carried into the DeviceSet (the Configurable applies them in order):
 * - a zero private_key removes the key (privateKey: null); a zero preshared_key means none (null);
 * - replace_allowed_ips=true drops the allowed_ip lines of the same peer before it, as wireguard-go
 *   clears the table at that line; `allowed_ip=-prefix` removes one prefix (wireguard-go accepts it;
 *   wireguard-tools 1.0.20210914 never sends it);
 * - after remove=true, the peer's further lines are checked but not recorded (wireguard-go ignores them);
 * - the same public key may appear more than once: each is a PeerSet, applied in order.
 * Left to the Configurable: ignoring a peer whose key is the device's own (as of the private key this
 * same set may install), and update_only (skip the peer if it does not exist yet).
 */
export function parseSet(text: string): DeviceSet {
  const set: DeviceSet = { replacePeers: false, peers: [] };
  const lines = text.split('\n');
  // The request ends at its blank line; only trailing empties (the terminator itself) may follow.
  while (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  let peer: PeerSet | null = null;
  let ignored = false; // the current peer was removed: its remaining lines are checked, not kept
  for (let i = lines[0] === 'set=1' ? 1 : 0; i < lines.length; i++) {
    const line = lines[i];
    const eq = line.indexOf('=');
    const k = eq < 0 ? line : line.slice(0, eq);
    const v = eq < 0 ? '' : line.slice(eq + 1);
    try {
      if (line === '') throw new LineError('blank line inside a request (a blank line ends it)');
      if (eq < 0) throw new LineError('not a key=value line');
      if (eq === 0) throw new LineError('empty key');
      if (k === 'public_key') {
        peer = newPeer(hexKey(v));
        ignored = false;
        set.peers.push(peer);
      } else if (peer === null) {
        deviceLine(set, k, v);
      } else {
        ignored = peerLine(peer, ignored, k, v);
      }
    } catch (err) {
      if (!(err instanceof LineError)) throw err;
      const shown = SECRET.has(k) ? `${k}=…` : line.length > 100 ? `${line.slice(0, 100)}…` : line;
      throw new ConfigError(EINVAL, `set line ${i + 1} ${JSON.stringify(shown)}: ${err.message}`);
    }
  }
  return set;
}

function deviceLine(set: DeviceSet, k: string, v: string): void {
  switch (k) {
    case 'private_key': {
      const key = hexKey(v);
      set.privateKey = key.equals(ZERO_KEY) ? null : key;
      return;
    }
    case 'listen_port': set.listenPort = uint(v, 0xffff); return;
    case 'fwmark': set.fwmark = uint(v, 0xffffffff); return;
    case 'replace_peers': set.replacePeers = onlyTrue(v); return;
  }
  if (PEER_KEYS.has(k)) throw new LineError(`${k} is a peer key: it must follow a public_key line`);
  throw new LineError('unknown device key');
}

/** Applies one peer line to p; returns whether the peer's further lines are to be ignored. */
function peerLine(p: PeerSet, ignored: boolean, k: string, v: string): boolean {
  switch (k) {
    case 'remove':
      onlyTrue(v);
      if (!ignored) p.remove = true;
      return true;
    case 'update_only':
      onlyTrue(v);
      if (!ignored) p.updateOnly = true;
      return ignored;
    case 'preshared_key': {
      const key = hexKey(v);
      if (!ignored) p.presharedKey = key.equals(ZERO_KEY) ? null : key;
      return ignored;
    }
    case 'endpoint': {
      const e = endpoint(v);
      if (!ignored) p.endpoint = e;
      return ignored;
    }
    case 'persistent_keepalive_interval': {
      const secs = uint(v, 0xffff);
      if (!ignored) p.persistentKeepalive = secs;
      return ignored;
    }
    case 'replace_allowed_ips':
      onlyTrue(v);
      if (!ignored) {
        p.replaceAllowedIps = true;
        p.allowedIps = [];
      }
      return ignored;
    case 'allowed_ip': {
      const remove = v.startsWith('-');
      const pfx = prefix(remove ? v.slice(1) : v);
      if (!ignored) p.allowedIps.push({ prefix: pfx, remove });
      return ignored;
    }
    case 'protocol_version':
      if (v !== '1') throw new LineError('only protocol_version=1 exists');
      return ignored;
  }
  if (DEVICE_KEYS.has(k)) throw new LineError(`${k} is a device key: it must come before the first public_key line`);
  throw new LineError('unknown peer key');
}
