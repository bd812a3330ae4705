// The four message types of WireGuard (paper section 5.4) and their byte layouts. Offsets are
// constants so parsing is a bounds check plus reads; no object per message on the data path.

export const MESSAGE_INITIATION = 1;
export const MESSAGE_RESPONSE = 2;
export const MESSAGE_COOKIE_REPLY = 3;
export const MESSAGE_TRANSPORT = 4;

/** type(1) reserved(3) sender(4) ephemeral(32) static(32+16) timestamp(12+16) mac1(16) mac2(16) */
export const Initiation = {
  size: 148,
  sender: 4,
  ephemeral: 8,
  static: 40,
  timestamp: 88,
  mac1: 116,
  mac2: 132,
} as const;

/** type(1) reserved(3) sender(4) receiver(4) ephemeral(32) empty(0+16) mac1(16) mac2(16) */
export const Response = {
  size: 92,
  sender: 4,
  receiver: 8,
  ephemeral: 12,
  empty: 44,
  mac1: 60,
  mac2: 76,
} as const;

/** type(1) reserved(3) receiver(4) nonce(24) cookie(16+16) */
export const CookieReply = {
  size: 64,
  receiver: 4,
  nonce: 8,
  cookie: 32,
} as const;

/** type(1) reserved(3) receiver(4) counter(8) packet(n+16) */
export const Transport = {
  headerSize: 16,
  minSize: 32, // a keepalive: header and a tag
  receiver: 4,
  counter: 8,
} as const;

/** The message type in the first byte with the three reserved bytes zero, or 0 if malformed. */
export function messageType(buf: Uint8Array, at: number, len: number): number {
  if (len < 4 || buf[at + 1] !== 0 || buf[at + 2] !== 0 || buf[at + 3] !== 0) return 0;
  const type = buf[at];
  switch (type) {
    case MESSAGE_INITIATION:
      return len === Initiation.size ? type : 0;
    case MESSAGE_RESPONSE:
      return len === Response.size ? type : 0;
    case MESSAGE_COOKIE_REPLY:
      return len === CookieReply.size ? type : 0;
    case MESSAGE_TRANSPORT:
      return len >= Transport.minSize ? type : 0;
    default:
      return 0;
  }
}

/** Writes type and zero reserved bytes. */
export function writeType(buf: Buffer, type: number): void {
  buf.writeUInt32LE(type, 0);
}
