// The native addon (src/wg/native/*.cc): TUN, batched UDP and batched AEAD — what JavaScript
// cannot do fast. Loaded lazily so the pure-TypeScript parts work (and are tested) without it.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface Poller {
  start(): void;
  stop(): void;
  close(): void;
}

export interface NativeAddon {
  tunOpen(name: string): { fd: number; name: string };
  /** Sets MTU and transmit queue length with ioctls on the interface. */
  ifaceConfigure(name: string, mtu: number, txqueuelen: number): void;
  /** Reads up to max packets into slots at `headroom`; returns the count (0 when none). */
  tunRead(fd: number, data: Buffer, slotSize: number, headroom: number, offset: Int32Array, length: Int32Array, max: number): number;
  tunWrite(fd: number, data: Buffer, slotSize: number, offset: Int32Array, length: Int32Array, count: number): number;
  /** A dual-stack UDP socket bound to port (0 = any); returns fd and the bound port. */
  udpOpen(port: number): { fd: number; port: number };
  udpRecv(fd: number, data: Buffer, slotSize: number, offset: Int32Array, length: Int32Array, addr: Buffer, port: Uint16Array, max: number): number;
  udpSend(fd: number, data: Buffer, slotSize: number, offset: Int32Array, length: Int32Array, addr: Buffer, port: Uint16Array, count: number): number;
  sealBatch(data: Buffer, slotSize: number, offset: Int32Array, length: Int32Array, keys: Buffer, counters: BigUint64Array, count: number): void;
  openBatch(data: Buffer, slotSize: number, offset: Int32Array, length: Int32Array, keys: Buffer, counters: BigUint64Array, ok: Uint8Array, count: number): void;
  closeFd(fd: number): void;
  udpClose(fd: number): void;
  Poller: new (fd: number, onReadable: () => void) => Poller;
}

let loaded: NativeAddon | null = null;

/** The package root: the nearest directory above this file that holds package.json. */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('meshd: cannot find the package root');
    dir = up;
  }
  return dir;
}

export function native(): NativeAddon {
  if (loaded) return loaded;
  const path = join(packageRoot(), 'src/wg/native/build/Release/meshd_native.node');
  if (!existsSync(path)) {
    throw new Error(`meshd native addon not built (${path}); run: npm run install`);
  }
  loaded = createRequire(import.meta.url)(path) as NativeAddon;
  return loaded;
}
