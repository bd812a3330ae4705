// Plain WireGuard clients (`meshd client ...`): phones and laptops that run stock WireGuard, not
// meshd. Each is a ledger `device` hosted by one member (ledger.ts): the host has it as a WireGuard
// peer (its /32, no endpoint: the device dials in) and forwards between it and the mesh; every other
// member routes the device's /32 through the host. This module is the pure part: the wg-quick
// config a device gets, and the host endpoint it dials.
//
//   clientConfig({ address, privateKey | null, publicKey, dns, hostKey, endpoint, allowedIps }): string
//       privateKey null: a comment line takes its place (`--public-key`: the user has the key)
//   hostEndpoint(endpoints): string | null     the first public one, else the first one
//   PRIVATE_KEY_PLACEHOLDER                    the comment line that stands for a private key
import { parseEndpoint } from '../wg/endpoint.js';
import { isPublicIp } from '../discovery/addresses.js';

export const PRIVATE_KEY_PLACEHOLDER = '# PrivateKey = (the private key of this device: fill it in)';

export interface ClientConfigInput {
  /** The device's mesh address. */
  address: string;
  privateKey: string | null;
  /** The hosting member's mesh address: DNS for the device. */
  dns: string;
  /** The hosting member's WireGuard public key. */
  hostKey: string;
  endpoint: string;
  allowedIps: readonly string[];
}

export function clientConfig(c: ClientConfigInput): string {
  return [
    '[Interface]',
    c.privateKey === null ? PRIVATE_KEY_PLACEHOLDER : `PrivateKey = ${c.privateKey}`,
    `Address = ${c.address}/32`,
    `DNS = ${c.dns}`,
    '',
    '[Peer]',
    `PublicKey = ${c.hostKey}`,
    `Endpoint = ${c.endpoint}`,
    `AllowedIPs = ${c.allowedIps.join(', ')}`,
    'PersistentKeepalive = 25',
    '',
  ].join('\n');
}

/** Where a device dials its host: the first public endpoint of the host's record, else the first. */
export function hostEndpoint(endpoints: readonly string[]): string | null {
  const host = (e: string): string | null => {
    try {
      const text = e.startsWith('[') ? e.slice(1, e.indexOf(']')) : e.slice(0, e.lastIndexOf(':'));
      parseEndpoint(e);
      return text;
    } catch {
      return null;
    }
  };
  const usable = endpoints.filter((e) => host(e) !== null);
  return usable.find((e) => isPublicIp(host(e)!)) ?? usable[0] ?? null;
}
