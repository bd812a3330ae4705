// The TUN interface: IP packets in and out of the kernel, a batch per wakeup. Reads land at
// offset HEADROOM of each slot so the device can write the transport header in front and seal in
// place: the packet is never copied between the TUN and the UDP socket.
import { BATCH_SIZE, HEADROOM, PacketBatch, SLOT_SIZE, MAX_MTU } from './batch.js';
import { DEFAULT_MTU } from './constants.js';
import { native, type Poller } from './native.js';

export interface Tun {
  readonly name: string;
  readonly mtu: number;
  /** Delivers batches of packets read from the interface, synchronously, reusing one batch. */
  start(onBatch: (batch: PacketBatch) => void): void;
  write(batch: PacketBatch): void;
  close(): void;
}

class NativeTun implements Tun {
  private readonly batch = new PacketBatch(BATCH_SIZE);
  private poller: Poller | null = null;
  private closed = false;

  constructor(private readonly fd: number, readonly name: string, readonly mtu: number) {}

  start(onBatch: (batch: PacketBatch) => void): void {
    const addon = native();
    const b = this.batch;
    this.poller = new addon.Poller(this.fd, () => {
      for (;;) {
        const n = addon.tunRead(this.fd, b.data, SLOT_SIZE, HEADROOM, b.offset, b.length, b.capacity);
        if (n <= 0) return;
        b.count = n;
        onBatch(b);
        if (n < b.capacity) return;
      }
    });
    this.poller.start();
  }

  write(batch: PacketBatch): void {
    if (!this.closed) native().tunWrite(this.fd, batch.data, SLOT_SIZE, batch.offset, batch.length, batch.count);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.poller?.close();
    native().closeFd(this.fd); // closing the last fd of a non-persistent TUN removes the interface
  }
}

/** Creates the TUN interface `name` (like wireguard-go: MTU 1420, link left down). */
export function openTun(name: string, opts: { mtu?: number } = {}): Tun {
  const mtu = opts.mtu ?? DEFAULT_MTU;
  if (!(mtu >= 576 && mtu <= MAX_MTU)) throw new Error(`MTU must be between 576 and ${MAX_MTU}`);
  const addon = native();
  let opened: { fd: number; name: string };
  try {
    opened = addon.tunOpen(name);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOENT') e.message = 'cannot create TUN interface: /dev/net/tun does not exist (load the tun module)';
    else if (e.code === 'EPERM' || e.code === 'EACCES') e.message = `cannot create TUN interface ${name}: permission denied (run as root or with CAP_NET_ADMIN)`;
    else if (e.code === 'EBUSY') e.message = `cannot create TUN interface ${name}: it exists and is in use`;
    throw e;
  }
  try {
    addon.ifaceConfigure(opened.name, mtu, 1000);
  } catch (err) {
    addon.closeFd(opened.fd);
    throw err;
  }
  return new NativeTun(opened.fd, opened.name, mtu);
}
