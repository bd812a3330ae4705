// The WireGuard cross-platform userspace API as text (wireguard.com/xplatform): what `wg` sends and
// expects over /var/run/wireguard/<if>.sock. Pure functions between text and the device's
// configuration types; the socket is uapi-server.ts.
import { ConfigError, EINVAL, type AllowedIpChange, type DeviceSet, type DeviceSnapshot, type PeerSet } from './config.js';
import { formatEndpoint, parseEndpoint } from './endpoint.js';
import { formatPrefix, parsePrefix } from './prefix.js';

const ZERO_KEY = Buffer.alloc(32);

/** The reply to `get=1`: key=value lines, errno=0 and the blank line. Keys are lowercase hex. */
export function formatGet(s: DeviceSnapshot): string {
  const lines: string[] = [];
  if (s.privateKey) lines.push(`private_key=${s.privateKey.toString('hex')}`);
  if (s.listenPort) lines.push(`listen_port=${s.listenPort}`);
  if (s.fwmark) lines.push(`fwmark=${s.fwmark}`);
  for (const p of s.peers) {
    lines.push(`public_key=${p.publicKey.toString('hex')}`);
    lines.push(`preshared_key=${(p.presharedKey ?? ZERO_KEY).toString('hex')}`);
    lines.push('protocol_version=1');
    if (p.endpoint) lines.push(`endpoint=${formatEndpoint(p.endpoint)}`);
    // Epoch time, not an age: wg computes "N seconds ago" itself.
    const sec = Math.floor(p.lastHandshakeMs / 1000);
    lines.push(`last_handshake_time_sec=${sec}`);
    lines.push(`last_handshake_time_nsec=${Math.round((p.lastHandshakeMs - sec * 1000) * 1e6)}`);
    lines.push(`tx_bytes=${p.txBytes}`);
    lines.push(`rx_bytes=${p.rxBytes}`);
    lines.push(`persistent_keepalive_interval=${p.persistentKeepalive}`);
    for (const a of p.allowedIps) lines.push(`allowed_ip=${formatPrefix(a)}`);
  }
  lines.push('errno=0');
  return `${lines.join('\n')}\n\n`;
}

function key(value: string, what: string): Buffer {
  if (!/^[0-9a-f]{64}$/i.test(value)) throw new ConfigError(EINVAL, `${what} must be 64 hex digits`);
  return Buffer.from(value, 'hex');
}

function uint(value: string, what: string, max: number): number {
  if (!/^\d+$/.test(value) || Number(value) > max) throw new ConfigError(EINVAL, `${what} must be a number from 0 to ${max}`);
  return Number(value);
}

function bool(value: string, what: string): boolean {
  if (value !== 'true') throw new ConfigError(EINVAL, `${what} only takes true`);
  return true;
}

/** Parses the body of a `set=1` request (the lines after it, without the blank line). */
export function parseSet(text: string): DeviceSet {
  const set: DeviceSet = { replacePeers: false, peers: [] };
  let peer: PeerSet | null = null;
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const eq = line.indexOf('=');
    if (eq <= 0) throw new ConfigError(EINVAL, `malformed line: ${line.slice(0, 80)}`);
    const k = line.slice(0, eq);
    const v = line.slice(eq + 1);
    if (k === 'public_key') {
      peer = { publicKey: key(v, 'public_key'), remove: false, updateOnly: false, replaceAllowedIps: false, allowedIps: [] };
      set.peers.push(peer);
      continue;
    }
    if (peer === null) {
      switch (k) {
        case 'private_key': {
          const pk = key(v, 'private_key');
          set.privateKey = pk.equals(ZERO_KEY) ? null : pk;
          break;
        }
        case 'listen_port': set.listenPort = uint(v, 'listen_port', 65535); break;
        case 'fwmark': set.fwmark = uint(v, 'fwmark', 0xffffffff); break;
        case 'replace_peers': set.replacePeers = bool(v, 'replace_peers'); break;
        default: throw new ConfigError(EINVAL, `unknown device key: ${k}`);
      }
      continue;
    }
    switch (k) {
      case 'remove': peer.remove = bool(v, 'remove'); break;
      case 'update_only': peer.updateOnly = bool(v, 'update_only'); break;
      case 'preshared_key': {
        const psk = key(v, 'preshared_key');
        peer.presharedKey = psk.equals(ZERO_KEY) ? null : psk;
        break;
      }
      case 'endpoint':
        try {
          peer.endpoint = parseEndpoint(v);
        } catch (err) {
          throw new ConfigError(EINVAL, (err as Error).message);
        }
        break;
      case 'persistent_keepalive_interval': peer.persistentKeepalive = uint(v, k, 65535); break;
      case 'replace_allowed_ips': peer.replaceAllowedIps = bool(v, k); break;
      case 'allowed_ip': {
        const remove = v.startsWith('-');
        let change: AllowedIpChange;
        try {
          change = { prefix: parsePrefix(remove ? v.slice(1) : v), remove };
        } catch (err) {
          throw new ConfigError(EINVAL, (err as Error).message);
        }
        peer.allowedIps.push(change);
        break;
      }
      case 'protocol_version':
        if (v !== '1') throw new ConfigError(EINVAL, `unsupported protocol_version ${v}`);
        break;
      default: throw new ConfigError(EINVAL, `unknown peer key: ${k}`);
    }
  }
  return set;
}

/** The reply to a request that failed; errno is positive, as `wg` parses it. */
export function formatErrno(errno: number): string {
  return `errno=${Math.abs(errno)}\n\n`;
}
