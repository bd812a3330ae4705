// The native addon (src/wg/native/*.cc): TUN, batched UDP, batched AEAD and keyed BLAKE2s — what JavaScript
// cannot do fast. Loaded lazily so the pure-TypeScript parts work (and are tested) without it.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../util/package-root.js';

export interface Poller {
  start(): void;
  stop(): void;
  close(): void;
}

/** A dual-stack UDP socket with its own recvmmsg/sendmmsg arrays (src/wg/native/udp.cc). */
export interface UdpSocket {
  readonly fd: number;
  /** The bound port (the real one when opened with port 0). */
  readonly port: number;
  /** 6 for the dual-stack socket, 4 when the host has no IPv6. */
  readonly family: 4 | 6;
  /** Receives up to a batch into slots at offset 0; the count, or -errno (the call may be retried). */
  recv(data: Buffer, slotSize: number, offset: Int32Array, length: Int32Array, addr: Buffer, port: Uint16Array): number;
  /** Sends slots with length > 0 to their addr/port; returns how many went out. */
  send(data: Buffer, slotSize: number, offset: Int32Array, length: Int32Array, addr: Buffer, port: Uint16Array, count: number): number;
  /** SO_MARK; 0 or -errno. */
  setMark(mark: number): number;
  close(): void;
}

export interface NativeAddon {
  tunOpen(name: string): { fd: number; name: string };
  /** Sets MTU and transmit queue length with ioctls on the interface. */
  ifaceConfigure(name: string, mtu: number, txqueuelen: number): void;
  /** Reads up to max packets into slots at `headroom`; the count (0: none; -EINVAL: slot too small). */
  tunRead(fd: number, data: Buffer, slotSize: number, offset: Int32Array, length: Int32Array, headroom: number, max: number): number;
  tunWrite(fd: number, data: Buffer, slotSize: number, offset: Int32Array, length: Int32Array, count: number): number;
  /** 0 while the fd has its interface; -EBADFD after the interface was deleted. */
  tunAttached(fd: number): number;
  /** Binds [::]:port (0.0.0.0 without IPv6; port 0 = ephemeral) with arrays for `capacity` datagrams. */
  UdpSocket: new (port: number, capacity: number) => UdpSocket;
  /** AEAD per slot; the nonce counter is the slot's bytes 8..16 (LE). A failed seal sets length -1. */
  sealBatch(data: Buffer, slotSize: number, offset: Int32Array, length: Int32Array, keys: Buffer, count: number): void;
  openBatch(data: Buffer, slotSize: number, offset: Int32Array, length: Int32Array, keys: Buffer, ok: Uint8Array, count: number): void;
  /** Keyed BLAKE2s (1-32 byte key) over input, out.length (1-32) bytes into out; false if OpenSSL refused. */
  blake2sMac(key: Uint8Array, input: Uint8Array, out: Uint8Array): boolean;
  closeFd(fd: number): void;
  /** A nonblocking raw ICMP (IPv4) socket that receives echo replies only; needs CAP_NET_RAW. */
  icmpOpen(): number;
  /** Sends an echo request to addr (4 bytes); 0 or -errno. */
  icmpEcho(fd: number, addr: Buffer, id: number, seq: number, payload: Buffer): number;
  /** Receives one ICMP message (IP header stripped) into buf, its source into from (4 bytes); its length, 0 if none, or -errno. */
  icmpRecv(fd: number, buf: Buffer, from: Buffer): number;
  /** Watches fd for readability; onEvent(status) gets a negative libuv status after a POLLERR. */
  Poller: new (fd: number, onEvent: (status: number) => void) => Poller;
  /** Sends one datagram to a unix socket path ("@name": abstract); 0 or -errno (sd_notify, notify.cc). */
  notifySend?: (socket: string, message: string) => number;
  /** malloc_trim(0): true if free heap pages went back to the kernel (memory.cc). */
  trimMemory?: () => boolean;
}

/** The addon's functions that only the daemon's upkeep uses; an addon built from older sources may lack them. */
export type OptionalNative = 'notifySend' | 'trimMemory';

let loaded: NativeAddon | null = null;

export function native(): NativeAddon {
  if (loaded) return loaded;
  const path = join(packageRoot(), 'src/wg/native/build/Release/meshd_native.node');
  if (!existsSync(path)) {
    throw new Error(`meshd native addon not built (${path}); run: npm run install`);
  }
  loaded = createRequire(import.meta.url)(path) as NativeAddon;
  return loaded;
}

/** One of the optional functions, or a clear error when the addon lacks it (or is not built). */
export function nativeFunction<K extends OptionalNative>(name: K): NonNullable<NativeAddon[K]> {
  const fn = native()[name];
  if (typeof fn !== 'function') throw new Error(`the native addon has no ${name}: rebuild it (npm run install)`);
  return fn as NonNullable<NativeAddon[K]>;
}
