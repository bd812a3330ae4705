// An in-memory TUN for tests (engine.ts EngineOptions.openTun, components.ts): no /dev/net/tun, no
// root. What the kernel would send into the interface is `inject`ed; what the device writes to the
// interface (packets decrypted from peers) is kept, and `next` waits for one that matches.
//
//   const tuns = new MemoryTuns(); Daemon.start(opts, { openTun: tuns.open })
//   tuns.get('wgA').inject(ipv4Packet); await tuns.get('wgB').next((p) => ..., 30_000)
import { BATCH_SIZE, HEADROOM, PacketBatch, SLOT_SIZE } from '../../../src/wg/batch.js';
import { DEFAULT_MTU } from '../../../src/wg/constants.js';
import type { Tun } from '../../../src/wg/tun.js';

export class MemoryTun implements Tun {
  private onBatch: ((batch: PacketBatch) => void) | null = null;
  private closed = false;
  /** Every packet the device wrote to the interface, in order. */
  readonly written: Buffer[] = [];
  private waiters = new Set<() => void>();

  constructor(readonly name: string, readonly mtu = DEFAULT_MTU) {}

  start(onBatch: (batch: PacketBatch) => void): void {
    if (this.onBatch || this.closed) throw new Error('Tun: already started or closed');
    this.onBatch = onBatch;
  }

  write(batch: PacketBatch): void {
    if (this.closed) return;
    for (let i = 0; i < batch.count; i++) if (batch.length[i] > 0) this.written.push(Buffer.from(batch.packet(i)));
    for (const w of this.waiters) w();
  }

  attached(): boolean {
    return !this.closed;
  }

  close(): void {
    this.closed = true;
  }

  /** An IP packet into the interface, as the kernel would hand it to the TUN's reader. */
  inject(packet: Buffer): void {
    if (!this.onBatch || this.closed) throw new Error(`${this.name}: not started or closed`);
    if (packet.length > SLOT_SIZE - HEADROOM - 32) throw new RangeError('packet too long for a slot');
    const b = new PacketBatch(BATCH_SIZE);
    packet.copy(b.data, HEADROOM);
    b.offset[0] = HEADROOM;
    b.length[0] = packet.length;
    b.count = 1;
    this.onBatch(b);
  }

  /** The first written packet (already written or to come) that `match` accepts; rejects after timeoutMs. */
  next(match: (p: Buffer) => boolean, timeoutMs: number): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      let seen = 0;
      const check = () => {
        for (; seen < this.written.length; seen++) {
          if (!match(this.written[seen])) continue;
          done();
          resolve(this.written[seen]);
          return;
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`${this.name}: no matching packet within ${timeoutMs} ms (${this.written.length} written)`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }
}

/** Memory TUNs by interface name: `open` is the factory the engine calls. */
export class MemoryTuns {
  private readonly tuns = new Map<string, MemoryTun>();

  readonly open = (name: string, opts: { mtu?: number }): Tun => {
    const tun = new MemoryTun(name, opts.mtu ?? DEFAULT_MTU);
    this.tuns.set(name, tun);
    return tun;
  };

  get(name: string): MemoryTun {
    const t = this.tuns.get(name);
    if (!t) throw new Error(`no memory TUN ${name}`);
    return t;
  }
}
