// The engine: the I/O shell around the sans-I/O device. It owns the TUN interface, the UDP socket
// (Bind) and the timer tick, and exposes the device's configuration (Configurable) to the UAPI
// server and to the mesh daemon. Two data paths share every line of protocol code and differ
// only in what they plug in here: `native` (batched TUN/recvmmsg/sendmmsg/AEAD in the addon) and
// `reference` (noble AEAD and node dgram; the TUN is always the addon's).
import { MonotonicStamps } from './tai64n.js';
import { udpBindFactory, type Bind, type BindFactory } from './bind.js';
import { createCipher } from './cipher.js';
import { ConfigError, EADDRINUSE, EINVAL, EOPNOTSUPP, type Configurable, type DeviceSet, type DeviceSnapshot } from './config.js';
import { DEFAULT_MTU, PROTOCOL_TIMINGS, TEST_TIMINGS, type Timings } from './constants.js';
import { Device } from './device.js';
import type { Logger } from '../util/log.js';
import { openTun, type Tun } from './tun.js';

export type Datapath = 'native' | 'reference';

export interface EngineOptions {
  ifname: string;
  datapath?: Datapath;
  timings?: Timings;
  mtu?: number;
  listenPort?: number;
  logger?: Logger;
  /** Opens the UDP side; default the real socket of the data path (udpBindFactory). */
  bind?: BindFactory;
  /**
   * The longest the timer tick sleeps (default 1 s, half of that with shortened test timers). It
   * wakes at the earliest armed deadline otherwise, so an idle engine wakes about once a second.
   */
  maxTickMs?: number;
  /**
   * Called once if the interface is deleted under the engine (`ip link del`), which leaves it
   * nothing to carry; checked about once a second. The engine is closed by then. wireguard-go
   * exits in that case, and so does `meshd engine`.
   */
  onInterfaceGone?: (ifname: string) => void;
  /** Initiation timestamps (the daemon's keeps its floor in the store, across restarts). */
  stamps?: MonotonicStamps;
  /** Opens the TUN interface; default the kernel's (tun.ts openTun). Tests pass an in-memory one. */
  openTun?: (name: string, opts: { mtu?: number }) => Tun;
}

/** The data path chosen by MESHD_DATAPATH (default native). */
export function datapathFromEnv(env = process.env): Datapath {
  const v = env.MESHD_DATAPATH ?? 'native';
  if (v !== 'native' && v !== 'reference') throw new Error(`MESHD_DATAPATH must be native or reference, not ${v}`);
  return v;
}

/** Protocol timers, or the shortened test timers when MESHD_TEST_TIMERS=1. */
export function timingsFromEnv(env = process.env): Timings {
  return env.MESHD_TEST_TIMERS === '1' ? TEST_TIMINGS : PROTOCOL_TIMINGS;
}

export class Engine implements Configurable {
  readonly device: Device;
  private bind: Bind | null = null;
  private tick: NodeJS.Timeout | null = null;
  private readonly maxTickMs: number;
  private readonly openBind: BindFactory;
  private readonly onInterfaceGone?: (ifname: string) => void;
  private lastAttachCheck = performance.now();
  private closed = false;

  private constructor(private readonly tun: Tun, readonly datapath: Datapath, opts: EngineOptions) {
    this.device = new Device({
      cipher: createCipher(datapath === 'native' ? 'native' : 'noble'),
      output: {
        send: (b) => this.bind?.send(b),
        write: (b) => this.tun.write(b),
      },
      timings: opts.timings ?? PROTOCOL_TIMINGS,
      stamps: opts.stamps,
      mtu: tun.mtu,
      logger: opts.logger,
    });
    tun.start((b) => this.device.handleTunBatch(b));
    const timings = opts.timings ?? PROTOCOL_TIMINGS;
    // Every deadline an event arms lies at least min(rekeyTimeout, keepaliveTimeout) ahead (the
    // persistent keepalive at least 1 s): sleeping no longer than half of that never misses one.
    this.maxTickMs = opts.maxTickMs ?? Math.min(1000, timings.rekeyTimeout / 2, timings.keepaliveTimeout / 2);
    this.onInterfaceGone = opts.onInterfaceGone;
    this.openBind = opts.bind ?? udpBindFactory(datapath === 'native' ? 'native' : 'dgram');
    this.armTick();
  }

  /** Sleeps until the earliest armed timer, at most maxTickMs, then runs the device's timers. */
  private armTick(): void {
    if (this.closed) return;
    const wait = Math.max(1, Math.min(this.maxTickMs, Math.ceil(this.device.msUntilNextTimer())));
    this.tick = setTimeout(() => {
      this.device.tick();
      const now = performance.now();
      if (now - this.lastAttachCheck >= 1000) {
        this.lastAttachCheck = now;
        if (!this.tun.attached()) {
          const ifname = this.tun.name;
          this.close();
          this.onInterfaceGone?.(ifname);
          return;
        }
      }
      this.armTick();
    }, wait);
  }

  static async open(opts: EngineOptions): Promise<Engine> {
    const datapath = opts.datapath ?? 'native';
    const tun = (opts.openTun ?? openTun)(opts.ifname, { mtu: opts.mtu ?? DEFAULT_MTU });
    const engine = new Engine(tun, datapath, opts);
    try {
      await engine.rebind(opts.listenPort ?? 0);
    } catch (err) {
      engine.close();
      throw err;
    }
    return engine;
  }

  get ifname(): string {
    return this.tun.name;
  }

  get listenPort(): number {
    return this.bind?.port ?? 0;
  }

  /** Opens the UDP socket on `port` (0 = any), replacing the current one only once the new one works. */
  private async rebind(port: number): Promise<void> {
    let next: Bind;
    try {
      next = await this.openBind(port);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EADDRINUSE') throw new ConfigError(EADDRINUSE, `UDP port ${port} is in use`);
      throw err;
    }
    if (this.device.fwmark !== 0) {
      try {
        this.mark(next, this.device.fwmark);
      } catch (err) {
        next.close();
        throw err;
      }
    }
    this.bind?.close();
    this.bind = next;
    this.device.listenPort = next.port;
    next.start((b) => this.device.handleUdpBatch(b));
  }

  snapshot(): DeviceSnapshot {
    const s = this.device.snapshot();
    s.listenPort = this.listenPort;
    return s;
  }

  async apply(change: DeviceSet): Promise<void> {
    if (change.listenPort !== undefined && change.listenPort !== this.listenPort) {
      await this.rebind(change.listenPort);
    }
    if (change.fwmark !== undefined && change.fwmark !== this.device.fwmark) this.mark(this.bind!, change.fwmark);
    this.device.apply({ ...change, listenPort: undefined });
  }

  /**
   * SO_MARK on the UDP socket (wg's fwmark; 0 clears it), so policy routing such as wg-quick's
   * `Table = auto` for a default route keeps the tunnel's own datagrams out of the tunnel. Only the
   * native bind can; the reference bind (node dgram) refuses with EOPNOTSUPP.
   */
  private mark(bind: Bind, mark: number): void {
    if (!bind.setMark) throw new ConfigError(EOPNOTSUPP, 'fwmark needs the native data path (MESHD_DATAPATH=native)');
    try {
      bind.setMark(mark);
    } catch (err) {
      throw new ConfigError((err as { errno?: number }).errno ?? EINVAL, (err as Error).message);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.tick) clearTimeout(this.tick);
    this.device.close();
    this.bind?.close();
    this.tun.close();
  }
}
