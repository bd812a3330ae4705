// A sans-I/O test bench for the device: devices on an in-memory wire with a fake clock. Every
// datagram a device sends is copied onto the wire; pump() delivers them until the wire is quiet.
import { PacketBatch, HEADROOM, SLOT_SIZE } from '../../src/wg/batch.js';
import { NobleCipher } from '../../src/wg/cipher.js';
import { TEST_TIMINGS, type Timings } from '../../src/wg/constants.js';
import { generatePrivateKey, staticKey } from '../../src/wg/crypto.js';
import { Device, type Clock } from '../../src/wg/device.js';
import { addrFromString, addrToString } from '../../src/wg/endpoint.js';
import { parsePrefix } from '../../src/wg/prefix.js';

export class FakeClock implements Clock {
  t = 1_000_000;
  wallBase = 1_700_000_000_000;
  now(): number {
    return this.t;
  }
  wall(): number {
    return this.wallBase + this.t;
  }
}

export interface Datagram {
  bytes: Buffer;
  from: { ip: string; port: number };
  to: { ip: string; port: number };
}

export interface Node {
  name: string;
  device: Device;
  ip: string; // underlay address
  port: number;
  publicKey: Buffer;
  privateKey: Buffer;
  /** IP packets the device delivered to its TUN. */
  delivered: Buffer[];
}

export class Wire {
  readonly clock = new FakeClock();
  readonly nodes = new Map<string, Node>(); // by "ip:port"
  queue: Datagram[] = [];
  /** Everything that crossed the wire, for inspection. */
  log: Datagram[] = [];
  /** Drop datagrams for which this returns true. */
  filter: (d: Datagram) => boolean = () => false;

  constructor(readonly timings: Timings = TEST_TIMINGS) {}

  /** The node moves to another address and port (roaming): what was sent to the old one is lost. */
  move(node: Node, ip: string, port: number): void {
    this.nodes.delete(`${node.ip}:${node.port}`);
    node.ip = ip;
    node.port = port;
    this.nodes.set(`${ip}:${port}`, node);
  }

  addNode(name: string, ip: string, port: number, opts: { mtu?: number } = {}): Node {
    const privateKey = generatePrivateKey();
    const node = { name, ip, port, privateKey, publicKey: staticKey(privateKey).publicKey, delivered: [] } as unknown as Node;
    node.device = new Device({
      cipher: new NobleCipher(),
      clock: this.clock,
      timings: this.timings,
      mtu: opts.mtu,
      output: {
        send: (b) => {
          for (let i = 0; i < b.count; i++) {
            if (b.length[i] <= 0) continue;
            const d = {
              bytes: Buffer.from(b.packet(i)),
              from: { ip: node.ip, port: node.port },
              to: { ip: addrToString(b.addr, i * 16), port: b.port[i] },
            };
            this.log.push(d);
            if (!this.filter(d)) this.queue.push(d);
          }
        },
        write: (b) => {
          for (let i = 0; i < b.count; i++) if (b.length[i] > 0) node.delivered.push(Buffer.from(b.packet(i)));
        },
      },
    });
    node.device.apply({ privateKey, listenPort: port, replacePeers: false, peers: [] });
    this.nodes.set(`${ip}:${port}`, node);
    return node;
  }

  /** Makes a and b peers of each other, each with the other's /32 and endpoint. */
  connect(a: Node, b: Node, aTunIp: string, bTunIp: string, extra: { psk?: Buffer } = {}): void {
    const set = (x: Node, y: Node, yTun: string) =>
      x.device.apply({
        replacePeers: false,
        peers: [{
          publicKey: y.publicKey, remove: false, updateOnly: false, replaceAllowedIps: false,
          endpoint: { addr: addrFromString(y.ip), port: y.port },
          presharedKey: extra.psk ?? null,
          allowedIps: [{ prefix: parsePrefix(yTun), remove: false }],
        }],
      });
    set(a, b, bTunIp);
    set(b, a, aTunIp);
  }

  /** Injects raw datagrams at a node as if received from `from`. */
  inject(to: Node, datagrams: Buffer[], from = { ip: '192.0.2.99', port: 9999 }): void {
    const batch = new PacketBatch(Math.max(1, datagrams.length));
    datagrams.forEach((d, i) => {
      d.copy(batch.data, i * SLOT_SIZE);
      batch.offset[i] = 0;
      batch.length[i] = d.length;
      addrFromString(from.ip).copy(batch.addr, i * 16);
      batch.port[i] = from.port;
    });
    batch.count = datagrams.length;
    to.device.handleUdpBatch(batch);
  }

  /** A node's TUN produced these IP packets. */
  sendIp(from: Node, packets: Buffer[]): void {
    const batch = new PacketBatch(Math.max(1, packets.length));
    packets.forEach((p, i) => {
      p.copy(batch.data, i * SLOT_SIZE + HEADROOM);
      batch.offset[i] = HEADROOM;
      batch.length[i] = p.length;
    });
    batch.count = packets.length;
    from.device.handleTunBatch(batch);
  }

  /** Delivers queued datagrams (to whoever owns the destination) until none are left. */
  pump(max = 10_000): number {
    let n = 0;
    while (this.queue.length > 0 && n < max) {
      const d = this.queue.shift()!;
      n++;
      const node = this.nodes.get(`${d.to.ip}:${d.to.port}`);
      if (node) this.inject(node, [d.bytes], d.from);
    }
    return n;
  }

  /** Advances the fake clock in steps, running every device's timers and the wire. */
  advance(ms: number, step = 100): void {
    for (let t = 0; t < ms; t += step) {
      this.clock.t += Math.min(step, ms - t);
      for (const n of this.nodes.values()) n.device.tick();
      this.pump();
    }
  }
}

/** A minimal IPv4/UDP packet from src to dst with the given payload. */
export function ipv4(src: string, dst: string, payload: Buffer | number): Buffer {
  const body = typeof payload === 'number' ? Buffer.alloc(payload, 0xab) : payload;
  const p = Buffer.alloc(20 + 8 + body.length);
  p[0] = 0x45;
  p.writeUInt16BE(p.length, 2);
  p[8] = 64;
  p[9] = 17;
  Buffer.from(src.split('.').map(Number)).copy(p, 12);
  Buffer.from(dst.split('.').map(Number)).copy(p, 16);
  p.writeUInt16BE(1234, 20);
  p.writeUInt16BE(5678, 22);
  p.writeUInt16BE(8 + body.length, 24);
  body.copy(p, 28);
  return p;
}

/** A minimal IPv6/UDP packet. */
export function ipv6(src: string, dst: string, payload: number): Buffer {
  const p = Buffer.alloc(40 + 8 + payload, 0xcd);
  p[0] = 0x60;
  p.fill(0, 1, 4);
  p.writeUInt16BE(8 + payload, 4);
  p[6] = 17;
  p[7] = 64;
  addrFromString(src).copy(p, 8);
  addrFromString(dst).copy(p, 24);
  return p;
}
