// Which of a member's advertised UDP endpoints to try first. A member advertises every address of
// every interface it has; from here some are reachable and some are not (another LAN, a container
// bridge). Until endpoint probing arrives with NAT traversal, the order is a guess made from our
// own addresses:
//
//   0  on a subnet one of our interfaces is on (a LAN we share)
//   1  a public address of a family we have
//   2  a private one (RFC 1918, CGNAT, ULA) of a family we have: someone else's LAN, maybe
//   3  a family we have no address in: unreachable
//
// Lower is better; ties keep the member's own order (Array.prototype.sort is stable).
import { addrFromString, isV4Mapped, type Endpoint } from '../wg/endpoint.js';
import { maskAddr } from '../wg/prefix.js';
import { isLinkLocal, type LocalAddress } from './kernel.js';

export function endpointRank(local: readonly LocalAddress[]): (e: Endpoint) => number {
  const subnets = local
    .filter((a) => !isLinkLocal(a))
    .map((a) => {
      const addr = addrFromString(a.address);
      const bits = a.family === 'IPv4' ? 96 + a.prefixlen : a.prefixlen;
      return { net: maskAddr(Buffer.from(addr), bits), bits, v4: a.family === 'IPv4' };
    });
  const haveV4 = subnets.some((s) => s.v4);
  const haveV6 = subnets.some((s) => !s.v4);
  return (e: Endpoint) => {
    const v4 = isV4Mapped(e.addr);
    if (v4 ? !haveV4 : !haveV6) return 3;
    if (subnets.some((s) => s.v4 === v4 && maskAddr(Buffer.from(e.addr), s.bits).equals(s.net))) return 0;
    return isPrivate(e.addr, v4) ? 2 : 1;
  };
}

/** RFC 1918, CGNAT (100.64/10), link-local and loopback for IPv4; ULA, link-local, loopback for IPv6. */
function isPrivate(addr: Buffer, v4: boolean): boolean {
  if (v4) {
    const [a, b] = [addr[12], addr[13]];
    return a === 10 || a === 127 || (a === 172 && b >= 16 && b < 32) || (a === 192 && b === 168) ||
      (a === 100 && b >= 64 && b < 128) || (a === 169 && b === 254);
  }
  return (addr[0] & 0xfe) === 0xfc || (addr[0] === 0xfe && (addr[1] & 0xc0) === 0x80) || addr.equals(LOOPBACK6);
}

const LOOPBACK6 = addrFromString('::1');
