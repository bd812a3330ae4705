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
  /** Writes each slot i < batch.count with length > 0; a full queue drops packets, as a NIC does. */
  write(batch: PacketBatch): void;
  /** False once the interface was deleted under us (`ip link del`): the fd is then useless. */
  attached(): boolean;
  /** Closes the fd, which removes the (non-persistent) interface. */
  close(): void;
}

/** Transmit queue length: the kernel's default of 500 drops packets under load (datapath.md). */
const TX_QUEUE_LEN = 1000;
/** Read rounds per wakeup: enough to drain a burst, few enough that UDP and timers get turns. */
const MAX_ROUNDS = 16;

class NativeTun implements Tun {
  private readonly batch = new PacketBatch(BATCH_SIZE);
  private poller: Poller | null = null;
  private closed = false;

  constructor(private readonly fd: number, readonly name: string, readonly mtu: number) {}

  start(onBatch: (batch: PacketBatch) => void): void {
    if (this.poller || this.closed) throw new Error('Tun: already started or closed');
    const addon = native();
    const b = this.batch;
    // Level-triggered: whatever one wakeup leaves queued wakes the next loop iteration.
    this.poller = new addon.Poller(this.fd, () => {
      for (let round = 0; round < MAX_ROUNDS && !this.closed; round++) {
        const n = addon.tunRead(this.fd, b.data, SLOT_SIZE, b.offset, b.length, HEADROOM, b.capacity);
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

  attached(): boolean {
    return !this.closed && native().tunAttached(this.fd) === 0;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.poller?.close(); // stops watching before the fd goes away
    native().closeFd(this.fd);
  }
}

/** Why TUNSETIFF failed, in words an operator can act on. */
function explain(name: string, code: string | undefined): string | null {
  switch (code) {
    case 'ENOENT':
    case 'ENODEV':
      return 'cannot create TUN interface: /dev/net/tun does not exist (load the tun module: modprobe tun)';
    case 'EPERM':
    case 'EACCES':
      return `cannot create TUN interface ${name}: permission denied (run as root or with CAP_NET_ADMIN)`;
    case 'EBUSY':
      return `cannot create TUN interface ${name}: a TUN of that name exists and is in use`;
    case 'EINVAL':
      return `cannot create TUN interface ${name}: an interface of that name exists and is not a TUN`;
    default:
      return null;
  }
}

/**
 * Creates (or attaches to a persistent, unused) TUN interface `name`, layer 3 without packet
 * info, nonblocking, with the MTU (default 1420, as wireguard-go) and a longer transmit queue.
 * The link is left down and without addresses. Errors carry `code` (ENOENT, EPERM, EBUSY...).
 */
export function openTun(name: string, opts: { mtu?: number } = {}): Tun {
  // Linux's dev_valid_name(): 1-15 bytes, no '/', ':' or whitespace, not "." or "..".
  if (!/^[^\s/:]{1,15}$/.test(name) || name === '.' || name === '..') {
    throw Object.assign(new Error(`invalid interface name "${name}": 1-15 characters, no '/', ':' or spaces`), { code: 'EINVAL' });
  }
  const mtu = opts.mtu ?? DEFAULT_MTU;
  if (!(mtu >= 576 && mtu <= MAX_MTU)) throw new RangeError(`MTU must be between 576 and ${MAX_MTU}, not ${mtu}`);
  const addon = native();
  let opened: { fd: number; name: string };
  try {
    opened = addon.tunOpen(name);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    e.message = explain(name, e.code) ?? e.message;
    throw e;
  }
  try {
    addon.ifaceConfigure(opened.name, mtu, TX_QUEUE_LEN);
  } catch (err) {
    addon.closeFd(opened.fd);
    throw err;
  }
  return new NativeTun(opened.fd, opened.name, mtu);
}
