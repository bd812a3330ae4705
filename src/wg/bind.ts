// The UDP side, named after wireguard-go's conn.Bind: receives datagrams into a batch (each at
// offset 0 of its slot, source in addr/port as 16 bytes, IPv4 as ::ffff:a.b.c.d) and sends
// batches to each slot's addr/port. NativeBind uses recvmmsg/sendmmsg through the addon;
// DgramBind is the pure-Node reference and fallback. Neither lets a UDP error (an ICMP port
// unreachable from a vanished peer) stop receiving or crash the process.
import { createSocket, type Socket } from 'node:dgram';
import { BATCH_SIZE, PacketBatch, SLOT_SIZE } from './batch.js';
import { addrFromString, addrToString, isV4Mapped } from './endpoint.js';
import { native, type Poller, type UdpSocket } from './native.js';

export interface Bind {
  /** The bound port: the real one when opened with port 0. */
  readonly port: number;
  /** Delivers received batches synchronously; the batch object is reused between calls. */
  start(onBatch: (batch: PacketBatch) => void): void;
  /** Sends each slot i < batch.count with length > 0; undeliverable datagrams are dropped. */
  send(batch: PacketBatch): void;
  /** SO_MARK (wg's fwmark) on the socket; only NativeBind has it. Throws on failure. */
  setMark?(mark: number): void;
  close(): void;
}

/**
 * Opens a socket on a port (0: any); the engine calls it at start and on every new listen port.
 * It is passed in (EngineOptions.bind) as wireguard-go's device takes a conn.Bind: the path
 * layer beneath the device (STUN, later relays) wraps the real socket this way, and unit tests
 * pass in-memory binds.
 */
export type BindFactory = (port: number) => Promise<Bind>;

/** The real socket: recvmmsg/sendmmsg through the addon, or node dgram. */
export function udpBindFactory(kind: 'native' | 'dgram'): BindFactory {
  return (port) => openBind(port, kind);
}

/** Read rounds per wakeup: enough to drain a burst, few enough that the TUN and timers get turns. */
const MAX_ROUNDS = 16;

export class NativeBind implements Bind {
  private readonly batch = new PacketBatch(BATCH_SIZE);
  private poller: Poller | null = null;
  private closed = false;

  constructor(private readonly socket: UdpSocket) {}

  get port(): number {
    return this.socket.port;
  }

  start(onBatch: (batch: PacketBatch) => void): void {
    if (this.poller || this.closed) throw new Error('NativeBind: already started or closed');
    const b = this.batch;
    const s = this.socket;
    this.poller = new (native().Poller)(s.fd, () => {
      for (let round = 0; round < MAX_ROUNDS && !this.closed; round++) {
        const n = s.recv(b.data, SLOT_SIZE, b.offset, b.length, b.addr, b.port);
        if (n < 0) continue; // a queued ICMP error, consumed by that call: read on
        if (n === 0) return;
        b.count = n;
        onBatch(b);
        if (n < b.capacity) return;
      }
    });
    this.poller.start();
  }

  send(batch: PacketBatch): void {
    if (!this.closed) this.socket.send(batch.data, SLOT_SIZE, batch.offset, batch.length, batch.addr, batch.port, batch.count);
  }

  setMark(mark: number): void {
    const r = this.socket.setMark(mark);
    if (r < 0) throw Object.assign(new Error(`cannot set fwmark ${mark} on the UDP socket (errno ${-r})`), { errno: -r });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.poller?.close(); // stops watching before the fd goes away
    this.socket.close();
  }
}

export class DgramBind implements Bind {
  private readonly batch = new PacketBatch(1);
  private closed = false;

  constructor(private readonly socket: Socket, readonly port: number, private readonly v6: boolean) {
    // An ICMP error must never take the process down (datapath.md pitfall 3); losing a datagram
    // to one is what UDP promises anyway.
    socket.on('error', () => {});
  }

  start(onBatch: (batch: PacketBatch) => void): void {
    const b = this.batch;
    this.socket.on('message', (msg, rinfo) => {
      if (msg.length > SLOT_SIZE) return;
      msg.copy(b.data, 0);
      b.offset[0] = 0;
      b.length[0] = msg.length;
      // "::ffff:1.2.3.4" on the dual-stack socket, "1.2.3.4" on udp4, "fe80::1%eth0" link-local
      addrFromString(rinfo.address.replace(/%.*$/, '')).copy(b.addr, 0);
      b.port[0] = rinfo.port;
      b.count = 1;
      onBatch(b);
    });
  }

  send(batch: PacketBatch): void {
    if (this.closed) return;
    for (let i = 0; i < batch.count; i++) {
      if (batch.length[i] <= 0) continue;
      const at = i * 16;
      const mapped = isV4Mapped(batch.addr, at);
      if (!mapped && !this.v6) continue; // an IPv4-only host cannot reach IPv6 peers
      const host = mapped && this.v6 ? `::ffff:${addrToString(batch.addr, at)}` : addrToString(batch.addr, at);
      // dgram sends asynchronously from the buffer it is given, and the batch is reused: copy.
      this.socket.send(Buffer.from(batch.packet(i)), batch.port[i], host);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.close();
  }
}

function bindDgram(type: 'udp4' | 'udp6', port: number): Promise<Socket> {
  const socket = createSocket({ type, ipv6Only: false, recvBufferSize: 4 << 20, sendBufferSize: 4 << 20 });
  return new Promise((resolve, reject) => {
    socket.once('error', (err) => {
      socket.close();
      reject(err);
    });
    socket.bind(port, type === 'udp6' ? '::' : '0.0.0.0', () => {
      socket.removeAllListeners('error');
      resolve(socket);
    });
  });
}

/**
 * Opens the UDP socket on `port` (0: an ephemeral port; Bind.port tells which). Rejects with
 * code EADDRINUSE when the port is taken.
 */
export async function openBind(port: number, kind: 'native' | 'dgram'): Promise<Bind> {
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new RangeError(`invalid UDP port: ${port}`);
  if (kind === 'native') {
    const addon = native();
    return new NativeBind(new addon.UdpSocket(port, BATCH_SIZE));
  }
  let socket: Socket;
  let v6 = true;
  try {
    socket = await bindDgram('udp6', port);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EAFNOSUPPORT' && code !== 'EADDRNOTAVAIL') throw err;
    socket = await bindDgram('udp4', port); // no IPv6 on this host
    v6 = false;
  }
  return new DgramBind(socket, socket.address().port, v6);
}
