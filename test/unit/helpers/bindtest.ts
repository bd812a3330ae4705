// In-memory Binds, as wireguard-go's conn/bindtest: sockets on a ChannelNet that deliver batches
// to each other by address and port, a macrotask later (as a real socket would, and so that a
// device answering a datagram never recurses into its peer). Tests can drop datagrams.
import { PacketBatch, SLOT_SIZE } from '../../../src/wg/batch.js';
import type { Bind, BindFactory } from '../../../src/wg/bind.js';
import { addrFromString, addrToString } from '../../../src/wg/endpoint.js';

export interface ChannelDatagram {
  from: string; // "ip:port" (IPv6 without brackets)
  to: string;
  bytes: Buffer;
}

export class ChannelNet {
  private readonly binds = new Map<string, ChannelBind>();
  private nextPort = 40000;
  /** Return true to drop a datagram. */
  drop: (d: ChannelDatagram) => boolean = () => false;
  /** Every datagram sent, dropped or not. */
  readonly log: ChannelDatagram[] = [];

  /** Sockets on address `ip` (any text form addrFromString reads). */
  factory(ip: string): BindFactory {
    const canonical = addrToString(addrFromString(ip));
    return async (port) => {
      const p = port === 0 ? this.nextPort++ : port;
      const key = `${canonical}:${p}`;
      if (this.binds.has(key)) throw Object.assign(new Error(`UDP port ${p} is in use`), { code: 'EADDRINUSE' });
      const bind = new ChannelBind(this, canonical, p);
      this.binds.set(key, bind);
      return bind;
    };
  }

  /** @internal */
  release(bind: ChannelBind): void {
    if (this.binds.get(`${bind.ip}:${bind.port}`) === bind) this.binds.delete(`${bind.ip}:${bind.port}`);
  }

  /** @internal */
  carry(from: ChannelBind, batch: PacketBatch): void {
    const byDest = new Map<ChannelBind, ChannelDatagram[]>();
    for (let i = 0; i < batch.count; i++) {
      if (batch.length[i] <= 0) continue;
      const d = { from: `${from.ip}:${from.port}`, to: `${addrToString(batch.addr, i * 16)}:${batch.port[i]}`, bytes: Buffer.from(batch.packet(i)) };
      this.log.push(d);
      const dest = this.binds.get(d.to);
      if (!dest || this.drop(d)) continue;
      byDest.set(dest, [...(byDest.get(dest) ?? []), d]);
    }
    for (const [dest, datagrams] of byDest) setImmediate(() => dest.receive(from, datagrams));
  }
}

export class ChannelBind implements Bind {
  private onBatch: ((b: PacketBatch) => void) | null = null;
  private closed = false;

  constructor(private readonly net: ChannelNet, readonly ip: string, readonly port: number) {}

  start(onBatch: (batch: PacketBatch) => void): void {
    this.onBatch = onBatch;
  }

  send(batch: PacketBatch): void {
    if (!this.closed) this.net.carry(this, batch);
  }

  /** @internal */
  receive(from: ChannelBind, datagrams: ChannelDatagram[]): void {
    if (this.closed || !this.onBatch) return;
    const b = new PacketBatch(datagrams.length);
    datagrams.forEach((d, i) => {
      d.bytes.copy(b.data, i * SLOT_SIZE);
      b.offset[i] = 0;
      b.length[i] = d.bytes.length;
      addrFromString(from.ip).copy(b.addr, i * 16);
      b.port[i] = from.port;
    });
    b.count = datagrams.length;
    this.onBatch(b);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.net.release(this);
  }
}
