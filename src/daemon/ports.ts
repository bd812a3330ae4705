// The daemon's ports, checked when it starts: WireGuard's UDP --listen-port (the engine binds it
// at once) and libp2p's TCP --p2p-port (bound only once the node is in a network: after init, join,
// or at start when it already is one). A probe bind of each, on the wildcard address as the node
// will bind it, dual-stack, so a taken port is one line naming the option to change before
// anything is set up, not a failure much later (libp2p) or an engine error without the option.
import { createSocket } from 'node:dgram';
import { createServer } from 'node:net';

export interface DaemonPorts {
  /** WireGuard's UDP port (0: any). */
  listenPort: number;
  /** libp2p's TCP port (0: any). */
  p2pPort: number;
}

/** A port the daemon cannot have: code EADDRINUSE or EACCES, the message one line for a person. */
export class PortError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
    this.name = 'PortError';
  }
}

type Probe = (port: number, host: string, ipv6Only: boolean) => Promise<void>;

const probeUdp: Probe = (port, host, ipv6Only) => new Promise((resolve, reject) => {
  const sock = createSocket({ type: host.includes(':') ? 'udp6' : 'udp4', ipv6Only });
  sock.once('error', (err) => { sock.close(); reject(err); });
  sock.bind({ port, address: host, exclusive: true }, () => sock.close(() => resolve()));
});

const probeTcp: Probe = (port, host, ipv6Only) => new Promise((resolve, reject) => {
  const server = createServer();
  server.once('error', reject);
  server.listen({ port, host, ipv6Only, exclusive: true }, () => server.close(() => resolve()));
});

/** Binds the wildcard dual-stack ([::]), or 0.0.0.0 on a host without IPv6. */
async function probe(bind: Probe, port: number): Promise<void> {
  try {
    await bind(port, '::', false);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EAFNOSUPPORT' && code !== 'EADDRNOTAVAIL') throw err;
    await bind(port, '0.0.0.0', false);
  }
}

function explain(err: unknown, proto: 'UDP' | 'TCP', port: number, what: string, option: string): Error {
  const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
  if (code === 'EADDRINUSE') {
    return new PortError(code, `${proto} port ${port} is in use (${what}): another program (another meshd daemon?) has it; stop it, or start meshd daemon with another ${option}`);
  }
  if (code === 'EACCES') {
    return new PortError(code, `${proto} port ${port} cannot be bound (${what}, permission denied): run meshd as root or pick another ${option}`);
  }
  return new PortError(code, `${proto} port ${port} cannot be bound (${what}): ${(err as Error).message}; pick another ${option}`);
}

/** Resolves when both ports are free to bind; rejects with a PortError naming the option otherwise. */
export async function checkPorts(ports: DaemonPorts): Promise<void> {
  if (ports.listenPort !== 0) {
    await probe(probeUdp, ports.listenPort).catch((err) => { throw explain(err, 'UDP', ports.listenPort, 'WireGuard', '--listen-port'); });
  }
  if (ports.p2pPort !== 0) {
    await probe(probeTcp, ports.p2pPort).catch((err) => { throw explain(err, 'TCP', ports.p2pPort, 'libp2p', '--p2p-port'); });
  }
}
