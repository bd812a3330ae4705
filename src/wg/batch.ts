// A batch of packets in one preallocated buffer: the unit the data path moves. TUN reads, UDP
// receives, AEAD and sends all work a batch at a time, so nothing is allocated per packet.
//
// Slot i occupies data[i * SLOT_SIZE, (i + 1) * SLOT_SIZE). Its packet is the bytes
// [slot start + offset[i], + length[i]); a length of 0 or less means "skip this slot".
// addr/port carry the UDP peer of the slot: a 16-byte IPv6 address (IPv4 as ::ffff:a.b.c.d).

/** Room in a slot: a 16-byte transport header, an IP packet of up to MAX_MTU, padding, a tag. */
export const SLOT_SIZE = 2048;
/** Transport data header: type(4) receiver(4) counter(8). */
export const HEADROOM = 16;
export const MAX_MTU = SLOT_SIZE - HEADROOM - 16 - 16;
export const BATCH_SIZE = 64;

export class PacketBatch {
  readonly data: Buffer;
  readonly offset: Int32Array;
  readonly length: Int32Array;
  readonly addr: Buffer;
  readonly port: Uint16Array;
  count = 0;

  constructor(readonly capacity: number = BATCH_SIZE) {
    this.data = Buffer.alloc(capacity * SLOT_SIZE);
    this.offset = new Int32Array(capacity);
    this.length = new Int32Array(capacity);
    this.addr = Buffer.alloc(capacity * 16);
    this.port = new Uint16Array(capacity);
  }

  /** Start of slot i in data. */
  slot(i: number): number {
    return i * SLOT_SIZE;
  }

  /** The packet of slot i, as a view (no copy). */
  packet(i: number): Buffer {
    const start = i * SLOT_SIZE + this.offset[i];
    return this.data.subarray(start, start + this.length[i]);
  }
}
