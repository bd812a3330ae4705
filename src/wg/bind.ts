// The UDP side, named after wireguard-go's conn.Bind: receives datagrams into a batch (each at
// offset 0 of its slot, source in addr/port) and sends batches. NativeBind uses recvmmsg and
// sendmmsg through the addon; DgramBind is the pure-Node reference and fallback.
import { createSocket, type Socket } from 'node:dgram';
import { BATCH_SIZE, PacketBatch, SLOT_SIZE } from './batch.js';
import { addrFromString, addrToString, isV4Mapped } from './endpoint.js';
import { native, type Poller } from './native.js';

export interface Bind {
  readonly port: number;
  start(onBatch: (batch: PacketBatch) => void): void;
  send(batch: PacketBatch): void;
  close(): void;
}

class NativeBind implements Bind {
  private readonly batch = new PacketBatch(BATCH_SIZE);
  private poller: Poller | null = null;
  private closed = false;

  constructor(private readonly fd: number, readonly port: number) {}

  start(onBatch: (batch: PacketBatch) => void): void {
    const addon = native();
    const b = this.batch;
    this.poller = new addon.Poller(this.fd, () => {
      for (let spins = 0; spins < 64; spins++) {
        const n = addon.udpRecv(this.fd, b.data, SLOT_SIZE, b.offset, b.length, b.addr, b.port, b.capacity);
        if (n < 0) continue; // a queued ICMP error was cleared; read on
        if (n === 0) return;
        b.count = n;
        onBatch(b);
        if (n < b.capacity) return;
      }
    });
    this.poller.start();
  }

  send(batch: PacketBatch): void {
    if (!this.closed) native().udpSend(this.fd, batch.data, SLOT_SIZE, batch.offset, batch.length, batch.addr, batch.port, batch.count);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.poller?.close();
    native().udpClose(this.fd);
  }
}

class DgramBind implements Bind {
  private readonly batch = new PacketBatch(1);

  constructor(private readonly socket: Socket, readonly port: number) {
    // An ICMP error must never take the process down (datapath.md pitfall 3).
    socket.on('error', () => {});
  }

  start(onBatch: (batch: PacketBatch) => void): void {
    const b = this.batch;
    this.socket.on('message', (msg, rinfo) => {
      if (msg.length > SLOT_SIZE) return;
      msg.copy(b.data, 0);
      b.offset[0] = 0;
      b.length[0] = msg.length;
      addrFromString(rinfo.address.replace(/^::ffff:/, '')).copy(b.addr, 0);
      b.port[0] = rinfo.port;
      b.count = 1;
      onBatch(b);
    });
  }

  send(batch: PacketBatch): void {
    for (let i = 0; i < batch.count; i++) {
      if (batch.length[i] <= 0) continue;
      const at = i * 16;
      const host = isV4Mapped(batch.addr, at) ? `::ffff:${addrToString(batch.addr, at)}` : addrToString(batch.addr, at);
      // dgram sends asynchronously from the buffer it is given: hand it a copy.
      this.socket.send(Buffer.from(batch.packet(i)), batch.port[i], host);
    }
  }

  close(): void {
    this.socket.close();
  }
}

export async function openBind(port: number, kind: 'native' | 'dgram'): Promise<Bind> {
  if (kind === 'native') {
    const { fd, port: bound } = native().udpOpen(port);
    return new NativeBind(fd, bound);
  }
  const socket = createSocket({ type: 'udp6', ipv6Only: false, recvBufferSize: 4 << 20, sendBufferSize: 4 << 20 });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(port, '::', () => {
      socket.off('error', reject);
      resolve();
    });
  });
  return new DgramBind(socket, socket.address().port);
}
